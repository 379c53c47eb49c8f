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
// The system under test is tests/browser/stack.mjs's (its environment). Exit code 0 only if
// every check passed.
import { SessionService } from '../e2e/api.mjs';
import { allPassed, check, percentile, startStack } from './stack.mjs';

const drops = Number(process.argv.find((a) => a.startsWith('--drops='))?.split('=')[1] ?? 50);
const stack = await startStack();
const { base, ids, jids, sim, adminKey, readKey } = stack;
let exitCode = 1;

try {
  // Sign-in.
  const page = await stack.newPage();
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
    await stack.loggedIn(jids.Berlin);  // the session's new socket, before the next drop
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
  const readerPage = await stack.newPage();
  await stack.signIn(readerPage, readKey);
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
  stack.checkPageErrors();
  exitCode = allPassed() ? 0 : 1;
} catch (e) {
  console.error(e);
  exitCode = 1;
} finally {
  await stack.stop();
}
process.exit(exitCode);
