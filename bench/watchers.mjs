// Benchmark: watchers that do not read, beside one that does.
//
// One session-service holds S sessions on wa-sim. P WatchSessionEvents streams (grpc-js) pause
// as soon as their headers arrive and never read; one more stream reads. Then E events are
// made by disconnecting and connecting the sessions, all at once, round after round. Prints one
// JSON object:
//   rss_bytes        session-service RSS: before the watchers, with them open, after the
//                    events, and 2 s after every paused stream was cancelled
//   threads          session-service threads at the same moments
//   paused           streams opened; ended RESOURCE_EXHAUSTED (seen once they read again)
//   reader           events the reading stream got of those made, and its delay from each
//                    event's `at` to arrival, p50 / p99 / max in ms
//
// Environment: WA_SIM, SESSION_SERVICE, PROTO_DIR, DATABASE_URL (an empty database).
// Usage: node bench/watchers.mjs [--paused=500] [--events=5000] [--sessions=20]
import { createRequire } from 'node:module';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';

const require = createRequire(new URL('../tests/package.json', import.meta.url));
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const { initAuthCreds, BufferJSON } = await import(require.resolve('baileys'));
const { startSim, waitFor, requiredEnv, freePort } = await import('../tests/interop/harness.mjs');

const opt = (name, fallback) =>
  Number((process.argv.find((a) => a.startsWith(`--${name}=`)) ?? `=${fallback}`).split('=')[1]);
const paused = opt('paused', 500);
const eventsWanted = opt('events', 5000);
const sessions = opt('sessions', 20);

const pkg = protoLoader.loadSync('wasentinel/session/v1/session.proto', {
  includeDirs: [requiredEnv('PROTO_DIR')], keepCase: true, enums: String, longs: Number, defaults: true,
});
const { SessionService } = grpc.loadPackageDefinition(pkg).wasentinel.session.v1;
const rss = (pid) => Number(readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]) * 4096;
const threads = (pid) => Number(/Threads:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
const nowMs = () => performance.timeOrigin + performance.now();
const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Established devices: WhatsApp already holds their pre-keys (no 812-key upload per login).
const sim = await startSim(['--prekey_count=50']);
const port = await freePort();
const proc = spawn(requiredEnv('SESSION_SERVICE'), [
  `--grpc_listen=127.0.0.1:${port}`, '--metrics_listen=', `--database_url=${requiredEnv('DATABASE_URL')}`,
  `--auth_state_key=${randomBytes(32).toString('hex')}`, `--wa_url=${sim.url}`, `--wa_version_url=${sim.versionUrl}`,
  `--wa_root_key=${sim.rootPublicKey.toString('hex')}`, '--restore_per_second=0', '--log_level=warn',
  `--max_watches_per_key=${paused + 10}`, '--reconnect_backoff=1s',
], { stdio: ['ignore', 'inherit', 'inherit'] });
const exited = new Promise((r) => proc.on('exit', r));
// One connection for the calls, one per 100 paused streams (as many clients would have).
const client = new SessionService(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
const call = (m, req) => new Promise((res, rej) =>
  client[m](req, { deadline: Date.now() + 60000 }, (e, r) => (e ? rej(e) : res(r))));
const connected = async () => {
  try {
    return (await call('GetHealth', {})).counts.find((c) => c.state === 'SESSION_STATE_CONNECTED')?.count ?? 0;
  } catch { return -1; }
};

try {
  await waitFor(async () => (await connected()) >= 0, { timeoutMs: 30000, what: 'session-service' });
  const ids = [];
  for (let i = 0; i < sessions; i++) {
    const creds = initAuthCreds();
    creds.me = { id: `1888${String(i).padStart(7, '0')}:2@s.whatsapp.net` };
    const json = JSON.stringify(creds, BufferJSON.replacer);
    await sim.post('/devices', { creds: JSON.parse(json) });
    ids.push((await call('CreateSession', { tenant_id: `watch-${i}`, creds_json: json })).session.id);
  }
  await waitFor(async () => (await connected()) === sessions, { timeoutMs: 60000, what: 'sessions connected' });
  await sleep(1000);
  const before = { rss: rss(proc.pid), threads: threads(proc.pid) };

  // The paused streams, over a few connections of their own.
  const clients = Array.from({ length: Math.ceil(paused / 100) }, () =>
    new SessionService(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }));
  let open = 0;
  let exhausted = 0;
  const other = [];
  const streams = [];
  for (let i = 0; i < paused; i++) {
    const st = clients[i % clients.length].WatchSessionEvents({});
    st.on('metadata', () => { open += 1; st.pause(); });
    st.on('data', () => {});
    st.on('error', (e) => { if (e.code === grpc.status.RESOURCE_EXHAUSTED) exhausted += 1; else if (e.code !== grpc.status.CANCELLED) other.push(e.code); });
    streams.push(st);
  }
  await waitFor(() => open === paused, { timeoutMs: 60000, what: 'paused streams open' });

  // The reading stream.
  const delays = [];
  const reader = client.WatchSessionEvents({});
  reader.on('data', (e) => {
    delays.push(nowMs() - (Number(e.at.seconds) * 1000 + e.at.nanos / 1e6));
  });
  reader.on('error', () => {});
  await new Promise((r) => reader.on('metadata', r));
  const withPaused = { rss: rss(proc.pid), threads: threads(proc.pid) };

  // Events: every session down and up again, round after round (3 events a session a round).
  let made = 0;
  while (made < eventsWanted) {
    await Promise.all(ids.map((id) => call('Disconnect', { id })));
    await Promise.all(ids.map((id) => call('Connect', { id })));
    await waitFor(async () => (await connected()) === sessions, { timeoutMs: 30000, what: 'sessions back' });
    made += 3 * sessions;
  }
  // The reader is done when nothing more arrives for a second (10 s at most).
  for (let last = -1, quietSince = Date.now(), start = Date.now(); Date.now() - start < 10000;) {
    if (delays.length !== last) { last = delays.length; quietSince = Date.now(); }
    if (Date.now() - quietSince > 1000) break;
    await sleep(100);
  }
  const afterEvents = { rss: rss(proc.pid), threads: threads(proc.pid) };

  // The paused streams read again: each learns how it ended. Then they go.
  for (const st of streams) st.resume();
  await waitFor(() => exhausted + other.length >= paused, { timeoutMs: 30000, what: 'paused streams to end' }).catch(() => {});
  for (const st of streams) st.cancel();
  reader.cancel();
  for (const c of clients) c.close();
  await sleep(2000);
  const afterCancel = { rss: rss(proc.pid), threads: threads(proc.pid) };

  delays.sort((a, b) => a - b);
  console.log(JSON.stringify({
    benchmark: 'watchers', sessions, events_made: made,
    rss_bytes: { before: before.rss, with_paused: withPaused.rss, after_events: afterEvents.rss, after_cancel: afterCancel.rss },
    threads: { before: before.threads, with_paused: withPaused.threads, after_events: afterEvents.threads, after_cancel: afterCancel.threads },
    paused: { streams: paused, resource_exhausted: exhausted, other_errors: other.length },
    reader: {
      events: delays.length, made, delivered: Number((delays.length / made).toFixed(3)),
      delay_ms: { p50: Number(percentile(delays, 0.5).toFixed(1)), p99: Number(percentile(delays, 0.99).toFixed(1)),
        max: Number(delays[delays.length - 1].toFixed(1)) },
    },
  }));
} finally {
  proc.kill('SIGTERM');
  await exited;
  client.close();
  sim.stop();
}
