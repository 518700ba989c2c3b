// An action never outlives its authority (SPEC section 3): a command waiting in a persistent
// session's queue, redelivered, retained, fired as a will or older than its time to live is
// decided again for its sender when it is delivered — against the real agent, with MQTT.js and the
// mosquitto clients. Every scenario runs over MQTT 3.1.1 and over MQTT 5 (a persistent session there:
// Clean Start 0 with a Session Expiry Interval).
import t, { type Test } from 'tap';
import type { IClientOptions } from 'mqtt';
import { join } from 'node:path';
import { createConnection, type Socket } from 'node:net';
import mqttPacket from 'mqtt-packet';
import { controlRequest } from '../../src/agent/control.js';
import { readAudit, type AuditEntry } from '../../src/audit/audit-log.js';
import type { SnapshotPayload } from '../../src/policy/schema.js';
import { agentFor, cleanup, connect as connectOf, endAll, exampleSnapshot, mosquitto, startAgent, until, type AgentProcess, type Connected } from '../helpers/agent.js';

/** The protocol version of the scenarios running (the two runs are sequential). */
let pv: 4 | 5 = 4;
/** MQTT 5's persistent session: Clean Start 0 and a Session Expiry Interval (0, the default, ends it with the connection). */
const SESSION_EXPIRY = { sessionExpiryInterval: 3600 };
function connect(port: number, opts: IClientOptions): Promise<Connected> {
  return connectOf(port, { ...opts, protocolVersion: pv, ...(pv === 5 && opts.clean === false ? { properties: SESSION_EXPIRY } : {}) });
}
/** A CONNACK refusal in 3.1.1's return codes (aedes maps them to MQTT 5 reason codes). */
const asV4 = (code: number | undefined) => (pv === 5 ? ({ 0x85: 2, 0x86: 4, 0x87: 5 } as Record<number, number>)[code ?? -1] ?? code : code);
const V = () => (pv === 5 ? ['-V', 'mqttv5'] : []);

const OVEN = { clientId: 'oven-1', username: 'oven-1', password: 'oven-1-token' };
const ANNA = { clientId: 'anna', username: 'tech-anna', password: 'anna-pass' };
const INBOX = 'things/oven-1/commands/#';

async function install(agent: AgentProcess, bytes: Buffer): Promise<void> {
  const r = await controlRequest(agent.stateDir, { cmd: 'install', snapshot: bytes.toString('base64'), source: 'test' });
  if (!r.ok) throw new Error(`install refused: ${r.code} ${r.message}`);
}

/** Waits for an audit record matching `pred` (the agent flushes every 100 ms in tests). */
async function audited(agent: AgentProcess, pred: (e: AuditEntry) => boolean, timeoutMs = 15_000): Promise<AuditEntry | undefined> {
  let hit: AuditEntry | undefined;
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    hit = (await readAudit(join(agent.stateDir, 'audit'))).find(pred);
    if (hit) return hit;
    await new Promise((r) => setTimeout(r, 50));
  }
  return undefined;
}


const revoke = (id: string) => (p: SnapshotPayload) => {
  p.users!.find((u) => u.id === id)!.revoked = true;
};
const withoutCommands = (p: SnapshotPayload) => {
  const role = p.roles!.find((r) => r.name === 'technician')!;
  role.permissions = role.permissions.filter((x) => x !== 'EXECUTE_THING_COMMAND');
};
const moveOven = (group: string) => (p: SnapshotPayload) => {
  p.things!.find((x) => x.id === 'oven-1')!.resourceGroup = group;
};

/** The oven's persistent session: subscribed at `qos` to its commands, then offline. */
async function offlineOven(agent: AgentProcess, qos: 1 | 2, filters = [INBOX]): Promise<void> {
  const oven = await connect(agent.port, { ...OVEN, clean: false });
  for (const f of filters) await oven.client.subscribeAsync(f, { qos });
  await endAll(oven);
}

