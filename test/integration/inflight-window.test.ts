// The outgoing in-flight window (limits.maxInflightOutbound; src/broker/inflight-window.ts): a
// subscriber that does not acknowledge is sent at most the window's count of QoS 1/2 messages; the
// rest wait — a persistent session's in its queue, a clean session's in memory, bounded — and go, in
// order, as acknowledgements free the window. Raw sockets decide every acknowledgement; the agent's
// status counters say when the broker has handled every message, so "nothing more arrives" is
// checked after a PINGREQ's PINGRESP (written after everything queued before it), never after a sleep.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import mqttPacket, { type Packet, type IPublishPacket } from 'mqtt-packet';
import { controlRequest } from '../../src/agent/control.js';
import { agentFor, connect, endAll, until, type AgentProcess } from '../helpers/agent.js';

const WINDOW = 50;
const N = 5000;
const TOPIC = 'things/oven-1/telemetry/window';
const DASH = { username: 'dashboard', password: 'dashboard-secret' };
const OVEN = { username: 'oven-1', password: 'oven-1-token' };

/** An MQTT 3.1.1 client on a raw socket: it acknowledges only what the test says. */
class Raw {
  readonly publishes: IPublishPacket[] = [];
  readonly pubrels: number[] = [];
  readonly others: Packet[] = [];
  closed = false;

  private constructor(private readonly socket: Socket) {
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    parser.on('packet', (p: Packet) => {
      if (p.cmd === 'publish') this.publishes.push(p);
      else if (p.cmd === 'pubrel') this.pubrels.push(p.messageId!);
      else this.others.push(p);
    });
    socket.on('data', (d) => parser.parse(d));
    socket.on('error', () => undefined);
    socket.on('close', () => (this.closed = true));
  }

  static async connect(port: number, o: { clientId: string; clean: boolean; username: string; password: string }): Promise<Raw> {
    const socket = createConnection(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const raw = new Raw(socket);
    raw.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: o.clientId, clean: o.clean, keepalive: 120, username: o.username, password: Buffer.from(o.password) });
    const connack = await raw.take('connack');
    if ((connack as { returnCode?: number }).returnCode !== 0) throw new Error(`CONNACK ${(connack as { returnCode?: number }).returnCode}`);
    return raw;
  }

  send(p: Record<string, unknown>): void {
    this.socket.write(mqttPacket.generate(p as unknown as Packet));
  }

  sendAll(ps: Record<string, unknown>[]): void {
    if (ps.length > 0) this.socket.write(Buffer.concat(ps.map((p) => mqttPacket.generate(p as unknown as Packet))));
  }

  /** The next packet of `cmd` (not a PUBLISH or PUBREL), within a generous deadline. */
  async take(cmd: string, timeoutMs = 15_000): Promise<Packet> {
    if (!(await until(() => this.others.some((p) => p.cmd === cmd), timeoutMs))) throw new Error(`no ${cmd} in ${timeoutMs} ms (closed: ${this.closed})`);
    return this.others.splice(this.others.findIndex((p) => p.cmd === cmd), 1)[0]!;
  }

  async subscribe(filter: string, qos: 1 | 2): Promise<number> {
    this.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: filter, qos }] });
    return ((await this.take('suback')) as { granted: number[] }).granted[0]!;
  }

  /** A PINGREQ's PINGRESP: everything the agent wrote to this client before it has been read. */
  async roundTrip(): Promise<void> {
    this.send({ cmd: 'pingreq' });
    await this.take('pingresp');
  }

  ack(ps: IPublishPacket[]): void {
    this.sendAll(ps.map((p) => ({ cmd: p.qos === 2 ? 'pubrec' : 'puback', messageId: p.messageId })));
  }

  end(): void {
    this.socket.destroy();
  }
}

const brokerStats = async (agent: AgentProcess): Promise<Record<string, number>> => {
  const r = await controlRequest(agent.stateDir, { cmd: 'status' });
  if (!r.ok) throw new Error('status failed');
  return (r.status as { broker: Record<string, number> }).broker;
};

/** Polls the agent's status until `pred` holds (generous deadline); returns the last figures. */
async function statsUntil(agent: AgentProcess, pred: (s: Record<string, number>) => boolean, timeoutMs = 60_000): Promise<Record<string, number>> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const s = await brokerStats(agent);
    if (pred(s) || Date.now() > end) return s;
    await new Promise((r) => setTimeout(r, 50));
  }
}

const rssMb = (pid: number): number => {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error('no VmRSS');
  return Number(m[1]) / 1024;
};

const indexOf = (p: IPublishPacket): number => Number(p.payload.toString().split(':')[0]);
const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);

/**
 * oven-1 publishes messages `from` to `to` - 1 (raw; QoS 1 all at once, QoS 2 in batches within the
 * inbound QoS 2 limit, limits.maxInflightPerClient); resolves when the agent acknowledged them all.
 */
