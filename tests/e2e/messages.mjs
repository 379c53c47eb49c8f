// Messages into session-service, with unmodified Baileys as the other party, through wa-sim:
// a shop's device paired by Baileys is imported whole (creds.json and its pre-key-<id>.json
// files) into session-service, which takes over the linked device; a customer's Baileys writes
// to the shop, 1:1 (to a pre-key the shop's Baileys had uploaded) and in a group (sender keys),
// and while session-service is down. Each must be decrypted and stored before the receipt,
// which is what the customer sees as "delivered". The shop answers with SendMessage: the
// customer decrypts it, the shop's own tablet gets the copy, receipts move its status; a
// burst of 1000 with a SIGKILL in the middle is stored and watched once each.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import grpc from '@grpc/grpc-js';
import { WA_CERT_DETAILS } from 'baileys/lib/Defaults/index.js';
import { SessionService, unary } from './api.mjs';
import { freePort, pairBaileys, requiredEnv, startSim, textOfMessage, waitFor } from '../interop/harness.mjs';

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
async function startService() {
  const port = await freePort();
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

const open = [];
let exitCode = 1;
try {
  // The shop's device, as Baileys paired it: it uploaded 30 one-time pre-keys to WhatsApp.
  const shopDir = join(work, 'shop');
  const shopBaileys = await pairBaileys(sim, shopDir, SHOP, 'Shop');
  const device = (await sim.get('/devices')).devices.find((d) => `${d.jid}@s.whatsapp.net` === shopBaileys.jid);
  check('the shop\'s Baileys uploaded its pre-keys', device?.prekeys === 30, JSON.stringify(device));
  shopBaileys.close();
  await waitFor(async () => !(await sim.get('/connections')).connections.some((c) => c.logged_in && c.jid === device.jid),
    { what: 'the shop\'s Baileys gone' });

  // session-service takes the device over, with its keys.
  await startService();
  const preKeyFiles = {};
  for (const f of readdirSync(shopDir).filter((n) => /^pre-key-\d+\.json$/.test(n))) {
    preKeyFiles[f] = readFileSync(join(shopDir, f), 'utf8');
  }
  const { session } = await service.call('CreateSession', {
    tenant_id: 'shop', account_name: 'The shop', creds_json: readFileSync(join(shopDir, 'creds.json'), 'utf8'),
    pre_key_files: preKeyFiles,
  });
  check(`imported with its ${Object.keys(preKeyFiles).length} pre-key files`, Object.keys(preKeyFiles).length >= 30);
  const connected = await passes(waitFor(async () => (await service.call('GetSession', { id: session.id })).session.state === 'SESSION_STATE_CONNECTED',
    { timeoutMs: 15000, what: 'the shop CONNECTED' }));
  check('the imported session is CONNECTED', connected);
  const kept = sql(`SELECT count(*) FROM signal_pre_keys WHERE session_id = '${session.id}'`)[0];
  check('its pre-keys are kept (sealed)', Number(kept) >= 30, kept);

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
  sim.stop();
  rmSync(work, { recursive: true, force: true });
}
console.log(`${checks.filter((c) => c.ok).length}/${checks.length} checks passed`);
process.exit(exitCode);