/** Reconnects the oven's persistent session; `marker` is a live command sent after CONNACK: every queued one arrives before it. */
async function resumeOven(agent: AgentProcess, anna: Connected, marker: string, resubscribe = false): Promise<Connected> {
  const oven = await connect(agent.port, { ...OVEN, clean: false });
  if (resubscribe) await oven.client.subscribeAsync(INBOX, { qos: 1 });
  await anna.client.publishAsync(`things/oven-1/commands/${marker}`, marker, { qos: 1 });
  if (!(await until(() => oven.messages.some((m) => m.payload === marker), 10_000))) throw new Error(`marker ${marker} never arrived`);
  return oven;
}

const payloads = (c: Connected) => c.messages.map((m) => m.payload);

/**
 * Waits until every expected payload has arrived, then checks that they are all that arrived. A
 * queued message and a live one on another topic may arrive in either order (MQTT orders messages per
 * topic only), so the check is on the set.
 */
async function received(t: Test, c: Connected, expected: string[], why: string): Promise<void> {
  await until(() => expected.every((p) => payloads(c).includes(p)), 10_000);
  t.same([...payloads(c)].sort(), [...expected].sort(), why);
}

for (const version of [4, 5] as const) t.test(`MQTT ${version === 4 ? '3.1.1' : '5'}`, async (t) => {
  pv = version;
  for (const qos of [1, 2] as const) {
    t.test(`a QoS ${qos} command queued for an offline device is refused at delivery once its sender is revoked`, async (t) => {
      const agent = await agentFor(t);
      await offlineOven(agent, qos);
      const bob = await connect(agent.port, { clientId: 'bob', username: 'op-bob', password: 'bob-pass' });
      await bob.client.publishAsync('things/oven-1/commands/from-bob', 'from-bob', { qos });
      await endAll(bob);
      await install(agent, exampleSnapshot(2, revoke('op-bob')));
      const anna = await connect(agent.port, ANNA);
      const oven = await resumeOven(agent, anna, 'marker-1');
      t.same(payloads(oven), ['marker-1'], 'the revoked sender\'s command is not delivered; a live one is');
      const refusal = await audited(agent, (e) => e.stage === 'delivery' && e.principal === 'op-bob');
      t.match(refusal, { decision: 'deny', reason: 'REVOKED', action: 'EXECUTE_THING_COMMAND', thing: 'oven-1', receiver: 'oven-1', clientId: 'bob', topic: 'things/oven-1/commands/from-bob', snapshotVersion: 2 }, 'audited: sender, receiver, reason, at delivery');
      t.ok(refusal?.authorizedAt, 'with the time it was authorized');
      // The refused message is gone from the session: a second resume neither delivers nor refuses it again.
      await endAll(oven);
      const again = await resumeOven(agent, anna, 'marker-2');
      t.same(payloads(again), ['marker-2'], 'nothing left in the queue');
      const records = (await readAudit(join(agent.stateDir, 'audit'))).filter((e) => e.stage === 'delivery' && e.principal === 'op-bob');
      t.equal(records.length, 1, 'refused once: the entry was removed, not kept to be refused at every reconnect');
      await endAll(again, anna);
    });
  }

  t.test('downgraded role, device moved out of the gateway\'s resource groups', async (t) => {
    const agent = await agentFor(t);
    await offlineOven(agent, 1);
    let anna = await connect(agent.port, ANNA);
    await anna.client.publishAsync('things/oven-1/commands/before-downgrade', 'x', { qos: 1 });
    await install(agent, exampleSnapshot(2, withoutCommands));
    const bob = await connect(agent.port, { clientId: 'bob', username: 'op-bob', password: 'bob-pass' });
    const oven = await resumeOven(agent, bob, 'marker-1');
    t.same(payloads(oven), ['marker-1'], 'the command of a technician whose role lost EXECUTE_THING_COMMAND is not delivered');
    t.match(await audited(agent, (e) => e.stage === 'delivery' && e.principal === 'tech-anna'), { reason: 'NOT_GRANTED', receiver: 'oven-1' });
    await endAll(oven);

    // v3: commands back for technicians; v4: oven-1 moves to line-2 (not served by this standard gateway).
    await offlineOven(agent, 1);
    await install(agent, exampleSnapshot(3));
    await endAll(anna);
    anna = await connect(agent.port, ANNA);
    await anna.client.publishAsync('things/oven-1/commands/before-move', 'y', { qos: 1 });
    await install(agent, exampleSnapshot(4, moveOven('line-2')));
    const refused = await connect(agent.port, { ...OVEN, clean: false }).then(
      (c) => endAll(c).then(() => 'connected'),
      (err: Error & { code?: number }) => `refused ${asV4(err.code)}`,
    );
    t.equal(refused, 'refused 5', 'the device itself cannot connect through this gateway (GATEWAY_SCOPE)');
    // Back in line-1 (v5): the queued command's sender is still allowed, so it is delivered — decided at delivery, as of now.
    await install(agent, exampleSnapshot(5));
    const back = await resumeOven(agent, bob, 'marker-2');
    await received(t, back, ['y', 'marker-2'], 'decided against the snapshot in force at delivery');
    await endAll(back, anna, bob);
  });

  t.test('a still-authorized queued command arrives exactly once, QoS 1 and 2', async (t) => {
    const agent = await agentFor(t);
    for (const qos of [1, 2] as const) {
      await offlineOven(agent, qos);
      const anna = await connect(agent.port, ANNA);
      await anna.client.publishAsync(`things/oven-1/commands/queued-${qos}`, `queued-${qos}`, { qos });
      const oven = await resumeOven(agent, anna, `marker-${qos}a`);
      await received(t, oven, [`queued-${qos}`, `marker-${qos}a`], `QoS ${qos}: the queued command and the live one`);
      await endAll(oven);
      const again = await resumeOven(agent, anna, `marker-${qos}b`);
      t.same(payloads(again), [`marker-${qos}b`], `QoS ${qos}: acknowledged, never sent again`);
      await endAll(again, anna);
    }
    const allowed = (await readAudit(join(agent.stateDir, 'audit'))).filter((e) => e.stage === 'delivery');
    t.same(allowed, [], 'no refusal at delivery');
  });

  /** A raw MQTT client (3.1.1 or 5) that does not acknowledge what it receives. */
  function rawClient(port: number): Promise<{ socket: Socket; packets: Record<string, unknown>[]; send(p: object): void }> {
    return new Promise((resolve, reject) => {
      const socket = createConnection(port, '127.0.0.1');
      const parser = mqttPacket.parser({ protocolVersion: pv });
      const packets: Record<string, unknown>[] = [];
      parser.on('packet', (p) => packets.push(p as unknown as Record<string, unknown>));
      socket.on('data', (d) => parser.parse(d));
      socket.on('error', reject);
      socket.on('connect', () => resolve({ socket, packets, send: (p) => socket.write(mqttPacket.generate(p as mqttPacket.Packet, { protocolVersion: pv })) }));
    });
  }

  t.test('an unacknowledged command is decided again when it would be redelivered after a reconnect', async (t) => {
    const agent = await agentFor(t);
    const connectPacket = { cmd: 'connect', protocolId: 'MQTT', protocolVersion: pv, clean: false, clientId: 'oven-1', keepalive: 30, username: 'oven-1', password: Buffer.from('oven-1-token'), ...(pv === 5 ? { properties: SESSION_EXPIRY } : {}) };
    let raw = await rawClient(agent.port);
    raw.send(connectPacket);
    raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: INBOX, qos: 1 }] });
    t.ok(await until(() => raw.packets.some((p) => p['cmd'] === 'suback'), 10_000));
    const bob = await connect(agent.port, { clientId: 'bob', username: 'op-bob', password: 'bob-pass' });
    await bob.client.publishAsync('things/oven-1/commands/unacked', 'unacked', { qos: 1 });
    t.ok(await until(() => raw.packets.some((p) => p['cmd'] === 'publish'), 10_000), 'delivered once, not acknowledged');
    raw.socket.destroy();
    await endAll(bob);
    await install(agent, exampleSnapshot(2, revoke('op-bob')));
    raw = await rawClient(agent.port);
    raw.send(connectPacket);
    t.ok(await until(() => raw.packets.some((p) => p['cmd'] === 'connack'), 10_000));
    t.match(await audited(agent, (e) => e.stage === 'delivery' && e.principal === 'op-bob'), { reason: 'REVOKED', receiver: 'oven-1' }, 'the redelivery is refused and audited');
    const anna = await connect(agent.port, ANNA);
    await anna.client.publishAsync('things/oven-1/commands/marker', 'marker', { qos: 1 });
    t.ok(await until(() => raw.packets.some((p) => p['cmd'] === 'publish'), 10_000));
    t.same(raw.packets.filter((p) => p['cmd'] === 'publish').map((p) => String(p['payload'])), ['marker'], 'only the live command; the revoked one is not resent');
    raw.socket.destroy();
    await endAll(anna);
  });

  t.test('a retained command is delivered once to current subscribers and never stored', async (t) => {
    const agent = await agentFor(t);
    const oven = await connect(agent.port, { ...OVEN, clientId: 'oven-live' });
    await oven.client.subscribeAsync(INBOX, { qos: 1 });
    const pub = mosquitto('mosquitto_pub', [...V(), '-h', '127.0.0.1', '-p', String(agent.port), '-i', 'anna-pub', '-u', 'tech-anna', '-P', 'anna-pass', '-t', 'things/oven-1/commands/stay', '-m', 'retained?', '-q', '1', '-r']);
    t.equal(pub.code, 0, pub.stderr);
    t.ok(await until(() => oven.messages.length === 1, 10_000), 'the current subscriber gets it');
    t.match(await audited(agent, (e) => e.principal === 'tech-anna' && e.retainIgnored === true), { decision: 'allow', action: 'EXECUTE_THING_COMMAND' }, 'the audit record notes that retain was ignored');
    await endAll(oven);
    // A later subscription (the device rebooting) gets nothing retained: mosquitto_sub waits 2 s for one message.
    const sub = mosquitto('mosquitto_sub', [...V(), '-h', '127.0.0.1', '-p', String(agent.port), '-i', 'oven-reboot', '-u', 'oven-1', '-P', 'oven-1-token', '-t', INBOX, '-C', '1', '-W', '2', '-v']);
    t.equal(sub.stdout, '', 'no retained command on resubscribe');
  });

  t.test('a will on a command topic is decided for its owner when it fires', async (t) => {
    const agent = await agentFor(t);
    const oven = await connect(agent.port, { ...OVEN, clientId: 'oven-live' });
    await oven.client.subscribeAsync(INBOX, { qos: 1 });
    const will = (payload: string) => ({ topic: 'things/oven-1/commands/stop', payload: Buffer.from(payload), qos: 1 as const, retain: true });
    // Anna's will fires while she is allowed: delivered (and not retained).
    const anna = await connect(agent.port, { ...ANNA, will: will('anna-will') });
    anna.client.stream.destroy();
    t.ok(await until(() => oven.messages.some((m) => m.payload === 'anna-will'), 10_000), 'an authorized owner\'s will is delivered');
    t.match(await audited(agent, (e) => e.will === true && e.principal === 'tech-anna'), { decision: 'allow', retainIgnored: true });
    // Bob's will fires because a snapshot revokes him (his session is dropped): refused, audited.
    const bob = await connect(agent.port, { clientId: 'bob', username: 'op-bob', password: 'bob-pass', will: will('bob-will') });
    await install(agent, exampleSnapshot(2, revoke('op-bob')));
    t.ok(await until(() => !bob.client.connected, 10_000), 'the revoked session is dropped');
    t.match(await audited(agent, (e) => e.will === true && e.principal === 'op-bob'), { decision: 'deny', reason: 'REVOKED' }, 'the revoked owner\'s will is refused and audited');
    const anna2 = await connect(agent.port, ANNA);
    await anna2.client.publishAsync('things/oven-1/commands/marker', 'marker', { qos: 1 });
    t.ok(await until(() => oven.messages.some((m) => m.payload === 'marker'), 10_000));
    t.same(payloads(oven), ['anna-will', 'marker'], 'bob\'s will never reached the device');
    await endAll(oven, anna2, bob);
  });

  t.test('a command older than its time to live is dropped and audited ACTION_EXPIRED', async (t) => {
    const agent = await agentFor(t, { config: { actions: { ttlSeconds: { command: 1 } } } });
    await offlineOven(agent, 1, [INBOX, 'things/oven-1/parameters/#']);
    const anna = await connect(agent.port, ANNA);
    await anna.client.publishAsync('things/oven-1/commands/stale', 'stale', { qos: 1 });
    await anna.client.publishAsync('things/oven-1/parameters/temp/set', '180', { qos: 1 }); // its own (default, 5 min) time to live
    const expired = await audited(agent, (e) => e.reason === 'ACTION_EXPIRED', 20_000);
    t.match(expired, { decision: 'deny', principal: 'tech-anna', action: 'EXECUTE_THING_COMMAND', thing: 'oven-1', receiver: 'oven-1', topic: 'things/oven-1/commands/stale' }, 'dropped from the queue once its time to live passed');
    const oven = await resumeOven(agent, anna, 'marker');
    await received(t, oven, ['180', 'marker'], 'the expired command is not delivered; the parameter write, within its own time to live, is');
    await endAll(oven, anna);
  });

  t.test('queued actions across an agent restart: read back, decided again, exactly once', async (t) => {
    let agent = await startAgent();
    t.teardown(async () => {
      await agent.stop();
      cleanup(agent);
    });
    await offlineOven(agent, 1);
    const bob = await connect(agent.port, { clientId: 'bob', username: 'op-bob', password: 'bob-pass' });
    await bob.client.publishAsync('things/oven-1/commands/from-bob', 'from-bob', { qos: 1 });
    let anna = await connect(agent.port, ANNA);
    await anna.client.publishAsync('things/oven-1/commands/from-anna', 'from-anna', { qos: 1 });
    await endAll(bob, anna);
    await install(agent, exampleSnapshot(2, revoke('op-bob')));
    await agent.stop();
    agent = await startAgent({ stateDir: agent.stateDir, bootstrap: null });
    anna = await connect(agent.port, ANNA);
    let oven = await resumeOven(agent, anna, 'marker-1');
    await received(t, oven, ['from-anna', 'marker-1'], 'the session and its queue survived the restart: anna\'s command arrives, the revoked bob\'s does not');
    t.match(await audited(agent, (e) => e.stage === 'delivery' && e.principal === 'op-bob'), { reason: 'REVOKED', receiver: 'oven-1', clientId: 'bob' }, 'refused at delivery after the restart, audited');
    await endAll(oven, anna);

    // SIGKILL: what was queued before it (and synced, sessions.syncIntervalMs) is read back too.
    await offlineOven(agent, 1);
    anna = await connect(agent.port, ANNA);
    await anna.client.publishAsync('things/oven-1/commands/before-kill', 'before-kill', { qos: 1 });
    await endAll(anna);
    const journal = join(agent.stateDir, 'sessions', 'journal.log');
    const { readFileSync } = await import('node:fs');
    t.ok(await until(() => readFileSync(journal).includes('before-kill'), 10_000), 'the queued command is in the journal');
    await agent.kill();
    agent = await startAgent({ stateDir: agent.stateDir, bootstrap: null });
    anna = await connect(agent.port, ANNA);
    oven = await resumeOven(agent, anna, 'marker-2');
    await received(t, oven, ['before-kill', 'marker-2'], 'after SIGKILL the queued command arrives, once');
    await endAll(oven);
    oven = await resumeOven(agent, anna, 'marker-3');
    t.same(payloads(oven), ['marker-3'], 'and is not sent again');
    await endAll(oven, anna);
  });

  t.test('a persistent session is its owner\'s across a restart', async (t) => {
    let agent = await startAgent();
    t.teardown(async () => {
      await agent.stop();
      cleanup(agent);
    });
    await offlineOven(agent, 1);
    await agent.stop();
    agent = await startAgent({ stateDir: agent.stateDir, bootstrap: null });
    const code = await connect(agent.port, { clientId: 'oven-1', username: 'mixer-1', password: 'mixer-1-token', clean: false }).then(
      (c) => endAll(c).then(() => 0),
      (err: Error & { code?: number }) => asV4(err.code) ?? -1,
    );
    t.equal(code, 2, 'another principal cannot take over the client id of oven-1\'s session (CONNACK 0x02)');
  });

  t.test('a bulk update\'s share waiting for an offline device is decided again for the bulk sender', async (t) => {
    const agent = await agentFor(t);
    await offlineOven(agent, 1, ['things/oven-1/bulk/#']);
    const admin = await connect(agent.port, { clientId: 'admin', username: 'plant-admin', password: 'admin-pass' });
    await admin.client.publishAsync('bulk/reboot', JSON.stringify({ things: ['oven-1'] }), { qos: 1 });
    t.match(await audited(agent, (e) => e.principal === 'plant-admin' && e.action === 'EXECUTE_BULK_UPDATE' && e.decision === 'allow'), { thing: 'oven-1' }, 'allowed when published');
    await endAll(admin);
    await install(agent, exampleSnapshot(2, revoke('plant-admin')));
    const oven = await connect(agent.port, { ...OVEN, clean: false });
    t.match(await audited(agent, (e) => e.stage === 'delivery' && e.principal === 'plant-admin'), { reason: 'REVOKED', action: 'EXECUTE_BULK_UPDATE', topic: 'things/oven-1/bulk/reboot', receiver: 'oven-1' });
    t.same(payloads(oven), [], 'the revoked sender\'s bulk share is not delivered');
    await endAll(oven);
  });

  t.test('a cloud request waiting for an offline device: refused at delivery, reported on the replies topic', async (t) => {
    const { startMosquitto } = await import('../helpers/mosquitto.js');
    const mqtt = (await import('mqtt')).default;
    const cloud = await startMosquitto();
    t.teardown(() => cloud.stop());
    const agent = await agentFor(t, { config: { cloud: { enabled: true, url: cloud.url, reconnectMinMs: 50, reconnectMaxMs: 500 }, schedule: { auditUpload: '0 0 1 1 *' } } });
    const P = 'edgewarden/gw-plant-1/';
    const replies: Record<string, unknown>[] = [];
    const obs = mqtt.connect(cloud.url, { clientId: 'observer', protocolVersion: 5 });
    obs.on('message', (topic, payload) => {
      if (topic === `${P}replies`) replies.push(JSON.parse(payload.toString()) as Record<string, unknown>);
    });
    await new Promise<void>((resolve) => obs.once('connect', () => resolve()));
    t.teardown(() => obs.endAsync(true));
    await obs.subscribeAsync(`${P}#`, { qos: 1 });
    t.ok(await until(() => agent.logs().some((l) => /cloud link online/.test(l)), 15_000), 'the link is up');
    await offlineOven(agent, 1);
    await obs.publishAsync(`${P}down/things/oven-1/commands/reboot`, JSON.stringify({ principal: 'op-bob', id: 'req-1', payload: 'from the cloud' }), { qos: 1 });
    t.ok(await until(() => replies.some((r) => r['id'] === 'req-1'), 15_000));
    t.match(replies.find((r) => r['id'] === 'req-1'), { outcome: 'delivered', principal: 'op-bob' }, 'accepted for the offline device');
    await install(agent, exampleSnapshot(2, revoke('op-bob')));
    const oven = await connect(agent.port, { ...OVEN, clean: false });
    t.ok(await until(() => replies.filter((r) => r['id'] === 'req-1').length === 2, 15_000), 'a second reply follows');
    t.match(replies.filter((r) => r['id'] === 'req-1')[1], { outcome: 'denied', reason: 'REVOKED', stage: 'delivery', principal: 'op-bob', topic: 'things/oven-1/commands/reboot' });
    t.match(await audited(agent, (e) => e.stage === 'delivery' && e.principal === 'op-bob'), { source: 'cloud', clientId: 'cloud:op-bob', receiver: 'oven-1' });
    t.same(payloads(oven), [], 'nothing reached the device');
    await endAll(oven);
  });

  t.test('retained commands an older store kept are purged at start', async (t) => {
    const { mkdtempSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { SessionJournal } = await import('../../src/store/session-journal.js');
    const stateDir = mkdtempSync(join(tmpdir(), 'ew-state-'));
    const { journal } = await SessionJournal.open({ dir: join(stateDir, 'sessions'), syncIntervalMs: 0 });
    const retained = (topic: string, payload: string) => ['r', topic, { cmd: 'publish', topic, payload: Buffer.from(payload), qos: 1, retain: true, dup: false, brokerId: 'old', brokerCounter: 1 }];
    journal.append(retained('things/oven-1/commands/reboot', 'stale command'));
    journal.append(retained('things/oven-1/telemetry/state', 'running'));
    await journal.close();
    const agent = await agentFor(t, { stateDir });
    t.match(await agent.waitLog(/retained messages on action topics purged/), /"purged":1/, 'one purged, logged');
    const sub = mosquitto('mosquitto_sub', [...V(), '-h', '127.0.0.1', '-p', String(agent.port), '-i', 'oven-x', '-u', 'oven-1', '-P', 'oven-1-token', '-t', 'things/oven-1/#', '-C', '2', '-W', '2', '-v']);
    t.equal(sub.stdout.trim(), 'things/oven-1/telemetry/state running', 'the retained telemetry is still there; the command is gone');
  });

  t.test('a bulk request is de-duplicated and its refusals are one record per reason', async (t) => {
    const agent = await agentFor(t);
    const oven = await connect(agent.port, { ...OVEN, clientId: 'oven-live' });
    await oven.client.subscribeAsync('things/oven-1/bulk/#', { qos: 1 });
    const admin = await connect(agent.port, { clientId: 'admin', username: 'plant-admin', password: 'admin-pass' });
    const things = [...Array.from({ length: 10_000 }, () => 'oven-1'), ...Array.from({ length: 500 }, (_, i) => `ghost-${i}`)];
    await admin.client.publishAsync('bulk/reboot', JSON.stringify({ things }), { qos: 1 });
    const refused = await audited(agent, (e) => e.action === 'EXECUTE_BULK_UPDATE' && e.decision === 'deny');
    t.match(refused, { reason: 'UNKNOWN_THING', count: 500, thing: 'ghost-0', topic: 'bulk/reboot' }, 'one record for the 500 unknown things');
    // A second bulk request, after the first from the same publisher: its share arrives after the first's.
    await admin.client.publishAsync('bulk/marker', JSON.stringify({ things: ['oven-1'] }), { qos: 1 });
    t.ok(await until(() => oven.messages.some((m) => m.topic === 'things/oven-1/bulk/marker'), 10_000));
    const audit = (await readAudit(join(agent.stateDir, 'audit'))).filter((e) => e.action === 'EXECUTE_BULK_UPDATE');
    t.equal(audit.filter((e) => e.decision === 'allow' && e.topic === 'things/oven-1/bulk/reboot').length, 1, 'oven-1 named 10,000 times: one allowed share');
    t.equal(audit.filter((e) => e.topic !== 'things/oven-1/bulk/marker').length, 2, 'two records for the first request in all');
    t.match(await agent.waitLog(/bulk update fanned out/), /"targets":501,"delivered":1/);
    t.same(oven.messages.map((m) => m.topic), ['things/oven-1/bulk/reboot', 'things/oven-1/bulk/marker'], 'the first request delivered once, then the second');
    await endAll(oven, admin);
  });
});
