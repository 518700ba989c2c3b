// "Flood, then vanish": several processes each open a few raw MQTT connections, some subscribe to
// the flooded topics and stop reading (slow subscribers holding the router's delivery slots), the
// others flood QoS 0 publishes as fast as their sockets take them; then every process is SIGKILLed
// mid-flood, and again, for a few rounds. Bare aedes 1.2.0 dies of this with "RangeError: Maximum
// call stack size exceeded" in mqemitter/qlobber (the first test shows it, so this file can fail);
// the agent must survive it, with enforcement on and with config/conformance.yaml.
import t, { type Test } from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import mqttPacket from 'mqtt-packet';
import { ROOT } from '../helpers/policy.js';
import { cleanup, connect, endAll, sleep, startAgent, subscribe, until, type AgentProcess } from '../helpers/agent.js';

const ROUNDS = 3;
const WORKERS = 4;
const FLOOD_MS = 1200;

const work = mkdtempSync(join(tmpdir(), 'ew-flood-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

const children = new Set<ChildProcess>();
t.teardown(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

// A flood worker, dependency-free: PLAN (JSON in the environment) lists its connections, each with
// CONNECT bytes, optionally SUBSCRIBE bytes (then it stops reading), optionally PUBLISH bytes to
// repeat for ever. Prints "flooding" once every connection is in place.
const WORKER = join(work, 'flood-worker.cjs');
writeFileSync(
  WORKER,
  `'use strict';
const net = require('net');
const plan = JSON.parse(process.env.PLAN);
let ready = 0;
for (const c of plan.conns) {
  const s = net.connect(plan.port, '127.0.0.1');
  s.on('error', () => {});
  let got = Buffer.alloc(0);
  let state = 'connecting';
  s.write(Buffer.from(c.connect, 'base64'));
  s.on('data', (d) => {
    if (state === 'running') return;
    got = Buffer.concat([got, d]);
    if (state === 'connecting' && got.length >= 4) {
      if (got[0] !== 0x20 || got[3] !== 0) { console.log('refused ' + got.subarray(0, 4).toString('hex')); process.exit(3); }
      got = got.subarray(4);
      if (c.subscribe) { state = 'subscribing'; s.write(Buffer.from(c.subscribe, 'base64')); } else start();
    }
    if (state === 'subscribing' && got.length >= 5) {
      if (got[0] !== 0x90 || got[4] === 0x80) { console.log('subscription refused'); process.exit(3); }
      start();
    }
  });
  function start() {
    state = 'running';
    if (c.subscribe) s.pause(); // a slow subscriber: never reads again
    if (c.publish) {
      const parts = c.publish.map((p) => Buffer.from(p, 'base64'));
      const batch = Buffer.concat(Array.from({ length: 400 }, (_, i) => parts[i % parts.length]));
      const pump = () => { while (s.write(batch)); };
      s.on('drain', pump);
      setImmediate(pump);
    }
    if (++ready === plan.conns.length) console.log('flooding');
  }
}
`,
);

const gen = (p: Record<string, unknown>): string => mqttPacket.generate(p as unknown as mqttPacket.Packet, { protocolVersion: 4 }).toString('base64');
let idSeq = 0;
const connectPacket = (user?: [string, string]) =>
  gen({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: `${user?.[0] ?? 'anon'}-flood-${++idSeq}`, keepalive: 0, ...(user ? { username: user[0], password: Buffer.from(user[1]) } : {}) });
const subscribePacket = (filter: string) => gen({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: filter, qos: 0 }] });
const publishPacket = (topic: string, i: number) => gen({ cmd: 'publish', topic, payload: Buffer.from(`p${i}`), qos: 0, retain: false, dup: false });

interface Conn {
  connect: string;
  subscribe?: string;
  publish?: string[];
}

interface Load {
  /** The connections of worker w in round r. */
  conns(round: number, worker: number): Conn[];
}

/** Runs the rounds against `port`; stops early when `dead()` (the broker is gone). */
async function flood(port: number, load: Load, dead: () => boolean): Promise<{ rounds: number; refused: string[] }> {
  const refused: string[] = [];
  let rounds = 0;
  for (let round = 0; round < ROUNDS && !dead(); round++) {
    const workers: ChildProcess[] = [];
    const flooding: Promise<void>[] = [];
    for (let w = 0; w < WORKERS; w++) {
      const child = spawn(process.execPath, [WORKER], { env: { ...process.env, PLAN: JSON.stringify({ port, conns: load.conns(round, w) }) }, stdio: ['ignore', 'pipe', 'pipe'] });
      children.add(child);
      workers.push(child);
      flooding.push(
        new Promise((resolve) => {
          child.stdout!.on('data', (d: Buffer) => {
            const s = d.toString();
            if (s.includes('flooding')) resolve();
            if (/refused/.test(s)) refused.push(s.trim());
          });
          child.on('exit', () => resolve());
        }),
      );
    }
    await Promise.race([Promise.all(flooding), sleep(5000)]);
    await sleep(FLOOD_MS);
    const exits = workers.map((c) => new Promise((r) => (c.exitCode !== null || c.signalCode !== null ? r(null) : c.on('exit', r))));
    for (const c of workers) c.kill('SIGKILL'); // mid-flood: every connection vanishes at once
    await Promise.all(exits);
    for (const c of workers) children.delete(c);
    rounds++;
    await sleep(300);
  }
  return { rounds, refused };
}

const anonymousLoad: Load = {
  conns: () => [
    { connect: connectPacket(), subscribe: subscribePacket('flood/a') },
    { connect: connectPacket(), publish: [publishPacket('flood/a', 0), ...Array.from({ length: 9 }, (_, i) => publishPacket('flood/b', i))] },
    { connect: connectPacket(), publish: [publishPacket('flood/a', 0), publishPacket('flood/c', 1), publishPacket('flood/b', 2)] },
  ],
};

// With enforcement: devices publish their own telemetry (allowed; tech-anna reads oven-1 and
// mixer-1, not the dairy's chiller-1) and own alerts nobody reads, mixed with publishes they may
// not make (denied, dropped before routing); tech-anna and op-bob subscribe and stop reading.
const DEVICES: [string, string][] = [
  ['oven-1', 'oven-1-token'],
  ['mixer-1', 'mixer-1-token'],
  ['chiller-1', 'chiller-1-token'],
  ['pasteurizer-1', 'pasteurizer-1-token'],
];
const enforcedLoad: Load = {
  conns: (round, w) => {
    const d1 = DEVICES[(round + w) % DEVICES.length]!;
    const d2 = DEVICES[(round + w + 1) % DEVICES.length]!;
    const own = (d: [string, string]) => [
      publishPacket(`things/${d[0]}/telemetry/t`, 0),
      ...Array.from({ length: 6 }, (_, i) => publishPacket(`things/${d[0]}/alerts/a${i}/raised`, i)),
      publishPacket(`things/${d[0]}/telemetry/u`, 1),
      publishPacket('things/oven-2/telemetry/t', 2), // not its own: denied
    ];
    return [
      { connect: connectPacket(w % 2 ? ['tech-anna', 'anna-pass'] : ['op-bob', 'bob-pass']), subscribe: subscribePacket('things/+/telemetry/#') },
      { connect: connectPacket(d1), publish: own(d1) },
      { connect: connectPacket(d2), publish: own(d2) },
    ];
  },
};

const crashLines = (lines: readonly string[]) => lines.filter((l) => /RangeError|Maximum call stack|uncaught|unhandled/i.test(l));

t.test('control: this load kills bare aedes 1.2.0 (RangeError in mqemitter), so the tests below can fail', async (t) => {
  const script = join(work, 'bare-aedes.mjs');
  writeFileSync(
    script,
    `import { createServer } from 'node:net';
import { Aedes } from ${JSON.stringify(pathToFileURL(join(ROOT, 'node_modules', 'aedes', 'aedes.js')).href)};
const aedes = await Aedes.createBroker({});
const server = createServer(aedes.handle);
server.listen(0, '127.0.0.1', () => console.log('PORT ' + server.address().port));
`,
  );
  const bare = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(bare);
  let out = '';
  bare.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  bare.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((r) => bare.on('exit', () => r()));
  t.ok(await until(() => /PORT \d+/.test(out), 15_000), 'bare aedes listening');
  const port = Number(/PORT (\d+)/.exec(out)![1]);
  const dead = () => bare.exitCode !== null || bare.signalCode !== null;
  const r = await flood(port, anonymousLoad, dead);
  await Promise.race([exited, sleep(3000)]);
  t.ok(dead(), `bare aedes died (after ${r.rounds} round(s))`);
  t.match(out, /RangeError: Maximum call stack size exceeded/, 'of a stack overflow');
  t.match(out, /mqemitter|qlobber|fastparallel/, 'in the message router');
  if (!dead()) bare.kill('SIGKILL');
  await exited;
  children.delete(bare);
});

async function survives(t: Test, agent: AgentProcess, load: Load, check: () => Promise<boolean>) {
  const alive = () => agent.child.exitCode === null && agent.child.signalCode === null;
  const T0 = Date.now();
  const r = await flood(agent.port, load, () => !alive());
  t.comment(`flood ${Date.now() - T0} ms`);
  t.equal(r.rounds, ROUNDS, `${ROUNDS} rounds of ${WORKERS} processes flooding and vanishing`);
  t.same(r.refused, [], 'every flood connection and subscription was accepted');
  t.ok(alive(), 'the agent process is alive');
  t.same(crashLines(agent.logs()), [], 'no RangeError (or other crash) in its log');
  const T1 = Date.now();
  t.ok(await check(), 'it still serves a well-behaved client');
  t.comment(`check ${Date.now() - T1} ms`);
  t.ok(alive(), 'and is still alive');
}

t.test('the agent with enforcement survives the flood', async (t) => {
  const agent = await startAgent({ config: { log: { level: 'info' }, rateLimits: { commandsPerMinute: 0, firmwareUpdatesPerHour: 0 } } });
  t.teardown(async () => {
    const T2 = Date.now();
    await agent.stop();
    console.error(`stop ${Date.now() - T2} ms`);
    cleanup(agent);
  });
  await survives(t, agent, enforcedLoad, async () => {
    const oven = await connect(agent.port, { clientId: 'oven-1-after', username: 'oven-1', password: 'oven-1-token', connectTimeout: 10_000 });
    const anna = await connect(agent.port, { clientId: 'anna-after', username: 'tech-anna', password: 'anna-pass', connectTimeout: 10_000 });
    try {
      if ((await subscribe(oven, 'things/oven-1/commands/#')) !== 1) return false;
      await anna.client.publishAsync('things/oven-1/commands/start', 'after-flood', { qos: 1 });
      return await until(() => oven.messages.some((m) => m.payload === 'after-flood'), 10_000);
    } finally {
      await endAll(oven, anna);
    }
  });
  t.ok(agent.logs().some((l) => /"msg":"denied"/.test(l)), 'the denied publishes in the flood were seen (and logged, rate-limited)');
});

t.test('the agent with config/conformance.yaml survives the flood', async (t) => {
  const agent = await startAgent({ configFile: join(ROOT, 'config', 'conformance.yaml') });
  t.teardown(async () => {
    const T2 = Date.now();
    await agent.stop();
    console.error(`stop ${Date.now() - T2} ms`);
    cleanup(agent);
  });
  await survives(t, agent, anonymousLoad, async () => {
    const sub = await connect(agent.port, { clientId: 'conf-sub-after', connectTimeout: 10_000 });
    const pub = await connect(agent.port, { clientId: 'conf-pub-after', connectTimeout: 10_000 });
    try {
      if ((await subscribe(sub, 'flood/after')) !== 1) return false;
      await pub.client.publishAsync('flood/after', 'after-flood', { qos: 1 });
      return await until(() => sub.messages.some((m) => m.payload === 'after-flood'), 10_000);
    } finally {
      await endAll(sub, pub);
    }
  });
});
