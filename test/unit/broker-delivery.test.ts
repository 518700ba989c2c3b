// What src/broker/delivery.ts relies on in aedes 1.2's client, checked on a real aedes (in process,
// over loopback) with a raw client: the test fails when aedes changes shape, so that a version bump
// shows whether the in-flight window's hooks still hold.
//   - each client has its own deliver0/deliverQoS (wrapped at accept), `duplicates` and `_nextId`,
//     and a parser whose 'packet' event shows the client's PUBACK/PUBCOMP;
//   - deliverQoS sends a packet with the packet identifier it already has (the window gives it);
//   - aedes' duplicate check drops a message older than one already delivered (why the window's sends
//     pass it);
//   - 'clientReady' comes after CONNACK.
import t from 'tap';
import { createServer, createConnection, type Socket } from 'node:net';
import { once } from 'node:events';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { Aedes, type Client } from 'aedes';

interface AedesClientShape {
  duplicates: Record<string, number>;
  _nextId: number;
  _parser: { on(e: 'packet', f: (p: Packet) => void): unknown };
  deliverQoS(packet: object, cb: () => void): void;
  deliver0(packet: object, cb: () => void): void;
}

t.test('aedes 1.2 client internals the in-flight window uses', async (t) => {
  const aedes = await Aedes.createBroker({ id: 'shape' });
  const server = createServer((s) => aedes.handle(s));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(async () => {
    await new Promise<void>((r) => aedes.close(() => r()));
    server.close();
  });
  const events: string[] = [];
  const serverSide = new Promise<Client>((resolve) => aedes.once('client', resolve));
  aedes.on('connackSent', () => events.push('connack'));
  aedes.on('clientReady', () => events.push('clientReady'));

  const received: Packet[] = [];
  const socket: Socket = createConnection((server.address() as { port: number }).port, '127.0.0.1');
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  parser.on('packet', (p: Packet) => received.push(p));
  socket.on('data', (d) => parser.parse(d));
  await once(socket, 'connect');
  const send = (p: object) => socket.write(mqttPacket.generate(p as Packet));
  const until = async (pred: () => boolean) => {
    for (let i = 0; i < 500 && !pred(); i++) await new Promise((r) => setTimeout(r, 10));
    return pred();
  };
  send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'shape-1', clean: true, keepalive: 30 });
  const client = (await serverSide) as unknown as AedesClientShape;
  t.ok(await until(() => events.includes('clientReady')), 'clientReady');
  t.same(events, ['connack', 'clientReady'], "'clientReady' comes after CONNACK");

  t.equal(typeof client.deliverQoS, 'function', 'deliverQoS: a property of the client');
  t.ok(Object.prototype.hasOwnProperty.call(client, 'deliverQoS') && Object.prototype.hasOwnProperty.call(client, 'deliver0'), 'deliverQoS and deliver0 are own properties (replaceable per client)');
  t.equal(typeof client.duplicates, 'object', 'duplicates: the newest brokerCounter per brokerId');
  t.ok(Number.isInteger(client._nextId) && client._nextId >= 0 && client._nextId <= 65535, '_nextId: the next packet identifier');
  const acks: number[] = [];
  client._parser.on('packet', (p) => {
    if (p.cmd === 'puback') acks.push(p.messageId!);
  });

  const publish = (counter: number, messageId: number) => ({ cmd: 'publish', topic: 'a/b', payload: Buffer.from(`m${counter}`), qos: 1, retain: false, dup: false, brokerId: 'other', brokerCounter: counter, messageId });
  const before = client._nextId;
  client.deliverQoS(publish(5, 777), () => undefined);
  t.ok(await until(() => received.some((p) => p.cmd === 'publish')), 'delivered');
  const first = received.find((p) => p.cmd === 'publish') as mqttPacket.IPublishPacket;
  t.equal(first.messageId, 777, 'deliverQoS sends a packet with the packet identifier it already has');
  t.equal(client._nextId, before, '... and takes none from _nextId');
  t.equal(client.duplicates['other'], 5, 'duplicates records the brokerCounter delivered');

  client.deliverQoS(publish(3, 778), () => undefined);
  send({ cmd: 'puback', messageId: 777 });
  send({ cmd: 'pingreq' });
  t.ok(await until(() => received.some((p) => p.cmd === 'pingresp')), 'PINGRESP');
  t.same(received.filter((p) => p.cmd === 'publish').map((p) => (p as mqttPacket.IPublishPacket).messageId), [777], 'an older brokerCounter of the same broker is dropped by aedes\' duplicate check');
  t.same(acks, [777], "the client's PUBACK is seen on its parser's 'packet' event");
  socket.destroy();
});
