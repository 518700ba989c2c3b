// src/broker/upstream/inbound-qos2-window.ts (GHSA-5jvp-3p2v-5qgf): a bare aedes 2.0.0-beta.1 still
// bounds nothing and ignores maxInflightInbound (else its option can take over), and still closes a
// connection whose incomingStorePacket rejects (else the session store's window no longer closes it).
import t from 'tap';
import type { Client } from 'aedes';
import { SessionStore } from '../../src/broker/session-store.js';
import { disconnectOnReceiveMaximum, isInboundWindowExceeded } from '../../src/broker/upstream/inbound-qos2-window.js';
import { PipeClient, bareAedes, upstreamChanged, waitFor } from '../helpers/bare-aedes.js';

const MODULE = 'inbound-qos2-window.ts';
const qos2 = (messageId: number) => ({ cmd: 'publish', topic: 'a/b', payload: Buffer.from('x'), qos: 2, messageId, retain: false, dup: false });

t.test('a bare aedes takes any number of QoS 2 publishes awaiting PUBREL, maxInflightInbound or not', async (t) => {
  const aedes = await bareAedes(t, { maxInflightInbound: 1 } as never);
  const c = new PipeClient(aedes, 4);
  await c.connect('flood');
  for (let id = 1; id <= 5; id++) c.send(qos2(id));
  t.ok(await c.next((p) => p.cmd === 'pubrec' && p.messageId === 5), 'the fifth PUBREC');
  t.equal(c.packets.filter((p) => p.cmd === 'pubrec').length, 5, upstreamChanged('aedes bounds the inbound QoS 2 window itself now', MODULE));
  t.notOk(c.closed, 'still connected');
  c.end();
});

t.test('the session store refusing past the window: aedes reports it and closes the connection', async (t) => {
  const store = new SessionStore({ maxIncomingPerClient: 2 });
  const aedes = await bareAedes(t, { persistence: store });
  const errors: Error[] = [];
  aedes.on('clientError', (_c, err) => errors.push(err));
  const c = new PipeClient(aedes, 4);
  await c.connect('bounded');
  for (let id = 1; id <= 3; id++) c.send(qos2(id));
  await c.whenClosed;
  t.ok(c.closed, upstreamChanged('a rejected incomingStorePacket no longer closes the connection', MODULE));
  t.notOk(c.packets.some((p) => p.cmd === 'pubrec' && p.messageId === 3), 'no PUBREC for the third');
  t.ok(errors.some(isInboundWindowExceeded), upstreamChanged('aedes no longer reports the rejection on clientError', MODULE));
});

t.test('an MQTT 5 client is told: DISCONNECT 0x93', async (t) => {
  const store = new SessionStore({ maxIncomingPerClient: 2 });
  const aedes = await bareAedes(t, { persistence: store });
  disconnectOnReceiveMaximum(aedes, store as unknown as { incomingStorePacket(client: Client, packet: unknown): Promise<void> });
  const reported = waitFor<Error>((report) => aedes.on('clientError', (_c, err) => isInboundWindowExceeded(err) && report(err)));
  const c = new PipeClient(aedes, 5);
  await c.connect('bounded5');
  for (let id = 1; id <= 3; id++) c.send(qos2(id));
  const disconnect = await c.next((p) => p.cmd === 'disconnect');
  t.equal(disconnect?.reasonCode, 0x93, 'Receive Maximum exceeded');
  t.ok(await reported, 'reported on clientError');
  await c.whenClosed;
});