async function publishAll(port: number, from: number, to: number, qos: 1 | 2, clientId: string): Promise<void> {
  const pub = await Raw.connect(port, { clientId, clean: true, ...OVEN });
  const filler = 'x'.repeat(80);
  const count = (cmd: string) => pub.others.filter((p) => p.cmd === cmd).length;
  const batch = qos === 1 ? 500 : WINDOW;
  for (let first = from; first < to; first += batch) {
    const ids = range(first, Math.min(to, first + batch));
    pub.sendAll(ids.map((i) => ({ cmd: 'publish', topic: TOPIC, payload: Buffer.from(`${i}:${filler}`), qos, messageId: i + 1, retain: false, dup: false })));
    if (qos === 2) {
      // The batch's flows complete (PUBCOMP) before the next batch: they count until then.
      if (!(await until(() => count('pubrec') >= first - from + ids.length, 30_000))) throw new Error(`${count('pubrec')} PUBRECs`);
      pub.sendAll(ids.map((i) => ({ cmd: 'pubrel', messageId: i + 1 })));
      if (!(await until(() => count('pubcomp') >= first - from + ids.length, 30_000))) throw new Error(`${count('pubcomp')} PUBCOMPs`);
    }
  }
  const done = qos === 1 ? 'puback' : 'pubcomp';
  if (!(await until(() => count(done) >= to - from, 60_000))) throw new Error(`the agent acknowledged ${count(done)} of ${to - from} publishes`);
  pub.end();
}

t.test('persistent session: a subscriber that never acknowledges gets the window\'s count; its acknowledgements let the rest through, in order', async (t) => {
  const agent = await agentFor(t, { config: { limits: { maxInflightOutbound: WINDOW }, sessions: { maxQueuedMessages: 10_000, maxQueuedBytes: 16 * 1024 * 1024 } } });
  const pid = agent.child.pid!;
  const sub = await Raw.connect(agent.port, { clientId: 'dash-window', clean: false, ...DASH });
  t.equal(await sub.subscribe('things/oven-1/telemetry/#', 1), 1, 'a QoS 1 subscription');
  const rssBefore = rssMb(pid);

  await publishAll(agent.port, 0, N, 1, 'oven-pub-1');
  const stats = await statsUntil(agent, (s) => s['deliveriesWaited']! >= N - WINDOW);
  t.equal(stats['deliveriesWaited'], N - WINDOW, `${N - WINDOW} messages wait for the window (status: deliveriesWaited)`);
  await sub.roundTrip();
  t.equal(sub.publishes.length, WINDOW, `the silent subscriber got exactly ${WINDOW} of ${N}`);
  t.same(sub.publishes.map(indexOf), range(0, WINDOW), 'the first ones, in order');
  t.ok(sub.publishes.every((p) => p.qos === 1 && !p.dup), 'at QoS 1');
  t.equal(new Set(sub.publishes.map((p) => p.messageId)).size, WINDOW, 'each with its own packet identifier');
  t.equal(stats['sessionsQueued'], N, 'the rest wait in the session\'s queue (sessionsQueued)');
  t.equal(stats['inflightWindowFull'], 1, 'one window filled (status: inflightWindowFull)');
  const rssAfter = rssMb(pid);
  t.ok(rssAfter - rssBefore < 48, `agent RSS ${rssBefore.toFixed(1)} MB -> ${rssAfter.toFixed(1)} MB with ${N - WINDOW} messages waiting`);
  const logged = agent.logs().filter((l) => /in-flight window full/.test(l) && /"clientId":"dash-window"/.test(l));
  t.equal(logged.length, 1, 'logged once for the client');
  t.match(logged[0], /"max":50/);

  // A well-behaved subscriber of the same topic is not held up by the stuck one, which gets nothing more.
  const M = 500;
  const fine = await connect(agent.port, { ...DASH, clientId: 'dash-fine' });
  await fine.client.subscribeAsync('things/oven-1/telemetry/#', { qos: 1 });
  await publishAll(agent.port, N, N + M, 1, 'oven-pub-1b');
  t.ok(await until(() => fine.messages.length === M, 30_000), `a well-behaved subscriber gets all ${M} further messages`);
  await sub.roundTrip();
  t.equal(sub.publishes.length, WINDOW, 'the stuck one none of them');

  // Acknowledging 10 frees 10 places: exactly 10 more come.
  sub.ack(sub.publishes.slice(0, 10));
  t.ok(await until(() => sub.publishes.length >= WINDOW + 10, 15_000), '10 acknowledged, 10 more sent');
  await sub.roundTrip();
  t.equal(sub.publishes.length, WINDOW + 10, 'and no more');
  t.same(sub.publishes.slice(WINDOW).map(indexOf), range(WINDOW, WINDOW + 10), 'the next ones in order');

  // Acknowledging everything it gets: the rest flow, in order, each once.
  let acked = 10;
  const ackAll = setInterval(() => {
    const n = sub.publishes.length;
    if (n > acked) sub.ack(sub.publishes.slice(acked, n));
    acked = n;
  }, 5);
  t.teardown(() => clearInterval(ackAll));
  t.ok(await until(() => sub.publishes.length >= N + M, 60_000), `all ${N + M} arrive once it acknowledges (got ${sub.publishes.length})`);
  const after = await statsUntil(agent, (s) => s['sessionsQueued'] === 0);
  clearInterval(ackAll);
  await sub.roundTrip();
  t.equal(sub.publishes.length, N + M, 'each once');
  t.same(sub.publishes.map(indexOf), range(0, N + M), 'in publish order [MQTT-4.6.0-6]');
  t.equal(after['sessionsQueued'], 0, 'the queue is empty once all are acknowledged');
  t.equal(logged.length, agent.logs().filter((l) => /in-flight window full/.test(l) && /"clientId":"dash-window"/.test(l)).length, 'still one log line');
  sub.end();
  await endAll(fine);
});

