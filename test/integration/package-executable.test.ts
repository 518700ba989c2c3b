// The single-file executables (`npm run package`, scripts/package.mjs): built once per test run (a
// build whose inputs have not changed is reused), the x64 one run natively and the arm64 one under
// qemu-aarch64-static with the arm64 C libraries of Debian's *-arm64-cross packages. Each must
// print its version, verify the bundled snapshot with and without the native CBOR addon, and run the
// agent: a device gets the command its technician may send and not the one a viewer may not.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../helpers/policy.js';
import { connect, endAll, startAgent, until, cleanup, sleep, NODE_FLAGS, type AgentProcess, type Connected } from '../helpers/agent.js';

t.setTimeout(600_000);

const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const QEMU_LD_PREFIX = '/usr/aarch64-linux-gnu';

const t0 = Date.now();
const build = spawnSync(process.execPath, [join(ROOT, 'scripts', 'package.mjs'), '--no-archive'], {
  cwd: ROOT,
  encoding: 'utf8',
  timeout: 540_000,
});
t.equal(build.status, 0, 'npm run package builds', { stderr: build.stderr.slice(-4000) });
t.comment(`package: ${((Date.now() - t0) / 1000).toFixed(1)} s (${/up to date/.test(build.stderr) ? 'reused a fresh build' : 'built'})`);

const targets = [
  { arch: 'x64', prefix: [] as string[] },
  { arch: 'arm64', prefix: ['qemu-aarch64-static', '-L', QEMU_LD_PREFIX] },
];

