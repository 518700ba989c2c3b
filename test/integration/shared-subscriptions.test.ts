// MQTT 5 shared subscriptions ($share/{ShareName}/{filter}, 4.8.2) on the local listener
// (src/broker/shared-subscriptions.ts): each message to one member of the group, authorized for the
// member it goes to (one that may not read it is passed over), subscribing decided like the filter
// itself, members leaving on UNSUBSCRIBE and disconnect, no retained messages, the CONNACK
// advertising them, the marker namespace closed to publishers, malformed filters closing the
// connection, MQTT 3.1.1 members, persistent members (also across a restart), mosquitto_sub members,
// and a new snapshot taking effect at the next delivery.
import t from 'tap';
import { join } from 'node:path';
import { readAudit } from '../../src/audit/audit-log.js';
import { controlRequest } from '../../src/agent/control.js';
import type { SnapshotPayload } from '../../src/policy/schema.js';
import { agentFor, cleanup, connect, endAll, exampleSnapshot, startAgent, mosquittoSub, sleep, subscribe, until, type AgentProcess, type Connected } from '../helpers/agent.js';
import { RawMqtt } from '../helpers/raw-mqtt.js';

type Ack = { cmd: string; messageId?: number; reasonCode?: number; granted?: number[]; properties?: Record<string, unknown> };

let agent: AgentProcess;
t.before(async () => {
  agent = await agentFor(t);
});

const ANNA = { username: 'tech-anna', password: 'anna-pass' };
const CARL = { username: 'viewer-carl', password: 'carl-pass' };
const ADMIN = { username: 'plant-admin', password: 'admin-pass' };

function member(clientId: string, who: { username: string; password: string }, protocolVersion: 4 | 5 = 5, extra: Record<string, unknown> = {}): Promise<Connected> {
  return connect(agent.port, { clientId, ...who, protocolVersion, ...extra });
}

async function device(thing: 'oven-1' | 'chiller-1', clientId = `${thing}-pub`): Promise<Connected> {
  return connect(agent.port, { clientId, username: thing, password: `${thing}-token`, protocolVersion: 5 });
}

/** Publishes `n` numbered telemetry messages (QoS 1, in order) with payloads `${prefix}${i}`. */
async function publishN(d: Connected, thing: string, prefix: string, n: number, qos: 0 | 1 = 1): Promise<string[]> {
  const sent: string[] = [];
  for (let i = 0; i < n; i++) {
    await d.client.publishAsync(`things/${thing}/telemetry/temp`, `${prefix}${i}`, { qos });
    sent.push(`${prefix}${i}`);
  }
  return sent;
}

const payloads = (c: Connected, prefix: string): string[] => c.messages.map((m) => m.payload).filter((p) => p.startsWith(prefix));
const sorted = (a: string[]): string[] => [...a].sort();

t.test('CONNACK to an MQTT 5 client advertises shared subscriptions (the property is absent: available)', async (t) => {
  const raw = await RawMqtt.open(agent.port, 5);
  const connack = (await raw.connect('share-connack', ANNA.username, ANNA.password)) as Ack;
  t.equal(connack.reasonCode, 0);
  t.not(connack.properties?.['sharedSubscriptionAvailable'], false, 'not advertised as unavailable');
  t.equal(connack.properties?.['sharedSubscriptionAvailable'], undefined, 'absent, which means available (3.2.2.3.13)');
  t.ok(connack.properties?.['receiveMaximum'], 'the other properties are still there');
  raw.end();
});

