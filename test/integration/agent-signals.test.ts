// Operating the agent with signals: SIGHUP reloads the configuration (a bad one changes nothing),
// SIGTERM drains and stops within seconds without losing queued messages; under systemd (a stand-in
// systemd-notify) it reports READY=1, pings the watchdog and reports STOPPING=1.
import t from 'tap';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { controlRequest } from '../../src/agent/control.js';
import { cleanup, connackCode, connect, endAll, NODE_FLAGS, startAgent, subscribe, until } from '../helpers/agent.js';
import { BIN } from '../helpers/cli.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { freePort } from '../helpers/mosquitto.js';

t.test('SIGHUP reloads topic rules and the log level without dropping anyone; a bad file changes nothing', async (t) => {
  const agent = await startAgent({ config: { log: { level: 'info' } } });
  t.teardown(async () => {
    await agent.stop();
    cleanup(agent);
  });
  const file = join(agent.stateDir, 'test-config.yaml');
  const original = parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  const oven = await connect(agent.port, { clientId: 'oven-1', username: 'oven-1', password: 'oven-1-token' });
  t.equal(await connackCode(agent.port, { clientId: 'anon-1' }), 5, 'before: anonymous clients are refused');

  writeFileSync(file, stringify({ ...original, log: { level: 'debug' }, topics: { rules: [{ pattern: 'apps/#', who: 'anonymous', access: 'readwrite' }] }, listeners: { tcp: { enabled: true, host: '127.0.0.2', port: 0 } } }));
  agent.child.kill('SIGHUP');
  const line = await agent.waitLog(/configuration reloaded/);
  t.match(line, /"applied":\[[^\]]*"log.level"[^\]]*"topics"/, 'the log level and the rules are applied');
  t.match(line, /"needsRestart":\["listeners"\]/, 'a listener change waits for a restart');
  const anon = await connect(agent.port, { clientId: 'anon-2' });
  t.equal(await subscribe(anon, 'apps/status'), 1, 'after: the new rule lets anonymous clients in');
  await anon.client.publishAsync('apps/status', 'up', { qos: 1 });
  t.ok(await until(() => anon.messages.some((m) => m.payload === 'up')), 'and publish on it');
  t.ok(oven.client.connected, 'nobody was disconnected');

  writeFileSync(file, stringify({ ...original, limits: { maxConnections: 'lots' }, topcs: {} }));
  agent.child.kill('SIGHUP');
  const bad = await agent.waitLog(/configuration not reloaded/);
  t.match(bad, /limits.maxConnections: must be integer/, 'the bad key is named');
  t.match(bad, /topcs: unknown key; did you mean topics\?/);
  t.equal(await connackCode(agent.port, { clientId: 'anon-3' }), 0, 'the running configuration stays in force');
  t.equal(agent.child.exitCode, null, 'the agent keeps running');
  await endAll(oven, anon);
});

t.test('SIGHUP: a new cloud URL replaces the link (its module loaded at start, as configured); enabling the cloud link or the metrics waits for a restart', async (t) => {
  const status = async (stateDir: string) => {
    const r = await controlRequest(stateDir, { cmd: 'status' }, 5000);
    return r.ok ? (r.status as { cloud: { link: Record<string, unknown> } | null; listeners: { metrics?: number } }) : null;
  };
  const linked = await startAgent({ config: { log: { level: 'info' }, cloud: { enabled: true, url: `mqtt://127.0.0.1:${await freePort()}`, reconnectMinMs: 50, reconnectMaxMs: 200 } } });
  const plain = await startAgent({ config: { log: { level: 'info' } } });
  t.teardown(async () => {
    await Promise.all([linked.stop(), plain.stop()]);
    cleanup(linked);
    cleanup(plain);
  });
  const linkedFile = join(linked.stateDir, 'test-config.yaml');
  const linkedConfig = parse(readFileSync(linkedFile, 'utf8')) as { cloud: Record<string, unknown> };
  writeFileSync(linkedFile, stringify({ ...linkedConfig, cloud: { ...linkedConfig.cloud, url: `mqtt://127.0.0.1:${await freePort()}` } }));
  linked.child.kill('SIGHUP');
  t.match(await linked.waitLog(/configuration reloaded/), /"applied":\[[^\]]*"cloud"/, 'the new cloud URL is applied');
  t.ok((await status(linked.stateDir))?.cloud, 'a cloud link runs after the reload');
  t.equal(linked.child.exitCode, null, 'the agent keeps running');

  t.equal((await status(plain.stateDir))?.cloud, null, 'before: no cloud link');
  const plainFile = join(plain.stateDir, 'test-config.yaml');
  const plainConfig = parse(readFileSync(plainFile, 'utf8')) as Record<string, unknown>;
  writeFileSync(plainFile, stringify({ ...plainConfig, cloud: { enabled: true, url: `mqtt://127.0.0.1:${await freePort()}` }, metrics: { enabled: true, port: 0 } }));
  plain.child.kill('SIGHUP');
  const line = await plain.waitLog(/configuration reloaded/);
  t.match(line, /"needsRestart":\[[^\]]*"metrics"/, 'enabling the metrics waits for a restart');
  t.match(line, /"needsRestart":\[[^\]]*"cloud.enabled"/, 'enabling the cloud link waits for a restart');
  const after = await status(plain.stateDir);
  t.equal(after?.cloud, null, 'after: still no cloud link');
  t.equal(after?.listeners.metrics, undefined, 'and no metrics endpoint');
  t.equal(plain.child.exitCode, null, 'the agent keeps running');
});

