// src/broker/upstream/client-delivery.ts: the client fields ../../src/broker/delivery.ts reaches, on a
// real client of a bare aedes, and the three aedes behaviours that make it reach them — still there
// (else the workaround may go) and still reachable the way delivery.ts does (else it is broken).
import t from 'tap';
import type { AedesPublishPacket, Client } from 'aedes';
import { SessionStore } from '../../src/broker/session-store.js';
import type { DeliveryClient } from '../../src/broker/upstream/client-delivery.js';
import { PipeClient, bareAedes, upstreamChanged, waitFor } from '../helpers/bare-aedes.js';

const MODULE = 'client-delivery.ts (and ../delivery.ts)';
const publish = (topic: string, qos: 0 | 1 | 2, messageId?: number) => ({ cmd: 'publish', topic, payload: Buffer.from('x'), qos, retain: false, dup: false, ...(messageId === undefined ? {} : { messageId }) });
const aedesPacket = (fields: Partial<AedesPublishPacket> & Record<string, unknown>) => ({ cmd: 'publish', topic: 'a/b', payload: Buffer.from('x'), qos: 0, retain: false, dup: false, ...fields }) as unknown as AedesPublishPacket;

t.test('the fields delivery.ts reaches exist on a real client, with their shapes', async (t) => {
  const aedes = await bareAedes(t);
  const c = new PipeClient(aedes);
  const d = c.client as unknown as DeliveryClient & Record<string, unknown>;
  t.ok(Object.hasOwn(d, 'deliver0') && typeof d.deliver0 === 'function', upstreamChanged('client.deliver0 is no longer an own function (a wrap of it would not be seen)', MODULE));
  t.ok(Object.hasOwn(d, 'deliverQoS') && typeof d.deliverQoS === 'function', upstreamChanged('client.deliverQoS is no longer an own function', MODULE));
  t.ok(Number.isInteger(d._nextId) && d._nextId >= 1 && d._nextId <= 65535, upstreamChanged('client._nextId is not a packet identifier', MODULE));
  t.type(d.duplicates, 'object', upstreamChanged('client.duplicates is gone', MODULE));
  t.type(d.subscriptions, 'object', upstreamChanged('client.subscriptions is gone', MODULE));
  t.equal(d.conn, c.conn, 'client.conn is the connection');
  t.type(d._parser.on, 'function');
  c.end();
});

t.test('a deliverQoS replaced after handle is the one a subscription delivers through', async (t) => {
  const aedes = await bareAedes(t);
  const sub = new PipeClient(aedes);
  const d = sub.client as unknown as DeliveryClient;
  const original = d.deliverQoS;
  let wrapped = 0;
  d.deliverQoS = (packet, cb) => {
    wrapped++;
    original(packet, cb);
  };
  await sub.connect('wrapped');
  sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'a/#', qos: 1 }] });
  await sub.next((p) => p.cmd === 'suback');
  const pub = new PipeClient(aedes);
  await pub.connect('pub');
  pub.send(publish('a/b', 1, 1));
  t.ok(await sub.next((p) => p.cmd === 'publish'), 'delivered');
  t.equal(wrapped, 1, upstreamChanged('a subscription no longer delivers through client.deliverQoS as it is when the client subscribes', MODULE));
  sub.end();
  pub.end();
});

t.test('[MQTT-3.8.4-6] a bare aedes delivers a QoS 2 message at QoS 2 to a QoS 1 wildcard subscription; a literal one downgrades', async (t) => {
  const aedes = await bareAedes(t);
  const sub = new PipeClient(aedes);
  await sub.connect('granted');
  sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'w/#', qos: 1 }, { topic: 'l/t', qos: 1 }] });
  t.same((await sub.next((p) => p.cmd === 'suback'))?.granted, [1, 1]);
  const pub = new PipeClient(aedes);
  await pub.connect('pub2');
  pub.send(publish('w/t', 2, 1));
  pub.send(publish('l/t', 2, 2));
  const wild = await sub.next((p) => p.cmd === 'publish' && p.topic === 'w/t');
  const literal = await sub.next((p) => p.cmd === 'publish' && p.topic === 'l/t');
  t.equal(wild?.qos, 2, upstreamChanged('aedes now delivers at the granted QoS through a wildcard subscription (the granted-QoS part of delivery.ts may go)', MODULE));
  t.equal(literal?.qos, 1, upstreamChanged('aedes no longer downgrades by the subscription named like the topic (delivery.ts raises that QoS)', MODULE));
  sub.end();
  pub.end();
});

t.test('a bare aedes sends an MQTT 5 client more unacknowledged messages than its Receive Maximum', async (t) => {
  const aedes = await bareAedes(t);
  const sub = new PipeClient(aedes, 5);
  await sub.connect('greedy', { properties: { receiveMaximum: 2 } });
  sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'r/#', qos: 1 }] });
  await sub.next((p) => p.cmd === 'suback');
  const pub = new PipeClient(aedes);
  await pub.connect('pub3');
  for (let i = 1; i <= 5; i++) pub.send(publish(`r/${i}`, 1, i));
  t.ok(await sub.next((p) => p.cmd === 'publish' && p.topic === 'r/5'), upstreamChanged('aedes now holds back messages past the Receive Maximum (an outgoing window of its own: the in-flight window may go)', MODULE));
  t.equal(sub.packets.filter((p) => p.cmd === 'publish').length, 5, 'five in flight, none acknowledged');
  sub.end();
  pub.end();
});

