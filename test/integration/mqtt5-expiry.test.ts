// MQTT 5 message properties, message expiry and session expiry through the session store: a command's
// response topic, correlation data and user properties reach a device that was offline (MQTT 5, or
// MQTT 3.1.1 without them), also after an agent restart; a message whose expiry passed is not
// delivered (queued, retained), one that has not goes with the remaining interval, and an action
// expires at the shorter of its time to live and its message expiry (audited ACTION_EXPIRED); an
// MQTT 5 session ends after its Session Expiry Interval, across a restart too, and at once with 0.
import t from 'tap';
import { join } from 'node:path';
import { readAudit, type AuditRecord } from '../../src/audit/audit-log.js';
import { cleanup, sleep, startAgent, type AgentProcess } from '../helpers/agent.js';
import { RawMqtt } from '../helpers/raw-mqtt.js';

type Pub = { cmd: 'publish'; topic: string; payload: Buffer; qos: number; messageId?: number; retain?: boolean; properties?: { responseTopic?: string; correlationData?: Buffer; userProperties?: Record<string, string | string[]>; contentType?: string; messageExpiryInterval?: number } };
type Connack = { cmd: 'connack'; sessionPresent?: boolean; reasonCode?: number; returnCode?: number };

const OVEN = ['oven-1', 'oven-1-token'] as const;
const ANNA = ['tech-anna', 'anna-pass'] as const;
const REPLY = 'things/oven-1/commands/reboot/reply';

async function open(agent: AgentProcess, version: 4 | 5, clientId: string, who: readonly [string, string], extra: Record<string, unknown> = {}): Promise<{ c: RawMqtt; connack: Connack }> {
  const c = await RawMqtt.open(agent.port, version);
  const connack = (await c.connect(clientId, who[0], who[1], extra)) as unknown as Connack;
  return { c, connack };
}

/** A device session subscribed to its commands, then disconnected (waits for the agent to log it). */
async function offlineDevice(agent: AgentProcess, version: 4 | 5, clientId: string, extra: Record<string, unknown>): Promise<void> {
  const { c, connack } = await open(agent, version, clientId, OVEN, extra);
  if ((connack.reasonCode ?? connack.returnCode) !== 0) throw new Error(`CONNACK ${connack.reasonCode ?? connack.returnCode} for ${clientId}`);
  c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'things/oven-1/commands/#', qos: 1 }], ...(version === 5 ? { properties: { subscriptionIdentifier: 7 } } : {}) });
  await c.next((p) => p.cmd === 'suback');
  const before = disconnects(agent, clientId);
  c.end();
  await waitFor(() => disconnects(agent, clientId) > before, `the agent saw ${clientId} go`);
}

const disconnects = (agent: AgentProcess, clientId: string): number => agent.logs().filter((l) => l.includes(`client disconnected: ${clientId} `)).length;

async function waitFor(pred: () => boolean | Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  for (const end = Date.now() + timeoutMs; Date.now() < end; await sleep(50)) if (await pred()) return;
  throw new Error(`timed out waiting: ${what}`);
}

/** Anna's QoS 1 command, MQTT 5, with properties; resolves on its PUBACK (0). */
async function command(agent: AgentProcess, topic: string, payload: string, properties: Record<string, unknown> = {}): Promise<void> {
  const { c } = await open(agent, 5, `anna-${payload}`, ANNA);
  c.send({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 1, messageId: 1, properties });
  const ack = (await c.next((p) => p.cmd === 'puback')) as { reasonCode?: number } | undefined;
  c.end();
  if (ack?.reasonCode !== 0) throw new Error(`PUBACK ${ack?.reasonCode} for ${payload}`);
}

/** Reconnects the device with its session, sends a marker command, returns what reached it up to and including the marker. */
async function resume(agent: AgentProcess, version: 4 | 5, clientId: string, marker: string, extra: Record<string, unknown> = {}): Promise<{ connack: Connack; got: Pub[]; c: RawMqtt }> {
  const { c, connack } = await open(agent, version, clientId, OVEN, { clean: false, ...extra });
  if (!connack.sessionPresent) {
    c.send({ cmd: 'subscribe', messageId: 2, subscriptions: [{ topic: 'things/oven-1/commands/#', qos: 1 }] });
    await c.next((p) => p.cmd === 'suback');
  }
  await command(agent, 'things/oven-1/commands/marker', marker);
  const m = await c.next((p) => p.cmd === 'publish' && String((p as Pub).payload) === marker, 20_000);
  if (!m) throw new Error(`the marker ${marker} did not arrive`);
  const got = c.packets.filter((p) => p.cmd === 'publish') as unknown as Pub[];
  for (const p of got) if (p.qos > 0 && p.messageId !== undefined) c.send({ cmd: 'puback', messageId: p.messageId, reasonCode: 0 });
  return { connack, got, c };
}

