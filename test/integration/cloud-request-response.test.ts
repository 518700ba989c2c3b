// MQTT 5 request/response on the cloud link (docs/cloud.md "Request/response"), against a real
// mosquitto as the cloud broker and an MQTT.js v5 cloud application: a request's Response Topic and
// Correlation Data route its reply (durably, through the outbox), every reply carries its outcome
// and reason as user properties and the MQTT 5 reason code in its body, a late refusal follows the
// first reply, also across an outage of the cloud broker; and replies queued by an earlier version
// (an outbox without properties) still go up.
import t from 'tap';
import { cpSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { controlRequest } from '../../src/agent/control.js';
import { cleanup, connect, endAll, startAgent, until, type AgentProcess } from '../helpers/agent.js';
import { ROOT } from '../helpers/policy.js';
import { startMosquitto, type Mosquitto } from '../helpers/mosquitto.js';

const P = 'edgewarden/gw-plant-1/';

interface Got {
  topic: string;
  payload: Buffer;
  body: Record<string, unknown>;
  correlationData: Buffer | undefined;
  user: Record<string, unknown>;
}

/** A cloud application (MQTT.js, MQTT 5) with a persistent session: it misses nothing through an outage of the broker. */
async function cloudApp(m: Mosquitto, clientId: string): Promise<{ client: MqttClient; got: Got[]; on(sub: string): Got[] }> {
  const client = mqtt.connect(m.url, { clientId, clean: false, protocolVersion: 5, reconnectPeriod: 100, properties: { sessionExpiryInterval: 3600 } });
  const got: Got[] = [];
  client.on('message', (topic, payload, packet) => {
    let body: Record<string, unknown> = {};
    try {
      body = JSON.parse(payload.toString()) as Record<string, unknown>;
    } catch {
      // not JSON: kept as bytes
    }
    got.push({ topic, payload, body, correlationData: packet.properties?.correlationData, user: (packet.properties?.userProperties ?? {}) as Record<string, unknown> });
  });
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  await client.subscribeAsync(`${P}#`, { qos: 1 });
  return { client, got, on: (sub) => got.filter((g) => g.topic === `${P}${sub}`) };
}

const queueDepth = async (agent: AgentProcess): Promise<number> => {
  const r = await controlRequest(agent.stateDir, { cmd: 'status' });
  return r.ok ? (r.status as { cloud: { queue: { depth: number } } }).cloud.queue.depth : -1;
};

t.test('replies go to the response topic with the correlation data, outcome, reason and MQTT 5 reason code', async (t) => {
  const cloud = await startMosquitto({ persistence: true });
  t.teardown(() => cloud.stop('SIGKILL'));
  const app = await cloudApp(cloud, 'cloud-app-rr');
  t.teardown(() => app.client.endAsync(true));
  const agent = await startAgent({
    config: {
      cloud: { enabled: true, url: cloud.url, reconnectMinMs: 50, reconnectMaxMs: 500 },
      schedule: { auditUpload: '0 0 1 1 *' },
      rateLimits: { commandsPerMinute: 1 },
      actions: { ttlSeconds: { command: 6 } },
    },
  });
  t.teardown(async () => {
    await agent.stop();
    cleanup(agent);
  });
  // The status follows the link's subscription to down/# on the same connection: requests now reach it.
  t.ok(await until(() => app.on('status').some((g) => g.body['state'] === 'online'), 15_000), 'the link is up');

  const request = (body: unknown, properties: { responseTopic?: string; correlationData?: Buffer } = {}, topic = 'things/oven-1/commands/reboot') =>
    app.client.publishAsync(`${P}down/${topic}`, typeof body === 'string' ? body : JSON.stringify(body), { qos: 1, properties });
  const replyOn = async (sub: string, id: string | null, n = 1): Promise<Got[]> => {
    const of = () => app.on(sub).filter((g) => g.body['id'] === id);
    await until(() => of().length >= n, 20_000);
    return of();
  };

  // oven-1, with a persistent session (needed below), online for now.
  const oven = await connect(agent.port, { clientId: 'oven-1', clean: false, username: 'oven-1', password: 'oven-1-token' });
  await oven.client.subscribeAsync('things/oven-1/commands/#', { qos: 1 });

  // Denied: to the response topic, with the correlation data, ew-outcome/ew-reason and 0x87.
  const corr7 = Buffer.from([0xde, 0xad, 0x00, 0x07]);
  await request({ principal: 'viewer-carl', id: 'rr-1', payload: 'denied' }, { responseTopic: `${P}replies/tool-7`, correlationData: corr7 });
  const [denied] = await replyOn('replies/tool-7', 'rr-1');
  t.ok(denied, 'the denial arrives on P replies/tool-7');
  t.same(denied?.correlationData, corr7, 'with the same correlation data');
  t.match(denied?.user, { 'ew-outcome': 'denied', 'ew-reason': 'NOT_GRANTED' }, 'user properties ew-outcome and ew-reason');
  t.ok(typeof denied?.user['ew-seq'] === 'string', 'and the queue\'s ew-seq');
  t.match(denied?.body, { outcome: 'denied', reason: 'NOT_GRANTED', reasonCode: 135, principal: 'viewer-carl', topic: 'things/oven-1/commands/reboot' }, 'reasonCode 135 (0x87 Not authorized)');

  // Allowed: delivered to the device, reasonCode 0, no ew-reason.
  const corrA = Buffer.from('anna-1');
  await request({ principal: 'tech-anna', id: 'rr-2', payload: 'allowed' }, { responseTopic: `${P}replies/tool-7`, correlationData: corrA });
  const [delivered] = await replyOn('replies/tool-7', 'rr-2');
  t.match(delivered?.body, { outcome: 'delivered', reasonCode: 0 }, 'an allowed request: reasonCode 0');
  t.same(delivered?.correlationData, corrA);
  t.match(delivered?.user, { 'ew-outcome': 'delivered' });
  t.notOk(delivered !== undefined && 'ew-reason' in delivered.user, 'no ew-reason when delivered');
  t.ok(await until(() => oven.messages.some((m) => m.payload === 'allowed'), 15_000), 'the device got it');

  // Over the rate limit (1 command a minute): 0x97, on P replies (no response topic), correlation data kept.
  const corrR = Buffer.from('rate');
  await request({ principal: 'tech-anna', id: 'rr-3', payload: 'too many' }, { correlationData: corrR });
  const [limited] = await replyOn('replies', 'rr-3');
  t.match(limited?.body, { outcome: 'denied', reason: 'RATE_LIMITED', reasonCode: 151 }, 'RATE_LIMITED: reasonCode 151 (0x97)');
  t.match(limited?.user, { 'ew-outcome': 'denied', 'ew-reason': 'RATE_LIMITED' });
  t.same(limited?.correlationData, corrR, 'without a response topic, on P replies, with the correlation data');

  // Response topics the gateway may not (or must not) write: the reply goes to P replies, one warning per topic.
  const outside: [string, string][] = [
    ['elsewhere/replies/tool-7', 'rr-4'],
    [`${P}status`, 'rr-5'],
    [`${P}down/things/oven-1/commands/reboot`, 'rr-6'],
    ['elsewhere/replies/tool-7', 'rr-7'],
  ];
  for (const [responseTopic, id] of outside) {
    await request({ principal: 'viewer-carl', id, payload: 'x' }, { responseTopic, correlationData: Buffer.from(id) });
    const [r] = await replyOn('replies', id);
    t.match(r?.body, { outcome: 'denied', reasonCode: 135 }, `response topic ${responseTopic}: the reply goes to P replies`);
    t.same(r?.correlationData, Buffer.from(id), 'with its correlation data');
  }
  t.equal(app.got.filter((g) => g.topic === `${P}status` && g.body['id'] !== undefined).length, 0, 'nothing went to P status');
  t.equal(app.got.filter((g) => g.topic.startsWith(`${P}down/`) && g.body['outcome'] !== undefined).length, 0, 'nor to its own down/ topics');
  const warnings = agent.logs().filter((l) => /response topic not used/.test(l));
  t.equal(warnings.filter((l) => l.includes('"responseTopic":"elsewhere/replies/tool-7"')).length, 1, 'the warning is logged once per topic');
  t.match(warnings.find((l) => l.includes('elsewhere/')), /not under the gateway's prefix/, 'and says why');
  t.match(warnings.find((l) => l.includes(`${P}status`)), /replies only on/);

  // A malformed request: invalid, 0x99, still on its response topic.
  await request('{not json', { responseTopic: `${P}replies/tool-7`, correlationData: Buffer.from('bad') });
  t.ok(await until(() => app.on('replies/tool-7').some((g) => g.body['outcome'] === 'invalid'), 20_000), 'an invalid request is answered on its response topic');
  const invalid = app.on('replies/tool-7').find((g) => g.body['outcome'] === 'invalid');
  t.match(invalid?.body, { outcome: 'invalid', reasonCode: 153, error: /not JSON/ }, 'reasonCode 153 (0x99 Payload format invalid)');
  t.match(invalid?.user, { 'ew-outcome': 'invalid' });
  t.same(invalid?.correlationData, Buffer.from('bad'));

  // A late refusal follows the first reply, and is queued through an outage of the cloud broker:
  // a command for oven-1 while it is offline is delivered to its session, the cloud broker goes
  // away, the command expires (ttl 6 s: the broker is gone well before) and its reply waits on
  // disk until the broker is back.
  await endAll(oven);
  const corrE = Buffer.from('exp-1');
  await request({ principal: 'plant-admin', id: 'rr-8', payload: 'will expire' }, { responseTopic: `${P}replies/tool-9`, correlationData: corrE });
  const [queued] = await replyOn('replies/tool-9', 'rr-8');
  t.match(queued?.body, { outcome: 'delivered', reasonCode: 0 }, 'delivered to the offline device\'s session');
  await cloud.stop();
  t.ok(await until(() => agent.logs().some((l) => /cloud link down/.test(l)), 15_000), 'the cloud broker is gone');
  t.ok(await waitDepth(agent, 1, 45_000), 'the expiry reply is queued on disk while the cloud is unreachable');
  await cloud.start();
  const [late] = await replyOn('replies/tool-9', 'rr-8', 2).then((r) => r.filter((g) => g.body['outcome'] === 'expired'));
  t.ok(late, 'after reconnecting, the late reply arrives on the same response topic');
  t.same(late?.correlationData, corrE, 'with the same correlation data');
  t.match(late?.body, { outcome: 'expired', reason: 'ACTION_EXPIRED', stage: 'queue', principal: 'plant-admin' });
  t.notOk(late !== undefined && 'reasonCode' in late.body, 'an expiry has no MQTT 5 reason code');
  t.match(late?.user, { 'ew-outcome': 'expired', 'ew-reason': 'ACTION_EXPIRED' });
  t.equal(app.on('replies').filter((g) => g.body['id'] === 'rr-8').length, 0, 'nothing of it on P replies');
});

/** Polls the agent's queue depth until it is at least `n`. */
async function waitDepth(agent: AgentProcess, n: number, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if ((await queueDepth(agent)) >= n) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return (await queueDepth(agent)) >= n;
}

t.test('replies queued by an earlier version (outbox records without properties) still load and go up', async (t) => {
  const cloud = await startMosquitto();
  t.teardown(() => cloud.stop());
  const app = await cloudApp(cloud, 'cloud-app-old');
  t.teardown(() => app.client.endAsync(true));
  // The outbox of the previous version, with a reply and a telemetry message not yet sent.
  const stateDir = mkdtempSync(join(tmpdir(), 'ew-state-'));
  cpSync(join(ROOT, 'test', 'fixtures', 'outbox', 'format1-replies'), join(stateDir, 'outbox'), { recursive: true });
  const agent = await startAgent({ stateDir, config: { cloud: { enabled: true, url: cloud.url, reconnectMinMs: 50, reconnectMaxMs: 500 }, schedule: { auditUpload: '0 0 1 1 *' } } });
  t.teardown(async () => {
    await agent.stop();
    cleanup(agent);
  });
  t.ok(await until(() => app.on('replies').some((g) => g.body['id'] === 'old-1'), 20_000), 'the queued reply is sent on P replies');
  const old = app.on('replies').find((g) => g.body['id'] === 'old-1')!;
  t.match(old.body, { outcome: 'denied', reason: 'NOT_GRANTED', principal: 'viewer-carl' }, 'as it was queued');
  t.equal(old.user['ew-seq'], '1', 'with its sequence number');
  t.notOk('ew-outcome' in old.user, 'and no properties it was not queued with');
  t.equal(old.correlationData, undefined);
  t.ok(await until(() => app.on('up/things/oven-1/telemetry/temp').some((g) => g.payload.toString() === '99'), 20_000), 'the queued telemetry after it');
  t.notOk(agent.logs().some((l) => /damage|corrupt|lost/i.test(l) && /outbox/i.test(l)), 'no damage reported');
});