t.test('two members of a group each get part of 10 messages, together all 10, once each', async (t) => {
  const a = await member('share-a', ANNA);
  const b = await member('share-b', ANNA);
  t.equal(await subscribe(a, '$share/g1/things/oven-1/telemetry/#', 1), 1, 'granted QoS 1');
  t.equal(await subscribe(b, '$share/g1/things/oven-1/telemetry/#', 1), 1);
  const oven = await device('oven-1');
  const sent = await publishN(oven, 'oven-1', 'g1-', 10);
  t.ok(await until(() => payloads(a, 'g1-').length + payloads(b, 'g1-').length >= 10, 20_000), 'all 10 delivered');
  await sleep(300); // a duplicate would come right behind
  const got = [...payloads(a, 'g1-'), ...payloads(b, 'g1-')];
  t.same(sorted(got), sorted(sent), 'exactly the 10 messages, each once');
  t.ok(payloads(a, 'g1-').length > 0 && payloads(b, 'g1-').length > 0, `both members got some (${payloads(a, 'g1-').length} + ${payloads(b, 'g1-').length})`);
  t.ok(a.messages.every((m) => m.topic === 'things/oven-1/telemetry/temp'), 'delivered on the topic published, not the share filter');
  await endAll(a, b, oven);
});

t.test('a member that may not read a thing never gets its messages: the other member gets all of them', async (t) => {
  // viewer-carl reads chiller-1 only; plant-admin reads oven-1 and chiller-1.
  const carl = await member('share-carl', CARL);
  const anna = await member('share-admin', ADMIN);
  t.equal(await subscribe(carl, '$share/g2/things/+/telemetry/#', 1), 1, 'carl may subscribe: the filter matches things he may read');
  t.equal(await subscribe(anna, '$share/g2/things/+/telemetry/#', 1), 1);
  const oven = await device('oven-1');
  const chiller = await device('chiller-1');
  const ovens = await publishN(oven, 'oven-1', 'o-', 10);
  const chillers = await publishN(chiller, 'chiller-1', 'c-', 10);
  const total = () => carl.messages.length + anna.messages.length;
  t.ok(await until(() => total() >= 20, 20_000), `all 20 delivered (${total()})`);
  await sleep(300);
  t.same(payloads(carl, 'o-'), [], 'carl gets none of oven-1\'s');
  t.same(sorted(payloads(anna, 'o-')), sorted(ovens), 'the admin gets every one of oven-1\'s');
  t.same(sorted([...payloads(carl, 'c-'), ...payloads(anna, 'c-')]), sorted(chillers), 'chiller-1\'s: each once, to one of them');
  t.ok(payloads(carl, 'c-').length > 0, 'carl takes his turn on what he may read');
  t.equal(total(), 20, 'nothing else');
  await endAll(carl, anna, oven, chiller);
});

t.test('a member a message is too large for (its Maximum Packet Size) is passed over for one that can take it', async (t) => {
  const small = await member('share-small', ANNA, 5, { properties: { maximumPacketSize: 128 } });
  const big = await member('share-big', ANNA);
  t.equal(await subscribe(small, '$share/g17/things/oven-1/telemetry/#', 1), 1);
  t.equal(await subscribe(big, '$share/g17/things/oven-1/telemetry/#', 1), 1);
  const oven = await device('oven-1', 'oven-1-size');
  const large: string[] = [];
  for (let i = 0; i < 6; i++) {
    const payload = `L${i}-${'x'.repeat(300)}`;
    await oven.client.publishAsync('things/oven-1/telemetry/temp', payload, { qos: 1 });
    large.push(payload);
  }
  const sent = await publishN(oven, 'oven-1', 's-', 6);
  t.ok(await until(() => payloads(big, 'L').length + payloads(small, 's-').length + payloads(big, 's-').length >= 12, 20_000), 'all 12 delivered');
  await sleep(300);
  t.same(payloads(small, 'L'), [], 'none of the large ones to the small member');
  t.same(sorted(payloads(big, 'L')), sorted(large), 'all large ones to the other');
  t.same(sorted([...payloads(small, 's-'), ...payloads(big, 's-')]), sorted(sent), 'the small ones shared, each once');
  t.ok(payloads(small, 's-').length > 0, 'the small member took its turns');
  await endAll(small, big, oven);
});

