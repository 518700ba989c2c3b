// Bounds the size of MQTT packets before they are buffered.
//
// mqtt-packet's parser buffers a packet until all of its declared remaining length has arrived,
// so a client that announces 256 MB and trickles bytes grows memory without bound. This guard
// follows the frame boundaries in the byte stream (fixed header byte, remaining length as a
// variable byte integer [MQTT-2.2.3], then the body) and reports a packet larger than the limit,
// or a malformed length, as soon as its header is read — before the parser sees it.
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
