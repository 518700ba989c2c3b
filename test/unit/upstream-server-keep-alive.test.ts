// src/broker/upstream/server-keep-alive.ts: a bare aedes' keepaliveLimit still answers a 3.1.1 client
// with CONNACK 6, a code 3.1.1 does not have (else aedes' option could serve), and aedes still writes
// and arms a `_serverKeepAlive` set during authenticate (else the MQTT 5 half is broken).
import t from 'tap';
import { imposeServerKeepAlive } from '../../src/broker/upstream/server-keep-alive.js';
import { PipeClient, bareAedes, upstreamChanged } from '../helpers/bare-aedes.js';

const MODULE = 'server-keep-alive.ts';

t.test("aedes' keepaliveLimit refuses a 3.1.1 keepalive over it with return code 6", async (t) => {
  const aedes = await bareAedes(t, { keepaliveLimit: 10 });
  const c = new PipeClient(aedes, 4);
  const connack = await c.connect('long', { keepalive: 20 });
  t.equal(connack.returnCode, 6, upstreamChanged('keepaliveLimit no longer answers a 3.1.1 client CONNACK 6 (a valid code now? then the option may do)', MODULE));
});

t.test('a Server Keep Alive set in authenticate is what the CONNACK says and the timer uses', async (t) => {
  const aedes = await bareAedes(t);
  aedes.authenticate = (client, _u, _p, cb) => {
    t.ok(imposeServerKeepAlive(client, 5), 'an MQTT 5 client');
    cb(null, true);
  };
  const c = new PipeClient(aedes, 5);
  const connack = await c.connect('held', { keepalive: 60 });
  t.equal((connack.properties as { serverKeepAlive?: number } | undefined)?.serverKeepAlive, 5, upstreamChanged('the CONNACK no longer carries the _serverKeepAlive set in authenticate', MODULE));
  t.equal((c.client as unknown as { _keepaliveInterval?: number })._keepaliveInterval, 5 * 1500 + 1, upstreamChanged('the keepalive timer no longer uses _serverKeepAlive', MODULE));
  c.end();
});

t.test('a 3.1.1 client is not given one (the caller refuses it)', async (t) => {
  const aedes = await bareAedes(t);
  let imposed: boolean | undefined;
  aedes.authenticate = (client, _u, _p, cb) => {
    imposed = imposeServerKeepAlive(client, 5);
    cb(null, true);
  };
  const c = new PipeClient(aedes, 4);
  await c.connect('v4', { keepalive: 60 });
  t.equal(imposed, false);
  c.end();
});
