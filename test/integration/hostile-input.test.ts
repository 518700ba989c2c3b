// Hostile input against the real agent (child process, small limits): a 256 MB remaining length,
// sockets that never send CONNECT, the connection limit, thousands of subscriptions, a flood of
// denied publishes, malformed packets. The agent never crashes, never buffers what it was not
// going to accept, logs each limit once per client (or once per listener), and after every case
// still serves a well-behaved client.
import t from 'tap';
import { createConnection, type Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import mqttPacket from 'mqtt-packet';
import { readAudit } from '../../src/audit/audit-log.js';
import { agentFor, cleanup, connect, connectBytes, endAll, sleep, startAgent, subscribe, until, type AgentProcess } from '../helpers/agent.js';
import { remainingLength } from '../helpers/mqtt-bytes.js';
import { RawMqtt } from '../helpers/raw-mqtt.js';

const LIMITS = {
  maxConnections: 200,
  maxPacketBytes: 4096,
  connectTimeoutMs: 1500,
  maxSubscriptionsPerClient: 50,
  maxInflightPerClient: 10,
};

let agent: AgentProcess;
t.before(async () => {
  agent = await startAgent({ config: { limits: LIMITS, rateLimits: { commandsPerMinute: 0, firmwareUpdatesPerHour: 0 } } });
});
t.teardown(async () => {
  await agent?.stop();
  if (agent) cleanup(agent);
});

// --- helpers ---------------------------------------------------------------------------------------

type Packet = mqttPacket.Packet & { returnCode?: number; granted?: number[]; messageId?: number };

interface Raw {
  readonly socket: Socket;
  readonly packets: Packet[];
  /** ms from open to the close of the socket; undefined while open. */
  closedAfter(): number | undefined;
  readonly closed: Promise<void>;
  /** Resolves with the first received packet of `cmd` not yet taken, or rejects after timeoutMs. */
  next(cmd: string, timeoutMs?: number): Promise<Packet>;
}

const sockets = new Set<Socket>();
t.afterEach(() => {
  for (const s of sockets) s.destroy();
  sockets.clear();
});

function raw(port: number): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const opened = Date.now();
    const socket = createConnection(port, '127.0.0.1');
    sockets.add(socket);
    const packets: Packet[] = [];
    const taken = new Set<Packet>();
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    let closedAt: number | undefined;
    parser.on('packet', (p) => packets.push(p as Packet));
    parser.on('error', () => undefined);
    socket.on('data', (d) => parser.parse(d));
    socket.on('error', () => undefined);
    const closed = new Promise<void>((r) =>
      socket.on('close', () => {
        closedAt = Date.now();
        sockets.delete(socket);
        r();
      }),
    );
    socket.once('connect', () =>
      resolve({
        socket,
        packets,
        closed,
        closedAfter: () => (closedAt === undefined ? undefined : closedAt - opened),
        async next(cmd, timeoutMs = 3000) {
          const end = Date.now() + timeoutMs;
          for (;;) {
            const p = packets.find((x) => x.cmd === cmd && !taken.has(x));
            if (p) {
              taken.add(p);
              return p;
            }
            if (Date.now() > end) throw new Error(`no ${cmd} within ${timeoutMs} ms (got ${packets.map((x) => x.cmd).join(',')}; closed: ${closedAt !== undefined})`);
            await sleep(5);
          }
        },
      }),
    );
    socket.once('error', reject);
  });
}

/** Resolves true if the socket is closed within `ms`. */
const closesWithin = (r: Raw, ms: number) => Promise.race([r.closed.then(() => true), sleep(ms).then(() => false)]);

const gen = (p: Record<string, unknown>): Buffer => mqttPacket.generate(p as unknown as mqttPacket.Packet, { protocolVersion: 4 });
const publishBytes = (topic: string, payload: string | Buffer, qos: 0 | 1 | 2 = 0, messageId?: number) =>
  gen({ cmd: 'publish', topic, payload: typeof payload === 'string' ? Buffer.from(payload) : payload, qos, retain: false, dup: false, ...(qos > 0 ? { messageId: messageId ?? 1 } : {}) });
const subscribeBytes = (messageId: number, filters: string[]) => gen({ cmd: 'subscribe', messageId, subscriptions: filters.map((topic) => ({ topic, qos: 1 })) });

let idSeq = 0;
/** A raw connection as a real principal, CONNACK 0 checked. */
async function rawSession(user: string, secret: string, clientId = `${user}-raw-${++idSeq}`): Promise<Raw> {
  const r = await raw(agent.port);
  r.socket.write(connectBytes({ clientId, clean: true, username: user, password: secret }));
  const connack = await r.next('connack');
  if (connack.returnCode !== 0) throw new Error(`CONNACK ${connack.returnCode} for ${user}`);
  return r;
}

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error('no VmRSS');
  return Number(m[1]);
}

const alive = (a: AgentProcess) => a.child.exitCode === null && a.child.signalCode === null;

/** Log lines (parsed) whose msg matches. */
const logsMatching = (a: AgentProcess, msg: RegExp, pred: (l: Record<string, unknown>) => boolean = () => true) =>
  a
    .logs()
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => typeof l.msg === 'string' && msg.test(l.msg) && pred(l));

