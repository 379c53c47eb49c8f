// Benchmark: the console in Debian's chromium (playwright-core), against a real session-service
// and health-monitor on loopback through the console process.
//
// Prints one JSON object with:
//   bundle            the built app's files, bytes and gzip bytes (console/web's build-stats.json)
//   first_load_ms     a cold page load with 3 sessions: navigation to the first table row, and
//                     the bytes transferred
//   sessions          N sessions (default 10 000, created without credentials: no sockets):
//     live_page_caught_up_ms  the page open during the creations (one event each) showing all
//                     N rows, counted from the last creation
//     first_rows_ms   a new page: navigation to the first rows on screen (first page of 500)
//     all_rows_ms     a new page: navigation to every row loaded (N of N counted)
//     search_ms       typing a name to the one matching row shown
//     scroll_frame_ms p50/p99/max of 60 scroll steps across the whole table, each measured
//                     from setting scrollTop to the second animation frame after it
//     dom_rows        rows in the DOM while scrolling (virtualised: a screenful, not N)
//
// Environment: SESSION_SERVICE, HEALTH_MONITOR, CONSOLE, WA_SIM, PROTO_DIR, DATABASE_URL (empty),
// WEB_ROOT (the built app, for build-stats.json), CHROMIUM (default /usr/bin/chromium).
// Usage: node bench/console.mjs [N]
import { createRequire } from 'node:module';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const require = createRequire(new URL('../tests/package.json', import.meta.url));
const grpc = require('@grpc/grpc-js');
const { chromium } = require('playwright-core');
const { startSim, waitFor, requiredEnv, freePort } = await import('../tests/interop/harness.mjs');
const { SessionService, unary } = await import('../tests/e2e/api.mjs');

