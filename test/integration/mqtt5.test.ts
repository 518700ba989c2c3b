// MQTT 5 on the local listener: refusals carry reason codes (CONNACK, PUBACK/PUBREC, SUBACK,
// DISCONNECT) with our reason code as reason string and the client stays connected; a command's
// response topic and correlation data reach the device, the response topic must be one the
// requester may read, and the device's reply is authorized like any of its publishes.
import t from 'tap';
import { join } from 'node:path';
import type { IDisconnectPacket } from 'mqtt-packet';
import { controlRequest } from '../../src/agent/control.js';
import type { SnapshotPayload } from '../../src/policy/schema.js';
import { readAudit } from '../../src/audit/audit-log.js';
import { agentFor, connect, endAll, exampleSnapshot, mosquitto, sleep, until, type AgentProcess } from '../helpers/agent.js';
import { RawMqtt } from '../helpers/raw-mqtt.js';

type Ack = { cmd: string; messageId?: number; reasonCode?: number; properties?: { reasonString?: string; userProperties?: Record<string, string | string[]> }; granted?: number[] };

let agent: AgentProcess;
t.before(async () => {
  agent = await agentFor(t);
});

async function v5(clientId: string, username?: string, password?: string, extra: Record<string, unknown> = {}): Promise<{ c: RawMqtt; reasonCode: number | undefined }> {
  const c = await RawMqtt.open(agent.port, 5);
  const connack = await c.connect(clientId, username, password, extra);
  return { c, reasonCode: connack.reasonCode };
}

t.test('CONNACK reason codes: 0x86 bad credentials, 0x87 not authorized (outside the gateway\'s scope), 0x85 empty client id with a persistent session', async (t) => {
  t.equal((await v5('oven-1-x', 'oven-1', 'wrong-token')).reasonCode, 0x86, 'wrong token: 0x86 Bad User Name or Password');
  t.equal((await v5('oven-2', 'oven-2', 'oven-2-token')).reasonCode, 0x87, 'oven-2 (not served here): 0x87 Not authorized');
  // mqtt-packet will not write an empty client id with Clean Start 0: clear the flag in the bytes.
  const raw = await RawMqtt.open(agent.port, 5);
  const bytes = raw.bytes({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, clientId: '', keepalive: 60, username: 'oven-1', password: Buffer.from('oven-1-token'), properties: { sessionExpiryInterval: 60 } });
  t.equal(bytes[9]! & 0x02, 0x02, 'the Clean Start flag is where expected');
  bytes[9] = bytes[9]! & ~0x02;
  raw.socket.write(bytes);
  t.equal(((await raw.next((p) => p.cmd === 'connack')) as Ack | undefined)?.reasonCode, 0x85, 'empty client id, persistent session: 0x85 Client Identifier not valid');
  const ok = await v5('', 'oven-1', 'oven-1-token');
  t.equal(ok.reasonCode, 0, 'empty client id, clean start: accepted');
  t.ok((ok.c.packets[0] as { properties?: { assignedClientIdentifier?: string } }).properties?.assignedClientIdentifier, 'with an assigned client identifier');
  for (const c of [ok.c]) c.end();
});

