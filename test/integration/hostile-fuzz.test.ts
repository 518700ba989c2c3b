// Packet-level fuzzing of the real agent over raw sockets: thousands of random and mutated MQTT
// packets (valid ones made with mqtt-packet, then bytes flipped, truncated, duplicated, spliced,
// lengths changed; and pure random bytes) on many short connections, some after a valid CONNECT of
// a real principal so the fuzz reaches the authenticated handlers. Half the connections speak MQTT 5,
// with properties on every packet that has them (user properties, topic aliases, subscription
// identifiers and options, response topics, reason codes...), so that the fuzz reaches the property
// parser and what aedes and the hooks do with properties. Afterwards the agent process is alive, its
// memory bounded, and a well-behaved MQTT.js client is served.
//
// Deterministic byte streams: the PRNG seed is in the test name; FUZZ_SEED=<n> replays one.
import t from 'tap';
import { createConnection, type Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import mqttPacket from 'mqtt-packet';
import { cleanup, connect, endAll, sleep, startAgent, subscribe, until, type AgentProcess } from '../helpers/agent.js';
import { remainingLength } from '../helpers/mqtt-bytes.js';

const SEED = process.env.FUZZ_SEED !== undefined ? Number(process.env.FUZZ_SEED) >>> 0 : 0x5eed_f022;
const DURATION_MS = Number(process.env.FUZZ_MS ?? 15_000);
const WORKERS = 8;
const MAX_PACKET = 16 * 1024;
const RSS_LIMIT_MB = 400;

let agent: AgentProcess;
t.before(async () => {
  agent = await startAgent({
    config: {
      limits: { maxConnections: 400, maxPacketBytes: MAX_PACKET, connectTimeoutMs: 800, maxSubscriptionsPerClient: 64, maxInflightPerClient: 16, keepaliveLimitSeconds: 60 },
      rateLimits: { commandsPerMinute: 0, firmwareUpdatesPerHour: 0 },
      log: { level: 'info' },
    },
  });
});
t.teardown(async () => {
  await agent?.stop();
  if (agent) cleanup(agent);
});

/** mulberry32 */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  return { next, int, pick: <T>(xs: readonly T[]): T => xs[int(xs.length)]!, chance: (p: number) => next() < p };
}
type Rng = ReturnType<typeof prng>;

const gen = (p: Record<string, unknown>, v: 4 | 5 = 4): Buffer => mqttPacket.generate(p as unknown as mqttPacket.Packet, { protocolVersion: v });

/** Random MQTT 5 properties of a PUBLISH (or a will), sometimes none. */
function publishProps(r: Rng): Record<string, unknown> | undefined {
  if (r.chance(0.2)) return undefined;
  const p: Record<string, unknown> = {};
  if (r.chance(0.4)) p['userProperties'] = { [r.pick(['a', 'principal', '', 'k'])]: r.chance(0.3) ? ['x', 'y'] : r.pick(['1', 'oven-1', '']) };
  if (r.chance(0.3)) p['topicAlias'] = r.pick([1, 2, 16, 17, 65535]);
  if (r.chance(0.3)) p['responseTopic'] = r.pick(TOPICS);
  if (r.chance(0.3)) p['correlationData'] = Buffer.from([r.int(256), r.int(256)]);
  if (r.chance(0.2)) p['payloadFormatIndicator'] = r.chance(0.5);
  if (r.chance(0.2)) p['contentType'] = r.pick(['text/plain', '', 'application/json']);
  if (r.chance(0.2)) p['messageExpiryInterval'] = r.pick([0, 1, 60, 4294967295]);
  return p;
}

