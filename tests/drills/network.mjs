// Network drills between session-service and wa-sim: wa-sim runs in a network namespace this
// drill creates, behind a veth pair, and the faults are applied there to the WebSocket port
// only (wa-sim's control API stays reachable): nftables rules for loss, partition and a
// half-open connection, tc netem for latency. session-service, health-monitor, alert-service
// and a PostgreSQL server of the drill's own run on the host side. Keepalive: a ping every 2 s,
// 2 s to answer, the connection given up after 6 s without an answer, so a dead connection is
// noticed within 8 s (README "Faults survived").
//
//   latency     300 ms each way for 15 s      → no session drops
//   loss        5 % of packets each way, 20 s → no session drops
//   partition   every packet dropped for 60 s → each session leaves CONNECTED within the
//               keepalive bound, the monitor says WARNING, all CONNECTED again after, unaided
//   half-open   wa-sim's packets dropped, ours pass, 30 s → the same
//
// Needs root (namespaces, nftables); without them it prints why and exits 77 (ctest: skipped).
// A kernel without sch_netem skips the latency row with a message.
//
// Environment: WA_SIM, SESSION_SERVICE, HEALTH_MONITOR, ALERT_SERVICE, PROTO_DIR.
// WAS_DRILL_PARTITION_S shortens the partition.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSim, waitFor } from '../interop/harness.mjs';
import { addSessions, check, resumingWatcher, startPostgres, startSystem, summary } from './system.mjs';

