// src/broker/upstream/client-error-texts.ts: each ending ../../src/broker/client-errors.ts tells apart,
// provoked on a bare aedes, still carries the text or code it is recognized by. (The keepalive case
// waits out aedes' 1.5 × 1 s.)
import t from 'tap';
import type { Client } from 'aedes';
import { CONNACK_IDENTIFIER_REJECTED, isConnectTimeout, isKeepaliveTimeout, isQueueLimit, isWildcardInPublish, type AedesClientError } from '../../src/broker/upstream/client-error-texts.js';
import { PipeClient, bareAedes, upstreamChanged, waitFor } from '../helpers/bare-aedes.js';

const MODULE = 'client-error-texts.ts';

/** The next error aedes reports for a client, on clientError or connectionError. */
const nextError = (aedes: import('aedes').Aedes) =>
  waitFor<AedesClientError>((report) => {
    aedes.once('clientError', (_c: Client, err: Error) => report(err));
    aedes.once('connectionError', (_c: Client, err: Error) => report(err));
  });

t.test('no CONNECT in time', async (t) => {
  const aedes = await bareAedes(t, { connectTimeout: 50 });
  const error = nextError(aedes);
  const c = new PipeClient(aedes);
  const err = await error;
  t.ok(err && isConnectTimeout(err), upstreamChanged(`the connect timeout says "${err?.message}"`, MODULE));
  c.end();
});

t.test('a wildcard in a PUBLISH topic', async (t) => {
  const aedes = await bareAedes(t);
  const c = new PipeClient(aedes);
  await c.connect('wild');
  const error = nextError(aedes);
  c.send({ cmd: 'publish', topic: 'a/#', payload: Buffer.from('x'), qos: 0, retain: false, dup: false });
  const err = await error;
  t.ok(err && isWildcardInPublish(err), upstreamChanged(`a wildcard in PUBLISH says "${err?.message}"`, MODULE));
  await c.whenClosed;
});

t.test('more packets than queueLimit before the CONNACK', async (t) => {
  const aedes = await bareAedes(t, { queueLimit: 1 });
  const c = new PipeClient(aedes);
  const error = nextError(aedes);
  const connect = c.bytes({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'q', keepalive: 0 });
  const ping = c.bytes({ cmd: 'pingreq' });
  c.write(Buffer.concat([connect, ping, ping, ping]));
  const err = await error;
  t.ok(err && isQueueLimit(err), upstreamChanged(`the queue limit says "${err?.message}"`, MODULE));
  c.end();
});

t.test('[MQTT-3.1.3-8] an empty client id with CleanSession=0: CONNACK 0x02 from aedes itself, before authenticate', async (t) => {
  const aedes = await bareAedes(t);
  let authenticated = false;
  aedes.authenticate = (_client, _u, _p, cb) => {
    authenticated = true;
    cb(null, true);
  };
  const error = nextError(aedes);
  const c = new PipeClient(aedes, 4);
  // CONNECT, MQTT 3.1.1, flags 0 (CleanSession=0), keepalive 0, client id '' (mqtt-packet will not write it)
  c.write(Buffer.from([0x10, 12, 0, 4, ...Buffer.from('MQTT'), 4, 0, 0, 0, 0, 0]));
  const connack = await c.next((p) => p.cmd === 'connack');
  t.equal(connack?.returnCode, 2, 'CONNACK 0x02');
  t.equal((await error)?.errorCode, CONNACK_IDENTIFIER_REJECTED, upstreamChanged('aedes no longer reports its own refusal of an empty client id with errorCode 2', MODULE));
  t.notOk(authenticated, upstreamChanged('aedes now leaves the empty client id to authenticate (as 1.2.0 did): ../client-errors.ts need not log it', MODULE));
  c.end();
});

t.test('keepalive timeout', async (t) => {
  const aedes = await bareAedes(t);
  const c = new PipeClient(aedes);
  await c.connect('quiet', { keepalive: 1 });
  const err = await nextError(aedes);
  t.ok(err && isKeepaliveTimeout(err), upstreamChanged(`the keepalive timeout says "${err?.message}"`, MODULE));
  await c.whenClosed;
});
