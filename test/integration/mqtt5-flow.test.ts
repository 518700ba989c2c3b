// MQTT 5 flow control and size limits on the local listener (src/broker/flow-control.ts): the client's
// Receive Maximum caps what is in flight to it, ours (limits.maxInflightPerClient) is enforced with
// DISCONNECT 0x93, a message larger than the client's Maximum Packet Size is not sent to it (and does
// not block what follows), a packet over limits.maxPacketBytes gets DISCONNECT 0x95, topic aliases
// (limits.maxTopicAliases) are authorized under the topic they stand for, and a keepalive above
// limits.keepaliveLimitSeconds is answered with Server Keep Alive. Raw clients (test/helpers/raw-mqtt.ts)
// decide every acknowledgement; "nothing more arrives" is checked once the agent's status counters
// say the message was handled, after a PINGREQ's PINGRESP (written after anything sent before it).
import t from 'tap';
import { join } from 'node:path';
import type { Packet } from 'mqtt-packet';
import { controlRequest } from '../../src/agent/control.js';
import { readAudit } from '../../src/audit/audit-log.js';
import { agentFor, sleep, type AgentProcess } from '../helpers/agent.js';
import { RawMqtt } from '../helpers/raw-mqtt.js';

type Pub = { cmd: 'publish'; topic: string; payload: Buffer; messageId?: number; qos: number; properties?: Record<string, unknown> };
type Ack = { cmd: string; messageId?: number; reasonCode?: number; returnCode?: number; properties?: Record<string, unknown> };

const OVEN = ['oven-1', 'oven-1-token'] as const;
const DASH = ['dashboard', 'dashboard-secret'] as const;
const MAX_PACKET = 4096;
const INBOUND = 3;
const ALIASES = 4;
const KEEPALIVE_LIMIT = 30;

let agent: AgentProcess;
t.before(async () => {
  agent = await agentFor(t, { config: { limits: { maxInflightPerClient: INBOUND, maxPacketBytes: MAX_PACKET, maxTopicAliases: ALIASES, keepaliveLimitSeconds: KEEPALIVE_LIMIT } } });
});

async function v5(clientId: string, who: readonly [string, string], extra: Record<string, unknown> = {}): Promise<{ c: RawMqtt; connack: Ack }> {
  const c = await RawMqtt.open(agent.port, 5);
  const connack = (await c.connect(clientId, who[0], who[1], { keepalive: 20, ...extra })) as Ack;
  return { c, connack };
}

const publishes = (c: RawMqtt): Pub[] => c.packets.filter((p) => p.cmd === 'publish') as unknown as Pub[];
const payloads = (c: RawMqtt): string[] => publishes(c).map((p) => String(p.payload));

async function stats(): Promise<Record<string, number>> {
  const r = await controlRequest(agent.stateDir, { cmd: 'status' });
  if (!r.ok) throw new Error('status failed');
  return (r.status as { broker: Record<string, number> }).broker;
}

async function statsUntil(pred: (s: Record<string, number>) => boolean, timeoutMs = 30_000): Promise<Record<string, number>> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const s = await stats();
    if (pred(s) || Date.now() > end) return s;
    await sleep(50);
  }
}

/** Everything the agent wrote to the client before now has arrived (PINGRESP comes after it). */
async function settled(c: RawMqtt): Promise<boolean> {
  const before = c.packets.filter((p) => p.cmd === 'pingresp').length;
  c.send({ cmd: 'pingreq' });
  return (await c.next(() => c.packets.filter((p) => p.cmd === 'pingresp').length > before, 20_000)) !== undefined;
}

async function subscribe(c: RawMqtt, topic: string, qos = 1): Promise<number | undefined> {
  const id = 100 + c.packets.length;
  c.send({ cmd: 'subscribe', messageId: id, subscriptions: [{ topic, qos }] });
  return ((await c.next((p) => p.cmd === 'suback' && p.messageId === id, 20_000)) as { granted?: number[] } | undefined)?.granted?.[0];
}

