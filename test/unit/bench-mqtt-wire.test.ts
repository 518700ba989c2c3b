// The bench load generator's wire helpers (bench/mqtt-wire.ts), MQTT 3.1.1 and 5: what it sends is
// what mqtt-packet parses, and its cheap frame readers find the packet id, payload and reason codes
// of frames that mqtt-packet built (MQTT 5 ones with properties, which the broker may add).
import t from 'tap';
import mqttPacket, { type Packet } from 'mqtt-packet';
import {
  CONNACK,
  connectPacket,
  DISCONNECT,
  FrameReader,
  PUBACK,
  pubackReasonCode,
  pubacks,
  PUBLISH,
  publishPacket,
  publishPacketId,
  publishPacketIdOffset,
  publishPayloadStart,
  publishQos,
  SUBACK,
  subackFirstCode,
  subscribePacket,
} from '../../bench/mqtt-wire.js';

interface Frame {
  readonly type: number;
  readonly buf: Buffer;
  readonly start: number;
  readonly body: number;
  readonly end: number;
}

/** The frames of `bytes`, fed to a FrameReader in chunks of `chunk` bytes, each copied out of the buffer it arrived in. */
function frames(bytes: Buffer, chunk = bytes.length): Frame[] {
  const out: Frame[] = [];
  const reader = new FrameReader((buf, start, body, end) => {
    const copy = Buffer.from(buf.subarray(start, end));
    out.push({ type: buf[start]! >> 4, buf: copy, start: 0, body: body - start, end: end - start });
  });
  for (let i = 0; i < bytes.length; i += chunk) reader.feed(bytes.subarray(i, i + chunk));
  return out;
}

/** Every packet in `bytes`, parsed by mqtt-packet at `version`. */
function parse(bytes: Buffer, version: number): Packet[] {
  const parser = mqttPacket.parser({ protocolVersion: version });
  const out: Packet[] = [];
  parser.on('packet', (p: Packet) => out.push(p));
  parser.on('error', (e: Error) => {
    throw e;
  });
  parser.parse(bytes);
  return out;
}

const gen = (p: Record<string, unknown>, version: number): Buffer => mqttPacket.generate(p as unknown as Packet, { protocolVersion: version });

t.test('what the generator sends parses as MQTT 3.1.1 and as MQTT 5', async (t) => {
  for (const version of [4, 5] as const) {
    const payload = Buffer.from('0123456789abcdef');
    const [connect] = parse(connectPacket({ clientId: 'c1', username: 'dev-0001', password: 'dev-0001-token' }, 30, true, version), version) as (Packet & Record<string, unknown>)[];
    t.match(connect, { cmd: 'connect', protocolVersion: version, clientId: 'c1', username: 'dev-0001', keepalive: 30, clean: true }, `CONNECT v${version}`);
    t.equal(String(connect!.password), 'dev-0001-token');
    const [sub] = parse(subscribePacket(7, 'things/+/telemetry/#', 1, version), version);
    t.match(sub, { cmd: 'subscribe', messageId: 7, subscriptions: [{ topic: 'things/+/telemetry/#', qos: 1 }] }, `SUBSCRIBE v${version}`);
    const p1 = publishPacket('things/dev-0001/telemetry/t', payload, 1, 513, version);
    const p0 = publishPacket('things/dev-0001/telemetry/t', payload, 0, 1, version);
    const [a, b] = parse(Buffer.concat([p1, p0]), version);
    t.match(a, { cmd: 'publish', qos: 1, messageId: 513, topic: 'things/dev-0001/telemetry/t' }, `PUBLISH QoS 1 v${version}`);
    t.same((a as { payload: Buffer }).payload, payload);
    t.match(b, { cmd: 'publish', qos: 0, topic: 'things/dev-0001/telemetry/t' }, `PUBLISH QoS 0 v${version}`);
    t.same((b as { payload: Buffer }).payload, payload);
    // MQTT 5 puts the properties length (0) after the packet id: one byte more than 3.1.1.
    t.equal(p1.length, version === 5 ? 2 + 2 + 27 + 2 + 1 + 16 : 2 + 2 + 27 + 2 + 16);
    const acks = parse(Buffer.concat([pubacks([1, 300, 65535], 3), DISCONNECT]), version);
    t.match(acks, [{ cmd: 'puback', messageId: 1 }, { cmd: 'puback', messageId: 300 }, { cmd: 'puback', messageId: 65535 }, { cmd: 'disconnect' }], `PUBACKs and DISCONNECT v${version}`);
    if (version === 5) t.ok(acks.slice(0, 3).every((p) => ((p as { reasonCode?: number }).reasonCode ?? 0) === 0), 'a 2-byte PUBACK is reason code 0 in MQTT 5');
  }
});

t.test('the packet id offset of a built PUBLISH, to patch it in a copy (1- and 2-byte remaining lengths)', async (t) => {
  for (const version of [4, 5] as const) {
    for (const payloadBytes of [16, 300]) {
      const p = Buffer.from(publishPacket('things/dev-0000/commands/reboot', Buffer.alloc(payloadBytes), 1, 1, version));
      const at = publishPacketIdOffset(p);
      p[at] = 0x12;
      p[at + 1] = 0x34;
      const [parsed] = parse(p, version);
      t.equal((parsed as { messageId?: number }).messageId, 0x1234, `v${version}, ${payloadBytes}-byte payload`);
      t.equal((parsed as { payload: Buffer }).payload.length, payloadBytes);
    }
  }
});

