// The broker turns off mqtt-packet's cache of 65,536 number Buffers (src/broker/upstream/packet-number-cache.ts):
// packets are still written byte for byte the same, and the setting reaches aedes and MQTT.js,
// which must therefore share the one mqtt-packet in the tree.
import t from 'tap';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { createRequire } from 'node:module';
import { ROOT } from '../helpers/policy.js';
import { disablePacketNumberCache, packetNumberCacheEnabled } from '../../src/broker/upstream/packet-number-cache.js';

const require = createRequire(import.meta.url);
const mqttPacket = require('mqtt-packet') as { generate(p: object): Buffer; writeToStream(p: object, s: NodeJS.WritableStream): boolean };

/** What writeToStream writes for `packet` (it corks the stream and uncorks it on the next tick). */
async function written(packet: object): Promise<Buffer> {
  const s = new PassThrough();
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  mqttPacket.writeToStream(packet, s);
  s.end();
  await new Promise((resolve) => s.once('end', resolve));
  return Buffer.concat(chunks);
}

t.test('one mqtt-packet in the tree: aedes and MQTT.js get the setting', async (t) => {
  for (const dep of ['aedes', 'mqtt']) t.notOk(existsSync(join(ROOT, 'node_modules', dep, 'node_modules', 'mqtt-packet')), `${dep} has no mqtt-packet of its own`);
});

t.test('without the cache, packets are written exactly as with it', async (t) => {
  const packets = [
    { cmd: 'publish', topic: 'things/oven-1/telemetry/temperature', payload: Buffer.from('21.5'), qos: 1, messageId: 65535, retain: false, dup: false },
    { cmd: 'publish', topic: 't', payload: Buffer.alloc(300, 1), qos: 2, messageId: 1, retain: true, dup: true },
    { cmd: 'puback', messageId: 4242 },
    { cmd: 'subscribe', messageId: 256, subscriptions: [{ topic: 'a/+/c', qos: 1 }] },
    { cmd: 'connack', returnCode: 0, sessionPresent: false },
  ];
  const before: Buffer[] = [];
  for (const p of packets) before.push(await written(p));
  for (const [i, p] of packets.entries()) t.same(before[i], mqttPacket.generate(p), `${(p as { cmd: string }).cmd}: writeToStream and generate() agree`);
  t.ok(before.every((b) => b.length >= 2), 'something was written');
  t.equal(packetNumberCacheEnabled(), true, "mqtt-packet's default");
  disablePacketNumberCache();
  t.equal(packetNumberCacheEnabled(), false);
  for (const [i, p] of packets.entries()) t.same(await written(p), before[i], `${(p as { cmd: string }).cmd} is byte for byte the same`);
});