async function publish(c: RawMqtt, topic: string, payload: string | Buffer, messageId: number, properties?: Record<string, unknown>): Promise<Ack | undefined> {
  c.send({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 1, messageId, ...(properties ? { properties } : {}) });
  return (await c.next((p) => p.cmd === 'puback' && p.messageId === messageId, 20_000)) as Ack | undefined;
}

t.test('CONNACK advertises Receive Maximum, Maximum Packet Size and Topic Alias Maximum from the configuration', async (t) => {
  const { c, connack } = await v5('dash-caps', DASH);
  t.equal(connack.reasonCode, 0);
  t.match(connack.properties, { receiveMaximum: INBOUND, maximumPacketSize: MAX_PACKET, topicAliasMaximum: ALIASES });
  c.end();
});

t.test('outbound Receive Maximum [MQTT-3.3.4-9]: a client with receiveMaximum 2 that does not acknowledge gets 2 QoS 1 PUBLISHes; the 3rd after it PUBACKs one', async (t) => {
  const sub = await v5('dash-rm', DASH, { properties: { receiveMaximum: 2 } });
  t.teardown(() => sub.c.end());
  t.equal(await subscribe(sub.c, 'things/oven-1/telemetry/rm'), 1, 'subscribed at QoS 1');
  const oven = await v5('oven-rm', OVEN);
  t.teardown(() => oven.c.end());
  const waited = (await stats())['deliveriesWaited'] ?? 0;
  for (const [i, m] of ['m1', 'm2', 'm3'].entries()) t.equal((await publish(oven.c, 'things/oven-1/telemetry/rm', m, i + 1))?.reasonCode, 0, `${m} accepted`);
  t.ok(await sub.c.next(() => publishes(sub.c).length >= 2, 20_000), 'two arrive');
  const s = await statsUntil((x) => (x['deliveriesWaited'] ?? 0) > waited);
  t.equal(s['deliveriesWaited'], waited + 1, 'the third waits for the window (status: deliveriesWaited)');
  t.ok(await settled(sub.c), 'PINGRESP');
  t.same(payloads(sub.c), ['m1', 'm2'], 'exactly two in flight');
  t.ok(publishes(sub.c).every((p) => p.qos === 1), 'at QoS 1');
  sub.c.send({ cmd: 'puback', messageId: publishes(sub.c)[0]!.messageId });
  t.ok(await sub.c.next(() => publishes(sub.c).length >= 3, 20_000), 'the third arrives after a PUBACK');
  t.same(payloads(sub.c), ['m1', 'm2', 'm3'], 'in order');
  t.ok(await settled(sub.c), 'PINGRESP');
  t.equal(publishes(sub.c).length, 3, 'nothing else');
});