t.test('a subscriber without any right to the filter: SUBACK 0x87, audited with the inner filter; an allowed one in the same SUBSCRIBE is granted', async (t) => {
  const raw = await RawMqtt.open(agent.port, 5);
  await raw.connect('share-carl-87', CARL.username, CARL.password);
  raw.send({ cmd: 'subscribe', messageId: 7, subscriptions: [{ topic: '$share/g3/things/oven-1/telemetry/#', qos: 1 }, { topic: '$share/g3/things/chiller-1/telemetry/#', qos: 1 }] });
  const suback = (await raw.next((p) => p.cmd === 'suback')) as Ack | undefined;
  t.same(suback?.granted, [0x87, 1], 'oven-1: 0x87 Not authorized; chiller-1: granted');
  let hit;
  for (const end = Date.now() + 20_000; !hit && Date.now() < end; await sleep(100)) {
    hit = (await readAudit(join(agent.stateDir, 'audit'))).find((e) => e.clientId === 'share-carl-87' && e.action === 'subscribe' && e.decision === 'deny');
  }
  t.match(hit, { principal: 'viewer-carl', topic: 'things/oven-1/telemetry/#' }, 'the refusal is audited with the inner filter');
  raw.end();
});

t.test('UNSUBSCRIBE and disconnect remove a member', async (t) => {
  const a = await member('share-u-a', ANNA);
  const b = await member('share-u-b', ANNA);
  const c = await member('share-u-c', ANNA);
  for (const m of [a, b, c]) t.equal(await subscribe(m, '$share/g4/things/oven-1/telemetry/#', 1), 1);
  const oven = await device('oven-1');
  await a.client.unsubscribeAsync('$share/g4/things/oven-1/telemetry/#');
  await c.client.endAsync();
  const sent = await publishN(oven, 'oven-1', 'u-', 10);
  t.ok(await until(() => payloads(b, 'u-').length >= 10, 20_000), 'the remaining member gets all 10');
  await sleep(300);
  t.same(sorted(payloads(b, 'u-')), sorted(sent), 'each once');
  t.same(payloads(a, 'u-'), [], 'the unsubscribed member none');
  t.same(payloads(c, 'u-'), [], 'the disconnected member none');
  // With no member left, the group drops: a member joining later does not get what went before.
  await b.client.endAsync();
  await publishN(oven, 'oven-1', 'gone-', 3);
  const d = await member('share-u-d', ANNA);
  t.equal(await subscribe(d, '$share/g4/things/oven-1/telemetry/#', 1), 1);
  await publishN(oven, 'oven-1', 'after-', 1);
  t.ok(await until(() => payloads(d, 'after-').length === 1, 20_000), 'the new member gets what comes after');
  t.same(payloads(d, 'gone-'), [], 'nothing of what no member was there for');
  await endAll(a, d, oven);
});

t.test('a normal and a shared subscription of the same client both receive', async (t) => {
  const x = await member('share-x', ADMIN);
  t.equal(await subscribe(x, 'things/chiller-1/telemetry/#', 1), 1);
  t.equal(await subscribe(x, '$share/g5/things/oven-1/telemetry/#', 1), 1);
  const oven = await device('oven-1');
  const chiller = await device('chiller-1');
  await publishN(oven, 'oven-1', 'n-o', 3);
  await publishN(chiller, 'chiller-1', 'n-c', 3);
  t.ok(await until(() => payloads(x, 'n-o').length === 3 && payloads(x, 'n-c').length === 3, 20_000), 'both subscriptions deliver');
  await endAll(x, oven, chiller);
});

t.test('a client whose ordinary and shared subscriptions match the same message gets it twice when the group picks it (4.8.2)', async (t) => {
  const oven = await device('oven-1', 'oven-1-twice');
  for (const [ordinary, sharedQos, group] of [[1, 1, 'g12'], [0, 0, 'g13'], [0, 1, 'g14'], [1, 0, 'g15']] as const) {
    const x = await member(`share-twice-${group}`, ADMIN);
    t.equal(await subscribe(x, 'things/oven-1/telemetry/#', ordinary), ordinary);
    t.equal(await subscribe(x, `$share/${group}/things/oven-1/telemetry/#`, sharedQos), sharedQos);
    const sent = await publishN(oven, 'oven-1', `${group}-`, 3);
    t.ok(await until(() => payloads(x, `${group}-`).length >= 6, 20_000), `ordinary QoS ${ordinary}, shared QoS ${sharedQos}: each message twice (${payloads(x, `${group}-`).length})`);
    await sleep(200);
    t.same(sorted(payloads(x, `${group}-`)), sorted([...sent, ...sent]), 'exactly twice');
    await endAll(x);
  }
  await endAll(oven);
});

