// The whole system on one machine, for people (scripts/demo) and as a test (ctest e2e_demo):
// PostgreSQL (DATABASE_URL), wa-sim as the stand-in WhatsApp, session-service, health-monitor
// and alert-service, the console (its URL printed: the bad day shows there live, and the alert
// e-mails link to its session pages), an SMTP server (aiosmtpd) and a webhook receiver here,
// all on loopback.
//
//   1  pair a new device by QR code: wactl draws it in the terminal and writes it as a PNG;
//      the phone (wa-sim) gets what zbarimg reads off that PNG
//   2  import two sessions from creds.json files Baileys wrote (wactl sessions create)
//   3  a bad day, with the health policy shortened to seconds by configuration (warning after
//      2 s offline, critical after 6 s): a drop (reconnected), a blackhole (probed, reconnected),
//      a conflict (440, replaced: needs a person), a logout (401), then WhatsApp unreachable
//      long enough for a session to go critical, and back
//   4  a person fixes the replaced session (acknowledge, connect)
//   5  WhatsApp bans Shop Berlin for 8 s (failure 402): the alert says until when, and the
//      session comes back by itself when the ban ends; Shop Berlin's phone was last seen 7 s
//      ago (the 12-day window shortened to 5 s): session.phone_inactive until it shows again
//   7  a conversation: a customer (Baileys) writes to Café Lisboa, the message arrives as a
//      verified message.received webhook, the shop answers with wactl send, the customer's
//      Baileys decrypts it and reads it, and the read receipt comes back as message.status
//
// The levels are printed as the monitor changes them, every webhook as received with its
// Standard Webhooks signature verified (the standardwebhooks npm package), every e-mail as the
// SMTP server received it, and the resolved notices. Exit 0 only if every step was seen; every
// process it started is stopped.
//
// Environment: WA_SIM, SESSION_SERVICE, HEALTH_MONITOR, ALERT_SERVICE, CONSOLE, WACTL,
// HEALTH_PROBE, DATABASE_URL, PROTO_DIR; WAS_DEMO_CONSOLE_PORT (default 8080, else a free port).
// Flags: --quiet (TAP-like lines only, for ctest); --dashboard DIR (also run Prometheus
// scraping the three services every second and keep its data in DIR, for
// tools/render-dashboard); --stay (after the summary, keep everything running for the console
// until Ctrl-C).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { createInterface } from 'node:readline';
import grpc from '@grpc/grpc-js';
import { useMultiFileAuthState } from 'baileys';
import { WA_CERT_DETAILS } from 'baileys/lib/Defaults/index.js';
import { startSim, requiredEnv, waitFor, freePort, pairBaileys, textOfMessage } from '../interop/harness.mjs';
import { AlertService, MonitorService, SessionService, startWebhookReceiver, unary } from './api.mjs';