t.test('inbound Receive Maximum [MQTT-3.3.4-7/8]: one QoS 2 PUBLISH more than limits.maxInflightPerClient awaiting PUBREL: DISCONNECT 0x93, then closed, logged', async (t) => {
  const { c } = await v5('oven-flood5', OVEN);
  const qos2 = Array.from({ length: INBOUND + 1 }, (_, i) => c.bytes({ cmd: 'publish', topic: 'things/oven-1/telemetry/q2', payload: Buffer.from(`q${i}`), qos: 2, messageId: i + 1 }));
  c.socket.write(Buffer.concat(qos2));
  const disconnect = (await c.next((p) => p.cmd === 'disconnect', 20_000)) as Ack | undefined;
  t.equal(disconnect?.reasonCode, 0x93, 'DISCONNECT 0x93 Receive Maximum exceeded');
  t.equal(disconnect?.properties?.['reasonString'], 'Receive Maximum exceeded', 'with a reason string');
  await Promise.race([c.whenClosed, sleep(20_000)]);
  t.ok(c.closed, 'then the connection is closed');
  t.equal(c.packets.at(-1)?.cmd, 'disconnect', 'nothing follows the DISCONNECT [MQTT-3.14.4-1]');
  t.notOk(c.packets.some((p) => p.cmd === 'pubrec' && p.messageId === INBOUND + 1), 'the one over the maximum is not PUBREC\'d');
  t.match(await agent.waitLog(/too many QoS 2 messages awaiting PUBREL.*oven-flood5|oven-flood5.*too many QoS 2 messages awaiting PUBREL/), new RegExp(`"max":${INBOUND}`), 'logged as for 3.1.1');
  // MQTT 3.1.1 has no server DISCONNECT: closed, as before.
  const v4 = await RawMqtt.open(agent.port, 4);
  await v4.connect('oven-flood4', OVEN[0], OVEN[1], { keepalive: 20 });
  v4.socket.write(Buffer.concat(Array.from({ length: INBOUND + 1 }, (_, i) => v4.bytes({ cmd: 'publish', topic: 'things/oven-1/telemetry/q2', payload: Buffer.from('x'), qos: 2, messageId: i + 1 }))));
  await Promise.race([v4.whenClosed, sleep(20_000)]);
  t.ok(v4.closed, '3.1.1: closed');
  t.notOk(v4.packets.some((p) => p.cmd === 'disconnect'), '3.1.1: no DISCONNECT');
  t.ok(await agent.waitLog(/too many QoS 2 messages awaiting PUBREL.*oven-flood4|oven-flood4.*too many QoS 2 messages awaiting PUBREL/), '3.1.1: logged');
});

t.test('outbound Maximum Packet Size [MQTT-3.1.2-24]: a message larger than the subscriber\'s is not sent to it, counted and logged once; the next one still arrives', async (t) => {
  // A persistent session with a window of one: the dropped message must leave its queue and window.
  const sub = await v5('dash-mps', DASH, { clean: true, properties: { maximumPacketSize: 200, receiveMaximum: 1, sessionExpiryInterval: 300 } });
  t.teardown(() => sub.c.end());
  t.equal(await subscribe(sub.c, 'things/oven-1/telemetry/size'), 1);
  const other = await v5('dash-big', DASH);
  t.teardown(() => other.c.end());
  t.equal(await subscribe(other.c, 'things/oven-1/telemetry/size'), 1, 'another subscriber without a limit');
  const oven = await v5('oven-size', OVEN);
  t.teardown(() => oven.c.end());
  const before = await stats();
  const big = Buffer.alloc(1024, 'b');
  t.equal((await publish(oven.c, 'things/oven-1/telemetry/size', 'small-1', 1))?.reasonCode, 0);
  t.equal((await publish(oven.c, 'things/oven-1/telemetry/size', big, 2))?.reasonCode, 0, 'the 1 KB message is accepted');
  t.equal((await publish(oven.c, 'things/oven-1/telemetry/size', big, 3, { userProperties: { k: 'v' } }))?.reasonCode, 0, 'and one with properties');
  t.equal((await publish(oven.c, 'things/oven-1/telemetry/size', 'small-2', 4))?.reasonCode, 0);
  // Only small-1 is in flight (receiveMaximum 1): the rest wait in the session's queue.
  t.ok(await sub.c.next(() => publishes(sub.c).length >= 1, 20_000), 'small-1 arrives');
  t.ok(await other.c.next(() => publishes(other.c).length >= 4, 20_000), 'the other subscriber gets all four');
  sub.c.send({ cmd: 'puback', messageId: publishes(sub.c)[0]!.messageId });
  t.ok(await sub.c.next(() => publishes(sub.c).length >= 2, 20_000), 'the next one arrives once small-1 is acknowledged');
  t.same(payloads(sub.c), ['small-1', 'small-2'], 'the two small ones; the 1 KB ones were skipped and did not hold the window');
  const s = await statsUntil((x) => (x['deliveriesTooLarge'] ?? 0) >= (before['deliveriesTooLarge'] ?? 0) + 2);
  t.equal(s['deliveriesTooLarge'], (before['deliveriesTooLarge'] ?? 0) + 2, 'counted (status: deliveriesTooLarge)');
  sub.c.send({ cmd: 'puback', messageId: publishes(sub.c)[1]!.messageId });
  t.ok(await settled(sub.c), 'PINGRESP');
  t.equal(publishes(sub.c).length, 2, 'nothing else arrives');
  t.ok(publishes(sub.c).every((p) => p.payload.length < 200), 'nothing over its maximum');
  t.equal(agent.logs().filter((l) => /Maximum Packet Size/.test(l) && /dash-mps/.test(l)).length, 1, 'logged once');
  // A QoS 0 one is dropped too.
  const sub0 = await v5('dash-mps0', DASH, { properties: { maximumPacketSize: 200 } });
  t.teardown(() => sub0.c.end());
  t.equal(await subscribe(sub0.c, 'things/oven-1/telemetry/size0', 0), 0);
  oven.c.send({ cmd: 'publish', topic: 'things/oven-1/telemetry/size0', payload: big, qos: 0 });
  oven.c.send({ cmd: 'publish', topic: 'things/oven-1/telemetry/size0', payload: Buffer.from('small-0'), qos: 0 });
  t.ok(await sub0.c.next((p) => p.cmd === 'publish', 20_000), 'QoS 0: the small one arrives');
  t.ok(await settled(sub0.c));
  t.same(payloads(sub0.c), ['small-0'], 'QoS 0: the large one does not');
});