t.test('a denied QoS 1 / 2 publish: PUBACK / PUBREC 0x87 with the reason code as reason string; QoS 0 dropped; still connected; audited', async (t) => {
  const oven = await v5('oven-1', 'oven-1', 'oven-1-token');
  oven.c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'things/oven-1/commands/#', qos: 1 }] });
  await oven.c.next((p) => p.cmd === 'suback');
  const carl = await v5('carl5', 'viewer-carl', 'carl-pass');
  carl.c.send({ cmd: 'publish', topic: 'things/oven-1/commands/reboot', payload: Buffer.from('q1'), qos: 1, messageId: 11 });
  carl.c.send({ cmd: 'publish', topic: 'things/oven-1/commands/reboot', payload: Buffer.from('q2'), qos: 2, messageId: 12 });
  carl.c.send({ cmd: 'publish', topic: 'things/oven-1/commands/reboot', payload: Buffer.from('q0'), qos: 0 });
  const puback = (await carl.c.next((p) => p.cmd === 'puback' && p.messageId === 11)) as Ack | undefined;
  const pubrec = (await carl.c.next((p) => p.cmd === 'pubrec' && p.messageId === 12)) as Ack | undefined;
  t.equal(puback?.reasonCode, 0x87, 'PUBACK 0x87 Not authorized');
  t.equal(puback?.properties?.reasonString, 'NOT_GRANTED', 'reason string: the reason code, nothing else');
  t.equal(pubrec?.reasonCode, 0x87, 'PUBREC 0x87');
  carl.c.send({ cmd: 'pingreq' });
  t.ok(await carl.c.next((p) => p.cmd === 'pingresp'), 'still connected: PINGRESP');
  t.notOk(carl.c.closed, 'not closed');
  // An allowed command behind them arrives; none of carl's did.
  const anna = await v5('anna5', 'tech-anna', 'anna-pass');
  anna.c.send({ cmd: 'publish', topic: 'things/oven-1/commands/reboot', payload: Buffer.from('anna'), qos: 1, messageId: 1 });
  t.equal(((await anna.c.next((p) => p.cmd === 'puback')) as Ack | undefined)?.reasonCode, 0, 'anna: PUBACK 0');
  t.ok(await oven.c.next((p) => p.cmd === 'publish' && String((p as { payload: Buffer }).payload) === 'anna'), 'anna\'s command arrives');
  t.same(oven.c.packets.filter((p) => p.cmd === 'publish').map((p) => String((p as { payload: Buffer }).payload)), ['anna'], 'none of carl\'s');
  let audited: Awaited<ReturnType<typeof readAudit>> = [];
  for (const end = Date.now() + 20_000; audited.length === 0 && Date.now() < end; await sleep(50)) {
    audited = (await readAudit(join(agent.stateDir, 'audit'))).filter((e) => e.clientId === 'carl5' && e.decision === 'deny');
  }
  t.match(audited[0], { principal: 'viewer-carl', reason: 'NOT_GRANTED', topic: 'things/oven-1/commands/reboot' }, 'the denial is audited');
  for (const c of [oven.c, carl.c, anna.c]) c.end();
});

t.test('a rate-limited command: PUBACK 0x97 Quota exceeded, reason string RATE_LIMITED; a policy denial stays 0x87', async (t) => {
  const limited = await agentFor(t, { config: { rateLimits: { commandsPerMinute: 1, firmwareUpdatesPerHour: 10 } } });
  const c = await RawMqtt.open(limited.port, 5);
  t.equal((await c.connect('anna-rate', 'tech-anna', 'anna-pass')).reasonCode, 0);
  c.send({ cmd: 'publish', topic: 'things/oven-1/commands/reboot', payload: Buffer.from('1'), qos: 1, messageId: 1 });
  c.send({ cmd: 'publish', topic: 'things/oven-1/commands/reboot', payload: Buffer.from('2'), qos: 1, messageId: 2 });
  c.send({ cmd: 'publish', topic: 'things/oven-1/parameters/fan/set', payload: Buffer.from('3'), qos: 2, messageId: 3 });
  c.send({ cmd: 'publish', topic: 'things/oven-2/commands/reboot', payload: Buffer.from('4'), qos: 1, messageId: 4 });
  const ack = async (id: number) => (await c.next((p) => (p.cmd === 'puback' || p.cmd === 'pubrec') && p.messageId === id)) as Ack | undefined;
  t.equal((await ack(1))?.reasonCode, 0, 'the first command: 0');
  const second = await ack(2);
  t.equal(second?.reasonCode, 0x97, 'the second within the minute: PUBACK 0x97');
  t.equal(second?.properties?.reasonString, 'RATE_LIMITED', 'reason string RATE_LIMITED');
  t.equal((await ack(3))?.reasonCode, 0x97, 'a parameter write (same limit, QoS 2): PUBREC 0x97');
  t.equal((await ack(4))?.reasonCode, 0x87, 'a policy denial (oven-2, not served here) stays 0x87');
  c.end();
});

