// Shared helpers of the interop tests: start wa-sim on free loopback ports, call its control
// API, connect an unmodified Baileys client to it, run wa-node in batch mode.
import makeWASocket, {useMultiFileAuthState} from 'baileys';
import {spawn, spawnSync} from 'node:child_process';
import {existsSync, mkdtempSync, readdirSync, readFileSync, rmSync} from 'node:fs';
import {createServer} from 'node:net';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import pino from 'pino';

export function requiredEnv(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run these tests through ctest (label interop)`);
  return v;
}

// `detail()`, when given, says what was seen instead, for the timeout's message.
export async function waitFor(cond, {timeoutMs = 10000, what = 'condition', intervalMs = 10, detail} = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${detail ? ` (${detail()})` : ''}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

// Samples wa-sim's live sockets every 20 ms until stop(); a device logged in on two sockets at
// once is a double. stop() answers {samples, doubles}.
export function sampleDoubleSockets(sim) {
  let sampling = true;
  let samples = 0;
  let doubles = 0;
  const loop = (async () => {
    while (sampling) {
      const {connections} = await sim.get('/connections');
      const seen = new Set();
      for (const c of connections.filter((x) => x.logged_in)) {
        if (seen.has(c.jid)) doubles += 1;
        seen.add(c.jid);
      }
      samples += 1;
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return {
    stop: async () => {
      sampling = false;
      await loop.catch(() => {});
      return {samples, doubles};
    },
  };
}

// `args`: further wa-sim flags (e.g. --min_version=N). `netns`: run it in that network
// namespace (`ip netns exec`), listening on `host` (an address of that namespace).
export async function startSim(args = [], {netns = null, host = '127.0.0.1'} = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'wa-sim-'));
  const ready = join(dir, 'ready.json');
  const simArgs = ['--port=0', '--control_port=0', `--ready_file=${ready}`, `--log_level=${process.env.WA_SIM_LOG_LEVEL ?? 'warn'}`,
    `--host=${host}`, ...args];
  const proc = netns ?
      spawn('ip', ['netns', 'exec', netns, requiredEnv('WA_SIM'), ...simArgs],
          {stdio: ['ignore', 'inherit', 'inherit']}) :
      spawn(requiredEnv('WA_SIM'), simArgs, {stdio: ['ignore', 'inherit', 'inherit']});
  let exited = null;
  proc.on('exit', (code) => {
    exited = code;
  });
  await waitFor(() => existsSync(ready) || exited !== null, {what: 'wa-sim to listen'});
  if (exited !== null) throw new Error(`wa-sim exited with ${exited}`);
  const info = JSON.parse(readFileSync(ready, 'utf8'));
  const base = `http://${host}:${info.control_port}`;
  const call = async (method, path, body) => {
    const res = await fetch(base + path, {
      method,
      headers: body ? {'content-type': 'application/json'} : {},
      body: body ? JSON.stringify(body) : undefined,
    });
    const json = await res.json();
    if (!res.ok) throw new Error(`wa-sim ${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
    return json;
  };
  return {
    url: `ws://${host}:${info.ws_port}/ws/chat`,
    wsPort: info.ws_port,
    // wss:// when started with --tls_cert/--tls_key (tests/wa-sim/testdata: SAN localhost).
    tlsUrl: info.tls_port ? `wss://localhost:${info.tls_port}/ws/chat` : null,
    // wa-sim's WhatsApp Web page, for session-service's --wa_version_url.
    versionUrl: `${base}/`,
    rootPublicKey: Buffer.from(info.root_public_key, 'hex'),
    get: (path) => call('GET', path),
    post: (path, body = {}) => call('POST', path, body),
    stop: () => {
      proc.kill('SIGTERM');
      rmSync(dir, {recursive: true, force: true});
    },
  };
}

// Runs `wa-node <cmd> --lines` over many inputs at once.
export function waNodeLines(cmd, lines) {
  const out = spawnSync(requiredEnv('WA_NODE'), [cmd, '--lines'], {
    input: lines.join('\n') + '\n',
    maxBuffer: 1 << 30,
  });
  if (out.status !== 0) throw new Error(`wa-node ${cmd} failed: ${out.stderr}`);
  return out.stdout.toString().split('\n').filter((l) => l.length > 0);
}

// A TCP port free on loopback right now (for servers that take a port, not 0).
export const freePort = () => new Promise((resolve) => {
  const srv = createServer();
  srv.listen(0, '127.0.0.1', () => {
    const {port} = srv.address();
    srv.close(() => resolve(port));
  });
});

// An unmodified Baileys socket to wa-sim with the least traffic (no init queries, no presence,
// no history). `state` follows it: the QR codes it showed, whether it reached 'open', and the
// status code it closed with; credential updates (pairing) are merged into `creds`.
export function connectBaileys(sim, creds, extra = {}) {
  const sock = makeWASocket({
    waWebSocketUrl: sim.url,
    auth: {creds, keys: {get: async () => ({}), set: async () => {}}},
    logger: pino({level: 'silent'}),
    printQRInTerminal: false,
    markOnlineOnConnect: false,
    fireInitQueries: false,
    syncFullHistory: false,
    ...extra,
  });
  const state = {qrs: [], open: false, closed: null};
  sock.ev.on('creds.update', (update) => Object.assign(creds, update));
  sock.ev.on('connection.update', (u) => {
    if (u.qr) state.qrs.push(u.qr);
    if (u.connection === 'open') state.open = true;
    if (u.connection === 'close') state.closed = u.lastDisconnect?.error?.output?.statusCode ?? -1;
  });
  return {sock, state};
}

const textOfMessage = (m) => m.message?.conversation ?? m.message?.extendedTextMessage?.text;

// A Baileys socket on Baileys' own multi-file key store in `dir` (a real key store: sessions,
// pre-keys, sender keys), marked online so its receipts are plain delivery receipts. What it
// receives (`received`), its own messages (`ownCopies`), the status updates of what it sent
// (`statuses`) and group receipts (`groupReceipts`) are collected; `send(jid, text)` keeps
// what it sent for a retry receipt's getMessage (Baileys' own upsert of it may still be
// buffered when the retry comes). `name`: the push name (needed to be marked online).
export async function openBaileys(sim, dir, name) {
  const auth = await useMultiFileAuthState(dir);
  if (auth.state.creds.me && name) auth.state.creds.me.name = name;
  const sent = new Map();
  const c = {
    dir, sent, received: [], ownCopies: [], statuses: [], groupReceipts: [], qrs: [],
    isOpen: false, closed: null,
  };
  c.sock = makeWASocket({
    waWebSocketUrl: sim.url,
    auth: auth.state,
    logger: pino({level: process.env.BAILEYS_LOG_LEVEL ?? 'silent'}),
    printQRInTerminal: false,
    markOnlineOnConnect: true,
    fireInitQueries: false,
    syncFullHistory: false,
    // A retry receipt can come back before sendMessage has resolved (loopback is fast): wait
    // a moment for the message to be known, as a persistent store would already know it.
    getMessage: async (key) => {
      await waitFor(() => sent.has(key.id), {timeoutMs: 3000, what: `message ${key.id}`}).catch(() => {});
      return sent.get(key.id);
    },
  });
  c.sock.ev.on('creds.update', auth.saveCreds);
  c.sock.ev.on('connection.update', (u) => {
    if (u.qr) c.qrs.push(u.qr);
    if (u.connection === 'open') c.isOpen = true;
    if (u.connection === 'close') c.closed = u.lastDisconnect?.error?.output?.statusCode ?? -1;
  });
  c.sock.ev.on('messages.upsert', ({messages}) => {
    for (const m of messages) {
      if (m.key.fromMe) {
        sent.set(m.key.id, m.message);
        c.ownCopies.push(m);
        // Receipts that came while the upsert was buffered are folded into it.
        for (const receipt of m.userReceipt ?? []) c.groupReceipts.push({key: m.key, receipt});
      } else {
        c.received.push(m);
      }
    }
  });
  c.sock.ev.on('messages.update', (updates) => {
    for (const u of updates) c.statuses.push({id: u.key.id, status: u.update.status});
  });
  c.sock.ev.on('message-receipt.update', (updates) => c.groupReceipts.push(...updates));
  c.send = async (jid, text) => {
    const out = await c.sock.sendMessage(jid, {text});
    sent.set(out.key.id, out.message);
    return out;
  };
  c.textsReceived = () => c.received.map(textOfMessage);
  c.close = () => c.sock.end(undefined);
  return c;
}

// Pairs a fresh Baileys store in `dir` with wa-sim as the phone of `phone`, then opens it
// (openBaileys). Answers it with `jid` (its device) and `user` (the account's JID).
export async function pairBaileys(sim, dir, phone, name) {
  const first = await openBaileys(sim, dir);
  await waitFor(() => first.qrs.length > 0, {what: 'a QR code'});
  const result = await sim.post('/pair', {qr: first.qrs[0], phone});
  if (result.result !== 'paired') throw new Error(`pairing ${phone}: ${JSON.stringify(result)}`);
  await waitFor(() => first.closed !== null, {what: 'the 515 restart'});
  first.close();
  const c = await openBaileys(sim, dir, name);
  await waitFor(() => c.isOpen || c.closed !== null, {what: `${name} open`});
  if (c.closed !== null) throw new Error(`${name} closed with ${c.closed}`);
  c.jid = result.jid;
  c.user = `${phone}@s.whatsapp.net`;
  return c;
}

export {textOfMessage};

// A linked device as Baileys pairs it, handed over to be imported (CreateSession's creds_json
// and pre_key_files): Baileys pairs `phone` in `dir` (uploading its one-time pre-keys to
// WhatsApp), then closes, and this waits until wa-sim no longer has it logged in. Answers
// { device (wa-sim's record), creds_json, pre_key_files }.
export async function baileysDeviceToImport(sim, dir, phone, name) {
  const paired = await pairBaileys(sim, dir, phone, name);
  const device = (await sim.get('/devices')).devices.find((d) => `${d.jid}@s.whatsapp.net` === paired.jid);
  paired.close();
  await waitFor(async () => !(await sim.get('/connections')).connections.some((c) => c.logged_in && c.jid === device.jid),
    {what: `${name}'s Baileys gone`});
  const pre_key_files = {};
  for (const f of readdirSync(dir).filter((n) => /^pre-key-\d+\.json$/.test(n))) {
    pre_key_files[f] = readFileSync(join(dir, f), 'utf8');
  }
  return {device, creds_json: readFileSync(join(dir, 'creds.json'), 'utf8'), pre_key_files};
}
