// src/broker/upstream/delayed-will-marker.ts: a bare aedes 2.0.0-beta.1 still fires a delayed MQTT 5 will
// through `publishWill` (else the mark is never set) with `client.will` already cleared (else the
// mark is not needed). Waits out a Will Delay Interval of 1 s.
import t from 'tap';
import type { Client } from 'aedes';
import { WILL, isWill, markWills } from '../../src/broker/upstream/delayed-will-marker.js';
import { PipeClient, bareAedes, upstreamChanged, waitFor } from '../helpers/bare-aedes.js';

const MODULE = 'delayed-will-marker.ts';

t.test('a delayed will reaches authorizePublish through publishWill, marked, with client.will gone', async (t) => {
  const aedes = await bareAedes(t);
  t.type((aedes as unknown as { publishWill?: unknown }).publishWill, 'function', upstreamChanged('aedes.publishWill is gone', MODULE));
  markWills(aedes);
  const decided = waitFor<{ client: Client | null; packet: object }>((report) => {
    aedes.authorizePublish = (client, packet, cb) => {
      if (packet.topic === 'will/t') report({ client, packet });
      cb(null);
    };
  });
  const c = new PipeClient(aedes, 5);
  await c.connect('delayed', {
    properties: { sessionExpiryInterval: 60 },
    will: { topic: 'will/t', payload: Buffer.from('gone'), qos: 0, retain: false, properties: { willDelayInterval: 1 } },
  });
  c.end(); // no DISCONNECT: the will fires, after its delay
  const seen = await decided;
  t.ok(seen, 'authorizePublish decided the will');
  t.equal((seen!.packet as { [WILL]?: boolean })[WILL], true, upstreamChanged('a delayed will no longer goes through aedes.publishWill (it is not marked)', MODULE));
  t.not((seen!.client as { will?: unknown } | null)?.will, seen!.packet, upstreamChanged('client.will is still the will when a delayed will fires (the mark may be unneeded)', MODULE));
  t.ok(seen!.client && isWill(seen!.client, seen!.packet), 'isWill says so');
});