let probeSeq = 0;
/** tech-anna (MQTT.js) commands oven-1 (MQTT.js), which receives it. */
async function serves(a: AgentProcess): Promise<boolean> {
  if (!alive(a)) return false;
  const tag = `probe-${++probeSeq}`;
  const oven = await connect(a.port, { clientId: `oven-1-${tag}`, username: 'oven-1', password: 'oven-1-token' });
  const anna = await connect(a.port, { clientId: `anna-${tag}`, username: 'tech-anna', password: 'anna-pass' }).catch(async (err: Error) => {
    await endAll(oven);
    throw err;
  });
  try {
    if ((await subscribe(oven, 'things/oven-1/commands/#')) !== 1) return false;
    await anna.client.publishAsync('things/oven-1/commands/probe', tag, { qos: 1 });
    return await until(() => oven.messages.some((m) => m.topic === 'things/oven-1/commands/probe' && m.payload === tag), 15_000);
  } finally {
    await endAll(oven, anna);
  }
}

// --- tests -------------------------------------------------------------------------------------------

t.test('the agent serves a well-behaved client to begin with', async (t) => {
  t.ok(await serves(agent), 'tech-anna commands oven-1');
});

/** Writes `header`, then junk in 64 KiB chunks as fast as the socket takes it, up to `total` bytes or until closed. */
function pushAnnounced(r: Raw, header: Buffer, total: number): Promise<number> {
  return new Promise((resolve) => {
    const junk = Buffer.alloc(64 * 1024, 0x41);
    let sent = 0;
    let done = false;
    const finish = () => {
      if (!done) {
        done = true;
        resolve(sent);
      }
    };
    void r.closed.then(finish);
    r.socket.write(header);
    const pump = () => {
      while (!done && !r.socket.destroyed && sent < total) {
        sent += junk.length;
        if (!r.socket.write(junk)) return;
      }
      if (sent >= total) finish();
    };
    r.socket.on('drain', pump);
    pump();
  });
}

t.test('a 256 MB remaining length is refused from its header: closed at once, nothing buffered', async (t) => {
  const pid = agent.child.pid!;
  const before = rssKb(pid);
  const PER_SOCKET = 48 * 1024 * 1024;
  const N = 6;
  // A CONNECT announcing 268,435,455 bytes: refused long before the connect timeout would close it.
  const connects = await Promise.all(Array.from({ length: N }, () => raw(agent.port)));
  const pushed = connects.map((r) => pushAnnounced(r, Buffer.from([0x10, 0xff, 0xff, 0xff, 0x7f]), PER_SOCKET));
  // After a valid CONNECT, a PUBLISH announcing 256 MB.
  const sessions = await Promise.all(Array.from({ length: N }, () => rawSession('oven-1', 'oven-1-token')));
  const pushedAfter = sessions.map((r) => pushAnnounced(r, Buffer.from([0x30, 0xff, 0xff, 0xff, 0x7f]), PER_SOCKET));
  await Promise.all([...pushed, ...pushedAfter]);
  const all = [...connects, ...sessions];
  t.ok(await until(() => all.every((r) => r.closedAfter() !== undefined), 15_000), 'every such connection is closed');
  const worst = Math.max(...connects.map((r) => r.closedAfter()!));
  t.ok(worst < LIMITS.connectTimeoutMs / 2, `the CONNECTs are closed in ${worst} ms, not by the ${LIMITS.connectTimeoutMs} ms connect timeout`);
  t.same(
    connects.map((r) => r.packets.length),
    connects.map(() => 0),
    'no CONNACK for them',
  );
  await sleep(300);
  const after = rssKb(pid);
  t.ok(after - before < 64 * 1024, `agent RSS ${Math.round(before / 1024)} MB -> ${Math.round(after / 1024)} MB while up to ${(2 * N * PER_SOCKET) / 2 ** 20} MB were pushed at it`);
  t.equal(logsMatching(agent, /closing connection: packet limit/).length, 2 * N, 'one log line per connection, not per chunk');
  t.ok(await serves(agent), 'still serves a well-behaved client');
});

t.test('sockets that never send a (complete) CONNECT are closed after connectTimeoutMs', async (t) => {
  const silent = await Promise.all(Array.from({ length: 5 }, () => raw(agent.port)));
  const partial = await raw(agent.port);
  partial.socket.write(connectBytes({ clientId: 'slow', clean: true, username: 'oven-1', password: 'oven-1-token' }).subarray(0, 7));
  // A slowloris: one byte of a CONNECT every 200 ms.
  const slow = await raw(agent.port);
  const slowBytes = connectBytes({ clientId: 'slowloris', clean: true, username: 'oven-1', password: 'oven-1-token' });
  let i = 0;
  const drip = setInterval(() => {
    if (!slow.socket.destroyed && i < slowBytes.length - 1) slow.socket.write(slowBytes.subarray(i, ++i));
  }, 200);
  const all = [...silent, partial, slow];
  try {
    t.ok(await until(() => all.every((r) => r.closedAfter() !== undefined), LIMITS.connectTimeoutMs + 2000), 'all closed by the agent');
  } finally {
    clearInterval(drip);
  }
  const times = all.map((r) => r.closedAfter() ?? Infinity);
  t.ok(
    times.every((ms) => ms >= LIMITS.connectTimeoutMs - 100 && ms <= LIMITS.connectTimeoutMs + 1500),
    `closed after ${times.join(', ')} ms (timeout ${LIMITS.connectTimeoutMs} ms)`,
  );
  t.ok(await serves(agent), 'still serves a well-behaved client');
});

