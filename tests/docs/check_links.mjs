#!/usr/bin/env node
// Fails when a comment or a document points at something that is not there (ctest docs_links).
//
// It reads every text source of the repository (C++, protos, JavaScript, CMake, Markdown, YAML,
// the Dockerfile and the scripts) and checks four kinds of reference:
//
//   1. Repository paths such as `session-service/src/app.h` or `docs/api.md`: a token with a
//      slash whose first part names a directory of the repository, ending in a known extension
//      (or in "/" for a directory, or naming an extensionless file under a top-level directory).
//      It may be relative to the repository root, to the referring file's directory or to one of
//      that directory's parents, or be an include path (`common/validation.h`). URLs, #include
//      lines, node_modules, build/ and generated protobuf names are skipped. `x.md` without a
//      slash must be next to the referring file or at the root.
//   2. Headings: `README "Heading"`, `README "A" › "B"` (B is a heading under A), the same after
//      a path ending in .md, `README, "Heading"`, and further quoted headings of the same file
//      joined by ",", ";" or "and"; Markdown links `[text](path.md#anchor)` and `(#anchor)` and
//      `*A* › *B*` chains inside .md files; `path.md#anchor` tokens anywhere. Headings compare
//      as written, after the `#`s; anchors by GitHub's slug rules.
//   3. Sections of docs/wa-protocol.md: `§N` (optionally `steps a–b` or `"Sub-heading"`) in the
//      protocol code (session-service/src/wa/, tests/wa-sim/, the fuzzers, the interop suite,
//      scripts/gen-wa-tokens) and `docs/wa-protocol.md §N` anywhere; `RFC nnnn §x` is left alone.
//   4. References to what the repository does not hold: the old shared documents, seed
//      documents and issue numbers. README.md and docs/ are the project's own words.
//
// Prints `file:line: what is wrong` for each failure and exits 1, or prints how many references
// were checked and exits 0. Node 18+, no dependencies.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, posix, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

// ── the files ────────────────────────────────────────────────────────────────────────────────

const SKIP_DIRS = new Set(['.git', 'node_modules', 'build']);

// Tracked files and new ones not ignored (a document written but not yet committed counts), as
// repository-relative POSIX paths; without git, a walk of the tree.
function listFiles() {
  try {
    const out = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'],
      { cwd: root, encoding: 'utf8', maxBuffer: 64 << 20, stdio: ['ignore', 'pipe', 'ignore'] });
    const files = [...new Set(out.split('\0').filter(Boolean))];
    return files.filter((f) => existsSync(join(root, f)));
  } catch {
    const files = [];
    const walk = (rel) => {
      for (const entry of readdirSync(join(root, rel), { withFileTypes: true })) {
        const path = rel ? `${rel}/${entry.name}` : entry.name;
        if (entry.isDirectory()) {
          if (!SKIP_DIRS.has(entry.name) && !(rel === '' && entry.name.startsWith('build'))) walk(path);
        } else if (entry.isFile()) {
          files.push(path);
        }
      }
    };
    walk('');
    return files;
  }
}

const files = listFiles().sort();
const fileSet = new Set(files);
const dirSet = new Set(['']);
for (const f of files) {
  for (let d = posix.dirname(f); d !== '.' && !dirSet.has(d); d = posix.dirname(d)) dirSet.add(d);
}
const topDirs = new Set([...dirSet].filter((d) => d && !d.includes('/')));

// What kind of text source a file is; null when it is not one.
function kindOf(path) {
  const base = posix.basename(path);
  if (path.startsWith('tests/fuzz/corpus/')) return null;
  if (/\.md$/.test(base)) return 'md';
  if (/\.(cc|h|proto|mjs|js|cmake|in)$/.test(base) || base === 'CMakeLists.txt') return 'code';
  if (/\.(ya?ml)$/.test(base) || base === 'Dockerfile' || /(^|\.)env\.example$/.test(base)) return 'hash';
  if (!base.includes('.')) {
    const head = readFileSync(join(root, path), 'utf8').slice(0, 2);
    if (head === '#!') return 'script';
  }
  return null;
}

// ── Markdown headings ────────────────────────────────────────────────────────────────────────

