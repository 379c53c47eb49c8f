// Signal interop: our layer (wa-signal, session-service/src/e2ee/signal.h) against npm libsignal
// 6.0.0 (the 1:1 code Baileys uses) and Baileys' own group cipher (lib/Signal/Group), both ways,
// over a generated corpus: sessions from each side's pre-key bundle, pre-key then whisper
// messages, sender-key group messages; every message decrypts, tampered ones are refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { randomBytes } from 'node:crypto';
import libsignal from 'libsignal';
import 'baileys';  // first: the group module alone trips over Baileys' import cycle
import {
  GroupCipher, GroupSessionBuilder, SenderKeyDistributionMessage, SenderKeyName, SenderKeyRecord,
} from 'baileys/lib/Signal/Group/index.js';
import { requiredEnv } from './harness.mjs';

const { keyhelper, SessionBuilder, SessionCipher, ProtocolAddress, SessionRecord } = libsignal;
const b64 = (b) => Buffer.from(b).toString('base64');
const unb64 = (s) => Buffer.from(s, 'base64');
const strip = (k) => (k.length === 33 ? k.subarray(1) : k);  // libsignal-node keys carry 0x05
const prefixed = (k) => Buffer.concat([Buffer.from([5]), k]);

// wa-signal as a child: request(obj) → its JSON answer, in order.
function waSignal() {
  const proc = spawn(requiredEnv('WA_SIGNAL'), [], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: proc.stdout });
  const waiting = [];
  lines.on('line', (l) => waiting.shift()(JSON.parse(l)));
  return {
    request: (obj) => new Promise((resolve) => { waiting.push(resolve); proc.stdin.write(`${JSON.stringify(obj)}\n`); }),
    close: () => proc.stdin.end(),
  };
}

// A device of npm libsignal with an in-memory store, as Baileys keeps one.
function jsDevice(user, device) {
  const identity = keyhelper.generateIdentityKeyPair();
  const registrationId = keyhelper.generateRegistrationId();
  const preKeys = new Map();
  for (let id = 1; id <= 5; id += 1) preKeys.set(id, keyhelper.generatePreKey(id).keyPair);
  const signed = keyhelper.generateSignedPreKey(identity, 1);
  const sessions = new Map();
  const senderKeys = new Map();
  const storage = {
    loadSession: async (id) => (sessions.has(id) ? SessionRecord.deserialize(sessions.get(id)) : undefined),
    storeSession: async (id, record) => { sessions.set(id, record.serialize()); },
    isTrustedIdentity: () => true,
    loadPreKey: async (id) => preKeys.get(Number(id)),
    removePreKey: (id) => { preKeys.delete(Number(id)); },
    loadSignedPreKey: () => signed.keyPair,
    getOurRegistrationId: () => registrationId,
    getOurIdentity: () => identity,
    loadSenderKey: async (name) => {
      const s = senderKeys.get(name.toString());
      return s ? SenderKeyRecord.deserialize(s) : new SenderKeyRecord();
    },
    storeSenderKey: async (name, record) => { senderKeys.set(name.toString(), JSON.stringify(record.serialize())); },
  };
  return {
    user, device, storage, preKeys,
    address: new ProtocolAddress(user, device),
    // Its bundle as WhatsApp carries it: 32-byte keys.
    bundle: (preKeyId = 1) => ({
      registration_id: registrationId, device,
      identity: b64(strip(identity.pubKey)),
      signed_pre_key: { id: signed.keyId, pub: b64(strip(signed.keyPair.pubKey)), signature: b64(signed.signature) },
      pre_key: { id: preKeyId, pub: b64(strip(preKeys.get(preKeyId).pubKey)) },
    }),
  };
}

// Plaintexts of many lengths and bytes, deterministic per run seed.
const corpus = Array.from({ length: 40 }, (_, i) => randomBytes(i * 37 % 700));

