// The console in a real browser: Debian's chromium driven by playwright-core (no browser
// download), against the real services on loopback — wa-sim, session-service and health-monitor
// on PostgreSQL, with API keys — and the console process bridging gRPC-Web to them.
//
//   sign-in     a wrong key is refused on the form; the admin key shows every session
//   drops       wa-sim drops a session's socket N times (--drops, default 50); the session
//               page's dot leaves green within 0.5 s and is green again after the reconnect
//               (p50/p99 printed as JSON)
//   scopes      a read-only key sees Reconnect disabled; the admin key's Reconnect works
//   bad input   a malformed gRPC-Web body and an oversized one are answered with a gRPC status
//
// Environment: WA_SIM, SESSION_SERVICE, HEALTH_MONITOR, CONSOLE, DATABASE_URL, CHROMIUM
// (default /usr/bin/chromium). Exit code 0 only if every check passed.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import grpc from '@grpc/grpc-js';
import { useMultiFileAuthState } from 'baileys';
import { chromium } from 'playwright-core';
import { startSim, requiredEnv, waitFor, freePort } from '../interop/harness.mjs';
import { SessionService, unary } from '../e2e/api.mjs';

const drops = Number(process.argv.find((a) => a.startsWith('--drops='))?.split('=')[1] ?? 50);
const checks = [];
function check(name, ok, detail = '') {
  checks.push({ name, ok });
  console.log(`${ok ? 'ok' : 'not ok'} ${checks.length} - ${name}${detail ? ` # ${detail}` : ''}`);
  return ok;
}
const logLevel = process.env.WAS_E2E_LOG_LEVEL || 'warn';
const procs = [];
function startProcess(binary, args) {
  const proc = spawn(binary, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  procs.push(proc);
  return proc;
}
const percentile = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] : NaN;
};

const adminKey = `admin-${randomBytes(12).toString('hex')}`;
const readKey = `reader-${randomBytes(12).toString('hex')}`;
const apiKeys = `ops:admin:${adminKey},dash:read:${readKey}`;
const work = mkdtempSync(join(tmpdir(), 'was-browser-'));
const sim = await startSim();
const sealingKey = randomBytes(32).toString('hex');
const sessionPort = await freePort();
const monitorPort = await freePort();
const consolePort = await freePort();
let browser = null;
let exitCode = 1;