t.test('persistent session: what waits when the subscriber goes is in its queue when it comes back; the resumed session is windowed too', async (t) => {
  const agent = await agentFor(t, { config: { limits: { maxInflightOutbound: WINDOW }, sessions: { maxQueuedMessages: 10_000, maxQueuedBytes: 16 * 1024 * 1024 } } });
  const first = await Raw.connect(agent.port, { clientId: 'dash-resume', clean: false, ...DASH });
  t.equal(await first.subscribe('things/oven-1/telemetry/#', 1), 1);
  await publishAll(agent.port, 0, 1000, 1, 'oven-pub-2');
  await statsUntil(agent, (s) => s['deliveriesWaited']! >= 1000 - WINDOW);
  await first.roundTrip();
  t.equal(first.publishes.length, WINDOW, `${WINDOW} sent, none acknowledged`);
  first.ack(first.publishes.slice(0, 20));
  await until(() => first.publishes.length >= WINDOW + 20, 15_000);
  await first.roundTrip();
  first.end();
  await statsUntil(agent, (s) => s['connected'] === 0);

  const back = await Raw.connect(agent.port, { clientId: 'dash-resume', clean: false, ...DASH });
  // [MQTT-4.4.0-1] the 50 sent and not acknowledged are resent (DUP), and nothing else until acknowledged.
  t.ok(await until(() => back.publishes.length >= WINDOW, 15_000), 'the unacknowledged ones are resent');
  await back.roundTrip();
  t.equal(back.publishes.length, WINDOW, 'only they: the window is full with them');
  t.same(back.publishes.map(indexOf), range(20, 20 + WINDOW), 'in order');
  t.ok(back.publishes.every((p) => p.dup), 'with DUP set');
  let acked = 0;
  const ackAll = setInterval(() => {
    const n = back.publishes.length;
    if (n > acked) back.ack(back.publishes.slice(acked, n));
    acked = n;
  }, 5);
  t.teardown(() => clearInterval(ackAll));
  t.ok(await until(() => back.publishes.length >= 1000 - 20, 30_000), 'acknowledging them lets the rest through');
  await statsUntil(agent, (s) => s['sessionsQueued'] === 0);
  clearInterval(ackAll);
  await back.roundTrip();
  t.same(back.publishes.map(indexOf), range(20, 1000), 'every one not acknowledged before, once, in order');
  back.end();
});

