// An unmodified Baileys client against wa-sim: handshake, certificate, login to
// connection 'open', keepalive, and wa-sim's faults reaching Baileys as its own
// DisconnectReason values.
import {BufferJSON, DisconnectReason, initAuthCreds, proto} from 'baileys';
import {WA_CERT_DETAILS} from 'baileys/lib/Defaults/index.js';
import curve from 'curve25519-js';
import assert from 'node:assert/strict';
import {after, test} from 'node:test';

import {connectBaileys, startSim, waitFor} from './harness.mjs';

const sim = await startSim();
after(() => sim.stop());
// Baileys 6.7.23 checks only the chain's structure; later versions verify signatures against
// this exported root, so point it at wa-sim's root as a strict client would be.
WA_CERT_DETAILS.PUBLIC_KEY = sim.rootPublicKey;

let nextPhone = 15551230001;

async function newDevice() {
  const creds = initAuthCreds();
  creds.me = {id: `${nextPhone++}:7@s.whatsapp.net`, name: 'Interop'};
  await sim.post('/devices', {creds: JSON.parse(JSON.stringify(creds, BufferJSON.replacer))});
  return creds;
}

const connect = (creds, extra) => connectBaileys(sim, creds, extra);

const jidOf = (creds) => creds.me.id.split('@')[0];

test('wa-sim certificate chain verifies with libsignal curve signatures', async () => {
  const {cert_chain, server_static_key} = await sim.get('/cert-chain');
  const chain = proto.CertChain.decode(Buffer.from(cert_chain, 'hex'));
  const inter = proto.CertChain.NoiseCertificate.Details.decode(chain.intermediate.details);
  const leaf = proto.CertChain.NoiseCertificate.Details.decode(chain.leaf.details);
  assert.equal(inter.issuerSerial, 0);
  assert.equal(leaf.issuerSerial, inter.serial);
  assert.equal(Buffer.from(leaf.key).toString('hex'), server_static_key);
  assert.ok(
      curve.verify(sim.rootPublicKey, chain.intermediate.details, chain.intermediate.signature));
  assert.ok(curve.verify(Buffer.from(inter.key), chain.leaf.details, chain.leaf.signature));
  const forged = Buffer.from(chain.leaf.signature);
  forged[5] ^= 1;
  assert.ok(!curve.verify(Buffer.from(inter.key), chain.leaf.details, forged));
});

test('Baileys logs in to connection open and its pings are answered', async () => {
  const creds = await newDevice();
  const {sock, state} = connect(creds, {keepAliveIntervalMs: 200});
  try {
    await waitFor(() => state.open || state.closed !== null, {what: 'connection \'open\''});
    assert.equal(state.closed, null, `closed with ${state.closed}`);
    assert.ok(state.open);
    await waitFor(async () => {
      const {connections} = await sim.get('/connections');
      const c = connections.find((x) => x.jid === jidOf(creds));
      return c && c.pings >= 2;
    }, {what: 'two answered pings'});
  } finally {
    sock.end(undefined);
  }
});

const faults = [
  ['conflict (replaced)', 'conflict', {}, DisconnectReason.connectionReplaced],
  [
    'stream error 515 (restart required)', 'stream-error', {code: 515},
    DisconnectReason.restartRequired
  ],
  ['dropped socket', 'drop', {mode: 'close'}, DisconnectReason.connectionClosed],
  ['stream error 401 (logged out)', 'stream-error', {code: 401}, DisconnectReason.loggedOut],
];

for (const [name, action, body, expected] of faults) {
  test(`wa-sim ${name} reaches Baileys as DisconnectReason ${expected}`, async () => {
    const creds = await newDevice();
    const {sock, state} = connect(creds);
    try {
      await waitFor(() => state.open || state.closed !== null, {what: 'connection \'open\''});
      assert.ok(state.open, `closed with ${state.closed} before open`);
      await sim.post(`/connections/${jidOf(creds)}/${action}`, body);
      await waitFor(() => state.closed !== null, {what: 'the close'});
      assert.equal(state.closed, expected);
    } finally {
      sock.end(undefined);
    }
  });
}

test('a device logged out by 401 cannot log in again', async () => {
  const creds = await newDevice();
  let {sock, state} = connect(creds);
  await waitFor(() => state.open, {what: 'connection \'open\''});
  await sim.post(`/connections/${jidOf(creds)}/stream-error`, {code: 401});
  await waitFor(() => state.closed !== null, {what: 'the close'});
  sock.end(undefined);
  ({sock, state} = connect(creds));
  try {
    await waitFor(() => state.closed !== null, {what: 'the refused login'});
    assert.equal(state.closed, DisconnectReason.loggedOut);
    assert.ok(!state.open);
  } finally {
    sock.end(undefined);
  }
});
