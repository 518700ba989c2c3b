// src/broker/upstream/mqtt5-property-validation.ts: a bare mqtt-packet parser still makes an array of
// a repeated MQTT 5 property and accepts a Subscription Identifier where MQTT 5 forbids one (else the
// workaround can go), through the _parseProperties the workaround wraps (else it is broken).
import t from 'tap';
import mqttPacket from 'mqtt-packet';
import { PROPERTY_INVALID, guardPropertyValues } from '../../src/broker/upstream/mqtt5-property-validation.js';
import { parsePackets } from '../helpers/parse-packets.js';
import { upstreamChanged } from '../helpers/bare-aedes.js';

const MODULE = 'mqtt5-property-validation.ts';
const str = (b: Buffer): Buffer => Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
const frame = (first: number, body: Buffer): Buffer => Buffer.concat([Buffer.from([first, body.length]), body]);
const publish5 = (props: Buffer): Buffer => frame(0x30, Buffer.concat([str(Buffer.from('t')), Buffer.from([props.length]), props, Buffer.from('p')]));
const subscribe5 = (props: Buffer): Buffer => frame(0x82, Buffer.concat([Buffer.from([0, 1, props.length]), props, str(Buffer.from('a/b')), Buffer.from([1])]));
const RESPONSE_TOPIC = Buffer.concat([Buffer.from([0x08]), str(Buffer.from('r/t'))]);

function parse(bytes: Buffer, guarded: boolean) {
  return parsePackets<{ properties?: Record<string, unknown> }>(bytes, 5, guarded ? guardPropertyValues : undefined);
}

t.test('the parser has the _parseProperties the guard wraps', async (t) => {
  const parser = mqttPacket.parser() as unknown as Record<string, unknown>;
  t.type(parser['_parseProperties'], 'function', upstreamChanged('the parser has no _parseProperties()', MODULE));
  t.type(parser['_emitError'], 'function', upstreamChanged('the parser has no _emitError()', MODULE));
});

t.test('a bare parser still makes an array of a repeated property and takes forbidden identifiers (the workaround is still needed)', async (t) => {
  const twice = parse(publish5(Buffer.concat([RESPONSE_TOPIC, RESPONSE_TOPIC])), false);
  t.same({ errors: twice.errors, responseTopic: twice.packets[0]?.properties?.['responseTopic'] }, { errors: [], responseTopic: ['r/t', 'r/t'] }, upstreamChanged('mqtt-packet no longer makes an array of a Response Topic given twice (refused, or kept once)', MODULE));
  const inPublish = parse(publish5(Buffer.from([0x0b, 5])), false);
  t.same({ errors: inPublish.errors, id: inPublish.packets[0]?.properties?.['subscriptionIdentifier'] }, { errors: [], id: 5 }, upstreamChanged("mqtt-packet refuses a Subscription Identifier in a client's PUBLISH itself", MODULE));
  const zero = parse(subscribe5(Buffer.from([0x0b, 0])), false);
  t.same({ errors: zero.errors, id: zero.packets[0]?.properties?.['subscriptionIdentifier'] }, { errors: [], id: 0 }, upstreamChanged('mqtt-packet refuses a Subscription Identifier 0 itself', MODULE));
});

t.test('with the guard, they are parse errors (the wrap takes effect on this parser)', async (t) => {
  for (const bytes of [publish5(Buffer.concat([RESPONSE_TOPIC, RESPONSE_TOPIC])), publish5(Buffer.from([0x0b, 5])), subscribe5(Buffer.from([0x0b, 0]))]) {
    const r = parse(bytes, true);
    t.same({ packets: r.packets.length, error: r.errors[0]?.startsWith(PROPERTY_INVALID) }, { packets: 0, error: true }, r.errors[0] ?? 'no error');
  }
});
