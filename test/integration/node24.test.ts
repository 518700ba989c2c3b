// Node 24 is the runtime (docs/packaging.md, "The runtime"): scripts/node24.mjs runs a command on it,
// and bin/edgewarden.js started by an older node (the machine's own, e.g. Debian's Node 20, as in the
// README's walkthrough) runs itself again on Node 24. The suite itself runs on Node 24.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { ROOT } from '../helpers/policy.js';

const NODE24 = join(ROOT, 'scripts', 'node24.mjs');
const BIN = join(ROOT, 'bin', 'edgewarden.js');
const { version: VERSION } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
const major = (v: string) => Number(/^v?(\d+)\./.exec(v)?.[1]);

t.test('the suite runs on Node 24 or newer', async (t) => {
  t.ok(major(process.version) >= 24, `process.version ${process.version}`);
});

t.test('scripts/node24.mjs on Node 24+: the running node, the exit status passed on', async (t) => {
  const print = spawnSync(process.execPath, [NODE24, '--print'], { encoding: 'utf8', timeout: 120_000 });
  t.equal(print.status, 0, '--print', { stderr: print.stderr });
  t.equal(print.stdout.trim(), process.execPath);
  const exit = spawnSync(process.execPath, [NODE24, '-e', 'process.exit(7)'], { encoding: 'utf8', timeout: 120_000 });
  t.equal(exit.status, 7);
  const path = spawnSync(process.execPath, [NODE24, '-e', 'console.log(process.env.PATH)'], { encoding: 'utf8', timeout: 120_000 });
  t.equal(path.stdout.trim().split(delimiter)[0], join(process.execPath, '..'), 'its directory first in PATH');
});

/** A node older than 24 on this machine (e.g. the system's /usr/bin/node), if there is one. */
function olderNode(): string | undefined {
  for (const p of ['/usr/bin/node', '/usr/local/bin/node']) {
    if (!existsSync(p)) continue;
    const v = spawnSync(p, ['--version'], { encoding: 'utf8', timeout: 60_000 });
    if (v.status === 0 && major(v.stdout.trim()) < 24) return p;
  }
  return undefined;
}

const older = olderNode();
t.test('an older node runs bin/edgewarden.js on Node 24 (fetched from the npm registry once, then cached)', { skip: older ? false : 'no node older than 24 on this machine' }, async (t) => {
  // Up to one fetch of node-linux-<arch> (about 30 MB) on a cold cache: a generous deadline.
  const v = spawnSync(older!, [BIN, '--version'], { encoding: 'utf8', timeout: 600_000 });
  t.equal(v.status, 0, `${older} bin/edgewarden.js --version`, { stderr: v.stderr });
  const m = /^(\S+) \(node (\S+)\)$/.exec(v.stdout.trim());
  t.ok(m, `prints "VERSION (node X.Y.Z)": ${v.stdout.trim()}`);
  t.equal(m?.[1], VERSION);
  t.ok(major(m?.[2] ?? '') >= 24, 'on Node 24+');
  const status = spawnSync(older!, [BIN, 'hash'], { input: 'oven-1-token', encoding: 'utf8', timeout: 120_000 });
  t.equal(status.status, 0, 'a command with stdin: hash', { stderr: status.stderr });
  t.equal(status.stdout.trim(), 'sha256:38fedf34c2dc2cbcf8e19b1fe54327f7905034eb72d77de5784a9edd403a95a0');
  const bad = spawnSync(older!, [BIN, 'no-such-command'], { encoding: 'utf8', timeout: 120_000 });
  t.not(bad.status, 0, 'the exit status of the command on Node 24 is passed on');
});
