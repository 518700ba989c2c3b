// The cloud link tells the cloud broker the largest packet it takes (MQTT 5 Maximum Packet Size):
// a retained blob larger than any snapshot is dropped by the broker, never buffered by the agent.
import t from 'tap';
import mqtt from 'mqtt';
import { cleanup, exampleSnapshot, startAgent, until } from '../helpers/agent.js';
import { startMosquitto } from '../helpers/mosquitto.js';

const P = 'edgewarden/gw-plant-1/';

t.test('an oversized retained snapshot never reaches the agent; the next valid one does', async (t) => {
  const cloud = await startMosquitto();
  t.teardown(() => cloud.stop());
  const agent = await startAgent({
    config: { snapshot: { maxBytes: 1024 * 1024 }, cloud: { enabled: true, url: cloud.url, reconnectMinMs: 50, reconnectMaxMs: 500 }, schedule: { auditUpload: '0 0 1 1 *' } },
  });
  t.teardown(async () => {
    await agent.stop();
    cleanup(agent);
  });
  const refused: string[] = [];
  const obs = mqtt.connect(cloud.url, { clientId: 'observer', protocolVersion: 5 });
  obs.on('message', (topic, payload) => {
    if (topic === `${P}snapshot/refused`) refused.push(payload.toString());
  });
  await new Promise<void>((resolve) => obs.once('connect', () => resolve()));
  t.teardown(() => obs.endAsync(true));
  await obs.subscribeAsync(`${P}snapshot/refused`, { qos: 1 });
  t.ok(await until(() => agent.logs().some((l) => /cloud link online/.test(l)), 15_000), 'the link is up');
  await obs.publishAsync(`${P}snapshot`, Buffer.alloc(8 * 1024 * 1024, 0x41), { qos: 1, retain: true });
  await obs.publishAsync(`${P}snapshot`, exampleSnapshot(2), { qos: 1, retain: true });
  t.ok(await until(() => agent.logs().some((l) => /"msg":"snapshot accepted"/.test(l) && /"version":2/.test(l)), 15_000), 'the valid snapshot after it is taken');
  t.same(refused.filter((r) => /"bytes":8388608/.test(r)), [], 'the 8 MiB blob was never delivered to the agent, so never refused by it');
  t.notOk(agent.logs().some((l) => /EW_SNAPSHOT_TOO_LARGE/.test(l)), 'nor read whole and refused as too large');
});