t.test('PUBLISH frames: packet id and payload found by the frame readers, MQTT 5 properties skipped', async (t) => {
  const payload = Buffer.alloc(200, 0x61);
  payload.writeDoubleBE(1234.5, 0);
  payload.writeUInt32BE(42, 8);
  const cases = [
    { version: 4, qos: 1, properties: undefined },
    { version: 4, qos: 0, properties: undefined },
    { version: 5, qos: 1, properties: undefined },
    { version: 5, qos: 0, properties: undefined },
    // What a broker may add to a delivery: subscription id, expiry, user properties, response topic (more than 127 bytes of them).
    { version: 5, qos: 1, properties: { subscriptionIdentifier: 300, messageExpiryInterval: 60, userProperties: { k: 'v'.repeat(150) }, responseTopic: 'things/dev-0000/commands/reboot/reply' } },
    { version: 5, qos: 0, properties: { messageExpiryInterval: 60, correlationData: Buffer.from('xyz') } },
  ];
  const bytes = Buffer.concat(
    cases.map((c, i) =>
      gen({ cmd: 'publish', topic: `things/dev-000${i}/telemetry/t`, payload, qos: c.qos, retain: false, dup: false, ...(c.qos > 0 ? { messageId: 1000 + i } : {}), ...(c.properties ? { properties: c.properties } : {}) }, c.version),
    ),
  );
  // Whole, and cut into 7-byte chunks (frames spanning chunk boundaries).
  for (const chunk of [bytes.length, 7]) {
    const got = frames(bytes, chunk);
    t.equal(got.length, cases.length, `${got.length} frames (chunks of ${chunk})`);
    got.forEach((f, i) => {
      const c = cases[i]!;
      t.equal(f.type, PUBLISH);
      t.equal(publishQos(f.buf, f.start), c.qos);
      if (c.qos > 0) t.equal(publishPacketId(f.buf, f.body), 1000 + i, `case ${i}: packet id`);
      const at = publishPayloadStart(f.buf, f.start, f.body, f.end, c.version === 5);
      t.equal(f.end - at, payload.length, `case ${i}: payload length`);
      t.equal(f.buf.readDoubleBE(at), 1234.5, `case ${i}: timestamp`);
      t.equal(f.buf.readUInt32BE(at + 8), 42, `case ${i}: sequence number`);
    });
  }
  // Read as 3.1.1, an MQTT 5 frame's payload would start one byte early: the flag matters.
  const [v5] = frames(gen({ cmd: 'publish', topic: 'a/b', payload, qos: 1, messageId: 1, retain: false, dup: false }, 5));
  t.not(publishPayloadStart(v5!.buf, v5!.start, v5!.body, v5!.end, false), publishPayloadStart(v5!.buf, v5!.start, v5!.body, v5!.end, true));
});

t.test('SUBACK, CONNACK and PUBACK codes in MQTT 3.1.1 and 5', async (t) => {
  const subacks = frames(
    Buffer.concat([
      gen({ cmd: 'suback', messageId: 1, granted: [1] }, 4),
      gen({ cmd: 'suback', messageId: 1, granted: [0x80] }, 4),
      gen({ cmd: 'suback', messageId: 1, granted: [1] }, 5),
      gen({ cmd: 'suback', messageId: 1, granted: [0x87], properties: { reasonString: 'TOPIC_DENIED' } }, 5),
    ]),
  );
  t.same(subacks.map((f) => f.type), [SUBACK, SUBACK, SUBACK, SUBACK]);
  t.same(
    subacks.map((f, i) => subackFirstCode(f.buf, f.body, f.end, i >= 2)),
    [1, 0x80, 1, 0x87],
  );

  const connacks = frames(
    Buffer.concat([
      gen({ cmd: 'connack', sessionPresent: false, returnCode: 0 }, 4),
      gen({ cmd: 'connack', sessionPresent: true, returnCode: 5 }, 4),
      gen({ cmd: 'connack', sessionPresent: false, reasonCode: 0, properties: { topicAliasMaximum: 10, receiveMaximum: 100 } }, 5),
      gen({ cmd: 'connack', sessionPresent: true, reasonCode: 0x86, properties: { reasonString: 'bad credentials' } }, 5),
    ]),
  );
  t.same(connacks.map((f) => f.type), [CONNACK, CONNACK, CONNACK, CONNACK]);
  t.same(
    connacks.map((f) => [f.buf[f.body]! & 1, f.buf[f.body + 1]]),
    [
      [0, 0],
      [1, 5],
      [0, 0],
      [1, 0x86],
    ],
    'session present, then the return / reason code, at the same place',
  );

  const acks = frames(
    Buffer.concat([
      pubacks([9], 1),
      gen({ cmd: 'puback', messageId: 9, reasonCode: 0x87, properties: { reasonString: 'NOT_GRANTED' } }, 5),
      gen({ cmd: 'puback', messageId: 9, reasonCode: 0x10 }, 5),
    ]),
  );
  t.same(acks.map((f) => f.type), [PUBACK, PUBACK, PUBACK]);
  t.same(
    acks.map((f) => pubackReasonCode(f.buf, f.body, f.end)),
    [0, 0x87, 0x10],
  );
});
