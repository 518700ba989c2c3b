// src/broker/upstream/packet-write-hook.ts: aedes writes every packet through mqtt-packet's module
// object's `writeToStream`, looked up at each write (else the hook no longer sees its packets).
import t from 'tap';
import { createRequire } from 'node:module';
import { hookPacketWrites } from '../../src/broker/upstream/packet-write-hook.js';
import { PipeClient, bareAedes, upstreamChanged } from '../helpers/bare-aedes.js';

const MODULE = 'packet-write-hook.ts';
const require = createRequire(import.meta.url);
const mqtt = require('mqtt-packet') as { writeToStream: (packet: { cmd: string }, stream: object, opts?: object) => boolean };

t.test("aedes' writes go through the module's writeToStream, replaced after aedes was loaded", async (t) => {
  const aedes = await bareAedes(t);
  const original = mqtt.writeToStream;
  const written: string[] = [];
  mqtt.writeToStream = (packet, stream, opts) => {
    written.push(packet.cmd);
    return original(packet, stream, opts);
  };
  t.teardown(() => void (mqtt.writeToStream = original));
  const c = new PipeClient(aedes);
  await c.connect('hooked');
  c.send({ cmd: 'pingreq' });
  t.ok(await c.next((p) => p.cmd === 'pingresp'), 'PINGRESP');
  t.same(written, ['connack', 'pingresp'], upstreamChanged("aedes' writes no longer go through require('mqtt-packet').writeToStream", MODULE));
  c.end();
});

t.test('hookPacketWrites wraps it once', async (t) => {
  const before = mqtt.writeToStream;
  hookPacketWrites();
  const wrapped = mqtt.writeToStream;
  t.not(wrapped, before, 'replaced');
  hookPacketWrites();
  t.equal(mqtt.writeToStream, wrapped, 'idempotent');
});