const PRINCIPALS: [string, string][] = [
  ['oven-1', 'oven-1-token'],
  ['mixer-1', 'mixer-1-token'],
  ['chiller-1', 'chiller-1-token'],
  ['oven-2', 'oven-2-token'], // refused: not served by this gateway
  ['oven-1', 'wrong-token'],
  ['nobody', 'x'],
];
const TOPICS = [
  'things/oven-1/telemetry/temp',
  'things/mixer-1/telemetry/speed',
  'things/oven-1/commands/start',
  'things/mixer-1/parameters/speed/set',
  'things/oven-1/firmware/update',
  'things/oven-1/alerts/a1/ack',
  'things/chiller-1/cloud-status',
  'bulk/restart',
  '$SYS/x',
  'a/b/c',
  'things//telemetry',
  '/',
];
const FILTERS = [...TOPICS, '#', '+', 'things/+/telemetry/#', 'things/oven-1/commands/#', '$SYS/#', '+/+/+/+', 'things/#/x', 'a/+/#'];

function validConnect(r: Rng, principal = r.pick(PRINCIPALS), v: 4 | 5 = 4): Buffer {
  const [username, password] = principal;
  const anonymous = r.chance(0.05);
  const clientId = r.chance(0.1) ? '' : `${username}-fz-${r.int(1e9)}`;
  const will = r.chance(0.2) ? { topic: r.pick(TOPICS), payload: Buffer.from('will'), qos: r.int(3), retain: r.chance(0.3) } : undefined;
  if (will && v === 5 && r.chance(0.6)) Object.assign(will, { properties: { ...publishProps(r), ...(r.chance(0.5) ? { willDelayInterval: r.pick([0, 1, 3]) } : {}) } });
  return gen({
    cmd: 'connect',
    protocolId: r.chance(0.05) ? 'MQIsdp' : 'MQTT',
    protocolVersion: v === 5 ? 5 : clientId !== '' && r.chance(0.05) ? 3 : 4, // 3.1 needs a client id
    clean: clientId === '' || r.chance(0.85), // mqtt-packet will not make an empty id with CleanSession=0
    clientId,
    keepalive: r.pick([0, 1, 5, 30, 600]),
    ...(anonymous ? {} : { username, password: Buffer.from(password) }),
    ...(will ? { will } : {}),
    ...(v === 5 && r.chance(0.7)
      ? {
          properties: {
            ...(r.chance(0.5) ? { sessionExpiryInterval: r.pick([0, 1, 60, 4294967295]) } : {}),
            ...(r.chance(0.3) ? { receiveMaximum: r.pick([1, 10, 65535]) } : {}),
            ...(r.chance(0.3) ? { maximumPacketSize: r.pick([20, 100, 65536]) } : {}),
            ...(r.chance(0.3) ? { topicAliasMaximum: r.pick([0, 1, 10]) } : {}),
            ...(r.chance(0.2) ? { requestResponseInformation: r.chance(0.5), requestProblemInformation: r.chance(0.5) } : {}),
            ...(r.chance(0.3) ? { userProperties: { a: 'b' } } : {}),
          },
        }
      : {}),
  }, v);
}

