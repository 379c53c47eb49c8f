// wa-sim plays WhatsApp's server and the phone for QR pairing; an unmodified Baileys client is
// the companion: it shows the QR code, verifies the identity wa-sim signed (HMAC under the adv
// secret), countersigns it, survives the 515 restart and logs in with its new credentials.
import {initAuthCreds, proto} from 'baileys';
import {WA_CERT_DETAILS} from 'baileys/lib/Defaults/index.js';
import curve from 'curve25519-js';
import assert from 'node:assert/strict';
import {after, test} from 'node:test';

import {connectBaileys, startSim, waitFor} from './harness.mjs';

const sim = await startSim();
after(() => sim.stop());
WA_CERT_DETAILS.PUBLIC_KEY = sim.rootPublicKey;

const companion = (creds) => connectBaileys(sim, creds);

// A fresh Baileys connection with the paired `creds` reaches 'open' (it logged in).
async function logsIn(creds) {
  const c = companion(creds);
  try {
    await waitFor(() => c.state.open || c.state.closed !== null, {what: 'connection \'open\' after pairing'});
    assert.equal(c.state.closed, null, `closed with ${c.state.closed}`);
  } finally {
    c.sock.end(undefined);
  }
}

test('Baileys pairs by QR code with wa-sim as the phone, restarts on 515 and logs in', async () => {
  const creds = initAuthCreds();
  const first = companion(creds);
  let result;
  try {
    await waitFor(() => first.state.qrs.length > 0, {what: 'a QR code from Baileys'});
    const qr = first.state.qrs[0];
    assert.equal(qr.split(',').length, 4, 'Baileys 6.x shows ref,noise,identity,adv');
    result = await sim.post('/pair', {qr, phone: '15557770001'});
    assert.equal(result.result, 'paired', JSON.stringify(result));
    await waitFor(() => first.state.closed !== null, {what: 'the 515 restart'});
    assert.equal(first.state.closed, 515);
  } finally {
    first.sock.end(undefined);
  }
  // Baileys accepted the identity: it stored the JID wa-sim gave and its own countersignature.
  assert.equal(creds.me.id, result.jid);
  assert.equal(creds.platform, 'android');
  const account = creds.account;
  const details = Buffer.from(account.details);
  const deviceMsg = Buffer.concat([
    Buffer.from([6, 1]), details, Buffer.from(creds.signedIdentityKey.public),
    Buffer.from(account.accountSignatureKey)
  ]);
  assert.ok(curve.verify(
      Buffer.from(creds.signedIdentityKey.public), deviceMsg,
      Buffer.from(account.deviceSignature)));
  const accountMsg =
      Buffer.concat([Buffer.from([6, 0]), details, Buffer.from(creds.signedIdentityKey.public)]);
  assert.ok(
      curve.verify(
          Buffer.from(account.accountSignatureKey), accountMsg,
          Buffer.from(account.accountSignature)),
      'wa-sim signed as the account');
  assert.ok(proto.ADVDeviceIdentity.decode(details).keyIndex >= 1);

  await logsIn(creds);
  const {devices} = await sim.get('/devices');
  assert.ok(devices.some((d) => `${d.jid}@s.whatsapp.net` === result.jid && d.logins === 1));
});

test('Baileys refuses an identity whose HMAC is forged, and nothing is paired', async () => {
  const creds = initAuthCreds();
  const c = companion(creds);
  try {
    await waitFor(() => c.state.qrs.length > 0, {what: 'a QR code from Baileys'});
    const before = (await sim.get('/stats')).pairings;
    const result =
        await sim.post('/pair', {qr: c.state.qrs[0], phone: '15557770002', corrupt: 'hmac'});
    assert.notEqual(result.result, 'paired');
    assert.equal((await sim.get('/stats')).pairings, before);
    assert.equal(creds.me, undefined);
  } finally {
    c.sock.end(undefined);
  }
});

test('a QR code nobody shows is refused', async () => {
  const fake = `2@nothing,${Buffer.alloc(32, 1).toString('base64')},` +
      `${Buffer.alloc(32, 2).toString('base64')},${Buffer.alloc(32, 3).toString('base64')}`;
  await assert.rejects(sim.post('/pair', {qr: fake, phone: '15557770003'}), /404/);
  await assert.rejects(sim.post('/pair', {qr: 'garbage', phone: '15557770003'}), /400/);
});

test('Baileys pairs by phone-number code with wa-sim as the phone typing it', async () => {
  const creds = initAuthCreds();
  const phone = '15557770004';
  const first = companion(creds);
  let result;
  try {
    // Baileys asks for a code once the registration connection is up (its first QR code).
    await waitFor(() => first.state.qrs.length > 0, {what: 'the registration connection'});
    const code = await first.sock.requestPairingCode(phone);
    assert.match(code, /^[1-9A-HJ-NP-TV-Z]{8}$/, 'Baileys codes use the link-code alphabet');
    const wrong = (code[0] === 'A' ? 'B' : 'A') + code.slice(1);
    const refused = await sim.post('/pair-code', {code: wrong, phone});
    assert.equal(refused.result, 'wrong_code', JSON.stringify(refused));
    result = await sim.post('/pair-code', {code, phone});
    assert.equal(result.result, 'paired', JSON.stringify(result));
    await waitFor(() => first.state.closed !== null, {what: 'the 515 restart'});
    assert.equal(first.state.closed, 515);
  } finally {
    first.sock.end(undefined);
  }
  // Baileys verified the pair-success HMAC under the adv secret both sides derived.
  assert.equal(creds.me.id, result.jid);
  assert.equal(creds.registered, true);

  await logsIn(creds);
});
