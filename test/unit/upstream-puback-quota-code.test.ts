// src/broker/upstream/puback-quota-code.ts: a bare aedes still answers every refused MQTT 5 publish
// PUBACK/PUBREC 0x87, whatever code the refusal carries (else the hook's caller could pass it), and
// the hook still puts the chosen code into that acknowledgement (else it is broken).
import t from 'tap';
import { setDeniedAckCode } from '../../src/broker/upstream/puback-quota-code.js';
import { hookPacketWrites } from '../../src/broker/upstream/packet-write-hook.js';
import { PipeClient, bareAedes, upstreamChanged } from '../helpers/bare-aedes.js';

const MODULE = 'puback-quota-code.ts';
const QUOTA_EXCEEDED = 0x97;

t.test('a refused publish is acknowledged 0x87 by aedes; with a code set for it, 0x97', async (t) => {
  const aedes = await bareAedes(t);
  hookPacketWrites();
  let setCode = false;
  aedes.authorizePublish = (client, packet, cb) => {
    if (setCode && client && packet.messageId !== undefined) setDeniedAckCode(client.conn, packet.messageId, QUOTA_EXCEEDED);
    // A code on the error, as an aedes that honoured one would read it.
    cb(Object.assign(new Error('RATE_LIMITED'), { reasonCode: QUOTA_EXCEEDED, code: QUOTA_EXCEEDED }));
  };
  const c = new PipeClient(aedes, 5);
  await c.connect('limited');
  const ack = async (qos: 1 | 2, messageId: number) => {
    c.send({ cmd: 'publish', topic: 'a/b', payload: Buffer.from('x'), qos, messageId, retain: false, dup: false });
    const cmd = qos === 1 ? 'puback' : 'pubrec';
    return (await c.next((p) => p.cmd === cmd && p.messageId === messageId))?.reasonCode;
  };
  t.equal(await ack(1, 1), 0x87, upstreamChanged('aedes no longer answers a refused QoS 1 publish PUBACK 0x87 (it may honour a code given with the error)', MODULE));
  t.equal(await ack(2, 2), 0x87, upstreamChanged('aedes no longer answers a refused QoS 2 publish PUBREC 0x87', MODULE));
  setCode = true;
  t.equal(await ack(1, 3), QUOTA_EXCEEDED, upstreamChanged('the code set for the PUBACK did not reach it: the hook no longer sees it', MODULE));
  t.equal(await ack(2, 4), QUOTA_EXCEEDED, upstreamChanged('the code set for the PUBREC did not reach it', MODULE));
  c.end();
});
