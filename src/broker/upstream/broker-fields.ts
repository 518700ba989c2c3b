// What the broker reaches of an aedes 2.0.0-beta.1 instance beyond its type declarations, and of
// aedes-packet 4.0.1 (aedes' packet copy; both pinned exactly). Not workarounds: the one typed way in,
// so that a change of shape shows here and in its shape test.
//
//   aedes.clients      aedes.js: the connected clients by client id (made prototype-free by
//                      ./prototype-safe-maps.ts); ../broker.ts counts, lists and looks clients up
//   aedes.counter      aedes.js: the source of every packet's brokerCounter (aedes-packet takes
//                      `++broker.counter` for a packet that has none); ../actions.ts handOver gives an
//                      action its brokerId/brokerCounter before aedes sees it, so that its authority
//                      can be found under them at every delivery and in every queue
//   aedes.persistence  aedes.js: our session store, as aedes holds it; ../shared-subscriptions.ts
//                      queues a persistent member's copy as aedes queues its other messages
//   aedes.publish      aedes' own handlers publish through the instance property — a client's
//                      PUBLISH as `broker.publish(packet, client, done)` (publish.js), a will as
//                      `that.publish(will, client, cleanup)` (publishWill) — so ../broker.ts wraps it
//                      on the instance to drop a denied publish and hand an action over; the agent's own
//                      publishes pass `(packet, done)` (aedes accepts both shapes)
//   aedes-packet       `new Packet(original, broker)` keeps brokerId, brokerCounter, properties and
//                      messageExpiry of the original (a copy for one shared-subscription member)
//
// Shape test: test/unit/upstream-broker-fields.test.ts (a bare aedes and a real client over an
// in-memory stream).
//
// Upstream: declaring `clients`, `counter`, `persistence` in types/instance.d.ts would make these
// public; nothing is wrong with them.
import type { Aedes, AedesPublishPacket, Client } from 'aedes';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** aedes' map of connected clients by client id (not in its type declarations). */
export function connectedClients(aedes: Aedes): Record<string, Client> {
  return (aedes as unknown as { clients: Record<string, Client> }).clients;
}

/** The broker id and packet counter aedes numbers packets with (brokerId, brokerCounter). */
export function brokerCounter(aedes: Aedes): { readonly id: string; counter: number } {
  return aedes as unknown as { id: string; counter: number };
}

/** aedes' persistence (our session store), as aedes calls it. */
export function persistenceOf(aedes: Aedes): { outgoingEnqueue(sub: { clientId: string }, packet: AedesPublishPacket): Promise<void> } {
  return (aedes as unknown as { persistence: { outgoingEnqueue(sub: { clientId: string }, packet: AedesPublishPacket): Promise<void> } }).persistence;
}

/** aedes' own packet copy (aedes-packet): keeps brokerId and brokerCounter, which an action's authority is found by. */
// eslint-disable-next-line @typescript-eslint/no-require-imports
export const AedesPacket = require('aedes-packet') as new (original: AedesPublishPacket, broker: unknown) => AedesPublishPacket;
