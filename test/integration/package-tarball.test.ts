// The release tarball (`npm run package`: out/edgewarden-<version>-linux-<arch>.tar.gz) as a user gets
// it: its file list, its README.md and docs (every relative link resolves inside it), and the steps of
// both READMEs — the repository's `tarball` block ("Installing on a gateway") and the tarball's own
// `try` and `real` blocks — typed as written, in order, in a scratch directory that holds the x64
// tarball, the cloud's public key and a snapshot beside it, as the README says (the key and the
// snapshot are made here once with the repository's CLI, as the README's cloud-side steps make them;
// readme.test.ts runs those).
//
// What is substituted, and why:
//   - linux-arm64 -> linux-x64 in the repository README's block (it names the Pi's tarball; this
//     machine runs the x64 one). The version is not substituted: the block must name this version.
//   - `--port 0` is appended to each `edgewarden run`: the steps listen on 127.0.0.1:1883, which
//     parallel tests or a broker on this machine may hold. An agent announces its port in its ready
//     line; no step connects to the port (status talks to the control socket).
//   - `edgewarden run` holds its terminal until Ctrl-C: it is started in the background, the steps
//     after it run meanwhile (a second terminal), and it gets SIGINT before the next `run` and at the
//     end, and must exit 0 (test/helpers/readme-steps.ts).
// Each other step must exit 0, or with the status its comment announces ("(exit status 3)").
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../helpers/policy.js';
import { cli } from '../helpers/cli.js';
import { EXAMPLE_POLICY } from '../helpers/agent.js';
import { brokenLinks, commandsOf, markedBlock, runSteps, type RunningAgent, type StepResult } from '../helpers/readme-steps.js';

t.setTimeout(600_000);

const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const NAME = `edgewarden-${VERSION}-linux-x64`;
const TGZ = join(ROOT, 'out', `${NAME}.tar.gz`);
const TMP = mkdtempSync(join(tmpdir(), 'ew-tarball-'));
t.teardown(() => rmSync(TMP, { recursive: true, force: true }));

// Both architectures, as the other package tests ask, so that they share one build.
const t0 = Date.now();
const build = spawnSync(process.execPath, [join(ROOT, 'scripts', 'package.mjs')], { cwd: ROOT, encoding: 'utf8', timeout: 540_000 });
t.equal(build.status, 0, 'npm run package builds the tarballs', { stderr: build.stderr.slice(-4000) });
t.comment(`package: ${((Date.now() - t0) / 1000).toFixed(1)} s (${/up to date/.test(build.stderr) ? 'reused a fresh build' : 'built'})`);

// The cloud side: a signing key and a snapshot version 2 of the example policy for gw-plant-1.
const CLOUD = join(TMP, 'cloud');
t.equal(cli(['keygen', '-o', CLOUD, '-n', 'cloud']).code, 0, 'keygen');
const signed = cli(['snapshot', 'sign', EXAMPLE_POLICY, '-k', join(CLOUD, 'cloud.key.pem'), '--version', '2', '-o', join(CLOUD, 'gw-plant-1.v2.cose')]);
t.equal(signed.code, 0, 'snapshot sign', { stderr: signed.stderr });

let gateways = 0;
/** A fresh directory with the tarball, cloud.pub.pem and gw-plant-1.v2.cose in it. */
function gatewayDir(): string {
  const dir = join(TMP, `gateway-${++gateways}`);
  mkdirSync(dir, { recursive: true });
  copyFileSync(TGZ, join(dir, `${NAME}.tar.gz`));
  copyFileSync(join(CLOUD, 'cloud.pub.pem'), join(dir, 'cloud.pub.pem'));
  copyFileSync(join(CLOUD, 'gw-plant-1.v2.cose'), join(dir, 'gw-plant-1.v2.cose'));
  return dir;
}

/** System directories the shipped configuration names: the steps must not create them. */
const SYSTEM_DIRS = ['/etc/edgewarden', '/var/lib/edgewarden'];
const systemBefore = SYSTEM_DIRS.filter((d) => !existsSync(d));

const EXPECTED_FILES = [
  'drwxr-xr-x ./',
  '-rw-r--r-- LICENSES.md',
  '-rw-r--r-- README.md',
  'drwxr-xr-x config/',
  '-rw-r--r-- config/cloud-tls.yaml',
  'drwxr-xr-x config/demo-keys/',
  '-rw-r--r-- config/demo-keys/demo.pub.pem',
  '-rw-r--r-- config/edgewarden.yaml',
  '-rw-r--r-- config/example-policy.yaml',
  '-rw-r--r-- config/example-snapshot.cose',
  'drwxr-xr-x config/templates/',
  '-rw-r--r-- config/templates/ibm-roles.yaml',
  'drwxr-xr-x docs/',
  '-rw-r--r-- docs/audit.md',
  '-rw-r--r-- docs/broker.md',
  '-rw-r--r-- docs/choices.md',
  '-rw-r--r-- docs/cli.md',
  '-rw-r--r-- docs/cloud.md',
  '-rw-r--r-- docs/config.md',
  '-rw-r--r-- docs/decisions.md',
  '-rw-r--r-- docs/errors.md',
  '-rw-r--r-- docs/fleet.md',
  '-rw-r--r-- docs/operating.md',
  '-rw-r--r-- docs/policy.md',
  '-rw-r--r-- docs/policy.schema.json',
  '-rw-r--r-- docs/reasons.md',
  '-rw-r--r-- docs/snapshots.md',
  '-rw-r--r-- docs/troubleshooting.md',
  '-rwxr-xr-x edgewarden',
  'drwxr-xr-x prebuilds/',
  'drwxr-xr-x prebuilds/linux-x64/',
  '-rwxr-xr-x prebuilds/linux-x64/node.napi.glibc.node',
].sort();