t.test('inbound packet over limits.maxPacketBytes: an MQTT 5 client gets DISCONNECT 0x95 Packet too large, then the close', async (t) => {
  const { c } = await v5('oven-huge', OVEN);
  // Only the header and part of the body: the agent decides from the header, before the body comes.
  const bytes = c.bytes({ cmd: 'publish', topic: 'things/oven-1/telemetry/huge', payload: Buffer.alloc(MAX_PACKET), qos: 1, messageId: 1 });
  c.socket.write(bytes.subarray(0, 100));
  const disconnect = (await c.next((p) => p.cmd === 'disconnect', 20_000)) as Ack | undefined;
  t.equal(disconnect?.reasonCode, 0x95, 'DISCONNECT 0x95');
  await Promise.race([c.whenClosed, sleep(20_000)]);
  t.ok(c.closed, 'closed');
  t.ok(await agent.waitLog(/closing connection: packet limit.*oven-huge|oven-huge.*closing connection: packet limit/), 'logged');
});

t.test('topic aliases: authorized, delivered and audited under the topic they stand for; an alias over the maximum: DISCONNECT 0x94', async (t) => {
  const sub = await v5('dash-alias', DASH);
  t.teardown(() => sub.c.end());
  t.equal(await subscribe(sub.c, 'things/oven-1/telemetry/#'), 1);
  const { c } = await v5('oven-alias', OVEN);
  t.equal((await publish(c, 'things/oven-1/telemetry/aliased', 'set', 1, { topicAlias: 1 }))?.reasonCode, 0, 'alias 1 registered with an allowed topic');
  t.equal((await publish(c, '', 'used', 2, { topicAlias: 1 }))?.reasonCode, 0, 'alias 1 used: PUBACK 0');
  t.ok(await sub.c.next(() => publishes(sub.c).filter((p) => p.topic === 'things/oven-1/telemetry/aliased').length >= 2, 20_000), 'both arrive');
  const got = publishes(sub.c).filter((p) => p.topic === 'things/oven-1/telemetry/aliased');
  t.same(got.map((p) => String(p.payload)), ['set', 'used'], 'on the real topic');
  t.ok(got.every((p) => p.properties?.['topicAlias'] === undefined), 'without the publisher\'s alias');
  // An alias for a topic oven-1 may not publish to: registering is refused, and so is every use.
  t.equal((await publish(c, 'things/mixer-1/telemetry/x', 'reg', 3, { topicAlias: 2 }))?.reasonCode, 0x87, 'registering on mixer-1\'s topic: 0x87');
  t.equal((await publish(c, '', 'use-1', 4, { topicAlias: 2 }))?.reasonCode, 0x87, 'using it: 0x87');
  t.equal((await publish(c, '', 'use-2', 5, { topicAlias: 2 }))?.reasonCode, 0x87, 'again: 0x87');
  t.notOk(c.closed, 'still connected');
  let audited: Awaited<ReturnType<typeof readAudit>> = [];
  const count = () => audited.reduce((n, e) => n + (e.count ?? 1), 0); // identical denials in a row are one line with a count
  for (const end = Date.now() + 20_000; count() < 3 && Date.now() < end; await sleep(100)) {
    audited = (await readAudit(join(agent.stateDir, 'audit'))).filter((e) => e.clientId === 'oven-alias' && e.decision === 'deny');
  }
  t.equal(count(), 3, 'each refusal audited');
  t.ok(audited.every((e) => e.topic === 'things/mixer-1/telemetry/x'), 'with the topic the alias stands for');
  // Over the maximum: a protocol error.
  c.send({ cmd: 'publish', topic: 'things/oven-1/telemetry/aliased', payload: Buffer.from('x'), qos: 1, messageId: 6, properties: { topicAlias: ALIASES + 1 } });
  const disconnect = (await c.next((p: Packet) => p.cmd === 'disconnect', 20_000)) as Ack | undefined;
  t.equal(disconnect?.reasonCode, 0x94, `alias ${ALIASES + 1}: DISCONNECT 0x94 Topic Alias invalid`);
  await Promise.race([c.whenClosed, sleep(20_000)]);
  t.ok(c.closed, 'closed');
  t.ok(await settled(sub.c));
  t.notOk(payloads(sub.c).some((p) => p === 'reg' || p.startsWith('use-')), 'none of the refused were delivered');
});

