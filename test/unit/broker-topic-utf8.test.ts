// Topics that are not well-formed UTF-8, or hold U+0000, are a parse error [MQTT-1.5.3-1]
// [MQTT-1.5.3-2] (src/broker/upstream/utf8-topic-validation.ts, mqtt5-property-validation.ts): a table of topic bytes through mqtt-packet's real parser,
// guarded, for PUBLISH, SUBSCRIBE and UNSUBSCRIBE. The last test fails when mqtt-packet starts
// refusing such topics itself (or stops decoding through _parseString): then the guard can go.
import t from 'tap';
import mqttPacket from 'mqtt-packet';
import { PROPERTY_NOT_UTF8, TOPIC_NOT_UTF8, guardTopicUtf8 } from '../../src/broker/upstream/utf8-topic-validation.js';
import { PROPERTY_INVALID, guardPropertyValues, invalidProperty } from '../../src/broker/upstream/mqtt5-property-validation.js';
import type { ParserInternals } from '../../src/broker/upstream/client-parser.js';
import { remainingLength } from '../helpers/mqtt-bytes.js';

const str = (b: Buffer): Buffer => Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
const frame = (first: number, body: Buffer): Buffer => Buffer.concat([Buffer.from([first, ...remainingLength(body.length)]), body]);
const publish = (topic: Buffer, qos: 0 | 1 = 0): Buffer => frame(0x30 | (qos << 1), Buffer.concat([str(topic), qos > 0 ? Buffer.from([0, 7]) : Buffer.alloc(0), Buffer.from('payload')]));
const subscribe = (topics: Buffer[]): Buffer => frame(0x82, Buffer.concat([Buffer.from([0, 1]), ...topics.map((f) => Buffer.concat([str(f), Buffer.from([1])]))]));
const unsubscribe = (topics: Buffer[]): Buffer => frame(0xa2, Buffer.concat([Buffer.from([0, 2]), ...topics.map(str)]));

/** Parses `bytes` with a guarded parser: the packets emitted and the errors. */
function parse(bytes: Buffer, guarded = true, chunk = bytes.length): { packets: mqttPacket.Packet[]; errors: Error[] } {
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  if (guarded) guardTopicUtf8(parser as unknown as ParserInternals);
  const packets: mqttPacket.Packet[] = [];
  const errors: Error[] = [];
  parser.on('packet', (p) => packets.push(p));
  parser.on('error', (e) => errors.push(e));
  for (let i = 0; i < bytes.length && errors.length === 0; i += chunk) parser.parse(bytes.subarray(i, i + chunk));
  return { packets, errors };
}

const GOOD: [string, Buffer][] = [
  ['ASCII', Buffer.from('things/oven-1/telemetry/t')],
  ['two-byte characters', Buffer.from('things/four/température')],
  ['a four-byte character', Buffer.from('things/oven-1/telemetry/\u{1F525}')],
  ['U+FFFD itself, well-formed (EF BF BD)', Buffer.from('things/oven-1/telemetry/\uFFFD')],
  ['U+FFFF (a noncharacter: allowed, [MQTT-1.5.3-3])', Buffer.from('a/\uFFFF')],
  ['U+0001 (a control character: allowed)', Buffer.from('a/\u0001')],
];
const BAD: [string, Buffer][] = [
  ['a lone continuation byte', Buffer.from([0x61, 0x2f, 0x80])],
  ['a two-byte lead without its continuation', Buffer.from([0x61, 0x2f, 0xc3, 0x28])],
  ['bytes FF FE', Buffer.from([0x74, 0x2f, 0xff, 0xfe])],
  ['an overlong encoding of "/" (C0 AF)', Buffer.from([0x61, 0xc0, 0xaf, 0x62])],
  ['an overlong encoding of U+0000 (C0 80)', Buffer.from([0x61, 0xc0, 0x80])],
  ['a UTF-16 surrogate (ED A0 80)', Buffer.from([0x61, 0x2f, 0xed, 0xa0, 0x80])],
  ['a code point above U+10FFFF (F4 90 80 80)', Buffer.from([0x61, 0xf4, 0x90, 0x80, 0x80])],
  ['a three-byte sequence cut at the end', Buffer.from([0x61, 0x2f, 0xe2, 0x82])],
  ['U+0000', Buffer.from('things/oven-1/telemetry/a\u0000b')],
  ['U+0000 alone', Buffer.from([0])],
];