// GitHub's anchor of a heading: the rendered text, lower-cased, punctuation dropped, spaces to
// hyphens (github-slugger).
function slug(text) {
  return text
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/<[^>]+>/g, '')
    .replace(/[`*]/g, '')
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
    .replace(/ /g, '-');
}

const headingCache = new Map();
// The headings of a Markdown file, in order: {level, text, line, slug, section, steps}.
// `section` is the number a heading starts with ("8. Pairing" → 8); `steps` the highest item
// number of the numbered lists under it.
function headings(path) {
  if (headingCache.has(path)) return headingCache.get(path);
  const out = [];
  const seen = new Map();
  let fence = null;
  readFileSync(join(root, path), 'utf8').split('\n').forEach((line, i) => {
    const f = line.match(/^\s{0,3}(`{3,}|~{3,})/);
    if (f) {
      if (!fence) fence = f[1][0];
      else if (f[1][0] === fence) fence = null;
      return;
    }
    if (fence) return;
    const h = line.match(/^(#{1,6})\s+(.*?)\s*#*\s*$/);
    if (h) {
      let s = slug(h[2]);
      const n = seen.get(s) ?? 0;
      seen.set(s, n + 1);
      if (n > 0) s = `${s}-${n}`;
      const num = h[2].match(/^§?(\d+)[.\s]/);
      out.push({ level: h[1].length, text: h[2], line: i + 1, slug: s,
        section: num ? Number(num[1]) : null, steps: 0 });
      return;
    }
    const item = line.match(/^(\d+)\.\s/);
    if (item && out.length) {
      const last = out[out.length - 1];
      last.steps = Math.max(last.steps, Number(item[1]));
    }
  });
  headingCache.set(path, out);
  return out;
}

// The headings under heading `i` (until the next one of its level or above).
function under(list, i) {
  const out = [];
  for (let j = i + 1; j < list.length && list[j].level > list[i].level; ++j) out.push(j);
  return out;
}

// Does the chain of heading texts ["A", "B", ...] exist, each under the one before?
function hasChain(path, chain) {
  const list = headings(path);
  let candidates = list.map((_, i) => i);
  for (const text of chain) {
    const found = candidates.filter((i) => list[i].text === text);
    if (!found.length) return false;
    candidates = found.flatMap((i) => under(list, i));
  }
  return true;
}

// ── path resolution ──────────────────────────────────────────────────────────────────────────

// Where headers and protos are included from: `common/validation.h` and
// `wasentinel/session/v1/session.proto` name files below these.
const INCLUDE_ROOTS = ['common/include', 'common/grpc/include', 'common/testing', 'protos'];

const exists = (p) => p !== null && (fileSet.has(p) || dirSet.has(p));

// Repository-relative form of `rel` joined to `base`, or null when it leaves the repository.
function joinRel(base, rel) {
  const p = posix.normalize(base ? `${base}/${rel}` : rel).replace(/\/$/, '');
  return p.startsWith('..') ? null : (p === '.' ? '' : p);
}

// The directories a path in `from` may be relative to: its own, its parents, the root.
function bases(from) {
  const out = [];
  for (let d = posix.dirname(from); ; d = posix.dirname(d)) {
    out.push(d === '.' ? '' : d);
    if (d === '.' || d === '/') break;
  }
  return out;
}

// Resolves `ref` as written in `from`: the repository path it names, null when it names none
// that exists, or undefined when it is not a repository path at all (its first part names no
// directory here).
function resolveRef(from, ref, { strict = false } = {}) {
  if (ref.startsWith('./') || ref.startsWith('../') || strict) {
    const p = ref.startsWith('/') ? joinRel('', ref.slice(1)) : joinRel(posix.dirname(from) === '.' ? '' : posix.dirname(from), ref);
    return exists(p) ? p : null;
  }
  const first = ref.split('/')[0];
  const candidates = [];
  for (const b of bases(from)) candidates.push(joinRel(b, ref));
  for (const r of INCLUDE_ROOTS) candidates.push(joinRel(r, ref), joinRel(`${r}/wasentinel`, ref));
  const hit = candidates.find(exists);
  if (hit !== undefined) return hit;
  const anchored = ref.includes('/')
    ? [...bases(from), ...INCLUDE_ROOTS, ...INCLUDE_ROOTS.map((r) => `${r}/wasentinel`)]
      .some((b) => dirSet.has(joinRel(b, first)))
    : true;
  return anchored ? null : undefined;
}

