// alert-service's outbox with the real binary on loopback: a webhook over https to an
// endpoint filtering by event type, then two replicas over one
// PostgreSQL share the outbox, and one is SIGKILLed in the middle of a burst of 1000 alerts.
// A webhook receiver here verifies every Standard Webhooks signature with the standardwebhooks
// npm package, answers 503 now and then (retried), and counts what arrives by webhook-id.
//
//   1. 300 alerts raised through both replicas, the receiver answering 503 to every 7th request
//      and nothing at all to every 60th (the sender times out): every one arrives, none twice
//      (no double send without a crash).
//   2. 1000 alerts raised through replica a1, SIGKILLed after some 300 arrived; a2 carries on
//      and takes a1's claims once they expire: every delivery arrives at least once, and any
//      duplicate carries the same webhook-id (so receivers can drop it).
//
// Environment: ALERT_SERVICE, DATABASE_URL, PROTO_DIR. TAP-like lines; exit code 0 only if every
// step was seen. Prints the delivery rate of the burst.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import { Webhook } from 'standardwebhooks';
import { requiredEnv, waitFor, freePort } from '../interop/harness.mjs';

const checks = [];
function check(name, ok, detail = '') {
  checks.push({ name, ok });
  console.log(`${ok ? 'ok' : 'not ok'} ${checks.length} - ${name}${detail ? ` # ${detail}` : ''}`);
  return ok;
}

const { AlertService } = grpc.loadPackageDefinition(protoLoader.loadSync(
  'wasentinel/alert/v1/alert.proto',
  { includeDirs: [requiredEnv('PROTO_DIR')], keepCase: true, enums: String, longs: Number, defaults: true },
)).wasentinel.alert.v1;

// The receiver: counts by webhook-id, verifies signatures, fails every `failEvery`-th request.
const received = new Map();  // webhook-id → times received (2xx answered)
let requests = 0;
let failed = 0;
let badSignatures = 0;
let failEvery = 0;
let hangEvery = 0;  // requests left unanswered: the sender's timeout, then a retry
let hung = 0;
let verifier = null;
const receiver = createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    requests += 1;
    if (hangEvery > 0 && requests % hangEvery === 0) {
      hung += 1;
      return;  // never answered
    }
    if (failEvery > 0 && requests % failEvery === 0) {
      failed += 1;
      res.writeHead(503).end();
      return;
    }
    const body = Buffer.concat(chunks).toString('utf8');
    try { verifier.verify(body, req.headers); } catch { badSignatures += 1; }
    const id = req.headers['webhook-id'];
    received.set(id, (received.get(id) ?? 0) + 1);
    res.writeHead(204).end();
  });
});
receiver.keepAliveTimeout = 30000;
const receiverPort = await new Promise((resolve) =>
  receiver.listen(0, '127.0.0.1', () => resolve(receiver.address().port)));

// An https receiver too, with a throwaway certificate for 127.0.0.1 (openssl command line).
const tlsDir = mkdtempSync(join(tmpdir(), 'was-webhook-tls-'));
const certFile = join(tlsDir, 'cert.pem');
const keyFile = join(tlsDir, 'key.pem');
spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1',
  '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', keyFile, '-out', certFile],
{ stdio: 'ignore' });
const overTls = [];
const tlsReceiver = createHttpsServer({ key: readFileSync(keyFile), cert: readFileSync(certFile) }, (req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    overTls.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
    res.writeHead(200).end();
  });
});
const tlsPort = await new Promise((resolve) =>
  tlsReceiver.listen(0, '127.0.0.1', () => resolve(tlsReceiver.address().port)));

