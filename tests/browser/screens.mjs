// The console's screens in a real browser (Debian's chromium, playwright-core) against the whole
// system on loopback (tests/browser/stack.mjs, with alert-service, a real SMTP server and real
// webhook receivers):
//
//   hidden tab  while the tab is hidden the event stream is closed; on return it resumes from
//               the last sequence and applies exactly the events it missed, once each
//   pairing     a new session's QR code is read off the canvas (zbarimg) and wa-sim's phone
//               scans it; the page says linked
//   alerts      a webhook endpoint made on the screen shows its secret once, and the receiver
//               verifies the alert's signature with it; deliveries per channel; a dead
//               delivery is redelivered from the screen; the secret is rotated; a silence made
//               on the screen suppresses a matching alert and is deleted; a read-only key sees
//               the buttons disabled; the alert e-mail links to the session's page
//   analytics   drops show in the totals; the CSV and JSON exports hold what is shown
//   service down  with alert-service stopped, its panels name it; the rest still works
//   a11y        axe-core finds no serious or critical violation on any screen
//
// Exit code 0 only if every check passed.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { waitFor, freePort } from '../interop/harness.mjs';
import { startWebhookReceiver } from '../e2e/api.mjs';
import { allPassed, check, startStack } from './stack.mjs';

const stack = await startStack({ alerts: true });
const { base, ids, jids, sim, readKey } = stack;
const axePath = createRequire(import.meta.url).resolve('axe-core/axe.min.js');
const hooks = [];
const receiver = await startWebhookReceiver((h) => hooks.push(h));
let exitCode = 1;
let late = null;  // the receiver that starts late (the dead endpoint's port)

const ok = (promise) => promise.then(() => true, () => false);

