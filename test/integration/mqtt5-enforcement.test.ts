// What only MQTT 5 has gets around nothing: a will with a Will Delay Interval (and a snapshot that
// revokes its owner during the delay), will properties, subscription options (No Local, Retain As
// Published, Retain Handling), subscription identifiers, user properties, the payload format
// indicator, topic aliases, Clean Start 0 with a Session Expiry Interval. Every scenario of the 3.1.1
// enforcement tests runs over MQTT 5 too (broker-enforcement, action-authority, session-bounds,
// protocol-sessions' enforcing part); these are the MQTT 5-only ways in.
import t from 'tap';
import { join } from 'node:path';
import type { IPublishPacket } from 'mqtt-packet';
import { controlRequest } from '../../src/agent/control.js';
import { readAudit, type AuditEntry } from '../../src/audit/audit-log.js';
import type { SnapshotPayload } from '../../src/policy/schema.js';
import { agentFor, connect, endAll, exampleSnapshot, sleep, until, type AgentProcess } from '../helpers/agent.js';
import { RawMqtt } from '../helpers/raw-mqtt.js';

const OVEN = { username: 'oven-1', password: 'oven-1-token' };
const ANNA = { username: 'tech-anna', password: 'anna-pass' };
const BOB = { username: 'op-bob', password: 'bob-pass' };
const CARL = { username: 'viewer-carl', password: 'carl-pass' };
const INBOX = 'things/oven-1/commands/#';
type Ack = { cmd: string; messageId?: number; reasonCode?: number; granted?: number[] };

async function audited(agent: AgentProcess, pred: (e: AuditEntry) => boolean, timeoutMs = 20_000): Promise<AuditEntry | undefined> {
  for (const end = Date.now() + timeoutMs; Date.now() < end; await sleep(50)) {
    const hit = (await readAudit(join(agent.stateDir, 'audit'))).find(pred);
    if (hit) return hit;
  }
  return undefined;
}

async function raw(agent: AgentProcess, clientId: string, creds: { username: string; password: string }, extra: Record<string, unknown> = {}): Promise<RawMqtt> {
  const c = await RawMqtt.open(agent.port, 5);
  const connack = await c.connect(clientId, creds.username, creds.password, extra);
  if (connack.reasonCode !== 0) throw new Error(`${clientId}: CONNACK ${connack.reasonCode}`);
  return c;
}

const publishes = (c: RawMqtt) => c.packets.filter((p) => p.cmd === 'publish') as IPublishPacket[];
const payloads = (c: RawMqtt) => publishes(c).map((p) => p.payload.toString());

t.test('a will with a Will Delay Interval is decided for its owner when it fires: allowed, and refused once a snapshot revoked the owner during the delay', async (t) => {
  const agent = await agentFor(t);
  const oven = await connect(agent.port, { ...OVEN, clientId: 'oven-live', protocolVersion: 5 });
  await oven.client.subscribeAsync(INBOX, { qos: 1 });
  const will = (payload: string, delay: number) => ({ topic: 'things/oven-1/commands/stop', payload: Buffer.from(payload), qos: 1 as const, retain: false, properties: { willDelayInterval: delay, userProperties: { k: 'v' } } });

  const anna = await connect(agent.port, { ...ANNA, clientId: 'anna-w', protocolVersion: 5, properties: { sessionExpiryInterval: 30 }, will: will('anna-delayed', 1) });
  const lost = Date.now();
  anna.client.stream.destroy();
  t.ok(await until(() => oven.messages.some((m) => m.payload === 'anna-delayed'), 20_000), 'an authorized owner\'s delayed will is delivered');
  t.ok(Date.now() - lost >= 900, `after its delay (${Date.now() - lost} ms)`);
  t.match(await audited(agent, (e) => e.will === true && e.principal === 'tech-anna'), { decision: 'allow', action: 'EXECUTE_THING_COMMAND', topic: 'things/oven-1/commands/stop' }, 'audited as the owner\'s will');

  const bob = await connect(agent.port, { ...BOB, clientId: 'bob-w', protocolVersion: 5, properties: { sessionExpiryInterval: 60 }, will: will('bob-delayed', 4) });
  bob.client.stream.destroy();
  const r = await controlRequest(agent.stateDir, { cmd: 'install', snapshot: exampleSnapshot(2, (p: SnapshotPayload) => { p.users!.find((u) => u.id === 'op-bob')!.revoked = true; }).toString('base64'), source: 'test' });
  t.ok(r.ok, 'a snapshot revoking op-bob is installed');
  t.notOk((await readAudit(join(agent.stateDir, 'audit'))).some((e) => e.principal === 'op-bob' && e.will === true), 'before bob\'s will fired (else this test proves nothing)');
  t.match(await audited(agent, (e) => e.will === true && e.principal === 'op-bob'), { decision: 'deny', reason: 'REVOKED', clientId: 'bob-w', snapshotVersion: 2 }, 'when the delay ends the will is refused for its revoked owner, audited as a will');
  const anna2 = await connect(agent.port, { ...ANNA, clientId: 'anna-marker', protocolVersion: 5 });
  await anna2.client.publishAsync('things/oven-1/commands/marker', 'marker', { qos: 1 });
  t.ok(await until(() => oven.messages.some((m) => m.payload === 'marker'), 10_000));
  t.same(oven.messages.map((m) => m.payload), ['anna-delayed', 'marker'], 'bob\'s will never reached the device');
  await endAll(oven, anna2);
});