t.test('maxConnections: further connections are refused, and the limit is logged once', async (t) => {
  const small = await startAgent({ config: { limits: { ...LIMITS, maxConnections: 5 } } });
  t.teardown(async () => {
    await small.stop();
    cleanup(small);
  });
  const held: Raw[] = [];
  for (let k = 0; k < 5; k++) {
    const r = await raw(small.port);
    r.socket.write(connectBytes({ clientId: `mixer-1-held-${k}`, clean: true, username: 'mixer-1', password: 'mixer-1-token' }));
    t.equal((await r.next('connack')).returnCode, 0, `connection ${k + 1} of 5 accepted`);
    held.push(r);
  }
  const extra: Raw[] = [];
  for (let k = 0; k < 30; k++) {
    const r = await raw(small.port);
    r.socket.write(connectBytes({ clientId: `mixer-1-extra-${k}`, clean: true, username: 'mixer-1', password: 'mixer-1-token' }));
    extra.push(r);
  }
  t.ok(await until(() => extra.every((r) => r.closedAfter() !== undefined), 15_000), 'the 30 extra connections are closed');
  t.same(
    extra.map((r) => r.packets.length),
    extra.map(() => 0),
    'none got a CONNACK',
  );
  t.ok(
    held.every((r) => r.closedAfter() === undefined),
    'the 5 accepted connections are untouched',
  );
  await sleep(200);
  // One line per address and 10 s: two when the 30 straddle the end of an interval.
  const limitLines = () => logsMatching(small, /^connection refused: CONNECTION_LIMIT$/).length;
  t.ok(limitLines() >= 1 && limitLines() <= 2, '30 refusals, one log line (two across an interval)');
  // A freed slot can be used again.
  held.pop()!.socket.destroy();
  await sleep(300);
  const again = await raw(small.port);
  again.socket.write(connectBytes({ clientId: 'mixer-1-again', clean: true, username: 'mixer-1', password: 'mixer-1-token' }));
  t.equal((await again.next('connack')).returnCode, 0, 'a new connection is accepted once one has gone');
  for (const r of held) r.socket.destroy();
  again.socket.destroy();
  await sleep(300);
  t.ok(await serves(small), 'and the agent serves a well-behaved client');
  t.ok(limitLines() <= 2, 'still one log line (two across an interval)');
});

t.test('limits.keepaliveLimitSeconds: a larger keepalive (or 0, none) gets CONNACK 0x03, a valid 3.1.1 code, audited and logged', async (t) => {
  const limited = await agentFor(t, { config: { limits: { ...LIMITS, keepaliveLimitSeconds: 60 } } });
  const attempt = async (keepalive: number, password = 'oven-1-token'): Promise<{ code: number | undefined; closed: boolean }> => {
    const r = await raw(limited.port);
    r.socket.write(connectBytes({ clientId: `oven-1-ka-${keepalive}-${++idSeq}`, clean: true, username: 'oven-1', password, keepalive }));
    const connack = await r.next('connack', 5000);
    const closed = await closesWithin(r, 3000);
    r.socket.destroy();
    return { code: connack.returnCode, closed };
  };
  for (const keepalive of [61, 600, 65535, 0]) {
    t.same(await attempt(keepalive), { code: 3, closed: true }, `keepalive ${keepalive}: CONNACK 0x03 (aedes answered 6, which 3.1.1 does not have), then closed`);
  }
  t.same(await attempt(61, 'wrong'), { code: 3, closed: true }, 'checked before the credentials: a wrong password with keepalive 61 is told 0x03, not 0x04');
  for (const keepalive of [60, 1]) {
    const r = await raw(limited.port);
    r.socket.write(connectBytes({ clientId: `oven-1-ka-ok-${keepalive}`, clean: true, username: 'oven-1', password: 'oven-1-token', keepalive }));
    t.equal((await r.next('connack', 5000)).returnCode, 0, `keepalive ${keepalive}: accepted`);
    r.socket.write(gen({ cmd: 'pingreq' }));
    await r.next('pingresp', 5000);
    r.socket.destroy();
  }
  let entries: Awaited<ReturnType<typeof readAudit>> = [];
  for (let i = 0; i < 100 && entries.length === 0; i++) {
    entries = (await readAudit(join(limited.stateDir, 'audit'))).filter((e) => e.reason === 'KEEPALIVE_LIMIT');
    if (entries.length === 0) await sleep(100);
  }
  t.match(entries[0], { action: 'connect', decision: 'deny', reason: 'KEEPALIVE_LIMIT', principal: 'oven-1', remote: '127.0.0.1' }, 'audited (coalesced per source like every refused connection)');
  t.ok(entries.length <= 2, `${entries.length} audit record(s) for 5 refusals within the interval`);
  const logged = logsMatching(limited, /^connection refused: KEEPALIVE_LIMIT$/);
  t.match(logged[0], { keepalive: 61, limit: 'limits.keepaliveLimitSeconds', max: 60 }, 'logged');
  t.equal(logged.length, 1, 'once per source and interval');
  t.ok(await serves(limited), 'a well-behaved client (MQTT.js, keepalive 60) is served');
});

