// aedes' persistence interface, which our session store (../session-store.ts) implements in place
// of aedes-persistence's memory store (why: the store's header). The interface is aedes': which
// methods aedes 2.0.0-beta.1 calls, with what, and what it does with the answer. This module lists
// them; the shape test checks the list against aedes' code and our store against the list.
//
// Quirks of aedes 2.0.0-beta.1 the store is written for:
// - `setup` must be an async function (aedes.js checks `setup.constructor.name === 'AsyncFunction'`).
// - Every other method returns a promise aedes calls `.then` on; none may throw synchronously.
// - incomingDelPacket must not reject: the PUBREL handler calls it as
//   `incomingDelPacket(...).finally(() => done(...))` with no catch (pubrel.js pubrelDelete), so a
//   rejection is an unhandled rejection, which ends the process — two PUBRELs for one packet in one
//   read race there (aedes 1.2.0 catches it; fixed after the beta was cut, no upstream issue found).
//   Behaviour: test/integration/aedes2-regressions.test.ts "two PUBRELs".
// - cleanIncoming is never called (./clean-session-incoming.ts calls it).
// - incomingStorePacket's rejection closes the connection (./inbound-qos2-window.ts relies on it).
// - outgoingEnqueueCombi is called for every QoS > 0 publish, with the (possibly empty) list of
//   persistent sessions whose subscriptions match (aedes.js).
// - outgoingStream of a resumed session is written out at once, before 'clientReady' (connect.js
//   emptyQueue); the store's `resumeSentOnly` keeps back what was never sent, for the in-flight
//   window (./client-delivery.ts).
//
// Internals it touches: aedes calls into our store (`persistence` option) instead of the store it
// imports. Shape test: test/unit/upstream-persistence-contract.test.ts (fails when aedes calls a method
// not in the list or stops calling one, when the store lacks one, and tells when pubrel.js catches an
// incomingDelPacket rejection itself).
//
// The upstream fix for the one defect (aedes pubrel.js pubrelDelete), one line:
//   persistence.incomingDelPacket(this.client, arg.packet).then(() => done(null, arg), () => done(null, arg))

/** The persistence methods aedes 2.0.0-beta.1 calls (aedes.js and lib/). */
export const PERSISTENCE_METHODS = Object.freeze([
  'setup',
  'storeRetained',
  'createRetainedStreamCombi',
  'addSubscriptions',
  'removeSubscriptions',
  'subscriptionsByClient',
  'subscriptionsByTopic',
  'cleanSubscriptions',
  'outgoingEnqueue',
  'outgoingEnqueueCombi',
  'outgoingUpdate',
  'outgoingClearMessageId',
  'outgoingStream',
  'incomingStorePacket',
  'incomingGetPacket',
  'incomingDelPacket',
  'putWill',
  'delWill',
  'streamWill',
] as const);

export type PersistenceMethod = (typeof PERSISTENCE_METHODS)[number];
