// src/broker/upstream/broker-fields.ts: what the broker reads of an aedes instance beyond its type
// declarations (clients, counter, persistence), how aedes' own handlers call `publish`, and what
// aedes-packet keeps of a packet it copies.
import t from 'tap';
import type { Client } from 'aedes';
import { SessionStore } from '../../src/broker/session-store.js';
import { AedesPacket, brokerCounter, connectedClients, persistenceOf } from '../../src/broker/upstream/broker-fields.js';
import { PipeClient, bareAedes, upstreamChanged, waitFor } from '../helpers/bare-aedes.js';

const MODULE = 'broker-fields.ts';

t.test('aedes.clients, aedes.id and aedes.counter, aedes.persistence', async (t) => {
  const store = new SessionStore();
  const aedes = await bareAedes(t, { id: 'broker-x', persistence: store });
  const c = new PipeClient(aedes);
  await c.connect('listed');
  t.equal(connectedClients(aedes)['listed'], c.client, upstreamChanged('aedes.clients no longer holds the connected clients by id', MODULE));
  const counter = brokerCounter(aedes);
  t.equal(counter.id, 'broker-x');
  t.type(counter.counter, 'number', upstreamChanged('aedes.counter is gone', MODULE));
  const before = counter.counter;
  await new Promise<void>((resolve) => aedes.publish({ cmd: 'publish', topic: 'n/c', payload: Buffer.from('x'), qos: 0, retain: false, dup: false } as never, () => resolve()));
  t.equal(counter.counter, before + 1, upstreamChanged('aedes.counter no longer advances once per publish', MODULE));
  t.equal(persistenceOf(aedes) as unknown, store, upstreamChanged('aedes.persistence is no longer the persistence it was given', MODULE));
  c.end();
});

t.test("aedes' own publishes go through the instance's publish: (packet, client, done) from a client and a will", async (t) => {
  const aedes = await bareAedes(t);
  const calls: { topic: string; client: unknown; done: unknown }[] = [];
  const publish = aedes.publish.bind(aedes);
  const spy = (packet: { topic: string }, client: unknown, done: unknown): unknown => {
    calls.push({ topic: packet.topic, client, done });
    return (publish as (...a: unknown[]) => unknown)(packet, client, done);
  };
  aedes.publish = spy as unknown as typeof aedes.publish;
  const published = waitFor<string>((report) => aedes.on('publish', (p) => p.topic === 'p/t' && report(p.topic)));
  const willFired = waitFor<string>((report) => aedes.on('publish', (p) => p.topic === 'w/t' && report(p.topic)));
  const c = new PipeClient(aedes);
  await c.connect('pub', { will: { topic: 'w/t', payload: Buffer.from('w'), qos: 0, retain: false } });
  c.send({ cmd: 'publish', topic: 'p/t', payload: Buffer.from('x'), qos: 1, messageId: 1, retain: false, dup: false });
  t.ok(await c.next((p) => p.cmd === 'puback'), 'PUBACK');
  t.equal(await published, 'p/t', 'the PUBLISH was published');
  c.end();
  t.equal(await willFired, 'w/t', 'the will was published');
  const fromClient = calls.find((x) => x.topic === 'p/t');
  t.ok(fromClient && fromClient.client === c.client && typeof fromClient.done === 'function', upstreamChanged("a client's PUBLISH no longer reaches aedes.publish(packet, client, done) on the instance", MODULE));
  const will = calls.find((x) => x.topic === 'w/t');
  t.ok(will && will.client === c.client && typeof will.done === 'function', upstreamChanged('a will no longer reaches aedes.publish(will, client, done) on the instance', MODULE));
});

t.test('aedes-packet keeps brokerId, brokerCounter, properties and messageExpiry; numbers a new packet from the broker', async (t) => {
  const broker = { id: 'b', counter: 41 };
  const properties = { userProperties: { k: 'v' } };
  const copy = new AedesPacket({ cmd: 'publish', topic: 't', payload: Buffer.from('x'), qos: 1, retain: true, dup: false, brokerId: 'other', brokerCounter: 7, properties, messageExpiry: 123 } as never, broker) as unknown as Record<string, unknown>;
  t.match(copy, { brokerId: 'other', brokerCounter: 7, topic: 't', qos: 1, retain: true, messageExpiry: 123 }, upstreamChanged('aedes-packet no longer keeps the fields an action is found by', MODULE));
  t.equal(copy['properties'], properties, 'properties kept');
  t.equal(broker.counter, 41, 'the counter is not taken for a packet that has one');
  const fresh = new AedesPacket({ cmd: 'publish', topic: 't', payload: Buffer.from('x'), qos: 0, retain: false, dup: false } as never, broker) as unknown as Record<string, unknown>;
  t.match(fresh, { brokerId: 'b', brokerCounter: 42 }, upstreamChanged('aedes-packet no longer numbers a new packet with ++broker.counter', MODULE));
});

t.test('aedes.clients of a gone client is emptied (what the broker counts as connected)', async (t) => {
  const aedes = await bareAedes(t);
  const c = new PipeClient(aedes);
  await c.connect('gone');
  const gone = waitFor<Client>((report) => aedes.once('clientDisconnect', report));
  c.end();
  await gone;
  t.equal(connectedClients(aedes)['gone'], undefined);
});