function validPacket(r: Rng, v: 4 | 5 = 4): Buffer {
  const messageId = 1 + r.int(65535);
  const v5 = v === 5;
  const reason = () => (v5 && r.chance(0.5) ? { reasonCode: r.pick([0, 0x10, 0x80, 0x87, 0x92]), ...(r.chance(0.3) ? { properties: { reasonString: 'fz', userProperties: { k: 'v' } } } : {}) } : {});
  switch (r.int(10)) {
    case 0:
    case 1:
      return gen({
        cmd: 'subscribe',
        messageId,
        subscriptions: Array.from({ length: 1 + r.int(4) }, () => ({ topic: r.pick(FILTERS), qos: r.int(3), ...(v5 ? { nl: r.chance(0.3), rap: r.chance(0.3), rh: r.int(3) } : {}) })),
        ...(v5 && r.chance(0.5) ? { properties: { ...(r.chance(0.6) ? { subscriptionIdentifier: r.pick([1, 7, 268435455]) } : {}), ...(r.chance(0.4) ? { userProperties: { s: 'x' } } : {}) } } : {}),
      }, v);
    case 2:
      return gen({ cmd: 'unsubscribe', messageId, unsubscriptions: Array.from({ length: 1 + r.int(3) }, () => r.pick(FILTERS)), ...(v5 && r.chance(0.3) ? { properties: { userProperties: { u: 'x' } } } : {}) }, v);
    case 3:
    case 4:
    case 5: {
      const qos = r.int(3);
      const size = r.pick([0, 1, 16, 300, 4000]);
      const properties = v5 ? publishProps(r) : undefined;
      // An alias alone (empty topic) now and then: it resolves to whatever this connection set, or is unknown.
      const topic = v5 && properties?.['topicAlias'] !== undefined && r.chance(0.4) ? '' : r.pick(TOPICS);
      return gen({ cmd: 'publish', topic, payload: Buffer.alloc(size, r.int(256)), qos, retain: r.chance(0.1), dup: r.chance(0.1), ...(qos > 0 ? { messageId } : {}), ...(properties ? { properties } : {}) }, v);
    }
    case 6:
      return gen({ cmd: r.pick(['puback', 'pubrec', 'pubrel', 'pubcomp']), messageId, ...reason() }, v);
    case 7:
      return v5 && r.chance(0.3) ? gen({ cmd: 'auth', reasonCode: r.pick([0, 0x18, 0x19]), properties: { authenticationMethod: 'x' } }, v) : gen({ cmd: 'pingreq' }, v);
    case 8:
      return validConnect(r, r.pick(PRINCIPALS), v);
    default:
      return r.chance(0.3) ? gen({ cmd: 'disconnect', ...(v5 && r.chance(0.5) ? { reasonCode: r.pick([0, 4, 0x80]), properties: { ...(r.chance(0.5) ? { sessionExpiryInterval: r.pick([0, 10]) } : {}) } } : {}) }, v) : gen({ cmd: 'pingreq' }, v);
  }
}


/** Header length of a well-formed packet (1 + remaining-length bytes). */
function headerLength(p: Buffer): number {
  let i = 1;
  while (i < p.length && i < 5 && p[i]! & 0x80) i++;
  return Math.min(p.length, i + 1);
}

function mutate(r: Rng, p: Buffer, other: Buffer): Buffer {
  const b = Buffer.from(p);
  switch (r.int(10)) {
    case 0: // flip bits in a few bytes
      for (let k = 0; k < 1 + r.int(4); k++) {
        const i = r.int(b.length);
        if (i < b.length) b[i] = b[i]! ^ (1 << r.int(8));
      }
      return b;
    case 1: // set bytes to boundary values
      for (let k = 0; k < 1 + r.int(3); k++) if (b.length) b[r.int(b.length)] = r.pick([0x00, 0xff, 0x7f, 0x80, 0x01]);
      return b;
    case 2: // truncate
      return b.subarray(0, r.int(b.length));
    case 3: // duplicate
      return Buffer.concat([b, b]);
    case 4: // splice with another packet
      return Buffer.concat([b.subarray(0, r.int(b.length + 1)), other.subarray(r.int(other.length + 1))]);
    case 5: {
      // change the remaining length: nearby, random, huge, 5 bytes, non-minimal
      const body = b.subarray(headerLength(b));
      const len = r.pick([body.length + 1, Math.max(0, body.length - 1), r.int(200), r.int(MAX_PACKET * 2), 268_435_455]);
      const lenBytes = r.chance(0.1) ? [0x80, 0x80, 0x80, 0x80, 0x01] : r.chance(0.1) ? [...remainingLength(len).slice(0, -1).map((x) => x | 0x80), 0x80, 0x00] : remainingLength(len);
      return Buffer.concat([Buffer.from([b[0] ?? 0x30, ...lenBytes]), body]);
    }
    case 6: // change the packet type or flags
      if (b.length) b[0] = r.chance(0.5) ? (r.int(16) << 4) | (b[0]! & 0x0f) : (b[0]! & 0xf0) | r.int(16);
      return b;
    case 7: {
      // insert random bytes
      const at = r.int(b.length + 1);
      return Buffer.concat([b.subarray(0, at), randomBytes(r, 1 + r.int(8)), b.subarray(at)]);
    }
    case 8: // string length fields: make a 2-byte length huge
      if (b.length > 4) {
        const at = headerLength(b) + r.int(Math.max(1, b.length - headerLength(b) - 1));
        b[at] = 0xff;
        if (at + 1 < b.length) b[at + 1] = 0xff;
      }
      return b;
    default: // several at once
      return mutate(r, mutate(r, b, other), other);
  }
}