t.test('a will whose response topic its owner may not read is refused when it fires', async (t) => {
  const agent = await agentFor(t);
  const oven = await raw(agent, 'oven-live', OVEN);
  oven.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: INBOX, qos: 1 }] });
  await oven.next((p) => p.cmd === 'suback');
  const anna = await raw(agent, 'anna-rt', ANNA, { will: { topic: 'things/oven-1/commands/stop', payload: Buffer.from('will'), qos: 1, retain: false, properties: { responseTopic: 'things/oven-2/telemetry/x', correlationData: Buffer.from('c') } } });
  anna.end();
  t.match(await audited(agent, (e) => e.will === true && e.principal === 'tech-anna'), { decision: 'deny', reason: 'RESPONSE_TOPIC_DENIED' }, 'refused RESPONSE_TOPIC_DENIED, audited as a will');
  const marker = await raw(agent, 'anna-marker', ANNA);
  marker.send({ cmd: 'publish', topic: 'things/oven-1/commands/marker', payload: Buffer.from('marker'), qos: 1, messageId: 1 });
  t.ok(await oven.next((p) => p.cmd === 'publish' && String((p as IPublishPacket).payload) === 'marker'));
  t.same(payloads(oven), ['marker'], 'the will never arrived');
  for (const c of [oven, marker]) c.end();
});

t.test('subscription options and identifiers change nothing about what a subscriber may read', async (t) => {
  const agent = await agentFor(t);
  const oven = await raw(agent, 'oven-1', OVEN);
  const chiller = await raw(agent, 'chiller-1', { username: 'chiller-1', password: 'chiller-1-token' });
  oven.send({ cmd: 'publish', topic: 'things/oven-1/telemetry/temp', payload: Buffer.from('oven-retained'), qos: 1, messageId: 1, retain: true });
  chiller.send({ cmd: 'publish', topic: 'things/chiller-1/telemetry/temp', payload: Buffer.from('chiller-retained'), qos: 1, messageId: 1, retain: true });
  await oven.next((p) => p.cmd === 'puback');
  await chiller.next((p) => p.cmd === 'puback');

  // viewer-carl may read chiller-1 only.
  const carl = await raw(agent, 'carl-opts', CARL);
  carl.send({
    cmd: 'subscribe', messageId: 2, properties: { subscriptionIdentifier: 7, userProperties: { please: 'let me in' } },
    subscriptions: [
      { topic: 'things/oven-1/telemetry/#', qos: 1, rh: 0, rap: true, nl: false },
      { topic: 'things/+/telemetry/#', qos: 1, rh: 0, rap: true, nl: true },
    ],
  });
  const suback = (await carl.next((p) => p.cmd === 'suback')) as Ack | undefined;
  t.same(suback?.granted, [0x87, 1], 'a filter it may not read: 0x87, whatever its options and identifier');
  t.ok(await carl.next((p) => p.cmd === 'publish' && String((p as IPublishPacket).payload) === 'chiller-retained'), 'Retain Handling 0: the chiller\'s retained message');
  oven.send({ cmd: 'publish', topic: 'things/oven-1/telemetry/temp', payload: Buffer.from('oven-live'), qos: 1, messageId: 2, properties: { userProperties: { to: 'carl' }, payloadFormatIndicator: true, contentType: 'text/plain' } });
  await oven.next((p) => p.cmd === 'puback' && p.messageId === 2);
  chiller.send({ cmd: 'publish', topic: 'things/chiller-1/telemetry/temp', payload: Buffer.from('chiller-live'), qos: 1, messageId: 2 });
  t.ok(await carl.next((p) => p.cmd === 'publish' && String((p as IPublishPacket).payload) === 'chiller-live'));
  await sleep(300);
  t.same(payloads(carl), ['chiller-retained', 'chiller-live'], 'nothing of oven-1, retained or live, through a wildcard with RAP / subscription identifier');
  t.equal(publishes(carl)[1]?.properties?.subscriptionIdentifier, 7, 'the subscription identifier is delivered with what may be read');
  for (const c of [oven, chiller, carl]) c.end();
});

