// Benchmark: the health-monitor over N sessions kept by a real session-service on wa-sim, the
// whole pipeline (README "Benchmarks": "time from a drop to its level change with 5 000 sessions under
// watch"; "a deep check of 5 000 sessions in under 2 s").
//
// Prints one JSON object with:
//   first_deep_check_seconds   the new leader's first deep check (GetDeepHealth over gRPC, every
//                              session adopted and saved)
//   deep_check_seconds         a deep check triggered by hand with nothing changed
//   drop_to_level_ms           p50/p99/max from wa-sim dropping a socket to the monitor's stored
//                              transition to WARNING (its `at`), over `drops` sessions one after
//                              another; the path: socket close → session-service → PostgreSQL
//                              NOTIFY → WatchSessionEvents → monitor
//
// Environment: WA_SIM, SESSION_SERVICE, HEALTH_MONITOR, PROTO_DIR, DATABASE_URL (empty).
// Usage: node bench/monitor_e2e.mjs [N] [--drops=50]
import { createRequire } from 'node:module';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';

const require = createRequire(new URL('../tests/package.json', import.meta.url));
const grpc = require('@grpc/grpc-js');
const { initAuthCreds, BufferJSON } = await import(require.resolve('baileys'));
const { startSim, waitFor, requiredEnv, freePort } = await import('../tests/interop/harness.mjs');

const args = process.argv.slice(2);
const n = Number(args.find((a) => /^\d+$/.test(a)) ?? 5000);
const drops = Number((args.find((a) => a.startsWith('--drops=')) ?? '--drops=50').split('=')[1]);

const { SessionService, MonitorService, unary: unaryWith } = await import('../tests/e2e/api.mjs');
const unary = (client) => unaryWith(client, 120000);
const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
const seconds = (d) => Number(d.seconds) + d.nanos / 1e9;
const tsMs = (t) => Number(t.seconds) * 1000 + t.nanos / 1e6;

const running = new Set();
function start(binary, argv) {
  const proc = spawn(binary, argv, { stdio: ['ignore', 'inherit', 'inherit'] });
  running.add(proc);
  return proc;
}

// Established devices: WhatsApp already holds their pre-keys (no 812-key upload per login).
const sim = await startSim(['--prekey_count=50']);
try {
  const dbUrl = requiredEnv('DATABASE_URL');
  const sessionPort = await freePort();
  start(requiredEnv('SESSION_SERVICE'), [
    `--grpc_listen=127.0.0.1:${sessionPort}`, '--metrics_listen=', `--database_url=${dbUrl}`,
    `--auth_state_key=${randomBytes(32).toString('hex')}`, `--wa_url=${sim.url}`, `--wa_version_url=${sim.versionUrl}`,
    `--wa_root_key=${sim.rootPublicKey.toString('hex')}`, '--restore_per_second=0',
    '--log_level=warn',
  ]);
  const svc = unary(new SessionService(`127.0.0.1:${sessionPort}`, grpc.credentials.createInsecure()));
  await waitFor(async () => { try { await svc('GetHealth'); return true; } catch { return false; } },
    { timeoutMs: 30000, what: 'session-service' });
  const jids = [];
  for (let i = 0; i < n; i++) {
    const creds = initAuthCreds();
    const jid = `1888${String(i).padStart(7, '0')}:2`;
    creds.me = { id: `${jid}@s.whatsapp.net` };
    const json = JSON.stringify(creds, BufferJSON.replacer);
    await sim.post('/devices', { creds: JSON.parse(json) });
    const { session } = await svc('CreateSession', { tenant_id: `mon-${i}`, creds_json: json });
    jids.push({ jid, id: session.id });
  }
  await waitFor(async () => (await svc('GetHealth')).counts
    .find((c) => c.state === 'SESSION_STATE_CONNECTED')?.count === n,
  { timeoutMs: 300000, intervalMs: 200, what: `${n} sessions connected` });

  const monitorPort = await freePort();
  start(requiredEnv('HEALTH_MONITOR'), [
    `--grpc_listen=127.0.0.1:${monitorPort}`, '--metrics_listen=', `--database_url=${dbUrl}`,
    `--session_service=127.0.0.1:${sessionPort}`, '--log_level=warn',
  ]);
  const mon = unary(new MonitorService(`127.0.0.1:${monitorPort}`, grpc.credentials.createInsecure()));
  const deepJob = async () => (await mon('ListJobs')).jobs.find((j) => j.name === 'health-check-deep');
  await waitFor(async () => { try { return (await deepJob()).runs >= 1; } catch { return false; } },
    { timeoutMs: 120000, intervalMs: 100, what: 'the first deep check' });
  const first = await deepJob();
  const steady = await mon('TriggerJob', { name: 'health-check-deep' });

  const lat = [];
  for (const { jid, id } of jids.slice(0, drops)) {
    const t0 = Date.now();
    await sim.post(`/connections/${jid}/drop`, {});
    const at = await waitFor(async () => {
      const h = await mon('ListTransitions', { session_id: id, since: { seconds: Math.floor(t0 / 1000) - 1 } });
      const t = h.transitions.find((x) => x.to_level === 'HEALTH_LEVEL_WARNING' && tsMs(x.at) >= t0 - 1);
      return t && tsMs(t.at);
    }, { timeoutMs: 10000, intervalMs: 5, what: `the drop of ${jid} classified` });
    lat.push(at - t0);
    if (at - t0 > 100) console.error(`drop ${lat.length} of ${jid}: ${(at - t0).toFixed(1)} ms`);
  }
  lat.sort((a, b) => a - b);
  console.log(JSON.stringify({
    benchmark: 'monitor_e2e', sessions: n, total: steady.result.total,
    first_deep_check_seconds: Number(seconds(first.last_result.took).toFixed(3)),
    deep_check_seconds: Number(seconds(steady.result.took).toFixed(3)),
    drop_to_level_ms: { drops: lat.length, p50: Number(percentile(lat, 0.5).toFixed(1)),
      p99: Number(percentile(lat, 0.99).toFixed(1)), max: Number(lat.at(-1).toFixed(1)) },
  }));
} finally {
  for (const proc of running) proc.kill('SIGKILL');
  sim.stop();
}
