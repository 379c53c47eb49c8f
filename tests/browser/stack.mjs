// What the browser tests share: the whole system on loopback — wa-sim, session-service and
// health-monitor on PostgreSQL with API keys, alert-service with a real SMTP server
// (tests/support/smtp-sink) when asked, and the console process bridging gRPC-Web to them —
// linked devices made from creds.json files Baileys wrote, Debian's chromium driven by
// playwright-core, and TAP-like checks.
//
// Environment: WA_SIM, SESSION_SERVICE, HEALTH_MONITOR, CONSOLE, DATABASE_URL, PROTO_DIR,
// ALERT_SERVICE (with { alerts: true }), CHROMIUM (default /usr/bin/chromium).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import grpc from '@grpc/grpc-js';
import { useMultiFileAuthState } from 'baileys';
import { chromium } from 'playwright-core';
import { startSim, requiredEnv, waitFor, freePort } from '../interop/harness.mjs';
import { AlertService, MonitorService, SessionService } from '../e2e/api.mjs';

const checks = [];
/// Prints one TAP line and remembers the result; answers `ok`.
export function check(name, ok, detail = '') {
  checks.push({ name, ok });
  console.log(`${ok ? 'ok' : 'not ok'} ${checks.length} - ${name}${detail ? ` # ${detail}` : ''}`);
  return ok;
}
export const allPassed = () => checks.length > 0 && checks.every((c) => c.ok);

export const percentile = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] : NaN;
};