try {
  startProcess(requiredEnv('SESSION_SERVICE'), [
    '--replica_id=s1', `--grpc_listen=127.0.0.1:${sessionPort}`, '--metrics_listen=',
    `--database_url=${requiredEnv('DATABASE_URL')}`, `--auth_state_key=demo:${sealingKey}`,
    `--api_keys=${apiKeys}`,
    `--wa_url=${sim.url}`, `--wa_version_url=${sim.versionUrl}`, `--wa_root_key=${sim.rootPublicKey.toString('hex')}`,
    '--reconnect_backoff=300ms,1s', '--restore_per_second=0', `--log_level=${logLevel}`,
  ]);
  const admin = new grpc.Metadata();
  admin.set('x-api-key', adminKey);
  const sessionClient = new SessionService(`127.0.0.1:${sessionPort}`, grpc.credentials.createInsecure());
  const call = (method, req = {}) => new Promise((resolve, reject) =>
    sessionClient[method](req, admin, { deadline: Date.now() + 10000 }, (err, res) => (err ? reject(err) : resolve(res))));
  await waitFor(async () => { try { await call('GetHealth'); return true; } catch { return false; } },
    { timeoutMs: 20000, what: 'session-service to answer' });
  startProcess(requiredEnv('HEALTH_MONITOR'), [
    '--replica_id=m1', `--grpc_listen=127.0.0.1:${monitorPort}`, '--metrics_listen=',
    `--database_url=${requiredEnv('DATABASE_URL')}`, `--api_keys=${apiKeys}`,
    `--session_service=127.0.0.1:${sessionPort}`, `--session_service_api_key=${adminKey}`,
    '--light_interval=1s', '--fast_interval=1s', '--deep_interval=5s', `--log_level=${logLevel}`,
  ]);
  startProcess(requiredEnv('CONSOLE'), [
    `--http_listen=127.0.0.1:${consolePort}`, '--metrics_listen=',
    `--session_service=127.0.0.1:${sessionPort}`, `--monitor_service=127.0.0.1:${monitorPort}`,
    '--alert_service=', `--log_level=${logLevel}`,
  ]);
  const base = `http://127.0.0.1:${consolePort}`;
  await waitFor(async () => { try { return (await fetch(`${base}/readyz`)).ok; } catch { return false; } },
    { timeoutMs: 20000, what: 'the console to be ready' });

  // Three linked devices from creds.json files Baileys wrote.
  const ids = {};
  const jids = {};
  for (const [i, name] of ['Berlin', 'Hamburg', 'Munich'].entries()) {
    const dir = join(work, `device-${name}`);
    const { state, saveCreds } = await useMultiFileAuthState(dir);
    const jid = `1555003${1000 + i}:${2 + i}@s.whatsapp.net`;
    state.creds.me = { id: jid, name: `Shop ${name}` };
    await saveCreds();
    const credsJson = readFileSync(join(dir, 'creds.json'), 'utf8');
    jids[name] = jid.split('@')[0];
    await sim.post('/devices', { creds: JSON.parse(credsJson) });
    const { session } = await call('CreateSession', {
      tenant_id: 'acme', session_name: `shop-${name.toLowerCase()}`, account_name: `Shop ${name}`, creds_json: credsJson,
    });
    ids[name] = session.id;
  }
  await waitFor(async () => (await call('ListSessions', {})).sessions.every((s) => s.state === 'SESSION_STATE_CONNECTED'),
    { timeoutMs: 20000, what: 'three sessions CONNECTED' });

  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
  const context = await browser.newContext();
  const page = await context.newPage();
  const consoleErrors = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));

  // Sign-in.
  await page.goto(base);
  await page.fill('#key', 'not-a-valid-key-0000');
  await page.click('button[type=submit]');
  const refused = await page.waitForSelector('.signin .err', { timeout: 10000 }).then((e) => e.textContent(), () => '');
  check('a wrong API key is refused on the sign-in form', /not valid/.test(refused), refused);
  await page.fill('#key', adminKey);
  await page.click('button[type=submit]');
  const rows = await page.waitForFunction(() => document.querySelectorAll('.spacer .row').length === 3, null, { timeout: 10000 })
    .then(() => true, () => false);
  check('the admin key shows the three sessions', rows);

  // wa-sim holds a logged-in socket of `jid`.
  const loggedIn = (jid) => waitFor(async () => {
    try { return (await sim.get('/connections')).connections.some((c) => c.jid === jid && c.logged_in === true); } catch { return false; }
  }, { timeoutMs: 10000, what: `a logged-in socket of ${jid}` });

  // Drops: the session page's dot, timed by a MutationObserver in the page.
  await page.goto(`${base}/sessions/${ids.Berlin}`);
  await page.waitForSelector('h1 wa-status-dot[state="green"]', { timeout: 15000 });
  await page.evaluate(() => {
    window.dotChanges = [];
    const dot = document.querySelector('h1 wa-status-dot');
    new MutationObserver(() => window.dotChanges.push({ at: Date.now(), state: dot.getAttribute('state') }))
      .observe(dot, { attributes: true, attributeFilter: ['state'] });
  });
  const toRed = [];
  const toGreen = [];
  let missed = 0;
  for (let i = 0; i < drops; i += 1) {
    await page.evaluate(() => { window.dotChanges = []; });
    const t0 = Date.now();
    await sim.post(`/connections/${jids.Berlin}/drop`, {});
    const ok = await page.waitForFunction(() => {
      const c = window.dotChanges;
      return c.some((x) => x.state !== 'green') && c[c.length - 1].state === 'green';
    }, null, { timeout: 15000, polling: 20 }).then(() => true, () => false);
    if (ok) {
      const changes = await page.evaluate(() => window.dotChanges);
      toRed.push(changes.find((x) => x.state !== 'green').at - t0);
      toGreen.push(changes[changes.length - 1].at - t0);
    } else {
      missed += 1;
    }
    await loggedIn(jids.Berlin);  // the session's new socket, before the next drop
  }
  const figures = {
    drops, missed,
    not_green_ms: { p50: percentile(toRed, 50), p99: percentile(toRed, 99), max: Math.max(...toRed) },
    green_again_ms: { p50: percentile(toGreen, 50), p99: percentile(toGreen, 99) },
  };
  console.log(`# ${JSON.stringify({ bench: 'console_dot_latency', ...figures })}`);
  check(`the dot leaves green within 0.5 s of each of ${drops} drops (p99)`, missed === 0 && figures.not_green_ms.p99 <= 500,
    JSON.stringify(figures.not_green_ms));
  check('and turns green again after each reconnect', missed === 0 && toGreen.length === drops);

  // Scopes: Reconnect disabled for a read-only key, working for the admin key.
  const adminReconnect = page.locator('.actions button', { hasText: 'Reconnect' });
  check('the admin key may press Reconnect', await adminReconnect.isEnabled());
  await adminReconnect.click();
  const done = await page.waitForFunction(() => /Reconnect: done/.test(document.querySelector('.actions [role=status]')?.textContent ?? ''),
    null, { timeout: 10000 }).then(() => true, () => false);
  check('Reconnect from the session page works', done);
  const readerPage = await (await browser.newContext()).newPage();
  readerPage.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  readerPage.on('pageerror', (e) => consoleErrors.push(String(e)));
  await readerPage.goto(base);
  await readerPage.fill('#key', readKey);
  await readerPage.click('button[type=submit]');
  await readerPage.waitForSelector('.spacer .row', { timeout: 10000 });
  await readerPage.goto(`${base}/sessions/${ids.Berlin}`);  // the key stays in the tab's session storage
  const readerButton = readerPage.locator('.actions button', { hasText: 'Reconnect' });
  await readerButton.waitFor({ timeout: 10000 });
  check('a read-only key sees Reconnect disabled', !(await readerButton.isEnabled()));

  // The same call through the bridge as a browser's fetch sends it: the service refuses it too.
  const grpcWeb = async (method, body, key = adminKey) => {
    const res = await fetch(`${base}/wasentinel.session.v1.SessionService/${method}`, {
      method: 'POST', headers: { 'content-type': 'application/grpc-web+proto', 'x-api-key': key }, body,
    });
    await res.arrayBuffer();
    return res.headers.get('grpc-status');
  };
  const frame = (message) => {
    const header = Buffer.alloc(5);
    header.writeUInt32BE(message.length, 1);
    return Buffer.concat([header, message]);
  };
  const reconnect = frame(SessionService.service.Reconnect.requestSerialize({ id: ids.Berlin }));
  check('a read-only key\'s Reconnect through the bridge is PERMISSION_DENIED', await grpcWeb('Reconnect', reconnect, readKey) === '7');

  // Bad input to the bridge.
  check('a malformed gRPC-Web body is INVALID_ARGUMENT', await grpcWeb('GetSession', Buffer.from([0, 0, 0])) === '3');
  check('a body over the size limit is RESOURCE_EXHAUSTED', await grpcWeb('GetSession', Buffer.alloc(2 << 20)) === '8');
  const claimsTooMuch = Buffer.from([0, 0, 0x20, 0, 0, 1, 2, 3]);  // a frame of 2 MiB, 3 bytes sent
  check('a frame claiming more than the limit is RESOURCE_EXHAUSTED', await grpcWeb('GetSession', claimsTooMuch) === '8');
  check('the console itself still serves', (await fetch(`${base}/healthz`)).ok);
  check('no errors in the page\'s console', consoleErrors.filter((e) => !/Failed to load resource/.test(e)).length === 0,
    consoleErrors.slice(0, 3).join(' | '));
  exitCode = checks.every((c) => c.ok) ? 0 : 1;
} catch (e) {
  console.error(e);
  exitCode = 1;
} finally {
  await browser?.close().catch(() => {});
  for (const p of procs) p.kill('SIGTERM');
  sim.stop();
  rmSync(work, { recursive: true, force: true });
}
process.exit(exitCode);
