// src/broker/upstream/clean-session-incoming.ts (GHSA-p8r9-qf8w-p73r): a bare aedes 2.0.0-beta.1 still
// never calls persistence.cleanIncoming, so a clean session's QoS 2 state survives it (else the
// workaround can go), and it still tells a Clean Start by `client._cleanStart` (else it is broken).
import t from 'tap';
import type { Client } from 'aedes';
import { SessionStore } from '../../src/broker/session-store.js';
import { cleanIncomingOnCleanSessions } from '../../src/broker/upstream/clean-session-incoming.js';
import { PipeClient, bareAedes, upstreamChanged, waitFor } from '../helpers/bare-aedes.js';

const MODULE = 'clean-session-incoming.ts';

/** A session store that counts aedes' calls to cleanIncoming. */
function countingStore(): { store: SessionStore; cleaned: string[] } {
  const store = new SessionStore();
  const cleaned: string[] = [];
  const clean = store.cleanIncoming.bind(store);
  store.cleanIncoming = (client: { id: string }) => {
    cleaned.push(client.id);
    return clean(client);
  };
  return { store, cleaned };
}

t.test('`_cleanStart` says whether the CONNECT had Clean Start, on the client event', async (t) => {
  const aedes = await bareAedes(t);
  for (const clean of [true, false]) {
    const registered = waitFor<Client>((report) => aedes.once('client', report));
    const c = new PipeClient(aedes, 4);
    await c.connect(`clean-${clean}`, { clean });
    const client = await registered;
    t.equal((client as unknown as { _cleanStart?: unknown })._cleanStart, clean, upstreamChanged(`client._cleanStart is not ${clean} for CleanSession=${clean ? 1 : 0}`, MODULE));
    c.end();
  }
});

t.test('a bare aedes never calls cleanIncoming: a QoS 2 packet id outlives the clean session', async (t) => {
  const { store, cleaned } = countingStore();
  const aedes = await bareAedes(t, { persistence: store });
  const first = new PipeClient(aedes, 4);
  await first.connect('residue');
  first.send({ cmd: 'publish', topic: 'a/b', payload: Buffer.from('1'), qos: 2, messageId: 9, retain: false, dup: false });
  t.ok(await first.next((p) => p.cmd === 'pubrec'), 'PUBREC (its PUBREL never comes)');
  const gone = waitFor<Client>((report) => aedes.once('clientDisconnect', report));
  first.end();
  await gone;
  const again = new PipeClient(aedes, 4);
  await again.connect('residue');
  t.same(cleaned, [], upstreamChanged('aedes now calls persistence.cleanIncoming itself (on a clean close or CONNECT)', MODULE));
  t.ok(await store.incomingGetPacket({ id: 'residue' }, { cmd: 'publish', messageId: 9 }).then(() => true, () => false), 'packet id 9 of the old session is still there');
  again.end();
});

t.test('with the workaround, a clean reconnect finds no residue', async (t) => {
  const { store, cleaned } = countingStore();
  const aedes = await bareAedes(t, { persistence: store });
  cleanIncomingOnCleanSessions(aedes, store);
  const first = new PipeClient(aedes, 4);
  await first.connect('residue');
  first.send({ cmd: 'publish', topic: 'a/b', payload: Buffer.from('1'), qos: 2, messageId: 9, retain: false, dup: false });
  await first.next((p) => p.cmd === 'pubrec');
  const gone = waitFor<Client>((report) => aedes.once('clientDisconnect', report));
  first.end();
  await gone;
  t.ok(cleaned.length >= 1, 'cleaned at the clean close');
  t.notOk(await store.incomingGetPacket({ id: 'residue' }, { cmd: 'publish', messageId: 9 }).then(() => true, () => false), 'packet id 9 gone');
});