const secretKey = randomBytes(32).toString('hex');
const replicas = {};
async function startReplica(name) {
  const port = await freePort();
  const metricsPort = await freePort();
  const proc = spawn(requiredEnv('ALERT_SERVICE'), [
    `--replica_id=${name}`, `--grpc_listen=127.0.0.1:${port}`,
    `--metrics_listen=127.0.0.1:${metricsPort}`,
    `--database_url=${requiredEnv('DATABASE_URL')}`, `--secret_key=${secretKey}`,
    '--allow_private_targets', `--webhook_ca=${certFile}`, '--dispatchers=4', '--webhook_rate_per_second=0',
    '--webhook_timeout=2s', '--claim_lease=3s', '--delivery_backoff=500ms,1s,1s,1s,1s,1s',
    '--log_level=warn',
  ], { stdio: ['ignore', 'inherit', 'inherit'] });
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  const client = new AlertService(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const call = (method, req = {}) => new Promise((resolve, reject) =>
    client[method](req, { deadline: Date.now() + 20000 }, (err, res) => (err ? reject(err) : resolve(res))));
  await waitFor(async () => { try { await call('ListWebhookEndpoints'); return true; } catch { return false; } },
    { timeoutMs: 20000, what: `${name} to answer` });
  replicas[name] = { name, proc, exited, call, metricsPort };
  return replicas[name];
}

// Raises `n` alerts through `replica`, 50 calls in flight; answers the delivery ids.
async function raise(replica, prefix, n) {
  const ids = [];
  for (let i = 0; i < n; i += 50) {
    const batch = await Promise.all(Array.from({ length: Math.min(50, n - i) }, (_, k) =>
      replica.call('RaiseAlert', {
        dedup_key: `${prefix}/${i + k}`, event_type: 'session.critical', severity: 'SEVERITY_CRITICAL',
        summary: `Shop ${i + k} (155******67) has been offline for 6h`,
        session: { session_id: `s-${prefix}-${i + k}`, tenant_id: 'acme', phone_number_masked: '155******67' },
      })));
    for (const r of batch) ids.push(...r.alert.deliveries.map((d) => `msg_${d.id}`));
  }
  return ids;
}
const arrived = (ids) => ids.filter((id) => received.has(id)).length;

let exitCode = 1;
try {
  const a1 = await startReplica('a1');
  const a2 = await startReplica('a2');
  const { secret } = await a1.call('CreateWebhookEndpoint', {
    url: `http://127.0.0.1:${receiverPort}/hook`, description: 'outbox e2e',
  });
  verifier = new Webhook(secret);

  // 0. https: an endpoint for one event type only, over TLS.
  const tlsEndpoint = await a1.call('CreateWebhookEndpoint', {
    url: `https://127.0.0.1:${tlsPort}/hook`, event_types: ['session.logged_out'],
  });
  await a1.call('RaiseAlert', {
    dedup_key: 'tls/1', event_type: 'session.logged_out', severity: 'SEVERITY_CRITICAL',
    summary: 'Shop (155******67) was logged out', session: { session_id: 'tls-1' },
  });
  await waitFor(() => overTls.length >= 1 && received.size >= 1, { timeoutMs: 15000, what: 'the https webhook' })
    .catch(() => {});
  let tlsSigned = false;
  try {
    new Webhook(tlsEndpoint.secret).verify(overTls[0].body, overTls[0].headers);
    tlsSigned = true;
  } catch { /* not signed */ }
  check('https: the endpoint taking session.logged_out gets it over TLS, signed with its own secret',
    overTls.length === 1 && tlsSigned, `${overTls.length} over TLS`);
  await a1.call('DeleteWebhookEndpoint', { id: tlsEndpoint.endpoint.id });
  received.clear();

  // 1. Two replicas, a receiver that fails now and then.
  failEvery = 7;
  hangEvery = 60;
  const first = [...await raise(a1, 'shared-a1', 150), ...await raise(a2, 'shared-a2', 150)];
  await waitFor(() => arrived(first) === first.length,
    { timeoutMs: 60000, intervalMs: 50, what: 'the 300 webhooks', detail: () => `${arrived(first)} arrived` })
    .catch(() => {});
  const twice = first.filter((id) => received.get(id) > 1).length;
  check('two replicas: all 300 arrive, through retries of the 503s and the timeouts', arrived(first) === first.length,
    `${arrived(first)} of ${first.length}; ${failed} answered 503, ${hung} never answered`);
  check('… none twice (no double send without a crash), every signature valid',
    twice === 0 && badSignatures === 0, `${twice} twice, ${badSignatures} bad signatures`);
  failEvery = 0;
  hangEvery = 0;

  // 2. A burst of 1000 through a1, SIGKILLed mid-burst.
  const t0 = Date.now();
  const burst = await raise(a1, 'burst', 1000);
  const raisedIn = Date.now() - t0;
  await waitFor(() => arrived(burst) >= 300, { timeoutMs: 30000, intervalMs: 5, what: '300 of the burst' })
    .catch(() => {});
  const atKill = arrived(burst);
  a1.proc.kill('SIGKILL');
  await a1.exited;
  await waitFor(() => arrived(burst) === burst.length,
    { timeoutMs: 90000, intervalMs: 50, what: 'the whole burst', detail: () => `${arrived(burst)} arrived` })
    .catch(() => {});
  const tookMs = Date.now() - t0;
  const dupes = burst.filter((id) => received.get(id) > 1).length;
  check('SIGKILL of a1 mid-burst: every one of 1000 deliveries arrives at least once',
    arrived(burst) === burst.length, `${atKill} had arrived at the kill; ${arrived(burst)} of ${burst.length} in ${tookMs} ms`);
  check('… duplicates (sends a1 made just before dying) carry the same webhook-id',
    [...received.keys()].every((id) => /^msg_\d+$/.test(id)) && badSignatures === 0,
    `${dupes} delivered twice`);
  const metrics = await (await fetch(`http://127.0.0.1:${a2.metricsPort}/metrics`)).text();
  const sent = Number(metrics.match(/^wasentinel_alert_deliveries_total\{channel="webhook",result="sent"\} (\S+)/m)?.[1]);
  const lint = spawnSync('promtool', ['check', 'metrics'], { input: metrics, encoding: 'utf8' });
  check("a2's metrics count its sends and pass promtool", sent > 0 && lint.status === 0,
    `${sent} sent by a2; ${(lint.stdout + lint.stderr).trim().split('\n').slice(0, 2).join('; ')}`);
  // Everything has arrived once; what a1 sent but never recorded is sent again by a2 once a1's
  // claims expire, and only then is the outbox empty.
  let stats = null;
  await waitFor(async () => (stats = await a2.call('GetDeliveryStats', {})).outbox_depth === 0,
    { timeoutMs: 20000, intervalMs: 100, what: 'the outbox empty' }).catch(() => {});
  check('a2 reports the outbox empty', stats?.outbox_depth === 0, `depth ${stats?.outbox_depth}`);
  console.log(`# burst: 1000 alerts raised in ${raisedIn} ms; delivered in ${tookMs} ms including a ` +
    `${3} s claim lease after the kill; ${Math.round(1000 / (tookMs / 1000))} deliveries/s overall`);
  exitCode = checks.every((c) => c.ok) ? 0 : 1;
} catch (e) {
  console.error(e);
} finally {
  for (const r of Object.values(replicas)) r.proc.kill('SIGTERM');
  await Promise.all(Object.values(replicas).map((r) => r.exited));
  receiver.closeAllConnections?.();
  receiver.close();
  tlsReceiver.closeAllConnections?.();
  tlsReceiver.close();
  rmSync(tlsDir, { recursive: true, force: true });
  console.log(`${checks.filter((c) => c.ok).length} passed, ${checks.filter((c) => !c.ok).length} failed`);
  process.exit(exitCode);
}
