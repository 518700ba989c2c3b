// src/broker/upstream/client-fields.ts: what the broker reads of a client aedes does not declare —
// `version` (null before the CONNECT), `connackSent`, `_disconnected` — on a real client.
import t from 'tap';
import type { Client } from 'aedes';
import { connackSent, sentDisconnect, versionOf } from '../../src/broker/upstream/client-fields.js';
import { PipeClient, bareAedes, upstreamChanged, waitFor } from '../helpers/bare-aedes.js';

const MODULE = 'client-fields.ts';

t.test('version and connackSent, before and after the CONNECT', async (t) => {
  const aedes = await bareAedes(t);
  for (const version of [4, 5]) {
    const c = new PipeClient(aedes, version);
    t.equal((c.client as unknown as { version: unknown }).version, null, upstreamChanged('client.version is no longer null before the CONNECT', MODULE));
    t.equal(versionOf(c.client), 4, 'taken as 3.1.1 until then');
    t.equal(connackSent(c.client), false);
    const ready = waitFor<Client>((report) => aedes.once('clientReady', report));
    await c.connect(`v${version}`);
    await ready; // connackSent is set once the CONNACK's write completed (connect.js doConnack)
    t.equal(versionOf(c.client), version, upstreamChanged('client.version is not the CONNECT level', MODULE));
    t.equal((c.client as unknown as { connackSent?: unknown }).connackSent, true, upstreamChanged('client.connackSent is not set once the CONNACK is written', MODULE));
    c.end();
  }
  t.equal(versionOf(null), 4);
});

t.test('_disconnected: set by a DISCONNECT, not by a lost connection', async (t) => {
  const aedes = await bareAedes(t);
  for (const polite of [true, false]) {
    const c = new PipeClient(aedes);
    await c.connect(`polite-${polite}`);
    const gone = waitFor<Client>((report) => aedes.once('clientDisconnect', report));
    if (polite) c.send({ cmd: 'disconnect' });
    else c.end();
    const client = await gone;
    t.equal((client as unknown as { _disconnected?: unknown })._disconnected, polite, upstreamChanged(`client._disconnected is not ${polite} ${polite ? 'after a DISCONNECT' : 'after a lost connection'}`, MODULE));
    t.equal(sentDisconnect(client!), polite);
    c.end();
  }
});
