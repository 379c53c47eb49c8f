// Two unmodified Baileys clients, each paired with wa-sim as its phone and keeping its keys in
// Baileys' own multi-file store, exchange end-to-end encrypted text through wa-sim: 1:1 both
// ways with delivery and read receipts, one of them offline while a message is sent, a group
// (sender keys), a forced retry, and pre-keys used up and topped up. wa-sim routes what they
// send as WhatsApp's server does; nothing here decrypts for them.
import {WA_CERT_DETAILS} from 'baileys/lib/Defaults/index.js';
import assert from 'node:assert/strict';
import {mkdtempSync, readdirSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {after, before, test} from 'node:test';

import {openBaileys, pairBaileys, startSim, textOfMessage as textOf, waitFor} from './harness.mjs';

const sim = await startSim();
WA_CERT_DETAILS.PUBLIC_KEY = sim.rootPublicKey;
const root = mkdtempSync(join(tmpdir(), 'wa-messaging-'));
const open = new Set();
after(() => {
  for (const c of open) c.sock.end(undefined);
  sim.stop();
  rmSync(root, {recursive: true, force: true});
});

const STATUS_DELIVERY_ACK = 3;
const STATUS_READ = 4;
const bare = (jid) => jid.replace(/:\d+@/, '@');

const connect = (dir, name) => openBaileys(sim, dir, name);
const send = (c, jid, text) => c.send(jid, text);

function close(c) {
  c.close();
  open.delete(c);
}

async function pairAndOpen(phone, name) {
  const c = await pairBaileys(sim, join(root, phone), phone, name);
  open.add(c);
  return c;
}

const received = (c, text) =>
  waitFor(() => c.received.find((m) => textOf(m) === text),
      {what: `"${text}" to arrive`, timeoutMs: 20000,
        detail: () => JSON.stringify(c.received.map((m) => [m.key, textOf(m), m.messageStubType]))});
// 20 s: a message Baileys cannot decrypt at once (its reopened store had not flushed the last
// ratchet step) is settled by a retry, which Baileys sends only after waiting 5 s for its phone.
const statusOf = (c, id, status) =>
  waitFor(() => c.statuses.some((s) => s.id === id && s.status === status),
      {what: `status ${status} of ${id}`, timeoutMs: 20000, detail: () => JSON.stringify(c.statuses)});
const deviceOf = async (jid) =>
  (await sim.get('/devices')).devices.find((d) => `${d.jid}@s.whatsapp.net` === jid);

const ALICE = '15557770101';
const BOB = '15557770102';
let alice;
let bob;

before(async () => {
  alice = await pairAndOpen(ALICE, 'Alice');
  bob = await pairAndOpen(BOB, 'Bob');
});

test('each client uploaded its pre-keys to wa-sim on its first login', async () => {
  for (const c of [alice, bob]) {
    const d = await deviceOf(c.jid);
    assert.equal(d.prekeys, 30, 'Baileys uploads 30 when the server has fewer than 5');
    assert.ok(d.key_index >= 1 && d.registration_id > 0);
    // Baileys' own store holds them as pre-key-<id>.json next to creds.json.
    assert.ok(readdirSync(c.dir).filter((f) => f.startsWith('pre-key-')).length >= 30);
  }
});

test('1:1 both ways, with delivery and read receipts', async () => {
  const out = await send(alice, bob.user, 'hello Bob');
  const got = await received(bob, 'hello Bob');
  assert.equal(bare(got.key.remoteJid), alice.user);
  assert.equal(got.key.fromMe, false);
  await statusOf(alice, out.key.id, STATUS_DELIVERY_ACK);
  await bob.sock.readMessages([got.key]);
  await statusOf(alice, out.key.id, STATUS_READ);

  const reply = await send(bob, alice.user, 'hi Alice, got it');
  const back = await received(alice, 'hi Alice, got it');
  assert.equal(bare(back.key.remoteJid), bob.user);
  await statusOf(bob, reply.key.id, STATUS_DELIVERY_ACK);

  // A burst in order, each once.
  const texts = Array.from({length: 20}, (_, i) => `burst ${i}`);
  for (const t of texts) await send(alice, bob.user, t);
  for (const t of texts) await received(bob, t);
  const seen = bob.received.map(textOf).filter((t) => t?.startsWith('burst '));
  assert.deepEqual(seen, texts);

  // Each wrote to the other's phone too (device 0, played by wa-sim), which decrypted it.
  const phone = await sim.get(`/accounts/${BOB}/phone`);
  assert.ok(phone.received >= 21, JSON.stringify(phone));
  assert.equal(phone.undecryptable, 0);
  const stats = await sim.get('/stats');
  assert.equal(stats.messages_refused, 0);
});

test('a message sent while the recipient is offline arrives when it logs in again', async () => {
  close(bob);
  await waitFor(async () => {
    const {connections} = await sim.get('/connections');
    return !connections.some((c) => c.logged_in && `${c.jid}@s.whatsapp.net` === bob.jid);
  }, {what: 'Bob offline'});
  const out = await send(alice, bob.user, 'while you were away');
  await waitFor(async () => (await deviceOf(bob.jid)).offline_queued >= 1, {what: 'queued for Bob'});
  assert.ok(!alice.statuses.some((s) => s.id === out.key.id && s.status === STATUS_DELIVERY_ACK));

  const jid = bob.jid;
  bob = await connect(bob.dir, 'Bob');
  open.add(bob);
  bob.jid = jid;
  bob.user = `${BOB}@s.whatsapp.net`;
  await waitFor(() => bob.isOpen, {what: 'Bob open again'});
  // Bob decrypted it from the offline queue: its delivery receipt reaches Alice.
  await statusOf(alice, out.key.id, STATUS_DELIVERY_ACK);
  // Baileys 6.7.23 keeps the events of what it handled from the offline queue buffered until
  // it handles a live stanza; the next message releases them, the offline one first.
  await send(alice, bob.user, 'welcome back');
  await received(bob, 'welcome back');
  const order = bob.received.map(textOf);
  assert.ok(order.indexOf('while you were away') >= 0, JSON.stringify(order));
  assert.ok(order.indexOf('while you were away') < order.indexOf('welcome back'));
  await waitFor(async () => (await deviceOf(bob.jid)).offline_queued === 0, {what: 'queue empty'});
});

test('a held device gets nothing until it is released, then everything in order', async () => {
  const bobDevice = bob.jid.split('@')[0];
  await sim.post(`/devices/${bobDevice}/hold`, {enabled: true});
  const first = await send(alice, bob.user, 'held 1');
  await send(alice, bob.user, 'held 2');
  await waitFor(async () => (await deviceOf(bob.jid)).offline_queued === 2, {what: 'two held'});
  assert.ok(!alice.statuses.some((s) => s.id === first.key.id && s.status === STATUS_DELIVERY_ACK));
  const {released} = await sim.post(`/devices/${bobDevice}/hold`, {enabled: false});
  assert.equal(released, 2);
  await statusOf(alice, first.key.id, STATUS_DELIVERY_ACK);
  // Released stanzas are marked offline: their events wait for Bob's next live stanza.
  await send(alice, bob.user, 'after the hold');
  await received(bob, 'after the hold');
  const order = bob.received.map(textOf).filter((t) => /^held|^after the hold/.test(t));
  assert.deepEqual(order, ['held 1', 'held 2', 'after the hold']);
});

test('a phone (played by wa-sim) writes to Bob and to its own linked device', async () => {
  // A contact with only a phone: its first message is a pkmsg from device 0.
  const {id, copies} = await sim.post('/accounts/15557770199/send', {to: BOB, text: 'from a phone'});
  assert.ok(copies >= 2, 'Bob\'s phone and Bob\'s linked device');
  const got = await received(bob, 'from a phone');
  assert.equal(got.key.id, id);
  assert.equal(got.key.remoteJid, '15557770199@s.whatsapp.net');
  // Alice's own phone writes to Bob: Alice's linked device gets the copy as a deviceSentMessage
  // naming Bob as the chat, and takes it as her own.
  await sim.post(`/accounts/${ALICE}/send`, {to: BOB, text: 'sent on Alice\'s phone'});
  await received(bob, 'sent on Alice\'s phone');
  await waitFor(() => alice.ownCopies.some((m) => textOf(m) === 'sent on Alice\'s phone' &&
      bare(m.key.remoteJid) === bob.user), {what: 'Alice\'s copy of her phone\'s message'});
});

test('a group: sender keys to every member device, messages both ways', async () => {
  const group = await sim.post('/groups', {subject: 'Shop', creator: ALICE, participants: [BOB]});
  const out = await send(alice, group.jid, 'hello group');
  const got = await received(bob, 'hello group');
  assert.equal(got.key.remoteJid, group.jid);
  assert.equal(bare(got.key.participant), alice.user);
  await waitFor(() => alice.groupReceipts.some((r) => r.key.id === out.key.id),
      {what: 'a group receipt from Bob'});

  await send(bob, group.jid, 'hello from Bob');
  const back = await received(alice, 'hello from Bob');
  assert.equal(back.key.remoteJid, group.jid);
  // The second message reuses the sender key: no distribution needed.
  await send(alice, group.jid, 'second to the group');
  await received(bob, 'second to the group');
});

test('an undecryptable message is answered with a retry receipt and sent again', async () => {
  const before = (await sim.get('/stats')).retries_routed;
  await sim.post(`/devices/${bob.jid.split('@')[0]}/corrupt-next`);
  await send(alice, bob.user, 'retry me');
  // Baileys waits 5 s for the phone before asking for a retry.
  await waitFor(() => bob.received.find((m) => textOf(m) === 'retry me'),
      {what: 'the message after a retry', timeoutMs: 30000});
  assert.ok((await sim.get('/stats')).retries_routed > before);
});

test('used-up pre-keys: the count notification makes the client upload more', async () => {
  const bobDevice = bob.jid.split('@')[0];
  const {drained} = await sim.post(`/devices/${bobDevice}/drain-prekeys`);
  assert.ok(drained > 0);
  await waitFor(async () => (await deviceOf(bob.jid)).prekeys === 30,
      {what: 'Bob uploading 30 pre-keys after the notification'});
  const {connections} = await sim.get('/connections');
  const conn = connections.find((c) => c.logged_in && `${c.jid}@s.whatsapp.net` === bob.jid);
  await waitFor(async () => {
    const c = (await sim.get('/connections')).connections.find((x) => x.id === conn.id);
    return c.unacked === 0;
  }, {what: 'the notification acked'});
});

test('a phone that reset its identity is announced to the other devices', async () => {
  const before = (await sim.get('/connections')).connections.find(
      (c) => c.logged_in && `${c.jid}@s.whatsapp.net` === bob.jid);
  const {told} = await sim.post(`/accounts/${ALICE}/reset-identity`);
  assert.ok(told >= 1);
  await waitFor(async () => {
    const c = (await sim.get('/connections')).connections.find((x) => x.id === before.id);
    return c.acks_matched > before.acks_matched && c.unacked === 0;
  }, {what: 'Bob acking the identity notification'});
});
