// A CONNECT of an unsupported protocol level reaches aedes with its level, so that aedes answers it
// with CONNACK 0x01 [MQTT-3.1.2-2] (src/broker/upstream/protocol-level-connack.ts). mqtt-packet's real parser, with and
// without the workaround; the last test fails when mqtt-packet stops refusing such levels itself.
import t from 'tap';
import mqttPacket from 'mqtt-packet';
import { INVALID_LEVEL, passUnsupportedLevel, sentLevel } from '../../src/broker/upstream/protocol-level-connack.js';
import { parsePackets } from '../helpers/parse-packets.js';

/** A CONNECT with protocol name `name` and level `level` (client id "a", CleanSession=1, keepalive 30). */
const connectAt = (level: number, name = 'MQTT'): Buffer => {
  const body = Buffer.from([0, name.length, ...Buffer.from(name), level, 0x02, 0, 30, 0, 1, 0x61]);
  return Buffer.concat([Buffer.from([0x10, body.length]), body]);
};
const pingreq = Buffer.from([0xc0, 0]);

function parse(bytes: Buffer, patched = true) {
  return parsePackets<{ protocolVersion?: number; bridgeMode?: boolean }>(bytes, undefined, patched ? passUnsupportedLevel : undefined);
}

t.test('an unsupported level is handed on as a CONNECT with that level, and the stream goes on', async (t) => {
  for (const level of [0, 1, 2, 6, 7, 127, 128, 255]) {
    const r = parse(Buffer.concat([connectAt(level), pingreq]));
    t.same(r.errors, [], `level ${level}: no parse error`);
    t.same(r.packets.map((p) => p.cmd), ['connect', 'pingreq'], `level ${level}: the CONNECT, then the next packet`);
    t.equal(sentLevel(r.packets[0]!), level, `level ${level}: the level as sent`);
  }
});

t.test('levels 3, 4 and 5 parse as before; other problems of a CONNECT are still errors', async (t) => {
  t.equal(parse(connectAt(3, 'MQIsdp')).packets[0]?.protocolVersion, 3);
  t.equal(parse(connectAt(4)).packets[0]?.protocolVersion, 4);
  const v5 = mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, clientId: 'a', keepalive: 30 } as mqttPacket.IConnectPacket);
  t.equal(parse(v5).packets[0]?.protocolVersion, 5);
  t.same(parse(connectAt(4, 'MQTX')).errors, ['Invalid protocolId'], 'a wrong protocol name');
  const reserved = connectAt(4);
  reserved[9] = reserved[9]! | 0x01;
  t.same(parse(reserved).errors, ['Connect flag bit 0 must be 0, but got 1'], 'the reserved flag');
  t.same(parse(Buffer.from([0x10, 6, 0, 4, ...Buffer.from('MQTT')])).errors, ['Packet too short'], 'no level at all');
});

t.test('without the workaround, mqtt-packet refuses the level itself (the workaround is still needed)', async (t) => {
  const r = parse(connectAt(6), false);
  t.same(r, { packets: [], errors: [INVALID_LEVEL] });
});