try {
  const page = await stack.newPage({ acceptDownloads: true });
  page.on('dialog', (d) => d.accept());
  await stack.signIn(page);

  // Hidden tab: close the stream, make events, come back.
  await page.waitForSelector('[data-testid=live][data-link=live]', { timeout: 10000 });
  const before = await page.$eval('[data-testid=live]', (e) => ({ count: Number(e.dataset.events), last: e.dataset.sequence }));
  const setHidden = (hidden) => page.evaluate((h) => {
    Object.defineProperty(document, 'visibilityState', { value: h ? 'hidden' : 'visible', configurable: true });
    Object.defineProperty(document, 'hidden', { value: h, configurable: true });
    document.dispatchEvent(new Event('visibilitychange'));
  }, hidden);
  await setHidden(true);
  check('a hidden tab shows the stream paused', await ok(page.waitForSelector('[data-testid=live][data-link=paused]', { timeout: 5000 })));
  // What the service streams from now on (the system is quiet): the tab must apply exactly these.
  const record = stack.watch();
  await record.ready;
  await stack.session('Disconnect', { id: ids.Hamburg });
  await stack.drop(jids.Munich);
  await stack.loggedIn(jids.Munich);
  // wa-sim sees the login before the service has written CONNECTED: wait for the stream to have
  // it (Hamburg's DISCONNECTED, then Munich's DISCONNECTED, CONNECTING, CONNECTED).
  await waitFor(() => record.events.some((e) => e.session_id === ids.Munich && e.to_state === 'SESSION_STATE_CONNECTED'),
    { timeoutMs: 10000, what: 'Munich CONNECTED again in the stream', detail: () => `${record.events.length} events` });
  const hamburgRow = `.spacer .row[data-session="${ids.Hamburg}"]`;
  const whileHidden = await page.$eval(hamburgRow, (r) => r.children[1].textContent.trim());
  const hiddenCount = await page.$eval('[data-testid=live]', (e) => Number(e.dataset.events));
  check('nothing is applied while hidden', whileHidden === 'connected' && hiddenCount === before.count, `${whileHidden}, ${hiddenCount - before.count} events`);
  await setHidden(false);
  const resumed = await ok(page.waitForFunction((row) => document.querySelector(row)?.children[1].textContent.trim() === 'disconnected',
    hamburgRow, { timeout: 10000 }));
  let seen = null;
  const exactlyOnce = await waitFor(async () => {
    const now = await page.$eval('[data-testid=live]', (e) => ({ count: Number(e.dataset.events), last: e.dataset.sequence }));
    const last = record.events.at(-1);
    seen = { tab: now.count - before.count, service: record.events.length };
    return last && now.last === String(last.sequence) && now.count - before.count === record.events.length;
  }, { timeoutMs: 10000, what: 'the tab to apply what the service streamed' }).then(() => true, () => false);
  record.close();
  check('on return it applies every event made while hidden, once each', resumed && exactlyOnce && seen.service >= 4, JSON.stringify(seen));
  await stack.session('Connect', { id: ids.Hamburg });

  // Pairing in the browser: the QR code off the canvas, scanned by wa-sim's phone.
  await page.goto(`${base}/pair`);
  await page.fill('input[name=tenant]', 'acme');
  await page.fill('input[name=name]', 'new-shop');
  await page.fill('input[name=account]', 'Shop Cologne');
  await page.click('form.pair button[type=submit]');
  const canvas = await page.waitForSelector('canvas[data-testid=qr]', { timeout: 15000 }).catch(() => null);
  let linked = false;
  if (check('the QR code is drawn', canvas !== null)) {
    const png = join(stack.work, 'qr.png');
    writeFileSync(png, await canvas.screenshot());
    const qr = execFileSync('zbarimg', ['--raw', '-q', png], { encoding: 'utf8' }).trim();
    check('the QR code on the canvas reads as a pairing code', qr.split(',').length >= 4, `${qr.slice(0, 24)}…`);
    await sim.post('/pair', { qr, phone: '15557770042' });
    linked = await ok(page.waitForFunction(() => document.querySelector('[data-testid=pairing-status]')?.textContent === 'Linked',
      null, { timeout: 15000 }));
  }
  check('the phone that scanned it links the session', linked);

  // Alerts: a webhook endpoint from the screen; its secret shown once.
  await page.goto(`${base}/alerts`);
  await page.waitForSelector('[data-testid=no-alerts], [data-testid=alert-list]', { timeout: 10000 });
  await page.fill('[data-testid=endpoint-form] input[name=url]', receiver.url());
  await page.fill('[data-testid=endpoint-form] input[name=description]', 'the shop\'s CRM');
  await page.click('[data-testid=endpoint-form] button[type=submit]');
  const secret = await page.waitForSelector('[data-testid=webhook-secret]', { timeout: 10000 }).then((e) => e.textContent(), () => '');
  check('a new webhook endpoint shows its secret', /^whsec_/.test(secret));
  receiver.trust(secret);
  await page.click('[data-testid=webhook-secret-box] button:has-text("Done")');
  await page.reload();
  await page.waitForSelector('[data-testid=endpoint-list]', { timeout: 10000 });
  check('and never again', (await page.$('[data-testid=webhook-secret]')) === null && !(await page.content()).includes(secret));

  // A second endpoint nobody answers yet: its deliveries die (two quick retries).
  const latePort = await freePort();
  await stack.alert('CreateWebhookEndpoint', { url: `http://127.0.0.1:${latePort}/late`, description: 'down for now' });
  const raised = await stack.alert('RaiseAlert', {
    dedup_key: 'browser-berlin-offline', event_type: 'session.critical', severity: 'SEVERITY_CRITICAL',
    summary: 'Shop Berlin is offline',
    session: { session_id: ids.Berlin, tenant_id: 'acme', account_name: 'Shop Berlin', phone_number_masked: '155******00',
      owner_email: 'owner-berlin@shop.example', state: 'DISCONNECTED', reason: 'KEEPALIVE_TIMEOUT' },
  });
  const alertId = raised.alert.id;
  const deliveries = async () => (await stack.alert('GetAlert', { id: alertId })).alert.deliveries;
  await waitFor(async () => {
    const d = await deliveries();
    return d.length === 3 && d.filter((x) => x.status === 'STATUS_SENT').length === 2 && d.some((x) => x.status === 'STATUS_DEAD');
  }, { timeoutMs: 20000, what: 'two deliveries sent and one dead' }).catch(() => {});
  const hook = hooks.find((h) => h.data?.dedup_key === 'browser-berlin-offline');
  check('the webhook receiver verifies the alert with the secret the screen showed', hook?.verified === true);
  const mail = stack.mails().find((m) => JSON.stringify(m).includes('Shop Berlin'));
  check('the alert e-mail links to the session\'s page in the console', !!mail && JSON.stringify(mail).includes(`${base}/sessions/${ids.Berlin}`));
  await page.click('button:has-text("Open")');
  const alertRow = `li.alert[data-alert="${alertId}"]`;
  await page.waitForSelector(alertRow, { timeout: 10000 });
  const statuses = await page.$$eval(`${alertRow} tr[data-delivery]`, (rs) => rs.map((r) => `${r.children[0].textContent.trim()}:${r.dataset.status}`).sort());
  check('the open alert shows its deliveries per channel with status',
    JSON.stringify(statuses) === JSON.stringify(['email:sent', 'webhook:dead', 'webhook:sent']), statuses.join(' '));

  // Redeliver the dead one once its receiver is up.
  late = createServer((req, res) => { req.resume(); req.on('end', () => res.writeHead(204).end()); });
  await new Promise((resolve) => late.listen(latePort, '127.0.0.1', resolve));
  await page.click(`${alertRow} tr[data-status=dead] button:has-text("Redeliver")`);
  const redelivered = await waitFor(async () => (await deliveries()).every((d) => d.status === 'STATUS_SENT'),
    { timeoutMs: 15000, what: 'the redelivery to be sent' }).then(() => true, () => false);
  await page.click('button:has-text("Recent")');
  await page.click('button:has-text("Open")');
  const shown = await ok(page.waitForFunction((row) => [...document.querySelectorAll(`${row} tr[data-delivery]`)].every((r) => r.dataset.status === 'sent'),
    alertRow, { timeout: 10000 }));
  check('a dead delivery redelivered from the screen is sent', redelivered && shown);

  // Rotate the endpoint's secret: a new one, shown once.
  await page.click(`[data-testid=endpoint-list] tr:has-text("${receiver.url()}") button:has-text("Rotate secret")`);
  const rotated = await page.waitForSelector('[data-testid=webhook-secret]', { timeout: 20000 }).then((e) => e.textContent(), () => '');
  check('rotating shows a new secret', /^whsec_/.test(rotated) && rotated !== secret,
    rotated ? '' : await page.$eval('[data-testid=alerts-result]', (e) => e.textContent).catch(() => '?'));
  if (rotated) await page.click('[data-testid=webhook-secret-box] button:has-text("Done")');

  // Silences: made on the screen, suppressing a matching alert, deleted on the screen.
  await page.fill('[data-testid=silence-form] input[name=session]', ids.Hamburg);
  await page.fill('[data-testid=silence-form] input[name=event]', 'session.warning');
  await page.fill('[data-testid=silence-form] input[name=comment]', 'router maintenance');
  await page.click('[data-testid=silence-form] button[type=submit]');
  const listed = await ok(page.waitForSelector('[data-testid=silence-list] tr:has-text("router maintenance")', { timeout: 10000 }));
  const silenced = await stack.alert('RaiseAlert', {
    dedup_key: 'browser-hamburg-warning', event_type: 'session.warning', severity: 'SEVERITY_WARNING',
    summary: 'Shop Hamburg is reconnecting', session: { session_id: ids.Hamburg, tenant_id: 'acme', account_name: 'Shop Hamburg' },
  });
  check('a silence made on the screen suppresses a matching alert', listed && silenced.alert.status === 'STATUS_SUPPRESSED');
  await page.click('[data-testid=silence-list] tr:has-text("router maintenance") button:has-text("Delete")');
  check('and is deleted from the screen', await ok(page.waitForSelector('[data-testid=no-silences]', { timeout: 10000 }))
    && (await stack.alert('ListSilences', {})).silences.length === 0);

  // A read-only key: everything listed, nothing it may not do enabled.
  const reader = await stack.newPage();
  await stack.signIn(reader, readKey);
  await reader.goto(`${base}/alerts`);
  await reader.waitForSelector(alertRow, { timeout: 10000 });
  const disabled = await reader.$$eval('[data-testid=silence-form] button[type=submit], [data-testid=endpoint-form] button[type=submit], [data-testid=endpoint-list] button',
    (bs) => bs.length > 0 && bs.every((b) => b.disabled));
  check('a read-only key sees the alerts and every change disabled', disabled);

  // The e-mail's link opens the session's page with its Reconnect button.
  await page.goto(`${base}/sessions/${ids.Berlin}`);
  check('the link from the e-mail lands on the Reconnect button',
    await ok(page.locator('.actions button', { hasText: 'Reconnect' }).waitFor({ timeout: 10000 })));

  // Analytics: drops counted, and the exports hold what is shown.
  for (let i = 0; i < 2; i += 1) await stack.drop(jids.Berlin);
  await stack.loggedIn(jids.Berlin);
  await waitFor(async () => Number((await stack.monitor('GetHealthHistory', {})).drops) >= 3,
    { timeoutMs: 15000, what: 'the monitor to count three drops' }).catch(() => {});
  await page.goto(`${base}/analytics`);
  const totalDrops = await page.waitForSelector('[data-testid=total-drops]', { timeout: 10000 }).then((e) => e.textContent(), () => '');
  check('analytics show the drops (Munich once, Berlin twice)', Number(totalDrops) >= 3, totalDrops);
  const [csvDownload] = await Promise.all([page.waitForEvent('download'), page.click('[data-testid=export-csv]')]);
  const csv = readFileSync(await csvDownload.path(), 'utf8').trim().split('\r\n');
  const header = csv[0].split(',');
  const dropsColumn = header.indexOf('drops');
  const csvDrops = csv.slice(1).reduce((n, line) => n + Number(line.split(',')[dropsColumn]), 0);
  check('the CSV export has a row per day and the drops shown', csvDownload.suggestedFilename().endsWith('.csv') && csv.length === 8
    && header[0] === 'start' && csvDrops === Number(totalDrops), `${csv.length - 1} rows, ${csvDrops} drops`);
  const [jsonDownload] = await Promise.all([page.waitForEvent('download'), page.click('[data-testid=export-json]')]);
  const json = JSON.parse(readFileSync(await jsonDownload.path(), 'utf8'));
  check('the JSON export holds the same', json.buckets.length === 7 && json.totals.drops === Number(totalDrops)
    && json.buckets.reduce((n, b) => n + b.drops, 0) === csvDrops);

  // Accessibility: axe-core on every screen (its script needs the page's CSP bypassed).
  const axePage = await stack.newPage({ bypassCSP: true });
  const serious = [];
  const audit = async (path, ready) => {
    await axePage.goto(`${base}${path}`);
    await axePage.waitForSelector(ready, { timeout: 10000 });
    await axePage.addScriptTag({ path: axePath });
    const result = await axePage.evaluate(() => window.axe.run(document, { runOnly: ['wcag2a', 'wcag2aa', 'best-practice'] }));
    for (const v of result.violations) {
      if (v.impact === 'serious' || v.impact === 'critical') serious.push(`${path}: ${v.id} (${v.nodes.length})`);
    }
  };
  await audit('/', '#key');
  await axePage.fill('#key', stack.adminKey);
  await axePage.click('button[type=submit]');
  await axePage.waitForSelector('.spacer .row', { timeout: 10000 });
  await audit('/', '.spacer .row');
  await audit(`/sessions/${ids.Berlin}`, '.actions button');
  await audit('/pair', 'form.pair');
  await audit('/alerts', '[data-testid=endpoint-list]');
  await audit('/analytics', '[data-testid=analytics-table]');
  check('axe-core finds no serious or critical violation on any screen', serious.length === 0, serious.join('; '));

  // A service down: its panels say which; the rest goes on.
  stack.kill('alert-service');
  await page.goto(`${base}/alerts`);
  const down = await page.waitForSelector('[data-testid=panel-error]', { timeout: 15000 }).then((e) => e.textContent(), () => '');
  check('with alert-service down the alerts screen says so', /alert-service is unreachable/.test(down), down);
  await page.goto(`${base}/analytics`);
  const partly = await page.waitForSelector('[data-testid=panel-error]', { timeout: 15000 }).then((e) => e.textContent(), () => '');
  check('and analytics name it while still drawing the monitor\'s figures',
    /alert-service/.test(partly) && (await page.$('[data-testid=analytics-table]')) !== null, partly);

  stack.checkPageErrors();
  exitCode = allPassed() ? 0 : 1;
} catch (e) {
  console.error(e);
  exitCode = 1;
} finally {
  receiver.close();
  late?.close();
  await stack.stop();
}
process.exit(exitCode);
