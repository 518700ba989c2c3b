// MQTT 3.1.1 and 5 on the wire, for the load generator: packets are built once with mqtt-packet and
// sent as bytes; incoming bytes are split into frames by their fixed header only. Nothing here
// allocates per received message except what a caller asks for, so the generator stays cheap
// next to the broker it measures. MQTT 5 adds a properties length (a variable byte integer) after
// the packet id of PUBLISH and SUBACK (and the CONNACK's reason code, in the 3.1.1 return code's
// place): the readers below take `v5` and skip the properties; the generator sends none, and its
// 4-byte PUBACKs and 2-byte DISCONNECT are valid MQTT 5 (reason code 0 implied).
import mqttPacket from 'mqtt-packet';

/** MQTT control packet types (the high nibble of the first byte). */
export const CONNACK = 2;
export const PUBLISH = 3;
export const PUBACK = 4;
export const SUBACK = 9;

/** The CONNECT's protocol level: 4 is MQTT 3.1.1, 5 is MQTT 5. */
export type ProtocolVersion = 4 | 5;

export interface Credentials {
  readonly clientId: string;
  readonly username?: string;
  readonly password?: string;
}

/**
 * CONNECT; `clean` false resumes (or starts) a persistent session (CleanSession=0; MQTT 5: Clean
 * Start 0, with no Session Expiry Interval property, so the session ends with the connection).
 */
export function connectPacket(c: Credentials, keepalive = 60, clean = true, version: ProtocolVersion = 4): Buffer {
  return mqttPacket.generate({
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: version,
    clean,
    keepalive,
    clientId: c.clientId,
    ...(c.username === undefined ? {} : { username: c.username }),
    ...(c.password === undefined ? {} : { password: Buffer.from(c.password, 'utf8') }),
  });
}

export function subscribePacket(messageId: number, filter: string, qos: 0 | 1, version: ProtocolVersion = 4): Buffer {
  return mqttPacket.generate({ cmd: 'subscribe', messageId, subscriptions: [{ topic: filter, qos }] }, { protocolVersion: version });
}

/** MQTT 5: with an empty property list (one 0 byte after the packet id, or after the topic at QoS 0). */
export function publishPacket(topic: string, payload: Buffer, qos: 0 | 1, messageId = 1, version: ProtocolVersion = 4): Buffer {
  return mqttPacket.generate(
    { cmd: 'publish', topic, payload, qos, retain: false, dup: false, ...(qos > 0 ? { messageId } : {}) },
    { protocolVersion: version },
  );
}

/** Where the packet id of a QoS 1/2 PUBLISH packet built above sits (to patch it in a copy). */
export function publishPacketIdOffset(packet: Buffer): number {
  let j = 1;
  while (packet[j++]! & 0x80); // the remaining length's bytes
  return j + 2 + packet.readUInt16BE(j);
}

export const DISCONNECT = Buffer.from([0xe0, 0x00]);

/** PUBACKs for the given packet ids, in one buffer (one write). */
export function pubacks(ids: readonly number[], n: number): Buffer {
  const b = Buffer.allocUnsafe(4 * n);
  for (let i = 0; i < n; i++) {
    const id = ids[i]!;
    b[4 * i] = 0x40;
    b[4 * i + 1] = 2;
    b[4 * i + 2] = id >> 8;
    b[4 * i + 3] = id & 0xff;
  }
  return b;
}

/**
 * Splits a byte stream into MQTT frames. `onFrame(buf, start, body, end)`: the frame occupies
 * buf[start, end), its variable header begins at `body`; the packet type is buf[start] >> 4.
 * A frame cut by a chunk boundary is kept (copied) until the rest arrives.
 */
export class FrameReader {
  private pending: Buffer | null = null;

  constructor(private readonly onFrame: (buf: Buffer, start: number, body: number, end: number) => void) {}

  feed(chunk: Buffer): void {
    let buf = chunk;
    if (this.pending) {
      buf = Buffer.concat([this.pending, chunk]);
      this.pending = null;
    }
    const n = buf.length;
    let i = 0;
    while (i < n) {
      // Remaining length: 1-4 bytes of 7 bits each, least significant first.
      let len = 0;
      let mul = 1;
      let j = i + 1;
      let complete = false;
      while (j < n && j < i + 5) {
        const b = buf[j++]!;
        len += (b & 0x7f) * mul;
        mul *= 128;
        if ((b & 0x80) === 0) {
          complete = true;
          break;
        }
      }
      if (!complete || j + len > n) break;
      this.onFrame(buf, i, j, j + len);
      i = j + len;
    }
    if (i < n) this.pending = Buffer.from(buf.subarray(i));
  }
}

/** QoS of a PUBLISH frame (bits 1-2 of its first byte). */
export const publishQos = (buf: Buffer, start: number): number => (buf[start]! >> 1) & 3;

/** Packet id of a QoS 1/2 PUBLISH frame: right after its topic (MQTT 3.1.1 and 5 alike). */
export function publishPacketId(buf: Buffer, body: number): number {
  const topicLength = buf.readUInt16BE(body);
  return buf.readUInt16BE(body + 2 + topicLength);
}

/**
 * The end of a variable byte integer (MQTT 5 properties length) at `at`, plus its value: the
 * first byte after the properties it announces. Never past `end`.
 */
export function skipProperties(buf: Buffer, at: number, end: number): number {
  let len = 0;
  let mul = 1;
  let j = at;
  while (j < end && j < at + 4) {
    const b = buf[j++]!;
    len += (b & 0x7f) * mul;
    mul *= 128;
    if ((b & 0x80) === 0) break;
  }
  return Math.min(end, j + len);
}

/** Where the payload of a PUBLISH frame starts; `v5`: after the properties that follow the packet id (the topic at QoS 0). */
export function publishPayloadStart(buf: Buffer, start: number, body: number, end: number, v5: boolean): number {
  const topicLength = buf.readUInt16BE(body);
  const at = body + 2 + topicLength + (publishQos(buf, start) > 0 ? 2 : 0);
  return v5 ? skipProperties(buf, at, end) : at;
}

/** The first return code (3.1.1) or reason code (5) of a SUBACK frame; 5 puts properties between the packet id and the codes. */
export function subackFirstCode(buf: Buffer, body: number, end: number, v5: boolean): number {
  const at = v5 ? skipProperties(buf, body + 2, end) : body + 2;
  return at < end ? buf[at]! : -1;
}

/** A PUBACK frame's reason code: MQTT 5 only, 0 (success) when the frame ends after the packet id (remaining length 2), as in 3.1.1. */
export const pubackReasonCode = (buf: Buffer, body: number, end: number): number => (end - body > 2 ? buf[body + 2]! : 0);
