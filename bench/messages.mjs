// Benchmark: messages through one session-service replica, over wss:// to wa-sim (its TLS
// front, as the real WhatsApp is reached; SSL_CERT_FILE trusts its certificate), with wa-sim's
// phones sending delivery receipts (--phone_receipts). S sessions, each with a customer (a
// wa-sim phone) that writes to it first — so every session holds Signal state.
//
// Prints one JSON object with:
//   inbound              M messages written by the customers at once (wa-sim encrypts them
//                        as fast as it can): per second stored by session-service (decrypted,
//                        sealed, in PostgreSQL, acked) and streamed to a WatchMessages watcher;
//                        from the first write to the last message seen on the stream
//   sends                M SendMessage calls (64 in flight) with --send_rate lifted: per
//                        second accepted, and per second through the outbox to the server's
//                        ack (SERVER_ACK seen on the stream) — the sustained rate per replica
//   delivered_latency_ms SendMessage → DELIVERED (the customer's phone's receipt, seen on the
//                        stream), p50/p99/max, at an offered `rate` per second for `seconds`
//   memory               RSS connected without Signal state, and after each session received
//                        and sent one message (its Signal state loaded: 812 one-time pre-keys,
//                        one session with its customer), per session; and RSS after all the
//                        traffic above (the allocator's high-water mark, not state kept)
//
// Environment: WA_SIM, SESSION_SERVICE, PROTO_DIR, DATABASE_URL (an empty database).
// Usage: node bench/messages.mjs [--sessions=20] [--inbound=4000] [--sends=4000] [--rate=50]
//        [--seconds=10]
import { createRequire } from 'node:module';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';

const require = createRequire(new URL('../tests/package.json', import.meta.url));
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const { initAuthCreds, BufferJSON } = await import(require.resolve('baileys'));
const { startSim, waitFor, requiredEnv, freePort } = await import('../tests/interop/harness.mjs');

const args = process.argv.slice(2);
const option = (name, dflt) => Number((args.find((a) => a.startsWith(`--${name}=`)) ?? `--${name}=${dflt}`).split('=')[1]);
const S = option('sessions', 20);
const INBOUND = option('inbound', 4000);
const SENDS = option('sends', 4000);
const RATE = option('rate', 50);
const SECONDS = option('seconds', 10);

