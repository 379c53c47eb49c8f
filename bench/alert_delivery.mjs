// Benchmark: alert-service delivering webhooks to a loopback receiver (README "Benchmarks"; targets: over
// 1 000 deliveries/s sustained, p99 raised → received under 100 ms at 100 alerts/s).
//
// Prints one JSON object with:
//   sustained_deliveries_per_second  N alerts put in the outbox by a replica that does not
//                                    dispatch (each one webhook), then a replica with 4
//                                    dispatchers started: deliveries/s until all arrived (its
//                                    start-up included)
//   latency_ms                       p50/p99/max from RaiseAlert returning to the webhook
//                                    arriving, at `rate` alerts/s for `seconds` s
//
// Environment: ALERT_SERVICE, PROTO_DIR, DATABASE_URL (an empty database). Usage: node bench/alert_delivery.mjs [--alerts=5000] [--rate=100] [--seconds=10]
import { createRequire } from 'node:module';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

const require = createRequire(new URL('../tests/package.json', import.meta.url));
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const { waitFor, requiredEnv, freePort } = await import('../tests/interop/harness.mjs');

const arg = (name, dflt) => Number((process.argv.find((a) => a.startsWith(`--${name}=`)) ?? `=${dflt}`).split('=')[1]);
const alerts = arg('alerts', 5000);
const rate = arg('rate', 100);
const seconds = arg('seconds', 10);

const { AlertService } = grpc.loadPackageDefinition(protoLoader.loadSync(
  'wasentinel/alert/v1/alert.proto',
  { includeDirs: [requiredEnv('PROTO_DIR')], keepCase: true, enums: String, longs: Number, defaults: true },
)).wasentinel.alert.v1;
const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];

const arrivals = new Map();  // dedup key → arrival time
const receiver = createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const now = performance.now();
    const { data } = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    if (!arrivals.has(data.dedup_key)) arrivals.set(data.dedup_key, now);
    res.writeHead(204).end();
  });
});
receiver.keepAliveTimeout = 60000;
const receiverPort = await new Promise((resolve) =>
  receiver.listen(0, '127.0.0.1', () => resolve(receiver.address().port)));

const running = new Set();
const secretKey = randomBytes(32).toString('hex');  // every replica seals with the same key
async function service(dbUrl, extra = []) {
  const port = await freePort();
  const proc = spawn(requiredEnv('ALERT_SERVICE'), [
    `--grpc_listen=127.0.0.1:${port}`, '--metrics_listen=', `--database_url=${dbUrl}`,
    `--secret_key=${secretKey}`, '--allow_private_targets',
    '--webhook_rate_per_second=0', '--log_level=warn', ...extra,
  ], { stdio: ['ignore', 'inherit', 'inherit'] });
  running.add(proc);
  const exited = new Promise((r) => proc.on('exit', r));
  const client = new AlertService(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const call = (m, req = {}) => new Promise((res, rej) =>
    client[m](req, { deadline: Date.now() + 60000 }, (e, r) => (e ? rej(e) : res(r))));
  await waitFor(async () => { try { await call('ListWebhookEndpoints'); return true; } catch { return false; } },
    { timeoutMs: 30000, what: 'alert-service' });
  const endpoints = await call('ListWebhookEndpoints');
  if (endpoints.endpoints.length === 0) {
    await call('CreateWebhookEndpoint', { url: `http://127.0.0.1:${receiverPort}/hook` });
  }
  const stop = async () => { proc.kill('SIGTERM'); await exited; running.delete(proc); client.close(); };
  return { call, stop, proc, exited };
}
const raise = (svc, key) => svc.call('RaiseAlert', {
  dedup_key: key, event_type: 'session.critical', severity: 'SEVERITY_CRITICAL',
  summary: 'bench', session: { session_id: key, phone_number_masked: '155******67' },
});

try {
  // Sustained: the outbox filled by a replica that does not dispatch, then drained by one that
  // does.
  const dbUrl = requiredEnv('DATABASE_URL');
  const writer = await service(dbUrl, ['--dispatchers=0']);
  for (let i = 0; i < alerts; i += 100) {
    await Promise.all(Array.from({ length: Math.min(100, alerts - i) }, (_, k) => raise(writer, `drain/${i + k}`)));
  }
  await writer.stop();
  const t0 = performance.now();
  const drainer = await service(dbUrl, ['--dispatchers=4']);
  await waitFor(() => arrivals.size === alerts,
    { timeoutMs: 300000, intervalMs: 5, what: 'the drain', detail: () => `${arrivals.size} arrived` });
  const drainSeconds = (performance.now() - t0) / 1000;
  const sustained = Math.round(alerts / drainSeconds);

  // Latency at `rate` alerts/s.
  arrivals.clear();
  const sentAt = new Map();
  const total = rate * seconds;
  const start = performance.now();
  const pending = [];
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const key = `lat/${i}`;
    pending.push(raise(drainer, key).then(() => sentAt.set(key, performance.now())));
  }
  await Promise.all(pending);
  await waitFor(() => arrivals.size === total, { timeoutMs: 60000, intervalMs: 5, what: 'latency run' });
  const lat = [...sentAt.entries()].map(([k, t]) => Math.max(0, arrivals.get(k) - t)).sort((a, b) => a - b);
  await drainer.stop();
  console.log(JSON.stringify({
    benchmark: 'alert_delivery', outbox: alerts,
    sustained_deliveries_per_second: sustained, drain_seconds: Number(drainSeconds.toFixed(2)),
    latency_ms: { rate_per_second: rate, alerts: total, p50: Number(percentile(lat, 0.5).toFixed(1)),
      p99: Number(percentile(lat, 0.99).toFixed(1)), max: Number(lat.at(-1).toFixed(1)) },
  }));
} finally {
  for (const p of running) p.kill('SIGKILL');
  receiver.close();
}