t.test('PUBLISH: a well-formed topic is parsed; an ill-formed one, or one with U+0000, is a parse error', async (t) => {
  for (const [name, topic] of GOOD) {
    for (const qos of [0, 1] as const) {
      const r = parse(publish(topic, qos));
      t.same({ errors: r.errors.length, topic: (r.packets[0] as mqttPacket.IPublishPacket | undefined)?.topic }, { errors: 0, topic: topic.toString('utf8') }, `${name}, QoS ${qos}: parsed as sent`);
    }
  }
  for (const [name, topic] of BAD) {
    for (const qos of [0, 1] as const) {
      const r = parse(publish(topic, qos));
      t.same({ packets: r.packets.length, error: r.errors[0]?.message }, { packets: 0, error: `${TOPIC_NOT_UTF8} (PUBLISH)` }, `${name}, QoS ${qos}: an error, no packet`);
    }
  }
});

t.test('SUBSCRIBE and UNSUBSCRIBE: one bad filter among good ones is a parse error', async (t) => {
  const good = GOOD.map(([, b]) => b);
  t.equal(parse(subscribe(good)).errors.length, 0, 'SUBSCRIBE with only well-formed filters');
  t.equal(parse(unsubscribe(good)).errors.length, 0, 'UNSUBSCRIBE with only well-formed filters');
  for (const [name, bad] of BAD) {
    const filters = [good[0]!, bad, good[1]!];
    const s = parse(subscribe(filters));
    t.same({ packets: s.packets.length, error: s.errors[0]?.message }, { packets: 0, error: `${TOPIC_NOT_UTF8} (SUBSCRIBE)` }, `SUBSCRIBE, ${name}`);
    const u = parse(unsubscribe(filters));
    t.same({ packets: u.packets.length, error: u.errors[0]?.message }, { packets: 0, error: `${TOPIC_NOT_UTF8} (UNSUBSCRIBE)` }, `UNSUBSCRIBE, ${name}`);
  }
});

t.test('a stream split at every byte: the good packets before a bad one come through, then the error', async (t) => {
  const stream = Buffer.concat([publish(GOOD[1]![1], 1), subscribe([GOOD[2]![1]]), publish(BAD[1]![1]), publish(GOOD[0]![1])]);
  const r = parse(stream, true, 1);
  t.same(r.packets.map((p) => p.cmd), ['publish', 'subscribe'], 'the two packets before it');
  t.equal(r.errors.length, 1, 'then one error');
  t.equal(parse(Buffer.concat([publish(GOOD[3]![1]), publish(GOOD[0]![1])]), true, 3).packets.length, 2, 'a well-formed U+FFFD split across chunks is not mistaken for a bad topic');
});

t.test('CONNECT strings are not checked (a client id with U+FFFD bytes is parsed)', async (t) => {
  const connect = mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'a\uFFFDb', keepalive: 30 } as mqttPacket.IConnectPacket);
  t.equal(parse(connect).packets.length, 1);
});

t.test('mqtt-packet still decodes an ill-formed topic as U+FFFD, and U+0000 as it came (the guard is still needed)', async (t) => {
  const ill = parse(publish(Buffer.from([0x74, 0x2f, 0xc3, 0x28])), false);
  t.same(ill.errors, [], 'no error of its own');
  t.equal((ill.packets[0] as mqttPacket.IPublishPacket | undefined)?.topic, 't/\uFFFD(', 'the topic it hands on');
  const nul = parse(publish(Buffer.from('a/\u0000')), false);
  t.equal((nul.packets[0] as mqttPacket.IPublishPacket | undefined)?.topic, 'a/\u0000');
  const p = mqttPacket.parser() as unknown as Partial<ParserInternals>;
  t.equal(typeof p._parseString, 'function', 'Parser#_parseString exists');
  t.equal(typeof p._emitError, 'function', 'Parser#_emitError exists');
});

// --- MQTT 5 properties ----------------------------------------------------------------------------

