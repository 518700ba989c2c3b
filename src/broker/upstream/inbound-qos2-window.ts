// The inbound QoS 2 window: at most limits.maxInflightPerClient QoS 2 PUBLISHes of one client
// awaiting PUBREL. GHSA-5jvp-3p2v-5qgf (moscajs/aedes#1154, "fix: bound the inbound QoS 2 receive
// window"; aedes 1.2.0, option `maxInflightInbound`): aedes kept every such packet of a connection in
// its persistence with no bound. aedes 2.0.0-beta.1 (cut before the fix) has no bound and no option,
// and it advertises our MQTT 5 Receive Maximum (`receiveMaximum` option) without enforcing it
// [MQTT-3.3.4-7] [MQTT-3.3.4-8] (connect.js: "ADVISORY").
//
// The workaround, in two parts:
// - the session store (../session-store.ts incomingStorePacket, `maxIncomingPerClient`) refuses the
//   QoS 2 PUBLISH past the window with inboundWindowExceeded(max), checked and taken synchronously
//   (aedes dispatches every packet of a read chunk concurrently, the flaw #1154 describes);
//   aedes then closes the connection through its error path (publish.js enqueuePublish: a rejected
//   incomingStorePacket is `done(err)`), and ../client-errors.ts recognizes the error's message
//   (isInboundWindowExceeded): "too many QoS 2 messages awaiting PUBREL";
// - for an MQTT 5 client, disconnectOnReceiveMaximum catches that refusal first: reported on
//   clientError as aedes would, then DISCONNECT 0x93 Receive Maximum exceeded, and the connection
//   closed once it is written. The refused PUBLISH's handling never completes (no PUBREC, and aedes
//   reads nothing more from the connection): it ends with the connection. A 3.1.1 client is closed
//   as before.
//
// Internals it touches: that aedes calls `persistence.incomingStorePacket` (wrapped on our store
// instance) for each new QoS 2 PUBLISH and closes the connection when it rejects; aedes' 'clientError'
// event (emitted here). Shape test: test/unit/upstream-inbound-qos2-window.test.ts (a bare aedes:
// fails when a rejected incomingStorePacket no longer closes the connection, and tells when aedes
// bounds the window itself: then its option can take over). Behaviour:
// test/integration/mqtt5-flow.test.ts "inbound Receive Maximum", test/integration/audit-flood.test.ts.
//
// The upstream fix is moscajs/aedes#1154, to port to the mqttv5 branch (with, for MQTT 5, the
// DISCONNECT 0x93 of [MQTT-3.3.4-8] instead of a bare close).
import type { Aedes, Client } from 'aedes';
import { DISCONNECT_RECEIVE_MAXIMUM_EXCEEDED, disconnectAndClose } from '../flow-control.js';
import { versionOf } from './client-fields.js';

/** The start of the refusal's message (aedes 1.2.0's option's name, which the logs and tests know). */
const EXCEEDED = 'maxInflightInbound exceeded';

/** The session store's refusal of a QoS 2 PUBLISH past the window. */
export function inboundWindowExceeded(max: number): Error {
  return new Error(`${EXCEEDED}: ${max} inbound QoS 2 messages already awaiting PUBREL`);
}

/** Whether a client's error is that refusal. */
export function isInboundWindowExceeded(err: Error): boolean {
  return err.message.startsWith(EXCEEDED);
}

const refusedInbound = new WeakSet<Client>();

/**
 * For an MQTT 5 client, a refusal of the window becomes DISCONNECT 0x93 (see above): wraps the store's
 * incomingStorePacket. Test: test/integration/mqtt5-flow.test.ts "inbound Receive Maximum".
 */
export function disconnectOnReceiveMaximum(aedes: Aedes, store: { incomingStorePacket(client: Client, packet: unknown): Promise<void> }): void {
  const incomingStorePacket = store.incomingStorePacket.bind(store);
  store.incomingStorePacket = (client, packet) => {
    const stored = incomingStorePacket(client, packet);
    if (versionOf(client) !== 5) return stored;
    return stored.catch((err: Error) => {
      if (!isInboundWindowExceeded(err)) throw err;
      if (!refusedInbound.has(client)) {
        refusedInbound.add(client);
        aedes.emit('clientError', client, err);
        disconnectAndClose(client, DISCONNECT_RECEIVE_MAXIMUM_EXCEEDED, 'Receive Maximum exceeded');
      }
      // Never settles: aedes' handling of this PUBLISH stops here. A promise of its own (not a shared
      // one, which would keep every waiting reaction, and its client, alive forever).
      return new Promise<never>(() => undefined);
    });
  };
}
