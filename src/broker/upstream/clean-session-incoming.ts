// [MQTT-3.1.2-6]: a discarded session takes its inbound QoS 2 state with it. GHSA-p8r9-qf8w-p73r
// (moscajs/aedes#1153, "fix: discard the QoS 2 dedup store on clean session"; aedes 1.2.0 with
// aedes-persistence 11.0.0): aedes kept the inbound QoS 2 dedup table across a clean session, so a
// reconnected client's reused packet identifier was acknowledged as a retransmission [MQTT-4.3.3-2]
// and never delivered. aedes 1.2.0 calls persistence.cleanIncoming on a clean CONNECT (after
// registerClient) and when a clean session ends; aedes 2.0.0-beta.1 never calls it (cut before the
// fix), so the bug is back with our store too.
//
// The workaround calls the session store's cleanIncoming (../session-store.ts) on aedes' 'client'
// event (registered: a taken-over connection is closed by then) when the CONNECT had Clean Start
// (MQTT 5 splits Clean Start from the session's persistence: `client.clean` is the latter), and on
// 'clientDisconnect' of a clean session.
//
// Internals it touches: `client._cleanStart` (aedes 2 connect.js init: the CONNECT's Clean Start
// flag; not declared). Shape test: test/unit/upstream-clean-session-incoming.test.ts (fails when
// `_cleanStart` is gone, and tells when aedes calls cleanIncoming itself: then this can go).
// Behaviour: test/integration/aedes2-regressions.test.ts "QoS 2 packet id reused after a clean
// reconnect".
//
// The upstream fix is moscajs/aedes#1153, to port to the mqttv5 branch: a connect action after
// registerClient, `if (client._cleanStart) await persistence.cleanIncoming(client)`, and in
// client.js close, `if (that.clean) persistence.cleanIncoming(that)`.
import type { Aedes, Client } from 'aedes';

export function cleanIncomingOnCleanSessions(aedes: Aedes, store: { cleanIncoming(client: Client): Promise<void> }): void {
  aedes.on('client', (client) => {
    if ((client as { _cleanStart?: boolean })._cleanStart === true) void store.cleanIncoming(client);
  });
  aedes.on('clientDisconnect', (client) => {
    if (client.clean) void store.cleanIncoming(client);
  });
}