async function audited(agent: AgentProcess, pred: (e: AuditRecord) => boolean): Promise<AuditRecord> {
  let hit: AuditRecord | undefined;
  await waitFor(async () => (hit = (await readAudit(join(agent.stateDir, 'audit'))).find(pred)) !== undefined, 'an audit record');
  return hit!;
}

const PROPS = { responseTopic: REPLY, correlationData: Buffer.from('corr-42'), userProperties: { tool: 'fieldkit', step: ['1', '2'] }, contentType: 'text/plain' };

for (const restart of [false, true]) {
  t.test(`a command with response topic, correlation data and user properties queued for an offline device${restart ? ', across an agent restart' : ''}: MQTT 5 gets them, MQTT 3.1.1 the message alone`, async (t) => {
    let agent = await startAgent();
    t.teardown(async () => {
      await agent.stop();
      cleanup(agent);
    });
    await offlineDevice(agent, 5, 'oven-1', { properties: { sessionExpiryInterval: 3600 } });
    await offlineDevice(agent, 4, 'oven-1-v311', { clean: false });
    await command(agent, 'things/oven-1/commands/reboot', 'go', PROPS);
    if (restart) {
      await agent.stop();
      agent = await startAgent({ stateDir: agent.stateDir, bootstrap: null });
    }
    const v5 = await resume(agent, 5, 'oven-1', 'm5', { properties: { sessionExpiryInterval: 3600 } });
    t.ok(v5.connack.sessionPresent, 'MQTT 5: the session is present');
    const go = v5.got.find((p) => String(p.payload) === 'go');
    t.ok(go, 'the queued command arrives');
    t.equal(go?.properties?.responseTopic, REPLY, 'with its response topic');
    t.same(go?.properties?.correlationData, Buffer.from('corr-42'), 'its correlation data');
    t.same(go?.properties?.userProperties, { tool: 'fieldkit', step: ['1', '2'] }, 'its user properties');
    t.equal(go?.properties?.contentType, 'text/plain', 'its content type');
    const marker = v5.got.find((p) => String(p.payload) === 'm5') as { properties?: { subscriptionIdentifier?: number | number[] } } | undefined;
    t.same(marker?.properties?.subscriptionIdentifier, 7, 'the restored subscription keeps its subscription identifier');
    v5.c.end();
    const v4 = await resume(agent, 4, 'oven-1-v311', 'm4');
    t.ok(v4.connack.sessionPresent, 'MQTT 3.1.1: the session is present');
    // A v4 parser reads property bytes as part of the topic/payload: an exact payload means none were sent.
    t.same(v4.got.map((p) => [p.topic, String(p.payload)]), [['things/oven-1/commands/reboot', 'go'], ['things/oven-1/commands/marker', 'm5'], ['things/oven-1/commands/marker', 'm4']], 'the command arrives, exactly as published, without properties (3.1.1 has none)');
    v4.c.end();
  });
}

t.test('message expiry: a command past its interval is not delivered (audited ACTION_EXPIRED); others go with what remains, the time to live when shorter', async (t) => {
  const agent = await startAgent();
  t.teardown(async () => {
    await agent.stop();
    cleanup(agent);
  });
  await offlineDevice(agent, 5, 'oven-1', { properties: { sessionExpiryInterval: 3600 } });
  const sent = Date.now();
  await command(agent, 'things/oven-1/commands/short', 'short', { messageExpiryInterval: 2 });
  await command(agent, 'things/oven-1/commands/minute', 'minute', { messageExpiryInterval: 60 });
  // actions.ttlSeconds.command is 300 (the default): shorter than the message's hour.
  await command(agent, 'things/oven-1/commands/hour', 'hour', { messageExpiryInterval: 3600 });
  const expired = await audited(agent, (e) => e.reason === 'ACTION_EXPIRED' && e.topic === 'things/oven-1/commands/short');
  t.match(expired, { decision: 'deny', principal: 'tech-anna', receiver: 'oven-1', action: 'EXECUTE_THING_COMMAND' }, 'the expired command is dropped and audited');
  t.ok(Date.now() - sent >= 1_500, 'not before its interval (2 s) had passed');
  const { got, c } = await resume(agent, 5, 'oven-1', 'marker', { properties: { sessionExpiryInterval: 3600 } });
  t.same(got.map((p) => String(p.payload)), ['minute', 'hour', 'marker'], 'the expired command is not delivered');
  const minute = got[0]!.properties?.messageExpiryInterval;
  const hour = got[1]!.properties?.messageExpiryInterval;
  t.ok(minute !== undefined && minute > 0 && minute <= 60 - 1, `delivered with the remaining interval (${minute} s of 60)`);
  t.ok(hour !== undefined && hour > 0 && hour <= 300, `the time to live (300 s) is shorter than the hour: it is the interval delivered (${hour} s)`);
  t.equal(got[2]!.properties?.messageExpiryInterval, undefined, 'a command without an interval gets none');
  c.end();
});

