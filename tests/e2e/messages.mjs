// Messages into session-service, with unmodified Baileys as the other party, through wa-sim:
// a shop's device paired by Baileys is imported whole (creds.json and its pre-key-<id>.json
// files) into session-service, which takes over the linked device; a customer's Baileys writes
// to the shop, 1:1 (to a pre-key the shop's Baileys had uploaded) and in a group (sender keys),
// and while session-service is down. Each must be decrypted and stored before the receipt,
// which is what the customer sees as "delivered". The shop answers with SendMessage: the
// customer decrypts it, the shop's own tablet gets the copy, receipts move its status; a
// burst of 1000 with a SIGKILL in the middle is stored and watched once each. Two alert-service
// replicas follow the messages into signed webhooks (message.received, message.status); the
// one following is SIGKILLed mid-burst too, and the other takes over: every message of the
// burst arrives as one webhook.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import grpc from '@grpc/grpc-js';
import { WA_CERT_DETAILS } from 'baileys/lib/Defaults/index.js';
import { AlertService, SessionService, startWebhookReceiver, unary } from './api.mjs';
import {
  baileysDeviceToImport, freePort, pairBaileys, requiredEnv, startSim, textOfMessage, waitFor,
} from '../interop/harness.mjs';

const checks = [];
function check(name, ok, detail = '') {
  checks.push({ name, ok });
  console.log(`${ok ? 'ok' : 'not ok'} ${checks.length} - ${name}${detail ? ` # ${detail}` : ''}`);
  return ok;
}
const passes = (p) => p.then(() => true, () => false);

const SHOP = '15557780001';
const CUSTOMER = '15557780002';
const STATUS_DELIVERY_ACK = 3;
const work = mkdtempSync(join(tmpdir(), 'was-messages-'));
const sim = await startSim();
WA_CERT_DETAILS.PUBLIC_KEY = sim.rootPublicKey;
const sealingKey = randomBytes(32).toString('hex');
const databaseUrl = requiredEnv('DATABASE_URL');
const sql = (query) => execFileSync('psql', ['-At', '-F', '|', databaseUrl, '-c', query], { encoding: 'utf8' })
  .trim().split('\n').filter((l) => l.length > 0);

let service = null;
let metricsPort = 0;
const port = await freePort();  // the same over restarts: alert-service follows it there
async function startService() {
  metricsPort = await freePort();
  const proc = spawn(requiredEnv('SESSION_SERVICE'), [
    `--grpc_listen=127.0.0.1:${port}`, `--metrics_listen=127.0.0.1:${metricsPort}`,
    `--database_url=${databaseUrl}`, `--auth_state_key=k1:${sealingKey}`,
    `--wa_url=${sim.url}`, `--wa_version_url=${sim.versionUrl}`,
    `--wa_root_key=${sim.rootPublicKey.toString('hex')}`,
    '--restore_per_second=0', '--log_level=warn',
  ], { stdio: ['ignore', 'inherit', 'inherit'] });
  const exited = new Promise((resolve) => proc.on('exit', resolve));
  const client = new SessionService(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const call = unary(client);
  await waitFor(async () => { try { await call('GetHealth', {}); return true; } catch { return false; } },
    { timeoutMs: 20000, what: 'session-service to answer' });
  service = { proc, exited, call, client };
}
async function stopService() {
  service.proc.kill('SIGTERM');
  await service.exited;
  service = null;
}
const stored = async () => {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const m = text.match(/wasentinel_messages_received_total\{result="stored"\} (\d+)/);
  return m ? Number(m[1]) : 0;
};

// alert-service replicas following the messages into webhooks, and the receiver.
const hooks = [];
const receiver = await startWebhookReceiver((h) => hooks.push(h));
const alertReplicas = {};
const alertSecret = randomBytes(32).toString('hex');
async function startAlertService(name) {
  const alertPort = await freePort();
  const proc = spawn(requiredEnv('ALERT_SERVICE'), [
    `--replica_id=${name}`, `--grpc_listen=127.0.0.1:${alertPort}`, `--metrics_listen=127.0.0.1:${await freePort()}`,
    `--database_url=${databaseUrl}`, `--secret_key=${alertSecret}`, `--session_service=127.0.0.1:${port}`,
    '--message_feed_lease=3s', '--allow_private_targets', '--webhook_rate_per_second=0',
    '--dispatchers=2', '--delivery_backoff=500ms,1s,1s', '--webhook_timeout=2s', '--claim_lease=3s',
    '--log_level=warn',
  ], { stdio: ['ignore', 'inherit', 'inherit'] });
  const exited = new Promise((resolve) => proc.on('exit', resolve));
  const call = unary(new AlertService(`127.0.0.1:${alertPort}`, grpc.credentials.createInsecure()));
  await waitFor(async () => { try { await call('ListWebhookEndpoints'); return true; } catch { return false; } },
    { timeoutMs: 20000, what: `alert-service ${name} to answer` });
  alertReplicas[name] = { proc, exited, call };
  return alertReplicas[name];
}
const hooksOf = (type, id) => hooks.filter((h) => h.type === type && h.data.message_id === id);

const open = [];
let exitCode = 1;
try {
  // The shop's device, as Baileys paired it: it uploaded 30 one-time pre-keys to WhatsApp.
  const shop = await baileysDeviceToImport(sim, join(work, 'shop'), SHOP, 'Shop');
  const { device } = shop;
  check('the shop\'s Baileys uploaded its pre-keys', device?.prekeys === 30, JSON.stringify(device));

  // session-service takes the device over, with its keys.
  await startService();
  const { session } = await service.call('CreateSession', {
    tenant_id: 'shop', account_name: 'The shop', creds_json: shop.creds_json, pre_key_files: shop.pre_key_files,
  });
  const preKeyFiles = shop.pre_key_files;
  check(`imported with its ${Object.keys(preKeyFiles).length} pre-key files`, Object.keys(preKeyFiles).length >= 30);
  const connected = await passes(waitFor(async () => (await service.call('GetSession', { id: session.id })).session.state === 'SESSION_STATE_CONNECTED',
    { timeoutMs: 15000, what: 'the shop CONNECTED' }));
  check('the imported session is CONNECTED', connected);
  const kept = sql(`SELECT count(*) FROM signal_pre_keys WHERE session_id = '${session.id}'`)[0];
  check('its pre-keys are kept (sealed)', Number(kept) >= 30, kept);

  // Message webhooks: an endpoint that names both message events, two replicas following.
  const a1 = await startAlertService('a1');
  await startAlertService('a2');
  const endpoint = await a1.call('CreateWebhookEndpoint', {
    url: receiver.url(), event_types: ['message.received', 'message.status'], description: 'messages e2e',
  });
  receiver.trust(endpoint.secret);

  // A customer writes: Baileys fetches the shop device's bundle, with a pre-key the shop's
  // Baileys had uploaded, and encrypts to it.
  const customer = await pairBaileys(sim, join(work, 'customer'), CUSTOMER, 'Customer');
  open.push(customer);
  const first = await customer.send(`${SHOP}@s.whatsapp.net`, 'hello, are you open today?');
  const delivered = (c, id) => waitFor(() => c.statuses.some((s) => s.id === id && s.status === STATUS_DELIVERY_ACK),
    { timeoutMs: 15000, what: `delivery of ${id}`, detail: () => JSON.stringify(c.statuses) });
  check('1:1: the customer sees it delivered (session-service stored it, then sent the receipt)',
    await passes(delivered(customer, first.key.id)));
  const row = sql(`SELECT kind, chat_jid, sender_jid, from_me FROM messages WHERE message_id = '${first.key.id}'`);
  // (Baileys 6.7 writes text as an extendedTextMessage.)
  check('stored: a text in the customer\'s chat, from the customer\'s device',
    row.length === 1 && row[0] === `extendedTextMessage|${CUSTOMER}@s.whatsapp.net|${customer.jid}|f`, row.join());
  const receivedHook = await passes(waitFor(() => hooksOf('message.received', first.key.id).length > 0,
    { timeoutMs: 15000, what: 'the message.received webhook', detail: () => JSON.stringify(hooks.map((h) => h.type)) }));
  const hook = hooksOf('message.received', first.key.id)[0];
  check('webhook message.received: signed, with the text, the chat and the session',
    receivedHook && hook.verified && hook.data.text === 'hello, are you open today?'
      && hook.data.chat === `${CUSTOMER}@s.whatsapp.net` && hook.data.session_id === session.id
      && hook.data.status === 'received' && hook.data.from_me === false, JSON.stringify(hook?.data));
  const second = await customer.send(`${SHOP}@s.whatsapp.net`, 'I need two loaves');
  check('and the next message on the same Signal session', await passes(delivered(customer, second.key.id)));

  // A group of the two: the customer's sender key comes inside a pkmsg, then the skmsg.
  const group = await sim.post('/groups', { subject: 'Orders', creator: CUSTOMER, participants: [SHOP] });
  const inGroup = await customer.send(group.jid, 'order for the group: six rolls');
  const groupReceipt = await passes(waitFor(() => customer.groupReceipts.some((r) => r.key.id === inGroup.key.id),
    { timeoutMs: 15000, what: 'a group receipt' }));
  const groupRow = sql(`SELECT kind, chat_jid FROM messages WHERE message_id = '${inGroup.key.id}'`);
  check('group: decrypted with the sender key and stored in the group\'s chat',
    groupReceipt && groupRow.length === 1 && groupRow[0] === `extendedTextMessage|${group.jid}`, groupRow.join());

  // The shop answers through the API. A tablet of the shop's own account (Baileys, linked to
  // the same number) gets the copy as a deviceSentMessage; the customer's Baileys decrypts it
  // and its receipts move the status to DELIVERED, then READ once the customer reads it.
  const tablet = await pairBaileys(sim, join(work, 'tablet'), SHOP, 'Shop tablet');
  open.push(tablet);
  const answer = (await service.call('SendMessage', {
    session_id: session.id, to: `+${CUSTOMER}`, text: 'yes, until six', client_message_id: 'e2e-answer-1',
  })).message;
  check('SendMessage queues it PENDING with a WhatsApp id',
    answer.status === 'MESSAGE_STATUS_PENDING' && /^3EB0[0-9A-F]{18}$/.test(answer.message_id), JSON.stringify(answer));
  const arrived = (c, text) => waitFor(() => c.received.some((m) => textOfMessage(m) === text),
    { timeoutMs: 15000, what: `"${text}" to arrive`, detail: () => JSON.stringify(c.received.map(textOfMessage)) });
  check('the customer\'s Baileys decrypts it', await passes(arrived(customer, 'yes, until six')));
  const customerCopy = customer.received.find((m) => textOfMessage(m) === 'yes, until six');
  check('as a message of the shop\'s, with the id SendMessage answered',
    customerCopy?.key.id === answer.message_id && customerCopy?.key.remoteJid === `${SHOP}@s.whatsapp.net`,
    JSON.stringify(customerCopy?.key));
  const ownCopy = await passes(waitFor(() => tablet.ownCopies.some((m) => textOfMessage(m) === 'yes, until six'),
    { timeoutMs: 15000, what: 'the tablet\'s copy', detail: () => JSON.stringify(tablet.ownCopies.map(textOfMessage)) }));
  const copy = tablet.ownCopies.find((m) => textOfMessage(m) === 'yes, until six');
  check('the shop\'s tablet gets it as its own message in the customer\'s chat (deviceSentMessage)',
    ownCopy && copy?.key.remoteJid === `${CUSTOMER}@s.whatsapp.net`, JSON.stringify(copy?.key));
  const statusIs = (status) => waitFor(async () => (await service.call('GetMessage', {
    session_id: session.id, message_id: answer.message_id })).message.status === status,
  { timeoutMs: 15000, what: status });
  check('its status reaches DELIVERED (the customer\'s delivery receipt)', await passes(statusIs('MESSAGE_STATUS_DELIVERED')));
  await customer.sock.readMessages([customerCopy.key]);
  check('and READ once the customer reads it', await passes(statusIs('MESSAGE_STATUS_READ')));
  const readHook = await passes(waitFor(() => hooksOf('message.status', answer.message_id).some((h) => h.data.status === 'read'),
    { timeoutMs: 15000, what: 'the read webhook' }));
  // Each status is a delivery of its own (they may arrive in any order); the log's sequence
  // orders them.
  const statusHooks = hooksOf('message.status', answer.message_id).sort((a, b) => a.data.sequence - b.data.sequence);
  const statuses = statusHooks.map((h) => h.data.status);
  check('webhooks message.status follow it to read, signed, once per status, in the log\'s order',
    readHook && statusHooks.every((h) => h.verified && h.data.client_message_id === 'e2e-answer-1')
      && new Set(statuses).size === statuses.length && statuses.at(-1) === 'read'
      && statuses.every((st) => ['server_ack', 'delivered', 'read'].includes(st)),
    statuses.join(','));
  const again = (await service.call('SendMessage', {
    session_id: session.id, to: CUSTOMER, text: 'yes, until six', client_message_id: 'e2e-answer-1',
  })).message;
  check('the same client_message_id answers the same message', again.message_id === answer.message_id);
  // The shop reads the customer's first message: the customer sees it read.
  await service.call('MarkRead', { session_id: session.id, chat: CUSTOMER, message_ids: [first.key.id] });
  check('MarkRead: the customer sees its message read', await passes(waitFor(
    () => customer.statuses.some((st) => st.id === first.key.id && st.status === 4),
    { timeoutMs: 15000, what: 'read', detail: () => JSON.stringify(customer.statuses) })));
  tablet.close();

  // While session-service is down, the customer writes; after the restart it arrives, once.
  await stopService();
  const whileDown = await customer.send(`${SHOP}@s.whatsapp.net`, 'are you there?');
  await waitFor(async () => (await sim.get('/devices')).devices.find((d) => d.jid === device.jid).offline_queued >= 1,
    { what: 'queued at wa-sim' });
  await startService();
  check('sent while down: delivered after the restart', await passes(delivered(customer, whileDown.key.id)));
  const once = sql(`SELECT count(*) FROM messages WHERE message_id = '${whileDown.key.id}'`)[0];
  check('and stored once', once === '1', once);
  check('every message stored (metrics)', await passes(waitFor(async () => (await stored()) >= 1, { what: 'metrics' })));
  const total = sql(`SELECT count(*) FROM messages WHERE session_id = '${session.id}'`)[0];
  check('five messages in all (four in, one out)', total === '5', total);

  // A message damaged on the way: recorded UNDECRYPTABLE with the reason, a retry receipt goes
  // to the customer's Baileys, which sends it again; the resend replaces the record.
  await sim.post(`/devices/${device.jid}/corrupt-next`);
  const garbled = await customer.send(`${SHOP}@s.whatsapp.net`, 'this one arrives damaged');
  const statusOf = () => sql(`SELECT status || '|' || kind FROM messages WHERE message_id = '${garbled.key.id}'`)[0];
  check('a damaged message is sent again on our retry receipt, and stored',
    await passes(waitFor(() => statusOf() === 'RECEIVED|extendedTextMessage', { timeoutMs: 20000, what: 'the resend',
      detail: () => statusOf() })), statusOf());

  // A burst of 1000, and session-service SIGKILLed in the middle of it: what it had stored was
  // acknowledged; the rest waits at WhatsApp and comes again after the restart. None lost, none
  // stored twice.
  const BURST = 1000;
  const burst = [];
  const sending = (async () => {
    for (let i = 0; i < BURST; i += 1) burst.push((await customer.send(`${SHOP}@s.whatsapp.net`, `burst ${i}`)).key.id);
  })();
  const storedCount = () => Number(sql(`SELECT count(*) FROM messages WHERE session_id = '${session.id}' AND message_id IN (${
    burst.map((id) => `'${id}'`).join(',') || "''"})`)[0]);
  await waitFor(() => storedCount() >= 100, { timeoutMs: 30000, what: '100 of the burst stored' });
  // The alert-service replica following the messages dies too; the other takes the feed.
  const holder = () => sql("SELECT coalesce(holder, '') FROM alert_feeds WHERE name = 'messages' AND held_until > now()")[0];
  await waitFor(() => alertReplicas[holder()], { what: 'a replica following the messages' });
  const follower = holder();
  alertReplicas[follower].proc.kill('SIGKILL');
  await alertReplicas[follower].exited;
  delete alertReplicas[follower];
  service.proc.kill('SIGKILL');
  await service.exited;
  service = null;
  const atKill = storedCount();
  await sending;
  await startService();
  const all = await passes(waitFor(() => storedCount() === BURST, { timeoutMs: 60000, what: 'the whole burst stored',
    detail: () => `${storedCount()} of ${BURST}` }));
  check(`SIGKILL mid-burst (${atKill} of ${BURST} stored at the kill): every message stored after the restart`, all,
    `${storedCount()} stored`);
  const twice = sql(`SELECT count(*) FROM (SELECT message_id FROM messages WHERE session_id = '${session.id}'
    GROUP BY message_id HAVING count(*) > 1) d`)[0];
  check('none stored twice', twice === '0', twice);
  const deliveredAll = await passes(waitFor(() => burst.every((id) => customer.statuses.some((s) => s.id === id && s.status === STATUS_DELIVERY_ACK)),
    { timeoutMs: 30000, what: 'every delivery receipt' }));
  check('the customer sees every one delivered', deliveredAll);
  // Every message of the burst as one message.received webhook (a retry after a crash keeps
  // its webhook-id), sent by the replica that took the feed over.
  const inBurst = new Set(burst);
  const burstHooks = () => {
    const ids = new Map();
    for (const h of hooks) {
      if (h.type !== 'message.received' || h.data.status !== 'received' || !inBurst.has(h.data.message_id)) continue;
      ids.set(h.data.message_id, (ids.get(h.data.message_id) ?? new Set()).add(h.id));
    }
    return ids;
  };
  const allHooks = await passes(waitFor(() => burstHooks().size === BURST, { timeoutMs: 60000, intervalMs: 250,
    what: 'every webhook of the burst', detail: () => `${burstHooks().size} of ${BURST}` }));
  const taken = holder();
  check(`webhooks: the follower (${follower}) SIGKILLed mid-burst, ${taken} took over: every message once`,
    allHooks && taken !== follower && [...burstHooks().values()].every((s) => s.size === 1)
      && hooks.every((h) => h.verified), `${burstHooks().size} of ${BURST}`);

  // WatchMessages replays the log: every message of the burst once.
  const seen = new Map();
  await new Promise((resolve) => {
    const stream = service.client.WatchMessages({ session_id: session.id, after_sequence: 0 },
      { deadline: Date.now() + 30000 });
    const ids = new Set(burst);
    let got = 0;
    stream.on('data', (m) => {
      if (!ids.has(m.message_id)) return;
      seen.set(m.message_id, (seen.get(m.message_id) ?? 0) + 1);
      if (++got >= BURST) { stream.cancel(); }
    });
    stream.on('error', () => resolve());
    stream.on('end', () => resolve());
  });
  check('WatchMessages replays each of the burst once', seen.size === BURST && [...seen.values()].every((n) => n === 1),
    `${seen.size} seen`);

  exitCode = checks.every((c) => c.ok) ? 0 : 1;
} catch (e) {
  console.error(e);
} finally {
  for (const c of open) c.close();
  if (service) await stopService().catch(() => {});
  for (const r of Object.values(alertReplicas)) { r.proc.kill('SIGTERM'); await r.exited; }
  receiver.close();
  sim.stop();
  rmSync(work, { recursive: true, force: true });
}
console.log(`${checks.filter((c) => c.ok).length}/${checks.length} checks passed`);
process.exit(exitCode);