t.test('a shared subscription gets no retained messages; the granted QoS bounds the delivery', async (t) => {
  const oven = await device('oven-1', 'oven-1-retain');
  await oven.client.publishAsync('things/oven-1/telemetry/retained', 'kept', { qos: 1, retain: true });
  const plain = await member('share-r-plain', ANNA);
  await subscribe(plain, 'things/oven-1/telemetry/retained', 0);
  t.ok(await until(() => payloads(plain, 'kept').length === 1, 20_000), 'the retained message is there (an ordinary subscription gets it)');
  const raw = await RawMqtt.open(agent.port, 5);
  await raw.connect('share-r', ANNA.username, ANNA.password);
  raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$share/g6/things/oven-1/telemetry/#', qos: 0 }] });
  t.same(((await raw.next((p) => p.cmd === 'suback')) as Ack | undefined)?.granted, [0]);
  await oven.client.publishAsync('things/oven-1/telemetry/temp', 'live', { qos: 1 });
  const first = (await raw.next((p) => p.cmd === 'publish')) as (Ack & { payload: Buffer; qos: number }) | undefined;
  t.equal(first && String(first.payload), 'live', 'the first message is the live one: no retained message came before it');
  t.equal(first?.qos, 0, 'at the granted QoS 0');
  await oven.client.publishAsync('things/oven-1/telemetry/retained', '', { qos: 1, retain: true });
  raw.end();
  await endAll(plain, oven);
});

t.test('nobody can publish onto the marker namespace, nor subscribe to it directly', async (t) => {
  const m = await member('share-m', ANNA);
  t.equal(await subscribe(m, '$share/g7/things/oven-1/telemetry/#', 1), 1);
  const raw = await RawMqtt.open(agent.port, 5);
  await raw.connect('share-m-pub', ANNA.username, ANNA.password);
  let id = 1;
  for (const topic of ['$edgewarden-share/g7/things/oven-1/telemetry/x', '$edgewarden-share/g7/things/oven-1/telemetry/temp', '$share/g7/things/oven-1/telemetry/x']) {
    raw.send({ cmd: 'publish', topic, payload: Buffer.from('forged'), qos: 1, messageId: id });
    const ack = (await raw.next((p) => p.cmd === 'puback' && p.messageId === id)) as Ack | undefined;
    t.equal(ack?.reasonCode, 0x87, `PUBLISH ${topic}: PUBACK 0x87`);
    id++;
  }
  raw.send({ cmd: 'subscribe', messageId: 50, subscriptions: [{ topic: '$edgewarden-share/g7/things/oven-1/telemetry/#', qos: 1 }] });
  t.same(((await raw.next((p) => p.cmd === 'suback')) as Ack | undefined)?.granted, [0x87], 'SUBSCRIBE to a marker: 0x87');
  const oven = await device('oven-1', 'oven-1-m');
  await oven.client.publishAsync('things/oven-1/telemetry/temp', 'real', { qos: 1 });
  t.ok(await until(() => m.messages.length >= 1, 20_000));
  await sleep(300);
  t.same(m.messages.map((x) => x.payload), ['real'], 'the member got the real message and nothing forged');
  raw.end();
  await endAll(m, oven);
});

