// The single-file executables (`npm run package`, scripts/package.mjs): built once per test run (a
// build whose inputs have not changed is reused), the x64 one run natively and the arm64 one under
// qemu-aarch64-static with the arm64 C libraries of Debian's *-arm64-cross packages. Each must
// print its version, verify the bundled snapshot with and without the native CBOR addon, and run the
// agent: a device gets the command its technician may send and not the one a viewer may not (MQTT.js,
// on a test configuration), and the same on the executable's embedded defaults with the README's
// mosquitto_sub/mosquitto_pub commands, the denial in the agent's log and in the audit log.
// qemu-aarch64-static, the arm64 libraries and the mosquitto clients come from
// scripts/install-test-deps.sh (which .ci/run runs): when missing the arm64 case fails, it is not skipped.
import t from 'tap';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../helpers/policy.js';
import { connect, endAll, startAgent, until, cleanup, sleep, mosquittoSub, NODE_FLAGS, type AgentProcess, type Connected } from '../helpers/agent.js';

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

/** mosquitto_pub without blocking the event loop (the agent's log pipes into this process meanwhile). */
function mosquittoPub(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    execFile('mosquitto_pub', args, { timeout: 30_000 }, (err, _stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stderr });
    });
  });
}

/** Why this machine cannot run the tests of `arch` ('' if it can): a failure naming the fix, never a silent skip. */
function missing(arch: string): string {
  const gaps: string[] = [];
  const onPath = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
  if (!onPath('mosquitto_pub') || !onPath('mosquitto_sub')) gaps.push('mosquitto_pub/mosquitto_sub (mosquitto-clients)');
  if (arch === 'arm64') {
    if (!onPath('qemu-aarch64-static')) gaps.push('qemu-aarch64-static (qemu-user-static)');
    for (const lib of ['ld-linux-aarch64.so.1', 'libstdc++.so.6', 'libgcc_s.so.1']) {
      if (!existsSync(join(QEMU_LD_PREFIX, 'lib', lib))) gaps.push(`${QEMU_LD_PREFIX}/lib/${lib} (libc6-arm64-cross, libstdc++6-arm64-cross, libgcc-s1-arm64-cross)`);
    }
  }
  return gaps.length ? `missing ${gaps.join(', ')}: run scripts/install-test-deps.sh` : '';
}

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

  const gap = missing(arch);
  if (gap) {
    t.fail(`linux-${arch} executable: ${gap}`);
    continue;
  }

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

  // The README's walkthrough as a new user runs it from an unpacked tarball: `edgewarden run` on its
  // embedded defaults (no -c: the bundled example snapshot, the demo key, 127.0.0.1; --port 0 instead
  // of 1883), mosquitto_sub as the device, mosquitto_pub as viewer-carl (denied) and tech-anna (allowed).
  // Node reads NODE_OPTIONS before the executable's own flags (its SEA execArgv), so the unit can add
  // flags but not lower one the executable sets: the heap must be bounded by both (issue 13).
  if (arch === 'x64') {
    t.test(`linux-${arch} executable: under the systemd unit's NODE_OPTIONS its V8 heap is bounded by the unit's and its own flags`, async (t) => {
      const unit = readFileSync(join(ROOT, 'systemd', 'edgewarden.service'), 'utf8');
      const nodeOptions = /^Environment="?NODE_OPTIONS=([^"\n]*)"?\s*$/m.exec(unit)?.[1]?.trim() ?? '';
      t.match(nodeOptions, /--max-old-space-size=\d+/, `the unit sets NODE_OPTIONS (${nodeOptions})`);
      const names = (flags: string[]) => flags.map((f) => f.split('=')[0]!.replace(/_/g, '-'));
      const overridden = names(NODE_FLAGS).filter((n) => names(nodeOptions.split(/\s+/)).includes(n));
      t.same(overridden, [], 'the unit sets no flag the executable sets too (the executable\'s would win, silently)');
      const limitWith = (flags: string[]) => {
        const r = spawnSync(process.execPath, [...flags, '-p', 'Math.round(require("node:v8").getHeapStatistics().heap_size_limit / 1048576)'], { encoding: 'utf8' });
        return Number(r.stdout.trim());
      };
      const intended = limitWith([...nodeOptions.split(/\s+/), ...NODE_FLAGS]);
      const unitAlone = limitWith(nodeOptions.split(/\s+/));
      t.ok(intended < unitAlone, `the executable's own flags (${NODE_FLAGS.join(' ')}) bound the young generation further: ${intended} MB < ${unitAlone} MB`);
      const agent = await startAgent({ command, env: { NODE_OPTIONS: nodeOptions }, readyTimeoutMs: 60_000, config: { log: { level: 'info' } } });
      try {
        const starting = JSON.parse(await agent.waitLog(/"msg":"starting edgewarden"/)) as { heapLimitMB?: number; nodeFlags?: string[] };
        t.same(starting.nodeFlags, NODE_FLAGS, 'its start line names its own flags');
        t.equal(starting.heapLimitMB, intended, `its start line reports the heap limit of both sets of flags: ${intended} MB`);
      } finally {
        await agent.stop();
        cleanup(agent);
      }
    });
  }

  t.test(`linux-${arch} executable: the README's exchange on its embedded defaults (mosquitto_pub/mosquitto_sub)`, async (t) => {
    const started = Date.now();
    let agent: AgentProcess | undefined;
    let sub: ReturnType<typeof mosquittoSub> | undefined;
    try {
      agent = await startAgent({ command, embeddedDefaults: true, readyTimeoutMs: 60_000 });
      t.comment(`${arch}: spawn to ready on the embedded defaults in ${Date.now() - started} ms`);
      const starting = JSON.parse(await agent.waitLog(/"msg":"starting edgewarden"/)) as { config?: string; node?: string };
      t.equal(starting.config, '(embedded defaults)', 'it runs on its embedded defaults');
      t.equal(starting.node, process.version, `on the embedded Node ${process.version}`);
      const mqtt = ['-h', '127.0.0.1', '-p', String(agent.port), '-q', '1'];
      sub = mosquittoSub([...mqtt, '-i', 'oven-1', '-u', 'oven-1', '-P', 'oven-1-token', '-t', 'things/oven-1/commands/#', '-v', '-d']);
      await sub.ready;
      t.pass('mosquitto_sub (oven-1) is subscribed to its commands');
      const carl = await mosquittoPub([...mqtt, '-i', 'carl', '-u', 'viewer-carl', '-P', 'carl-pass', '-t', 'things/oven-1/commands/reboot', '-m', 'from carl']);
      t.equal(carl.code, 0, 'mosquitto_pub as viewer-carl: acknowledged (and dropped)', { stderr: carl.stderr });
      const anna = await mosquittoPub([...mqtt, '-i', 'anna', '-u', 'tech-anna', '-P', 'anna-pass', '-t', 'things/oven-1/commands/reboot', '-m', 'from anna']);
      t.equal(anna.code, 0, 'mosquitto_pub as tech-anna', { stderr: anna.stderr });
      const received = () => sub!.lines.filter((l) => l.startsWith('things/oven-1/'));
      t.ok(await until(() => received().length > 0, 20_000), 'the device receives a command');
      await sleep(300);
      t.same(received(), ['things/oven-1/commands/reboot from anna'], 'only tech-anna\'s command reaches oven-1');

      const denied = JSON.parse(await agent.waitLog(/"msg":"denied"/, 10_000)) as Record<string, unknown>;
      t.match(denied, { principal: 'viewer-carl', action: 'EXECUTE_THING_COMMAND', topic: 'things/oven-1/commands/reboot', reason: 'NOT_GRANTED' }, 'the agent logs the denial and its reason');
      let record: Record<string, unknown> | undefined;
      for (let i = 0; i < 40 && !record; i++) {
        const tail = exec(['audit', 'tail', '--json', '-n', '50', '--state-dir', agent.stateDir]);
        const line = tail.code === 0 ? tail.stdout.split('\n').find((l) => l.includes('"viewer-carl"')) : undefined;
        if (line) record = JSON.parse(line) as Record<string, unknown>;
        else await sleep(250);
      }
      t.match(record, { decision: 'deny', principal: 'viewer-carl', action: 'EXECUTE_THING_COMMAND', thing: 'oven-1', reason: 'NOT_GRANTED' }, '`edgewarden audit tail` shows the denial with its reason');
    } finally {
      await sub?.stop();
      if (agent) {
        const code = await agent.stop();
        t.equal(code, 0, 'SIGTERM stops the agent with exit 0');
        cleanup(agent);
      }
      t.comment(`${arch}: the embedded-defaults exchange took ${((Date.now() - started) / 1000).toFixed(1)} s`);
    }
  });
}
