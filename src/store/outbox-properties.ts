// MQTT 5 properties queued with an outbox record (src/store/outbox.ts, flag bit 2): what the cloud
// link's replies carry besides the queue's own ew-seq and ew-enqueued-at — the requester's
// Correlation Data and User Properties. Encoded as in an MQTT 5 PUBLISH's property list (without its
// variable-length prefix: the record gives the length), restricted to two properties:
//
//   0x09 Correlation Data   u16 length (BE), the bytes
//   0x26 User Property      u16 length, UTF-8 name, u16 length, UTF-8 value   (any number, in order)
//
// Records without properties (telemetry, audit, everything else) carry none of this.

/** MQTT 5 properties of a queued message. */
export interface OutboxProperties {
  readonly correlationData?: Buffer;
  readonly userProperties?: Readonly<Record<string, string>>;
}

const CORRELATION_DATA = 0x09;
const USER_PROPERTY = 0x26;

/** Bytes `p` takes encoded; 0 when it holds nothing. More than 0xffff cannot be queued. */
export function propertiesBytes(p: OutboxProperties | undefined): number {
  if (p === undefined) return 0;
  let n = p.correlationData === undefined ? 0 : 3 + p.correlationData.length;
  if (p.userProperties !== undefined) {
    for (const k in p.userProperties) n += 5 + Buffer.byteLength(k, 'utf8') + Buffer.byteLength(p.userProperties[k]!, 'utf8');
  }
  return n;
}

function writeString(buf: Buffer, off: number, s: string): number {
  const n = buf.write(s, off + 2, 'utf8');
  buf.writeUInt16BE(n, off);
  return off + 2 + n;
}

/** Writes `p` (propertiesBytes(p) of room) at `off`; returns the offset after it. Every string and the data must be at most 0xffff bytes. */
export function writeProperties(buf: Buffer, off: number, p: OutboxProperties): number {
  if (p.correlationData !== undefined) {
    buf[off] = CORRELATION_DATA;
    buf.writeUInt16BE(p.correlationData.length, off + 1);
    buf.set(p.correlationData, off + 3);
    off += 3 + p.correlationData.length;
  }
  if (p.userProperties !== undefined) {
    for (const k in p.userProperties) {
      buf[off] = USER_PROPERTY;
      off = writeString(buf, writeString(buf, off + 1, k), p.userProperties[k]!);
    }
  }
  return off;
}

/** Whether each string and the data fit in a u16 length. */
export function propertiesFit(p: OutboxProperties): boolean {
  if (p.correlationData !== undefined && p.correlationData.length > 0xffff) return false;
  if (p.userProperties !== undefined) {
    for (const k in p.userProperties) if (Buffer.byteLength(k, 'utf8') > 0xffff || Buffer.byteLength(p.userProperties[k]!, 'utf8') > 0xffff) return false;
  }
  return true;
}

/** The properties in `bytes` (copies); undefined when they are not well-formed. */
export function readProperties(bytes: Buffer): OutboxProperties | undefined {
  let correlationData: Buffer | undefined;
  let userProperties: Record<string, string> | undefined;
  let off = 0;
  while (off < bytes.length) {
    const id = bytes[off]!;
    if (off + 3 > bytes.length) return undefined;
    const n = bytes.readUInt16BE(off + 1);
    if (off + 3 + n > bytes.length) return undefined;
    if (id === CORRELATION_DATA) {
      correlationData = Buffer.from(bytes.subarray(off + 3, off + 3 + n));
      off += 3 + n;
    } else if (id === USER_PROPERTY) {
      const v = off + 3 + n;
      if (v + 2 > bytes.length) return undefined;
      const m = bytes.readUInt16BE(v);
      if (v + 2 + m > bytes.length) return undefined;
      (userProperties ??= {})[bytes.toString('utf8', off + 3, v)] = bytes.toString('utf8', v + 2, v + 2 + m);
      off = v + 2 + m;
    } else return undefined;
  }
  const out: { correlationData?: Buffer; userProperties?: Record<string, string> } = {};
  if (correlationData !== undefined) out.correlationData = correlationData;
  if (userProperties !== undefined) out.userProperties = userProperties;
  return out;
}
