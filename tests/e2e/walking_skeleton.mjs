// The walking skeleton end to end, with the real binaries: wa-sim on loopback, session-service
// on PostgreSQL, sessions created over gRPC (grpc-js, a client we did not write) from creds.json
// files that Baileys' own useMultiFileAuthState wrote. It drops one session, logs another out,
// silences the third, restarts session-service, and checks every state change on the way.
//
// Environment: WA_SIM, SESSION_SERVICE (binaries), DATABASE_URL, PROTO_DIR.
// Flags: --demo prints the event stream and a summary for people; otherwise TAP-like lines.
// Exit code 0 only if every step was seen.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import { useMultiFileAuthState } from 'baileys';
import { startSim, requiredEnv, waitFor, freePort } from '../interop/harness.mjs';

const demo = process.argv.includes('--demo');
const t0 = Date.now();
const stamp = () => `+${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s`;
const say = (...a) => console.log(...a);
const checks = [];
function check(name, ok, detail = '') {
  checks.push({ name, ok });
  if (demo) say(`${ok ? '  ✓' : '  ✗'} ${name}${detail ? ` (${detail})` : ''}`);
  else say(`${ok ? 'ok' : 'not ok'} ${checks.length} - ${name}${detail ? ` # ${detail}` : ''}`);
  return ok;
}


const pkg = protoLoader.loadSync('wasentinel/session/v1/session.proto', {
  includeDirs: [requiredEnv('PROTO_DIR')], keepCase: true, enums: String, longs: Number, defaults: true,
});
const { SessionService } = grpc.loadPackageDefinition(pkg).wasentinel.session.v1;

const work = mkdtempSync(join(tmpdir(), 'was-skeleton-'));
// wa-sim refuses the compiled-in WhatsApp Web version (405) and its page names a newer one:
// session-service, left on --wa_version=auto, must read that page to log in at all.
const liveVersion = 1045649367 + 1000;
const sim = await startSim([`--min_version=${liveVersion}`]);
const grpcPort = await freePort();
const metricsPort = await freePort();
const sealingKey = randomBytes(32).toString('hex');
let service = null;

function startService() {
  const proc = spawn(requiredEnv('SESSION_SERVICE'), [
    `--grpc_listen=127.0.0.1:${grpcPort}`,
    `--metrics_listen=127.0.0.1:${metricsPort}`,
    `--database_url=${requiredEnv('DATABASE_URL')}`,
    `--auth_state_key=demo:${sealingKey}`,
    `--wa_url=${sim.url}`, `--wa_version_url=${sim.versionUrl}`,
    `--wa_root_key=${sim.rootPublicKey.toString('hex')}`,
    '--keepalive_interval=1s,1s', '--keepalive_timeout=1s', '--keepalive_max_silence=3s',
    '--reconnect_backoff=1s,2s,4s', '--restore_per_second=0',
    `--log_level=${demo ? 'warn' : 'info'}`,
  ], { stdio: ['ignore', 'inherit', 'inherit'] });
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  return { proc, exited };
}

const client = new SessionService(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure());
const call = (method, req) => new Promise((resolve, reject) =>
  client[method](req, { deadline: Date.now() + 10000 }, (err, res) => (err ? reject(err) : resolve(res))));

// The event stream, resumed after a restart from the last sequence seen.
const events = [];
const names = new Map();
let lastSeq = 0;
let stream = null;
function watch() {
  stream = client.WatchSessionEvents({ after_sequence: lastSeq });
  stream.on('data', (e) => {
    lastSeq = e.sequence;
    events.push(e);
    const st = (s) => s.replace('SESSION_STATE_', '');
    if (demo) {
      say(`${stamp()}  ${e.tenant_id.replace('tenant-', '').padEnd(8)} ` +
          `${st(e.from_state).padEnd(12)} → ${st(e.to_state).padEnd(12)} ${e.reason.replace('STATE_REASON_', '')}` +
          `${e.error ? `  (${e.error})` : ''}`);
    }
  });
  stream.on('error', () => {});
}
// Waits until `id` has an event to `state` (with `reason`) after index `from`.
const sawEvent = (id, state, reason, from = 0, timeoutMs = 20000) => waitFor(() => events.slice(from).some(
  (e) => e.session_id === id && e.to_state === `SESSION_STATE_${state}` &&
         (!reason || e.reason === `STATE_REASON_${reason}`)), { timeoutMs, what: `${names.get(id)} ${state}` })
  .then(() => true, () => false);
const latestState = (id) => [...events].reverse().find((e) => e.session_id === id)?.to_state;

let exitCode = 1;
try {
  if (demo) say(`wa-sim on ${sim.url}; session-service on 127.0.0.1:${grpcPort}`);
  service = startService();
  await waitFor(async () => { try { await call('GetHealth', {}); return true; } catch { return false; } },
    { timeoutMs: 20000, what: 'session-service to answer' });
  watch();

  // Three linked devices whose creds.json Baileys itself wrote.
  const sessions = [];
  for (const [i, name] of ['shop-a', 'shop-b', 'shop-c'].entries()) {
    const dir = join(work, name);
    const { state, saveCreds } = await useMultiFileAuthState(dir);
    state.creds.me = { id: `1555000${7000 + i}:${3 + i}@s.whatsapp.net`, name: `Shop ${name}` };
    await saveCreds();
    const credsJson = readFileSync(join(dir, 'creds.json'), 'utf8');
    await sim.post('/devices', { creds: JSON.parse(credsJson) });
    const { session } = await call('CreateSession', {
      tenant_id: `tenant-${name}`, session_name: 'primary', account_name: `Shop ${name}`,
      owner_email: `${name}@example.com`, creds_json: credsJson,
    }).catch((e) => { throw new Error(`CreateSession ${name}: ${e.message}`); });
    names.set(session.id, name);
    sessions.push({ ...session, name, jid: state.creds.me.id.split('@')[0] });
  }
  const [a, b, c] = sessions;
  if (demo) say('\n— three sessions created from Baileys creds.json files');
  for (const s of sessions) check(`${s.name} CONNECTED`, await sawEvent(s.id, 'CONNECTED', 'LOGIN_SUCCESS'));
  const versionHealth = await call('GetHealth', {});
  const simStats = await sim.get('/stats');
  check('logged in announcing the version read from the WhatsApp Web page, never refused 405',
    versionHealth.wa_version === `2.3000.${liveVersion}` && versionHealth.wa_version_source === 'live' &&
    simStats.version_page_reads >= 1 && simStats.outdated_refused === 0,
    `${versionHealth.wa_version} (${versionHealth.wa_version_source}); ${simStats.outdated_refused} refused`);

  if (demo) say('\n— wa-sim drops shop-a, logs shop-b out (401), silences shop-c');
  let mark = events.length;
  await sim.post(`/connections/${a.jid}/drop`, { mode: 'close' });
  await sim.post(`/connections/${b.jid}/stream-error`, { code: 401 });
  await sim.post(`/connections/${c.jid}/blackhole`, { enabled: true });
  check('shop-a DISCONNECTED (socket closed)', await sawEvent(a.id, 'DISCONNECTED', 'SOCKET_CLOSED', mark));
  check('shop-a CONNECTING (retry)', await sawEvent(a.id, 'CONNECTING', 'RETRY', mark));
  check('shop-a CONNECTED again', await sawEvent(a.id, 'CONNECTED', 'LOGIN_SUCCESS', mark));
  check('shop-b LOGGED_OUT, not retried', await sawEvent(b.id, 'LOGGED_OUT', 'LOGGED_OUT', mark));
  check('shop-c keepalive timeout', await sawEvent(c.id, 'DISCONNECTED', 'KEEPALIVE_TIMEOUT', mark));
  check('shop-c CONNECTED again', await sawEvent(c.id, 'CONNECTED', 'LOGIN_SUCCESS', mark));
  const { session: bNow } = await call('GetSession', { id: b.id });
  check('shop-b credentials forgotten', !bNow.has_credentials && bNow.state === 'SESSION_STATE_LOGGED_OUT');

  if (demo) say('\n— session-service restarts');
  mark = events.length;
  service.proc.kill('SIGTERM');
  const { code } = await service.exited;
  check('session-service stopped cleanly on SIGTERM', code === 0, `exit ${code}`);
  check('shop-a DISCONNECTED (shutdown)', await sawEvent(a.id, 'DISCONNECTED', 'SHUTDOWN', mark, 5000));
  const { connections } = await sim.get('/connections');
  check('no socket left at wa-sim', connections.length === 0, `${connections.length} left`);
  service = startService();
  await waitFor(async () => { try { await call('GetHealth', {}); return true; } catch { return false; } },
    { timeoutMs: 20000, what: 'session-service to answer again' });
  watch();
  check('shop-a restored', await sawEvent(a.id, 'CONNECTED', 'LOGIN_SUCCESS', mark));
  check('shop-c restored', await sawEvent(c.id, 'CONNECTED', 'LOGIN_SUCCESS', mark));
  check('shop-b stays LOGGED_OUT', latestState(b.id) === 'SESSION_STATE_LOGGED_OUT');
  const health = await call('GetHealth', {});
  check('health DEGRADED with 2 of 3 connected', health.status === 'OVERALL_STATUS_DEGRADED',
    health.counts.map((x) => `${x.state.replace('SESSION_STATE_', '')}=${x.count}`).join(' '));
  const wactl = (...a) => spawnSync(requiredEnv('WACTL'), [`--addr=127.0.0.1:${grpcPort}`, ...a], { encoding: 'utf8' });
  const listed = wactl('--json', 'list', '--state=CONNECTED');
  check('wactl lists the 2 connected sessions', listed.status === 0 && JSON.parse(listed.stdout).sessions.length === 2,
    listed.stderr.trim());
  const bad = wactl('get', 'not-a-uuid');
  check('wactl get of a malformed id: INVALID_ARGUMENT', bad.status === 1 && bad.stderr.includes('INVALID_ARGUMENT'),
    bad.stderr.trim());
  const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const gauge = (state) => Number(metrics.match(new RegExp(`^wasentinel_sessions\\{state="${state}"\\} (\\S+)`, 'm'))?.[1]);
  // The gauge counts the sessions this process holds: the restored two.
  check('metrics: 2 sessions CONNECTED', gauge('CONNECTED') === 2 && gauge('CONNECTING') === 0,
    `CONNECTED=${gauge('CONNECTED')} CONNECTING=${gauge('CONNECTING')}`);
  // The exposition passes Prometheus' own linter (promtool from Debian's prometheus package).
  const lint = spawnSync('promtool', ['check', 'metrics'], { input: metrics, encoding: 'utf8' });
  check('promtool check metrics passes', lint.status === 0, (lint.stdout + lint.stderr).trim().split('\n').slice(0, 3).join('; '));

  if (demo) say('\n— wactl pairs a new device by QR code; wa-sim plays the phone');
  const pairing = spawn(requiredEnv('WACTL'),
    [`--addr=127.0.0.1:${grpcPort}`, '--json', 'pair', '--tenant=tenant-new', '--account=New shop'],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  const pairLines = [];
  let pairErr = '';
  pairing.stderr.on('data', (d) => { pairErr += d; });
  createInterface({ input: pairing.stdout }).on('line', (l) => pairLines.push(JSON.parse(l)));
  const pairExit = new Promise((resolve) => pairing.on('exit', resolve));
  await waitFor(() => pairLines.some((u) => u.qr), { timeoutMs: 20000, what: 'a QR code from wactl pair' });
  const qrUpdate = pairLines.find((u) => u.qr);
  const scan = await sim.post('/pair', { qr: qrUpdate.qr.code, phone: '15550008000' });
  check('wa-sim (the phone) scanned the QR code', scan.result === 'paired', JSON.stringify(scan));
  const pairCode = await pairExit;
  const success = pairLines.find((u) => u.success);
  check('wactl pair ends with success, exit 0', pairCode === 0 && success?.success.phone_number === '15550008000',
    pairErr.trim());
  const pairedId = pairLines.find((u) => u.session)?.session.id;
  check('the paired session is CONNECTED', await sawEvent(pairedId, 'CONNECTED', 'LOGIN_SUCCESS', mark));

  if (demo) say('\n— wactl pairs another device by phone-number code; wa-sim plays the person typing it');
  const byCode = spawn(requiredEnv('WACTL'),
    [`--addr=127.0.0.1:${grpcPort}`, '--json', 'pair', '--tenant=tenant-code', '--phone=+1 555 000 8001'],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  const codeLines = [];
  let codeErr = '';
  byCode.stderr.on('data', (d) => { codeErr += d; });
  createInterface({ input: byCode.stdout }).on('line', (l) => codeLines.push(JSON.parse(l)));
  const codeExit = new Promise((resolve) => byCode.on('exit', resolve));
  await waitFor(() => codeLines.some((u) => u.pairing_code), { timeoutMs: 20000, what: 'a pairing code from wactl pair --phone' });
  const typed = codeLines.find((u) => u.pairing_code).pairing_code.code;
  const entered = await sim.post('/pair-code', { code: typed, phone: '15550008001' });
  check('wa-sim (the phone) accepted the pairing code', entered.result === 'paired', JSON.stringify(entered));
  const codeRc = await codeExit;
  check('wactl pair --phone ends with success, exit 0, no QR code shown',
    codeRc === 0 && codeLines.find((u) => u.success)?.success.phone_number === '15550008001' &&
    !codeLines.some((u) => u.qr), codeErr.trim());

  if (demo) say('\n— the rest of the API from Node (grpc-js)');
  const probe = await call('ProbeSession', { id: a.id });
  check('ProbeSession answers a round trip', probe.ok === true && probe.round_trip !== null, probe.error);
  const bulk = await call('BulkGetSessions', { ids: [a.id, b.id, '6f1c1f1e-0000-4000-8000-000000000000'] });
  check('BulkGetSessions answers 2 and 1 not found', bulk.sessions.length === 2 && bulk.not_found.length === 1);
  const deep = await call('GetDeepHealth', {});
  check('GetDeepHealth: database reachable, 5 sessions', deep.database_reachable && deep.sessions.length === 5);
  mark = events.length;
  const re = await call('Reconnect', { id: c.id });
  check('Reconnect answers CONNECTING', re.session.state === 'SESSION_STATE_CONNECTING');
  check('shop-c CONNECTED after Reconnect', await sawEvent(c.id, 'CONNECTED', 'LOGIN_SUCCESS', mark));
  const out = await call('Logout', { id: c.id });
  check('Logout: LOGGED_OUT, credentials forgotten',
    out.session.state === 'SESSION_STATE_LOGGED_OUT' && !out.session.has_credentials);
  await call('DeleteSession', { id: c.id });
  check('DeleteSession: DELETED event streamed', await sawEvent(c.id, 'DELETED', 'DELETED', mark));
  const gone = await call('GetSession', { id: c.id }).then(() => 'found', (e) => e.code);
  check('a deleted session is NOT_FOUND', gone === grpc.status.NOT_FOUND, String(gone));

  const after = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  check('metrics: gRPC calls by method and code',
    /^wasentinel_grpc_calls_total\{[^}]*code="NOT_FOUND"[^}]*SessionService\/GetSession"\} 1/m.test(after) &&
    /^wasentinel_grpc_calls_in_flight\{[^}]*WatchSessionEvents"\} 1/m.test(after));

  const seqs = events.map((e) => e.sequence);
  check('event sequences strictly increase', seqs.every((s, i) => i === 0 || s > seqs[i - 1]));
  exitCode = checks.every((x) => x.ok) ? 0 : 1;
} catch (e) {
  console.error(`walking skeleton: ${e.stack ?? e}`);
  check('no unexpected error', false, e.message);
} finally {
  const step = (what) => { if (!demo) console.error(`${new Date().toISOString()} teardown: ${what}`); };
  // session-service first: its shutdown ends the watch stream from the server side. Cancelling
  // a live stream from here has aborted node 20's HTTP/2 layer (std::bad_alloc) at times.
  step('stop session-service');
  if (service) { service.proc.kill('SIGTERM'); await service.exited; }
  step('close the gRPC client');
  client.close();
  step('stop wa-sim');
  sim.stop();
  rmSync(work, { recursive: true, force: true });
  step('done');
}
const passed = checks.filter((x) => x.ok).length;
if (demo) say(`\n${passed} of ${checks.length} checks passed; ${events.length} events streamed.`);
say(`${passed} passed, ${checks.length - passed} failed`);
process.exit(exitCode);