/// Starts the system. `sessions`: account names of linked devices to create (tenant "acme");
/// `alerts`: also alert-service (the monitor raises alerts there) and an SMTP server.
/// Answers handles for the test and `stop()`.
export async function startStack({ sessions = ['Berlin', 'Hamburg', 'Munich'], alerts = false } = {}) {
  const logLevel = process.env.WAS_E2E_LOG_LEVEL || 'warn';
  const procs = new Map();
  const startProcess = (name, binary, args) => {
    const proc = spawn(binary, args, { stdio: ['ignore', 'inherit', 'inherit'] });
    procs.set(name, proc);
    return proc;
  };
  const adminKey = `admin-${randomBytes(12).toString('hex')}`;
  const readKey = `reader-${randomBytes(12).toString('hex')}`;
  const apiKeys = `ops:admin:${adminKey},dash:read:${readKey}`;
  const work = mkdtempSync(join(tmpdir(), 'was-browser-'));
  const sim = await startSim();
  const sealingKey = randomBytes(32).toString('hex');
  const ports = { session: await freePort(), monitor: await freePort(), alert: await freePort(), console: await freePort() };
  const metadata = new grpc.Metadata();
  metadata.set('x-api-key', adminKey);
  const caller = (client) => (method, req = {}) => new Promise((resolve, reject) =>
    client[method](req, metadata, { deadline: Date.now() + 10000 }, (err, res) => (err ? reject(err) : resolve(res))));
  const answers = async (call, method) => { try { await call(method); return true; } catch { return false; } };
  let browser = null;

  const sessionClient = new SessionService(`127.0.0.1:${ports.session}`, grpc.credentials.createInsecure());
  const stack = {
    sim, adminKey, readKey, work, ids: {}, jids: {},
    base: `http://127.0.0.1:${ports.console}`,
    /// Unary calls with the admin key: stack.session('GetSession', { id }).
    session: caller(sessionClient),
    monitor: caller(new MonitorService(`127.0.0.1:${ports.monitor}`, grpc.credentials.createInsecure())),
    alert: caller(new AlertService(`127.0.0.1:${ports.alert}`, grpc.credentials.createInsecure())),
    mails: () => [],
    /// Every session event from now on (or after `afterSequence`), as session-service streams
    /// it to the admin key: { events, ready (the watch is in place), close() }.
    watch(afterSequence) {
      const events = [];
      const call = sessionClient.WatchSessionEvents(afterSequence === undefined ? {} : { after_sequence: afterSequence }, metadata);
      const ready = new Promise((resolve) => call.on('metadata', resolve));
      call.on('data', (e) => events.push(e));
      call.on('error', () => {});
      return { events, ready, close: () => call.cancel() };
    },
    /// Stops one of the processes ('session-service', 'health-monitor', 'alert-service').
    kill: (name) => procs.get(name)?.kill('SIGTERM'),
    /// A new browser context (its own session storage) and page; page errors are collected.
    pageErrors: [],
    async newPage(options = {}) {
      const page = await (await browser.newContext(options)).newPage();
      page.on('console', (m) => { if (m.type() === 'error') stack.pageErrors.push(m.text()); });
      page.on('pageerror', (e) => stack.pageErrors.push(String(e)));
      return page;
    },
    /// Checks the pages printed no error (a failed resource load aside: the tests make some).
    checkPageErrors() {
      const errors = stack.pageErrors.filter((e) => !/Failed to load resource/.test(e));
      return check('no errors in the page\'s console', errors.length === 0, errors.slice(0, 3).join(' | '));
    },
    /// Signs in on the console's form and waits for the session table's first rows.
    async signIn(page, key = adminKey) {
      await page.goto(stack.base);
      await page.fill('#key', key);
      await page.click('button[type=submit]');
      await page.waitForSelector('.spacer .row', { timeout: 15000 });
    },
    /// Drops `jid`'s logged-in socket at wa-sim, once there is one (a socket being replaced can
    /// be gone between the look and the drop: then the next one is dropped).
    drop: (jid) => waitFor(async () => {
      try {
        if (!(await sim.get('/connections')).connections.some((c) => c.jid === jid && c.logged_in === true)) return false;
        await sim.post(`/connections/${jid}/drop`, {});
        return true;
      } catch { return false; }
    }, { timeoutMs: 15000, what: `a socket of ${jid} to drop` }),
    /// wa-sim holds a logged-in socket of `jid` (user:device).
    loggedIn: (jid) => waitFor(async () => {
      try { return (await sim.get('/connections')).connections.some((c) => c.jid === jid && c.logged_in === true); } catch { return false; }
    }, { timeoutMs: 15000, what: `a logged-in socket of ${jid}` }),
    async stop() {
      await browser?.close().catch(() => {});
      for (const p of procs.values()) p.kill('SIGTERM');
      sim.stop();
      rmSync(work, { recursive: true, force: true });
    },
  };

  try {
    if (alerts) {
      const smtpDir = join(work, 'smtp');
      procs.set('smtp', spawn('/usr/bin/python3', [
        new URL('../support/smtp-sink', import.meta.url).pathname,
        '--dir', join(smtpDir, 'messages'), '--ready', join(smtpDir, 'ready')], { stdio: ['ignore', 'inherit', 'inherit'] }));
      await waitFor(() => existsSync(join(smtpDir, 'ready')), { timeoutMs: 20000, what: 'smtp-sink' });
      const smtpPort = Number(readFileSync(join(smtpDir, 'ready'), 'utf8'));
      stack.mails = () => (existsSync(join(smtpDir, 'messages')) ? readdirSync(join(smtpDir, 'messages')) : [])
        .filter((f) => f.endsWith('.json')).sort()
        .map((f) => JSON.parse(readFileSync(join(smtpDir, 'messages', f), 'utf8')));
      startProcess('alert-service', requiredEnv('ALERT_SERVICE'), [
        '--replica_id=a1', `--grpc_listen=127.0.0.1:${ports.alert}`, '--metrics_listen=',
        `--database_url=${requiredEnv('DATABASE_URL')}`, `--secret_key=${sealingKey}`, `--api_keys=${apiKeys}`,
        '--allow_private_targets', '--dispatchers=2', `--smtp_url=smtp://127.0.0.1:${smtpPort}`,
        '--smtp_from=WA Sentinel <alerts@sentinel.example>', '--delivery_backoff=200ms,200ms',
        '--webhook_timeout=2s', `--reconnect_url=http://127.0.0.1:${ports.console}/sessions/{session_id}`,
        `--log_level=${logLevel}`,
      ]);
      await waitFor(() => answers(stack.alert, 'ListWebhookEndpoints'), { timeoutMs: 20000, what: 'alert-service to answer' });
    }
    startProcess('session-service', requiredEnv('SESSION_SERVICE'), [
      '--replica_id=s1', `--grpc_listen=127.0.0.1:${ports.session}`, '--metrics_listen=',
      `--database_url=${requiredEnv('DATABASE_URL')}`, `--auth_state_key=demo:${sealingKey}`,
      `--api_keys=${apiKeys}`,
      `--wa_url=${sim.url}`, `--wa_version_url=${sim.versionUrl}`, `--wa_root_key=${sim.rootPublicKey.toString('hex')}`,
      '--reconnect_backoff=300ms,1s', '--restore_per_second=0', `--log_level=${logLevel}`,
    ]);
    await waitFor(() => answers(stack.session, 'GetHealth'), { timeoutMs: 20000, what: 'session-service to answer' });
    startProcess('health-monitor', requiredEnv('HEALTH_MONITOR'), [
      '--replica_id=m1', `--grpc_listen=127.0.0.1:${ports.monitor}`, '--metrics_listen=',
      `--database_url=${requiredEnv('DATABASE_URL')}`, `--api_keys=${apiKeys}`,
      `--session_service=127.0.0.1:${ports.session}`, `--session_service_api_key=${adminKey}`,
      ...(alerts ? [`--alert_service=127.0.0.1:${ports.alert}`, `--alert_service_api_key=${adminKey}`] : []),
      '--light_interval=1s', '--fast_interval=1s', '--deep_interval=5s', `--log_level=${logLevel}`,
    ]);
    startProcess('console', requiredEnv('CONSOLE'), [
      `--http_listen=127.0.0.1:${ports.console}`, '--metrics_listen=',
      `--session_service=127.0.0.1:${ports.session}`, `--monitor_service=127.0.0.1:${ports.monitor}`,
      `--alert_service=${alerts ? `127.0.0.1:${ports.alert}` : ''}`, `--log_level=${logLevel}`,
    ]);
    await waitFor(async () => { try { return (await fetch(`${stack.base}/readyz`)).ok; } catch { return false; } },
      { timeoutMs: 20000, what: 'the console to be ready' });

    // Linked devices from creds.json files Baileys wrote.
    for (const [i, name] of sessions.entries()) {
      const dir = join(work, `device-${name}`);
      const { state, saveCreds } = await useMultiFileAuthState(dir);
      const jid = `1555003${1000 + i}:${2 + i}@s.whatsapp.net`;
      state.creds.me = { id: jid, name: `Shop ${name}` };
      await saveCreds();
      const credsJson = readFileSync(join(dir, 'creds.json'), 'utf8');
      stack.jids[name] = jid.split('@')[0];
      await sim.post('/devices', { creds: JSON.parse(credsJson) });
      const { session } = await stack.session('CreateSession', {
        tenant_id: 'acme', session_name: `shop-${name.toLowerCase()}`, account_name: `Shop ${name}`,
        owner_email: `owner-${name.toLowerCase()}@shop.example`, creds_json: credsJson,
      });
      stack.ids[name] = session.id;
    }
    await waitFor(async () => (await stack.session('ListSessions', {})).sessions.every((s) => s.state === 'SESSION_STATE_CONNECTED'),
      { timeoutMs: 20000, what: `${sessions.length} sessions CONNECTED` });
    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      args: ['--no-sandbox', '--disable-dev-shm-usage'],
    });
    return stack;
  } catch (e) {
    await stack.stop();
    throw e;
  }
}