function randomBytes(r: Rng, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = r.int(256);
  return b;
}

interface Stats {
  connections: number;
  packets: number;
  bytes: number;
  connacksAccepted: number;
  /** MQTT 5 connections, and those of them accepted. */
  v5: number;
  connacksAcceptedV5: number;
  responses: Record<string, number>;
  closedByAgent: number;
  generatorErrors: string[];
}

/** One short connection: maybe a valid CONNECT, then a burst of fuzz, then close (or wait for the agent to). */
function oneConnection(r: Rng, port: number, stats: Stats): Promise<void> {
  return new Promise((resolve) => {
    const socket: Socket = createConnection(port, '127.0.0.1');
    stats.connections++;
    const v: 4 | 5 = r.chance(0.5) ? 5 : 4;
    stats.v5 += v === 5 ? 1 : 0;
    const parser = mqttPacket.parser({ protocolVersion: v });
    let weClosed = false;
    parser.on('packet', (p) => {
      stats.responses[p.cmd] = (stats.responses[p.cmd] ?? 0) + 1;
      if (p.cmd === 'connack' && ((p as { returnCode?: number; reasonCode?: number }).returnCode ?? (p as { reasonCode?: number }).reasonCode ?? 0) === 0) {
        stats.connacksAccepted++;
        if (v === 5) stats.connacksAcceptedV5++;
      }
    });
    parser.on('error', () => undefined);
    socket.on('data', (d) => parser.parse(d));
    socket.on('error', () => undefined);
    const timer = setTimeout(() => {
      weClosed = true;
      socket.destroy();
    }, 200 + r.int(600));
    socket.on('close', () => {
      clearTimeout(timer);
      if (!weClosed) stats.closedByAgent++;
      resolve();
    });
    socket.once('connect', () => {
      send().catch((err: Error) => {
        stats.generatorErrors.push(err.message);
        weClosed = true;
        socket.destroy();
      });
    });
    async function send(): Promise<void> {
      const packets: Buffer[] = [];
      const startValid = r.chance(0.6);
      if (startValid) packets.push(validConnect(r, r.chance(0.8) ? PRINCIPALS[r.int(3)] : undefined, v));
      const n = 1 + r.int(12);
      for (let k = 0; k < n; k++) {
        const roll = r.next();
        if (roll < 0.35) packets.push(validPacket(r, v));
        else if (roll < 0.9) packets.push(mutate(r, validPacket(r, v), validPacket(r, v)));
        else packets.push(randomBytes(r, 1 + r.int(r.chance(0.9) ? 64 : 4096)));
      }
      stats.packets += packets.length;
      const stream = Buffer.concat(packets);
      stats.bytes += stream.length;
      // Write in one go, or in random pieces with small pauses (after the CONNECT, wait for CONNACK sometimes).
      if (r.chance(0.4)) socket.write(stream);
      else {
        let pos = 0;
        while (pos < stream.length && !socket.destroyed) {
          const len = 1 + r.int(Math.min(stream.length - pos, r.chance(0.5) ? 8 : 512));
          socket.write(stream.subarray(pos, pos + len));
          pos += len;
          if (r.chance(0.2)) await sleep(r.int(15));
        }
      }
      if (r.chance(0.3)) socket.end();
    }
  });
}

const alive = (a: AgentProcess) => a.child.exitCode === null && a.child.signalCode === null;
const rssMb = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;