const pkg = protoLoader.loadSync('wasentinel/session/v1/session.proto', {
  includeDirs: [requiredEnv('PROTO_DIR')], keepCase: true, enums: String, longs: Number, defaults: true,
});
const { SessionService } = grpc.loadPackageDefinition(pkg).wasentinel.session.v1;
const rss = (pid) => Number(readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]) * 4096;
const nowMs = () => performance.timeOrigin + performance.now();
const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const simCert = new URL('../tests/wa-sim/testdata/tls-cert.pem', import.meta.url).pathname;
const simKey = new URL('../tests/wa-sim/testdata/tls-key.pem', import.meta.url).pathname;
const sim = await startSim([`--tls_cert=${simCert}`, `--tls_key=${simKey}`, '--tls_port=0', '--phone_receipts']);
let proc = null;
try {
  const port = await freePort();
  proc = spawn(requiredEnv('SESSION_SERVICE'), [
    `--grpc_listen=127.0.0.1:${port}`, `--metrics_listen=127.0.0.1:${await freePort()}`,
    `--database_url=${requiredEnv('DATABASE_URL')}`, `--auth_state_key=${randomBytes(32).toString('hex')}`,
    `--wa_url=${sim.tlsUrl}`, `--wa_version_url=${sim.versionUrl}`, `--wa_root_key=${sim.rootPublicKey.toString('hex')}`,
    '--restore_per_second=0', '--send_rate=1000', '--log_level=warn',
  ], { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, SSL_CERT_FILE: simCert } });
  const exited = new Promise((r) => proc.on('exit', r));
  const client = new SessionService(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const call = (m, req) => new Promise((res, rej) =>
    client[m](req, { deadline: Date.now() + 60000 }, (e, r) => (e ? rej(e) : res(r))));
  await waitFor(async () => { try { await call('GetHealth', {}); return true; } catch { return false; } },
    { timeoutMs: 30000, what: 'session-service' });

  // S shops, each a linked device (device 2 of its number); S customers (phones).
  const shop = (i) => `1777${String(i).padStart(7, '0')}`;
  const customer = (i) => `1888${String(i).padStart(7, '0')}`;
  const sessions = [];
  for (let i = 0; i < S; i += 1) {
    const creds = initAuthCreds();
    creds.me = { id: `${shop(i)}:2@s.whatsapp.net` };
    const json = JSON.stringify(creds, BufferJSON.replacer);
    await sim.post('/devices', { creds: JSON.parse(json) });
    sessions.push((await call('CreateSession', { tenant_id: `bench-${i}`, creds_json: json })).session.id);
  }
  const uploaded = async () => (await sim.get('/devices')).devices.filter((d) => d.prekeys > 0).length;
  await waitFor(async () => (await uploaded()) === S, { timeoutMs: 120000, intervalMs: 200, what: 'pre-keys uploaded' });
  await sleep(12000);  // the heap trim (every 10 s) hands the logins' buffers back
  const rssConnected = rss(proc.pid);

  // One watcher of every session's messages, from now on.
  const seen = new Map();  // "<status> <message id>" → ms
  const watch = client.WatchMessages({}, {});
  watch.on('data', (m) => seen.set(`${m.status} ${m.message_id}`, nowMs()));
  watch.on('error', () => {});
  await new Promise((resolve) => watch.once('metadata', resolve));  // the watch is in place
  const count = (status) => { let n = 0; for (const k of seen.keys()) n += k.startsWith(status); return n; };

  // Each customer writes first (its account and Signal session with the shop), then the burst.
  await Promise.all(Array.from({ length: S }, (_, i) => sim.post(`/accounts/${customer(i)}/send`, { to: shop(i), text: 'hello' })));
  await waitFor(() => count('MESSAGE_STATUS_RECEIVED') >= S, { timeoutMs: 60000, what: 'the first messages' });
  // And each shop answers once: every session has loaded its Signal state and used it both ways.
  const hellos = await Promise.all(sessions.map((id, i) => call('SendMessage', { session_id: id, to: customer(i), text: 'welcome' })));
  await waitFor(() => hellos.every((r) => seen.has(`MESSAGE_STATUS_DELIVERED ${r.message.message_id}`)),
    { timeoutMs: 60000, what: 'the answers delivered' });
  await sleep(12000);
  const rssSignal = rss(proc.pid);
  const per = Math.ceil(INBOUND / S);
  const inboundStart = nowMs();
  await Promise.all(Array.from({ length: S }, (_, i) =>
    sim.post(`/accounts/${customer(i)}/send`, { to: shop(i), text: 'order', count: per })));
  const offeredMs = nowMs() - inboundStart;
  await waitFor(() => count('MESSAGE_STATUS_RECEIVED') >= S + per * S, { timeoutMs: 600000, intervalMs: 20,
    what: 'the inbound burst', detail: () => `${count('MESSAGE_STATUS_RECEIVED')}` });
  const inboundMs = Math.max(...[...seen.values()]) - inboundStart;

  // Sends: SENDS messages, 64 calls in flight, each session to its customer.
  const sendStart = nowMs();
  const ids = [];
  let next = 0;
  await Promise.all(Array.from({ length: 64 }, async () => {
    while (next < SENDS) {
      const k = next++;
      const r = await call('SendMessage', { session_id: sessions[k % S], to: customer(k % S), text: `reply ${k}` });
      ids.push(r.message.message_id);
    }
  }));
  const acceptedMs = nowMs() - sendStart;
  const acked = (id) => seen.has(`MESSAGE_STATUS_SERVER_ACK ${id}`) || seen.has(`MESSAGE_STATUS_DELIVERED ${id}`)
    || seen.has(`MESSAGE_STATUS_READ ${id}`);
  await waitFor(() => ids.every(acked), { timeoutMs: 600000, intervalMs: 50, what: 'every send acked',
    detail: () => `${ids.filter(acked).length} of ${ids.length}` });
  const ackTimes = ids.map((id) => Math.min(...['SERVER_ACK', 'DELIVERED', 'READ']
    .map((s) => seen.get(`MESSAGE_STATUS_${s} ${id}`) ?? Infinity)));
  const sendsMs = Math.max(...ackTimes) - sendStart;

  // SendMessage → DELIVERED at RATE per second.
  const sentAt = new Map();
  const total = RATE * SECONDS;
  const paceStart = nowMs();
  const pending = [];
  for (let k = 0; k < total; k += 1) {
    const due = paceStart + (k * 1000) / RATE;
    const wait = due - nowMs();
    if (wait > 0) await sleep(wait);
    const t0 = nowMs();
    pending.push(call('SendMessage', { session_id: sessions[k % S], to: customer(k % S), text: `paced ${k}` })
      .then((r) => sentAt.set(r.message.message_id, t0)));
  }
  await Promise.all(pending);
  const deliveredAt = (id) => seen.get(`MESSAGE_STATUS_DELIVERED ${id}`);
  await waitFor(() => [...sentAt.keys()].every(deliveredAt), { timeoutMs: 120000, intervalMs: 50, what: 'every DELIVERED',
    detail: () => `${[...sentAt.keys()].filter(deliveredAt).length} of ${sentAt.size}` });
  const latencies = [...sentAt].map(([id, t0]) => deliveredAt(id) - t0).sort((a, b) => a - b);
  watch.cancel();
  await sleep(12000);
  const rssAfter = rss(proc.pid);

  console.log(JSON.stringify({
    benchmark: 'messages', transport: 'wss', sessions: S,
    inbound: {
      messages: per * S, offered_seconds: Number((offeredMs / 1000).toFixed(3)),
      stored_and_streamed_per_second: Math.round((per * S) / (inboundMs / 1000)),
    },
    sends: {
      messages: SENDS, accepted_per_second: Math.round(SENDS / (acceptedMs / 1000)),
      server_acked_per_second: Math.round(SENDS / (sendsMs / 1000)),
    },
    delivered_latency_ms: {
      offered_per_second: RATE, messages: latencies.length,
      p50: Number(percentile(latencies, 0.5).toFixed(1)), p99: Number(percentile(latencies, 0.99).toFixed(1)),
      max: Number(latencies[latencies.length - 1].toFixed(1)),
    },
    memory: {
      rss_bytes_connected: rssConnected, rss_bytes_with_signal_state: rssSignal,
      signal_state_bytes_per_session: Math.round((rssSignal - rssConnected) / S),
      rss_bytes_after_traffic: rssAfter,
    },
  }));
  client.close();
  proc.kill('SIGTERM');
  await exited;
  proc = null;
} finally {
  if (proc) proc.kill('SIGKILL');
  sim.stop();
}