t.test('thousands of subscriptions: 0x80 past maxSubscriptionsPerClient, one log line', async (t) => {
  const clientId = 'oven-1-subscriber';
  const r = await rawSession('oven-1', 'oven-1-token', clientId);
  const granted: number[] = [];
  const PACKETS = 30;
  const PER_PACKET = 100;
  for (let p = 0; p < PACKETS; p++) {
    const filters = Array.from({ length: PER_PACKET }, (_, k) => `things/oven-1/commands/c${p * PER_PACKET + k}`);
    r.socket.write(subscribeBytes(p + 1, filters));
  }
  for (let p = 0; p < PACKETS; p++) {
    const suback = await r.next('suback');
    t.equal(suback.messageId, p + 1);
    granted.push(...suback.granted!);
  }
  t.equal(granted.length, PACKETS * PER_PACKET);
  const max = LIMITS.maxSubscriptionsPerClient;
  t.same(granted.slice(0, max), Array(max).fill(1), `the first ${max} granted`);
  t.ok(
    granted.slice(max).every((g) => g === 0x80),
    `the other ${granted.length - max} refused with 0x80`,
  );
  t.equal(logsMatching(agent, /subscription limit reached/, (l) => l.clientId === clientId).length, 1, 'one log line for this client');
  // A filter it already holds is not a new subscription; an unsubscribed one frees a place.
  r.socket.write(subscribeBytes(1000, ['things/oven-1/commands/c0']));
  t.same((await r.next('suback')).granted, [1], 'resubscribing to a held filter is granted');
  r.socket.write(gen({ cmd: 'unsubscribe', messageId: 1001, unsubscriptions: Array.from({ length: 10 }, (_, k) => `things/oven-1/commands/c${k}`) }));
  await r.next('unsuback');
  r.socket.write(subscribeBytes(1002, Array.from({ length: 12 }, (_, k) => `things/oven-1/commands/new${k}`)));
  t.same((await r.next('suback')).granted, [...Array(10).fill(1), 0x80, 0x80], 'after 10 unsubscriptions, 10 new subscriptions fit, no more');
  t.ok(r.closedAfter() === undefined, 'the client stays connected');
  t.equal(logsMatching(agent, /subscription limit reached/, (l) => l.clientId === clientId).length, 1, 'still one log line');
  r.socket.destroy();
  t.ok(await serves(agent), 'still serves a well-behaved client');
});

t.test('a flood of denied publishes: dropped, client stays connected, a handful of audit and log lines', async (t) => {
  const clientId = 'oven-1-flooder';
  // A device may publish only its own telemetry: mixer-1's telemetry is TOPIC_DENIED for oven-1.
  const topic = 'things/mixer-1/telemetry/temp';
  const mixer = await connect(agent.port, { clientId: 'mixer-1-watch', username: 'tech-anna', password: 'anna-pass' });
  t.equal(await subscribe(mixer, 'things/mixer-1/telemetry/#'), 1, 'a reader of mixer-1 telemetry');
  const r = await rawSession('oven-1', 'oven-1-token', clientId);
  const N = 20_000;
  const one = publishBytes(topic, 'x');
  const started = Date.now();
  for (let sent = 0; sent < N; sent += 1000) r.socket.write(Buffer.concat(Array(Math.min(1000, N - sent)).fill(one)));
  r.socket.write(gen({ cmd: 'pingreq' }));
  await r.next('pingresp', 20_000);
  const floodMs = Date.now() - started;
  t.pass(`${N} denied QoS 0 publishes processed in ${floodMs} ms`);
  r.socket.write(publishBytes(topic, 'q1', 1, 77));
  t.equal((await r.next('puback')).messageId, 77, 'a denied QoS 1 publish is still acknowledged');
  t.ok(r.closedAfter() === undefined, 'the client is still connected');
  await sleep(500);
  t.same(mixer.messages, [], 'nothing was delivered');

  // Audit: every denial counted, in a handful of coalesced lines.
  const dir = join(agent.stateDir, 'audit');
  let lines: Awaited<ReturnType<typeof readAudit>> = [];
  const counted = () => lines.reduce((n, e) => n + (e.count ?? 1), 0);
  await until(() => false, 300);
  for (let k = 0; k < 150 && counted() < N + 1; k++) {
    lines = (await readAudit(dir)).filter((e) => e.clientId === clientId);
    if (counted() < N + 1) await sleep(100);
  }
  t.equal(counted(), N + 1, `all ${N + 1} denials are in the audit log`);
  t.ok(
    // past 100 lines a second, one client's denials are tallied in lines with topic '*' (src/broker/denial-budget.ts)
    lines.every((e) => e.decision === 'deny' && e.reason === 'TOPIC_DENIED' && (e.topic === topic || e.topic === '*')),
    'as TOPIC_DENIED',
  );
  const budget = 3 + Math.ceil(floodMs / 1000) * 2;
  t.ok(lines.length <= budget, `in ${lines.length} audit lines (counts ${lines.map((e) => e.count ?? 1).join(', ')}), at most ${budget}`);

  // Log: rate-limited; the rest reported as a count when the client goes.
  r.socket.destroy();
  await agent.waitLog(/denials not logged individually/, 3000).catch(() => undefined);
  const denied = logsMatching(agent, /^denied$/, (l) => l.clientId === clientId);
  const summary = logsMatching(agent, /denials not logged individually/, (l) => l.clientId === clientId);
  t.ok(denied.length >= 1 && denied.length <= 3, `${denied.length} 'denied' log line(s)`);
  const suppressed = [...denied, ...summary].reduce((n, l) => n + Number(l.suppressed ?? 0), 0);
  t.equal(denied.length + suppressed, N + 1, 'logged plus suppressed = every denial');
  t.ok(summary.length <= 1, 'one summary line when the client goes');
  await endAll(mixer);
  t.ok(await serves(agent), 'still serves a well-behaved client');
});

