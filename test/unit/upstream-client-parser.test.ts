// src/broker/upstream/client-parser.ts: aedes' per-connection mqtt-packet Parser (`client._parser`),
// which the parser workarounds wrap. A real client of a bare aedes over an in-memory stream.
import t from 'tap';
import mqttPacket from 'mqtt-packet';
import { parserOf } from '../../src/broker/upstream/client-parser.js';
import { PipeClient, bareAedes, upstreamChanged } from '../helpers/bare-aedes.js';

const MODULE = 'client-parser.ts (and the parser workarounds beside it)';

t.test('a client from aedes.handle has an mqtt-packet Parser with the internals the workarounds wrap', async (t) => {
  const aedes = await bareAedes(t);
  const c = new PipeClient(aedes);
  const parser = parserOf(c.client) as unknown as Record<string, unknown> & { listenerCount(e: string): number; constructor: { name: string } };
  t.ok(parser, upstreamChanged('client._parser is gone', MODULE));
  t.equal(Object.getPrototypeOf(parser), Object.getPrototypeOf(mqttPacket.parser()), upstreamChanged('client._parser is not an mqtt-packet Parser', MODULE));
  for (const name of ['parse', '_parseString', '_parseProperties', '_emitError', 'prependListener', 'on']) t.type(parser[name], 'function', upstreamChanged(`the parser has no ${name}()`, MODULE));
  t.type(parser['packet'], 'object', upstreamChanged('the parser has no `packet` being parsed', MODULE));
  t.type((parser['_list'] as { slice?: unknown }).slice, 'function', upstreamChanged('the parser has no `_list.slice`', MODULE));
  t.equal(parser.listenerCount('packet'), 1, upstreamChanged("aedes no longer adds exactly one 'packet' listener in the constructor", MODULE));
  c.end();
});

t.test('aedes reads each chunk through client._parser.parse, looked up at each call', async (t) => {
  const aedes = await bareAedes(t);
  const c = new PipeClient(aedes);
  const parser = parserOf(c.client);
  const parse = parser.parse.bind(parser);
  let chunks = 0;
  parser.parse = (buf: Buffer) => {
    chunks++;
    return parse(buf);
  };
  const connack = await c.connect('parse-wrapped');
  t.equal(connack.returnCode, 0);
  t.ok(chunks >= 1, upstreamChanged('aedes no longer reads through client._parser.parse (a wrap of it is never called)', 'frame-size-guard.ts'));
  c.end();
});

t.test("a 'packet' listener prepended runs before aedes' handler, and may rewrite the packet", async (t) => {
  const aedes = await bareAedes(t);
  const seen: string[] = [];
  aedes.authorizeSubscribe = (_client, sub, cb) => {
    seen.push(sub.topic);
    cb(null, sub);
  };
  const c = new PipeClient(aedes);
  parserOf(c.client).prependListener('packet', (p) => {
    if (p.cmd === 'subscribe') for (const s of p.subscriptions ?? []) s.topic = `renamed/${s.topic}`;
  });
  await c.connect('prepend');
  c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'a/b', qos: 0 }] });
  t.ok(await c.next((p) => p.cmd === 'suback'), 'SUBACK');
  t.same(seen, ['renamed/a/b'], upstreamChanged("aedes' handler no longer sees what a prepended 'packet' listener did", 'prototype-safe-maps.ts, shared-subscription-rename.ts'));
  c.end();
});