// ── scanning ─────────────────────────────────────────────────────────────────────────────────

const failures = [];
let checked = 0;
const fail = (file, line, what) => failures.push(`${file}:${line}: ${what}`);

const EXT = /\.(cc|h|hpp|cpp|proto|mjs|js|cjs|cmake|md|ya?ml|json|txt|png|pem|mustache|in|py|sh|sql|html|toml)$/;
// A path-like token: not glued to a URL, an e-mail address, a variable or a longer path; maybe
// with an #anchor.
const TOKEN_RE = /(?<![\w.\-/@:$}%~+=])((?:\.{1,2}\/)*[A-Za-z0-9_\-][A-Za-z0-9_.\-]*(?:\/[A-Za-z0-9_.\-]+)*\/?)(#[\w\-]+)?/g;

const GENERATED = /\.(pb|grpc\.pb)\.(h|cc)$|_pb\.js$|_grpc_pb\.js$/;
const skipPath = (p) => p.includes('node_modules') || /^(\.\.?\/)*build(\/|$)/.test(p) ||
  GENERATED.test(p);

// Checks one token of `file`; tokens that do not read as repository paths are left alone.
function checkToken(file, lineNo, token, anchor) {
  token = token.replace(/\.+$/, '');  // the end of a sentence
  const relative = /^\.{1,2}\//.test(token);
  const bare = token.replace(/^(\.{1,2}\/)+/, '');
  if (!token.includes('/') || skipPath(token)) return;
  if (FORBIDDEN.some(([re]) => re.test(token))) return;  // reported as forbidden
  const parts = bare.replace(/\/$/, '').split('/');
  const isDir = token.endsWith('/');
  const hasExt = EXT.test(parts[parts.length - 1]);
  // "x/" and "a/b" without an extension are too often prose ("TCP/TLS", "s/", "read/write"): a
  // directory needs two parts, an extensionless file a top-level directory as its first part.
  if (!relative && isDir && parts.length < 2) return;
  if (!relative && !isDir && !hasExt && !topDirs.has(parts[0])) return;
  const ref = token.replace(/\/$/, '');
  const hit = resolveRef(file, ref);
  if (hit === undefined) return;
  ++checked;
  if (hit === null && !isDir && !hasExt) {
    // "bench/get_session_rate": a program named after its source file.
    const name = joinRel('', ref);
    if (name !== null && files.some((f) => f.startsWith(`${name}.`) && !f.slice(name.length + 1).includes('/'))) return;
  }
  if (hit === null) {
    fail(file, lineNo, `${token} does not exist`);
    return;
  }
  if (isDir && !dirSet.has(hit)) fail(file, lineNo, `${token} is not a directory`);
  if (anchor) checkAnchor(file, lineNo, hit, anchor.slice(1), token);
}

// `x.md` with no directory: next to the referring file, or at the root.
const MD_RE = /(?<![\w.\-/@:$}%~+=])([A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)*\.md)(?![\w\-/])(#[\w\-]+)?/g;

function checkAnchor(file, lineNo, target, anchor, shown) {
  ++checked;
  if (!target.endsWith('.md')) return;
  if (!headings(target).some((h) => h.slug === anchor)) {
    fail(file, lineNo, `${shown}#${anchor}: no heading with that anchor in ${target}`);
  }
}

// Forbidden: what points outside the repository or at documents it does not hold. The patterns
// are assembled so that this file does not match them itself.
const FORBIDDEN = [
  [new RegExp('shared' + '/docs', 'i'), 'points at the old shared documents; point at README.md or docs/ instead'],
  [new RegExp('\\.\\./' + 'shared'), 'points outside the repository'],
  [new RegExp('\\b' + 'seeds?' + '\\s+0\\d\\d\\b', 'i'), 'cites a seed document; say it in the project\'s words (README, docs/)'],
  [new RegExp('\\b' + 'seeds' + '/', 'i'), 'points at seed documents'],
  [new RegExp('\\b' + 'issues?' + '\\s+#?\\d+\\b', 'i'), 'cites an issue number; name what it is about instead'],
];

// Files whose bare `§N` are sections of docs/wa-protocol.md.
const PROTOCOL_SCOPE = /^(session-service\/src\/wa\/|session-service\/test\/wa\/|session-service\/tools\/|tests\/wa-sim\/|tests\/fuzz\/|tests\/interop\/|scripts\/gen-wa-tokens$)/;
const PROTOCOL_DOC = 'docs/wa-protocol.md';

function checkSection(file, lineNo, number, steps, title) {
  ++checked;
  if (!fileSet.has(PROTOCOL_DOC)) {
    fail(file, lineNo, `§${number}: ${PROTOCOL_DOC} does not exist`);
    return;
  }
  const list = headings(PROTOCOL_DOC);
  const i = list.findIndex((h) => h.section === number && h.level === 2);
  if (i < 0) {
    fail(file, lineNo, `§${number}: ${PROTOCOL_DOC} has no section ${number}`);
    return;
  }
  if (steps && steps > list[i].steps) {
    fail(file, lineNo, `§${number} step ${steps}: section ${number} of ${PROTOCOL_DOC} numbers ${list[i].steps} steps`);
  }
  if (title && !under(list, i).some((j) => list[j].text === title)) {
    fail(file, lineNo, `§${number} "${title}": no such heading in section ${number} of ${PROTOCOL_DOC}`);
  }
}

// The text of `lines` with comment leaders removed, joined by spaces (a reference may wrap onto
// the next comment line), and a map from offsets back to line numbers.
function joined(lines) {
  let text = '';
  const starts = [];
  for (const line of lines) {
    starts.push(text.length);
    text += line.replace(/^\s*(\/\/\/?|\/\*+|\*+\/?|#+(?=\s|$)|--)\s?/, '').trimEnd() + ' ';
  }
  const lineAt = (offset) => {
    let lo = 0, hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid] <= offset) lo = mid; else hi = mid - 1;
    }
    return lo + 1;
  };
  return { text, lineAt };
}