t.test('malformed packets: the agent stays up and serves a well-behaved client after each', async (t) => {
  const creds = () => connectBytes({ clientId: `oven-1-bad-${++idSeq}`, clean: true, username: 'oven-1', password: 'oven-1-token' });
  const withLength = (first: number, body: number[]) => Buffer.from([first, body.length, ...body]);
  const badUtf8Topic = (() => {
    const topic = Buffer.from([0x74, 0x2f, 0xc3, 0x28, 0xff, 0xfe]); // "t/" + ill-formed UTF-8
    return Buffer.concat([Buffer.from([0x30, 2 + topic.length + 1, 0, topic.length]), topic, Buffer.from('x')]);
  })();
  const nulTopic = (() => {
    const topic = Buffer.from('things/oven-1/telemetry/a\u0000b');
    return Buffer.concat([Buffer.from([0x30, 2 + topic.length + 1, 0, topic.length]), topic, Buffer.from('x')]);
  })();
  const connectReservedFlag = (() => {
    const b = Buffer.from(creds());
    b[9] = b[9]! | 0x01; // connect flags: the reserved bit
    return b;
  })();
  const cases: { name: string; connect: boolean; bytes: Buffer; end?: boolean; mustClose: boolean }[] = [
    { name: 'SUBSCRIBE with fixed-header flags 0000', connect: true, bytes: withLength(0x80, [0, 1, 0, 3, 0x61, 0x2f, 0x62, 1]), mustClose: true },
    { name: 'PUBLISH with QoS 3', connect: true, bytes: withLength(0x36, [0, 3, 0x61, 0x2f, 0x62, 0, 1, 0x78]), mustClose: true },
    { name: 'PUBREL with flags 0000', connect: true, bytes: withLength(0x60, [0, 1]), mustClose: true },
    { name: 'PINGREQ with flags 0001', connect: true, bytes: withLength(0xc1, []), mustClose: true },
    { name: 'CONNECT with the reserved flag set', connect: false, bytes: connectReservedFlag, mustClose: true },
    { name: 'PUBLISH with an ill-formed UTF-8 topic', connect: true, bytes: badUtf8Topic, mustClose: true },
    { name: 'PUBLISH with U+0000 in the topic', connect: true, bytes: nulTopic, mustClose: true },
    { name: 'PUBLISH before CONNECT', connect: false, bytes: publishBytes('things/oven-1/telemetry/t', 'x'), mustClose: true },
    { name: 'a second CONNECT', connect: true, bytes: creds(), mustClose: true },
    { name: 'reserved packet type 0 before CONNECT', connect: false, bytes: withLength(0x00, []), mustClose: true },
    { name: 'reserved packet type 0 after CONNECT', connect: true, bytes: withLength(0x00, [1, 2, 3]), mustClose: true },
    { name: 'packet type 15 (AUTH, MQTT 5 only) after CONNECT', connect: true, bytes: withLength(0xf0, [0]), mustClose: true },
    { name: 'packet type 15 before CONNECT', connect: false, bytes: withLength(0xf0, []), mustClose: true },
    { name: 'SUBSCRIBE with no filters', connect: true, bytes: withLength(0x82, [0, 1]), mustClose: true },
    { name: 'SUBSCRIBE with a filter length past the end', connect: true, bytes: withLength(0x82, [0, 1, 0, 50, 0x61, 1]), mustClose: true },
    { name: 'CONNECT with protocol name "MQIsdpX"', connect: false, bytes: withLength(0x10, [0, 7, ...Buffer.from('MQIsdpX'), 4, 2, 0, 30, 0, 1, 0x61]), mustClose: true },
    { name: 'truncated CONNECT, then close', connect: false, bytes: creds().subarray(0, 12), end: true, mustClose: false },
    { name: 'truncated PUBLISH, then close', connect: true, bytes: publishBytes('things/oven-1/telemetry/t', Buffer.alloc(200, 1)).subarray(0, 60), end: true, mustClose: false },
    { name: 'truncated remaining length, then close', connect: true, bytes: Buffer.from([0x30, 0xff, 0xff]), end: true, mustClose: false },
  ];
  for (const c of cases) {
    const r = c.connect ? await rawSession('oven-1', 'oven-1-token') : await raw(agent.port);
    r.socket.write(c.bytes);
    if (c.end) r.socket.end();
    if (c.mustClose) t.ok(await closesWithin(r, 1000), `${c.name}: the agent closes the connection`);
    else await closesWithin(r, 200);
    r.socket.destroy();
    t.ok(await serves(agent), `${c.name}: the agent is up and serves a well-behaved client`);
  }
  t.ok(alive(agent), 'the agent process is alive');
  t.notOk(
    agent.logs().some((l) => /RangeError|uncaught|unhandled/i.test(l)),
    'no crash-like errors in its log',
  );
});

