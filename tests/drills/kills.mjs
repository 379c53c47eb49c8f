// Kill drills under load, with the real binaries on loopback: two session-service replicas
// (lease TTL 3 s), health-monitor and alert-service over a PostgreSQL server of this drill's own,
// wa-sim, and a webhook receiver that verifies every signature. The load of the PostgreSQL
// drill runs throughout (tests/drills/postgres.mjs: drops every 400 ms, a resuming watcher,
// calls and alerts every 100 ms), and a sampler asks wa-sim every 20 ms which devices have a
// live socket.
//
//   session-service   SIGKILL of the replica holding half the sessions: the other takes them
//                     within the lease time; the killed one restarts and rejoins
//   alert-service     SIGKILL mid-burst of 200 alerts; restarted, it delivers the rest
//   health-monitor    SIGKILL; restarted, its cursor resumes where the stream is
//   PostgreSQL        SIGKILL of the postmaster and every backend; crash recovery on restart
//
// Then: no device ever had two live sockets; every state change is in session_events in order
// and the watcher (resuming on the other replica when its own dies) saw each once; every alert
// RaiseAlert accepted was delivered at least once, a repeat only with the same webhook-id; the
// monitor's cursor reached the last event.
//
// Environment: WA_SIM, SESSION_SERVICE, HEALTH_MONITOR, ALERT_SERVICE, PROTO_DIR. TAP-like
// lines; exit code 0 only if every check passed.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sampleDoubleSockets, startSim, waitFor } from '../interop/harness.mjs';
import { startWebhookReceiver } from '../e2e/api.mjs';
import {
  addSessions, check, checkEventLog, checkMonitorCursor, healthOf, resumingWatcher, startPostgres, startSystem, summary,
} from './system.mjs';

const LEASE_TTL_S = 3;
const SESSIONS = 8;
const work = mkdtempSync(join(tmpdir(), 'was-drill-kills-'));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const delivered = new Map();  // webhook-id → times
const keyOfId = new Map();    // webhook-id → dedup key
let badSignatures = 0;
const receiver = await startWebhookReceiver(({ id, data, verified }) => {
  if (!verified) badSignatures += 1;
  delivered.set(id, (delivered.get(id) ?? 0) + 1);
  keyOfId.set(id, data.dedup_key);
});
const deliveredKeys = () => new Set(keyOfId.values());

