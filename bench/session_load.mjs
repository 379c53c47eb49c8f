// Benchmark: N sessions kept connected by one session-service to wa-sim over loopback, over
// wss:// (wa-sim's TLS front, as the real WhatsApp is reached; SSL_CERT_FILE trusts its
// certificate) and then over ws:// (plaintext, the same sessions restored again).
//
// Prints one JSON object per N and transport with:
//   connect_all_seconds     from session-service start until all N sessions are CONNECTED
//                           (start-up restore with the rate limit lifted)
//   rss_bytes_per_session   (RSS with N connected, 12 s after the last connected − RSS of an
//                           idle service) / N
//   idle_cpu_percent        CPU of session-service over `idle_window_seconds` at idle
//                           (keepalives only, default intervals), as % of one core
//   watcher_latency_ms      p50/p99 from a state change (the event's `at`) to its arrival at
//                           each of `watchers` WatchSessionEvents streams (default 100)
//   get_session             GetSession calls per second and latency (bench/get_session_rate,
//                           a C++ client, 8 threads over 4 connections, 10 s); wss:// row only
//   postgres                over the idle window: row writes per second (inserted + updated +
//                           deleted in the service's database) and WAL bytes per hour (the
//                           server's, which serves this service alone meanwhile)
//
// Environment: WA_SIM, SESSION_SERVICE, GET_SESSION_RATE, PROTO_DIR, DATABASE_URL (an empty database per N is
// made by the caller: DATABASE_URL_<N>), BASELINE_DATABASE_URL (an empty database).
// Usage: node bench/session_load.mjs N [N ...] [--idle-window=SECONDS] [--transports=wss,ws]
import { createRequire } from 'node:module';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';

const require = createRequire(new URL('../tests/package.json', import.meta.url));
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const { initAuthCreds, BufferJSON } = await import(require.resolve('baileys'));
const { startSim, waitFor, requiredEnv, freePort } = await import('../tests/interop/harness.mjs');

const args = process.argv.slice(2);
const sizes = args.filter((a) => /^\d+$/.test(a)).map(Number);
const option = (name, dflt) => (args.find((a) => a.startsWith(`--${name}=`)) ?? `--${name}=${dflt}`).split('=')[1];
const idleWindow = Number(option('idle-window', 20));
const transports = option('transports', 'wss,ws').split(',');
const pageSize = 4096;
const ticks = 100;  // USER_HZ on Linux

const pkg = protoLoader.loadSync('wasentinel/session/v1/session.proto', {
  includeDirs: [requiredEnv('PROTO_DIR')], keepCase: true, enums: String, longs: Number, defaults: true,
});
const { SessionService } = grpc.loadPackageDefinition(pkg).wasentinel.session.v1;
const rss = (pid) => Number(readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]) * pageSize;
const cpuSeconds = (pid) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / ticks;  // utime + stime
};

const running = new Set();  // killed on the way out, whatever happened
const simCert = new URL('../tests/wa-sim/testdata/tls-cert.pem', import.meta.url).pathname;
const simKey = new URL('../tests/wa-sim/testdata/tls-key.pem', import.meta.url).pathname;

async function service(sim, dbUrl, key, waUrl) {
  const port = await freePort();
  const proc = spawn(requiredEnv('SESSION_SERVICE'), [
    `--grpc_listen=127.0.0.1:${port}`, '--metrics_listen=127.0.0.1:0', `--database_url=${dbUrl}`, `--auth_state_key=${key}`,
    `--wa_url=${waUrl}`, `--wa_version_url=${sim.versionUrl}`, `--wa_root_key=${sim.rootPublicKey.toString('hex')}`,
    '--restore_per_second=0', '--log_level=warn',
  ], { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, SSL_CERT_FILE: simCert } });
  const exited = new Promise((r) => proc.on('exit', r));
  const client = new SessionService(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const call = (m, req) => new Promise((res, rej) =>
    client[m](req, { deadline: Date.now() + 60000 }, (e, r) => (e ? rej(e) : res(r))));
  running.add(proc);
  const stop = async () => { proc.kill('SIGTERM'); await exited; running.delete(proc); client.close(); };
  return { proc, call, stop, client, port, started: Date.now() };
}
const connectedCount = async (svc) => {
  try {
    const h = await svc.call('GetHealth', {});
    return h.counts.find((c) => c.state === 'SESSION_STATE_CONNECTED')?.count ?? 0;
  } catch { return -1; }
};