t.test('deliverQoS takes packet identifiers from client._nextId, and keeps one the packet has', async (t) => {
  const aedes = await bareAedes(t);
  const c = new PipeClient(aedes);
  await c.connect('ids');
  const d = c.client as unknown as DeliveryClient;
  d._nextId = 4242;
  d.deliverQoS(aedesPacket({ topic: 'i/1', qos: 1 }), () => undefined);
  t.equal((await c.next((p) => p.cmd === 'publish' && p.topic === 'i/1'))?.messageId, 4242, upstreamChanged('deliverQoS no longer numbers a packet from client._nextId', MODULE));
  t.equal(d._nextId, 4243, upstreamChanged('client._nextId no longer advances per packet', MODULE));
  d.deliverQoS(aedesPacket({ topic: 'i/2', qos: 1, messageId: 777 }), () => undefined);
  t.equal((await c.next((p) => p.cmd === 'publish' && p.topic === 'i/2'))?.messageId, 777, upstreamChanged('deliverQoS no longer keeps the packet identifier the packet has (the window assigns them)', MODULE));
  t.equal(d._nextId, 4243);
  c.end();
});

t.test("aedes' duplicate check drops a message older than the newest of its broker, by client.duplicates", async (t) => {
  const aedes = await bareAedes(t);
  const forwarded: number[] = [];
  aedes.authorizeForward = (_client, packet) => {
    forwarded.push((packet as { brokerCounter?: number }).brokerCounter ?? -1);
    return packet;
  };
  const c = new PipeClient(aedes);
  await c.connect('dupes');
  const d = c.client as unknown as DeliveryClient & { duplicates: Record<string, number> };
  d.duplicates['other'] = 10;
  d.deliver0(aedesPacket({ brokerId: 'other', brokerCounter: 5 }), () => undefined);
  t.same(forwarded, [], upstreamChanged('aedes no longer drops a message older than client.duplicates[brokerId] (delivery.ts sets it around its sends)', MODULE));
  d.deliver0(aedesPacket({ brokerId: 'other', brokerCounter: 11 }), () => undefined);
  t.same(forwarded, [11], 'a newer one goes on');
  t.equal(d.duplicates['other'], 11, upstreamChanged('aedes no longer records the newest brokerCounter in client.duplicates', MODULE));
  c.end();
});

t.test("a 'packet' listener added after handle sees PUBACK/PUBCOMP after aedes' handler cleared the message", async (t) => {
  const store = new SessionStore();
  const cleared: number[] = [];
  const clear = store.outgoingClearMessageId.bind(store);
  store.outgoingClearMessageId = (client: { id: string }, packet: { cmd: string; messageId?: number }) => {
    cleared.push(packet.messageId!);
    return clear(client, packet);
  };
  const aedes = await bareAedes(t, { persistence: store });
  const sub = new PipeClient(aedes);
  const seen: { cmd: string; clearedBefore: boolean }[] = [];
  (sub.client as unknown as DeliveryClient)._parser.on('packet', (p) => {
    if (p.cmd === 'puback' || p.cmd === 'pubcomp') seen.push({ cmd: p.cmd, clearedBefore: cleared.includes(p.messageId!) });
  });
  await sub.connect('acks');
  sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'k/#', qos: 2 }] });
  await sub.next((p) => p.cmd === 'suback');
  const pub = new PipeClient(aedes);
  await pub.connect('pub4');
  pub.send(publish('k/1', 1, 1));
  const one = await sub.next((p) => p.cmd === 'publish' && p.topic === 'k/1');
  sub.send({ cmd: 'puback', messageId: one!.messageId });
  pub.send(publish('k/2', 2, 2));
  await pub.next((p) => p.cmd === 'pubrec');
  pub.send({ cmd: 'pubrel', messageId: 2 });
  const two = await sub.next((p) => p.cmd === 'publish' && p.topic === 'k/2');
  sub.send({ cmd: 'pubrec', messageId: two!.messageId });
  await sub.next((p) => p.cmd === 'pubrel');
  const done = waitFor<boolean>((report) => (sub.client as unknown as DeliveryClient)._parser.on('packet', (p) => p.cmd === 'pubcomp' && setImmediate(() => report(true))));
  sub.send({ cmd: 'pubcomp', messageId: two!.messageId });
  await done;
  t.same(seen, [{ cmd: 'puback', clearedBefore: true }, { cmd: 'pubcomp', clearedBefore: true }], upstreamChanged("a 'packet' listener added after handle no longer runs after aedes' PUBACK/PUBCOMP handler", MODULE));
  sub.end();
  pub.end();
});
