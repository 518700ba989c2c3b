// Bounds the size of MQTT packets before they are buffered.
//
// What mqtt-packet 9.0.2 (pinned exactly) does: its parser buffers a packet until all of its declared
// remaining length has arrived (parser.js parse/_parsePayload; it has no size limit), so a client
// that announces 256 MB [MQTT-2.2.3] and trickles bytes grows memory without bound. aedes
// 2.0.0-beta.1 checks its own `maximumPacketSize` option only after each chunk has been parsed
// (client.js nextBatch reads `_parser.packet.length`), so the first chunk of an oversized packet is
// buffered all the same. No upstream issue found.
//
// This guard follows the frame boundaries in the byte stream (fixed header byte, remaining length
// as a variable byte integer [MQTT-2.2.3], then the body) and reports a packet larger than the
// limit, or a malformed length, as soon as its header is read — before the parser sees it. What comes
// after is read and discarded, never buffered; the caller closes the connection (an MQTT 5 client is
// told: DISCONNECT 0x95 Packet too large [MQTT-3.2.2-15], ../accept.ts).
//
// Internals it touches: aedes' `client._parser.parse` (wrapped per connection; aedes looks it up at
// each chunk, client.js nextBatch; ./client-parser.ts). Shape test:
// test/unit/upstream-frame-size-guard.test.ts (fails when aedes stops reading through
// `_parser.parse`, and tells when a bare parser stops buffering a declared 256 MB). Behaviour:
// test/unit/broker-frame-guard.test.ts.
//
// The upstream fix (mqtt-packet parser.js), a few lines: a `maxPacketSize` option checked in
// _parseLength, before any body is buffered —
//   if (this.settings.maxPacketSize && 1 + result.bytes + result.value > this.settings.maxPacketSize) {
//     return this._emitError(new Error('Packet too large'))
//   }
// — which aedes would pass its `maximumPacketSize` to.
/** In the message of a packet over the limit (not of a malformed length). */
export const TOO_LARGE = 'is larger than the';

export class FrameGuard {
  private remaining = 0; // body bytes of the current packet still to skip
  private state = 0; // 0: expect the fixed header byte; 1: reading remaining length; 2: in body
  private multiplier = 1;
  private length = 0;
  private lengthBytes = 0;

  constructor(private readonly maxPacketBytes: number) {}

  /** Returns an error message when `buf` contains a packet over the limit or a bad length, else null. */
  check(buf: Uint8Array): string | null {
    let i = 0;
    const n = buf.length;
    while (i < n) {
      if (this.state === 2) {
        const take = Math.min(this.remaining, n - i);
        this.remaining -= take;
        i += take;
        if (this.remaining === 0) this.state = 0;
        continue;
      }
      const byte = buf[i++]!;
      if (this.state === 0) {
        this.state = 1;
        this.multiplier = 1;
        this.length = 0;
        this.lengthBytes = 0;
        continue;
      }
      // state 1: remaining length, 7 bits per byte, at most 4 bytes
      this.length += (byte & 0x7f) * this.multiplier;
      this.multiplier *= 128;
      this.lengthBytes++;
      if (byte & 0x80) {
        if (this.lengthBytes >= 4) return 'malformed remaining length (more than 4 bytes)';
        continue;
      }
      if (this.length + 1 + this.lengthBytes > this.maxPacketBytes) {
        return `packet of ${this.length + 1 + this.lengthBytes} bytes ${TOO_LARGE} ${this.maxPacketBytes} allowed`;
      }
      this.remaining = this.length;
      this.state = this.remaining === 0 ? 0 : 2;
    }
    return null;
  }
}

/**
 * Wraps the parser's `parse` with a FrameGuard: a chunk holding a packet over `maxPacketBytes` (or a
 * bad length) is not parsed, nor is anything after it; `refuse` is called once with the problem
 * (the caller closes the connection).
 */
export function guardFrameSize(parser: { parse(buf: Buffer): unknown }, maxPacketBytes: number, refuse: (problem: string) => void): void {
  const guard = new FrameGuard(maxPacketBytes);
  const parse = parser.parse.bind(parser);
  let refusing = false;
  parser.parse = (buf: Buffer) => {
    if (refusing) return 0; // what comes after an oversized packet is read and discarded, never buffered
    const problem = guard.check(buf);
    if (problem !== null) {
      refusing = true;
      refuse(problem);
      return 0;
    }
    return parse(buf);
  };
}
