// PostgreSQL drills under load, with the real binaries on loopback: session-service,
// health-monitor and alert-service over a PostgreSQL server of this drill's own, wa-sim, and a
// webhook receiver that verifies every signature. Load runs throughout: wa-sim drops a session
// every 400 ms (session-service reconnects it), a watcher follows WatchSessionEvents and resumes
// after the last sequence it saw, and every 100 ms a round of calls reads sessions, reads the
// monitor and raises an alert.
//
//   restart     pg_ctl restart -m fast
//   terminate   pg_terminate_backend of every client connection (the server stays up)
//   outage      PostgreSQL stopped for 30 s, then started again
//
// For each: readiness (grpc.health "" ) goes NOT_SERVING while PostgreSQL is down and SERVING
// after; calls during an outage fail fast with UNAVAILABLE naming PostgreSQL; once readiness
// is back, no call fails at all (no dead pooled connection is handed out). At the end: every
// state change is in session_events in order (each event starts where the session's previous
// one ended) and the watcher saw each exactly once; every alert RaiseAlert accepted was
// delivered, none twice; the monitor's cursor reached the last event.
//
// Environment: WA_SIM, SESSION_SERVICE, HEALTH_MONITOR, ALERT_SERVICE, PROTO_DIR. TAP-like
// lines; exit code 0 only if every check passed. WAS_DRILL_OUTAGE_S shortens the outage.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSim, waitFor } from '../interop/harness.mjs';
import { startWebhookReceiver } from '../e2e/api.mjs';
import {
  addSessions, check, checkEventLog, checkMonitorCursor, healthOf, resumingWatcher, startPostgres, startSystem, summary,
} from './system.mjs';

const OUTAGE_S = Number(process.env.WAS_DRILL_OUTAGE_S || 30);
const SESSIONS = 6;
const work = mkdtempSync(join(tmpdir(), 'was-drill-pg-'));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const delivered = new Map();  // webhook-id → times
const deliveredKeys = new Set();
const idsOfKey = new Map();  // dedup key → webhook-ids it arrived under
let badSignatures = 0;
const receiver = await startWebhookReceiver(({ id, data, verified }) => {
  if (!verified) badSignatures += 1;
  delivered.set(id, (delivered.get(id) ?? 0) + 1);
  if (data.dedup_key) {
    deliveredKeys.add(data.dedup_key);
    idsOfKey.set(data.dedup_key, (idsOfKey.get(data.dedup_key) ?? new Set()).add(id));
  }
});