t.test('a retained message past its expiry is not sent to a new subscriber; before, with the remaining interval', async (t) => {
  const agent = await startAgent();
  t.teardown(async () => {
    await agent.stop();
    cleanup(agent);
  });
  const { c: oven } = await open(agent, 5, 'oven-1', OVEN);
  const published = Date.now();
  oven.send({ cmd: 'publish', topic: 'things/oven-1/telemetry/short', payload: Buffer.from('short'), qos: 1, messageId: 1, retain: true, properties: { messageExpiryInterval: 2 } });
  oven.send({ cmd: 'publish', topic: 'things/oven-1/telemetry/long', payload: Buffer.from('long'), qos: 1, messageId: 2, retain: true, properties: { messageExpiryInterval: 600 } });
  oven.send({ cmd: 'publish', topic: 'things/oven-1/telemetry/last', payload: Buffer.from('last'), qos: 1, messageId: 3, retain: true });
  await oven.next((p) => p.cmd === 'puback' && p.messageId === 3);
  oven.end();
  const retainedFor = async (id: string): Promise<Pub[]> => {
    const { c } = await open(agent, 5, id, ANNA);
    c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'things/oven-1/telemetry/#', qos: 1 }] });
    const last = await c.next((p) => p.cmd === 'publish' && (p as Pub).topic === 'things/oven-1/telemetry/last');
    c.end();
    if (!last) throw new Error('the last retained message did not arrive');
    return c.packets.filter((p) => p.cmd === 'publish') as unknown as Pub[];
  };
  const early = await retainedFor('anna-early');
  const long = early.find((p) => p.topic === 'things/oven-1/telemetry/long');
  t.ok(long?.properties?.messageExpiryInterval !== undefined && long.properties.messageExpiryInterval <= 600 && long.properties.messageExpiryInterval > 500, 'a retained message goes with its remaining interval');
  if (Date.now() - published < 1_500) t.ok(early.some((p) => p.topic === 'things/oven-1/telemetry/short'), 'the 2 s one too, while it lasts');
  // Wait until its 2 s have passed (polling the clock), then a new subscriber.
  await waitFor(() => Date.now() - published > 2_500, 'the expiry to pass');
  const late = await retainedFor('anna-late');
  t.same(late.map((p) => p.topic).sort(), ['things/oven-1/telemetry/last', 'things/oven-1/telemetry/long'], 'the expired retained message is not sent');
});

t.test('MQTT 5 session expiry: a session with interval 5 ends 5 s after its disconnect; one with 0 at the disconnect', async (t) => {
  const agent = await startAgent();
  t.teardown(async () => {
    await agent.stop();
    cleanup(agent);
  });
  await offlineDevice(agent, 5, 'oven-1', { properties: { sessionExpiryInterval: 5 } });
  const gone = Date.now();
  await agent.waitLog(/"msg":"MQTT 5 session expired".*"clientId":"oven-1"|"clientId":"oven-1".*"msg":"MQTT 5 session expired"|abandoned persistent sessions expired/, 30_000);
  t.ok(Date.now() - gone >= 4_000, `ended after its interval (${Date.now() - gone} ms)`);
  await command(agent, 'things/oven-1/commands/reboot', 'after-expiry');
  const r = await resume(agent, 5, 'oven-1', 'marker-1', { properties: { sessionExpiryInterval: 5 } });
  t.notOk(r.connack.sessionPresent, 'Clean Start 0 after the expiry: Session Present 0');
  t.same(r.got.map((p) => String(p.payload)), ['marker-1'], 'nothing was queued for it');
  r.c.end();

  // Interval 0 (the MQTT 5 default), Clean Start 0: the session ends with the connection.
  await offlineDevice(agent, 5, 'oven-1-zero', { clean: false });
  await command(agent, 'things/oven-1/commands/reboot', 'while-gone');
  const z = await resume(agent, 5, 'oven-1-zero', 'marker-2');
  t.notOk(z.connack.sessionPresent, 'Session Present 0');
  t.same(z.got.map((p) => String(p.payload)), ['marker-2'], 'nothing was queued for it');
  z.c.end();
});

