// src/broker/flow-control.ts: the size of an outgoing PUBLISH against the client's Maximum Packet
// Size, byte-exact against what mqtt-packet writes; the outgoing window against Receive Maximum.
import t from 'tap';
import mqttPacket from 'mqtt-packet';
import type { Client } from 'aedes';
import { exceedsClientMaximum, outboundWindow } from '../../src/broker/flow-control.js';

const client = (o: { maximumPacketSize?: number; receiveMaximum?: number }): Client => o as unknown as Client;

t.test('exceedsClientMaximum: exactly at the encoded size is allowed, one byte less is not', async (t) => {
  const cases = [
    { topic: 'a/b', payload: Buffer.from('x'), qos: 0 },
    { topic: 'things/oven-1/telemetry/t', payload: Buffer.alloc(100), qos: 1 },
    { topic: 'things/oven-1/telemetry/ü', payload: Buffer.alloc(120), qos: 2 },
    { topic: 't', payload: Buffer.alloc(20_000), qos: 1 }, // a 3-byte remaining length
    { topic: 't', payload: Buffer.alloc(10), qos: 1, properties: { subscriptionIdentifier: 7 } },
    { topic: 't', payload: Buffer.alloc(10), qos: 1, properties: { responseTopic: 'r/t', correlationData: Buffer.from('c'), userProperties: { k: 'v', l: ['1', '2'] }, contentType: 'text/plain' } },
    { topic: 't', payload: Buffer.alloc(300), qos: 0, properties: { userProperties: { big: 'x'.repeat(200) } } },
    { topic: 't', payload: Buffer.alloc(10), qos: 1, properties: { topicAlias: undefined } },
    { topic: 't', payload: 'a string payload', qos: 1 },
  ];
  for (const p of cases) {
    const size = mqttPacket.generate({ cmd: 'publish', retain: false, dup: false, messageId: 1, ...p } as mqttPacket.IPublishPacket, { protocolVersion: 5 }).length;
    t.equal(exceedsClientMaximum(client({ maximumPacketSize: size }), p), false, `${size} bytes at a maximum of ${size}`);
    t.equal(exceedsClientMaximum(client({ maximumPacketSize: size - 1 }), p), true, `${size} bytes at a maximum of ${size - 1}`);
  }
  t.equal(exceedsClientMaximum(client({}), { topic: 't', payload: Buffer.alloc(1 << 20), qos: 1 }), false, 'no Maximum Packet Size (3.1.1, or none sent): no limit');
});

t.test('outboundWindow: the smaller of limits.maxInflightOutbound and the client\'s Receive Maximum', async (t) => {
  t.equal(outboundWindow(client({ receiveMaximum: 2 }), 1000), 2);
  t.equal(outboundWindow(client({ receiveMaximum: 65535 }), 1000), 1000, 'the default (absent) Receive Maximum');
  t.equal(outboundWindow(client({}), 1000), 1000, 'none known');
});