const nowMs = () => performance.timeOrigin + performance.now();
const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];

// 100 watchers; `changes` sessions disconnected and connected again one after another; the
// delay from each event's `at` to its arrival at every watcher.
async function watcherLatency(svc, ids, watchers = 100, changes = 20) {
  const lat = [];
  let warm = 0;
  const streams = [];
  const perWatcher = new Array(watchers).fill(0);
  const ended = [];
  for (let w = 0; w < watchers; w++) {
    const st = svc.client.WatchSessionEvents({});
    st.on('data', (e) => {
      if (e.session_id === 'warm-up') return;
      perWatcher[w] += 1;
      lat.push(nowMs() - (Number(e.at.seconds) * 1000 + e.at.nanos / 1e6));
    });
    st.on('error', (err) => { if (err.code !== 1) ended.push(`${w}: ${err.code} ${err.details}`); });
    st.on('metadata', () => { warm += 1; });
    streams.push(st);
  }
  // A stream is open once its headers arrived.
  await waitFor(() => warm === watchers, { timeoutMs: 30000, what: 'watch streams to open' });
  let expected = 0;
  for (let i = 0; i < changes; i++) {
    const id = ids[i % ids.length];
    await svc.call('Disconnect', { id });
    expected += watchers;  // DISCONNECTED
    const seen = () => `${lat.length} of ${expected} events; per watcher min ${Math.min(...perWatcher)} ` +
      `max ${Math.max(...perWatcher)}; streams ended: ${ended.slice(0, 3).join('; ') || 'none'}`;
    await waitFor(() => lat.length >= expected, { timeoutMs: 30000, what: `DISCONNECTED at every watcher (change ${i})`, detail: seen });
    await svc.call('Connect', { id });
    expected += 2 * watchers;  // CONNECTING, CONNECTED
    await waitFor(() => lat.length >= expected, { timeoutMs: 30000, what: `CONNECTED at every watcher (change ${i})`, detail: seen });
  }
  for (const st of streams) st.cancel();
  lat.sort((a, b) => a - b);
  return { watchers, events: lat.length, p50: Number(percentile(lat, 0.5).toFixed(3)), p99: Number(percentile(lat, 0.99).toFixed(3)) };
}

// Row writes of one database and the server's WAL position, for the idle window's figures.
const psql = (url, sql) => {
  const r = spawnSync('psql', ['-qAtX', url, '-c', sql], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`psql: ${r.stderr}`);
  return r.stdout.trim();
};
const pgCounters = (url) => {
  const [writes, wal] = psql(url, 'SELECT tup_inserted + tup_updated + tup_deleted, ' +
    "pg_current_wal_lsn() - '0/0' FROM pg_stat_database WHERE datname = current_database()").split('|');
  const tables = Object.fromEntries(psql(url, 'SELECT relname, n_tup_ins + n_tup_upd + n_tup_del ' +
    'FROM pg_stat_user_tables').split('\n').filter(Boolean).map((l) => l.split('|')).map(([t, n]) => [t, Number(n)]));
  return { writes: Number(writes), wal: Number(wal), tables, at: Date.now() };
};

