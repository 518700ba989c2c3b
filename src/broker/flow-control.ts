// MQTT 5 flow control and size limits the client sets in its CONNECT, and the ones we set for it,
// which aedes 2.0.0-beta.1 stores or advertises but does not enforce (docs/notes/mqtt5-aedes2.md
// section 3: Receive Maximum, Maximum Packet Size). The broker (./broker.ts, ./accept.ts,
// ./forward.ts) calls these; for a 3.1.1 client they change nothing.
//
//   outbound Receive Maximum [MQTT-3.3.4-9]  the outgoing in-flight window is min(ours, the client's)
//   inbound Receive Maximum [MQTT-3.3.4-7/8]  DISCONNECT 0x93 before the close the session store's
//                                             QoS 2 window causes (./upstream/inbound-qos2-window.ts)
//   outbound Maximum Packet Size [MQTT-3.1.2-24/25]  a PUBLISH larger than the client takes is
//                                             dropped for that client (authorizeForward says no)
//   Server Keep Alive (3.2.2.3.14)            a v5 keepalive above limits.keepaliveLimitSeconds is
//                                             lowered in the CONNACK instead of refused
//                                             (./upstream/server-keep-alive.ts)
import type { Socket } from 'node:net';
import type { Client } from 'aedes';
import mqttPacket from 'mqtt-packet';
import { connackSent, versionOf } from './upstream/client-fields.js';

/** Server DISCONNECT reason codes (MQTT 5, 3.14.2.1) sent here and by the broker. */
export const DISCONNECT_NOT_AUTHORIZED = 0x87;
export const DISCONNECT_RECEIVE_MAXIMUM_EXCEEDED = 0x93;
export const DISCONNECT_PACKET_TOO_LARGE = 0x95;
export const DISCONNECT_PROTOCOL_ERROR = 0x82;

/** What aedes' init stored from a CONNECT (client.js / connect.js; not in its type declarations). */
interface FlowClient {
  /** The CONNECT's Receive Maximum (65535 when absent, also for 3.1.1). */
  receiveMaximum?: number;
  /** The CONNECT's Maximum Packet Size (MQTT 5; undefined: no limit). */
  maximumPacketSize?: number;
}

/** The outgoing in-flight window of a client: limits.maxInflightOutbound, or less if its Receive Maximum says so. */
export function outboundWindow(client: Client, maxInflightOutbound: number): number {
  const r = (client as FlowClient).receiveMaximum;
  return r !== undefined && r >= 1 && r < maxInflightOutbound ? r : maxInflightOutbound;
}

/** How long a server DISCONNECT may take to be written before the connection is closed anyway. */
const DISCONNECT_CLOSE_MS = 5_000;

/**
 * Sends an MQTT 5 client a server DISCONNECT with a reason code and string, then closes the
 * connection once it is written (or after DISCONNECT_CLOSE_MS, for a client that does not read).
 * Only after its CONNACK [MQTT-3.14.0-1]; before, and for 3.1.1, the connection is just closed.
 * aedes' own `disconnect` sends nothing until aedes counts the
 * client as connected, which is after the CONNACK and the resumed session's resends: a client
 * that sends right after its CONNACK would not be told. The socket is ended with the packet, so
 * nothing aedes still writes (a PUBREC being answered) follows it onto the wire [MQTT-3.14.4-1].
 */
export function disconnectAndClose(client: Client, reasonCode: number, reasonString: string): void {
  const conn = client.conn as Socket;
  if (conn.destroyed || conn.writableEnded) return;
  if (versionOf(client) !== 5 || !connackSent(client) || client.closed) {
    conn.destroy();
    return;
  }
  const timer = setTimeout(() => conn.destroy(), DISCONNECT_CLOSE_MS);
  conn.once('close', () => clearTimeout(timer));
  conn.end(mqttPacket.generate({ cmd: 'disconnect', reasonCode, properties: { reasonString } } as mqttPacket.IDisconnectPacket, { protocolVersion: 5 }), () => conn.destroy());
}

/** The parts of an outgoing PUBLISH that make its size. */
interface SizedPacket {
  topic: string;
  payload: Buffer | string;
  qos: number;
  properties?: object;
}

/**
 * [MQTT-3.1.2-24] Whether this PUBLISH, as aedes will write it to the client, is larger than the
 * Maximum Packet Size of the client's CONNECT. Nothing is computed for a client without one (every
 * 3.1.1 client). Its packet identifier is counted for QoS 1/2 (2 bytes) whatever it will be; with
 * MQTT 5 properties (a subscription identifier, a response topic...), those are encoded once to
 * measure them (only for such clients).
 */
export function exceedsClientMaximum(client: Client, packet: SizedPacket): boolean {
  const max = (client as FlowClient).maximumPacketSize;
  if (max === undefined || max <= 0) return false;
  const payload = typeof packet.payload === 'string' ? Buffer.byteLength(packet.payload) : packet.payload.length;
  const head = 2 + Buffer.byteLength(packet.topic) + (packet.qos > 0 ? 2 : 0);
  let remaining = head + payload + 1; // + the properties' length (1 byte when there are none)
  if (remaining + 2 > max) return true; // already too large without properties (fixed header at least 2 bytes)
  if (packet.properties !== undefined && hasAny(packet.properties)) remaining = head + payload + propertiesBytes(packet.properties);
  return 1 + varIntBytes(remaining) + remaining > max;
}

function hasAny(o: object): boolean {
  for (const k in o) if ((o as Record<string, unknown>)[k] !== undefined) return true;
  return false;
}

/** The encoded size of MQTT 5 PUBLISH properties, their length prefix included (mqtt-packet encodes them). */
function propertiesBytes(properties: object): number {
  const p = mqttPacket.generate({ cmd: 'publish', topic: 'a', payload: EMPTY, qos: 0, retain: false, dup: false, properties } as mqttPacket.IPublishPacket, { protocolVersion: 5 });
  // p = header byte, remaining length (1 to 4 bytes), topic (3 bytes), properties
  for (let v = 1; v <= 4; v++) {
    const remaining = p.length - 1 - v;
    if (varIntBytes(remaining) === v) return remaining - 3;
  }
  return p.length;
}

const EMPTY = Buffer.alloc(0);

function varIntBytes(n: number): number {
  return n < 128 ? 1 : n < 16_384 ? 2 : n < 2_097_152 ? 3 : 4;
}