t.test('SUBACK 0x87 per refused filter, granted QoS for the others', async (t) => {
  const carl = await v5('carl5-sub', 'viewer-carl', 'carl-pass');
  carl.c.send({ cmd: 'subscribe', messageId: 3, subscriptions: [{ topic: 'things/chiller-1/telemetry/#', qos: 1 }, { topic: 'things/oven-1/telemetry/#', qos: 1 }, { topic: 'things/chiller-1/alerts/#', qos: 0 }] });
  const suback = (await carl.c.next((p) => p.cmd === 'suback')) as Ack | undefined;
  t.same(suback?.granted, [1, 0x87, 0], 'chiller-1 granted, oven-1 0x87, chiller-1 alerts granted');
  carl.c.end();
});

t.test('mosquitto_pub -V mqttv5: a denied command is reported as failed with reason 135; an allowed one succeeds', async (t) => {
  const denied = mosquitto('mosquitto_pub', ['-V', 'mqttv5', '-h', '127.0.0.1', '-p', String(agent.port), '-i', 'carl-cli', '-u', 'viewer-carl', '-P', 'carl-pass', '-q', '1', '-t', 'things/oven-1/commands/reboot', '-m', 'x', '-d'], 30_000);
  t.match(denied.stdout + denied.stderr, /received PUBACK \(Mid: 1, RC:135\)/, 'PUBACK RC:135');
  const allowed = mosquitto('mosquitto_pub', ['-V', 'mqttv5', '-h', '127.0.0.1', '-p', String(agent.port), '-i', 'anna-cli', '-u', 'tech-anna', '-P', 'anna-pass', '-q', '1', '-t', 'things/oven-1/commands/reboot', '-m', 'x', '-d'], 30_000);
  t.match(allowed.stdout + allowed.stderr, /received PUBACK \(Mid: 1, RC:0\)/, 'PUBACK RC:0');
  t.equal(allowed.code, 0, 'mosquitto_pub exits 0');
});

t.test('request/response: the command reaches the device with its response topic, correlation data and user properties; the reply reaches the requester', async (t) => {
  const oven = await connect(agent.port, { clientId: 'oven-1', username: 'oven-1', password: 'oven-1-token', protocolVersion: 5 });
  const anna = await connect(agent.port, { clientId: 'anna-rr', username: 'tech-anna', password: 'anna-pass', protocolVersion: 5 });
  t.teardown(() => endAll(oven, anna));
  const replyTopic = 'things/oven-1/commands/reboot/reply';
  await anna.client.subscribeAsync(replyTopic, { qos: 1 });
  const command = new Promise<{ topic: string; properties?: Record<string, unknown> }>((resolve) => oven.client.on('message', (topic, _p, packet) => resolve({ topic, properties: packet.properties as Record<string, unknown> })));
  await oven.client.subscribeAsync('things/oven-1/commands/#', { qos: 1 });
  await anna.client.publishAsync('things/oven-1/commands/reboot', 'go', { qos: 1, properties: { responseTopic: replyTopic, correlationData: Buffer.from('corr-42'), userProperties: { tool: 'fieldkit' }, contentType: 'text/plain' } });
  const got = await command;
  t.equal(got.properties?.['responseTopic'], replyTopic, 'response topic delivered');
  t.equal(String(got.properties?.['correlationData']), 'corr-42', 'correlation data delivered');
  t.same(got.properties?.['userProperties'], { tool: 'fieldkit' }, 'user properties delivered');
  t.equal(got.properties?.['contentType'], 'text/plain', 'content type delivered');
  const reply = new Promise<{ topic: string; payload: string; correlation?: string }>((resolve) => anna.client.on('message', (topic, payload, packet) => resolve({ topic, payload: payload.toString(), correlation: packet.properties?.correlationData?.toString() })));
  await oven.client.publishAsync(replyTopic, 'done', { qos: 1, properties: { correlationData: Buffer.from('corr-42') } });
  t.same(await reply, { topic: replyTopic, payload: 'done', correlation: 'corr-42' }, 'the device\'s reply, with the correlation data, reaches the requester');
});