/** A v5 PUBLISH QoS 1 on a good topic with these property bytes. */
const publish5 = (props: Buffer): Buffer => frame(0x32, Buffer.concat([str(Buffer.from('a/b')), Buffer.from([0, 7]), Buffer.from(remainingLength(props.length)), props, Buffer.from('payload')]));
const subscribe5 = (props: Buffer): Buffer => frame(0x82, Buffer.concat([Buffer.from([0, 1]), Buffer.from(remainingLength(props.length)), props, str(Buffer.from('a/#')), Buffer.from([1])]));
const userProp = (k: Buffer, v: Buffer) => Buffer.concat([Buffer.from([0x26]), str(k), str(v)]);

function parse5(bytes: Buffer): { packets: mqttPacket.Packet[]; errors: Error[] } {
  const parser = mqttPacket.parser({ protocolVersion: 5 });
  guardTopicUtf8(parser as unknown as ParserInternals);
  guardPropertyValues(parser as unknown as ParserInternals); // as ../../src/broker/accept.ts does
  const packets: mqttPacket.Packet[] = [];
  const errors: Error[] = [];
  parser.on('packet', (p) => packets.push(p));
  parser.on('error', (e) => errors.push(e));
  parser.parse(bytes);
  return { packets, errors };
}

t.test('MQTT 5: a property string that is not well-formed UTF-8 is a parse error of its own (not a bad topic); a good one is parsed', async (t) => {
  for (const [name, bytes] of GOOD) {
    const r = parse5(publish5(userProp(Buffer.from('k'), bytes)));
    t.same((r.packets[0] as mqttPacket.IPublishPacket | undefined)?.properties?.userProperties, { k: bytes.toString('utf8') }, `user property value, ${name}: parsed`);
  }
  for (const [name, bytes] of BAD) {
    for (const [where, packet] of [
      ['PUBLISH user property value', publish5(userProp(Buffer.from('k'), bytes))],
      ['PUBLISH user property name', publish5(userProp(bytes, Buffer.from('v')))],
      ['PUBLISH content type', publish5(Buffer.concat([Buffer.from([0x03]), str(bytes)]))],
      ['SUBSCRIBE user property', subscribe5(userProp(Buffer.from('k'), bytes))],
      ['PUBACK reason string', frame(0x40, Buffer.concat([Buffer.from([0, 1, 0x80]), Buffer.from(remainingLength(bytes.length + 3)), Buffer.from([0x1f]), str(bytes)]))],
    ] as const) {
      const r = parse5(packet);
      t.same({ packets: r.packets.length, error: r.errors[0]?.message.startsWith(PROPERTY_NOT_UTF8) }, { packets: 0, error: true }, `${where}, ${name}: ${r.errors[0]?.message}`);
    }
  }
});

t.test('MQTT 5: a property given twice, a Subscription Identifier of 0 or one in a client\'s PUBLISH is a parse error; user properties may repeat', async (t) => {
  const twice = (p: Buffer) => Buffer.concat([p, p]);
  const cases: [string, Buffer, boolean][] = [
    ['Payload Format Indicator twice', publish5(twice(Buffer.from([0x01, 1]))), false],
    ['Response Topic twice', publish5(twice(Buffer.concat([Buffer.from([0x08]), str(Buffer.from('r/t'))]))), false],
    ['Topic Alias twice', publish5(twice(Buffer.from([0x23, 0, 1]))), false],
    ['Subscription Identifier in a PUBLISH', publish5(Buffer.from([0x0b, 5])), false],
    ['Subscription Identifier 0', subscribe5(Buffer.from([0x0b, 0])), false],
    ['Subscription Identifier twice', subscribe5(Buffer.from([0x0b, 1, 0x0b, 2])), false],
    ['Subscription Identifier 5 in a SUBSCRIBE', subscribe5(Buffer.from([0x0b, 5])), true],
    ['User Property twice', publish5(twice(userProp(Buffer.from('k'), Buffer.from('v')))), true],
  ];
  for (const [name, bytes, ok] of cases) {
    const r = parse5(bytes);
    if (ok) t.same({ packets: r.packets.length, errors: r.errors.length }, { packets: 1, errors: 0 }, `${name}: parsed`);
    else t.same({ packets: r.packets.length, error: r.errors[0]?.message.startsWith(PROPERTY_INVALID) }, { packets: 0, error: true }, `${name}: ${r.errors[0]?.message}`);
  }
  t.equal(invalidProperty('connect', { sessionExpiryInterval: [1, 2] }), 'sessionExpiryInterval more than once');
  t.equal(invalidProperty('publish', { userProperties: { a: ['1', '2'] } }), null);
});
