// The console's screenshots in docs/console/ (README "Console"), taken in Debian's chromium
// from the whole system on loopback (tests/browser/stack.mjs) after a small bad day on wa-sim:
// Shop Hamburg replaced by another login (440), Shop Munich logged out (401), Shop Paris
// disconnected by a person, Shop Berlin dropped twice and back. Run by scripts/screenshots.
//
//   node tests/browser/screenshots.mjs --out DIR
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { waitFor } from '../interop/harness.mjs';
import { startStack } from './stack.mjs';

const out = resolve(process.argv[process.argv.indexOf('--out') + 1] ?? 'docs/console');
mkdirSync(out, { recursive: true });
const stack = await startStack({ sessions: ['Berlin', 'Hamburg', 'Munich', 'Paris', 'Lisboa'], alerts: true });
const { base, ids, jids, sim } = stack;
let exitCode = 1;
try {
  // The bad day.
  for (let i = 0; i < 2; i += 1) await stack.drop(jids.Berlin);
  await stack.loggedIn(jids.Berlin);
  await sim.post(`/connections/${jids.Hamburg}/conflict`, {});
  await sim.post(`/connections/${jids.Munich}/stream-error`, { code: 401 });
  await stack.session('Disconnect', { id: ids.Paris });
  await waitFor(async () => (await stack.monitor('ListSessionHealth', {})).sessions
    .filter((h) => h.level === 'HEALTH_LEVEL_CRITICAL').length === 2, { timeoutMs: 20000, what: 'two sessions critical' });
  await waitFor(async () => (await stack.alert('ListAlerts', { statuses: ['STATUS_OPEN'] })).alerts.length >= 2,
    { timeoutMs: 20000, what: 'their alerts' });
  await stack.alert('CreateWebhookEndpoint', { url: 'https://crm.shop.example/hooks/wa', description: 'the shop\'s CRM' });
  await stack.alert('CreateSilence', {
    tenant_id: 'acme', event_type: 'session.warning', comment: 'router maintenance',
    until: { seconds: Math.floor(Date.now() / 1000) + 4 * 3600 },
  });

  const shoot = async (colorScheme, name, path, ready, prepare) => {
    const page = await stack.newPage({ viewport: { width: 1280, height: 760 }, colorScheme });
    await stack.signIn(page);
    if (path !== '/') await page.goto(`${base}${path}`);
    await page.waitForSelector(ready, { timeout: 15000 });
    if (prepare) await prepare(page);
    await page.screenshot({ path: join(out, `${name}.png`) });
    await page.context().close();
  };
  await shoot('light', 'sessions', '/', `.spacer .row[data-session="${ids.Munich}"] .level.critical`);
  await shoot('dark', 'sessions-dark', '/', `.spacer .row[data-session="${ids.Munich}"] .level.critical`);
  await shoot('light', 'session', `/sessions/${ids.Hamburg}`, '.actions button');
  await shoot('light', 'pairing', '/pair', 'form.pair', async (page) => {
    await page.fill('input[name=tenant]', 'acme');
    await page.fill('input[name=account]', 'Shop Cologne');
    await page.click('form.pair button[type=submit]');
    await page.waitForSelector('canvas[data-testid=qr]', { timeout: 15000 });
  });
  await shoot('light', 'alerts', '/alerts', '[data-testid=alert-list]');
  await shoot('light', 'analytics', '/analytics', '[data-testid=analytics-table]',
    (page) => page.click('button:has-text("24 h")').then(() => page.waitForSelector('[data-testid=analytics-table]')));
  console.log(`screenshots in ${out}`);
  exitCode = 0;
} catch (e) {
  console.error(e);
} finally {
  await stack.stop();
}
process.exit(exitCode);