t.test('SIGTERM stops within seconds and keeps the queue', async (t) => {
  const agent = await startAgent({ config: { cloud: { enabled: true, url: `mqtt://127.0.0.1:${await freePort()}`, reconnectMinMs: 50, reconnectMaxMs: 200 } } });
  t.teardown(() => cleanup(agent));
  const oven = await connect(agent.port, { clientId: 'oven-1', username: 'oven-1', password: 'oven-1-token' });
  for (let i = 0; i < 50; i++) await oven.client.publishAsync('things/oven-1/telemetry/n', String(i), { qos: 2 });
  const depth = async () => {
    const r = await controlRequest(agent.stateDir, { cmd: 'status' });
    return r.ok ? (r.status as { cloud: { queue: { depth: number } } }).cloud.queue.depth : -1;
  };
  t.equal(await depth(), 50, 'QoS 2: each publish was on disk before its PUBREC');
  // How fast is the product's promise, not this test's: on a loaded machine it is not a figure to
  // assert. A hang is caught by the test's own timeout.
  const started = Date.now();
  const code = await agent.stop();
  t.comment(`stopped in ${Date.now() - started} ms`);
  t.equal(code, 0, 'a clean exit');
  t.ok(agent.logs().some((l) => /"msg":"stopped"/.test(l)));
  await endAll(oven);
  const again = await startAgent({ stateDir: agent.stateDir, bootstrap: null, config: { cloud: { enabled: true, url: `mqtt://127.0.0.1:${await freePort()}` } } });
  t.teardown(() => again.stop());
  const r = await controlRequest(again.stateDir, { cmd: 'status' });
  t.equal(r.ok && (r.status as { cloud: { queue: { depth: number } } }).cloud.queue.depth, 50, 'the 50 queued messages are still there after the restart');
});

t.test('an acknowledged QoS 1 message bound for the cloud survives a SIGKILL in the middle of a flood', async (t) => {
  const agent = await startAgent({ config: { cloud: { enabled: true, url: `mqtt://127.0.0.1:${await freePort()}`, reconnectMinMs: 50, reconnectMaxMs: 200 } } });
  t.teardown(() => cleanup(agent));
  const ids = ['oven-1', 'mixer-1', 'chiller-1', 'pasteurizer-1'];
  const ovens = await Promise.all(ids.map((id) => connect(agent.port, { clientId: id, username: id, password: `${id}-token` })));
  // Four devices publish QoS 1 telemetry, 64 unacknowledged each (more than the message router
  // delivers at once); the agent is killed (SIGKILL) the moment the 2,000th PUBACK arrives.
  let acked = 0;
  let killedAt = -1;
  const killed = new Promise<void>((resolve) => {
    const workers = ovens.map((o, d) =>
      Array.from({ length: 64 }, async () => {
        for (let i = 0; killedAt < 0 && i < 10_000; i++) {
          try {
            await o.client.publishAsync(`things/${ids[d]}/telemetry/n`, String(i), { qos: 1 });
          } catch {
            return;
          }
          if (killedAt >= 0) return;
          acked++;
          if (acked === 2000) {
            killedAt = acked;
            agent.child.kill('SIGKILL');
            resolve();
          }
        }
      }),
    );
    void Promise.all(workers.flat()).then(() => resolve());
  });
  await killed;
  t.equal(killedAt, 2000, 'killed at the 2,000th PUBACK');
  await new Promise<void>((resolve) => (agent.child.exitCode !== null || agent.child.signalCode !== null ? resolve() : agent.child.once('exit', () => resolve())));
  await endAll(...ovens);
  const again = await startAgent({ stateDir: agent.stateDir, bootstrap: null, config: { cloud: { enabled: true, url: `mqtt://127.0.0.1:${await freePort()}` } } });
  t.teardown(() => again.stop());
  const r = await controlRequest(again.stateDir, { cmd: 'status' });
  const depth = r.ok ? (r.status as { cloud: { queue: { depth: number } } }).cloud.queue.depth : -1;
  t.ok(depth >= killedAt, `${depth} messages queued after the SIGKILL, for ${killedAt} acknowledged`);
});

