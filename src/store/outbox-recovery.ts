// The outbox's open-time scan (see src/store/outbox.ts for the format and the guarantees): lists
// the segment files, verifies every record's CRC, and recovers what is valid. A torn tail of the
// last segment (a record cut by a power cut) is cut off, a damaged record is skipped to the next
// valid one, a file with a segment's name that is not a segment is set aside as `*.seg.corrupt`,
// and any other entry is ignored. Every problem is reported; none throws. What the queue does with
// the result (ack point, gaps, the segment that takes appends) is the outbox's business.
import { closeSync, fstatSync, ftruncateSync, openSync } from 'node:fs';
import { readdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { BODY_FIXED, HEADER_BYTES, MAGIC, REC_HEADER, SEGMENT_NAME, errText, ioError, newSegment, noteRecord, readFull, validRecordAt, writeAll, type Reader, type Segment } from './outbox-segment.js';

/** What the scan found on disk. */
export interface ScannedSegments {
  /** The usable segments, ascending by first seq. */
  readonly segments: Segment[];
  /** Seqs that no record has between two valid records, [from, to] inclusive, ascending. */
  readonly gaps: Array<[number, number]>;
  /** The seq of the last valid record; 0 when none. */
  readonly lastSeq: number;
  /** Above every seq a usable segment's name or record holds. */
  readonly nextSeq: number;
}

interface Scan {
  readonly reader: Reader;
  readonly report: (msg: string) => void;
}

/**
 * Scans every segment file in `dir` (skipping `stateFile`), oldest first. Rejects only when the
 * directory cannot be listed (EW_STORE_IO).
 */
export async function scanSegments(dir: string, stateFile: string, reader: Reader, report: (msg: string) => void): Promise<ScannedSegments> {
  const found = await listSegments(dir, stateFile, report);
  const scan: Scan = { reader, report };
  const segments: Segment[] = [];
  const gaps: Array<[number, number]> = [];
  let prevSeq = 0;
  let nextSeq = 1;
  for (let i = 0; i < found.length; i++) {
    const { seq, name } = found[i]!;
    const seg = await scanSegment(scan, join(dir, name), seq, i === found.length - 1, prevSeq, gaps);
    if (!seg) continue;
    segments.push(seg);
    if (seg.count > 0) prevSeq = seg.lastSeq;
    nextSeq = Math.max(nextSeq, seg.firstSeq, seg.lastSeq + 1);
  }
  return { segments, gaps, lastSeq: prevSeq, nextSeq };
}

/** The segment files in `dir`, ascending by first seq; other entries are reported and ignored. */
async function listSegments(dir: string, stateFile: string, report: (msg: string) => void): Promise<Array<{ seq: number; name: string }>> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    throw ioError(dir, 'list the outbox directory', err);
  }
  const found: Array<{ seq: number; name: string }> = [];
  const unknown: string[] = [];
  for (const e of entries) {
    if (e.name === stateFile || e.name.endsWith('.seg.corrupt')) continue;
    const m = SEGMENT_NAME.exec(e.name);
    const seq = m ? Number(m[1]) : Number.NaN;
    if (m && e.isFile() && Number.isSafeInteger(seq) && seq >= 1) found.push({ seq, name: e.name });
    else unknown.push(e.name);
  }
  if (unknown.length > 0) {
    const shown = unknown.slice(0, 5).map((n) => JSON.stringify(n)).join(', ');
    report(`ignored ${unknown.length} entr${unknown.length === 1 ? 'y' : 'ies'} that are not outbox files: ${shown}${unknown.length > 5 ? ', ...' : ''}`);
  }
  return found.sort((a, b) => a.seq - b.seq);
}

/** Reads and verifies one segment file; repairs its tail when it is the last. Undefined: not usable. */
async function scanSegment(scan: Scan, path: string, firstSeq: number, isLast: boolean, prevSeq: number, gaps: Array<[number, number]>): Promise<Segment | undefined> {
  const { reader, report } = scan;
  let fd: number;
  try {
    fd = openSync(path, 'r+');
  } catch (err) {
    report(`segment ${path} cannot be opened (${errText(err)}); ignored`);
    return undefined;
  }
  const seg = newSegment(firstSeq, path, fd);
  let size: number;
  try {
    size = fstatSync(fd).size;
  } catch (err) {
    closeSync(fd);
    report(`segment ${path} cannot be read (${errText(err)}); ignored`);
    return undefined;
  }
  const head = Buffer.alloc(HEADER_BYTES);
  const got = readFull(fd, head, Math.min(HEADER_BYTES, size), 0);
  if (got < HEADER_BYTES) {
    // Cut while being created: nothing in it. The last one gets its header back.
    if (!head.subarray(0, got).equals(MAGIC.subarray(0, got))) return await setAside(scan, seg, 'is not an outbox segment');
    if (!isLast) return seg;
    try {
      ftruncateSync(fd, 0);
      writeAll(fd, MAGIC, 0);
    } catch (err) {
      report(`segment ${path} cannot be repaired (${errText(err)}); a new one is started`);
      seg.sealed = true;
    }
    return seg;
  }
  if (!head.equals(MAGIC)) return await setAside(scan, seg, 'is not an outbox segment (wrong header)');

  let off = HEADER_BYTES;
  let prev = prevSeq;
  while (off < size) {
    const r = validRecordAt(reader, seg, off, size, prev);
    if (r) {
      if (prev > 0 && r.seq > prev + 1) gaps.push([prev + 1, r.seq - 1]);
      noteRecord(seg, r.seq, off, r.bytes);
      prev = r.seq;
      off += r.bytes;
      continue;
    }
    const next = resync(reader, seg, off + 1, size, prev);
    if (next === undefined) {
      const cut = size - off;
      if (isLast) {
        try {
          ftruncateSync(fd, off);
          reader.forget(seg);
          report(`segment ${path}: torn tail of ${cut} bytes after the last valid record (seq ${prev || 'none'}) removed`);
        } catch (err) {
          report(`segment ${path}: ${cut} damaged bytes at the end cannot be removed (${errText(err)}); a new segment is started`);
          seg.sealed = true;
        }
      } else {
        report(`segment ${path}: the last ${cut} bytes are damaged; ignored`);
      }
      break;
    }
    report(`segment ${path}: damaged record at offset ${off}; ${next - off} bytes skipped to the next valid record`);
    (seg.skips ??= new Map()).set(off, next);
    off = next;
  }
  // off: the end of the valid data. The file is that long unless its damaged end stayed.
  seg.readEnd = off;
  seg.size = isLast && !seg.sealed ? off : size;
  return seg;
}

/** The offset of the next valid record in [from, end), or undefined. */
function resync(reader: Reader, seg: Segment, from: number, end: number, prevSeq: number): number | undefined {
  for (let p = from; p + REC_HEADER + BODY_FIXED <= end; p++) {
    if (validRecordAt(reader, seg, p, end, prevSeq)) return p;
  }
  return undefined;
}

async function setAside(scan: Scan, seg: Segment, why: string): Promise<undefined> {
  try {
    closeSync(seg.fd);
  } catch {
    // nothing to do
  }
  const to = `${seg.path}.corrupt`;
  try {
    await rename(seg.path, to);
    scan.report(`segment ${seg.path} ${why}; moved aside to ${to}`);
  } catch (err) {
    scan.report(`segment ${seg.path} ${why}; ignored (cannot move it aside: ${errText(err)})`);
  }
  return undefined;
}