const PARTITION_S = Number(process.env.WAS_DRILL_PARTITION_S || 60);
const KEEPALIVE_BOUND_MS = 8000;  // interval 2 s + silence 6 s (tests/drills/system.mjs)
const SESSIONS = 4;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The namespace and its veth pair: 10.213.N.1 here, 10.213.N.2 in the namespace.
const ns = `was-drill-${process.pid}`;
const net = 10 + (process.pid % 200);
const hostAddr = `10.213.${net}.1`;
const simAddr = `10.213.${net}.2`;
const veth = `wasd${process.pid % 100000}`;
const sh = (...args) => execFileSync(args[0], args.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
const inNs = (...args) => sh('ip', 'netns', 'exec', ns, ...args);
function setUpNamespace() {
  sh('ip', 'netns', 'add', ns);
  inNs('ip', 'link', 'set', 'lo', 'up');
  sh('ip', 'link', 'add', `${veth}h`, 'type', 'veth', 'peer', 'name', `${veth}n`);
  sh('ip', 'link', 'set', `${veth}n`, 'netns', ns);
  sh('ip', 'addr', 'add', `${hostAddr}/30`, 'dev', `${veth}h`);
  sh('ip', 'link', 'set', `${veth}h`, 'up');
  inNs('ip', 'addr', 'add', `${simAddr}/30`, 'dev', `${veth}n`);
  inNs('ip', 'link', 'set', `${veth}n`, 'up');
  inNs('nft', 'add', 'table', 'inet', 'drill');
  inNs('nft', 'add', 'chain', 'inet', 'drill', 'in', '{ type filter hook input priority 0; }');
  inNs('nft', 'add', 'chain', 'inet', 'drill', 'out', '{ type filter hook output priority 0; }');
}
function tearDownNamespace() {
  spawnSync('ip', ['link', 'del', `${veth}h`]);
  spawnSync('ip', ['netns', 'del', ns]);
}
try {
  if (process.getuid() !== 0) throw new Error('not root');
  setUpNamespace();
} catch (e) {
  tearDownNamespace();
  console.log(`# skipped: network namespaces with nftables are not permitted here (${String(e.message).split('\n')[0]})`);
  process.exit(77);
}
const netemOk = spawnSync('ip', ['netns', 'exec', ns, 'tc', 'qdisc', 'add', 'dev', `${veth}n`, 'root', 'netem',
  'delay', '0ms']).status === 0;
if (netemOk) inNs('tc', 'qdisc', 'del', 'dev', `${veth}n`, 'root');

const work = mkdtempSync(join(tmpdir(), 'was-drill-net-'));
const pg = await startPostgres(process.env.WAS_DRILL_PG_DIR || `${work}-pg`);  // not in `work`: postgres cannot enter it
const sim = await startSim([], { netns: ns, host: simAddr });
// Faults on the WebSocket port only: `in` sees what session-service sends, `out` what wa-sim does.
const port = sim.wsPort;
const rule = (chain, match, verdict = 'drop') => inNs('nft', 'add', 'rule', 'inet', 'drill', chain, ...match.split(' ').filter(Boolean), verdict);
const toSim = (extra = '') => rule('in', `tcp dport ${port}${extra}`);
const fromSim = (extra = '') => rule('out', `tcp sport ${port}${extra}`);
const heal = () => { inNs('nft', 'flush', 'chain', 'inet', 'drill', 'in'); inNs('nft', 'flush', 'chain', 'inet', 'drill', 'out'); };

let system = null;
let exitCode = 1;
try {
  system = await startSystem({ databaseUrl: pg.url, sim });
  const { session, monitor } = system.services;
  const sessions = await addSessions(session, sim, work, SESSIONS);
  const connected = () => waitFor(async () => {
    try {
      return (await Promise.all(sessions.map(async (x) => (await session.call('GetSession', { id: x.id })).session.state)))
        .every((st) => st === 'SESSION_STATE_CONNECTED');
    } catch { return false; }
  }, { timeoutMs: 60000, intervalMs: 100, what: 'every session CONNECTED' }).then(() => true, () => false);
  check(`${SESSIONS} sessions CONNECTED to wa-sim across the veth pair`, await connected());
  const watcher = resumingWatcher(session.client);
  const leftConnected = (id, since) => watcher.events.find((e) => e.session_id === id &&
    e.from_state === 'SESSION_STATE_CONNECTED' && e.seenAt >= since);
  const drops = (since) => watcher.events.filter((e) => e.from_state === 'SESSION_STATE_CONNECTED' && e.seenAt >= since).length;
  const levelOf = async (id) => { try { return (await monitor.call('GetSessionHealth', { session_id: id })).health.level; } catch { return null; } };

  // A fault that should not drop anyone.
  const tolerated = async (name, apply, seconds) => {
    const t0 = Date.now();
    apply();
    await sleep(seconds * 1000);
    heal();
    const n = drops(t0);
    const all = await connected();
    check(`${name}: no session dropped, all CONNECTED`, n === 0 && all, `${n} drops in ${seconds} s`);
  };
  // A fault that kills the connections: detection per session, the monitor's level, recovery.
  const fatal = async (name, apply, seconds) => {
    const t0 = Date.now();
    apply();
    const detected = await waitFor(() => sessions.every((x) => leftConnected(x.id, t0)),
      { timeoutMs: KEEPALIVE_BOUND_MS + 10000, intervalMs: 50 }).then(() => true, () => false);
    const times = sessions.map((x) => (leftConnected(x.id, t0)?.seenAt ?? Infinity) - t0);
    const worst = Math.max(...times);
    check(`${name}: every session left CONNECTED within the keepalive bound (${KEEPALIVE_BOUND_MS} ms + 1 s)`,
      detected && worst <= KEEPALIVE_BOUND_MS + 1000, `detected after ${times.join(', ')} ms`);
    const warned = await waitFor(async () => (await Promise.all(sessions.map((x) => levelOf(x.id))))
      .every((l) => l && l !== 'HEALTH_LEVEL_HEALTHY'), { timeoutMs: 10000, intervalMs: 100 }).then(() => Date.now() - t0, () => null);
    check(`${name}: the monitor no longer says HEALTHY`, warned !== null, `${warned} ms after the fault began`);
    await sleep(Math.max(0, seconds * 1000 - (Date.now() - t0)));
    const healedAt = Date.now();
    heal();
    const back = await connected();
    const healthy = await waitFor(async () => (await Promise.all(sessions.map((x) => levelOf(x.id))))
      .every((l) => l === 'HEALTH_LEVEL_HEALTHY'), { timeoutMs: 30000, intervalMs: 200 }).then(() => true, () => false);
    check(`${name}: once the network heals, every session CONNECTED and HEALTHY again, unaided`, back && healthy,
      `${Date.now() - healedAt} ms after it healed`);
  };

  if (netemOk) {
    await tolerated('latency 300 ms each way', () => {
      inNs('tc', 'qdisc', 'add', 'dev', `${veth}n`, 'root', 'netem', 'delay', '300ms');
      sh('tc', 'qdisc', 'add', 'dev', `${veth}h`, 'root', 'netem', 'delay', '300ms');
    }, 15);
    spawnSync('ip', ['netns', 'exec', ns, 'tc', 'qdisc', 'del', 'dev', `${veth}n`, 'root']);
    spawnSync('tc', ['qdisc', 'del', 'dev', `${veth}h`, 'root']);
  } else {
    console.log('# latency: skipped, this kernel has no sch_netem (tc qdisc netem)');
  }
  await tolerated('loss 5 % each way', () => {
    toSim(' numgen random mod 100 < 5');
    fromSim(' numgen random mod 100 < 5');
  }, 20);
  await fatal(`partition ${PARTITION_S} s`, () => { toSim(); fromSim(); }, PARTITION_S);
  await fatal('half-open (wa-sim\'s packets dropped, ours delivered) 30 s', () => fromSim(), 30);
  watcher.stop();
  exitCode = summary();
} catch (e) {
  console.error(e);
  summary();
} finally {
  await system?.stop();
  sim.stop();
  pg.stop();
  tearDownNamespace();
  rmSync(work, { recursive: true, force: true });
  process.exit(exitCode);
}
