// Three session-service replicas over one PostgreSQL and one wa-sim, with the real binaries:
// sessions spread over the replicas, events of every replica at one watcher, calls forwarded
// to the holder, then a SIGKILL of one replica (its sessions reconnected by the others within
// the lease time) and a SIGTERM of another (its sessions handed over at once). Throughout, a
// sampler of wa-sim's connections checks that no device ever has two live sockets.
//
// Environment: WA_SIM, SESSION_SERVICE, DATABASE_URL, PROTO_DIR. TAP-like lines; exit code 0
// only if every step was seen.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import { useMultiFileAuthState } from 'baileys';
import { startSim, requiredEnv, waitFor, freePort, sampleDoubleSockets } from '../interop/harness.mjs';

const LEASE_TTL_S = 3;
const checks = [];
function check(name, ok, detail = '') {
  checks.push({ name, ok });
  console.log(`${ok ? 'ok' : 'not ok'} ${checks.length} - ${name}${detail ? ` # ${detail}` : ''}`);
  return ok;
}

const pkg = protoLoader.loadSync('wasentinel/session/v1/session.proto', {
  includeDirs: [requiredEnv('PROTO_DIR')], keepCase: true, enums: String, longs: Number, defaults: true,
});
const { SessionService } = grpc.loadPackageDefinition(pkg).wasentinel.session.v1;

const work = mkdtempSync(join(tmpdir(), 'was-replicas-'));
const sim = await startSim();
const sealingKey = randomBytes(32).toString('hex');

async function startReplica(name) {
  const port = await freePort();
  const metricsPort = await freePort();
  const proc = spawn(requiredEnv('SESSION_SERVICE'), [
    `--replica_id=${name}`,
    `--grpc_listen=127.0.0.1:${port}`,
    `--metrics_listen=127.0.0.1:${metricsPort}`,
    `--database_url=${requiredEnv('DATABASE_URL')}`,
    `--auth_state_key=demo:${sealingKey}`,
    `--wa_url=${sim.url}`, `--wa_version_url=${sim.versionUrl}`,
    `--wa_root_key=${sim.rootPublicKey.toString('hex')}`,
    `--lease_ttl=${LEASE_TTL_S}s`,
    '--keepalive_interval=1s,1s', '--keepalive_timeout=1s', '--keepalive_max_silence=3s',
    '--reconnect_backoff=1s,2s,4s', '--restore_per_second=0', '--log_level=warn',
  ], { stdio: ['ignore', 'inherit', 'inherit'] });
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  const client = new SessionService(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const call = (method, req) => new Promise((resolve, reject) =>
    client[method](req, { deadline: Date.now() + 10000 }, (err, res) => (err ? reject(err) : resolve(res))));
  await waitFor(async () => { try { await call('GetHealth', {}); return true; } catch { return false; } },
    { timeoutMs: 20000, what: `${name} to answer` });
  return { name, proc, exited, client, call, metricsPort };
}

// Every live socket of wa-sim, sampled; a device seen twice at once is a failure.
const sampler = sampleDoubleSockets(sim);

const replicas = {};
let exitCode = 1;
try {
  for (const name of ['r1', 'r2', 'r3']) replicas[name] = await startReplica(name);
  const { r1, r2, r3 } = replicas;

  // One watcher, on r3, sees what every replica writes.
  const events = [];
  const stream = r3.client.WatchSessionEvents({});
  stream.on('data', (e) => events.push({ ...e, seenAt: Date.now() }));
  stream.on('error', () => {});
  const sawEvent = (id, state, reason, since = 0, timeoutMs = 20000) => waitFor(() => events.find(
    (e) => e.session_id === id && e.to_state === `SESSION_STATE_${state}` &&
           (!reason || e.reason === `STATE_REASON_${reason}`) && e.seenAt >= since),
  { timeoutMs, what: `${id} ${state}` }).catch(() => null);

  // Two sessions created on each replica, from creds.json files Baileys wrote.
  const sessions = [];
  for (const [i, home] of ['r1', 'r1', 'r2', 'r2', 'r3', 'r3'].entries()) {
    const dir = join(work, `device-${i}`);
    const { state, saveCreds } = await useMultiFileAuthState(dir);
    state.creds.me = { id: `1555001${1000 + i}:${2 + i}@s.whatsapp.net`, name: `Shop ${i}` };
    await saveCreds();
    const credsJson = readFileSync(join(dir, 'creds.json'), 'utf8');
    await sim.post('/devices', { creds: JSON.parse(credsJson) });
    const { session } = await replicas[home].call('CreateSession', {
      tenant_id: `tenant-${i}`, account_name: `Shop ${i}`, creds_json: credsJson,
    });
    sessions.push({ id: session.id, home });
  }
  let all = true;
  for (const s of sessions) all = (await sawEvent(s.id, 'CONNECTED', 'LOGIN_SUCCESS')) && all;
  check('six sessions CONNECTED, their events seen by a watcher on r3', all);
  const owners = await Promise.all(sessions.map(async (s) => (await r1.call('GetSession', { id: s.id })).session));
  check('each session held by the replica that created it',
    owners.every((o, i) => o.owner === sessions[i].home && o.socket_alive),
    owners.map((o) => o.owner).join(','));

  // Calls are forwarded to the holder.
  const target = sessions.find((s) => s.home === 'r2');
  const down = await r3.call('Disconnect', { id: target.id });
  check('Disconnect on r3 of an r2 session is done by r2',
    down.session.state === 'SESSION_STATE_DISCONNECTED' && down.session.owner === 'r2');
  const since = Date.now();
  await r1.call('Connect', { id: target.id });
  check('Connect on r1 of an r2 session: CONNECTED again', !!(await sawEvent(target.id, 'CONNECTED', 'LOGIN_SUCCESS', since)));
  const deep = await r1.call('GetDeepHealth', {});
  check('deep health on r1 has the live facts of all six',
    deep.sessions.length === 6 && deep.sessions.every((s) => s.socket_alive), deep.status);

  // SIGKILL r1: its two sessions move to r2 and r3 once their leases expire.
  const killedAt = Date.now();
  r1.proc.kill('SIGKILL');
  await r1.exited;
  const orphans = sessions.filter((s) => s.home === 'r1');
  const taken = await Promise.all(orphans.map((s) => sawEvent(s.id, 'CONNECTED', 'LOGIN_SUCCESS', killedAt, 30000)));
  const took = taken.every(Boolean) ? Math.max(...taken.map((e) => e.seenAt - killedAt)) : null;
  // Lease expiry (≤ ttl after the last renewal) plus one renewal period to notice, plus a login.
  check('SIGKILL of r1: its sessions CONNECTED on other replicas within the lease time',
    took !== null && took <= (LEASE_TTL_S * 4 / 3 + 1) * 1000, `${took} ms, lease ${LEASE_TTL_S} s`);
  check('… through a TAKEOVER', orphans.every((s) => events.some((e) =>
    e.session_id === s.id && e.reason === 'STATE_REASON_TAKEOVER' && e.seenAt >= killedAt)));
  const after = await Promise.all(sessions.map(async (s) => (await r2.call('GetSession', { id: s.id })).session));
  check('all six CONNECTED, none held by r1',
    after.every((s) => s.state === 'SESSION_STATE_CONNECTED' && s.owner !== 'r1' && s.owner !== ''),
    after.map((s) => s.owner).join(','));

  // SIGTERM r2: SHUTDOWN written, leases given up, r3 takes everything at once.
  const termAt = Date.now();
  r2.proc.kill('SIGTERM');
  const { code } = await r2.exited;
  check('r2 stopped cleanly on SIGTERM', code === 0, `exit ${code}`);
  const handed = await Promise.all(sessions.map((s) => sawEvent(s.id, 'CONNECTED', 'LOGIN_SUCCESS', termAt, 15000)
    .then((e) => e || (events.filter((x) => x.session_id === s.id).at(-1)?.to_state === 'SESSION_STATE_CONNECTED'))));
  const final = await Promise.all(sessions.map(async (s) => (await r3.call('GetSession', { id: s.id })).session));
  check('after r2 left, r3 holds all six, CONNECTED', handed.every(Boolean) &&
    final.every((s) => s.owner === 'r3' && s.state === 'SESSION_STATE_CONNECTED'),
  final.map((s) => `${s.owner}:${s.state.replace('SESSION_STATE_', '')}`).join(','));
  const metrics = await (await fetch(`http://127.0.0.1:${r3.metricsPort}/metrics`)).text();
  const leases = Number(metrics.match(/^wasentinel_session_leases (\S+)/m)?.[1]);
  check('r3 reports 6 leases held', leases === 6, `${leases}`);

  const { samples, doubles } = await sampler.stop();
  const stats = await sim.get('/stats');
  check('never two live sockets for one device', doubles === 0 && stats.replaced === 0,
    `${samples} samples, ${doubles} doubles, ${stats.replaced} replaced at wa-sim`);
  stream.cancel();
  exitCode = checks.every((c) => c.ok) ? 0 : 1;
} catch (e) {
  console.error(e);
} finally {
  await sampler.stop();
  for (const r of Object.values(replicas)) r.proc.kill('SIGTERM');
  await Promise.all(Object.values(replicas).map((r) => r.exited));
  sim.stop();
  rmSync(work, { recursive: true, force: true });
  console.log(`${checks.filter((c) => c.ok).length} passed, ${checks.filter((c) => !c.ok).length} failed`);
  process.exit(exitCode);
}