const pg = await startPostgres(process.env.WAS_DRILL_PG_DIR || `${work}-pg`);  // not in `work`: postgres cannot enter it
const sim = await startSim();
let system = null;
let exitCode = 1;
try {
  system = await startSystem({ databaseUrl: pg.url, sim, sessionReplicas: 2, leaseTtl: `${LEASE_TTL_S}s` });
  const s = system.services;
  const { secret } = await s.alert.call('CreateWebhookEndpoint', { url: receiver.url(), description: 'drill' });
  receiver.trust(secret);
  const sessions = [
    ...await addSessions(s.session, sim, work, SESSIONS / 2, '1555004'),
    ...await addSessions(s.session2, sim, join(work, 'b'), SESSIONS / 2, '1555005'),
  ];
  const stateOf = async (id) => (await s.session2.call('GetSession', { id })).session;
  const allConnected = (timeoutMs) => waitFor(async () => {
    try { return (await Promise.all(sessions.map((x) => stateOf(x.id)))).every((st) => st.state === 'SESSION_STATE_CONNECTED'); } catch { return false; }
  }, { timeoutMs, intervalMs: 100, what: 'every session CONNECTED' }).then(() => true, () => false);
  check(`${SESSIONS} sessions CONNECTED over two replicas`, await allConnected(20000));
  const watcher = resumingWatcher(s.session.client, s.session2.client);

  // No device with two live sockets, ever.
  const sampler = sampleDoubleSockets(sim);

  // The load.
  let loading = true;
  const accepted = [];
  let alertNo = 0;
  const pick = () => sessions[Math.floor(Math.random() * sessions.length)];
  const raise = async () => {
    const key = `drill/${alertNo += 1}`;
    try {
      await s.alert.call('RaiseAlert', {
        dedup_key: key, event_type: 'session.critical', severity: 'SEVERITY_WARNING',
        summary: `drill alert ${alertNo}`, session: { session_id: pick().id, tenant_id: 'acme' },
      });
      accepted.push(key);
    } catch { /* not raised: the caller was told */ }
  };
  const dropper = (async () => {
    while (loading) {
      await sim.post(`/connections/${pick().jid}/drop`, {}).catch(() => {});
      await sleep(400);
    }
  })();
  const caller = (async () => {
    while (loading) {
      await s.session2.call('GetSession', { id: pick().id }).catch(() => {});
      await raise();
      await sleep(100);
    }
  })();
  await sleep(1500);

  // 1. session-service: the replica that created half the sessions.
  const killedAt = Date.now();
  s.session.proc.kill('SIGKILL');
  await s.session.exited;
  const moved = await allConnected((LEASE_TTL_S * 4 / 3 + 3) * 1000);
  const owners = await Promise.all(sessions.map((x) => stateOf(x.id).catch(() => null)));
  check('session-service SIGKILL: every session CONNECTED on the other replica within the lease time',
    moved && owners.every((o) => o?.owner === 'session2'), `${Date.now() - killedAt} ms, lease ${LEASE_TTL_S} s`);
  await s.session.restart();
  check('… the killed replica restarts and rejoins', (await healthOf(s.session.port)) === 'SERVING');

  // 2. alert-service, mid-burst: 200 alerts raised, killed once some 50 of them arrived.
  const burstFrom = accepted.length;
  await Promise.all(Array.from({ length: 200 }, () => raise()));
  const burstKeys = accepted.slice(burstFrom);
  const arrived = () => { const d = deliveredKeys(); return burstKeys.filter((k) => d.has(k)).length; };
  await waitFor(() => arrived() >= 50, { timeoutMs: 20000, intervalMs: 5 }).catch(() => {});
  const atKill = arrived();
  s.alert.proc.kill('SIGKILL');
  await s.alert.exited;
  await s.alert.restart();
  check('alert-service SIGKILL mid-burst: restarted', (await healthOf(s.alert.port)) === 'SERVING',
    `${atKill} of ${burstKeys.length} had arrived at the kill`);

  // 3. health-monitor.
  s.monitor.proc.kill('SIGKILL');
  await s.monitor.exited;
  await s.monitor.restart();
  check('health-monitor SIGKILL: restarted', (await healthOf(s.monitor.port)) === 'SERVING');

  // 4. PostgreSQL: the postmaster and every backend at once, then crash recovery.
  pg.kill();
  pg.resume();
  const ready = await waitFor(async () => (await Promise.all(
    [s.session, s.session2, s.monitor, s.alert].map((x) => healthOf(x.port)))).every((h) => h === 'SERVING'),
  { timeoutMs: 30000, intervalMs: 100 }).then(() => true, () => false);
  check('PostgreSQL SIGKILL: after crash recovery every service is ready again', ready);
  check('… and every session CONNECTED', await allConnected(30000));

  // Nothing lost.
  loading = false;
  await Promise.all([dropper, caller]);
  check('every session CONNECTED once the load stops', await allConnected(30000));
  const { samples, doubles } = await sampler.stop();
  check('no device ever had two live sockets', doubles === 0 && samples > 100, `${samples} samples, ${doubles} doubles`);
  const last = await checkEventLog(pg, watcher, {
    minEvents: SESSIONS * 5, watcherSaw: 'the watcher, resuming on the other replica, saw' });
  await waitFor(() => { const d = deliveredKeys(); return accepted.every((k) => d.has(k)); },
    { timeoutMs: 60000, intervalMs: 100 }).catch(() => {});
  const d = deliveredKeys();
  const undelivered = accepted.filter((k) => !d.has(k));
  const repeats = [...delivered.values()].filter((n) => n > 1).length;
  check('every alert RaiseAlert accepted was delivered at least once (a repeat keeps its webhook-id)',
    undelivered.length === 0 && badSignatures === 0 && accepted.length > 50,
    `${accepted.length} accepted, ${undelivered.length} undelivered, ${repeats} delivered twice, ${badSignatures} bad signatures`);
  await checkMonitorCursor(s.monitor, last, "the restarted monitor's cursor reached the last event");
  exitCode = summary();
} catch (e) {
  console.error(e);
  summary();
} finally {
  await system?.stop();
  sim.stop();
  receiver.close();
  pg.stop();
  rmSync(work, { recursive: true, force: true });
  process.exit(exitCode);
}
