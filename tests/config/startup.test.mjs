// Start-up of the three services with bad settings: every WAS_ variable parsed by its flag's
// own parser and range-checked, a bad value refused with exit 2 naming the variable; every
// failure to start a message and a non-zero exit, never a signal; no secret in the output.
//
// No server is needed: the database URL points at a closed loopback port, so a configuration
// that passes every check fails next, at the database, with exit 1 — which tells the two
// apart.
//
// Environment: SESSION_SERVICE, HEALTH_MONITOR, ALERT_SERVICE (the binaries).
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import assert from 'node:assert/strict';

const closedDb = 'postgresql://was:pw@127.0.0.1:1/none?connect_timeout=2';
const sealingKey = '11'.repeat(32);
const services = {
  'session-service': {
    bin: process.env.SESSION_SERVICE,
    env: { WAS_DATABASE_URL: closedDb, WAS_AUTH_STATE_KEY: sealingKey },
  },
  'health-monitor': {
    bin: process.env.HEALTH_MONITOR,
    env: { WAS_DATABASE_URL: closedDb },
  },
  'alert-service': {
    bin: process.env.ALERT_SERVICE,
    env: { WAS_DATABASE_URL: closedDb, WAS_SECRET_KEY: sealingKey },
  },
};

// Runs a service to its end (10 s at most); answers { code, signal, output }.
function run(service, env = {}, args = []) {
  const { bin, env: base } = services[service];
  assert.ok(bin, `the ${service} binary (environment ${service.toUpperCase().replace('-', '_')})`);
  const clean = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith('WAS_')));
  return new Promise((resolve, reject) => {
    const child = spawn(bin, ['--grpc_listen=127.0.0.1:0', '--metrics_listen=', ...args], {
      env: { ...clean, ...base, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d) => { output += d; });
    child.stderr.on('data', (d) => { output += d; });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${service} did not exit within 10 s: ${output}`));
    }, 10_000);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, output });
    });
  });
}

// [service, environment, args, expected exit, text the output must hold]
const refused = [
  // Numbers, booleans and durations that do not parse: once they meant 0, false or "no limit".
  ['alert-service', { WAS_DISPATCHERS: 'four' }, [], 'WAS_DISPATCHERS="four"'],
  ['alert-service', { WAS_DISPATCHERS: '65' }, [], 'WAS_DISPATCHERS="65": wants an integer 0..64'],
  ['alert-service', { WAS_SMTP_REQUIRE_TLS: 'maybe' }, [], 'WAS_SMTP_REQUIRE_TLS'],
  ['alert-service', { WAS_EMAILS_PER_RECIPIENT_PER_HOUR: '-5' }, [],
    'WAS_EMAILS_PER_RECIPIENT_PER_HOUR="-5"'],
  ['alert-service', { WAS_WEBHOOK_RATE_PER_SECOND: 'fast' }, [], 'WAS_WEBHOOK_RATE_PER_SECOND'],
  ['alert-service', { WAS_WEBHOOK_RATE_PER_SECOND: 'nan' }, [], 'WAS_WEBHOOK_RATE_PER_SECOND'],
  ['alert-service', { WAS_WEBHOOK_TIMEOUT: '0s' }, [], 'WAS_WEBHOOK_TIMEOUT'],
  ['alert-service', { WAS_SMTP_TIMEOUT: '0s' }, [], 'WAS_SMTP_TIMEOUT'],
  ['alert-service', { WAS_DELIVERY_BACKOFF: '10s,-1s' }, [], 'WAS_DELIVERY_BACKOFF'],
  ['alert-service', { WAS_LOG_LEVEL: 'verbose' }, [], 'WAS_LOG_LEVEL="verbose"'],
  // Values that would reach an SMTP command or header.
  ['alert-service', { WAS_ALERT_RECIPIENTS: 'ops@x.example>\r\nDATA' }, [], 'WAS_ALERT_RECIPIENTS'],
  ['alert-service', { WAS_SMTP_FROM: 'IT\r\nBcc: a@x.example <it@x.example>' }, [], 'WAS_SMTP_FROM'],
  ['alert-service', { WAS_SMTP_URL: 'http://mail.example' }, [], 'WAS_SMTP_URL'],
  ['alert-service', { WAS_DATABASE_URL: '' }, [], 'WAS_DATABASE_URL=""'],
  ['session-service', { WAS_RESTORE_PER_SECOND: 'abc' }, [], 'WAS_RESTORE_PER_SECOND="abc"'],
  ['session-service', { WAS_RESTORE_PER_SECOND: '-5' }, [], 'WAS_RESTORE_PER_SECOND="-5"'],
  ['session-service', { WAS_RESTORE_PER_SECOND: 'nan' }, [], 'WAS_RESTORE_PER_SECOND'],
  ['session-service', {}, ['--keepalive_interval=0s'], '--keepalive_interval="0s"'],
  ['session-service', { WAS_KEEPALIVE_INTERVAL: '30s,20s' }, [], 'LOW not above HIGH'],
  ['session-service', { WAS_KEEPALIVE_TIMEOUT: '0s' }, [], 'WAS_KEEPALIVE_TIMEOUT'],
  ['session-service', { WAS_CONNECT_TIMEOUT: '0s' }, [], 'WAS_CONNECT_TIMEOUT'],
  ['session-service', { WAS_QR_TIMEOUTS: '0s' }, [], 'WAS_QR_TIMEOUTS'],
  ['session-service', { WAS_RESEAL_ON_START: 'maybe' }, [], 'WAS_RESEAL_ON_START'],
  ['session-service', { WAS_GRPC_LISTEN: 'nonsense' }, ['--grpc_listen=nonsense'],
    '--grpc_listen="nonsense"'],
  ['session-service', { WAS_WA_URL: 'https://web.whatsapp.com' }, [], 'WAS_WA_URL'],
  ['session-service', { WAS_LOG_LEVEL: 'verbose' }, [], 'WAS_LOG_LEVEL'],
  ['session-service', { WAS_PRESENCE: 'online' }, [], 'WAS_PRESENCE="online": wants unavailable or available'],
  ['session-service', { WAS_WA_VERSION: 'latest' }, [], 'WAS_WA_VERSION="latest": wants auto or a WhatsApp Web version'],
  ['session-service', {}, ['--wa_version=2.3000.0'], '--wa_version="2.3000.0"'],
  ['session-service', { WAS_WA_VERSION: '2.3000.1;DROP' }, [], 'WAS_WA_VERSION'],
  ['session-service', { WAS_WA_VERSION_URL: 'ftp://web.whatsapp.com/' }, [], 'WAS_WA_VERSION_URL'],
  ['health-monitor', { WAS_MAX_RECOVERIES: 'three' }, [], 'WAS_MAX_RECOVERIES="three"'],
  ['health-monitor', { WAS_MAX_RECOVERIES: '-1' }, [], 'WAS_MAX_RECOVERIES'],
  ['health-monitor', { WAS_LIGHT_INTERVAL: '0s' }, [], 'WAS_LIGHT_INTERVAL'],
  ['health-monitor', { WAS_WARNING_AFTER: '7h' }, [], 'WAS_WARNING_AFTER is longer than --critical_after'],
  ['health-monitor', { WAS_SESSION_SERVICE: '' }, [], 'WAS_SESSION_SERVICE=""'],
  ['health-monitor', { WAS_LOG_LEVEL: 'INFO', WAS_CALL_TIMEOUT: 'soon' }, [], 'WAS_CALL_TIMEOUT'],
];

for (const [service, env, args, text] of refused) {
  test(`${service} refuses ${JSON.stringify({ ...env, args })}`, async () => {
    const r = await run(service, env, args);
    assert.equal(r.signal, null, r.output);
    assert.equal(r.code, 2, r.output);
    assert.ok(r.output.includes(text), `wanted ${JSON.stringify(text)} in: ${r.output}`);
    assert.ok(!r.output.includes('\r\nDATA'), 'the value is quoted, not echoed raw');
  });
}

// Accepted settings get past the checks and stop at the closed database: exit 1 with a message.
const accepted = [
  ['alert-service', { WAS_SMTP_REQUIRE_TLS: '1' }, []],
  ['alert-service', { WAS_SMTP_REQUIRE_TLS: 'yes' }, []],
  ['alert-service', { WAS_SMTP_REQUIRE_TLS: 'TRUE' }, []],
  ['alert-service', { WAS_DISPATCHERS: 'four' }, ['--dispatchers=2']],  // the command line wins
  ['session-service', { WAS_LOG_LEVEL: 'INFO', WAS_METRICS_LISTEN: '' }, []],
  ['session-service', { WAS_QR_TIMEOUTS: '60s,20s', WAS_KEEPALIVE_INTERVAL: '25s' }, []],
  ['health-monitor', { WAS_LOG_LEVEL: 'Warning' }, []],
];

for (const [service, env, args] of accepted) {
  test(`${service} accepts ${JSON.stringify({ ...env, args })} and stops at the database`, async () => {
    const r = await run(service, env, args);
    assert.equal(r.signal, null, r.output);
    assert.equal(r.code, 1, r.output);
    assert.match(r.output, /database|PostgreSQL|connect/i);
  });
}

// Failures after the checks: a message and exit 1, never a signal (health-monitor once died
// with SIGSEGV on each of these while tearing down what it had half built).
const failing = [
  ['health-monitor', {}, [], /database|connect/i],
  ['health-monitor', { WAS_DATABASE_URL: 'notaurl://' }, [], /./],
  ['health-monitor', { WAS_UPSTREAM_CA: '/nonexistent/ca.pem' }, [], /ca\.pem|upstream|read/i],
  ['health-monitor', { WAS_TLS_CERT: '/nonexistent/cert.pem', WAS_TLS_KEY: '/nonexistent/key.pem' },
    [], /cert\.pem|read|TLS/i],
  ['health-monitor', { WAS_API_KEYS: 'a:b:c' }, [], /API key/],
  ['session-service', { WAS_API_KEYS: 'a:b:c' }, [], /API key/],
  ['alert-service', { WAS_API_KEYS: 'a:b:c' }, [], /API key/],
  ['session-service', {}, [], /database|connect/i],
  ['alert-service', {}, [], /database|connect/i],
];

for (const [service, env, args, pattern] of failing) {
  test(`${service} fails cleanly with ${JSON.stringify({ ...env, args })}`, async () => {
    const r = await run(service, env, args);
    assert.equal(r.signal, null, `killed by ${r.signal}: ${r.output}`);
    assert.ok(r.code === 1 || r.code === 2, `exit ${r.code}: ${r.output}`);
    assert.match(r.output, pattern);
  });
}

test('no secret reaches the output', async () => {
  const secrets = ['hunter2-smtp-password', 'pw@127'];
  const r = await run('alert-service', {
    WAS_SMTP_URL: 'ftp://user:hunter2-smtp-password@mail.example',
    WAS_SMTP_PASSWORD: 'hunter2-smtp-password',
  });
  assert.equal(r.code, 2, r.output);
  for (const s of secrets) assert.ok(!r.output.includes(s), `${s} leaked: ${r.output}`);
  const db = await run('session-service', {});
  assert.ok(!db.output.includes(':pw@'), `the database password leaked: ${db.output}`);
});
