// The MQTT session of `fleet publish` against a scripted MQTT 5 server (mqtt-packet over loopback):
// never more unacknowledged publishes than the CONNACK's Receive Maximum [MQTT-3.3.4-7], and a
// publish without PUBACK times out and leaves MQTT.js's store.
import t from 'tap';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import mqttPacket, { type IPublishPacket, type Packet } from 'mqtt-packet';
import { BrokerSession } from '../../src/fleet/publisher.js';
import { until } from '../helpers/agent.js';

interface FakeServer {
  url: string;
  /** PUBLISH packets not acknowledged yet, per arrival. */
  pending: IPublishPacket[];
  maxPending: number;
  ack(n: number): void;
  close(): Promise<void>;
}

async function fakeServer(receiveMaximum: number): Promise<FakeServer> {
  let socket: Socket | undefined;
  const s: FakeServer = {
    url: '',
    pending: [],
    maxPending: 0,
    ack(n) {
      for (const p of s.pending.splice(0, n)) socket!.write(mqttPacket.generate({ cmd: 'puback', messageId: p.messageId!, reasonCode: 0 }, { protocolVersion: 5 }));
    },
    close: () => new Promise((r) => {
      socket?.destroy();
      server.close(() => r());
    }),
  };
  const server = createServer((sock) => {
    socket = sock;
    const parser = mqttPacket.parser({ protocolVersion: 5 });
    parser.on('packet', (p: Packet) => {
      if (p.cmd === 'connect') sock.write(mqttPacket.generate({ cmd: 'connack', sessionPresent: false, reasonCode: 0, properties: { receiveMaximum } }, { protocolVersion: 5 }));
      else if (p.cmd === 'publish') {
        s.pending.push(p);
        s.maxPending = Math.max(s.maxPending, s.pending.length);
      }
    });
    sock.on('data', (d) => parser.parse(d));
    sock.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  s.url = `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return s;
}

t.test('never more in flight than the broker\'s Receive Maximum', async (t) => {
  const server = await fakeServer(3);
  t.teardown(() => server.close());
  const session = new BrokerSession(server.url, { ackTimeoutMs: 30_000, clientId: 'fleet-test' });
  t.teardown(() => session.end());
  const results = Array.from({ length: 10 }, (_, i) => session.publishRetained(`edgewarden/gw-${i}/snapshot`, Buffer.from(`s${i}`)));
  let acked = 0;
  while (acked < 10) {
    t.ok(await until(() => server.pending.length > 0, 20_000), 'a publish arrives');
    acked += server.pending.length;
    server.ack(server.pending.length);
  }
  await Promise.all(results);
  t.equal(server.maxPending, 3, 'at most 3 unacknowledged at a time, and 3 used');
});

t.test('a publish without acknowledgement times out, and is not resent behind the caller\'s back', async (t) => {
  const server = await fakeServer(100);
  t.teardown(() => server.close());
  const session = new BrokerSession(server.url, { ackTimeoutMs: 500, clientId: 'fleet-test-2' });
  t.teardown(() => session.end());
  await t.rejects(session.publishRetained('edgewarden/gw-x/snapshot', Buffer.from('x')), /no acknowledgement within 0.5 s/);
  t.equal(server.pending.length, 1);
  // The late PUBACK changes nothing, and the next publish goes through.
  server.ack(1);
  const next = session.publishRetained('edgewarden/gw-y/snapshot', Buffer.from('y'));
  t.ok(await until(() => server.pending.length === 1, 20_000));
  t.equal(server.pending[0]!.topic, 'edgewarden/gw-y/snapshot');
  t.ok(server.pending[0]!.retain, 'retained');
  t.equal(server.pending[0]!.qos, 1, 'QoS 1');
  server.ack(1);
  await next;
});
