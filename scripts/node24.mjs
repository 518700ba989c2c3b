#!/usr/bin/env node
// Runs `node ARGS...` on Node 24 LTS, the runtime of edgewarden (docs/packaging.md, "The runtime").
//
//   node scripts/node24.mjs scripts/test.mjs        # what `npm test` runs after the build
//   node scripts/node24.mjs --print                 # prints the path of the Node 24 binary
//
// The running node is used when it is 24 or newer. Otherwise (e.g. Debian's or an old system Node
// 20) the official binary of Node NODE_VERSION comes from the npm registry package
// node-linux-<arch> (`npm pack`, no other download), cached in
// node_modules/.cache/node-NODE_VERSION-linux-<arch>/bin/node and checked by running
// `node --version`. The command runs as a child with that node's directory first in PATH, so that
// children calling `node` by name (tap's bin, `#!/usr/bin/env node` scripts) and children spawned
// with process.execPath run on it too. SIGTERM and SIGHUP are passed on to the child; SIGINT is not
// (Ctrl-C reaches the whole foreground process group, the child included), the wrapper just waits.
// The exit status is the child's (128 + signal number when a signal ended it).
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { constants } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const NODE_VERSION = '24.22.3';
export const MIN_MAJOR = 24;
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const ARCHES = { x64: 0x3e, arm64: 0xb7 };

function fail(msg) {
  process.stderr.write(`node24: ${msg}\n`);
  process.exit(1);
}

function versionOf(bin) {
  const r = spawnSync(bin, ['--version'], { encoding: 'utf8', timeout: 60_000 });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

/** The path of a Node >= MIN_MAJOR binary: the running one, or the cached (fetched if need be) NODE_VERSION. */
export function node24() {
  if (Number(process.versions.node.split('.')[0]) >= MIN_MAJOR) return process.execPath;
  const arch = process.arch;
  if (process.platform !== 'linux' || !(arch in ARCHES)) {
    fail(`Node ${process.version} is older than ${MIN_MAJOR} and there is no node-${process.platform}-${arch} to fetch here; install Node ${MIN_MAJOR}+`);
  }
  const dir = join(ROOT, 'node_modules', '.cache', `node-${NODE_VERSION}-linux-${arch}`);
  const bin = join(dir, 'bin', 'node');
  if (existsSync(bin) && versionOf(bin) === `v${NODE_VERSION}`) return bin;
  process.stderr.write(`node24: Node ${process.version} is older than ${MIN_MAJOR}: fetching node-linux-${arch}@${NODE_VERSION} from the npm registry into ${dir}\n`);
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    const npm = spawnSync('npm', ['pack', `node-linux-${arch}@${NODE_VERSION}`, '--pack-destination', tmp, '--json', '--loglevel=error'], {
      cwd: tmp, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'],
    });
    if (npm.status !== 0) fail(`npm pack node-linux-${arch}@${NODE_VERSION} failed (${npm.status ?? npm.signal})`);
    const [info] = JSON.parse(npm.stdout);
    const tar = spawnSync('tar', ['-xzf', join(tmp, info.filename), '-C', tmp], { stdio: 'inherit' });
    if (tar.status !== 0) fail(`cannot unpack ${info.filename}`);
    const got = join(tmp, 'package', 'bin', 'node');
    const head = readFileSync(got).subarray(0, 20);
    if (head.readUInt32BE(0) !== 0x7f454c46 || head.readUInt16LE(18) !== ARCHES[arch]) fail(`${info.filename}: bin/node is not a linux-${arch} executable`);
    chmodSync(got, 0o755);
    const v = versionOf(got);
    if (v !== `v${NODE_VERSION}`) fail(`${info.filename}: bin/node --version says ${v ?? '(nothing: it does not run)'}, not v${NODE_VERSION}`);
    rmSync(dir, { recursive: true, force: true });
    renameSync(join(tmp, 'package'), dir);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return bin;
}

/** Runs `node24() ...args` as a child (see the top of this file); the exit status becomes this process's. */
export function runOnNode24(args) {
  const bin = node24();
  const env = { ...process.env, PATH: [dirname(bin), process.env.PATH].filter(Boolean).join(delimiter) };
  const child = spawn(bin, args, { stdio: 'inherit', env });
  const pass = (sig) => () => child.kill(sig);
  process.on('SIGTERM', pass('SIGTERM'));
  process.on('SIGHUP', pass('SIGHUP'));
  process.on('SIGINT', () => {});
  child.on('error', (err) => fail(`${bin}: ${err.message}`));
  child.on('exit', (code, signal) => {
    process.exitCode = code ?? 128 + (constants.signals[signal] ?? 0);
  });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  if (args[0] === '--print') process.stdout.write(`${node24()}\n`);
  else runOnNode24(args);
}