t.test('the tarball: its files, owned by root', async (t) => {
  const list = spawnSync('tar', ['-tzvf', TGZ], { encoding: 'utf8' });
  t.equal(list.status, 0);
  const rows = list.stdout.trim().split('\n').map((l) => l.split(/\s+/));
  const got = rows.map((p) => `${p[0]} ${p[5]!.slice(NAME.length + 1) || './'}`).sort();
  t.same(got, EXPECTED_FILES, 'the file list');
  t.ok(rows.every((p) => p[5]!.startsWith(`${NAME}/`)), `everything is below ${NAME}/`);
  t.ok(rows.every((p) => p[1] === 'root/root'), 'owned by root/root');
  for (const f of ['config.md', 'operating.md', 'reasons.md', 'policy.md', 'errors.md', 'audit.md', 'cloud.md', 'cli.md', 'decisions.md', 'broker.md', 'snapshots.md', 'troubleshooting.md', 'choices.md']) {
    t.ok(rows.some((p) => p[5] === `${NAME}/docs/${f}`), `docs/${f}`);
  }
});

function checkStep(t: Test, r: StepResult): void {
  t.equal(r.status, r.expected, `$ ${r.command}  (in ${r.cwd.slice(TMP.length + 1) || '.'})`, { output: r.output.slice(-3000) });
}

t.test("the README's tarball steps, as written", async (t) => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const block = markedBlock(readme, 'tarball');
  t.match(block, `edgewarden-${VERSION}-linux-arm64.tar.gz`, `the steps name this version's tarball (${VERSION})`);
  const commands = commandsOf(block.replaceAll('linux-arm64', 'linux-x64'));
  t.ok(commands.some((c) => c.startsWith('./edgewarden run --state-dir ')), 'the quick try keeps its state in the unpacked directory');
  const dir = gatewayDir();
  const { agents, cwd } = await runSteps(commands, { cwd: dir, runArgs: ['--port', '0'], onStep: (r) => checkStep(t, r) });
  t.equal(cwd, join(dir, NAME), 'the steps end in the unpacked directory');
  t.equal(agents.length, 2, 'two agents: the try and the real one');
  const [tryAgent, real] = agents as [RunningAgent, RunningAgent];

  t.equal(tryAgent.ready.snapshotVersion, 1, 'the try enforces the bundled example snapshot (version 1)');
  t.match(tryAgent.log(), /DEMO key/, 'and warns that it trusts the DEMO key');
  t.ok(existsSync(join(dir, NAME, 'demo-state', 'snapshot', 'current.cose')), 'its state is in ./demo-state of the unpacked directory');
  t.equal(tryAgent.exitCode, 0, 'Ctrl-C stops it with exit 0');

  t.equal(real.ready.snapshotVersion, 2, 'the real one enforces the installed snapshot (version 2)');
  t.match(real.log(), /"gateway":"gw-plant-1"/, 'as gateway gw-plant-1');
  t.notMatch(real.log(), /DEMO key/, 'trusting the cloud key only');
  t.notMatch(real.log(), /"level":"(warn|error|fatal)"/, 'no warning or error in its log');
  t.ok(existsSync(join(dir, NAME, 'state', 'snapshot', 'current.cose')), 'its state is in ./state');
  t.equal(real.exitCode, 0, 'Ctrl-C stops it with exit 0');
  t.same(SYSTEM_DIRS.filter((d) => !existsSync(d)), systemBefore, `nothing made in ${SYSTEM_DIRS.join(' or ')}`);
});

t.test("the tarball's README.md: its links, and its steps as written", async (t) => {
  const dir = gatewayDir();
  t.equal(spawnSync('tar', ['-xzf', `${NAME}.tar.gz`], { cwd: dir }).status, 0, 'unpacks');
  const root = join(dir, NAME);
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  t.match(readme, new RegExp(`^# edgewarden ${VERSION.replaceAll('.', '\\.')} for linux-x64$`, 'm'), 'names its version and architecture');
  t.match(readme, `edgewarden_${VERSION}_amd64.deb`, 'and the matching Debian package');
  t.notMatch(readme, /@[A-Z_]+@/, 'no placeholder left');
  const docs = readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`);
  t.same(brokenLinks(root, ['README.md', ...docs]), [], 'every relative link in README.md and docs/ resolves inside the directory');

  const results: StepResult[] = [];
  const { agents } = await runSteps([...commandsOf(markedBlock(readme, 'try')), ...commandsOf(markedBlock(readme, 'real'))], {
    cwd: root,
    runArgs: ['--port', '0'],
    onStep: (r) => {
      checkStep(t, r);
      results.push(r);
    },
  });
  const output = (re: RegExp) => results.find((r) => re.test(r.command))?.output ?? '';
  t.match(output(/status --state-dir demo-state/), /^snapshot\s+version 1,/m, 'try: status shows the example snapshot');
  t.match(output(/explain -p tech-anna/), /ALLOW/, 'try: explain allows tech-anna');
  t.match(output(/explain -p viewer-carl/), /DENY NOT_GRANTED/, 'try: and denies viewer-carl');
  t.match(output(/status -c edgewarden\.yaml/), /^snapshot\s+version 2,/m, 'real: status shows the installed snapshot');
  t.same(agents.map((a) => a.ready.snapshotVersion), [1, 2], 'the try on snapshot version 1, the real one on version 2');
  t.same(agents.map((a) => a.exitCode), [0, 0], 'both stop on Ctrl-C with exit 0');
  t.same(SYSTEM_DIRS.filter((d) => !existsSync(d)), systemBefore, `nothing made in ${SYSTEM_DIRS.join(' or ')}`);
});