t.test('clean session: the wait is in memory, bounded by sessions.maxQueuedMessages (the oldest dropped, counted)', async (t) => {
  const WAIT = 1000;
  const agent = await agentFor(t, { config: { limits: { maxInflightOutbound: WINDOW }, sessions: { maxQueuedMessages: WAIT } } });
  const pid = agent.child.pid!;
  const sub = await Raw.connect(agent.port, { clientId: 'dash-clean', clean: true, ...DASH });
  t.equal(await sub.subscribe('things/oven-1/telemetry/#', 1), 1);
  const rssBefore = rssMb(pid);
  await publishAll(agent.port, 0, N, 1, 'oven-pub-3');
  const stats = await statsUntil(agent, (s) => s['deliveriesWaited']! >= N - WINDOW);
  await sub.roundTrip();
  t.equal(sub.publishes.length, WINDOW, `exactly ${WINDOW} sent`);
  t.same(sub.publishes.map(indexOf), range(0, WINDOW), 'the first ones, in order');
  t.equal(stats['deliveriesWaited'], N - WINDOW, `${N - WINDOW} had to wait`);
  t.equal(stats['deliveriesDroppedWaiting'], N - WINDOW - WAIT, `${N - WINDOW - WAIT} of them dropped, oldest first (status: deliveriesDroppedWaiting)`);
  t.ok(stats['sessionsWaitingBytes']! > 0, `the ${WAIT} waiting are counted against sessions.maxTotalQueuedBytes (${stats['sessionsWaitingBytes']} bytes)`);
  t.equal(stats['sessionsQueued'], 0, 'nothing in the session store: a clean session');
  const rssAfter = rssMb(pid);
  t.ok(rssAfter - rssBefore < 48, `agent RSS ${rssBefore.toFixed(1)} MB -> ${rssAfter.toFixed(1)} MB`);
  t.equal(agent.logs().filter((l) => /in-flight window full/.test(l) && /"clientId":"dash-clean"/.test(l)).length, 1, 'logged once');

  let acked = 0;
  const ackAll = setInterval(() => {
    const n = sub.publishes.length;
    if (n > acked) sub.ack(sub.publishes.slice(acked, n));
    acked = n;
  }, 5);
  t.teardown(() => clearInterval(ackAll));
  t.ok(await until(() => sub.publishes.length >= WINDOW + WAIT, 30_000), `acknowledged, the ${WAIT} waiting ones come`);
  const drained = await statsUntil(agent, (s) => s['sessionsWaitingBytes'] === 0);
  clearInterval(ackAll);
  await sub.roundTrip();
  t.equal(sub.publishes.length, WINDOW + WAIT, 'and no more');
  t.same(sub.publishes.slice(WINDOW).map(indexOf), range(N - WAIT, N), 'the newest, in order');
  t.equal(drained['sessionsWaitingBytes'], 0, 'their bytes given back');
  sub.end();
});

t.test('QoS 2: a message is in flight until its PUBCOMP (a PUBREC alone does not free its place)', async (t) => {
  const agent = await agentFor(t, { config: { limits: { maxInflightOutbound: WINDOW } } });
  const M = 200;
  const sub = await Raw.connect(agent.port, { clientId: 'dash-qos2', clean: true, ...DASH });
  t.equal(await sub.subscribe('things/oven-1/telemetry/#', 2), 2);
  await publishAll(agent.port, 0, M, 2, 'oven-pub-4');
  await statsUntil(agent, (s) => s['deliveriesWaited']! >= M - WINDOW);
  await sub.roundTrip();
  t.equal(sub.publishes.length, WINDOW, `${WINDOW} sent`);
  t.ok(sub.publishes.every((p) => p.qos === 2), 'at QoS 2');
  sub.ack(sub.publishes); // PUBREC
  t.ok(await until(() => sub.pubrels.length >= WINDOW, 15_000), 'each PUBREC answered with PUBREL');
  await sub.roundTrip();
  t.equal(sub.publishes.length, WINDOW, 'no new PUBLISH while they await PUBCOMP');
  sub.sendAll(sub.pubrels.slice(0, 5).map((messageId) => ({ cmd: 'pubcomp', messageId })));
  t.ok(await until(() => sub.publishes.length >= WINDOW + 5, 15_000), '5 PUBCOMPs: 5 more');
  await sub.roundTrip();
  t.equal(sub.publishes.length, WINDOW + 5, 'exactly 5');
  t.same(sub.publishes.map(indexOf), range(0, WINDOW + 5), 'in order');
  sub.end();
});

t.test('an action waiting for a clean session\'s window keeps its sender\'s authority: decided again when sent, then delivered', async (t) => {
  const agent = await agentFor(t, { config: { limits: { maxInflightOutbound: 2 } } });
  const device = await Raw.connect(agent.port, { clientId: 'oven-1', clean: true, ...OVEN });
  t.equal(await device.subscribe('things/oven-1/commands/#', 1), 1);
  const anna = await connect(agent.port, { clientId: 'anna', username: 'tech-anna', password: 'anna-pass' });
  for (let i = 0; i < 5; i++) await anna.client.publishAsync(`things/oven-1/commands/c${i}`, `${i}:cmd`, { qos: 1 });
  await statsUntil(agent, (s) => s['deliveriesWaited']! >= 3);
  await device.roundTrip();
  t.equal(device.publishes.length, 2, 'two sent, three wait');
  let acked = 0;
  const ackAll = setInterval(() => {
    const n = device.publishes.length;
    if (n > acked) device.ack(device.publishes.slice(acked, n));
    acked = n;
  }, 5);
  t.teardown(() => clearInterval(ackAll));
  t.ok(await until(() => device.publishes.length >= 5, 15_000), 'acknowledged, the three waiting commands are delivered');
  clearInterval(ackAll);
  t.same(device.publishes.map(indexOf), [0, 1, 2, 3, 4], 'in order');
  const stats = await brokerStats(agent);
  t.equal(stats['actionsRefusedAtDelivery'], 0, 'none refused at delivery (NO_AUTHORITY would be)');
  device.end();
  await endAll(anna);
});