t.test('a malformed shared subscription, or No Local on one, is a protocol error: the connection is closed', async (t) => {
  for (const [topic, nl] of [['$share//things/oven-1/telemetry/#', false], ['$share/g+/things/oven-1/telemetry/#', false], ['$share/g', false], ['$share/g/', false], ['$share/g8/things/oven-1/telemetry/#', true]] as const) {
    const raw = await RawMqtt.open(agent.port, 5);
    await raw.connect('share-bad', ANNA.username, ANNA.password);
    raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos: 1, nl }] });
    const closed = await Promise.race([raw.whenClosed.then(() => true), sleep(20_000).then(() => false)]);
    t.ok(closed, `${topic}${nl ? ' (No Local)' : ''}: closed`);
    t.equal((raw.packets.find((p) => p.cmd === 'disconnect') as Ack | undefined)?.reasonCode, 0x82, 'after DISCONNECT 0x82 Protocol Error');
    t.notOk(raw.packets.some((p) => p.cmd === 'suback' && (p as Ack).granted?.[0] !== undefined && (p as Ack).granted![0]! < 0x80), 'never granted');
    raw.end();
  }
});

t.test('a malformed shared subscription is audited as a protocol violation; an MQTT 3.1.1 client is closed too', async (t) => {
  const raw = await RawMqtt.open(agent.port, 4);
  await raw.connect('share-bad-v4', ANNA.username, ANNA.password);
  raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$share//x', qos: 0 }] });
  t.ok(await Promise.race([raw.whenClosed.then(() => true), sleep(20_000).then(() => false)]), 'closed');
  let hit;
  for (const end = Date.now() + 20_000; !hit && Date.now() < end; await sleep(100)) {
    hit = (await readAudit(join(agent.stateDir, 'audit'))).find((e) => e.clientId === 'share-bad-v4' && e.action === 'subscribe' && e.decision === 'deny');
  }
  t.match(hit, { principal: 'tech-anna', reason: 'TOPIC_DENIED' }, 'audited');
  raw.end();
});

t.test('MQTT 3.1.1 clients share the same way', async (t) => {
  const a = await member('share-v4-a', ANNA, 4);
  const b = await member('share-v4-b', ANNA, 4);
  t.equal(await subscribe(a, '$share/g9/things/oven-1/telemetry/#', 1), 1);
  t.equal(await subscribe(b, '$share/g9/things/oven-1/telemetry/#', 1), 1);
  const oven = await device('oven-1');
  const sent = await publishN(oven, 'oven-1', 'v4-', 10);
  t.ok(await until(() => payloads(a, 'v4-').length + payloads(b, 'v4-').length >= 10, 20_000));
  await sleep(300);
  t.same(sorted([...payloads(a, 'v4-'), ...payloads(b, 'v4-')]), sorted(sent), 'each once');
  t.ok(payloads(a, 'v4-').length > 0 && payloads(b, 'v4-').length > 0, 'both got some');
  const carl = await member('share-v4-carl', CARL, 4);
  t.equal(await subscribe(carl, '$share/g9/things/oven-1/telemetry/#', 1), 0x80, 'refused: SUBACK 0x80');
  await endAll(a, b, oven, carl);
});

t.test('a persistent session keeps its shared subscription: it rejoins when it resumes', async (t) => {
  const opts = { clean: false, properties: { sessionExpiryInterval: 300 } };
  let p = await member('share-p', ANNA, 5, opts);
  t.equal(await subscribe(p, '$share/g10/things/oven-1/telemetry/#', 1), 1);
  await p.client.endAsync();
  p = await member('share-p', ANNA, 5, opts);
  const oven = await device('oven-1');
  await publishN(oven, 'oven-1', 'p-', 3);
  t.ok(await until(() => payloads(p, 'p-').length === 3, 20_000), 'the resumed session is a member again');
  await p.client.unsubscribeAsync('$share/g10/things/oven-1/telemetry/#');
  await endAll(p, oven);
});