t.test('request/response: a response topic the requester may not read refuses the command (0x87 RESPONSE_TOPIC_DENIED); a device may not reply on another thing\'s topic', async (t) => {
  const oven = await v5('oven-1-rr', 'oven-1', 'oven-1-token');
  oven.c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'things/oven-1/commands/#', qos: 1 }] });
  await oven.c.next((p) => p.cmd === 'suback');
  const anna = await v5('anna-rt', 'tech-anna', 'anna-pass');
  anna.c.send({ cmd: 'publish', topic: 'things/oven-1/commands/reboot', payload: Buffer.from('elsewhere'), qos: 1, messageId: 5, properties: { responseTopic: 'things/oven-2/telemetry/stolen', correlationData: Buffer.from('c') } });
  const ack = (await anna.c.next((p) => p.cmd === 'puback' && p.messageId === 5)) as Ack | undefined;
  t.equal(ack?.reasonCode, 0x87, 'PUBACK 0x87');
  t.equal(ack?.properties?.reasonString, 'RESPONSE_TOPIC_DENIED', 'reason string RESPONSE_TOPIC_DENIED');
  // The same command with a readable response topic goes through, behind it: the refused one never arrived.
  anna.c.send({ cmd: 'publish', topic: 'things/oven-1/commands/reboot', payload: Buffer.from('fine'), qos: 1, messageId: 6, properties: { responseTopic: 'things/oven-1/commands/reboot/reply' } });
  t.equal(((await anna.c.next((p) => p.cmd === 'puback' && p.messageId === 6)) as Ack | undefined)?.reasonCode, 0, 'readable response topic: PUBACK 0');
  t.ok(await oven.c.next((p) => p.cmd === 'publish' && String((p as { payload: Buffer }).payload) === 'fine'), 'that one arrives');
  t.notOk(oven.c.packets.some((p) => p.cmd === 'publish' && String((p as { payload: Buffer }).payload) === 'elsewhere'), 'the refused one did not');
  // The device's reply is authorized like any publish of its own: not on mixer-1's topics.
  oven.c.send({ cmd: 'publish', topic: 'things/mixer-1/commands/reboot/reply', payload: Buffer.from('spoof'), qos: 1, messageId: 7, properties: { correlationData: Buffer.from('c') } });
  t.equal(((await oven.c.next((p) => p.cmd === 'puback' && p.messageId === 7)) as Ack | undefined)?.reasonCode, 0x87, 'oven-1 replying on mixer-1\'s topic: 0x87');
  for (const c of [oven.c, anna.c]) c.end();
});

t.test('a snapshot revoking the principal ends its session with DISCONNECT 0x87 and a reason string', async (t) => {
  const bob = await connect(agent.port, { clientId: 'bob5', username: 'op-bob', password: 'bob-pass', protocolVersion: 5 });
  let disconnect: IDisconnectPacket | undefined;
  bob.client.on('disconnect', (p) => (disconnect = p));
  const bytes = exampleSnapshot(2, (p: SnapshotPayload) => {
    p.users!.find((u) => u.id === 'op-bob')!.revoked = true;
  });
  const r = await controlRequest(agent.stateDir, { cmd: 'install', snapshot: bytes.toString('base64'), source: 'test' });
  t.ok(r.ok, 'installed');
  t.ok(await until(() => disconnect !== undefined, 20_000), 'DISCONNECT received');
  t.equal(disconnect?.reasonCode, 0x87, 'reason code 0x87 Not authorized');
  t.match(disconnect?.properties, { reasonString: 'credentials revoked' });
  t.equal((await v5('bob5-again', 'op-bob', 'bob-pass')).reasonCode, 0x87, 'reconnecting: CONNACK 0x87');
  bob.client.end(true);
});
