// src/broker/upstream/mqtt5-refusal-gate.ts: a bare aedes refuses a CONNECT whose level preConnect
// rewrote to MQTT5_REFUSED_LEVEL with CONNACK 0x01 in 3.1.1's format and closes (else the gate no
// longer refuses MQTT 5 as a 3.1.1 broker would).
import t from 'tap';
import { MQTT5_REFUSED_LEVEL, refuseMqtt5 } from '../../src/broker/upstream/mqtt5-refusal-gate.js';
import { PipeClient, bareAedes, upstreamChanged, waitFor } from '../helpers/bare-aedes.js';

const MODULE = 'mqtt5-refusal-gate.ts';

t.test('an MQTT 5 CONNECT rewritten in preConnect gets CONNACK 0x01 (3.1.1 format), then the close', async (t) => {
  const aedes = await bareAedes(t, {
    preConnect: (_client, packet, cb) => {
      refuseMqtt5(packet);
      cb(null, true);
    },
  });
  const refused = waitFor<Error & { errorCode?: number }>((report) => aedes.once('connectionError', (_c, err) => report(err)));
  const c = new PipeClient(aedes, 5);
  c.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, clientId: 'v5', keepalive: 0 });
  await c.whenClosed;
  t.same(Buffer.concat(c.raw), Buffer.from([0x20, 2, 0, 1]), upstreamChanged(`a CONNECT at level ${MQTT5_REFUSED_LEVEL} is no longer answered CONNACK 0x01 in 3.1.1's format`, MODULE));
  t.equal((await refused)?.errorCode, 1, 'connectionError errorCode 1 (UNSUPPORTED_PROTOCOL_LEVEL, ../client-errors.ts)');
});

t.test('an MQTT 3.1.1 CONNECT is left alone', async (t) => {
  const packet = { protocolVersion: 4 };
  refuseMqtt5(packet);
  t.equal(packet.protocolVersion, 4);
});
