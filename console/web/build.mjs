// Builds the console's web app into one directory the console process serves:
//
//   node build.mjs --out DIR [--protos DIR] [--check]
//
// 1. protoc (Debian's) with protoc-gen-es writes the gRPC-Web clients' TypeScript from protos/
//    into the gen directory under src (not committed; regenerated every build, so the app always matches the API).
// 2. With --check, tsc type-checks the app against them.
// 3. esbuild bundles src/main.ts and src/app.css into DIR/assets/ under content-hashed names,
//    writes DIR/index.html naming them, and bundles src/embed.ts into DIR/embed/wa-status.js
//    (a stable name: the script tag a company puts in its own pages).
// 4. DIR/build-stats.json: each file's size and gzip size, for the benchmark output.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, copyFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import * as esbuild from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const out = resolve(arg('--out', join(here, 'dist')));
const protos = resolve(arg('--protos', join(here, '..', '..', 'protos')));
const gen = join(here, 'src', 'gen');

rmSync(gen, { recursive: true, force: true });
mkdirSync(gen, { recursive: true });
execFileSync('protoc', [
  `--plugin=protoc-gen-es=${join(here, 'node_modules', '.bin', 'protoc-gen-es')}`,
  `--es_out=${gen}`, '--es_opt=target=ts', `-I${protos}`,
  'wasentinel/session/v1/session.proto', 'wasentinel/monitor/v1/monitor.proto',
  'wasentinel/alert/v1/alert.proto',
], { stdio: 'inherit' });

if (process.argv.includes('--check')) {
  execFileSync(join(here, 'node_modules', '.bin', 'tsc'), ['--noEmit', '-p', here], { stdio: 'inherit' });
}

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, 'assets'), { recursive: true });
const common = {
  bundle: true, minify: true, sourcemap: 'linked', target: ['chrome110', 'firefox110', 'safari16'],
  format: 'esm', legalComments: 'none', logLevel: 'warning',
};
const app = await esbuild.build({
  ...common,
  entryPoints: { app: join(here, 'src', 'main.ts'), style: join(here, 'src', 'app.css') },
  outdir: join(out, 'assets'), entryNames: '[name]-[hash]', metafile: true,
});
const outputs = Object.keys(app.metafile.outputs).map((f) => relative(out, resolve(f)));
const script = outputs.find((f) => f.startsWith('assets/app-') && f.endsWith('.js'));
const style = outputs.find((f) => f.startsWith('assets/style-') && f.endsWith('.css'));
writeFileSync(join(out, 'index.html'), readFileSync(join(here, 'src', 'index.html'), 'utf8')
  .replace('%SCRIPT%', `/${script}`).replace('%STYLE%', `/${style}`));
await esbuild.build({
  ...common, entryPoints: [join(here, 'src', 'embed.ts')], outfile: join(out, 'embed', 'wa-status.js'),
});
copyFileSync(join(here, 'src', 'favicon.svg'), join(out, 'favicon.svg'));

const stats = {};
const walk = (dir) => {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else if (!name.endsWith('.map')) {
      const bytes = readFileSync(path);
      stats[relative(out, path)] = { bytes: bytes.length, gzip_bytes: gzipSync(bytes).length };
    }
  }
};
walk(out);
writeFileSync(join(out, 'build-stats.json'), `${JSON.stringify(stats, null, 2)}\n`);
