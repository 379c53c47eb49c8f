// A conversation across a replica takeover, with the real binaries and unmodified Baileys as
// the customer: two session-service replicas over one PostgreSQL and one wa-sim; the shop's
// session (a Baileys-paired device, imported with its pre-keys) is held by one of them. The
// customer and the shop write to each other; the holder is SIGKILLed in the middle of the
// conversation; the customer writes and the shop answers (through the other replica) while
// the session has no holder; the other replica takes the session over once the lease expires
// and carries on from the Signal state the first one wrote: every message decrypts on both
// sides, is stored once, and goes out once, in order. Then a flood beyond the per-session
// send rate: queued, not dropped, sent in order.
//
// Environment: WA_SIM, SESSION_SERVICE, DATABASE_URL, PROTO_DIR. TAP-like lines; exit code 0
// only if every step was seen.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import grpc from '@grpc/grpc-js';
import { WA_CERT_DETAILS } from 'baileys/lib/Defaults/index.js';
import { SessionService, unary } from './api.mjs';
import {
  baileysDeviceToImport, freePort, pairBaileys, requiredEnv, startSim, textOfMessage, waitFor,
} from '../interop/harness.mjs';

const LEASE_TTL_S = 3;
const SEND_RATE = 2;  // per session per second: the flood below is 10 s of it
const checks = [];
function check(name, ok, detail = '') {
  checks.push({ name, ok });
  console.log(`${ok ? 'ok' : 'not ok'} ${checks.length} - ${name}${detail ? ` # ${detail}` : ''}`);
  return ok;
}
const passes = (p) => p.then(() => true, () => false);

const SHOP = '15557790001';
const CUSTOMER = '15557790002';
const STATUS_DELIVERY_ACK = 3;
const work = mkdtempSync(join(tmpdir(), 'was-messages-replicas-'));
const sim = await startSim();
WA_CERT_DETAILS.PUBLIC_KEY = sim.rootPublicKey;
const sealingKey = randomBytes(32).toString('hex');
const databaseUrl = requiredEnv('DATABASE_URL');
const sql = (query) => execFileSync('psql', ['-At', '-F', '|', databaseUrl, '-c', query], { encoding: 'utf8' })
  .trim().split('\n').filter((l) => l.length > 0);

const replicas = {};
async function startReplica(name) {
  const port = await freePort();
  const proc = spawn(requiredEnv('SESSION_SERVICE'), [
    `--replica_id=${name}`, `--grpc_listen=127.0.0.1:${port}`, `--metrics_listen=127.0.0.1:${await freePort()}`,
    `--database_url=${databaseUrl}`, `--auth_state_key=k1:${sealingKey}`,
    `--wa_url=${sim.url}`, `--wa_version_url=${sim.versionUrl}`,
    `--wa_root_key=${sim.rootPublicKey.toString('hex')}`, `--lease_ttl=${LEASE_TTL_S}s`,
    '--keepalive_interval=1s,1s', '--keepalive_timeout=1s', '--keepalive_max_silence=3s',
    '--reconnect_backoff=1s,2s,4s', '--restore_per_second=0', `--send_rate=${SEND_RATE}`, '--log_level=warn',
  ], { stdio: ['ignore', 'inherit', 'inherit'] });
  const exited = new Promise((resolve) => proc.on('exit', resolve));
  const client = new SessionService(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const call = unary(client);
  await waitFor(async () => { try { await call('GetHealth', {}); return true; } catch { return false; } },
    { timeoutMs: 20000, what: `replica ${name} to answer` });
  replicas[name] = { name, proc, exited, call, client };
  return replicas[name];
}

const open = [];
let exitCode = 1;
try {
  // The shop's device, paired by Baileys, then imported into session-service with its keys.
  const shop = await baileysDeviceToImport(sim, join(work, 'shop'), SHOP, 'Shop');
  const r1 = await startReplica('r1');
  await startReplica('r2');
  const { session } = await r1.call('CreateSession', {
    tenant_id: 'shop', account_name: 'The shop', creds_json: shop.creds_json, pre_key_files: shop.pre_key_files,
  });
  // The replica holding the shop while it is CONNECTED (null meanwhile: a call forwarded to a
  // holder that just died fails).
  const holderOf = async (via) => {
    try {
      const s = (await via.call('GetSession', { id: session.id })).session;
      return s.state === 'SESSION_STATE_CONNECTED' ? s.owner : null;
    } catch {
      return null;
    }
  };
  await waitFor(async () => (await holderOf(r1)) !== null, { timeoutMs: 15000, what: 'the shop CONNECTED' });
  const holder = replicas[await holderOf(r1)];
  const other = Object.values(replicas).find((r) => r !== holder);
  check(`the shop is held by ${holder.name}`, true);

  // The conversation's first half, through the holder.
  const customer = await pairBaileys(sim, join(work, 'customer'), CUSTOMER, 'Customer');
  open.push(customer);
  const delivered = (id) => waitFor(() => customer.statuses.some((s) => s.id === id && s.status === STATUS_DELIVERY_ACK),
    { timeoutMs: 20000, what: `delivery of ${id}`, detail: () => JSON.stringify(customer.statuses) });
  const arrived = (text) => waitFor(() => customer.received.some((m) => textOfMessage(m) === text),
    { timeoutMs: 20000, what: `"${text}" to arrive`, detail: () => JSON.stringify(customer.received.map(textOfMessage)) });
  const m1 = await customer.send(`${SHOP}@s.whatsapp.net`, 'do you deliver on sundays?');
  check('the customer\'s first message is stored and delivered', await passes(delivered(m1.key.id)));
  await other.call('SendMessage', { session_id: session.id, to: CUSTOMER, text: 'yes, until noon', client_message_id: 'a1' });
  check('the shop answers (queued through the other replica, sent by the holder); the customer decrypts it',
    await passes(arrived('yes, until noon')));

  // The holder dies mid-conversation. Meanwhile the customer writes and the shop answers.
  holder.proc.kill('SIGKILL');
  await holder.exited;
  delete replicas[holder.name];
  const killedAt = Date.now();
  const m2 = await customer.send(`${SHOP}@s.whatsapp.net`, 'then two loaves for sunday');
  await other.call('SendMessage', { session_id: session.id, to: CUSTOMER, text: 'noted: two loaves', client_message_id: 'a2' });
  const tookOver = await passes(waitFor(async () => (await holderOf(other)) === other.name,
    { timeoutMs: 20000, what: `${other.name} to take the shop` }));
  check(`${other.name} takes the shop over after the lease (${LEASE_TTL_S} s)`, tookOver, `${Date.now() - killedAt} ms`);
  check('the message written during the takeover is stored and delivered', await passes(delivered(m2.key.id)));
  check('the answer queued during the takeover goes out and decrypts', await passes(arrived('noted: two loaves')));
  const m3 = await customer.send(`${SHOP}@s.whatsapp.net`, 'thanks!');
  check('the conversation goes on: the next message decrypts on the new holder', await passes(delivered(m3.key.id)));
  await other.call('SendMessage', { session_id: session.id, to: CUSTOMER, text: 'see you sunday', client_message_id: 'a3' });
  check('and so does the next answer', await passes(arrived('see you sunday')));

  const rows = sql(`SELECT message_id || '|' || status FROM messages WHERE session_id = '${session.id}'`);
  const inbound = [m1, m2, m3].map((m) => m.key.id);
  check('each message stored once, none undecryptable',
    inbound.every((id) => rows.filter((r) => r.startsWith(`${id}|`)).length === 1)
      && rows.length === 6 && !rows.some((r) => r.endsWith('|UNDECRYPTABLE')), rows.join(','));
  const answers = customer.received.map(textOfMessage).filter((t) => ['yes, until noon', 'noted: two loaves', 'see you sunday'].includes(t));
  check('the customer got each answer once, in order', answers.join('/') === 'yes, until noon/noted: two loaves/see you sunday',
    answers.join('/'));

  // A flood beyond the send rate: SendMessage takes every one at once; they leave at the rate,
  // in order; none is dropped.
  const FLOOD = SEND_RATE * 10;
  const flood = [];
  const floodStart = Date.now();
  for (let i = 0; i < FLOOD; i += 1) {
    flood.push((await other.call('SendMessage', { session_id: session.id, to: CUSTOMER, text: `flood ${i}` })).message);
  }
  check(`a flood of ${FLOOD} at --send_rate=${SEND_RATE}: every SendMessage accepted at once, PENDING`,
    flood.every((m) => m.status === 'MESSAGE_STATUS_PENDING'), `${Date.now() - floodStart} ms`);
  const pendingEarly = Number(sql(`SELECT count(*) FROM messages WHERE session_id = '${session.id}' AND status = 'PENDING'`)[0]);
  const floodTexts = () => customer.received.map(textOfMessage).filter((t) => t?.startsWith('flood '));
  const all = await passes(waitFor(() => floodTexts().length >= FLOOD, { timeoutMs: 60000, intervalMs: 100,
    what: 'the whole flood', detail: () => `${floodTexts().length} of ${FLOOD}` }));
  const took = (Date.now() - floodStart) / 1000;
  check('held back by the rate (most still PENDING just after), then all sent, in order',
    all && pendingEarly >= FLOOD / 2 && floodTexts().join() === flood.map((_, i) => `flood ${i}`).join()
      && took >= (FLOOD - 2 * SEND_RATE) / SEND_RATE,
    `${pendingEarly} pending at first; all ${floodTexts().length} in ${took.toFixed(1)} s`);

  exitCode = checks.every((c) => c.ok) ? 0 : 1;
} catch (e) {
  console.error(e);
} finally {
  for (const c of open) c.close();
  for (const r of Object.values(replicas)) { r.proc.kill('SIGTERM'); await r.exited; }
  sim.stop();
  rmSync(work, { recursive: true, force: true });
}
console.log(`${checks.filter((c) => c.ok).length}/${checks.length} checks passed`);
process.exit(exitCode);
