// GHSA-52qw-whmv-87c5 (moscajs/aedes, "A SUBSCRIBE, UNSUBSCRIBE or CONNECT using an Object.prototype
// property name crashes the broker"; fixed in aedes 1.2.0, not in 2.0.0-beta.1): aedes keys plain `{}`
// maps by strings from the wire — client ids (`aedes.clients`), broker ids (`aedes.brokers`), topic
// filters (`client.subscriptions`, and the map subscribe.js `_dedupe` builds for a SUBSCRIBE of
// several filters), broker ids of delivered messages (`client.duplicates`) — so a name inherited from
// Object.prototype reads back as present:
// - a client id `constructor` finds Object.prototype's and ends the process
//   (`this.clients[client.id].disconnect is not a function`, aedes.js registerClient);
// - a filter `__proto__` among others sets the prototype of `_dedupe`'s map, whose `for…in` then
//   returns that subscription's own fields as subscriptions: the SUBSCRIBE fails, or the process ends.
//
// The workaround: null-prototype maps on the broker (after createBroker, before any client) and on
// each client (right after `handle`, before it can send anything); `_dedupe`'s map is local to
// aedes' handler, so a `__proto__` filter in a SUBSCRIBE of several filters is renamed before aedes'
// handler runs (a listener prepended to the parser's 'packet') and marked: ../subscribe.ts refuses
// it (SUBACK 0x80 / 0x87) under its real name.
//
// Internals it touches: `aedes.clients`, `aedes.brokers` (replaced), `client.subscriptions`,
// `client.duplicates` (replaced), the parser's 'packet' listeners (./client-parser.ts). Shape test:
// test/unit/upstream-prototype-safe-maps.test.ts (fails when aedes stops using these maps, and tells
// when they are prototype-free and `_dedupe` safe: then this can go). Behaviour:
// test/integration/aedes2-regressions.test.ts "prototype".
//
// The upstream fix is aedes 1.2.0's, to port to the mqttv5 branch: `Object.create(null)` for
// `this.clients` and `this.brokers` (aedes.js), `this.subscriptions` and `this.duplicates`
// (client.js), and for the map subscribe.js `_dedupe` builds (aedes' own tests for the advisory
// check all five).
import type { Aedes, Client } from 'aedes';

interface AedesMaps {
  clients: Record<string, unknown>;
  brokers: Record<string, unknown>;
}

/** Null-prototype maps for the broker's clients and brokers (call right after createBroker). */
export function hardenBroker(aedes: Aedes): void {
  const a = aedes as unknown as AedesMaps;
  a.clients = Object.create(null) as Record<string, unknown>;
  a.brokers = Object.create(null) as Record<string, unknown>;
}

/**
 * The same for a client's maps keyed by topic filter and broker id (call right after `handle`). Made
 * with `Object.setPrototypeOf({}, null)`, not `Object.create(null)`: the same null prototype, but V8
 * keeps such an object's properties fast (a hidden class) until one is deleted, where
 * `Object.create(null)` starts in dictionary mode. These two are read on every delivery (the granted
 * QoS walks `subscriptions`, ../delivery.ts qosFor; aedes' duplicate check reads `duplicates`): a
 * `for...in` over one filter took ~110 ns in dictionary mode and ~8 ns with fast properties.
 */
export function hardenClient(client: Client): void {
  Object.assign(client, { subscriptions: Object.setPrototypeOf({}, null) as object, duplicates: Object.setPrototypeOf({}, null) as object });
}

/** Marks a subscription refused before aedes saw it (../subscribe.ts refuses it). */
export const REFUSED_FILTER = Symbol('refusedFilter');

/**
 * Renames a `__proto__` filter in a SUBSCRIBE of several filters (a single filter skips `_dedupe`)
 * before aedes' handler runs, and marks it REFUSED_FILTER.
 * Test: test/integration/aedes2-regressions.test.ts "prototype".
 */
export function guardPrototypeFilters(parser: { prependListener(event: 'packet', fn: (p: { cmd: string; subscriptions?: { topic: string }[] }) => void): unknown }): void {
  parser.prependListener('packet', (p) => {
    if (p.cmd !== 'subscribe' || p.subscriptions === undefined || p.subscriptions.length < 2) return;
    for (const sub of p.subscriptions) {
      if (sub.topic !== '__proto__') continue;
      sub.topic = '$edgewarden/refused/__proto__';
      (sub as { [REFUSED_FILTER]?: string })[REFUSED_FILTER] = '__proto__';
    }
  });
}