test('1:1: our messages decrypt in npm libsignal, and theirs in ours', async () => {
  const ours = waSignal();
  try {
    const js = jsDevice('15550002222', 0);
    const me = await ours.request({ op: 'device', id: 'me', user: '15550001111', device: 3, pre_keys: 5 });
    const meAddress = new ProtocolAddress('15550001111', 3);
    // We start the session from their bundle (pre-key 2).
    assert.deepEqual(await ours.request({ op: 'process_bundle', id: 'me', to: { user: js.user, device: 0 }, bundle: js.bundle(2) }), {});
    const jsCipher = new SessionCipher(js.storage, meAddress);
    let count = 0;
    for (const plaintext of corpus.slice(0, 10)) {
      const c = await ours.request({ op: 'encrypt', id: 'me', to: { user: js.user, device: 0 }, plaintext: b64(plaintext) });
      assert.equal(c.type, 'pkmsg', 'until they answer, our messages carry the pre-key');
      const padded = await jsCipher.decryptPreKeyWhisperMessage(unb64(c.ciphertext));
      const n = padded[padded.length - 1];
      assert.ok(n >= 1 && n <= 15, `WhatsApp's padding (${n})`);
      assert.deepEqual(padded.subarray(0, padded.length - n), plaintext);
      count += 1;
    }
    assert.equal(js.preKeys.has(2), false, 'their pre-key 2 is used up');
    // They answer: whisper messages both ways from now on.
    for (const plaintext of corpus.slice(10, 25)) {
      const padded = Buffer.concat([plaintext, Buffer.alloc(4, 4)]);
      const e = await jsCipher.encrypt(padded);
      assert.equal(e.type, 1);
      const d = await ours.request({ op: 'decrypt', id: 'me', from: { user: js.user, device: 0 }, type: 'msg', ciphertext: b64(Buffer.from(e.body, 'binary')) });
      assert.equal(d.error, undefined, d.message);
      assert.deepEqual(unb64(d.plaintext), plaintext);
      const c = await ours.request({ op: 'encrypt', id: 'me', to: { user: js.user, device: 0 }, plaintext: b64(plaintext) });
      assert.equal(c.type, 'msg');
      const back = await jsCipher.decryptWhisperMessage(unb64(c.ciphertext));
      assert.deepEqual(back.subarray(0, back.length - back[back.length - 1]), plaintext);
      count += 2;
    }
    // Tampered, either way: refused.
    const c = await ours.request({ op: 'encrypt', id: 'me', to: { user: js.user, device: 0 }, plaintext: b64(corpus[30]) });
    const bad = unb64(c.ciphertext);
    bad[bad.length - 1] ^= 1;
    await assert.rejects(jsCipher.decryptWhisperMessage(bad));
    const e = await jsCipher.encrypt(Buffer.concat([corpus[31], Buffer.alloc(2, 2)]));
    const theirs = Buffer.from(e.body, 'binary');
    theirs[theirs.length - 1] ^= 1;
    const refused = await ours.request({ op: 'decrypt', id: 'me', from: { user: js.user, device: 0 }, type: 'msg', ciphertext: b64(theirs) });
    assert.equal(refused.error, 'INVALID_ARGUMENT');
    assert.ok(count >= 40);
    void me;
  } finally {
    ours.close();
  }
});