t.test('after a restart, a resumed persistent session is a member again (its shared subscription is stored as its marker)', async (t) => {
  const first = await startAgent();
  let second: AgentProcess | undefined;
  t.teardown(async () => {
    await first.stop().catch(() => undefined);
    if (second) await second.stop();
    cleanup(first);
  });
  const opts = { clean: false, properties: { sessionExpiryInterval: 3600 } };
  const m = await connect(first.port, { clientId: 'share-restart', ...ANNA, protocolVersion: 5, ...opts });
  t.equal(await subscribe(m, '$share/g11/things/oven-1/telemetry/#', 1), 1);
  await m.client.endAsync();
  await first.stop();
  second = await startAgent({ stateDir: first.stateDir });
  const back = await connect(second.port, { clientId: 'share-restart', ...ANNA, protocolVersion: 5, ...opts });
  const oven = await connect(second.port, { clientId: 'oven-1-restart', username: 'oven-1', password: 'oven-1-token', protocolVersion: 5 });
  await publishN(oven, 'oven-1', 'rs-', 3);
  t.ok(await until(() => payloads(back, 'rs-').length === 3, 20_000), 'the restored session gets the group\'s messages');
  t.ok(back.messages.every((x) => x.topic === 'things/oven-1/telemetry/temp'), 'on their topics');
  await endAll(back, oven);
});

t.test('mosquitto_sub -V mqttv5 as members of a group', async (t) => {
  const args = (id: string) => ['-h', '127.0.0.1', '-p', String(agent.port), '-V', 'mqttv5', '-i', id, '-u', ANNA.username, '-P', ANNA.password, '-q', '1', '-t', '$share/mq/things/oven-1/telemetry/#', '-d'];
  const s1 = mosquittoSub(args('share-mosq-1'));
  const s2 = mosquittoSub(args('share-mosq-2'));
  t.teardown(async () => {
    await s1.stop();
    await s2.stop();
  });
  await s1.ready;
  await s2.ready;
  const oven = await device('oven-1');
  const sent = await publishN(oven, 'oven-1', 'mq-', 10);
  const got = (s: { lines: string[] }) => s.lines.filter((l) => l.startsWith('mq-'));
  t.ok(await until(() => got(s1).length + got(s2).length >= 10, 20_000), 'all 10 delivered');
  await sleep(300);
  t.same(sorted([...got(s1), ...got(s2)]), sorted(sent), 'each once');
  t.ok(got(s1).length > 0 && got(s2).length > 0, `both got some (${got(s1).length} + ${got(s2).length})`);
  await endAll(oven);
});

// Last: it changes the snapshot in force.
t.test('each delivery is decided under the snapshot in force: a member that lost the right gets nothing more', async (t) => {
  const carl = await member('share-snap-carl', CARL);
  const admin = await member('share-snap-admin', ADMIN);
  t.equal(await subscribe(carl, '$share/g16/things/chiller-1/telemetry/#', 1), 1);
  t.equal(await subscribe(admin, '$share/g16/things/chiller-1/telemetry/#', 1), 1);
  const chiller = await device('chiller-1', 'chiller-1-snap');
  await publishN(chiller, 'chiller-1', 'before-', 4);
  t.ok(await until(() => payloads(carl, 'before-').length + payloads(admin, 'before-').length >= 4, 20_000));
  t.ok(payloads(carl, 'before-').length > 0, 'carl took his turns while he could read chiller-1');
  // viewer-carl now reads pasteurizer-1 only (still connected, still a member).
  const bytes = exampleSnapshot(2, (p: SnapshotPayload) => {
    p.userAuthorizations = [{ customer: 'c-dairy', user: 'viewer-carl', things: ['pasteurizer-1'] }];
  });
  const r = await controlRequest(agent.stateDir, { cmd: 'install', snapshot: bytes.toString('base64'), source: 'test' });
  t.ok(r.ok, 'installed');
  const sent = await publishN(chiller, 'chiller-1', 'after-', 10);
  t.ok(await until(() => payloads(admin, 'after-').length >= 10, 20_000), 'the admin gets all 10');
  await sleep(300);
  t.same(sorted(payloads(admin, 'after-')), sorted(sent), 'each once');
  t.same(payloads(carl, 'after-'), [], 'carl none');
  t.ok(carl.client.connected, 'carl is still connected (and still a member)');
  await endAll(carl, admin, chiller);
});