const pg = await startPostgres(process.env.WAS_DRILL_PG_DIR || `${work}-pg`);  // not in `work`: postgres cannot enter it
const sim = await startSim();
let system = null;
let exitCode = 1;
try {
  system = await startSystem({ databaseUrl: pg.url, sim });
  const { session, monitor, alert } = system.services;
  const all = [session, monitor, alert];
  const { secret } = await alert.call('CreateWebhookEndpoint', { url: receiver.url(), description: 'drill' });
  receiver.trust(secret);
  const sessions = await addSessions(session, sim, work, SESSIONS);
  const stateOf = async (id) => (await session.call('GetSession', { id })).session.state;
  const allConnected = (timeoutMs) => waitFor(async () => {
    try { return (await Promise.all(sessions.map((s) => stateOf(s.id)))).every((st) => st === 'SESSION_STATE_CONNECTED'); } catch { return false; }
  }, { timeoutMs, intervalMs: 100, what: 'every session CONNECTED' }).then(() => true, () => false);
  check(`${SESSIONS} sessions CONNECTED`, await allConnected(20000));
  // The monitor learns of a session from its events; the load asks it about every session, so
  // it starts once the monitor has seen each.
  const monitorSeesAll = await waitFor(async () => {
    try {
      await Promise.all(sessions.map((s) => monitor.call('GetSessionHealth', { session_id: s.id })));
      return true;
    } catch { return false; }
  }, { timeoutMs: 20000, intervalMs: 100, what: 'the monitor to see every session' }).then(() => true, () => false);
  check('the monitor has seen every session', monitorSeesAll);
  const watcher = resumingWatcher(session.client);

  // The load, and every call's outcome by phase.
  let phase = 'warm-up';
  let loading = true;
  const calls = [];
  const accepted = [];  // dedup keys RaiseAlert answered OK
  let alertNo = 0;
  const timed = async (svc, method, req) => {
    const t0 = Date.now();
    const p = phase;
    try {
      const res = await svc.call(method, req);
      calls.push({ phase: p, method, ok: true, ms: Date.now() - t0 });
      return res;
    } catch (e) {
      calls.push({ phase: p, method, ok: false, code: e.code, details: e.details, ms: Date.now() - t0 });
      return null;
    }
  };
  const pick = () => sessions[Math.floor(Math.random() * sessions.length)];
  const dropper = (async () => {
    while (loading) {
      await sim.post(`/connections/${pick().jid}/drop`, {}).catch(() => {});
      await sleep(400);
    }
  })();
  const caller = (async () => {
    while (loading) {
      await timed(session, 'GetSession', { id: pick().id });
      await timed(session, 'ListSessions', { page_size: 10 });
      await timed(monitor, 'GetSessionHealth', { session_id: pick().id });
      const key = `drill/${alertNo += 1}`;
      if (await timed(alert, 'RaiseAlert', {
        dedup_key: key, event_type: 'session.critical', severity: 'SEVERITY_WARNING',
        summary: `drill alert ${alertNo}`, session: { session_id: pick().id, tenant_id: 'acme' },
      })) accepted.push(key);
      await sleep(100);
    }
  })();
  const failures = (p) => calls.filter((c) => c.phase === p && !c.ok);
  const describe = (fs) => fs.slice(0, 3).map((c) => `${c.method}: ${c.code} ${c.details}`).join('; ');
  const readiness = async (want) => (await Promise.all(all.map((s) => healthOf(s.port)))).every((h) => h === want);
  const waitReadiness = (want, timeoutMs) => {
    const t0 = Date.now();
    return waitFor(() => readiness(want), { timeoutMs, intervalMs: 100, what: `readiness ${want}` })
      .then(() => Date.now() - t0, () => null);
  };
  await sleep(2000);
  check('warm-up: every call answered', failures('warm-up').length === 0, describe(failures('warm-up')));

  // After the fault is over: readiness back, then three seconds in which nothing may fail,
  // including the Disconnect/Connect that once met a dead pooled connection.
  const afterwards = async (name) => {
    phase = `${name}:recovering`;
    const back = await waitReadiness('SERVING', 20000);
    check(`${name}: readiness SERVING again at all three services`, back !== null, `${back} ms`);
    phase = `${name}:after`;
    const target = pick();
    await timed(session, 'Disconnect', { id: target.id });
    await timed(session, 'Connect', { id: target.id });
    await sleep(3000);
    // Only calls made after the fault was applied are looked at (one in flight while its
    // backend was terminated or the server went down fails, as it must): none of them may
    // meet a connection that died while pooled.
    const dead = calls.filter((c) => (c.phase === `${name}:recovering` || c.phase === `${name}:after`) && !c.ok &&
      /not connected|server closed|terminating connection|client encoding/i.test(c.details ?? ''));
    check(`${name}: no call met a dead pooled connection`, dead.length === 0, describe(dead));
    const after = calls.filter((c) => c.phase === `${name}:after`);
    check(`${name}: every call after readiness came back answered`,
      failures(`${name}:after`).length === 0 && after.length > 10,
      `${after.length} calls; ${describe(failures(`${name}:after`))}`);
  };

  // 1. A fast restart.
  phase = 'restart:fault';
  pg.restart();
  await afterwards('restart');

  // 2. pg_terminate_backend of every client connection.
  phase = 'terminate:fault';
  const terminated = await pg.terminateAll();
  check('terminate: every client connection ended', terminated >= 3, `${terminated} backends terminated`);
  await afterwards('terminate');

  // 3. An outage.
  phase = 'outage:fault';
  const downAt = Date.now();
  pg.halt();
  const unready = await waitReadiness('NOT_SERVING', 10000);
  check('outage: readiness NOT_SERVING at all three within 2 database checks', unready !== null && unready <= 5000,
    `${unready} ms`);
  const live = await Promise.all(all.map((s) => healthOf(s.port, 'liveness')));
  check('outage: liveness stays SERVING (no restart for an outage)', live.every((h) => h === 'SERVING'), live.join(','));
  await sleep(Math.max(0, OUTAGE_S * 1000 - (Date.now() - downAt)));
  const during = failures('outage:fault');
  const raiseFailed = during.filter((c) => c.method === 'RaiseAlert');
  check('outage: calls that need PostgreSQL fail with UNAVAILABLE naming it',
    raiseFailed.length > 0 && during.every((c) => c.code === 14 && /postgres/i.test(c.details)),
    `${during.length} failed; ${describe(during.filter((c) => c.code !== 14 || !/postgres/i.test(c.details)))}`);
  const slowest = Math.max(...during.map((c) => c.ms));
  check('outage: … within 5 s each', slowest <= 5000, `slowest ${slowest} ms`);
  pg.resume();
  const resumedAt = Date.now();
  await afterwards('outage');
  const reconnected = await allConnected(45000);
  check('outage: every session CONNECTED again', reconnected, `${Date.now() - resumedAt} ms after PostgreSQL came back`);

  // Nothing lost.
  loading = false;
  await Promise.all([dropper, caller]);
  check('every session CONNECTED once the load stops', await allConnected(30000));
  const last = await checkEventLog(pg, watcher, { minEvents: SESSIONS * 10 });
  await waitFor(() => accepted.every((k) => deliveredKeys.has(k)), { timeoutMs: 60000, intervalMs: 100 }).catch(() => {});
  const undelivered = accepted.filter((k) => !deliveredKeys.has(k));
  // A send made while PostgreSQL could not record it is made again (at least once): the repeat
  // carries the same webhook-id, so a receiver drops it.
  const twice = [...delivered.values()].filter((n) => n > 1).length;
  const newIds = [...idsOfKey.values()].filter((ids) => ids.size > 1).length;
  check('every alert RaiseAlert accepted was delivered, a repeat only under its webhook-id, all signed',
    undelivered.length === 0 && newIds === 0 && badSignatures === 0 && accepted.length > 20,
    `${accepted.length} accepted, ${undelivered.length} undelivered, ${twice} delivered twice, ${newIds} under a new id, ${badSignatures} bad signatures`);
  await checkMonitorCursor(monitor, last);
  const metrics = await (await fetch(`http://127.0.0.1:${session.metricsPort}/metrics`)).text();
  const replaced = Number(metrics.match(/^wasentinel_database_connections_replaced_total (\S+)/m)?.[1]);
  check('session-service counted the dead connections it replaced', replaced > 0, `${replaced}`);
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