t.test('a topic that is not well-formed UTF-8, or holds U+0000, closes the connection and is audited TOPIC_DENIED', async (t) => {
  // [MQTT-1.5.3-1] [MQTT-1.5.3-2]. oven-1 may publish any topic under things/oven-1/telemetry/ and
  // dashboard reads them all: a topic the guard let through would be delivered.
  const reader = await connect(agent.port, { clientId: 'utf8-reader', username: 'dashboard', password: 'dashboard-secret' });
  t.equal(await subscribe(reader, 'things/oven-1/telemetry/#'), 1, 'a reader of all of oven-1\'s telemetry');
  const prefix = Buffer.from('things/oven-1/telemetry/');
  const str = (b: Buffer) => Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
  const publishRaw = (leaf: number[], qos: 0 | 1) => {
    const body = Buffer.concat([str(Buffer.concat([prefix, Buffer.from(leaf)])), qos ? Buffer.from([0, 9]) : Buffer.alloc(0), Buffer.from('x')]);
    return Buffer.concat([Buffer.from([0x30 | (qos << 1), body.length]), body]);
  };
  const withFilter = (first: number, filter: number[], qosByte: boolean) => {
    const body = Buffer.concat([Buffer.from([0, 5]), str(Buffer.concat([prefix, Buffer.from(filter)])), qosByte ? Buffer.from([1]) : Buffer.alloc(0)]);
    return Buffer.concat([Buffer.from([first, body.length]), body]);
  };
  const cases: { name: string; action: string; bytes: Buffer }[] = [
    { name: 'PUBLISH QoS 0, ill-formed (C3 28)', action: 'publish', bytes: publishRaw([0xc3, 0x28], 0) },
    { name: 'PUBLISH QoS 1, ill-formed (FF FE)', action: 'publish', bytes: publishRaw([0xff, 0xfe], 1) },
    { name: 'PUBLISH QoS 1, a surrogate (ED A0 80)', action: 'publish', bytes: publishRaw([0xed, 0xa0, 0x80], 1) },
    { name: 'PUBLISH QoS 0, U+0000', action: 'publish', bytes: publishRaw([0x61, 0x00, 0x62], 0) },
    { name: 'SUBSCRIBE, an overlong "/" (C0 AF)', action: 'subscribe', bytes: withFilter(0x82, [0x61, 0xc0, 0xaf], true) },
    { name: 'SUBSCRIBE, U+0000', action: 'subscribe', bytes: withFilter(0x82, [0x00], true) },
    { name: 'UNSUBSCRIBE, a lone continuation byte', action: 'unsubscribe', bytes: withFilter(0xa2, [0x80], false) },
  ];
  const audit = join(agent.stateDir, 'audit');
  for (const [k, c] of cases.entries()) {
    const clientId = `oven-1-utf8-${k}`;
    const r = await rawSession('oven-1', 'oven-1-token', clientId);
    r.socket.write(c.bytes);
    t.ok(await closesWithin(r, 3000), `${c.name}: the connection is closed`);
    t.same(r.packets.map((p) => p.cmd), ['connack'], `${c.name}: nothing acknowledged (no PUBACK, SUBACK, UNSUBACK)`);
    let entry: Awaited<ReturnType<typeof readAudit>>[number] | undefined;
    for (let i = 0; i < 100 && entry === undefined; i++) {
      entry = (await readAudit(audit)).find((e) => e.clientId === clientId);
      if (entry === undefined) await sleep(100);
    }
    t.match(entry, { principal: 'oven-1', action: c.action, decision: 'deny', reason: 'TOPIC_DENIED', remote: '127.0.0.1' }, `${c.name}: audited`);
  }
  t.equal(logsMatching(agent, /not well-formed UTF-8 or holds U\+0000/, (l) => String(l.clientId).startsWith('oven-1-utf8-')).length, cases.length, 'one log line per connection closed');
  // A well-formed topic holding U+FFFD (EF BF BD) is a valid topic: delivered.
  const ok = await rawSession('oven-1', 'oven-1-token', 'oven-1-utf8-ok');
  ok.socket.write(publishRaw([0xef, 0xbf, 0xbd, 0xc3, 0xa9], 1));
  t.equal((await ok.next('puback')).messageId, 9, 'a well-formed U+FFFD topic is acknowledged');
  t.ok(await until(() => reader.messages.length === 1, 15_000), 'and delivered');
  t.same(reader.messages.map((m) => m.topic), ['things/oven-1/telemetry/\uFFFDé'], 'only it: none of the bad topics was delivered');
  ok.socket.destroy();
  await endAll(reader);
  t.ok(await serves(agent), 'still serves a well-behaved client');
});