t.test(`packet-level fuzz, seed ${SEED} (FUZZ_SEED=${SEED} replays)`, async (t) => {
  const stats: Stats = { connections: 0, packets: 0, bytes: 0, connacksAccepted: 0, v5: 0, connacksAcceptedV5: 0, responses: {}, closedByAgent: 0, generatorErrors: [] };
  const pid = agent.child.pid!;
  const rssBefore = rssMb(pid);
  let rssPeak = rssBefore;
  const end = Date.now() + DURATION_MS;
  const monitor = setInterval(() => {
    if (alive(agent)) rssPeak = Math.max(rssPeak, rssMb(pid));
  }, 250);
  try {
    await Promise.all(
      Array.from({ length: WORKERS }, async (_, w) => {
        const r = prng((SEED + Math.imul(w + 1, 0x9e3779b9)) >>> 0);
        while (Date.now() < end && alive(agent)) await oneConnection(r, agent.port, stats);
      }),
    );
  } finally {
    clearInterval(monitor);
  }
  t.comment(`fuzz: ${stats.connections} connections (${stats.v5} MQTT 5), ${stats.packets} packets, ${Math.round(stats.bytes / 1024)} KiB; ${stats.connacksAccepted} sessions accepted; ${stats.closedByAgent} connections closed by the agent; responses ${JSON.stringify(stats.responses)}`);
  t.same(stats.generatorErrors.slice(0, 5), [], 'the fuzzer made all its packets');
  t.ok(alive(agent), 'the agent process is alive');
  t.ok(stats.packets >= 3000, `${stats.packets} fuzz packets sent`);
  t.ok(stats.connacksAccepted >= 200, `${stats.connacksAccepted} fuzz sessions got past CONNECT (the fuzz reached the authenticated handlers)`);
  t.ok(stats.connacksAcceptedV5 >= 100, `${stats.connacksAcceptedV5} of them MQTT 5 (of ${stats.v5} MQTT 5 connections): the fuzz reached the property handling`);
  t.ok((stats.responses.suback ?? 0) > 0 && (stats.responses.puback ?? 0) + (stats.responses.pubrec ?? 0) > 0, 'and got SUBACKs and PUBACKs/PUBRECs');
  t.ok(stats.closedByAgent > 100, `the agent closed ${stats.closedByAgent} connections on bad input`);
  const packetLimitHits = agent.logs().filter((l) => l.includes('closing connection: packet limit')).length;
  t.ok(packetLimitHits > 0, `${packetLimitHits} connections closed by the packet-size guard`);
  t.ok(rssPeak < RSS_LIMIT_MB, `agent RSS ${Math.round(rssBefore)} MB before, at most ${Math.round(rssPeak)} MB during the run (bound ${RSS_LIMIT_MB} MB)`);

  // Every fuzz connection ends: nothing is left connected.
  await sleep(1000);
  t.ok(alive(agent), 'still alive after the fuzz connections are gone');
  t.ok(rssMb(pid) < RSS_LIMIT_MB, `RSS ${Math.round(rssMb(pid))} MB afterwards`);

  const oven = await connect(agent.port, { clientId: 'oven-1-after-fuzz', username: 'oven-1', password: 'oven-1-token' });
  const anna = await connect(agent.port, { clientId: 'anna-after-fuzz', username: 'tech-anna', password: 'anna-pass' });
  t.equal(await subscribe(oven, 'things/oven-1/commands/#'), 1, 'oven-1 subscribes to its commands');
  await anna.client.publishAsync('things/oven-1/commands/start', 'after-fuzz', { qos: 1 });
  t.ok(await until(() => oven.messages.some((m) => m.payload === 'after-fuzz'), 15_000), 'tech-anna commands oven-1, which receives it');
  await endAll(oven, anna);
  t.notOk(
    agent.logs().some((l) => /RangeError|TypeError|uncaught|unhandled|FATAL/i.test(l)),
    'no crash-like errors in its log',
  );
});