t.test('MQTT 5 session expiry across an agent restart: a passed deadline is not revived, a pending one is kept', async (t) => {
  let agent = await startAgent();
  t.teardown(async () => {
    await agent.stop();
    cleanup(agent);
  });
  await offlineDevice(agent, 5, 'oven-1-past', { properties: { sessionExpiryInterval: 2 } });
  const pastGone = Date.now();
  await agent.stop();
  await waitFor(() => Date.now() - pastGone > 3_000, 'the 2 s interval to pass while the agent is stopped');
  agent = await startAgent({ stateDir: agent.stateDir, bootstrap: null });
  t.match(await agent.waitLog(/persistent sessions expired while the agent was stopped/), /oven-1-past/, 'ended at the start');
  const past = await resume(agent, 5, 'oven-1-past', 'marker-1', { properties: { sessionExpiryInterval: 2 } });
  t.notOk(past.connack.sessionPresent, 'the session is not revived: Session Present 0');
  past.c.end();

  await offlineDevice(agent, 5, 'oven-1-pending', { properties: { sessionExpiryInterval: 8 } });
  await offlineDevice(agent, 5, 'oven-1-long', { properties: { sessionExpiryInterval: 3600 } });
  const gone = Date.now();
  await agent.stop();
  agent = await startAgent({ stateDir: agent.stateDir, bootstrap: null });
  await command(agent, 'things/oven-1/commands/reboot', 'queued');
  await agent.waitLog(/abandoned persistent sessions expired.*oven-1-pending|oven-1-pending.*abandoned persistent sessions expired/, 30_000);
  const elapsed = Date.now() - gone;
  t.ok(elapsed >= 7_000, `the deadline counted from the disconnect before the restart (${elapsed} ms)`);
  const pending = await resume(agent, 5, 'oven-1-pending', 'marker-2', { properties: { sessionExpiryInterval: 8 } });
  t.notOk(pending.connack.sessionPresent, 'after it: Session Present 0');
  t.same(pending.got.map((p) => String(p.payload)), ['marker-2'], 'and its queue went with it');
  pending.c.end();
  const long = await resume(agent, 5, 'oven-1-long', 'marker-3', { properties: { sessionExpiryInterval: 3600 } });
  t.ok(long.connack.sessionPresent, 'a session with a longer interval is still there');
  t.same(long.got.map((p) => String(p.payload)), ['queued', 'marker-2', 'marker-3'], 'with its queue');
  long.c.end();
});

for (const persistent of [false, true]) {
  t.test(`a message that expires while waiting for a ${persistent ? 'persistent' : 'clean'} session's in-flight window is not sent`, async (t) => {
    const agent = await startAgent({ config: { limits: { maxInflightOutbound: 1 } } });
    t.teardown(async () => {
      await agent.stop();
      cleanup(agent);
    });
    const { c: sub } = await open(agent, 5, 'anna-window', ANNA, persistent ? { clean: false, properties: { sessionExpiryInterval: 3600 } } : {});
    sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'things/oven-1/telemetry/#', qos: 1 }] });
    await sub.next((p) => p.cmd === 'suback');
    const { c: oven } = await open(agent, 5, 'oven-1', OVEN);
    const publish = async (id: number, payload: string, properties: Record<string, unknown> = {}): Promise<void> => {
      oven.send({ cmd: 'publish', topic: 'things/oven-1/telemetry/t', payload: Buffer.from(payload), qos: 1, messageId: id, properties });
      await oven.next((p) => p.cmd === 'puback' && p.messageId === id);
    };
    await publish(1, 'first');
    const first = (await sub.next((p) => p.cmd === 'publish')) as Pub | undefined;
    t.equal(String(first?.payload), 'first', 'the first fills the window (not acknowledged yet)');
    const sent = Date.now();
    await publish(2, 'short', { messageExpiryInterval: 2 });
    await publish(3, 'long', { messageExpiryInterval: 600 });
    await waitFor(() => Date.now() - sent > 2_500, 'the 2 s to pass');
    sub.send({ cmd: 'puback', messageId: first!.messageId, reasonCode: 0 });
    const next = (await sub.next((p) => p.cmd === 'publish' && String((p as Pub).payload) !== 'first', 20_000)) as Pub | undefined;
    t.equal(String(next?.payload), 'long', 'the expired one is skipped: the next one sent is the unexpired one');
    const interval = next?.properties?.messageExpiryInterval;
    t.ok(interval !== undefined && interval < 600 && interval > 500, `with its remaining interval (${interval})`);
    t.notOk(sub.packets.some((p) => p.cmd === 'publish' && String((p as Pub).payload) === 'short'), 'the expired one never arrives');
    sub.end();
    oven.end();
  });
}