// Established devices: WhatsApp already holds their pre-keys (no 812-key upload per login).
const sim = await startSim([`--tls_cert=${simCert}`, `--tls_key=${simKey}`, '--tls_port=0', '--prekey_count=50']);
const key = randomBytes(32).toString('hex');
try {
  // Baseline: an idle session-service with no sessions.
  const base = await service(sim, requiredEnv('BASELINE_DATABASE_URL'), key, sim.tlsUrl);
  await waitFor(async () => (await connectedCount(base)) >= 0, { timeoutMs: 30000, what: 'baseline service' });
  const baselineRss = rss(base.proc.pid);
  await base.stop();

  for (const n of sizes) {
    const dbUrl = requiredEnv(`DATABASE_URL_${n}`);
    // Create the sessions (they connect as they are created), then restart to time the restore.
    let svc = await service(sim, dbUrl, key, sim.tlsUrl);
    await waitFor(async () => (await connectedCount(svc)) >= 0, { timeoutMs: 30000, what: 'service' });
    for (let i = 0; i < n; i += 50) {
      await Promise.all(Array.from({ length: Math.min(50, n - i) }, async (_, k) => {
        const creds = initAuthCreds();
        creds.me = { id: `1999${String(n).padStart(5, '0')}${String(i + k).padStart(5, '0')}:2@s.whatsapp.net` };
        const json = JSON.stringify(creds, BufferJSON.replacer);
        await sim.post('/devices', { creds: JSON.parse(json) });
        await svc.call('CreateSession', { tenant_id: `bench-${n}-${i + k}`, creds_json: json });
      }));
    }
    await waitFor(async () => (await connectedCount(svc)) === n,
      { timeoutMs: 600000, intervalMs: 200, what: `${n} created sessions connected` });
    await svc.stop();

    for (const [transport, waUrl] of [['wss', sim.tlsUrl], ['ws', sim.url]].filter(([t]) => transports.includes(t))) {
      svc = await service(sim, dbUrl, key, waUrl);
      await waitFor(async () => (await connectedCount(svc)) === n,
        { timeoutMs: 600000, what: `${n} sessions restored over ${transport}://`, intervalMs: 50 });
      const connectAll = (Date.now() - svc.started) / 1000;
      // Let the connect burst settle, and the heap trim (every 10 s) hand the handshakes'
      // transient buffers back, before measuring the idle state.
      await new Promise((r) => setTimeout(r, 12000));
      const rssN = rss(svc.proc.pid);
      const cpu0 = cpuSeconds(svc.proc.pid);
      const pg0 = pgCounters(dbUrl);
      await new Promise((r) => setTimeout(r, idleWindow * 1000));
      const pg1 = pgCounters(dbUrl);
      const cpuPct = (100 * (cpuSeconds(svc.proc.pid) - cpu0)) / ((pg1.at - pg0.at) / 1000);
      const windowS = (pg1.at - pg0.at) / 1000;
      const stats = await sim.get('/stats');
      const still = await connectedCount(svc);
      const row = {
        benchmark: 'session_load', sessions: n, transport,
        connect_all_seconds: Number(connectAll.toFixed(3)),
        rss_bytes: rssN, baseline_rss_bytes: baselineRss,
        rss_bytes_per_session: Math.round((rssN - baselineRss) / n),
        idle_cpu_percent: Number(cpuPct.toFixed(3)), idle_window_seconds: idleWindow,
        connected_after_idle: still, sim_pings_answered: stats.pings_answered,
        postgres: {
          row_writes_per_second: Number(((pg1.writes - pg0.writes) / windowS).toFixed(1)),
          by_table: Object.fromEntries(Object.entries(pg1.tables)
            .map(([t, n]) => [t, Number(((n - (pg0.tables[t] ?? 0)) / windowS).toFixed(2))]).filter(([, r]) => r > 0)),
          wal_bytes_per_hour: Math.round(((pg1.wal - pg0.wal) / windowS) * 3600),
        },
      };
      if (transport === 'wss') {
        const ids = (await svc.call('ListSessions', { page_size: 100 })).sessions.map((x) => x.id);
        row.watcher_latency_ms = await watcherLatency(svc, ids);
        const rate = spawnSync(requiredEnv('GET_SESSION_RATE'), [`--addr=127.0.0.1:${svc.port}`, '--seconds=10'],
          { encoding: 'utf8' });
        if (rate.status !== 0) throw new Error(`get_session_rate: ${rate.stderr}`);
        const getSession = JSON.parse(rate.stdout);
        row.get_session = { calls_per_second: getSession.calls_per_second, p50_us: getSession.p50_us,
          p99_us: getSession.p99_us, errors: getSession.errors };
      }
      await svc.stop();
      console.log(JSON.stringify(row));
    }
  }
} finally {
  for (const proc of running) proc.kill('SIGKILL');
  sim.stop();
}
