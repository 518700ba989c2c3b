// src/broker/upstream/prototype-safe-maps.ts (GHSA-52qw-whmv-87c5): a bare aedes 2.0.0-beta.1 still keys
// plain `{}` maps by wire strings and still mishandles `__proto__` among several filters (else the
// workaround can go), and it still uses the maps the workaround replaces, after a 'packet' listener
// prepended by the guard (else it is broken).
import t from 'tap';
import type { Client } from 'aedes';
import { guardPrototypeFilters, hardenBroker, hardenClient, REFUSED_FILTER } from '../../src/broker/upstream/prototype-safe-maps.js';
import { parserOf } from '../../src/broker/upstream/client-parser.js';
import { PipeClient, bareAedes, upstreamChanged } from '../helpers/bare-aedes.js';

const MODULE = 'prototype-safe-maps.ts';
const protoOf = (o: unknown) => Object.getPrototypeOf(o) as unknown;

t.test('a bare aedes keys plain objects by wire strings (the advisory is not fixed in this aedes)', async (t) => {
  const aedes = await bareAedes(t);
  const c = new PipeClient(aedes);
  const a = aedes as unknown as { clients: unknown; brokers: unknown };
  const client = c.client as unknown as { subscriptions: unknown; duplicates: unknown };
  for (const [name, map] of [['aedes.clients', a.clients], ['aedes.brokers', a.brokers], ['client.subscriptions', client.subscriptions], ['client.duplicates', client.duplicates]] as const) {
    t.type(map, 'object', upstreamChanged(`${name} is gone`, MODULE));
    t.equal(protoOf(map), Object.prototype, upstreamChanged(`${name} is no longer a plain {} (the advisory's fix may be in)`, MODULE));
  }
  c.end();
});

t.test("a bare aedes' _dedupe still loses a `__proto__` filter among several", async (t) => {
  const aedes = await bareAedes(t);
  const asked: string[] = [];
  aedes.authorizeSubscribe = (_client, sub, cb) => {
    asked.push(sub.topic);
    cb(null, sub);
  };
  const c = new PipeClient(aedes);
  await c.connect('dedupe');
  let outcome: string;
  try {
    outcome = await new Promise<string>((resolve) => c.client.subscribe({ subscriptions: [{ topic: 'a', qos: 0 }, { topic: '__proto__', qos: 0 }] } as never, (err?: Error) => resolve(err ? `error: ${err.message}` : 'ok')));
  } catch (err) {
    outcome = `threw: ${(err as Error).message}`;
  }
  t.notOk(outcome === 'ok' && asked.includes('__proto__'), upstreamChanged(`a SUBSCRIBE of 'a' and '__proto__' now works on a bare aedes (${outcome}; asked: ${asked.join(', ')})`, MODULE));
  c.end();
});

t.test('with the workaround, aedes registers and subscribes in the null-prototype maps, after the renamed filter', async (t) => {
  const aedes = await bareAedes(t);
  hardenBroker(aedes);
  const asked: string[] = [];
  aedes.authorizeSubscribe = (_client, sub, cb) => {
    asked.push(sub.topic);
    cb(null, (sub as { [REFUSED_FILTER]?: string })[REFUSED_FILTER] === undefined ? sub : null);
  };
  const c = new PipeClient(aedes);
  hardenClient(c.client);
  guardPrototypeFilters(parserOf(c.client));
  await c.connect('constructor');
  const clients = (aedes as unknown as { clients: Record<string, Client> }).clients;
  t.equal(protoOf(clients), null);
  t.equal(clients['constructor'], c.client, upstreamChanged('aedes no longer registers clients in aedes.clients (the map replaced)', MODULE));
  c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '__proto__', qos: 0 }, { topic: 'a', qos: 1 }] });
  const suback = await c.next((p) => p.cmd === 'suback');
  t.same(suback?.granted, [128, 1], 'the `__proto__` filter refused, the other granted');
  t.same(asked, ['$edgewarden/refused/__proto__', 'a'], 'aedes asked for both, the first under its new name');
  const subs = (c.client as unknown as { subscriptions: Record<string, unknown> }).subscriptions;
  t.equal(protoOf(subs), null);
  t.ok(subs['a'], upstreamChanged('aedes no longer keeps subscriptions in client.subscriptions (the map replaced)', MODULE));
  c.end();
});
