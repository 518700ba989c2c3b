// MQTT 5 shared subscriptions (4.8.2) from outside aedes: the one step that has to happen before
// aedes sees the filter. What aedes 2.0.0-beta.1 does: it answers an MQTT 5 `$share/...` filter with
// SUBACK 0x9E Shared Subscriptions not supported (subscribe.js doSubscribe) before authorizeSubscribe
// runs, and takes one from a 3.1.1 client as a literal filter. aedes does not implement shared
// subscriptions (moscajs/aedes#228, open; the MQTT 5 work, moscajs/aedes#1088, refuses them until a
// cluster-aware implementation).
//
// The workaround: before aedes' handler sees a SUBSCRIBE or UNSUBSCRIBE (a listener prepended to the
// parser's 'packet'), each `$share/G/F` is renamed to the marker `$edgewarden-share/G/F` and marked
// (SHARED); aedes then holds an ordinary subscription to the marker, and the groups are ours
// (../shared-subscriptions.ts, which explains the rest). A filter already named like a marker is
// refused (SUBSCRIBE) or not found (UNSUBSCRIBE); a malformed one closes the connection.
//
// Internals it touches: the parser's 'packet' listeners (aedes' handler is added in the Client
// constructor: a prepended listener runs first, and may rewrite the packet's filters)
// (./client-parser.ts). Shape test: test/unit/upstream-shared-subscription-rename.test.ts (a bare
// aedes: fails when a prepended rename no longer reaches aedes' handler, and tells when aedes stops
// answering `$share` with 0x9E: then its own shared subscriptions may replace ours). Behaviour:
// test/integration/shared-subscriptions.test.ts.
//
// Upstream: shared subscriptions themselves (moscajs/aedes#228); no small fix.
import { REFUSED_FILTER } from './prototype-safe-maps.js';
import { MALFORMED_SHARE, SHARE_MARKER, SHARED, parseShared, type SharedFilter } from '../shared-subscriptions.js';

interface WireSubscription {
  topic: string;
  nl?: boolean;
  [SHARED]?: SharedFilter;
  [REFUSED_FILTER]?: string;
}

interface WirePacket {
  cmd: string;
  subscriptions?: WireSubscription[];
  unsubscriptions?: string[];
}

/**
 * Renames each `$share/G/F` of a SUBSCRIBE or UNSUBSCRIBE to its marker before aedes' handler runs
 * (see above); a filter already named like a marker is refused (SUBSCRIBE) or not found (UNSUBSCRIBE).
 * A malformed one closes the connection (`malformed`, called with the error to report).
 * Test: test/integration/shared-subscriptions.test.ts.
 */
export function guardSharedFilters(parser: { prependListener(event: 'packet', fn: (p: WirePacket) => void): unknown }, malformed: (err: Error) => void): void {
  parser.prependListener('packet', (p) => {
    if (p.cmd === 'subscribe' && p.subscriptions !== undefined) {
      let bad = false;
      for (const sub of p.subscriptions) {
        const topic = sub.topic;
        if (topic.charCodeAt(0) !== 0x24) continue; // '$'
        if (topic.startsWith(SHARE_MARKER)) {
          sub.topic = '$edgewarden/refused/marker';
          sub[REFUSED_FILTER] = topic;
          continue;
        }
        const s = parseShared(topic);
        if (s === null) continue;
        if (s === 'malformed' || sub.nl === true) {
          // Never subscribed: refused, under a name of no consequence, while the connection closes.
          sub.topic = '$edgewarden/refused/share';
          sub[REFUSED_FILTER] = topic;
          bad = true;
          continue;
        }
        sub.topic = s.marker;
        sub[SHARED] = s;
      }
      if (bad) malformed(Object.assign(new Error(MALFORMED_SHARE), { cmd: 'subscribe' }));
    } else if (p.cmd === 'unsubscribe' && p.unsubscriptions !== undefined) {
      const u = p.unsubscriptions;
      for (let i = 0; i < u.length; i++) {
        const topic = u[i]!;
        if (topic.charCodeAt(0) !== 0x24) continue;
        if (topic.startsWith(SHARE_MARKER)) u[i] = '$edgewarden/refused/marker';
        else {
          const s = parseShared(topic);
          if (s !== null && s !== 'malformed') u[i] = s.marker;
        }
      }
    }
  });
}
