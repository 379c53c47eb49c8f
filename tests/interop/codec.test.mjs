// Binary node interop: nodes encoded by Baileys' encodeBinaryNode decode with our codec to the
// same node, our encoding of the same node is byte-for-byte Baileys', and ours decode in Baileys.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deflateSync } from 'node:zlib';
import { encodeBinaryNode, decodeBinaryNode } from 'baileys';
import { SINGLE_BYTE_TOKENS, DOUBLE_BYTE_TOKENS } from 'baileys/lib/WABinary/constants.js';
import { waNodeLines } from './harness.mjs';

// A small deterministic PRNG (mulberry32), so a failure reproduces.
function rng(seed) {
  return () => {
    seed |= 0; seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function generator(seed) {
  const r = rng(seed);
  const int = (n) => Math.floor(r() * n);
  const pick = (a) => a[int(a.length)];
  const digits = (n) => Array.from({ length: n }, () => int(10)).join('');
  const strings = [
    () => pick(SINGLE_BYTE_TOKENS.slice(1)),
    () => pick(pick(DOUBLE_BYTE_TOKENS)),
    () => digits(1 + int(20)),                                    // nibble
    () => `${digits(1 + int(5))}.${digits(2)}-${digits(3)}`,      // nibble with . and -
    () => Buffer.from(Array.from({ length: 1 + int(12) }, () => int(256))).toString('hex').toUpperCase(), // hex
    () => `${digits(11)}@s.whatsapp.net`,                         // JID pair
    () => `${digits(11)}:${1 + int(60)}@s.whatsapp.net`,          // AD JID
    () => `${digits(14)}:${1 + int(60)}@lid`,                     // AD JID, lid
    () => `${digits(10)}-${digits(10)}@g.us`,                     // group
    () => '@s.whatsapp.net',                                      // the server
    () => 'status@broadcast',
    () => '',
    () => 'Ünïcödé ✓ ' + digits(3),                               // raw UTF-8
    () => 'x'.repeat(130 + int(200)),                             // BINARY_8 / BINARY_20 string
    () => digits(128 + int(10)),                                  // too long to pack
    () => 'ab-' + digits(4) + 'Z',                                // raw
  ];
  const str = () => pick(strings)();
  const tag = () => (r() < 0.7 ? pick(SINGLE_BYTE_TOKENS.slice(1)) : pick(['pair-success', 'ib', 'md', 'Custom_Tag', 'x']));
  const node = (depth) => {
    const attrs = {};
    const nattrs = int(6);
    for (let i = 0; i < nattrs; i++) attrs[pick(['id', 'to', 'from', 'type', 'xmlns', 't', 'jid', 'lid', 'name', 'k' + i])] = str();
    const kind = int(depth >= 3 ? 3 : 4);
    let content;
    if (kind === 1) content = str();
    else if (kind === 2) {
      const n = r() < 0.05 ? 70000 : int(300);
      content = Buffer.from(Array.from({ length: n }, () => int(256)));
    } else if (kind === 3) content = Array.from({ length: int(5) }, () => node(depth + 1));
    return { tag: tag(), attrs, content };
  };
  return () => node(0);
}

// Baileys' node → our JSON shape ({tag, attrs, content: string | {hex} | [...]}).
function toOurJson(n) {
  const out = { tag: n.tag };
  if (n.attrs && Object.keys(n.attrs).length) out.attrs = n.attrs;
  if (typeof n.content === 'string') out.content = n.content;
  else if (n.content instanceof Uint8Array) out.content = { hex: Buffer.from(n.content).toString('hex') };
  else if (Array.isArray(n.content)) out.content = n.content.map(toOurJson);
  return out;
}

const COUNT = 400;
const nodes = Array.from({ length: COUNT }, generator(20261123));

test('Baileys-encoded nodes decode with our codec to the same node', async () => {
  const encoded = nodes.map((n) => encodeBinaryNode(n));
  const ours = waNodeLines('decode', encoded.map((b) => b.toString('hex')));
  assert.equal(ours.length, COUNT);
  for (let i = 0; i < COUNT; i++) {
    const expected = toOurJson(await decodeBinaryNode(encoded[i]));
    assert.deepEqual(JSON.parse(ours[i]), expected, `node ${i}`);
  }
});

test('our encoding of the same node is byte-for-byte Baileys\'', async () => {
  const ours = waNodeLines('encode', nodes.map((n) => JSON.stringify(toOurJson(n))));
  for (let i = 0; i < COUNT; i++) {
    assert.equal(ours[i], encodeBinaryNode(nodes[i]).toString('hex'), `node ${i}`);
    const back = await decodeBinaryNode(Buffer.from(ours[i], 'hex'));
    assert.deepEqual(toOurJson(back), toOurJson(await decodeBinaryNode(encodeBinaryNode(nodes[i]))));
  }
});

test('zlib-compressed frames decode with our codec', async () => {
  const some = nodes.slice(0, 50);
  const frames = some.map((n) => Buffer.concat([Buffer.from([2]), deflateSync(encodeBinaryNode(n).subarray(1))]));
  const ours = waNodeLines('decode', frames.map((b) => b.toString('hex')));
  for (let i = 0; i < some.length; i++) {
    assert.deepEqual(JSON.parse(ours[i]), toOurJson(await decodeBinaryNode(frames[i])), `frame ${i}`);
  }
});
