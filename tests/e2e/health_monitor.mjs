// The health-monitor with the real binaries on loopback: PostgreSQL, wa-sim,
// session-service, two health-monitor replicas and alert-service, which delivers every alert to
// a webhook receiver here that verifies its Standard Webhooks signature (the standardwebhooks
// npm package) and counts duplicates.
//
//   A  dropped by wa-sim           → classified at once, reconnected by the monitor, no alert
//   B  blackholed by wa-sim        → probed, the probe fails, reconnected
//   C  conflict (440, replaced)    → CRITICAL, session.manual_intervention, never reconnected
//   D  dropped 3 times, the leading monitor SIGKILLed (the standby takes over; the killed one
//      restarts as standby), dropped a 4th time
//                                  → manual intervention: the hourly budget survived the change
//   E–H  WhatsApp refuses the first login: 403 → session.logged_out; 402 for 6 s →
//        session.temporarily_banned saying until when, no Reconnect, connected by itself after
//        the ban, resolved; 405 → session.client_outdated; 409 → manual intervention
//   P  its phone last seen 5 s ago, with the phone windows shortened to 4 s / 8 s →
//        session.phone_inactive WARNING, then CRITICAL; the phone seen again → resolved
//   session-service SIGKILLed     → one session_service.unreachable alert, status ERROR;
//                                    restarted → resolved, sessions HEALTHY again
// Throughout: no dedup key is raised twice at the same severity.
//
// Environment: WA_SIM, SESSION_SERVICE, HEALTH_MONITOR, ALERT_SERVICE, DATABASE_URL, PROTO_DIR.
// Flags: --demo prints sections, the alerts as they arrive and a summary for people; otherwise
// TAP-like lines. Exit code 0 only if every step was seen.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import grpc from '@grpc/grpc-js';
import { useMultiFileAuthState } from 'baileys';
import { startSim, requiredEnv, waitFor, freePort } from '../interop/harness.mjs';
import { AlertService, MonitorService, SessionService, startWebhookReceiver, unary } from './api.mjs';

