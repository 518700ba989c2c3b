// CRC-32 of the on-disk records (outbox, session journal): zlib.crc32 from Node 20.15, a table for
// older 20.x.
import * as zlib from 'node:zlib';

export type Crc32 = (data: Uint8Array, value?: number) => number;

function tableCrc32(): Crc32 {
  const table = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c;
  }
  return (data, value = 0) => {
    let c = ~value;
    for (let i = 0; i < data.length; i++) c = table[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
    return ~c >>> 0;
  };
}

export const crc32: Crc32 = typeof (zlib as { crc32?: unknown }).crc32 === 'function' ? (zlib.crc32 as Crc32) : tableCrc32();