test('1:1: npm libsignal starts the session from our bundle', async () => {
  const ours = waSignal();
  try {
    const js = jsDevice('15550004444', 2);
    const me = await ours.request({ op: 'device', id: 'me', user: '15550003333', device: 0, pre_keys: 3 });
    const meAddress = new ProtocolAddress('15550003333', 0);
    await new SessionBuilder(js.storage, meAddress).initOutgoing({
      registrationId: me.registration_id,
      identityKey: prefixed(unb64(me.identity)),
      signedPreKey: { keyId: me.signed_pre_key.id, publicKey: prefixed(unb64(me.signed_pre_key.pub)), signature: unb64(me.signed_pre_key.signature) },
      preKey: { keyId: me.pre_keys[1].id, publicKey: prefixed(unb64(me.pre_keys[1].pub)) },
    });
    const cipher = new SessionCipher(js.storage, meAddress);
    const from = { user: js.user, device: 2 };
    for (const plaintext of corpus.slice(0, 8)) {
      const e = await cipher.encrypt(Buffer.concat([plaintext, Buffer.alloc(7, 7)]));
      assert.equal(e.type, 3, 'a pre-key message');
      const d = await ours.request({ op: 'decrypt', id: 'me', from, type: 'pkmsg', ciphertext: b64(Buffer.from(e.body, 'binary')) });
      assert.equal(d.error, undefined, d.message);
      assert.deepEqual(unb64(d.plaintext), plaintext);
    }
    // The same pre-key message again: a duplicate, refused and said so.
    const e = await cipher.encrypt(Buffer.alloc(3, 1));
    const first = await ours.request({ op: 'decrypt', id: 'me', from, type: 'pkmsg', ciphertext: b64(Buffer.from(e.body, 'binary')) });
    assert.equal(first.error, undefined);
    const again = await ours.request({ op: 'decrypt', id: 'me', from, type: 'pkmsg', ciphertext: b64(Buffer.from(e.body, 'binary')) });
    assert.equal(again.error, 'ALREADY_EXISTS');
    // Malformed input is refused, never a crash.
    for (const junk of [Buffer.alloc(0), Buffer.from([0x33]), randomBytes(50)]) {
      const r = await ours.request({ op: 'decrypt', id: 'me', from, type: 'pkmsg', ciphertext: b64(junk) });
      assert.equal(r.error, 'INVALID_ARGUMENT', `${junk.length} bytes: ${r.message}`);
    }
  } finally {
    ours.close();
  }
});

test('groups: sender keys between us and Baileys\' group cipher, both ways', async () => {
  const ours = waSignal();
  try {
    const group = '120363000000000042@g.us';
    const js = jsDevice('15550006666', 0);
    await ours.request({ op: 'device', id: 'me', user: '15550005555', device: 1 });
    const meName = new SenderKeyName(group, { id: '15550005555', deviceId: 1, toString: () => '15550005555.1' });
    const jsName = new SenderKeyName(group, { id: js.user, deviceId: 0, toString: () => `${js.user}.0` });
    // Ours → theirs.
    const { distribution } = await ours.request({ op: 'sender_key', id: 'me', group });
    await new GroupSessionBuilder(js.storage).process(meName, new SenderKeyDistributionMessage(null, null, null, null, unb64(distribution)));
    const jsCipher = new GroupCipher(js.storage, meName);
    for (const plaintext of corpus.slice(0, 12)) {
      const { ciphertext } = await ours.request({ op: 'group_encrypt', id: 'me', group, plaintext: b64(plaintext) });
      const padded = Buffer.from(await jsCipher.decrypt(unb64(ciphertext)));
      assert.deepEqual(padded.subarray(0, padded.length - padded[padded.length - 1]), plaintext);
    }
    // Theirs → ours.
    const theirs = await new GroupSessionBuilder(js.storage).create(jsName);
    const taken = await ours.request({ op: 'process_sender_key', id: 'me', group, from: { user: js.user, device: 0 }, distribution: b64(theirs.serialize()) });
    assert.deepEqual(taken, {});
    const ourCipher = new GroupCipher(js.storage, jsName);
    for (const plaintext of corpus.slice(12, 24)) {
      const ct = await ourCipher.encrypt(Buffer.concat([plaintext, Buffer.alloc(9, 9)]));
      const d = await ours.request({ op: 'group_decrypt', id: 'me', group, from: { user: js.user, device: 0 }, ciphertext: b64(ct) });
      assert.equal(d.error, undefined, d.message);
      assert.deepEqual(unb64(d.plaintext), plaintext);
    }
    // A tampered group message is refused.
    const ct = Buffer.from(await ourCipher.encrypt(Buffer.alloc(5, 5)));
    ct[ct.length - 2] ^= 1;
    const refused = await ours.request({ op: 'group_decrypt', id: 'me', group, from: { user: js.user, device: 0 }, ciphertext: b64(ct) });
    assert.ok(refused.error, 'refused');
  } finally {
    ours.close();
  }
});