t.test('keepalive limit: an MQTT 5 client asking for more (or none) is accepted with Server Keep Alive = the limit; 3.1.1 is refused as before', async (t) => {
  for (const keepalive of [KEEPALIVE_LIMIT + 1, 0]) {
    const { c, connack } = await v5(`dash-ka-${keepalive}`, DASH, { keepalive });
    t.equal(connack.reasonCode, 0, `keepalive ${keepalive}: accepted`);
    t.equal(connack.properties?.['serverKeepAlive'], KEEPALIVE_LIMIT, `keepalive ${keepalive}: Server Keep Alive ${KEEPALIVE_LIMIT}`);
    c.end();
  }
  const within = await v5('dash-ka-ok', DASH, { keepalive: KEEPALIVE_LIMIT });
  t.equal(within.connack.reasonCode, 0);
  t.equal(within.connack.properties?.['serverKeepAlive'], undefined, 'within the limit: no Server Keep Alive');
  within.c.end();
  const v4 = await RawMqtt.open(agent.port, 4);
  const refused = (await v4.connect('dash-ka-v4', DASH[0], DASH[1], { keepalive: KEEPALIVE_LIMIT + 1 })) as Ack;
  t.equal(refused.returnCode, 3, '3.1.1: CONNACK 0x03');
  v4.end();
});

t.test('Server Keep Alive is enforced: a silent MQTT 5 client that asked for no keepalive is closed after 1.5 times the limit', async (t) => {
  const short = await agentFor(t, { config: { limits: { keepaliveLimitSeconds: 1 } } });
  const c = await RawMqtt.open(short.port, 5);
  const connack = (await c.connect('dash-silent', DASH[0], DASH[1], { keepalive: 0 })) as Ack;
  t.equal(connack.properties?.['serverKeepAlive'], 1, 'Server Keep Alive 1');
  const at = Date.now();
  await Promise.race([c.whenClosed, sleep(30_000)]);
  t.ok(c.closed, 'closed for silence');
  t.ok(Date.now() - at >= 1000, 'not before the keepalive');
  t.ok(await short.waitLog(/dash-silent.*keepalive|keepalive.*dash-silent/), 'logged as a keepalive timeout');
});
