// Strangers cannot flush the audit log: thousands of refused CONNECTs from one address, each with its
// own 250-character username, make a few records; a denied command recorded before stays.
// (From loopback: no address-wide back-off there, so each one is checked.)
import t from 'tap';
import { join } from 'node:path';
import { createConnection } from 'node:net';
import { readAudit } from '../../src/audit/audit-log.js';
import mqttPacket from 'mqtt-packet';
import { cleanup, connect, endAll, rawConnack, startAgent } from '../helpers/agent.js';

t.test('refused connections are coalesced per source; the records that matter are not rotated away', async (t) => {
  const agent = await startAgent({ config: { audit: { maxBytes: 64 * 1024, flushIntervalMs: 100 } } });
  t.teardown(async () => {
    await agent.stop();
    cleanup(agent);
  });
  const carl = await connect(agent.port, { clientId: 'carl', username: 'viewer-carl', password: 'carl-pass' });
  await carl.client.publishAsync('things/oven-1/commands/reboot', 'x', { qos: 1 });
  await endAll(carl);
  const denied = (e: { principal: string | null; reason?: string }) => e.principal === 'viewer-carl' && e.reason === 'NOT_GRANTED';
  let before = await readAudit(join(agent.stateDir, 'audit'));
  for (let i = 0; i < 100 && !before.some(denied); i++) {
    await new Promise((r) => setTimeout(r, 100));
    before = await readAudit(join(agent.stateDir, 'audit'));
  }
  t.ok(before.some(denied), 'the denied command is recorded');
  const N = 600; // each costs a (dummy) scrypt check: that is the point of it, and it takes a while
  let next = 0;
  const codes = new Map<number, number>();
  const worker = async () => {
    while (next < N) {
      const i = next++;
      const user = `${String(i).padStart(6, '0')}${'u'.repeat(244)}`;
      const packet = mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: `c${i}`, keepalive: 30, username: user, password: Buffer.from('wrong') });
      const code = await rawConnack(agent.port, packet);
      codes.set(code, (codes.get(code) ?? 0) + 1);
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  t.equal((codes.get(4) ?? 0) + (codes.get(3) ?? 0), N, `all ${N} refused: CONNACK 0x04, or 0x03 while the slow checks are all busy (${JSON.stringify([...codes])})`);
  // The interval's count arrives as one record (every 10 s).
  let audit = await readAudit(join(agent.stateDir, 'audit'));
  const counted = () => audit.filter((e) => e.action === 'connect').reduce((n, e) => n + (e.count ?? 1), 0);
  for (let i = 0; i < 300 && counted() < N; i++) {
    await new Promise((r) => setTimeout(r, 100));
    audit = await readAudit(join(agent.stateDir, 'audit'));
  }
  const refusals = audit.filter((e) => e.action === 'connect');
  t.equal(counted(), N, 'every refusal is counted');
  t.ok(refusals.length <= 20, `${refusals.length} records for ${N} refusals`);
  t.match(refusals[0], { remote: '127.0.0.1', reason: /UNKNOWN_PRINCIPAL|BUSY/ });
  t.ok((refusals[0]!.principal ?? '').length <= 64, 'the attacker\'s 250-character username is cut to 64');
  t.ok(audit.some(denied), 'the denied command recorded before the flood is still in the log');
});

t.test('a wildcard in a PUBLISH topic closes the connection and is audited; the QoS 2 in-flight limit is logged', async (t) => {
  const agent = await startAgent({ config: { limits: { maxInflightPerClient: 5 } } });
  t.teardown(async () => {
    await agent.stop();
    cleanup(agent);
  });
  const raw = (packets: object[]): Promise<void> =>
    new Promise((resolve) => {
      const socket = createConnection(agent.port, '127.0.0.1');
      socket.on('error', () => undefined);
      socket.on('data', () => undefined); // read what comes (CONNACK, PUBRECs), so the close is seen
      socket.on('close', () => resolve());
      socket.on('connect', () => {
        for (const p of packets) socket.write(mqttPacket.generate(p as mqttPacket.Packet));
      });
    });
  const login = { cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 30, username: 'tech-anna', password: Buffer.from('anna-pass') };
  await raw([{ ...login, clientId: 'wild' }, { cmd: 'publish', topic: 'things/+/commands/reboot', payload: Buffer.from('x'), qos: 0, retain: false, dup: false }]);
  t.ok(await agent.waitLog(/wildcard in a PUBLISH topic/), 'the connection is closed, and logged');
  let audit = await readAudit(join(agent.stateDir, 'audit'));
  for (let i = 0; i < 100 && !audit.some((e) => e.action === 'publish' && e.principal === 'tech-anna'); i++) {
    await new Promise((r) => setTimeout(r, 100));
    audit = await readAudit(join(agent.stateDir, 'audit'));
  }
  t.match(audit.find((e) => e.action === 'publish' && e.principal === 'tech-anna'), { decision: 'deny', reason: 'TOPIC_DENIED', clientId: 'wild' }, 'audited');
  const qos2 = Array.from({ length: 7 }, (_, i) => ({ cmd: 'publish', topic: 'things/oven-1/commands/c', payload: Buffer.from('x'), qos: 2, messageId: i + 1, retain: false, dup: false }));
  await raw([{ ...login, clientId: 'no-pubrel' }, ...qos2]);
  t.match(await agent.waitLog(/too many QoS 2 messages awaiting PUBREL/), /"max":5/, 'the QoS 2 in-flight limit is logged when it closes a client');
});
