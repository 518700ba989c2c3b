// The outbox's segment files (see src/store/outbox.ts for the format and the guarantees): the
// framing constants, a segment as the outbox holds it open, a windowed reader, and the check that
// decides whether bytes on disk are a whole, valid record. Shared by the queue (outbox.ts) and the
// open-time recovery (outbox-recovery.ts); no policy here.
import { readSync, writeSync } from 'node:fs';
import { EwError } from '../errors.js';
import { crc32 } from './crc32.js';

export const MAGIC = Buffer.from('EWOUTBX1', 'latin1');
export const HEADER_BYTES = MAGIC.length;
export const REC_HEADER = 16; // len, crc, seq
export const BODY_FIXED = 9; // flags, enqueuedAt u48, topic length
export const MIB = 1024 * 1024;
/** No record is ever larger (maxRecordBytes is clamped to it), so a larger length is damage. */
export const HARD_MAX_RECORD = MIB;
const INDEX_EVERY = 64;
const READ_CHUNK = 256 * 1024;
export const SEGMENT_NAME = /^(\d{1,16})\.seg$/;
export const TWO_32 = 2 ** 32;

export function recordCrc(rec: Uint8Array): number {
  return crc32(rec.subarray(8), crc32(rec.subarray(0, 4)));
}

// --- helpers ---------------------------------------------------------------------------------------

export function segmentName(firstSeq: number): string {
  return `${String(firstSeq).padStart(16, '0')}.seg`;
}

export function errText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e?.code ?? (e as Error)?.message ?? String(err);
}

export function ioError(where: string, step: string, err: unknown): EwError {
  if (err instanceof EwError) return err;
  return new EwError('EW_STORE_IO', `cannot ${step}: ${errText(err)}`, { where, cause: err });
}

export function writeAll(fd: number, buf: Uint8Array, position: number): void {
  let off = 0;
  while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off, position + off);
}

export function readFull(fd: number, buf: Buffer, length: number, position: number): number {
  let off = 0;
  while (off < length) {
    const n = readSync(fd, buf, off, length - off, position + off);
    if (n === 0) break;
    off += n;
  }
  return off;
}

// --- segments --------------------------------------------------------------------------------------

export interface Segment {
  /** From the file name: no record in it has a lower seq. */
  readonly firstSeq: number;
  readonly path: string;
  fd: number;
  /** Bytes on disk (header + records); appends go here. */
  size: number;
  /** Records are read up to here (below size only after damage found while reading). */
  readEnd: number;
  /** Bytes known to be fsynced. */
  synced: number;
  count: number;
  lastSeq: number;
  /** No more appends (damage found while reading). */
  sealed: boolean;
  /** Sparse index: every INDEX_EVERY-th record's seq and offset (the first record always). */
  readonly idxSeq: number[];
  readonly idxOff: number[];
  /** Damaged stretches found at open: offset -> offset of the next valid record. */
  skips: Map<number, number> | undefined;
}

export function newSegment(firstSeq: number, path: string, fd: number): Segment {
  return { firstSeq, path, fd, size: HEADER_BYTES, readEnd: HEADER_BYTES, synced: 0, count: 0, lastSeq: 0, sealed: false, idxSeq: [], idxOff: [], skips: undefined };
}

export function noteRecord(seg: Segment, seq: number, offset: number, bytes: number): void {
  if (seg.count % INDEX_EVERY === 0) {
    seg.idxSeq.push(seq);
    seg.idxOff.push(offset);
  }
  seg.count++;
  seg.lastSeq = seq;
  seg.size = offset + bytes;
  seg.readEnd = seg.size;
}

/** One window of one segment file kept in memory, so sequential reads cost one read(2) per chunk. */
export class Reader {
  private seg: Segment | undefined;
  private start = 0;
  private len = 0;
  private readonly buf = Buffer.allocUnsafe(READ_CHUNK);

  /** [off, off + n) of the segment's file, or undefined when the file is shorter. Valid until the next call. */
  bytes(seg: Segment, off: number, n: number): Buffer | undefined {
    if (this.seg === seg && off >= this.start && off + n <= this.start + this.len) return this.buf.subarray(off - this.start, off - this.start + n);
    if (n > READ_CHUNK) {
      const big = Buffer.allocUnsafe(n);
      return readFull(seg.fd, big, n, off) === n ? big : undefined;
    }
    this.seg = undefined;
    this.len = readFull(seg.fd, this.buf, READ_CHUNK, off);
    this.seg = seg;
    this.start = off;
    return n <= this.len ? this.buf.subarray(0, n) : undefined;
  }

  forget(seg?: Segment): void {
    if (seg === undefined || this.seg === seg) this.seg = undefined;
  }
}

export interface RecordHead {
  readonly seq: number;
  /** Whole record, header included. */
  readonly bytes: number;
}

/**
 * The record at `off` if it is whole and valid: length in range, CRC, seq above `prevSeq` (and
 * not below the segment's first seq), known flags, topic (and properties) within the body.
 */
export function validRecordAt(reader: Reader, seg: Segment, off: number, end: number, prevSeq: number): RecordHead | undefined {
  if (off + REC_HEADER + BODY_FIXED > end) return undefined;
  const head = reader.bytes(seg, off, REC_HEADER + BODY_FIXED);
  if (!head) return undefined;
  const len = head.readUInt32BE(0);
  const bytes = REC_HEADER + len;
  if (len < BODY_FIXED || bytes > HARD_MAX_RECORD || off + bytes > end) return undefined;
  const hi = head.readUInt32BE(8);
  if (hi > 0x1fffff) return undefined;
  const seq = hi * TWO_32 + head.readUInt32BE(12);
  if (seq <= prevSeq || seq < seg.firstSeq || seq < 1) return undefined;
  const flags = head[16]!;
  if ((flags & ~7) !== 0) return undefined;
  const tlen = head.readUInt16BE(23);
  if (tlen > len - BODY_FIXED) return undefined;
  const stored = head.readUInt32BE(4);
  const rec = reader.bytes(seg, off, bytes);
  if (!rec || recordCrc(rec) !== stored) return undefined;
  // Flag bit 2: a properties block (u16 length, then the properties) follows the topic, within the body.
  if ((flags & 4) !== 0 && (REC_HEADER + BODY_FIXED + tlen + 2 > bytes || REC_HEADER + BODY_FIXED + tlen + 2 + rec.readUInt16BE(REC_HEADER + BODY_FIXED + tlen) > bytes)) return undefined;
  return { seq, bytes };
}