t.test('under systemd: READY=1 once serving, WATCHDOG=1 every WatchdogSec/2, STOPPING=1 on SIGTERM', async (t) => {
  // A stand-in systemd-notify on PATH appends what it is given, one notification per line.
  const bin = mkdtempSync(join(tmpdir(), 'ew-notify-'));
  t.teardown(() => rmSync(bin, { recursive: true, force: true }));
  const record = join(bin, 'record');
  writeFileSync(join(bin, 'systemd-notify'), `#!/bin/sh\necho "$NOTIFY_SOCKET $*" >> ${record}\n`);
  chmodSync(join(bin, 'systemd-notify'), 0o755);
  const notes = () => (existsSync(record) ? readFileSync(record, 'utf8').trim().split('\n') : []);
  // WatchdogSec=0.6s: a ping every 300 ms.
  const agent = await startAgent({
    env: { NOTIFY_SOCKET: '/run/systemd/notify', WATCHDOG_USEC: '600000', PATH: `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}` },
  });
  t.teardown(() => cleanup(agent));
  t.ok(await until(() => notes().filter((l) => / WATCHDOG=1$/.test(l)).length >= 4, 10_000), 'the watchdog is pinged again and again');
  t.equal(notes()[0], '/run/systemd/notify READY=1 STATUS=serving MQTT', 'READY=1 first, to the socket systemd gave');
  t.match(await agent.waitLog(/systemd watchdog: pinging/), /"intervalMs":300/, 'every WatchdogSec/2');
  await agent.stop();
  t.ok(notes().includes('/run/systemd/notify STOPPING=1'), 'STOPPING=1 when it drains');
  const after = notes().length;
  await new Promise((r) => setTimeout(r, 700));
  t.equal(notes().length, after, 'no pings once stopped');
});

// A SIGTERM at any moment of start-up or right at `ready` stops the agent: the signal listeners are
// installed once, before the agent starts, and never swapped (a swap could drop a signal that
// arrived in between; under load one sent right after `ready` was lost and the agent ran on).
t.test('SIGTERM at start-up or the moment ready is logged stops the agent, every time', async (t) => {
  const exitOf = (child: ChildProcess) => new Promise<number | null>((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.once('exit', (code) => resolve(code))));
  const within = <T>(p: Promise<T>, ms: number) => Promise.race([p, new Promise<'hung'>((r) => setTimeout(() => r('hung'), ms).unref())]);
  for (let i = 0; i < 6; i++) {
    // At ready: the moment the helper sees the line.
    const agent = await startAgent({ embeddedDefaults: true, readyTimeoutMs: 30_000 });
    t.teardown(() => cleanup(agent));
    agent.child.kill('SIGTERM');
    const code = await within(exitOf(agent.child), 20_000);
    if (code === 'hung') await agent.kill();
    t.equal(code, 0, `run ${i + 1}: a SIGTERM at ready stops it (exit 0)`);

    // During start-up: at its first log line.
    const stateDir = mkdtempSync(join(tmpdir(), 'ew-sig-'));
    t.teardown(() => rmSync(stateDir, { recursive: true, force: true }));
    const child = spawn(process.execPath, [...NODE_FLAGS, BIN, 'run', '--state-dir', stateDir, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.once('data', () => child.kill('SIGTERM'));
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const early = await within(exitOf(child), 20_000);
    if (early === 'hung') child.kill('SIGKILL');
    t.equal(early, 0, `run ${i + 1}: a SIGTERM during start-up stops it once started (exit 0)`);
    t.match(out, /stop requested during start-up|"msg":"stopped"/, 'and it says so');
  }
});
