// Writes batched per event-loop turn (src/broker/write-batching.ts), on real loopback sockets: the
// packets written in one turn, from separate ticks and microtasks as aedes writes them, leave in one
// writev; nothing is lost when the socket is destroyed or ended while our cork is on; and the shape
// it builds on: mqtt-packet's writeToStream corks the stream for every packet it writes.
import t, { type Test } from 'tap';
import { createServer, connect, type Socket } from 'node:net';
import { PassThrough } from 'node:stream';
import mqttPacket from 'mqtt-packet';
import { batchWrites } from '../../src/broker/write-batching.js';

const publish = (n: number): mqttPacket.IPublishPacket =>
  ({ cmd: 'publish', topic: `t/${n}`, payload: Buffer.from(`payload ${n}`), qos: 0, retain: false, dup: false }) as mqttPacket.IPublishPacket;

/** A connected pair on 127.0.0.1: `server` (batched, its writev/write calls counted) and `client`. */
async function pair(t: Test): Promise<{ server: Socket; client: Socket; calls: { writev: number; write: number }; received: () => Buffer; closed: Promise<void> }> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  t.teardown(() => srv.close());
  const port = (srv.address() as { port: number }).port;
  const accepted = new Promise<Socket>((resolve) => srv.once('connection', resolve));
  const client = connect(port, '127.0.0.1');
  const server = await accepted;
  server.setNoDelay(true);
  batchWrites(server);
  const calls = { writev: 0, write: 0 };
  const s = server as unknown as { _writev: (...a: unknown[]) => unknown; _write: (...a: unknown[]) => unknown };
  const writev = s._writev.bind(server);
  const write = s._write.bind(server);
  s._writev = (...a) => (calls.writev++, writev(...a));
  s._write = (...a) => (calls.write++, write(...a));
  const chunks: Buffer[] = [];
  client.on('data', (d: Buffer) => chunks.push(d));
  const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
  client.on('error', () => undefined);
  t.teardown(() => {
    client.destroy();
    server.destroy();
  });
  return { server, client, calls, received: () => Buffer.concat(chunks), closed };
}

/**
 * Four packets in one turn, as aedes writes them: each after mqtt-packet's uncork of the one before
 * (its nextTick), from ticks and a microtask, so that without batching each is a write of its own.
 */
function writeInOneTurn(w: (n: number) => void): void {
  w(1);
  process.nextTick(() => {
    w(2);
    process.nextTick(() => {
      w(3);
      queueMicrotask(() => w(4));
    });
  });
}

const expected = (ns: number[]): Buffer => Buffer.concat(ns.map((n) => mqttPacket.generate(publish(n))));

async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

t.test('packets written in one turn, from separate ticks and microtasks, leave in one system call', async (t) => {
  const p = await pair(t);
  const order: number[] = [];
  const w = (n: number): void => {
    order.push(n);
    mqttPacket.writeToStream(publish(n), p.server);
  };
  writeInOneTurn(w);
  await until(() => order.length === 4 && p.received().length >= expected(order).length, 'the four packets');
  t.same(p.received(), expected(order), 'all four packets, in the order written');
  t.equal(p.calls.writev + p.calls.write, 1, `one write to the socket for the turn (writev ${p.calls.writev}, write ${p.calls.write})`);

  // A later turn gets a write of its own: nothing waits for more.
  const before = p.calls.writev + p.calls.write;
  await new Promise((resolve) => setImmediate(resolve));
  mqttPacket.writeToStream(publish(5), p.server);
  const want2 = expected([...order, 5]);
  await until(() => p.received().length >= want2.length, 'the fifth packet');
  t.same(p.received(), want2);
  t.equal(p.calls.writev + p.calls.write - before, 1, 'the next turn: its own write');
});

t.test('without batching (the shape it improves on) the same packets take one system call each', async (t) => {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  t.teardown(() => srv.close());
  const accepted = new Promise<Socket>((resolve) => srv.once('connection', resolve));
  const client = connect((srv.address() as { port: number }).port, '127.0.0.1');
  const server = await accepted;
  t.teardown(() => (client.destroy(), server.destroy()));
  server.setNoDelay(true);
  let calls = 0;
  const s = server as unknown as { _writev: (...a: unknown[]) => unknown; _write: (...a: unknown[]) => unknown };
  const writev = s._writev.bind(server);
  const write = s._write.bind(server);
  s._writev = (...a) => (calls++, writev(...a));
  s._write = (...a) => (calls++, write(...a));
  let got = 0;
  client.on('data', (d: Buffer) => (got += d.length));
  writeInOneTurn((n) => mqttPacket.writeToStream(publish(n), server));
  await until(() => got >= expected([1, 2, 3, 4]).length, 'the four packets');
  t.equal(calls, 4, 'mqtt-packet alone: one write per packet');
});

t.test('a socket destroyed while corked sends what it holds first', async (t) => {
  const p = await pair(t);
  mqttPacket.writeToStream(publish(1), p.server);
  await Promise.resolve();
  process.nextTick(() => {
    mqttPacket.writeToStream(publish(2), p.server);
    queueMicrotask(() => p.server.destroy());
  });
  await p.closed;
  t.same(p.received(), expected([1, 2]), 'both packets arrived before the close');
});

t.test('a socket ended while corked sends what it holds, then its last packet', async (t) => {
  const p = await pair(t);
  mqttPacket.writeToStream(publish(1), p.server);
  queueMicrotask(() => p.server.end(mqttPacket.generate(publish(2))));
  await p.closed;
  t.same(p.received(), expected([1, 2]));
});

t.test('shape: mqtt-packet writeToStream corks the stream for each packet (write-batching hooks that call)', async (t) => {
  const s = new PassThrough();
  let corks = 0;
  const cork = s.cork.bind(s);
  s.cork = () => (corks++, cork());
  mqttPacket.writeToStream(publish(1), s);
  mqttPacket.writeToStream(publish(2), s);
  t.equal(corks, 2, 'upstream changed: mqtt-packet no longer corks per packet; src/broker/write-batching.ts hooks `cork` and would batch nothing');
});