const quiet = process.argv.includes('--quiet');
const dashboardDir = process.argv.includes('--dashboard') ? process.argv[process.argv.indexOf('--dashboard') + 1] : null;
const stay = process.argv.includes('--stay');
const t0 = Date.now();
const stamp = () => `${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s`;
const show = (...a) => { if (!quiet) console.log(`  ${stamp()} │`, ...a); };
const checks = [];
function check(name, ok, detail = '') {
  checks.push({ name, ok: !!ok });
  if (quiet) console.log(`${ok ? 'ok' : 'not ok'} ${checks.length} - ${name}${detail ? ` # ${detail}` : ''}`);
  else console.log(`  ${stamp()} ${ok ? '✓' : '✗'} ${name}${detail ? ` (${detail})` : ''}`);
  return ok;
}
const STEPS = 9;
let step = 0;
const section = (title) => { if (!quiet) console.log(`\n━━ ${++step}/${STEPS} ${title} ━━`); };


const work = mkdtempSync(join(tmpdir(), 'was-demo-'));
const sealingKey = randomBytes(32).toString('hex');
const logLevel = process.env.WAS_E2E_LOG_LEVEL || 'warn';
const processes = [];
function start(name, binary, args) {
  const proc = spawn(binary, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  const p = { name, proc, exited };
  processes.push(p);
  return p;
}
const portFree = (port) => new Promise((resolve) => {
  const probe = createServer().once('error', () => resolve(false))
    .listen(port, '127.0.0.1', () => probe.close(() => resolve(true)));
});
const answers = (call, method) => waitFor(async () => { try { await call(method); return true; } catch { return false; } },
  { timeoutMs: 20000, what: `${method} to answer` });

// ── The webhook receiver: every delivery verified with the endpoint's secret ────────────────
const hooks = [];  // { id, type, kind, dedup_key, severity, summary, data, verified, headers, body, at }
const receiver = await startWebhookReceiver(({ id, type, data, verified, headers, body, at }) => {
  hooks.push({ id, type, kind: data.kind, dedup_key: data.dedup_key, severity: data.severity,
    summary: data.summary, data, verified, headers, body, at });
  if (type.startsWith('message.')) {
    show(`webhook ← ${type} [${data.status}] ${data.from_me ? 'to' : 'from'} ${data.chat}` +
      `${data.text ? ` "${data.text}"` : ''}  ${verified ? '(signature verified)' : '(BAD SIGNATURE)'}`);
    return;
  }
  show(`webhook ← ${data.kind === 'resolved' ? 'RESOLVED ' : ''}${type} [${data.severity}] ` +
    `${data.kind === 'resolved' ? data.dedup_key : data.summary}  ${verified ? '(signature verified)' : '(BAD SIGNATURE)'}`);
});

// ── The SMTP server: aiosmtpd writes each message it accepts to a file ──────────────────────
const smtpDir = join(work, 'smtp');
const smtp = start('smtp-sink', '/usr/bin/python3', [new URL('../support/smtp-sink', import.meta.url).pathname,
  '--dir', join(smtpDir, 'messages'), '--ready', join(smtpDir, 'ready')]);
const mailsSeen = new Set();
const mails = [];
const pollMail = () => {
  const dir = join(smtpDir, 'messages');
  if (!existsSync(dir)) return;
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.json')).sort()) {
    if (mailsSeen.has(f)) continue;
    mailsSeen.add(f);
    const m = JSON.parse(readFileSync(join(dir, f), 'utf8'));
    mails.push(m);
    show(`e-mail ← "${m.subject}" to ${m.rcpt_tos.join(', ')}`);
  }
};

// ── The levels as the monitor changes them ─────────────────────────────────────────────────
const names = new Map();  // session id → account name
const levels = new Map();  // session id → last level seen
let monitorCall = null;
const short = (level) => level.replace('HEALTH_LEVEL_', '');
async function pollLevels() {
  if (!monitorCall) return;
  let res;
  try { res = await monitorCall('ListSessionHealth', { page_size: 100 }); } catch { return; }
  for (const h of res.sessions) {
    if (!names.has(h.session_id)) continue;
    const before = levels.get(h.session_id);
    if (before !== h.level) {
      levels.set(h.session_id, h.level);
      show(`level: ${names.get(h.session_id)} ${before ? `${short(before)} → ` : ''}${short(h.level)} ` +
        `(score ${h.score}; ${h.cause || h.state.replace('SESSION_STATE_', '')})`);
    }
  }
}
let polling = true;
const poller = (async () => {
  while (polling) {
    pollMail();
    await pollLevels();
    await new Promise((r) => setTimeout(r, 100));
  }
})();

let exitCode = 1;
try {
  section('start: wa-sim (the stand-in WhatsApp), session-service, health-monitor, alert-service, the console');
  await waitFor(() => existsSync(join(smtpDir, 'ready')), { timeoutMs: 20000, what: 'smtp-sink' });
  const smtpPort = Number(readFileSync(join(smtpDir, 'ready'), 'utf8'));
  const sim = await startSim();
  processes.push({ name: 'wa-sim', stop: () => sim.stop() });
  const [sessionPort, monitorPort, alertPort] = [await freePort(), await freePort(), await freePort()];
  // The console where a person looks (8080 unless taken; ctest always takes a free one).
  const wantedConsolePort = Number(process.env.WAS_DEMO_CONSOLE_PORT ?? (quiet ? 0 : 8080));
  const consolePort = wantedConsolePort && await portFree(wantedConsolePort) ? wantedConsolePort : await freePort();
  const consoleUrl = `http://127.0.0.1:${consolePort}`;
  const metricsPorts = { 'session-service': await freePort(), 'health-monitor': await freePort(), 'alert-service': await freePort() };
  const db = requiredEnv('DATABASE_URL');

  start('alert-service', requiredEnv('ALERT_SERVICE'), [
    '--replica_id=alert-1', `--grpc_listen=127.0.0.1:${alertPort}`, `--metrics_listen=127.0.0.1:${metricsPorts['alert-service']}`,
    `--database_url=${db}`, `--secret_key=${sealingKey}`, '--allow_private_targets', '--dispatchers=2',
    `--session_service=127.0.0.1:${sessionPort}`,
    `--smtp_url=smtp://127.0.0.1:${smtpPort}`, '--smtp_from=WA Sentinel <alerts@sentinel.example>',
    '--alert_recipients=oncall@sentinel.example', `--reconnect_url=${consoleUrl}/sessions/{session_id}`,
    `--log_level=${logLevel}`,
  ]);
  const alerts = unary(new AlertService(`127.0.0.1:${alertPort}`, grpc.credentials.createInsecure()));
  await answers(alerts, 'ListWebhookEndpoints');
  const endpoint = await alerts('CreateWebhookEndpoint', {
    url: receiver.url(), description: 'the demo receiver',
  });
  receiver.trust(endpoint.secret);
  show(`alert-service on :${alertPort}; webhook endpoint ${endpoint.endpoint.id} → ${receiver.url()}`);

  start('session-service', requiredEnv('SESSION_SERVICE'), [
    '--replica_id=session-1', `--grpc_listen=127.0.0.1:${sessionPort}`, `--metrics_listen=127.0.0.1:${metricsPorts['session-service']}`,
    `--database_url=${db}`, `--auth_state_key=demo:${sealingKey}`,
    `--wa_url=${sim.url}`, `--wa_version_url=${sim.versionUrl}`, `--wa_root_key=${sim.rootPublicKey.toString('hex')}`,
    // Pings every few seconds and retries for about 20 s after a drop: the outage below is shorter.
    '--keepalive_interval=4s,5s', '--keepalive_timeout=3s', '--keepalive_max_silence=5m',
    '--reconnect_backoff=1s,2s,2s,2s,2s,2s,2s,2s,2s,2s', '--restore_per_second=0', `--log_level=${logLevel}`,
  ]);
  const sessions = unary(new SessionService(`127.0.0.1:${sessionPort}`, grpc.credentials.createInsecure()));
  await answers(sessions, 'GetHealth');
  show(`session-service on :${sessionPort}, talking to wa-sim at ${sim.url}`);

  start('health-monitor', requiredEnv('HEALTH_MONITOR'), [
    '--replica_id=monitor-1', `--grpc_listen=127.0.0.1:${monitorPort}`, `--metrics_listen=127.0.0.1:${metricsPorts['health-monitor']}`,
    `--database_url=${db}`, `--session_service=127.0.0.1:${sessionPort}`, `--alert_service=127.0.0.1:${alertPort}`,
    // The critical window in seconds instead of hours: what a day does, in a minute.
    '--warning_after=2s', '--critical_after=6s', '--inbound_silence=3s', '--reconnect_after=30s',
    // WhatsApp unlinks a phone's devices after ~14 days away; here 5 s warn, 10 s critical.
    '--phone_inactive_warning_after=5s', '--phone_inactive_critical_after=10s',
    '--light_interval=1s', '--fast_interval=1s', '--deep_interval=2s', '--unreachable_backoff=1s',
    '--call_timeout=4s', '--leader_poll=300ms', '--watch_backoff=300ms', `--log_level=${logLevel}`,
  ]);
  const monitor = unary(new MonitorService(`127.0.0.1:${monitorPort}`, grpc.credentials.createInsecure()));
  await waitFor(async () => { try { return (await monitor('GetMonitorStatus')).leader; } catch { return false; } },
    { timeoutMs: 20000, what: 'health-monitor to lead' });
  monitorCall = monitor;
  show(`health-monitor on :${monitorPort} (leading); warning after 2 s offline, critical after 6 s`);

  start('console', requiredEnv('CONSOLE'), [
    `--http_listen=127.0.0.1:${consolePort}`, '--metrics_listen=', `--session_service=127.0.0.1:${sessionPort}`,
    `--monitor_service=127.0.0.1:${monitorPort}`, `--alert_service=127.0.0.1:${alertPort}`, `--log_level=${logLevel}`,
  ]);
  const consoleReady = await waitFor(async () => { try { return (await fetch(`${consoleUrl}/readyz`)).ok; } catch { return false; } },
    { timeoutMs: 20000, what: 'the console' }).then(() => true, () => false);
  check(`the console serves on ${consoleUrl}`, consoleReady);
  if (!quiet) console.log(`\n  ┌─ Open ${consoleUrl} to watch the bad day live (no key needed in the demo). ─┐\n`);

  let prometheus = null;
  let promStartedAt = null;
  if (dashboardDir) {
    promStartedAt = Date.now();
    mkdirSync(dashboardDir, { recursive: true });
    const promPort = await freePort();
    writeFileSync(join(work, 'prometheus.yml'), [
      'global: { scrape_interval: 1s, evaluation_interval: 1s }', 'scrape_configs:',
      ...Object.entries(metricsPorts).map(([job, port]) => `  - { job_name: ${job}, static_configs: [{ targets: ["127.0.0.1:${port}"] }] }`),
    ].join('\n'));
    prometheus = start('prometheus', 'prometheus', [`--config.file=${join(work, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dashboardDir, 'data')}`, `--web.listen-address=127.0.0.1:${promPort}`, '--log.level=warn']);
    writeFileSync(join(dashboardDir, 'prometheus-url'), `http://127.0.0.1:${promPort}`);
    show(`Prometheus on :${promPort}, scraping the three services every second`);
  }
  // What a container HEALTHCHECK runs (the Dockerfile): grpc.health.v1 through was-health-probe.
  const probe = (port) => spawnSync(requiredEnv('HEALTH_PROBE'), [`--addr=127.0.0.1:${port}`, '--timeout=3s'], { encoding: 'utf8' }).status;
  const serving = [sessionPort, monitorPort, alertPort].map(probe);
  const closed = probe(await freePort());
  check('the three services answer; the monitor leads; was-health-probe: SERVING on each (0), a closed port 2',
    serving.every((rc) => rc === 0) && closed === 2, `${serving.join(',')}; ${closed}`);

  // ── 1. Pairing by QR ─────────────────────────────────────────────────────────────────────
  section('pair a new device by QR code (wactl draws it; the phone reads it)');
  const wactlArgs = [`--addr=127.0.0.1:${sessionPort}`];
  const png = join(work, 'qr.png');
  const pairing = spawn(requiredEnv('WACTL'), [...wactlArgs, 'pair', '--tenant=acme', '--name=lisboa',
    '--account=Café Lisboa', '--email=owner@acme.example', `--png=${png}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  const pairOut = [];
  let pairErr = '';
  pairing.stderr.on('data', (d) => { pairErr += d; });
  createInterface({ input: pairing.stdout }).on('line', (l) => {
    pairOut.push(l);
    if (!quiet) console.log(`          │   ${l}`);
  });
  const pairExit = new Promise((resolve) => pairing.on('exit', resolve));
  await waitFor(() => pairOut.some((l) => l.startsWith('Scan with WhatsApp')) && pairOut.filter((l) => l.includes('█')).length > 10,
    { timeoutMs: 20000, what: 'a QR code drawn by wactl' });
  check('wactl drew the QR code in the terminal', true);
  const zbar = spawnSync('zbarimg', ['--raw', '-q', png], { encoding: 'utf8' });
  const scanned = zbar.stdout.trim();
  check('zbarimg read the QR code off the PNG wactl wrote', zbar.status === 0 && scanned.split(',').length === 4,
    zbar.status === 0 ? `${scanned.length} characters, 4 comma-separated parts` : zbar.stderr.trim());
  const scan = await sim.post('/pair', { qr: scanned, phone: '351210000001' });
  check('the phone (wa-sim) scanned it and signed the device identity', scan.result === 'paired', scan.jid ?? JSON.stringify(scan));
  const pairRc = await pairExit;
  const lisboa = pairOut.find((l) => l.startsWith('pairing session '))?.split(' ')[2];
  check('wactl pair: paired, exit 0', pairRc === 0 && pairOut.some((l) => l.startsWith('paired: ')) && !!lisboa, pairErr.trim());
  names.set(lisboa, 'Café Lisboa');
  const healthy = (id, timeoutMs = 20000) => waitFor(async () => levels.get(id) === 'HEALTH_LEVEL_HEALTHY',
    { timeoutMs, intervalMs: 50, what: `${names.get(id)} HEALTHY` }).then(() => true, () => false);
  check('Café Lisboa CONNECTED and HEALTHY at the monitor', await healthy(lisboa));

  // ── 2. Two sessions from Baileys ─────────────────────────────────────────────────────────
  section('import two sessions Baileys wrote (wactl sessions create --creds)');
  const ids = {};
  const jids = { lisboa: scan.jid.split('@')[0] };
  for (const [i, [key, account]] of [['berlin', 'Shop Berlin'], ['paris', 'Shop Paris']].entries()) {
    const dir = join(work, `baileys-${key}`);
    const { state, saveCreds } = await useMultiFileAuthState(dir);
    const jid = `4915100000${10 + i}:${3 + i}@s.whatsapp.net`;
    state.creds.me = { id: jid, name: account };
    await saveCreds();
    const creds = join(dir, 'creds.json');
    await sim.post('/devices', { creds: JSON.parse(readFileSync(creds, 'utf8')) });
    const made = spawnSync(requiredEnv('WACTL'), [...wactlArgs, '--json', 'sessions', 'create', '--tenant=acme',
      `--name=${key}`, `--account=${account}`, '--email=owner@acme.example', `--creds=${creds}`], { encoding: 'utf8' });
    const id = made.status === 0 ? JSON.parse(made.stdout).session?.id : null;
    check(`${account}: created from ${creds.replace(work, '…')}`, !!id, made.stderr.trim());
    ids[key] = id;
    jids[key] = jid.split('@')[0];
    names.set(id, account);
  }
  ids.lisboa = lisboa;
  check('Shop Berlin and Shop Paris CONNECTED and HEALTHY', (await healthy(ids.berlin)) && (await healthy(ids.paris)));
  const live = async (key) => (await sim.get('/connections')).connections.find((c) => c.logged_in && c.jid === jids[key]);
  await waitFor(async () => (await live('berlin')) && (await live('paris')) && (await live('lisboa')),
    { timeoutMs: 20000, what: 'three logged in at wa-sim' });
  const history = async (id) => monitor('ListTransitions', { session_id: id,
    since: { seconds: Math.floor(t0 / 1000) - 60 }, until: { seconds: Math.floor(Date.now() / 1000) + 60 }, page_size: 1000 });
  const webhooksFor = (id, type) => hooks.filter((h) => h.dedup_key?.endsWith(id) && h.type === type && h.kind !== 'resolved');
  const sawLevel = (id, level) => waitFor(async () => levels.get(id) === level,
    { timeoutMs: 15000, intervalMs: 20, what: `${names.get(id)} ${short(level)}` }).then(() => true, () => false);

  // ── 3. A bad day ─────────────────────────────────────────────────────────────────────────
  section('a bad day: drop, blackhole, conflict (440), logout (401)');
  show('wa-sim drops Shop Berlin\'s connection');
  const dropAt = Date.now();
  await sim.post(`/connections/${jids.berlin}/drop`, {});
  // The WARNING may pass between two polls when the reconnect is quick: the monitor's stored
  // history says whether it happened.
  const sawWarning = await sawLevel(ids.berlin, 'HEALTH_LEVEL_WARNING');
  const backBerlin = await healthy(ids.berlin);
  const hBerlin = await history(ids.berlin);
  const warned = sawWarning || hBerlin.transitions.some((t) => t.to_level === 'HEALTH_LEVEL_WARNING' &&
    Number(t.at.seconds) * 1000 + t.at.nanos / 1e6 >= dropAt - 1000);
  // Whoever comes first reconnects it: the monitor at once, or session-service's own first
  // retry (1 s here) when its CONNECTING reaches the monitor before the monitor acts.
  const byMonitor = hBerlin.recoveries.some((r) => r.action === 'ACTION_RECONNECT');
  const alertedBerlin = hooks.filter((h) => h.dedup_key?.endsWith(ids.berlin));
  check('drop: WARNING, reconnected, HEALTHY again within seconds; nobody alerted',
    warned && backBerlin && alertedBerlin.length === 0,
    [byMonitor ? 'the monitor reconnected it' : "session-service's own retry reconnected it",
      warned ? '' : 'WARNING not seen', backBerlin ? '' : 'not HEALTHY again',
      alertedBerlin.map((h) => `alerted: ${h.event_type} ${h.dedup_key}`).join(', ')]
      .filter(Boolean).join('; '));

  show('wa-sim blackholes Shop Paris (the socket stays open; nothing comes back)');
  await sim.post(`/connections/${jids.paris}/blackhole`, { enabled: true });
  const probed = await waitFor(async () => {
    const h = await history(ids.paris);
    const failed = h.recoveries.findIndex((r) => r.action === 'ACTION_PROBE' && r.outcome === 'OUTCOME_FAILED');
    return failed >= 0 && h.recoveries.slice(failed + 1).some((r) => r.action === 'ACTION_RECONNECT');
  }, { timeoutMs: 30000, intervalMs: 200, what: 'Paris probed, then reconnected' }).then(() => true, () => false);
  check('blackhole: silent → probe failed → reconnected → HEALTHY', probed && (await healthy(ids.paris)) &&
    !!(await waitFor(() => live('paris'), { timeoutMs: 15000, what: 'Paris back' }).catch(() => null)));

  show('wa-sim replaces Café Lisboa: <conflict type="replaced"/> (stream error 440), another client took the device');
  await sim.post(`/connections/${jids.lisboa}/conflict`, {});
  const conflictHook = await waitFor(() => webhooksFor(lisboa, 'session.manual_intervention')[0],
    { timeoutMs: 15000, what: 'the manual-intervention webhook' }).catch(() => null);
  check('conflict: CRITICAL, session.manual_intervention delivered, never reconnected automatically',
    (await sawLevel(lisboa, 'HEALTH_LEVEL_CRITICAL')) && conflictHook?.verified && conflictHook.severity === 'critical' &&
    (await history(lisboa)).recoveries.every((r) => r.action !== 'ACTION_RECONNECT'), conflictHook?.summary);
  const conflictMail = await waitFor(() => mails.find((m) => m.subject.includes('Café Lisboa') && m.rcpt_tos.includes('owner@acme.example')),
    { timeoutMs: 15000, what: "Café Lisboa's e-mail" }).catch(() => null);
  check("… and its owner's e-mail arrived", !!conflictMail, conflictMail?.subject);

  show('wa-sim logs Shop Paris out: stream error 401 (the device was removed on the phone)');
  await waitFor(() => live('paris'), { timeoutMs: 15000, what: 'Paris connected' });
  await sim.post(`/connections/${jids.paris}/stream-error`, { code: 401 });
  const logoutHook = await waitFor(() => webhooksFor(ids.paris, 'session.logged_out')[0],
    { timeoutMs: 15000, what: 'the logged-out webhook' }).catch(() => null);
  const parisNow = (await sessions('GetSession', { id: ids.paris })).session;
  check('logout: LOGGED_OUT, CRITICAL, session.logged_out delivered',
    parisNow.state === 'SESSION_STATE_LOGGED_OUT' && (await sawLevel(ids.paris, 'HEALTH_LEVEL_CRITICAL')) && logoutHook?.verified,
    logoutHook?.summary);

  // ── 4. WhatsApp unreachable past the critical window ──────────────────────────────────────
  section('WhatsApp unreachable for 9 s (critical after 6 s), then back');
  const outageAt = Date.now();
  const reset = await sim.post('/outage', { enabled: true });
  show(`wa-sim: outage begins (${reset.reset} connections reset; new ones refused)`);
  const warning = await waitFor(() => webhooksFor(ids.berlin, 'session.warning')[0],
    { timeoutMs: 15000, what: 'session.warning' }).catch(() => null);
  check('Shop Berlin offline: WARNING, then session.warning after 2 s', !!warning?.verified,
    warning ? `${((warning.at - outageAt) / 1000).toFixed(1)} s after the outage began` : '');
  const critical = await waitFor(() => webhooksFor(ids.berlin, 'session.critical')[0],
    { timeoutMs: 20000, what: 'session.critical' }).catch(() => null);
  check('… CRITICAL after 6 s: session.critical, the same alert escalated', critical?.verified &&
    critical.dedup_key === warning?.dedup_key && (await sawLevel(ids.berlin, 'HEALTH_LEVEL_CRITICAL')),
    `${((Date.now() - outageAt) / 1000).toFixed(1)} s after the outage began`);
  const criticalMail = await waitFor(() => mails.find((m) => m.subject.includes('Shop Berlin') && /critical/i.test(m.subject) &&
    m.rcpt_tos.includes('owner@acme.example')),
    { timeoutMs: 15000, what: 'the critical e-mail' }).catch(() => null);
  check('the critical e-mail reached the SMTP server: masked number, how to reconnect',
    !!criticalMail && criticalMail.rcpt_tos.includes('owner@acme.example') && /491\*+10/.test(criticalMail.text) &&
    !criticalMail.content.includes('4915100000') && criticalMail.text.includes('wactl sessions connect'),
    criticalMail?.subject);
  check('… and links to Shop Berlin\'s page in the console, where its Reconnect button is',
    !!criticalMail && criticalMail.text.includes(`${consoleUrl}/sessions/${ids.berlin}`));
  if (criticalMail && !quiet) {
    console.log('\n          ┌─ the critical e-mail, as the SMTP server received it (text part) ─');
    console.log(`          │ From: ${criticalMail.from}\n          │ To: ${criticalMail.to}\n          │ Subject: ${criticalMail.subject}\n          │`);
    for (const l of criticalMail.text.trimEnd().split('\n')) console.log(`          │ ${l}`);
    console.log('          └─');
  }
  if (critical && !quiet) {
    console.log('\n          ┌─ the session.critical webhook, as received (signature verified with standardwebhooks) ─');
    for (const h of ['webhook-id', 'webhook-timestamp', 'webhook-signature']) console.log(`          │ ${h}: ${critical.headers[h]}`);
    for (const l of JSON.stringify(JSON.parse(critical.body), null, 2).split('\n')) console.log(`          │ ${l}`);
    console.log('          └─');
  }
  const elapsed = Date.now() - outageAt;
  if (elapsed < 9000) await new Promise((r) => setTimeout(r, 9000 - elapsed));
  await sim.post('/outage', { enabled: false });
  show('wa-sim: outage ends');
  const berlinBack = await healthy(ids.berlin, 30000);
  const resolvedHook = await waitFor(() => hooks.find((h) => h.kind === 'resolved' && h.dedup_key === critical?.dedup_key),
    { timeoutMs: 15000, what: 'the resolved notice' }).catch(() => null);
  check('back: Shop Berlin HEALTHY by itself, the resolved notice delivered', berlinBack && resolvedHook?.verified);
  const resolvedMail = await waitFor(() => mails.find((m) => m.subject.includes('Shop Berlin') && /resolved|back/i.test(m.subject)),
    { timeoutMs: 15000, what: 'the resolved e-mail' }).catch(() => null);
  check('… and the resolved e-mail', !!resolvedMail, resolvedMail?.subject);

  // ── 5. A person fixes the replaced device ────────────────────────────────────────────────
  section('a person fixes Café Lisboa: connects it, then acknowledges');
  show('the other client is closed; wactl sessions connect, then AcknowledgeSession');
  const connected = spawnSync(requiredEnv('WACTL'), [...wactlArgs, 'sessions', 'connect', lisboa], { encoding: 'utf8' });
  check('wactl sessions connect: exit 0, CONNECTED', connected.status === 0 &&
    !!(await waitFor(() => live('lisboa'), { timeoutMs: 15000, what: 'Café Lisboa logged in' }).catch(() => null)),
  connected.stderr.trim());
  await monitor('AcknowledgeSession', { session_id: lisboa, note: 'demo: the other client was closed, then connected' });
  const lisboaBack = await healthy(lisboa, 20000);
  const lisboaResolved = await waitFor(() => hooks.find((h) => h.kind === 'resolved' && h.dedup_key === conflictHook?.dedup_key),
    { timeoutMs: 15000, what: "Café Lisboa's resolved notice" }).catch(() => null);
  check('Café Lisboa HEALTHY; its alert resolved, and no other raised for it',
    lisboaBack && !!lisboaResolved?.verified && hooks.filter((h) => h.dedup_key?.endsWith(lisboa) && h.kind !== 'resolved').length === 1);

  // ── 6. A temporary ban, and a phone that stays away ───────────────────────────────────────
  section('WhatsApp bans Shop Berlin for 8 s; its phone has not been online for 7 s');
  show('wa-sim answers Shop Berlin\'s next login <failure reason="402" code="101" expire="8"/>');
  await sim.post(`/devices/${jids.berlin}/fail-login`, { reason: 402, code: 101, expire: 8 });
  await sim.post(`/connections/${jids.berlin}/drop`, {});
  const banHook = await waitFor(() => webhooksFor(ids.berlin, 'session.temporarily_banned')[0],
    { timeoutMs: 15000, what: 'the temporary-ban webhook' }).catch(() => null);
  const banned = (await sessions('GetSession', { id: ids.berlin })).session;
  const banEnds = banned.ban_expires_at ? new Date(Number(banned.ban_expires_at.seconds) * 1000) : null;
  show(`GetSession: ${banned.state.replace('SESSION_STATE_', '')}, ban_code ${banned.ban_code}, ban_expires_at ${banEnds?.toISOString()}`);
  const reconnectsOfBerlin = async () => (await history(ids.berlin)).recoveries
    .filter((r) => r.action === 'ACTION_RECONNECT').length;
  const reconnectsAtBan = await reconnectsOfBerlin();
  check('ban: BANNED with its code and end; session.temporarily_banned says until when',
    banned.state === 'SESSION_STATE_BANNED' && banned.ban_code === 101 && !!banEnds && banHook?.verified &&
    banHook.summary.includes(' until '), banHook?.summary);
  const unbanned = await waitFor(() => hooks.find((h) => h.kind === 'resolved' && h.dedup_key === banHook?.dedup_key),
    { timeoutMs: 20000, what: 'the ban resolved' }).catch(() => null);
  check('… the ban ended: CONNECTED again by itself (no Reconnect meanwhile), the alert resolved',
    !!unbanned && (await healthy(ids.berlin)) && Date.now() >= banEnds?.getTime() &&
    (await reconnectsOfBerlin()) === reconnectsAtBan,
    unbanned ? `${((unbanned.at - banEnds.getTime()) / 1000).toFixed(1)} s after the ban's end` : '');

  const ownPhone = `${jids.berlin.split(':')[0]}@s.whatsapp.net`;
  const phoneSeen = (secondsAgo) => sim.post(`/connections/${jids.berlin}/stanza`, {
    tag: 'receipt', from: ownPhone, recipient: '4915100000099@s.whatsapp.net', type: 'read',
    t: Math.floor(Date.now() / 1000) - secondsAgo,
  });
  show("wa-sim passes on a read receipt Shop Berlin's phone sent 7 s ago (device 0 of its own number)");
  await phoneSeen(7);
  const phoneHook = await waitFor(() => webhooksFor(ids.berlin, 'session.phone_inactive')[0],
    { timeoutMs: 15000, what: 'the phone-inactive webhook' }).catch(() => null);
  check('phone away past the warning window: session.phone_inactive tells the owner to open WhatsApp',
    phoneHook?.verified && phoneHook.severity === 'warning' && phoneHook.summary.includes('open WhatsApp on the phone'),
    phoneHook?.summary);
  show('the phone comes online: a receipt from it, now');
  await phoneSeen(0);
  const phoneBack = await waitFor(() => hooks.find((h) => h.kind === 'resolved' && h.dedup_key === phoneHook?.dedup_key),
    { timeoutMs: 15000, what: 'the phone alert resolved' }).catch(() => null);
  check('… the phone seen: the alert resolved', !!phoneBack?.verified);

  // ── 7. A conversation ────────────────────────────────────────────────────────────────────
  section('a customer writes to Café Lisboa; the shop answers with wactl send');
  const shopNumber = scan.jid.split(':')[0].split('@')[0];
  const messageEndpoint = await alerts('CreateWebhookEndpoint', {
    url: receiver.url('/hooks/messages'), event_types: ['message.received', 'message.status'],
    description: 'the shop\'s messages',
  });
  receiver.trust(messageEndpoint.secret);
  show(`webhook endpoint ${messageEndpoint.endpoint.id} → ${receiver.url('/hooks/messages')} (message.received, message.status)`);
  WA_CERT_DETAILS.PUBLIC_KEY = sim.rootPublicKey;
  const customer = await pairBaileys(sim, join(work, 'customer'), '351210000077', 'Customer');
  const question = 'Olá! Do you have a table for two tonight?';
  show(`a customer (Baileys) writes to Café Lisboa: "${question}"`);
  const asked = await customer.send(`${shopNumber}@s.whatsapp.net`, question);
  const messageHook = (type, id, status) => hooks.find((h) => h.type === type && h.data.message_id === id &&
    (!status || h.data.status === status));
  const receivedHook = await waitFor(() => messageHook('message.received', asked.key.id),
    { timeoutMs: 15000, what: 'the message.received webhook' }).catch(() => null);
  check('the message arrives as a verified message.received webhook, with its text',
    receivedHook?.verified && receivedHook.data.text === question && receivedHook.data.session_id === lisboa);
  const answerText = 'Sim — at 8 pm, see you then!';
  const sent = spawnSync(requiredEnv('WACTL'), [...wactlArgs, '--json', 'send', `--session=${lisboa}`,
    '--to=+351210000077', `--text=${answerText}`, '--client_id=demo-answer-1'], { encoding: 'utf8' });
  const answerId = sent.status === 0 ? JSON.parse(sent.stdout).message?.message_id : null;
  show(`wactl send --session=… --to=+351210000077 --text="${answerText}" → ${answerId ?? sent.stderr.trim()}`);
  const got = await waitFor(() => customer.received.find((m) => textOfMessage(m) === answerText),
    { timeoutMs: 15000, what: 'the answer at the customer' }).catch(() => null);
  check('the customer\'s Baileys decrypts the answer wactl sent', !!answerId && got?.key.id === answerId);
  if (got) await customer.sock.readMessages([got.key]);
  const readHook = await waitFor(() => messageHook('message.status', answerId, 'read'),
    { timeoutMs: 15000, what: 'the read receipt as a webhook' }).catch(() => null);
  check('the customer reads it: the read receipt comes back (message.status read)',
    readHook?.verified && readHook.data.client_message_id === 'demo-answer-1');
  customer.close();

  // ── 8. Summary ───────────────────────────────────────────────────────────────────────────
  section('summary');
  await pollLevels();
  const final = (await monitor('ListSessionHealth', { page_size: 100 })).sessions;
  if (!quiet) {
    console.log('\n  session       level     score  state        recoveries today  drops today');
    for (const h of final) {
      console.log(`  ${(names.get(h.session_id) ?? h.session_id).padEnd(13)} ${short(h.level).padEnd(9)} ${String(h.score).padStart(5)}  ` +
        `${h.state.replace('SESSION_STATE_', '').padEnd(12)} ${String(h.recoveries_today).padStart(16)}  ${String(h.drops_today).padStart(11)}`);
    }
  }
  const stored = (await alerts('ListAlerts', { page_size: 100 })).alerts;
  if (!quiet) {
    console.log('\n  alert                                   severity  status     raised  deliveries');
    for (const a of stored) {
      console.log(`  ${a.event_type.padEnd(39)} ${a.severity.replace('SEVERITY_', '').toLowerCase().padEnd(9)} ` +
        `${a.status.replace('STATUS_', '').toLowerCase().padEnd(10)} ${String(a.raise_count).padStart(6)}  ` +
        `${a.deliveries.map((d) => `${d.channel.replace('CHANNEL_', '').toLowerCase()}:${d.status.replace('STATUS_', '').toLowerCase()}`).join(' ')}`);
    }
    console.log();
  }
  if (!quiet) {
    // Peak resident memory of each service over the demo (Linux /proc): what the Kubernetes
    // requests are sized against, at this small scale.
    const peak = (pid) => readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmHWM:\s+(\d+) kB/m)?.[1];
    console.log(`  peak memory: ${['session-service', 'health-monitor', 'alert-service']
      .map((n) => `${n} ${(Number(peak(processes.find((p) => p.name === n).proc.pid)) / 1024).toFixed(1)} MiB`).join(', ')}\n`);
  }
  const ids2 = hooks.map((h) => h.id);
  check(`every webhook signed and delivered once (${hooks.length} received, ${hooks.filter((h) => h.kind === 'resolved').length} resolved notices); ${mails.length} e-mails`,
    hooks.length > 0 && hooks.every((h) => h.verified) && new Set(ids2).size === ids2.length);
  check('final levels: Paris CRITICAL (logged out: pair again), the others HEALTHY',
    final.find((h) => h.session_id === ids.paris)?.level === 'HEALTH_LEVEL_CRITICAL' &&
    [ids.berlin, lisboa].every((id) => final.find((h) => h.session_id === id)?.level === 'HEALTH_LEVEL_HEALTHY'));
  if (prometheus) {
    // One more scrape after the last change, then the data is flushed by a clean stop.
    await new Promise((r) => setTimeout(r, 2500));
    writeFileSync(join(dashboardDir, 'range'), JSON.stringify({ start: promStartedAt / 1000, end: Date.now() / 1000 }));
  }
  exitCode = checks.every((c) => c.ok) ? 0 : 1;
  if (stay && !quiet) {
    console.log(`  Everything keeps running for the console at ${consoleUrl} — Ctrl-C to stop.`);
    await new Promise((resolve) => process.once('SIGINT', resolve));
  }
} catch (e) {
  console.error(`demo: ${e.stack ?? e}`);
  check('no unexpected error', false, e.message);
} finally {
  polling = false;
  await poller;
  // session-service first, so the monitor's watch ends from the server side.
  for (const name of ['console', 'health-monitor', 'session-service', 'alert-service', 'prometheus', 'smtp-sink', 'wa-sim']) {
    const p = processes.find((x) => x.name === name);
    if (!p) continue;
    if (p.stop) p.stop(); else { p.proc.kill('SIGTERM'); await p.exited; }
  }
  receiver.close();
  rmSync(work, { recursive: true, force: true });
  const passed = checks.filter((c) => c.ok).length;
  if (!quiet) console.log(`${passed} of ${checks.length} steps seen${passed === checks.length ? '' : ` — ${checks.length - passed} missing`}; everything the demo started is stopped.`);
  else console.log(`${passed} passed, ${checks.length - passed} failed`);
  process.exit(exitCode);
}