for (const { arch, prefix } of targets) {
  const dir = join(ROOT, 'out', `edgewarden-${VERSION}-linux-${arch}`);
  const exe = join(dir, 'edgewarden');
  const command = [...prefix, exe];
  const exec = (args: string[], env: NodeJS.ProcessEnv = {}) => {
    const r = spawnSync(command[0]!, [...command.slice(1), ...args], {
      cwd: '/',
      encoding: 'utf8',
      timeout: 120_000,
      env: { ...process.env, ...env },
    });
    return { code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
  };

  t.test(`linux-${arch} executable`, async (t) => {
    const st = statSync(exe);
    t.ok(st.isFile() && (st.mode & 0o111) !== 0, 'is an executable file');
    t.comment(`${arch}: ${(st.size / 1048576).toFixed(1)} MiB`);
    const machine = readFileSync(exe).readUInt16LE(18);
    t.equal(machine, arch === 'x64' ? 0x3e : 0xb7, `is an ELF ${arch} binary`);

    const started = Date.now();
    const v = exec(['--version']);
    t.equal(v.code, 0, '--version exits 0', { stderr: v.stderr });
    // The embedded Node is the one that built it (scripts/package.mjs: the running node's version).
    t.equal(v.stdout.trim(), `${VERSION} (node ${process.versions.node})`, `--version prints ${VERSION} (node ${process.versions.node})`);
    t.ok(Number(/\(node (\d+)\./.exec(v.stdout)?.[1]) >= 24, 'the embedded Node is 24 or newer', { stdout: v.stdout });
    t.comment(`${arch}: --version in ${Date.now() - started} ms`);

    // The bundled snapshot and demo key beside the executable (the working directory is /).
    for (const native of [true, false]) {
      const r = exec(['snapshot', 'verify', join(dir, 'config', 'example-snapshot.cose'), '--json'], native ? {} : { CBOR_NATIVE_ACCELERATION_DISABLED: 'true' });
      t.equal(r.code, 0, `the bundled snapshot verifies (${native ? 'native cbor-extract' : 'pure-JS CBOR'})`, { stderr: r.stderr });
      t.match(r.stdout, /"version":\s*1/, 'and is version 1');
    }
    const allow = exec(['explain', '-s', join(dir, 'config', 'example-snapshot.cose'), '-p', 'tech-anna', '-P', 'EXECUTE_THING_COMMAND', '--thing', 'oven-1']);
    t.equal(allow.code, 0, 'explain on the bundled snapshot: tech-anna may command oven-1 (exit 0)', { stderr: allow.stderr });
    const deny = exec(['explain', '-s', join(dir, 'config', 'example-snapshot.cose'), '-p', 'viewer-carl', '-P', 'EXECUTE_THING_COMMAND', '--thing', 'oven-1']);
    t.equal(deny.code, 3, 'viewer-carl may not (exit 3)');
    t.match(deny.stdout, /NOT_GRANTED/);

    let agent: AgentProcess | undefined;
    let device: Connected | undefined;
    let anna: Connected | undefined;
    let carl: Connected | undefined;
    try {
      agent = await startAgent({ command, readyTimeoutMs: 60_000, config: { log: { level: 'info' }, metrics: { enabled: true, host: '127.0.0.1', port: 0 } } });
      t.pass(`${arch}: the agent is ready on 127.0.0.1:${agent.port}`);
      const starting = await agent.waitLog(/"msg":"starting edgewarden"/);
      t.match(starting, `"version":"${VERSION}"`, 'it logs its version (built in: no package.json beside it)');
      t.same((JSON.parse(starting) as { nodeFlags?: string[] }).nodeFlags, NODE_FLAGS, `it starts with the SEA's execArgv ${NODE_FLAGS.join(' ')}`);
      const metricsPort = (JSON.parse(await agent.waitLog(/metrics endpoint listening/)) as { port: number }).port;
      const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      t.match(metrics, new RegExp(`^edgewarden_build_info\\{version="${VERSION.replace(/\./g, '\\.')}",node="v[0-9.]+"\\} 1$`, 'm'), 'edgewarden_build_info names the version');
      // cbor-x loads the addon from prebuilds/ beside the executable (under qemu the guest's mappings
      // are the emulator's own).
      const maps = readFileSync(`/proc/${agent.child.pid}/maps`, 'utf8');
      t.match(maps, `${dir}/prebuilds/linux-${arch}/node.napi.glibc.node`, 'the native cbor-extract addon is loaded from beside the executable');

      device = await connect(agent.port, { clientId: 'oven-1', username: 'oven-1', password: 'oven-1-token' });
      await device.client.subscribeAsync('things/oven-1/commands/#', { qos: 1 });
      carl = await connect(agent.port, { clientId: 'carl-1', username: 'viewer-carl', password: 'carl-pass' });
      anna = await connect(agent.port, { clientId: 'anna-1', username: 'tech-anna', password: 'anna-pass' });
      // The denied publish goes first and is acknowledged (and dropped); the allowed one follows.
      await carl.client.publishAsync('things/oven-1/commands/reboot', 'from-carl', { qos: 1 });
      await anna.client.publishAsync('things/oven-1/commands/reboot', 'from-anna', { qos: 1 });
      t.ok(await until(() => device!.messages.length > 0, 20_000), 'the device receives a command');
      await sleep(300);
      t.same(device.messages, [{ topic: 'things/oven-1/commands/reboot', payload: 'from-anna' }], 'only tech-anna\'s command reaches oven-1');

      // The denial is in the audit log, read by the executable itself.
      let audited = false;
      for (let i = 0; i < 20 && !audited; i++) {
        const tail = exec(['audit', 'tail', '--json', '-n', '50', '--state-dir', agent.stateDir]);
        audited = tail.code === 0 && tail.stdout.split('\n').some((l) => l.includes('viewer-carl') && l.includes('NOT_GRANTED'));
        if (!audited) await sleep(250);
      }
      t.ok(audited, 'the denied publish is audited with NOT_GRANTED');
    } finally {
      await endAll(device, anna, carl);
      if (agent) {
        const code = await agent.stop();
        t.equal(code, 0, 'SIGTERM stops the agent with exit 0');
        cleanup(agent);
      }
    }
  });
}