const n = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) ?? 10000);
const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
const running = [];
const start = (binary, argv) => { const p = spawn(binary, argv, { stdio: ['ignore', 'inherit', 'inherit'] }); running.push(p); return p; };
// Established devices: WhatsApp already holds their pre-keys (no 812-key upload per login).
const sim = await startSim(['--prekey_count=50']);
let browser = null;
try {
  const [sessionPort, monitorPort, consolePort] = [await freePort(), await freePort(), await freePort()];
  start(requiredEnv('SESSION_SERVICE'), [
    '--replica_id=s1', `--grpc_listen=127.0.0.1:${sessionPort}`, '--metrics_listen=',
    `--database_url=${requiredEnv('DATABASE_URL')}`, `--auth_state_key=bench:${'ab'.repeat(32)}`,
    `--wa_url=${sim.url}`, `--wa_version_url=${sim.versionUrl}`, `--wa_root_key=${sim.rootPublicKey.toString('hex')}`,
    '--log_level=warn',
  ]);
  const call = unary(new SessionService(`127.0.0.1:${sessionPort}`, grpc.credentials.createInsecure()), 60000);
  await waitFor(async () => { try { await call('GetHealth'); return true; } catch { return false; } }, { timeoutMs: 20000 });
  start(requiredEnv('HEALTH_MONITOR'), [
    '--replica_id=m1', `--grpc_listen=127.0.0.1:${monitorPort}`, '--metrics_listen=',
    `--database_url=${requiredEnv('DATABASE_URL')}`, `--session_service=127.0.0.1:${sessionPort}`,
    '--deep_interval=10s', '--log_level=warn',
  ]);
  start(requiredEnv('CONSOLE'), [
    `--http_listen=127.0.0.1:${consolePort}`, '--metrics_listen=', `--session_service=127.0.0.1:${sessionPort}`,
    `--monitor_service=127.0.0.1:${monitorPort}`, '--alert_service=', '--log_level=warn',
  ]);
  const base = `http://127.0.0.1:${consolePort}`;
  await waitFor(async () => { try { return (await fetch(`${base}/readyz`)).ok; } catch { return false; } }, { timeoutMs: 20000 });
  const create = (i) => call('CreateSession', {
    tenant_id: `tenant-${i % 20}`, session_name: `s${i}`, account_name: `Shop ${String(i).padStart(5, '0')}`, auto_connect: false,
  });
  for (let i = 0; i < 3; i += 1) await create(i);

  browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox', '--disable-dev-shm-usage'] });
  const first = await (await browser.newContext()).newPage();
  const t0 = Date.now();
  await first.goto(base);
  await first.waitForSelector('.spacer .row', { timeout: 30000 });
  const firstLoad = Date.now() - t0;
  const transferred = await first.evaluate(() => performance.getEntriesByType('resource').concat(performance.getEntriesByType('navigation'))
    .reduce((sum, e) => sum + (e.transferSize || 0), 0));

  // N sessions, 32 creations at a time.
  const createdAt = Date.now();
  let next = 3;
  await Promise.all(Array.from({ length: 32 }, async () => {
    while (next < n) await create(next++);
  }));
  const createSeconds = (Date.now() - createdAt) / 1000;
  // The first page followed the creations live (10 000 events): it must have every row too.
  const followed = await first.waitForFunction((total) => document.querySelector('h1 .count')?.textContent === `${total} of ${total}`,
    n, { timeout: 60000, polling: 50 }).then(() => Date.now() - createdAt - createSeconds * 1000, async () => {
    console.error(`the live page shows ${await first.$eval('h1 .count', (e) => e.textContent).catch(() => '?')}, link`,
      await first.$eval('[data-testid=live]', (e) => `${e.dataset.link} ${e.dataset.events} events`).catch(() => '?'));
    return null;
  });
  await first.context().close();
  const page = await (await browser.newContext()).newPage();
  const count = () => page.$eval('h1 .count', (e) => e.textContent).catch(() => '');
  const trace = [];
  if (process.env.WAS_BENCH_TRACE) {
    page.on('request', (r) => trace.push(`${Date.now() - t1} → ${r.url().replace(base, '')}`));
    page.on('requestfinished', (r) => trace.push(`${Date.now() - t1} ← ${r.url().replace(base, '')}`));
  }
  const t1 = Date.now();
  await page.goto(base);
  await page.waitForSelector('.spacer .row', { timeout: 60000 });
  const firstRows = Date.now() - t1;
  if (process.env.WAS_BENCH_TRACE) console.error(trace.join('\n'));
  await page.waitForFunction((total) => document.querySelector('h1 .count')?.textContent === `${total} of ${total}`, n, { timeout: 120000, polling: 20 });
  const allRows = Date.now() - t1;

  // Scrolling: 60 steps across the whole table, each timed to the second frame after it.
  const scroll = await page.evaluate(async () => {
    const el = document.querySelector('[data-testid=sessions-scroller]');
    const frame = () => new Promise((r) => requestAnimationFrame(() => r()));
    const times = [];
    let domRows = 0;
    for (let i = 1; i <= 60; i += 1) {
      const t = performance.now();
      el.scrollTop = (el.scrollHeight - el.clientHeight) * (i / 60);
      el.dispatchEvent(new Event('scroll'));
      await frame();
      await frame();
      times.push(performance.now() - t);
      domRows = Math.max(domRows, document.querySelectorAll('.spacer .row').length);
    }
    return { times, domRows };
  });
  const frames = scroll.times.sort((a, b) => a - b);
  const target = `Shop ${String(n - 7).padStart(5, '0')}`;
  const t2 = Date.now();
  await page.fill('input[type=search]', target);
  await page.waitForFunction(() => document.querySelector('h1 .count')?.textContent.startsWith('1 of'), null, { timeout: 30000, polling: 10 });
  const search = Date.now() - t2;
  const stats = JSON.parse(readFileSync(join(requiredEnv('WEB_ROOT'), 'build-stats.json'), 'utf8'));
  console.log(JSON.stringify({
    benchmark: 'console',
    bundle: stats,
    first_load_ms: firstLoad, first_load_transferred_bytes: transferred,
    sessions: {
      n, create_seconds: createSeconds, live_page_caught_up_ms: followed, first_rows_ms: firstRows, all_rows_ms: allRows, search_ms: search,
      scroll_frame_ms: { p50: +percentile(frames, 0.5).toFixed(1), p99: +percentile(frames, 0.99).toFixed(1), max: +frames.at(-1).toFixed(1) },
      dom_rows: scroll.domRows, shown: await count(),
    },
  }));
} finally {
  await browser?.close().catch(() => {});
  for (const p of running) p.kill('SIGTERM');
  sim.stop();
}