const QUOTED = String.raw`"([^"]{1,160})"`;
const CHAIN = String.raw`${QUOTED}(?:\s*›\s*"[^"]{1,160}")*`;
// README "A" › "B", docs/x.md "A", and further "C" of the same file after , ; or "and".
const HEADING_REF = new RegExp(
  String.raw`(?<![\w/.\-])(README(?:\.md)?|(?:[\w.\-]+/)*[\w.\-]+\.md),?\s+(${CHAIN}(?:\s*(?:,|;|\band\b)\s*${CHAIN})*)`, 'g');

function checkHeadingRefs(file, text, lineAt) {
  for (const m of text.matchAll(HEADING_REF)) {
    const lineNo = lineAt(m.index);
    const name = m[1];
    const target = /^README(\.md)?$/.test(name) ? 'README.md' : resolveRef(file, name);
    if (target === undefined || target === null) continue;  // the path check reports it
    if (!target.endsWith('.md')) continue;
    for (const group of m[2].split(/\s*(?:,|;|\band\b)\s*(?=")/)) {
      const chain = [...group.matchAll(/"([^"]+)"/g)].map((q) => q[1].replace(/\s+/g, ' '));
      if (!chain.length) continue;
      ++checked;
      if (!hasChain(target, chain)) {
        fail(file, lineNo, `${name} ${chain.map((c) => `"${c}"`).join(' › ')}: no such heading in ${target}`);
      }
    }
  }
}

function scan(file, kind) {
  const raw = readFileSync(join(root, file), 'utf8');
  if (raw.includes('\0')) return;
  const lines = raw.split('\n');

  // Markdown: fenced code is shown as code, not followed as references (paths in it still are).
  const inFence = [];
  if (kind === 'md') {
    let fence = null;
    lines.forEach((line, i) => {
      const f = line.match(/^\s{0,3}(`{3,}|~{3,})/);
      if (f) {
        inFence[i] = true;
        if (!fence) fence = f[1][0];
        else if (f[1][0] === fence) fence = null;
        return;
      }
      inFence[i] = Boolean(fence);
    });
  }

  lines.forEach((line, i) => {
    const lineNo = i + 1;
    for (const [re, what] of FORBIDDEN) {
      const m = line.match(re);
      if (m) fail(file, lineNo, `"${m[0]}" ${what}`);
    }
    if (kind === 'code' && /^\s*#\s*include\b/.test(line)) return;
    let text = line.replace(/\b[a-z][a-z0-9+.\-]*:\/\/[^\s)>"'`\]]*/gi, ' ');  // URLs
    // Markdown link targets are checked as links below, relative to the document only.
    if (kind === 'md') text = text.replace(/\]\([^)]*\)/g, '] ');
    if (kind === 'code' || kind === 'hash' || kind === 'script') {
      // ${CMAKE_CURRENT_SOURCE_DIR}/x and ${PROJECT_SOURCE_DIR}/x name files of this repository.
      text = text.replace(/\$\{(?:CMAKE_CURRENT_SOURCE_DIR|PROJECT_SOURCE_DIR|CMAKE_SOURCE_DIR)\}\//g, ' ');
    }
    for (const m of text.matchAll(TOKEN_RE)) checkToken(file, lineNo, m[1], m[2]);
    for (const m of text.matchAll(MD_RE)) {
      const hit = resolveRef(file, m[1]);
      ++checked;
      if (!hit) fail(file, lineNo, `${m[1]} does not exist (next to ${file} or at the root)`);
      else if (m[2]) checkAnchor(file, lineNo, hit, m[2].slice(1), m[1]);
    }

    // Sections of the protocol document.
    const scoped = PROTOCOL_SCOPE.test(file);
    for (const m of line.matchAll(/(docs\/wa-protocol\.md\s+)?§(\d+)(?:\.\d+)*(?:\s+steps?\s+(\d+)(?:\s*[–-]\s*(\d+))?)?(?:\s+"([^"]+)")?/g)) {
      const before = line.slice(Math.max(0, m.index - 16), m.index);
      if (/RFC\s*\d+\s*$/.test(before)) continue;
      if (!m[1] && !scoped) continue;
      checkSection(file, lineNo, Number(m[2]), Number(m[4] ?? m[3] ?? 0), m[5]);
    }
  });

  // Heading references, over comment text joined across lines.
  const { text, lineAt } = joined(lines.map((l, i) => (inFence[i] ? '' : l)));
  checkHeadingRefs(file, text, lineAt);

  if (kind === 'md') {
    lines.forEach((line, i) => {
      if (inFence[i]) return;
      const plain = line.replace(/`[^`]*`/g, '');
      for (const m of plain.matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
        const target = m[1];
        if (/^[a-z][a-z0-9+.\-]*:/i.test(target)) continue;  // http:, mailto:, ...
        const [path, anchor] = target.split('#');
        if (!path) {
          checkAnchor(file, i + 1, file, anchor ?? '', '');
          continue;
        }
        ++checked;
        let decoded = path;
        try {
          decoded = decodeURIComponent(path);
        } catch {
          // a stray "%": taken as written
        }
        const hit = resolveRef(file, decoded, { strict: true });
        if (!hit) {
          fail(file, i + 1, `link to ${path}: no such file or directory (relative to ${posix.dirname(file)}/)`);
        } else if (anchor !== undefined) {
          checkAnchor(file, i + 1, hit, anchor, path);
        }
      }
      // *A* › *B*: a heading of this file under another.
      for (const m of plain.matchAll(/\*([^*\n]+)\*(?:\s*›\s*\*[^*\n]+\*)+/g)) {
        const chain = [...m[0].matchAll(/\*([^*\n]+)\*/g)].map((q) => q[1]);
        ++checked;
        if (!hasChain(file, chain)) {
          fail(file, i + 1, `${chain.map((c) => `*${c}*`).join(' › ')}: no such heading in ${file}`);
        }
      }
    });
  }
}

let scanned = 0;
for (const file of files) {
  // This file spells out the patterns it looks for, examples included.
  if (file === 'tests/docs/check_links.mjs') continue;
  let kind;
  try {
    kind = kindOf(file);
  } catch {
    continue;  // unreadable: not a text source
  }
  if (!kind) continue;
  ++scanned;
  scan(file, kind);
}

if (failures.length) {
  const key = (f) => {
    const [, file, line] = f.match(/^(.*?):(\d+):/);
    return [file, Number(line)];
  };
  failures.sort((a, b) => {
    const [fa, la] = key(a);
    const [fb, lb] = key(b);
    return fa < fb ? -1 : fa > fb ? 1 : la - lb;
  });
  for (const f of failures) console.log(f);
  console.log(`docs_links: ${failures.length} broken reference${failures.length === 1 ? '' : 's'}` +
    ` (${checked} references checked in ${scanned} files)`);
  process.exit(1);
}
console.log(`docs_links: ${checked} references checked in ${scanned} files, all resolve`);
