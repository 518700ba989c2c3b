// src/broker/upstream/protocol-level-connack.ts: a bare mqtt-packet parser still refuses protocol
// levels other than 3, 4, 5 itself (else the workaround can go), through the _emitError the workaround
// wraps, and aedes answers a CONNECT of such a level, handed on, with CONNACK 0x01 (else it is broken).
import t from 'tap';
import mqttPacket from 'mqtt-packet';
import { INVALID_LEVEL, passUnsupportedLevel } from '../../src/broker/upstream/protocol-level-connack.js';
import { parserOf, type ParserInternals } from '../../src/broker/upstream/client-parser.js';
import { PipeClient, bareAedes, upstreamChanged, waitFor } from '../helpers/bare-aedes.js';

const MODULE = 'protocol-level-connack.ts';
/** A CONNECT with protocol name "MQTT" and `level` (client id "a", CleanSession=1, keepalive 30). */
const connectAt = (level: number): Buffer => {
  const body = Buffer.from([0, 4, ...Buffer.from('MQTT'), level, 0x02, 0, 30, 0, 1, 0x61]);
  return Buffer.concat([Buffer.from([0x10, body.length]), body]);
};

t.test('a bare parser refuses level 6 with the error the workaround recognizes, through _emitError', async (t) => {
  const parser = mqttPacket.parser();
  t.type((parser as unknown as Record<string, unknown>)['_emitError'], 'function', upstreamChanged('the parser has no _emitError()', MODULE));
  const errors: string[] = [];
  const packets: mqttPacket.Packet[] = [];
  parser.on('error', (e) => errors.push(e.message));
  parser.on('packet', (p) => packets.push(p));
  parser.parse(connectAt(6));
  t.same({ errors, packets: packets.length }, { errors: [INVALID_LEVEL], packets: 0 }, upstreamChanged(`mqtt-packet no longer refuses level 6 with '${INVALID_LEVEL}' (it hands such a CONNECT on, or says it otherwise)`, MODULE));
});

t.test('aedes answers a CONNECT of an unsupported level, handed on, with CONNACK 0x01 in 3.1.1 format and closes', async (t) => {
  const aedes = await bareAedes(t);
  for (const level of [6, 0, 2, 255]) {
    const refused = waitFor<Error & { errorCode?: number }>((report) => aedes.once('connectionError', (_c, err) => report(err)));
    const c = new PipeClient(aedes);
    passUnsupportedLevel(parserOf(c.client) as ParserInternals);
    c.write(connectAt(level));
    const connack = await c.next((p) => p.cmd === 'connack');
    t.equal(connack?.returnCode, 1, upstreamChanged(`aedes no longer answers level ${level} with CONNACK 0x01`, MODULE));
    t.same(Buffer.concat(c.raw), Buffer.from([0x20, 2, 0, 1]), `level ${level}: the CONNACK is 3.1.1's, and all that is written`);
    t.equal((await refused)?.errorCode, 1, `level ${level}: connectionError with errorCode 1 (../client-errors.ts reads it)`);
    await c.whenClosed;
    t.ok(c.closed, `level ${level}: the connection is closed`);
  }
});
