// MQTT 5 Shared Subscription Available (3.2.2.3.13): absent means available. aedes 2.0.0-beta.1's
// CONNACK to an MQTT 5 client always says `sharedSubscriptionAvailable: false` (connect.js
// connackProperties, a fresh object per CONNACK that no hook sees): aedes does not implement shared
// subscriptions (moscajs/aedes#228, open; the MQTT 5 work, moscajs/aedes#1088, advertises them
// unavailable until a cluster-aware implementation). The agent implements them itself
// (../shared-subscriptions.ts, ./shared-subscription-rename.ts), so its CONNACK must not say so.
//
// The workaround: the connections of our listeners are registered here at accept; aedes' CONNACK to
// one of them loses the property on its way to mqtt-packet (./packet-write-hook.ts calls
// dropSharedUnavailable for every packet written).
//
// Internals it touches: what aedes writes (through mqtt-packet's writeToStream, ./packet-write-hook.ts).
// Shape test: test/unit/upstream-connack-shared-subscriptions.test.ts (a bare aedes: fails when the
// hook no longer sees aedes' CONNACK, and tells when aedes stops saying false: then this can go).
// Behaviour: test/integration/shared-subscriptions.test.ts.
//
// The upstream fix (aedes connect.js connackProperties), simple: an option, e.g.
// `sharedSubscriptionAvailable` (default false), so that a broker that implements them through its
// hooks can advertise them:
//   if (!broker.opts.sharedSubscriptionAvailable) properties.sharedSubscriptionAvailable = false

/** The connections of our listeners: their CONNACK advertises shared subscriptions. */
const sharedAvailable = new WeakSet<object>();

/** A connection of ours (at accept): its CONNACK will not say that shared subscriptions are unavailable. */
export function advertiseSharedSubscriptions(conn: object): void {
  sharedAvailable.add(conn);
}

/** For the packet-write hook: drops `sharedSubscriptionAvailable: false` from a CONNACK to a connection of ours. */
export function dropSharedUnavailable(packet: { cmd: string; properties?: { sharedSubscriptionAvailable?: boolean } }, stream: object): void {
  if (packet.cmd === 'connack' && packet.properties?.sharedSubscriptionAvailable === false && sharedAvailable.has(stream)) {
    delete packet.properties.sharedSubscriptionAvailable;
  }
}
