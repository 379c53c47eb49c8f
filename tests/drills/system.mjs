// What the drills share: a PostgreSQL server of their own (so restarting or killing it touches
// no other test), the three services started from their binaries on loopback with settings
// that make faults show within seconds, linked devices from Baileys' creds.json files, the
// services' grpc.health.v1 answers, and a check() that prints TAP-like lines.
//
// Environment: WA_SIM, SESSION_SERVICE, HEALTH_MONITOR, ALERT_SERVICE, PROTO_DIR.
import { execFile, execFileSync, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import { useMultiFileAuthState } from 'baileys';
import { requiredEnv, waitFor, freePort } from '../interop/harness.mjs';
import { AlertService, MonitorService, SessionService, unary } from '../e2e/api.mjs';

const pgServer = new URL('../support/pg-server', import.meta.url).pathname;
const { Health } = grpc.loadPackageDefinition(protoLoader.loadSync('grpc/health/v1/health.proto', {
  includeDirs: [requiredEnv('PROTO_DIR')], keepCase: true, enums: String, defaults: true,
})).grpc.health.v1;

export const checks = [];
/// Prints one TAP-like line and remembers the outcome; answers `ok`.
export function check(name, ok, detail = '') {
  checks.push({ name, ok });
  console.log(`${ok ? 'ok' : 'not ok'} ${checks.length} - ${name}${detail ? ` # ${detail}` : ''}`);
  return ok;
}
/// Prints the summary line; answers the exit code (0 only if every check passed).
export function summary() {
  const failed = checks.filter((c) => !c.ok).length;
  console.log(`${checks.length - failed} passed, ${failed} failed`);
  return failed === 0 && checks.length > 0 ? 0 : 1;
}

/// A throwaway PostgreSQL server in `dir` on a free port (tests/support/pg-server), with the
/// faults the drills apply to it. `query(sql)` answers the rows as arrays of strings. Commits are
/// synchronous, as in production, so a killed server keeps what it committed.
export async function startPostgres(dir) {
  const port = await freePort();
  const url = execFileSync(pgServer, ['start', dir, String(port)],
    { encoding: 'utf8', env: { ...process.env, WAS_PG_SYNCHRONOUS_COMMIT: 'on' } }).trim();
  const run = (cmd) => execFileSync(pgServer, [cmd, dir], { stdio: ['ignore', 'ignore', 'inherit'] });
  // Asynchronous, without spawnSync (node once aborted inside it under load).
  const query = async (sql) => (await promisify(execFile)('psql', ['-qAtX', '-F', '\t', url, '-c', sql],
    { encoding: 'utf8', maxBuffer: 64 << 20 })).stdout.split('\n').filter((l) => l !== '').map((l) => l.split('\t'));
  return {
    url,
    query,
    restart: () => run('restart'),
    halt: () => run('halt'),
    resume: () => run('resume'),
    kill: () => run('kill'),
    /// Ends every client connection but psql's own (as an operator or a failover would) and
    /// waits until their backends are gone; answers how many there were.
    terminateAll: async () => {
      // In the select list, so that only the rows WHERE keeps are terminated (psql's own not).
      const pids = (await query("SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE " +
        "pid <> pg_backend_pid() AND backend_type = 'client backend'")).map((r) => r[0]);
      if (pids.length) {
        await waitFor(async () => (await query(`SELECT count(*) FROM pg_stat_activity WHERE pid IN (${pids.join(',')})`))[0][0] === '0',
          { timeoutMs: 5000, intervalMs: 50, what: 'terminated backends to exit' });
      }
      return pids.length;
    },
    stop: () => run('stop'),
  };
}

function startProcess(binary, args) {
  const proc = spawn(binary, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  return { proc, exited };
}

/// grpc.health.v1 Check of `service` ("" readiness, "liveness") at `port`: 'SERVING',
/// 'NOT_SERVING', or 'UNREACHABLE'.
export function healthOf(port, service = '') {
  const client = new Health(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return new Promise((resolve) => client.Check({ service }, { deadline: Date.now() + 2000 }, (err, res) => {
    client.close();
    resolve(err ? 'UNREACHABLE' : res.status);
  }));
}

/// The three services over `databaseUrl` and wa-sim `sim`, each answering before this returns.
/// Every service is { name, port, metricsPort, proc, exited, client, call(method, req),
/// restart() }. `sessionReplicas` 2 adds `session2`, a second session-service replica, which the
/// monitor watches (so the first can be killed under it); `leaseTtl` is their --lease_ttl.
export async function startSystem({ databaseUrl, sim, sessionReplicas = 1, leaseTtl = '30s',
  logLevel = process.env.WAS_E2E_LOG_LEVEL || 'warn' }) {
  const key = randomBytes(32).toString('hex');
  // Each port is picked just before its service starts (another test may take a port picked
  // earlier); the monitor's arguments name the others' ports, so it starts last.
  const ports = {};
  const common = (name, port, metricsPort) => [`--replica_id=${name}`, `--grpc_listen=127.0.0.1:${port}`,
    `--metrics_listen=127.0.0.1:${metricsPort}`, `--database_url=${databaseUrl}`, `--log_level=${logLevel}`];
  const specs = {
    alert: {
      binary: requiredEnv('ALERT_SERVICE'), Client: AlertService, ready: 'ListWebhookEndpoints',
      args: ['--secret_key=' + key, '--allow_private_targets', '--dispatchers=2', '--webhook_rate_per_second=0',
        '--webhook_timeout=2s', '--claim_lease=3s', '--delivery_backoff=500ms,1s,1s,2s,2s,5s,5s,10s,10s,10s'],
    },
    session: {
      binary: requiredEnv('SESSION_SERVICE'), Client: SessionService, ready: 'GetHealth',
      args: [`--auth_state_key=drill:${key}`, `--wa_url=${sim.url}`, `--wa_version_url=${sim.versionUrl}`,
        `--wa_root_key=${sim.rootPublicKey.toString('hex')}`, '--keepalive_interval=2s,2s',
        '--keepalive_timeout=2s', '--keepalive_max_silence=6s', '--reconnect_backoff=200ms,500ms,1s',
        '--restore_per_second=0', `--lease_ttl=${leaseTtl}`],
    },
    monitor: {
      binary: requiredEnv('HEALTH_MONITOR'), Client: MonitorService, ready: 'GetMonitorStatus',
      args: () => [`--session_service=127.0.0.1:${sessionReplicas > 1 ? ports.session2 : ports.session}`,
        `--alert_service=127.0.0.1:${ports.alert}`, '--light_interval=1s', '--fast_interval=1s', '--deep_interval=3s', '--unreachable_backoff=1s',
        '--call_timeout=4s', '--leader_poll=300ms', '--watch_backoff=300ms', '--reconnect_after=60s'],
    },
  };
  const services = {};
  specs.session2 = specs.session;
  // Starts `kind` on its port (a new one the first time); a port taken meanwhile by another
  // process makes the service exit at once, and a first start then tries another port.
  const start = async (kind, attempt = 0) => {
    const spec = specs[kind];
    const restart = ports[kind] !== undefined && attempt === 0;
    if (!restart) ports[kind] = await freePort();
    const metricsPort = await freePort();
    const args = typeof spec.args === 'function' ? spec.args() : spec.args;
    const p = startProcess(spec.binary, [...common(kind, ports[kind], metricsPort), ...args]);
    const client = new spec.Client(`127.0.0.1:${ports[kind]}`, grpc.credentials.createInsecure());
    const call = unary(client);
    let exited = false;
    p.exited.then(() => { exited = true; });
    const up = await waitFor(async () => {
      if (exited) return 'exited';
      try { await call(spec.ready); return 'up'; } catch { return false; }
    }, { timeoutMs: 30000, what: `${kind} to answer` });
    if (up === 'exited') {
      client.close();
      if (attempt < 3) return start(kind, attempt + 1);
      throw new Error(`${kind} exited while starting`);
    }
    services[kind] = { name: kind, port: ports[kind], metricsPort, client, call, ...p,
      restart: () => start(kind) };
    return services[kind];
  };
  await start('alert');
  await start('session');
  if (sessionReplicas > 1) await start('session2');
  await start('monitor');
  return {
    services,
    stop: async () => {
      for (const s of Object.values(services)) s.proc.kill('SIGTERM');
      await Promise.all(Object.values(services).map((s) => s.exited));
    },
  };
}

/// Links `n` devices at wa-sim and creates their sessions at session-service: answers
/// [{ id, jid }] (jid as wa-sim names connections, "user:device").
export async function addSessions(session, sim, work, n, prefix = '1555003') {
  const out = [];
  for (let i = 0; i < n; i += 1) {
    const dir = join(work, `device-${i}`);
    mkdirSync(dir, { recursive: true });
    const { state, saveCreds } = await useMultiFileAuthState(dir);
    const jid = `${prefix}${1000 + i}:${2 + i}@s.whatsapp.net`;
    state.creds.me = { id: jid, name: `Shop ${i}` };
    await saveCreds();
    const credsJson = readFileSync(join(dir, 'creds.json'), 'utf8');
    await sim.post('/devices', { creds: JSON.parse(credsJson) });
    const { session: s } = await session.call('CreateSession', {
      tenant_id: 'acme', session_name: `shop-${prefix}-${i}`, account_name: `Shop ${i}`, creds_json: credsJson,
    });
    out.push({ id: s.id, jid: jid.split('@')[0] });
  }
  return out;
}

/// A WatchSessionEvents stream that resumes after the last sequence it saw whenever it ends,
/// as a client following the API's advice would, on the next of `clients` (one replica each).
/// `events` holds everything seen, in order.
export function resumingWatcher(...clients) {
  const w = { events: [], restarts: 0, stopped: false, call: null };
  const open = () => {
    const client = clients[w.restarts % clients.length];
    w.call = client.WatchSessionEvents({ after_sequence: w.events.at(-1)?.sequence ?? 0 });
    w.call.on('data', (e) => w.events.push({ ...e, seenAt: Date.now() }));
    w.call.on('error', () => {});
    w.call.on('status', () => {
      if (w.stopped) return;
      w.restarts += 1;
      setTimeout(open, 300);
    });
  };
  open();
  w.stop = () => { w.stopped = true; w.call.cancel(); };
  return w;
}

/// The event-log invariants every drill ends with, once the load stopped: every state change is
/// in `session_events` in order (each event starts where the session's previous one ended, at
/// least `minEvents` of them), and `watcher` (resumingWatcher) saw each exactly once, in order,
/// `watcherSaw` naming how. Stops the watcher; answers the last sequence.
export async function checkEventLog(pg, watcher, { minEvents, watcherSaw = 'the resuming watcher saw' }) {
  const rows = await pg.query('SELECT sequence, session_id, from_state, to_state, reason, at FROM session_events ORDER BY sequence');
  const last = Number(rows.at(-1)[0]);
  await waitFor(() => (watcher.events.at(-1)?.sequence ?? 0) >= last, { timeoutMs: 15000 }).catch(() => {});
  watcher.stop();
  const bySession = new Map();
  const breaks = [];
  for (const row of rows) {
    const [seq, id, from] = row;
    const prev = bySession.get(id);
    // Each break names both events, so that a failure says which change went missing.
    if (prev !== undefined && prev[3] !== from) {
      breaks.push(`#${prev[0]} ${prev[2]}→${prev[3]} (${prev[4]}, ${prev[5]}) then #${seq} ` +
        `${row[2]}→${row[3]} (${row[4]}, ${row[5]}) of ${id}`);
    }
    bySession.set(id, row);
  }
  check('session_events: every state change in order, each starting where the last ended',
    breaks.length === 0 && rows.length > minEvents,
    `${rows.length} events, ${breaks.length} breaks${breaks.length ? `: ${breaks.slice(0, 3).join('; ')}` : ''}`);
  const seen = watcher.events.map((e) => e.sequence);
  const seenSet = new Set(seen);
  const missing = rows.filter((r) => !seenSet.has(Number(r[0]))).length;
  check(`${watcherSaw} every event once, in order`,
    seen.every((x, i) => i === 0 || x > seen[i - 1]) && missing === 0 && seen.length === rows.length,
    `${seen.length} seen of ${rows.length}, ${missing} missing, ${watcher.restarts} resumes`);
  return last;
}

/// The monitor's cursor reaches event `last` (within 15 s).
export async function checkMonitorCursor(monitor, last, name = "the monitor's cursor reached the last event") {
  let status = null;
  await waitFor(async () => (status = await monitor.call('GetMonitorStatus')).last_event_sequence >= last,
    { timeoutMs: 15000, intervalMs: 200 }).catch(() => {});
  check(name, status?.last_event_sequence >= last, `${status?.last_event_sequence} of ${last}`);
}