t.test('user properties, the payload format indicator and topic aliases change nothing about what a client may publish', async (t) => {
  const agent = await agentFor(t);
  const dash = await raw(agent, 'dash', { username: 'dashboard', password: 'dashboard-secret' });
  dash.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'things/+/telemetry/#', qos: 1 }] });
  await dash.next((p) => p.cmd === 'suback');
  const oven = await raw(agent, 'oven-1', OVEN);
  const ack = async (messageId: number) => ((await oven.next((p) => p.cmd === 'puback' && p.messageId === messageId)) as Ack | undefined)?.reasonCode;
  oven.send({ cmd: 'publish', topic: 'things/mixer-1/telemetry/t', payload: Buffer.from('props'), qos: 1, messageId: 1, properties: { userProperties: { principal: 'mixer-1', thing: 'mixer-1' }, payloadFormatIndicator: true, contentType: 'application/json' } });
  t.equal(await ack(1), 0x87, 'another thing\'s topic with user properties and a payload format: 0x87');
  oven.send({ cmd: 'publish', topic: 'things/oven-1/telemetry/t', payload: Buffer.from('own, alias set'), qos: 1, messageId: 2, properties: { topicAlias: 1 } });
  t.equal(await ack(2), 0, 'its own topic, alias 1 set: allowed');
  oven.send({ cmd: 'publish', topic: 'things/mixer-1/telemetry/t', payload: Buffer.from('alias remapped'), qos: 1, messageId: 3, properties: { topicAlias: 1 } });
  t.equal(await ack(3), 0x87, 'alias 1 remapped to another thing\'s topic: 0x87');
  oven.send({ cmd: 'publish', topic: '', payload: Buffer.from('alias only'), qos: 1, messageId: 4, properties: { topicAlias: 1 } });
  t.equal(await ack(4), 0x87, 'alias 1 alone: decided on the topic it stands for, 0x87');
  oven.send({ cmd: 'publish', topic: 'things/oven-1/telemetry/t', payload: Buffer.from('own again'), qos: 1, messageId: 5, properties: { topicAlias: 2 } });
  oven.send({ cmd: 'publish', topic: '', payload: Buffer.from('own by alias'), qos: 1, messageId: 6, properties: { topicAlias: 2 } });
  t.equal(await ack(6), 0, 'alias 2 for its own topic: allowed');
  t.ok(await dash.next((p) => p.cmd === 'publish' && String((p as IPublishPacket).payload) === 'own by alias'));
  await sleep(300);
  t.same(payloads(dash), ['own, alias set', 'own again', 'own by alias'], 'only the oven\'s own telemetry was routed');
  t.ok(publishes(dash).every((p) => p.topic === 'things/oven-1/telemetry/t'), 'on its resolved topic');
  t.match(await audited(agent, (e) => e.principal === 'oven-1' && e.topic === 'things/mixer-1/telemetry/t' && e.decision === 'deny'), { reason: 'TOPIC_DENIED' }, 'the refusals are audited on the resolved topic');
  for (const c of [dash, oven]) c.end();
});

t.test('Clean Start 0 with a Session Expiry Interval: what waits for the session is filtered at delivery like a live message', async (t) => {
  const agent = await agentFor(t);
  const session = { clean: false, properties: { sessionExpiryInterval: 300 } };
  let carl = await raw(agent, 'carl-persist', CARL, session);
  carl.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'things/+/telemetry/#', qos: 1 }] });
  await carl.next((p) => p.cmd === 'suback');
  carl.send({ cmd: 'disconnect', properties: { sessionExpiryInterval: 300 } });
  await carl.whenClosed;
  const oven = await raw(agent, 'oven-1', OVEN);
  const chiller = await raw(agent, 'chiller-1', { username: 'chiller-1', password: 'chiller-1-token' });
  oven.send({ cmd: 'publish', topic: 'things/oven-1/telemetry/temp', payload: Buffer.from('oven'), qos: 1, messageId: 1, properties: { userProperties: { for: 'carl' } } });
  chiller.send({ cmd: 'publish', topic: 'things/chiller-1/telemetry/temp', payload: Buffer.from('chiller'), qos: 1, messageId: 1 });
  await oven.next((p) => p.cmd === 'puback');
  await chiller.next((p) => p.cmd === 'puback');
  carl = await raw(agent, 'carl-persist', CARL, session);
  t.equal((carl.packets[0] as { sessionPresent?: boolean }).sessionPresent, true, 'session present');
  t.ok(await carl.next((p) => p.cmd === 'publish' && String((p as IPublishPacket).payload) === 'chiller'), 'the chiller\'s message waited for it');
  await sleep(300);
  t.same(payloads(carl), ['chiller'], 'the oven\'s never did');
  for (const c of [carl, oven, chiller]) c.end();
});
