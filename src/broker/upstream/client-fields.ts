// Fields aedes 2.0.0-beta.1 sets on a client that the broker reads and aedes' type declarations do not
// declare (or, for `version`, declare as always a number). Not workarounds: the one typed way in, so
// that a change of shape shows here and in its shape test.
//
//   version        client.js: null until aedes' init accepted the CONNECT, then 3, 4 or 5
//   connackSent    client.js / connect.js doConnack: the CONNACK is on its way (a server DISCONNECT
//                  may follow it, [MQTT-3.14.0-1]; ../flow-control.ts disconnectAndClose)
//   _disconnected  client.js: set when the client sent DISCONNECT (its will is not published);
//                  ../connections.ts logs "client" rather than "connection lost". aedes' own
//                  `disconnectReasonCode` is set only for a server-initiated DISCONNECT.
//
// Shape test: test/unit/upstream-client-fields.test.ts (a real client of a bare aedes, connected
// over an in-memory stream).
//
// Upstream: declaring them (and a public "why the connection ended") in types/client.d.ts.
import type { Client } from 'aedes';

/** The MQTT version a connected client speaks: 5, or 3/4 (MQTT 3.1 / 3.1.1); 4 before its CONNECT was accepted. */
export function versionOf(client: Client | null): number {
  return (client as { version?: number } | null)?.version ?? 4;
}

/** Whether aedes has written (or is writing) the client's CONNACK. */
export function connackSent(client: Client): boolean {
  return (client as { connackSent?: boolean }).connackSent === true;
}

/** Whether the client ended its connection with a DISCONNECT. */
export function sentDisconnect(client: Client): boolean {
  return (client as { _disconnected?: boolean })._disconnected === true;
}