const demo = process.argv.includes('--demo');
const say = (...a) => { if (demo) console.log(...a); };
const checks = [];
function check(name, ok, detail = '') {
  checks.push({ name, ok });
  if (demo) console.log(`${ok ? '  ✓' : '  ✗'} ${name}${detail ? ` (${detail})` : ''}`);
  else console.log(`${ok ? 'ok' : 'not ok'} ${checks.length} - ${name}${detail ? ` # ${detail}` : ''}`);
  return ok;
}

// The webhook receiver: every alert as alert-service delivers it, its signature verified.
const raised = [];    // notifications: { dedup_key, event_type, severity, summary, session, id }
const resolved = [];  // resolved notices
const seenIds = new Set();
let duplicates = 0;
let badSignatures = 0;
const receiver = await startWebhookReceiver(({ id, type, data, verified, at }) => {
  if (!verified) badSignatures += 1;
  if (seenIds.has(id)) duplicates += 1;
  seenIds.add(id);
  const alert = { id, dedup_key: data.dedup_key, event_type: type, summary: data.summary,
    severity: `SEVERITY_${data.severity.toUpperCase()}`, session: data.session, at };
  if (data.kind === 'resolved') {
    resolved.push(alert);
    say(`    webhook ← ${type} ${data.dedup_key}`);
  } else {
    raised.push(alert);
    say(`    webhook ← ${type} [${data.severity}]: ${data.summary}`);
  }
});

const work = mkdtempSync(join(tmpdir(), 'was-monitor-'));
const sim = await startSim();
const sealingKey = randomBytes(32).toString('hex');
// WAS_E2E_LOG_LEVEL=info shows what the services did (default: warnings only).
const logLevel = process.env.WAS_E2E_LOG_LEVEL || 'warn';
const sessionPort = await freePort();

function startProcess(binary, args) {
  const proc = spawn(binary, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  return { proc, exited };
}

// A real SMTP server (aiosmtpd) that writes each message it accepts to a file.
const smtpDir = join(work, 'smtp');
const smtp = spawn('/usr/bin/python3', [
  new URL('../support/smtp-sink', import.meta.url).pathname,
  '--dir', join(smtpDir, 'messages'), '--ready', join(smtpDir, 'ready')],
{ stdio: ['ignore', 'inherit', 'inherit'] });
await waitFor(() => existsSync(join(smtpDir, 'ready')), { timeoutMs: 20000, what: 'smtp-sink' });
const smtpPort = Number(readFileSync(join(smtpDir, 'ready'), 'utf8'));
const mails = () => (existsSync(join(smtpDir, 'messages')) ? readdirSync(join(smtpDir, 'messages')) : [])
  .filter((f) => f.endsWith('.json')).sort()
  .map((f) => JSON.parse(readFileSync(join(smtpDir, 'messages', f), 'utf8')));

const alertPort = await freePort();
async function startAlertService() {
  const p = startProcess(requiredEnv('ALERT_SERVICE'), [
    '--replica_id=a1', `--grpc_listen=127.0.0.1:${alertPort}`, '--metrics_listen=',
    `--database_url=${requiredEnv('DATABASE_URL')}`, `--secret_key=${sealingKey}`,
    '--allow_private_targets', '--dispatchers=2', `--smtp_url=smtp://127.0.0.1:${smtpPort}`,
    '--smtp_from=WA Sentinel <alerts@sentinel.example>', `--log_level=${logLevel}`,
  ]);
  const client = new AlertService(`127.0.0.1:${alertPort}`, grpc.credentials.createInsecure());
  const call = unary(client);
  await waitFor(async () => { try { await call('ListWebhookEndpoints'); return true; } catch { return false; } },
    { timeoutMs: 20000, what: 'alert-service to answer' });
  return { ...p, call };
}

async function startSessionService() {
  const p = startProcess(requiredEnv('SESSION_SERVICE'), [
    '--replica_id=s1', `--grpc_listen=127.0.0.1:${sessionPort}`, '--metrics_listen=',
    `--database_url=${requiredEnv('DATABASE_URL')}`, `--auth_state_key=demo:${sealingKey}`,
    `--wa_url=${sim.url}`, `--wa_version_url=${sim.versionUrl}`, `--wa_root_key=${sim.rootPublicKey.toString('hex')}`,
    // Keepalive slow and its own retries late: what the monitor sees and does is under test.
    '--keepalive_interval=60s,60s', '--keepalive_max_silence=5m', '--reconnect_backoff=30s',
    '--restore_per_second=0', `--log_level=${logLevel}`,
  ]);
  const client = new SessionService(`127.0.0.1:${sessionPort}`, grpc.credentials.createInsecure());
  const call = unary(client);
  await waitFor(async () => { try { await call('GetHealth'); return true; } catch { return false; } },
    { timeoutMs: 20000, what: 'session-service to answer' });
  return { ...p, call };
}

// A monitor replica; `lead`: wait until it leads, else until it stands by behind another.
const monitors = [];
async function startMonitor(name, { lead = true } = {}) {
  const port = await freePort();
  const metricsPort = await freePort();
  const p = startProcess(requiredEnv('HEALTH_MONITOR'), [
    `--replica_id=${name}`, `--grpc_listen=127.0.0.1:${port}`,
    `--metrics_listen=127.0.0.1:${metricsPort}`, `--database_url=${requiredEnv('DATABASE_URL')}`,
    `--session_service=127.0.0.1:${sessionPort}`, `--alert_service=127.0.0.1:${alertPort}`,
    '--light_interval=1s', '--fast_interval=1s', '--deep_interval=2s', '--unreachable_backoff=1s',
    '--inbound_silence=3s', '--warning_after=2m', '--critical_after=10m', '--reconnect_after=60s',
    '--call_timeout=4s', '--leader_poll=300ms', '--watch_backoff=300ms', `--log_level=${logLevel}`,
    // WhatsApp's ~14 days, in seconds: only a session whose phone was ever seen is judged.
    '--phone_inactive_warning_after=4s', '--phone_inactive_critical_after=8s',
  ]);
  monitors.push(p);
  const client = new MonitorService(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const call = unary(client);
  await waitFor(async () => {
    try {
      const st = await call('GetMonitorStatus');
      return lead ? st.leader : !st.leader && st.leader_replica !== '' && st.leader_replica !== name;
    } catch { return false; }
  }, { timeoutMs: 20000, what: `${name} to ${lead ? 'lead' : 'stand by'}` });
  return { ...p, name, call, metricsPort };
}

const health = async (monitor, id) => {
  try { return (await monitor.call('GetSessionHealth', { session_id: id })).health; } catch { return null; }
};
const history = async (monitor, id) => monitor.call('ListTransitions', {
  session_id: id, since: { seconds: Math.floor(Date.now() / 1000) - 3600 },
  until: { seconds: Math.floor(Date.now() / 1000) + 60 }, page_size: 1000,
});
const raisedFor = (key) => raised.filter((a) => a.dedup_key === key);

let sessionService = null;
let alertService = null;
let monitor = null;
let exitCode = 1;
try {
  say('— session-service, two health-monitors (one leads; light 1 s, deep 2 s), alert-service with a webhook');
  alertService = await startAlertService();
  const { secret } = await alertService.call('CreateWebhookEndpoint', {
    url: receiver.url(), description: 'e2e receiver',
  });
  receiver.trust(secret);
  sessionService = await startSessionService();
  monitor = await startMonitor('m1');
  let standby = await startMonitor('m2', { lead: false });

  // Linked devices from creds.json files Baileys wrote; `failLogin` makes wa-sim refuse the
  // first login with that <failure>.
  const ids = {};
  const jids = {};
  const addDevice = async (name, i, failLogin = null) => {
    const dir = join(work, `device-${name}`);
    const { state, saveCreds } = await useMultiFileAuthState(dir);
    const jid = `1555002${1000 + i}:${2 + i}@s.whatsapp.net`;
    state.creds.me = { id: jid, name: `Shop ${name}` };
    await saveCreds();
    const credsJson = readFileSync(join(dir, 'creds.json'), 'utf8');
    jids[name] = jid.split('@')[0];  // wa-sim names connections "user:device"
    await sim.post('/devices', { creds: JSON.parse(credsJson) });
    if (failLogin) await sim.post(`/devices/${jids[name]}/fail-login`, failLogin);
    const { session } = await sessionService.call('CreateSession', {
      tenant_id: 'acme', session_name: `shop-${name}`, account_name: `Shop ${name}`, creds_json: credsJson,
      owner_email: 'ops@acme.example',
    });
    ids[name] = session.id;
  };
  for (const [i, name] of ['A', 'B', 'C', 'D'].entries()) await addDevice(name, i);
  const healthyAll = async (m, names, timeoutMs = 20000) => waitFor(async () => {
    const hs = await Promise.all(names.map((n) => health(m, ids[n])));
    return hs.every((h) => h?.level === 'HEALTH_LEVEL_HEALTHY');
  }, { timeoutMs, what: `${names.join(',')} HEALTHY` }).then(() => true, () => false);
  check('four sessions HEALTHY at the monitor', await healthyAll(monitor, ['A', 'B', 'C', 'D']));
  const standbyStatus = await standby.call('GetMonitorStatus');
  const refused = await standby.call('TriggerJob', { name: 'health-check-deep' }).then(() => null, (e) => e);
  check('m2 stands by: it answers reads, and TriggerJob is UNAVAILABLE naming the leader m1',
    standbyStatus.leader_replica === 'm1' &&
    (await health(standby, ids.A))?.level === 'HEALTH_LEVEL_HEALTHY' &&
    refused?.code === grpc.status.UNAVAILABLE && refused.details.includes('m1'), refused?.details);
  const connAt = async (name) => (await sim.get('/connections')).connections
    .find((c) => c.logged_in && c.jid === jids[name]);
  const waitConnected = (name, timeoutMs = 20000) => waitFor(() => connAt(name),
    { timeoutMs, what: `${name} logged in at wa-sim` });
  await Promise.all(['A', 'B', 'C', 'D'].map((n) => waitConnected(n)));

  say('\n— wa-sim drops A');
  // A: a drop, classified at once and recovered by the monitor's Reconnect.
  const dropAt = Date.now();
  await sim.post(`/connections/${jids.A}/drop`, {});
  const warned = await waitFor(async () => (await health(monitor, ids.A))?.level === 'HEALTH_LEVEL_WARNING' && Date.now(),
    { timeoutMs: 5000, intervalMs: 5, what: 'A WARNING' }).catch(() => null);
  const recovered = await healthyAll(monitor, ['A'], 15000) ? Date.now() : null;
  const hA = await history(monitor, ids.A);
  check('A: the drop is classified WARNING within 1 s', warned && warned - dropAt < 1000,
    `${warned - dropAt} ms`);
  check('A: the monitor reconnected it; HEALTHY again within 10 s',
    recovered && recovered - dropAt < 10000 && hA.recoveries.some((r) => r.action === 'ACTION_RECONNECT'),
    `${recovered - dropAt} ms; ${hA.recoveries.map((r) => `${r.action}:${r.outcome}`).join(',')}`);
  check('A: a drop recovered in seconds alerts nobody', raised.every((a) => !a.dedup_key.endsWith(ids.A)));

  say('\n— wa-sim blackholes B (the socket stays open, nothing comes back)');
  // B: blackholed. Silent past --inbound_silence, probed; the probe fails; reconnected.
  await sim.post(`/connections/${jids.B}/blackhole`, { enabled: true });
  const probedB = await waitFor(async () => {
    const h = await history(monitor, ids.B);
    const failed = h.recoveries.findIndex((r) => r.action === 'ACTION_PROBE' && r.outcome === 'OUTCOME_FAILED');
    return failed >= 0 && h.recoveries.slice(failed + 1).some((r) => r.action === 'ACTION_RECONNECT') && h;
  }, { timeoutMs: 30000, intervalMs: 200, what: 'B probed, then reconnected' }).catch(() => null);
  check('B: blackholed → probe failed → Reconnect', !!probedB,
    probedB ? probedB.recoveries.map((r) => `${r.action}:${r.outcome}`).join(',') : '');
  check('B: HEALTHY again on a new connection', await healthyAll(monitor, ['B'], 20000) &&
    !!(await waitConnected('B').catch(() => null)));

  say('\n— wa-sim replaces C (stream error 440, conflict)');
  // C: replaced (stream error 440, conflict): needs a person; alerted at once, never reconnected.
  await sim.post(`/connections/${jids.C}/conflict`, {});
  const keyC = `session.manual_intervention/${ids.C}`;
  const alertC = await waitFor(() => raisedFor(keyC)[0], { timeoutMs: 10000, what: 'C alerted' }).catch(() => null);
  const hC = await health(monitor, ids.C);
  check('C: 440 replaced → CRITICAL and session.manual_intervention raised',
    !!alertC && hC?.level === 'HEALTH_LEVEL_CRITICAL' && alertC.severity === 'SEVERITY_CRITICAL' &&
    alertC.session?.phone_number_masked && !alertC.summary.includes('15550021002'),
    `${hC?.level}; ${alertC?.summary}`);
  const mailC = await waitFor(() => mails().find((m) => m.content.includes('Shop C needs a person')),
    { timeoutMs: 10000, what: "C's e-mail" }).catch(() => null);
  check("C: the owner's e-mail arrives, masked number, how to reconnect",
    !!mailC && mailC.rcpt_tos.includes('ops@acme.example') && mailC.content.includes('155******02') &&
    !mailC.content.includes('15550021002') && mailC.content.includes('wactl sessions connect') &&
    mailC.content.includes('text/html'), mailC ? mailC.content.match(/^Subject: .*$/m)?.[0] : 'none');
  if (mailC) say(`    e-mail ← ${mailC.content.match(/^Subject: .*$/m)?.[0]} (to ${mailC.rcpt_tos.join(', ')})`);
  const runsBefore = (await monitor.call('ListJobs')).jobs.find((j) => j.name === 'health-check-deep').runs;
  await waitFor(async () => (await monitor.call('ListJobs')).jobs.find((j) => j.name === 'health-check-deep').runs >= runsBefore + 2,
    { timeoutMs: 15000, intervalMs: 100, what: 'two more deep checks' });
  const cNow = (await sessionService.call('GetSession', { id: ids.C })).session;
  check('C: two deep checks later still REPLACED, no Reconnect',
    cNow.state === 'SESSION_STATE_REPLACED' &&
    (await history(monitor, ids.C)).recoveries.every((r) => r.action !== 'ACTION_RECONNECT'), cNow.state);

  say('\n— wa-sim drops D three times; the leading monitor is SIGKILLed, the standby leads; D drops again');
  // D: three drops, each recovered; the monitor is SIGKILLed and restarted; a fourth drop.
  const reconnectsOf = async (name) => (await history(monitor, ids[name])).recoveries
    .filter((r) => r.action === 'ACTION_RECONNECT').length;
  for (let i = 1; i <= 3; ++i) {
    const before = await waitConnected('D');
    await sim.post(`/connections/${jids.D}/drop`, {});
    await waitFor(async () => (await reconnectsOf('D')) >= i,
      { timeoutMs: 10000, what: `recovery ${i} of D` });
    // Logged in again on a new connection before the next drop.
    await waitFor(async () => { const c = await connAt('D'); return c && c.id !== before.id; },
      { timeoutMs: 15000, what: `D back after drop ${i}` });
    await healthyAll(monitor, ['D'], 15000);
  }
  const dBefore = await health(monitor, ids.D);
  check('D: three drops, three recoveries in the hour', dBefore?.recovery_attempts_last_hour === 3 &&
    dBefore?.drops_today === 3, `${dBefore?.recovery_attempts_last_hour} / ${dBefore?.drops_today}`);
  const raisedBeforeKill = raised.length;
  const killedAt = Date.now();
  monitor.proc.kill('SIGKILL');
  await monitor.exited;
  const tookOver = await waitFor(async () => (await standby.call('GetMonitorStatus')).leader && Date.now(),
    { timeoutMs: 10000, intervalMs: 20, what: 'm2 to lead' }).catch(() => null);
  check('leader m1 SIGKILLed: standby m2 leads within 2 s', tookOver && tookOver - killedAt < 2000,
    `${tookOver - killedAt} ms`);
  monitor = standby;
  standby = await startMonitor('m1', { lead: false });
  check('m1 restarted: it stands by behind m2', (await standby.call('GetMonitorStatus')).leader_replica === 'm2');
  await waitFor(async () => (await monitor.call('ListJobs')).jobs.find((j) => j.name === 'health-check-deep').runs >= runsBefore + 3,
    { timeoutMs: 15000, intervalMs: 100, what: 'a deep check by m2' });
  check('after the takeover nothing is raised again', raised.length === raisedBeforeKill,
    `${raised.length - raisedBeforeKill} new`);
  await waitConnected('D');
  await sim.post(`/connections/${jids.D}/drop`, {});
  const keyD = `session.manual_intervention/${ids.D}`;
  const alertD = await waitFor(() => raisedFor(keyD)[0], { timeoutMs: 10000, what: 'D alerted' }).catch(() => null);
  const dAfter = await health(monitor, ids.D);
  check('D: the fourth drop in the hour, after the takeover → manual intervention',
    !!alertD && dAfter?.manual_intervention_required && dAfter?.level === 'HEALTH_LEVEL_CRITICAL',
    dAfter?.manual_intervention_reason);

  say('\n— WhatsApp refuses four first logins: 403, 402 (a 6 s ban), 405, 409');
  const refusals = [
    { name: 'E', fail: { reason: 403 }, type: 'session.logged_out', state: 'SESSION_STATE_LOGGED_OUT',
      says: 'login failure 403' },
    { name: 'F', fail: { reason: 402, code: 101, expire: 6 }, type: 'session.temporarily_banned',
      state: 'SESSION_STATE_BANNED', says: ' until ' },
    { name: 'G', fail: { reason: 405 }, type: 'session.client_outdated',
      state: 'SESSION_STATE_DISCONNECTED', says: '--wa_version' },
    { name: 'H', fail: { reason: 409 }, type: 'session.manual_intervention',
      state: 'SESSION_STATE_DISCONNECTED', says: 'refused the login' },
  ];
  for (const [i, r] of refusals.entries()) await addDevice(r.name, 10 + i, r.fail);
  for (const r of refusals) {
    const key = `${r.type}/${ids[r.name]}`;
    const alert = await waitFor(() => raisedFor(key)[0], { timeoutMs: 10000, what: `${r.name} alerted` })
      .catch(() => null);
    const s = (await sessionService.call('GetSession', { id: ids[r.name] })).session;
    check(`${r.name}: failure ${r.fail.reason} → ${s.state}, CRITICAL ${r.type} that says what to do`,
      !!alert && alert.severity === 'SEVERITY_CRITICAL' && alert.summary.includes(r.says) &&
      s.failure_code === r.fail.reason && (s.state === r.state || r.name === 'F'),
      alert?.summary ?? 'no alert');
    if (r.name === 'F') say(`    GetSession: ban_code ${s.ban_code}, ban_expires_at ${s.ban_expires_at?.seconds}`);
  }
  const unbanned = await waitFor(() => resolved.find((a) => a.dedup_key === `session.temporarily_banned/${ids.F}`),
    { timeoutMs: 20000, what: "F's ban alert resolved" }).catch(() => null);
  const hF = await history(monitor, ids.F);
  check('F: connected again by itself when the ban ended (no Reconnect meanwhile); the alert resolved',
    !!unbanned && (await healthyAll(monitor, ['F'], 15000)) &&
    hF.recoveries.every((x) => x.action !== 'ACTION_RECONNECT'),
    hF.recoveries.map((x) => `${x.action}:${x.outcome}`).join(','));
  const credsOf = async (name) => (await sessionService.call('GetSession', { id: ids[name] })).session.has_credentials;
  check('E forgot its credentials; G and H kept theirs and were not retried',
    !(await credsOf('E')) && await credsOf('G') && await credsOf('H') &&
    (await sim.get('/stats')).login_failures === refusals.length, `${(await sim.get('/stats')).login_failures} failed logins`);

  say('\n— P: its phone was last seen 5 s ago (windows 4 s / 8 s)');
  await addDevice('P', 20);
  await waitConnected('P');
  const ownPhone = `${jids.P.split(':')[0]}@s.whatsapp.net`;
  const phoneSeen = (secondsAgo) => sim.post(`/connections/${jids.P}/stanza`, {
    tag: 'receipt', from: ownPhone, recipient: '15550001111@s.whatsapp.net', type: 'read',
    t: Math.floor(Date.now() / 1000) - secondsAgo,
  });
  await phoneSeen(5);
  const keyP = `session.phone_inactive/${ids.P}`;
  const warnP = await waitFor(() => raisedFor(keyP).find((a) => a.severity === 'SEVERITY_WARNING'),
    { timeoutMs: 10000, what: "P's phone warning" }).catch(() => null);
  const seenP = (await sessionService.call('GetSession', { id: ids.P })).session.phone_last_seen_at;
  check('P: phone unseen past the warning window → session.phone_inactive WARNING telling the owner to open WhatsApp',
    !!warnP && warnP.summary.includes('open WhatsApp on the phone') && !!seenP &&
    (await health(monitor, ids.P))?.phone_last_seen_at?.seconds === seenP.seconds, warnP?.summary);
  const critP = await waitFor(() => raisedFor(keyP).find((a) => a.severity === 'SEVERITY_CRITICAL'),
    { timeoutMs: 15000, what: "P's phone critical" }).catch(() => null);
  const phoneMetrics = await (await fetch(`http://127.0.0.1:${monitor.metricsPort}/metrics`)).text();
  check('P: past the critical window → CRITICAL; metrics count it',
    !!critP && /^wasentinel_monitor_phones_inactive\{severity="critical"\} 1/m.test(phoneMetrics));
  await phoneSeen(0);
  const backP = await waitFor(() => resolved.find((a) => a.dedup_key === keyP),
    { timeoutMs: 10000, what: "P's phone alert resolved" }).catch(() => null);
  check('P: the phone seen again → the alert is resolved', !!backP);
  // Keep P out of the checks below: its phone would be judged away again in 4 s. The monitor
  // must have seen the deletion before session-service is killed below.
  await sessionService.call('DeleteSession', { id: ids.P });
  await waitFor(async () => (await health(monitor, ids.P)) === null,
    { timeoutMs: 10000, intervalMs: 50, what: "P's deletion at the monitor" }).catch(() => {});

  say('\n— session-service is SIGKILLed, then started again');
  // session-service SIGKILLed: one alert for the outage; back → resolved.
  sessionService.proc.kill('SIGKILL');
  await sessionService.exited;
  const down = await waitFor(() => raisedFor('session_service.unreachable')[0],
    { timeoutMs: 15000, what: 'session_service.unreachable' }).catch(() => null);
  const status = await monitor.call('GetMonitorStatus');
  check('session-service down: session_service.unreachable raised, monitor status ERROR',
    !!down && status.status === 'MONITOR_STATUS_ERROR' && !status.session_service_reachable,
    status.session_service_error);
  await waitFor(async () => (await monitor.call('ListJobs')).jobs.find((j) => j.name === 'health-check-light').failures >= 3,
    { timeoutMs: 15000, intervalMs: 100, what: 'three failed light checks' });
  check('… raised once for the outage', raisedFor('session_service.unreachable').length === 1);
  sessionService = await startSessionService();
  const back = await waitFor(() => resolved.find((r) => r.dedup_key === 'session_service.unreachable'),
    { timeoutMs: 15000, what: 'unreachable resolved' }).catch(() => null);
  check('session-service back: the alert is resolved, status OK', !!back &&
    (await monitor.call('GetMonitorStatus')).status === 'MONITOR_STATUS_OK');
  check('A and B HEALTHY after the restore', await healthyAll(monitor, ['A', 'B'], 30000));

  const byKey = new Map();
  for (const a of raised) byKey.set(`${a.dedup_key} ${a.severity}`, (byKey.get(`${a.dedup_key} ${a.severity}`) ?? 0) + 1);
  check('no alert raised twice; every webhook signed and delivered once',
    [...byKey.values()].every((n) => n === 1) && duplicates === 0 && badSignatures === 0,
    `${[...byKey.entries()].map(([k, n]) => `${k}×${n}`).join('; ')}; ${duplicates} duplicates, ${badSignatures} bad signatures`);
  const stored = await alertService.call('ListAlerts', { page_size: 100 });
  check('alert-service holds each alert once, with its webhook SENT',
    stored.alerts.length === new Set(raised.map((a) => a.dedup_key)).size &&
    stored.alerts.every((a) => a.raise_count === (a.dedup_key.startsWith('session.phone_inactive/') ? 2 : 1) &&
      a.deliveries.some((d) => d.channel === 'CHANNEL_WEBHOOK' && d.status === 'STATUS_SENT')),
    stored.alerts.map((a) => `${a.dedup_key}:${a.status}`).join(', '));
  const metrics = await (await fetch(`http://127.0.0.1:${monitor.metricsPort}/metrics`)).text();
  check('metrics: leader, sessions by level, job runs',
    /^wasentinel_monitor_leader 1/m.test(metrics) &&
    /^wasentinel_monitor_sessions\{level="critical"\} 5/m.test(metrics) &&
    /^wasentinel_monitor_job_runs_total\{job="health-check-deep",result="ok"\} \d+/m.test(metrics));
  const simStats = await sim.get('/stats');
  check('no session ever said presence "available" (the phones keep notifying), probes included',
    simStats.presences_available === 0, `${simStats.presences_available} available`);
  exitCode = checks.every((c) => c.ok) ? 0 : 1;
} catch (e) {
  console.error(e);
} finally {
  for (const p of [...monitors, sessionService, alertService]) p?.proc.kill('SIGTERM');
  await Promise.all([...monitors, sessionService, alertService].map((p) => p?.exited));
  receiver.close();
  smtp.kill('SIGTERM');
  sim.stop();
  rmSync(work, { recursive: true, force: true });
  console.log(`${checks.filter((c) => c.ok).length} passed, ${checks.filter((c) => !c.ok).length} failed`);
  process.exit(exitCode);
}
