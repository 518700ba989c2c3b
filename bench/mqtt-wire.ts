// MQTT 3.1.1 on the wire, for the load generator: packets are built once with mqtt-packet and
// sent as bytes; incoming bytes are split into frames by their fixed header only. Nothing here
// allocates per received message except what a caller asks for, so the generator stays cheap
// next to the broker it measures.
import mqttPacket from 'mqtt-packet';

/** MQTT control packet types (the high nibble of the first byte). */
export const CONNACK = 2;
export const PUBLISH = 3;
export const PUBACK = 4;
export const SUBACK = 9;

export interface Credentials {
  readonly clientId: string;
  readonly username?: string;
  readonly password?: string;
}

/** CONNECT; `clean` false resumes (or starts) a persistent session (CleanSession=0). */
export function connectPacket(c: Credentials, keepalive = 60, clean = true): Buffer {
  return mqttPacket.generate({
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 4,
    clean,
    keepalive,
    clientId: c.clientId,
    ...(c.username === undefined ? {} : { username: c.username }),
    ...(c.password === undefined ? {} : { password: Buffer.from(c.password, 'utf8') }),
  });
}

export function subscribePacket(messageId: number, filter: string, qos: 0 | 1): Buffer {
  return mqttPacket.generate({ cmd: 'subscribe', messageId, subscriptions: [{ topic: filter, qos }] });
}

export function publishPacket(topic: string, payload: Buffer, qos: 0 | 1, messageId = 1): Buffer {
  return mqttPacket.generate({ cmd: 'publish', topic, payload, qos, retain: false, dup: false, ...(qos > 0 ? { messageId } : {}) });
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

/** Packet id of a QoS 1/2 PUBLISH frame: right after its topic. */
export function publishPacketId(buf: Buffer, body: number): number {
  const topicLength = buf.readUInt16BE(body);
  return buf.readUInt16BE(body + 2 + topicLength);
}

/** Where the payload of a PUBLISH frame starts. */
export function publishPayloadStart(buf: Buffer, start: number, body: number): number {
  const topicLength = buf.readUInt16BE(body);
  return body + 2 + topicLength + (publishQos(buf, start) > 0 ? 2 : 0);
}