t.test('malformed MQTT 5 properties: each connection is closed (or answered) per spec, nothing malformed is delivered, the agent serves others throughout', async (t) => {
  const reader = await connect(agent.port, { clientId: 'props-reader', username: 'dashboard', password: 'dashboard-secret', protocolVersion: 5 });
  t.equal(await subscribe(reader, 'things/oven-1/#'), 1, 'a reader of everything of oven-1 (so that deliveries are attempted)');
  const varint = (n: number) => Buffer.from(remainingLength(n));
  const str = (s: string | Buffer) => {
    const b = typeof s === 'string' ? Buffer.from(s) : s;
    return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
  };
  const prop = {
    payloadFormat: (v: number) => Buffer.from([0x01, v]),
    contentType: (s: string | Buffer) => Buffer.concat([Buffer.from([0x03]), str(s)]),
    responseTopic: (s: string) => Buffer.concat([Buffer.from([0x08]), str(s)]),
    subscriptionId: (n: number) => Buffer.concat([Buffer.from([0x0b]), varint(n)]),
    sessionExpiry: (n: number) => Buffer.from([0x11, n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]),
    reasonString: (s: string | Buffer) => Buffer.concat([Buffer.from([0x1f]), str(s)]),
    topicAlias: (n: number) => Buffer.from([0x23, n >> 8, n & 0xff]),
    user: (k: string | Buffer, v: string | Buffer) => Buffer.concat([Buffer.from([0x26]), str(k), str(v)]),
  };
  const BAD = Buffer.from([0xc3, 0x28]); // ill-formed UTF-8
  const packet = (first: number, body: Buffer) => Buffer.concat([Buffer.from([first]), varint(body.length), body]);
  /** PUBLISH QoS 1 (id 7) on oven-1's own telemetry, with these property bytes (`length` overrides the property length). */
  const publish = (props: Buffer, o: { topic?: string; length?: Buffer; payload?: string } = {}) =>
    packet(0x32, Buffer.concat([str(o.topic ?? 'things/oven-1/telemetry/p'), Buffer.from([0, 7]), o.length ?? varint(props.length), props, Buffer.from(o.payload ?? 'malformed')]));
  const subscribeWith = (props: Buffer) => packet(0x82, Buffer.concat([Buffer.from([0, 3]), varint(props.length), props, str('things/oven-1/telemetry/#'), Buffer.from([1])]));
  const pubackWith = (props: Buffer) => packet(0x40, Buffer.concat([Buffer.from([0, 9, 0x00]), varint(props.length), props]));
  /** A CONNECT (MQTT 5) as oven-1 with these connect properties. */
  const connectWith = (props: Buffer, clientId: string) =>
    packet(0x10, Buffer.concat([str('MQTT'), Buffer.from([5, 0xc2, 0, 30]), varint(props.length), props, str(clientId), str('oven-1'), str('oven-1-token')]));

  type Case = { name: string; bytes: Buffer; preConnect?: boolean; expect: 'close' | 'close or refuse' };
  const cases: Case[] = [
    { name: 'PUBLISH, unknown property id 0x7F', bytes: publish(Buffer.from([0x7f, 0])), expect: 'close' },
    { name: 'PUBLISH, property id 0x00', bytes: publish(Buffer.from([0x00, 1])), expect: 'close' },
    { name: 'PUBLISH, Payload Format Indicator twice', bytes: publish(Buffer.concat([prop.payloadFormat(1), prop.payloadFormat(0)])), expect: 'close' },
    { name: 'PUBLISH, Content Type twice', bytes: publish(Buffer.concat([prop.contentType('a'), prop.contentType('b')])), expect: 'close' },
    { name: 'PUBLISH, Response Topic twice', bytes: publish(Buffer.concat([prop.responseTopic('things/oven-1/telemetry/r1'), prop.responseTopic('things/oven-1/telemetry/r2')])), expect: 'close' },
    { name: 'PUBLISH, Topic Alias twice', bytes: publish(Buffer.concat([prop.topicAlias(1), prop.topicAlias(2)])), expect: 'close' },
    { name: 'PUBLISH, a Subscription Identifier (a client may not send one)', bytes: publish(prop.subscriptionId(3)), expect: 'close' },
    { name: 'PUBLISH, Topic Alias 0', bytes: publish(prop.topicAlias(0)), expect: 'close' },
    { name: 'PUBLISH, a Response Topic with wildcards', bytes: publish(prop.responseTopic('things/oven-1/telemetry/#')), expect: 'close or refuse' },
    { name: 'PUBLISH, property length past the end of the packet', bytes: publish(prop.payloadFormat(1), { length: varint(200), payload: '' }), expect: 'close' },
    { name: 'PUBLISH, property length of 5 bytes', bytes: publish(Buffer.alloc(0), { length: Buffer.from([0xff, 0xff, 0xff, 0xff, 0x7f]) }), expect: 'close' },
    { name: 'PUBLISH, a property cut short', bytes: publish(Buffer.from([0x23, 0x00])), expect: 'close' },
    { name: 'PUBLISH, user property name not UTF-8', bytes: publish(prop.user(BAD, 'v')), expect: 'close' },
    { name: 'PUBLISH, user property value not UTF-8', bytes: publish(prop.user('k', BAD)), expect: 'close' },
    { name: 'PUBLISH, user property value with U+0000', bytes: publish(prop.user('k', Buffer.from('a\u0000b'))), expect: 'close' },
    { name: 'PUBLISH, content type not UTF-8', bytes: publish(prop.contentType(BAD)), expect: 'close' },
    { name: 'PUBACK, reason string not UTF-8', bytes: pubackWith(prop.reasonString(BAD)), expect: 'close' },
    { name: 'SUBSCRIBE, Subscription Identifier 0', bytes: subscribeWith(prop.subscriptionId(0)), expect: 'close' },
    { name: 'SUBSCRIBE, Subscription Identifier twice', bytes: subscribeWith(Buffer.concat([prop.subscriptionId(1), prop.subscriptionId(2)])), expect: 'close' },
    { name: 'SUBSCRIBE, user property not UTF-8', bytes: subscribeWith(prop.user('k', BAD)), expect: 'close' },
    { name: 'CONNECT, Session Expiry Interval twice', bytes: connectWith(Buffer.concat([prop.sessionExpiry(10), prop.sessionExpiry(20)]), 'oven-1-dup-sei'), preConnect: true, expect: 'close or refuse' },
    { name: 'CONNECT, user property not UTF-8', bytes: connectWith(prop.user('k', BAD), 'oven-1-bad-up'), preConnect: true, expect: 'close or refuse' },
    { name: 'CONNECT, unknown property id', bytes: connectWith(Buffer.from([0x7f, 1]), 'oven-1-bad-id'), preConnect: true, expect: 'close or refuse' },
  ];
  for (const [k, c] of cases.entries()) {
    const r = await RawMqtt.open(agent.port, 5);
    if (!c.preConnect) {
      const connack = await r.connect(`oven-1-props-${k}`, 'oven-1', 'oven-1-token');
      t.equal(connack.reasonCode, 0, `${c.name}: connected`);
    }
    r.socket.write(c.bytes);
    const closed = await Promise.race([r.whenClosed.then(() => true), sleep(5000).then(() => false)]);
    const acks = r.packets.filter((p) => p.cmd !== 'connack' && p.cmd !== 'disconnect');
    const refusedConnect = r.packets.some((p) => p.cmd === 'connack' && ((p as { reasonCode?: number }).reasonCode ?? 0) >= 0x80);
    const refusedAck = acks.some((p) => ((p as { reasonCode?: number }).reasonCode ?? 0) >= 0x80);
    if (c.expect === 'close') t.ok(closed, `${c.name}: the agent closes the connection`);
    else t.ok(closed || refusedConnect || refusedAck, `${c.name}: closed or refused (${r.packets.map((p) => `${p.cmd}:${(p as { reasonCode?: number }).reasonCode ?? ''}`).join(',')})`);
    t.notOk(acks.some((p) => ((p as { reasonCode?: number }).reasonCode ?? 0) < 0x80 && p.cmd !== 'pingresp'), `${c.name}: nothing acknowledged as accepted`);
    const d = r.packets.find((p) => p.cmd === 'disconnect') as { reasonCode?: number } | undefined;
    if (d) t.ok((d.reasonCode ?? 0) >= 0x80, `${c.name}: DISCONNECT with an error reason code (0x${(d.reasonCode ?? 0).toString(16)})`);
    r.end();
    t.ok(alive(agent), `${c.name}: the agent is alive`);
  }
  t.ok(await serves(agent), 'the agent serves a well-behaved client');
  await sleep(300);
  t.same(reader.messages.filter((m) => m.payload === 'malformed'), [], 'none of the malformed publishes was delivered');
  await endAll(reader);
  t.notOk(agent.logs().some((l) => /RangeError|TypeError|uncaught|unhandled/i.test(l)), 'no crash-like errors in its log');
  const logged = logsMatching(agent, /property/, (l) => String(l.clientId).startsWith('oven-1-props-'));
  t.ok(logged.length > 0, 'malformed property strings are logged as such');
  t.notOk(logsMatching(agent, /topic that is not well-formed/, (l) => String(l.clientId).startsWith('oven-1-props-')).length > 0, 'not as a bad topic');
});
