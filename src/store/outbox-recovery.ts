// The outbox's open-time scan (see src/store/outbox.ts for the format and the guarantees): lists
// the segment files, verifies every record's CRC, and recovers what is valid. A torn tail of the
// last segment (a record cut by a power cut) is cut off, a damaged record is skipped to the next
// valid one, a file with a segment's name that is not a segment is set aside as `*.seg.corrupt`,
// and any other entry is ignored. Every problem is reported; none throws. What the queue does with
// the result (ack point, gaps, the segment that takes appends) is the outbox's business. Damage
// found later, while reading, cuts its segment short (cutAtDamage).
//
// Each repair also says which records it lost, by sequence number: seqs grow by one per record,
// across segments, so the records lost are the seqs between the last valid record and the next
// one, or the next segment's name (its first seq) when the damage runs to the end of a file. Where
// nothing follows (a torn tail, a last segment set aside) the lost records' headers are read, CRC
// unchecked, to count them; when bytes remain that no header explains, the count is "at least".
// The outbox's `lose` counts the seqs it was not told about before, above its ack point. Valid
// records it already counted as lost (their segment was cut short while reading, or their file
// could not be read) stay lost: the scan skips them, so nothing is sent behind the drop count.
import { closeSync, fstatSync, ftruncateSync, openSync } from 'node:fs';
import { readdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { BODY_FIXED, HARD_MAX_RECORD, HEADER_BYTES, MAGIC, REC_HEADER, SEGMENT_NAME, TWO_32, errText, ioError, newSegment, noteRecord, readFull, validRecordAt, writeAll, type Reader, type Segment } from './outbox-segment.js';

/** What the scan found on disk. */
export interface ScannedSegments {
  /** The usable segments, ascending by first seq. */
  readonly segments: Segment[];
  /** Seqs that no record kept has between two records kept, [from, to] inclusive, ascending. */
  readonly gaps: Array<[number, number]>;
  /** The seq of the last record kept; 0 when none. */
  readonly lastSeq: number;
  /** Above every seq a usable segment's name or record holds. */
  readonly nextSeq: number;
}

/** How the outbox took a run of lost seqs. */
export interface LossCount {
  /** Newly counted as dropped. */
  readonly lost: number;
  /** Acknowledged, or counted before (also at an earlier open), or never written: not counted again. */
  readonly settled: number;
}

export interface RecoveryHooks {
  readonly report: (msg: string) => void;
  /** Counts seqs [from, to] as lost to damage; called once per damaged stretch, with from <= to. */
  readonly lose: (from: number, to: number) => LossCount;
  /** Whether seq was counted as lost before (also before a restart). */
  readonly isLost: (seq: number) => boolean;
}

interface Scan extends RecoveryHooks {
  readonly reader: Reader;
}

/**
 * Scans every segment file in `dir` (skipping `stateFile`), oldest first. Rejects only when the
 * directory cannot be listed (EW_STORE_IO).
 */
export async function scanSegments(dir: string, stateFile: string, reader: Reader, hooks: RecoveryHooks): Promise<ScannedSegments> {
  const found = await listSegments(dir, stateFile, hooks.report);
  const scan: Scan = { ...hooks, reader };
  const segments: Segment[] = [];
  const gaps: Array<[number, number]> = [];
  let prevSeq = 0;
  let nextSeq = 1;
  for (let i = 0; i < found.length; i++) {
    const { seq, name } = found[i]!;
    const seg = await scanSegment(scan, join(dir, name), seq, found[i + 1]?.seq, prevSeq, gaps);
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

/**
 * Reads and verifies one segment file; repairs its tail when it is the last (no `nextFirstSeq`).
 * Undefined: not usable.
 */
async function scanSegment(scan: Scan, path: string, firstSeq: number, nextFirstSeq: number | undefined, prevSeq: number, gaps: Array<[number, number]>): Promise<Segment | undefined> {
  const { reader, report } = scan;
  const isLast = nextFirstSeq === undefined;
  // The first seq this file can hold that no earlier file holds.
  const ownFrom = Math.max(prevSeq, firstSeq - 1) + 1;
  let fd: number;
  try {
    fd = openSync(path, 'r+');
  } catch (err) {
    report(`segment ${path} cannot be opened (${errText(err)}); ignored; ${lostWithSegment(scan, undefined, undefined, ownFrom, nextFirstSeq)}`);
    return undefined;
  }
  const seg = newSegment(firstSeq, path, fd);
  let size: number;
  try {
    size = fstatSync(fd).size;
  } catch (err) {
    closeSync(fd);
    report(`segment ${path} cannot be read (${errText(err)}); ignored; ${lostWithSegment(scan, undefined, undefined, ownFrom, nextFirstSeq)}`);
    return undefined;
  }
  const head = Buffer.alloc(HEADER_BYTES);
  const got = readFull(fd, head, Math.min(HEADER_BYTES, size), 0);
  if (got < HEADER_BYTES) {
    // Cut while being created: nothing in it. The last one gets its header back.
    if (!head.subarray(0, got).equals(MAGIC.subarray(0, got))) return await setAside(scan, seg, 'is not an outbox segment', lostWithSegment(scan, seg, size, ownFrom, nextFirstSeq));
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
  if (!head.equals(MAGIC)) return await setAside(scan, seg, 'is not an outbox segment (wrong header)', lostWithSegment(scan, seg, size, ownFrom, nextFirstSeq));

  let off = HEADER_BYTES;
  // The last record kept, and the last valid one (kept or given up).
  let prev = prevSeq;
  let seen = prevSeq;
  // Valid records already counted as lost (see the top): skipped like damage, a gap between the
  // records kept.
  let givenUp: { off: number; from: number; to: number } | undefined;
  const endGivenUp = (): void => {
    if (givenUp === undefined) return;
    (seg.skips ??= new Map()).set(givenUp.off, off);
    const { from, to } = givenUp;
    report(`segment ${path}: ${from === to ? `record ${from} was` : `records ${from}..${to} were`} counted as lost before, when damage hid ${from === to ? 'it' : 'them'}; skipped`);
    givenUp = undefined;
  };
  while (off < size) {
    const r = validRecordAt(reader, seg, off, size, seen);
    if (r && scan.isLost(r.seq)) {
      givenUp ??= { off, from: r.seq, to: r.seq };
      givenUp.to = seen = r.seq;
      off += r.bytes;
      continue;
    }
    endGivenUp();
    if (r) {
      if (prev > 0 && r.seq > prev + 1) gaps.push([prev + 1, r.seq - 1]);
      noteRecord(seg, r.seq, off, r.bytes);
      prev = seen = r.seq;
      off += r.bytes;
      continue;
    }
    const from = Math.max(seen, firstSeq - 1) + 1;
    const next = resync(reader, seg, off + 1, size, seen);
    if (next === undefined) {
      const cut = size - off;
      if (isLast) {
        // Counted before the cut: the headers in the cut bytes tell how many records they held.
        const lost = lostInTail(scan, seg, off, size, from);
        try {
          ftruncateSync(fd, off);
          reader.forget(seg);
          report(`segment ${path}: torn tail of ${cut} bytes after the last valid record (seq ${seen || 'none'}) removed; ${lost}`);
        } catch (err) {
          report(`segment ${path}: ${cut} damaged bytes at the end cannot be removed (${errText(err)}); a new segment is started; ${lost}`);
          seg.sealed = true;
        }
      } else {
        report(`segment ${path}: the last ${cut} bytes are damaged; ignored; ${lostExactly(scan, from, nextFirstSeq - 1)}`);
      }
      break;
    }
    report(`segment ${path}: damaged record at offset ${off}; ${next.off - off} bytes skipped to the next valid record; ${lostExactly(scan, from, next.seq - 1)}`);
    (seg.skips ??= new Map()).set(off, next.off);
    off = next.off;
  }
  endGivenUp();
  // off: the end of the valid data. The file is that long unless its damaged end stayed.
  seg.readEnd = off;
  seg.size = isLast && !seg.sealed ? off : size;
  return seg;
}

/** The next valid record in [from, end), or undefined. */
function resync(reader: Reader, seg: Segment, from: number, end: number, prevSeq: number): { off: number; seq: number } | undefined {
  for (let p = from; p + REC_HEADER + BODY_FIXED <= end; p++) {
    const r = validRecordAt(reader, seg, p, end, prevSeq);
    if (r) return { off: p, seq: r.seq };
  }
  return undefined;
}

async function setAside(scan: Scan, seg: Segment, why: string, lost: string): Promise<undefined> {
  scan.reader.forget(seg);
  try {
    closeSync(seg.fd);
  } catch {
    // nothing to do
  }
  const to = `${seg.path}.corrupt`;
  try {
    await rename(seg.path, to);
    scan.report(`segment ${seg.path} ${why}; moved aside to ${to}; ${lost}`);
  } catch (err) {
    scan.report(`segment ${seg.path} ${why}; ignored (cannot move it aside: ${errText(err)}); ${lost}`);
  }
  return undefined;
}

// --- damage found later --------------------------------------------------------------------------

/**
 * A record at `off` that verified at open (or was written) no longer does, found while reading:
 * the segment ends before it, takes no more appends, and the records from it to the segment's last
 * are lost. Returns the seq of the last record kept and of the last one lost.
 */
export function cutAtDamage(reader: Reader, seg: Segment, off: number): { lastGood: number; lostTo: number } {
  // The seq of the last good record before off, by walking from the nearest index entry.
  let lastGood = seg.firstSeq - 1;
  let k = -1;
  for (let j = 0; j < seg.idxOff.length && seg.idxOff[j]! <= off; j++) k = j;
  if (k >= 0) {
    let p = seg.idxOff[k]!;
    lastGood = seg.idxSeq[k]! - 1;
    while (p < off) {
      const skip = seg.skips?.get(p);
      if (skip !== undefined) {
        p = skip;
        continue;
      }
      const h = reader.bytes(seg, p, REC_HEADER);
      if (!h) break;
      lastGood = h.readUInt32BE(8) * TWO_32 + h.readUInt32BE(12);
      p += REC_HEADER + h.readUInt32BE(0);
    }
  }
  const lostTo = seg.lastSeq;
  seg.readEnd = off;
  seg.sealed = true;
  while (seg.idxOff.length > 0 && seg.idxOff[seg.idxOff.length - 1]! >= off) {
    seg.idxOff.pop();
    seg.idxSeq.pop();
  }
  if (seg.idxOff.length === 0) seg.count = 0;
  seg.lastSeq = Math.max(0, lastGood);
  return { lastGood, lostTo };
}

// --- what was lost ---------------------------------------------------------------------------------
//
// A repair that removes the damage from disk (a tail cut off, a file moved aside) followed by a
// power cut before the outbox persists its state loses the count (and those seqs may be used
// again), never doubles it: the next open finds no damage to count again.

/** Seqs [from, to] are known lost: counted, and said in words. */
function lostExactly(scan: Scan, from: number, to: number): string {
  if (to < from) return 'no record is lost';
  return lossText(from, to, true, scan.lose(from, to));
}

/**
 * A segment that cannot be used (unreadable, or not a segment) lost its own seqs: up to the next
 * segment's name when there is one, else as many as the record headers still readable in it show.
 */
function lostWithSegment(scan: Scan, seg: Segment | undefined, size: number | undefined, from: number, nextFirstSeq: number | undefined): string {
  if (nextFirstSeq !== undefined) return lostExactly(scan, from, nextFirstSeq - 1);
  if (seg !== undefined && size !== undefined && size <= HEADER_BYTES) return 'it held no record';
  const torn = seg !== undefined && size !== undefined ? countRecords(scan.reader, seg, HEADER_BYTES, size, from, false) : { count: 0, exact: false };
  if (torn.count === 0) return `how many records it held (from seq ${from} on) cannot be known; none is added to the drop count`;
  return lossText(from, from + torn.count - 1, torn.exact, scan.lose(from, from + torn.count - 1));
}

/** The damaged end of the last segment: bytes after a valid record are records being appended. */
function lostInTail(scan: Scan, seg: Segment, off: number, end: number, from: number): string {
  const torn = countRecords(scan.reader, seg, off, end, from, true);
  return lossText(from, from + torn.count - 1, torn.exact, scan.lose(from, from + torn.count - 1));
}

/**
 * How many records bytes [off, end) held, judged by their headers alone (a cut record's CRC cannot
 * be checked): each must carry the next seq, from `seq` on, and a length in range. Fewer bytes
 * left than a header are one more record. Other bytes left over are an unknown number of records
 * (at least one when `areRecords`: the bytes are known to be appended records), so the count is
 * then not exact.
 */
function countRecords(reader: Reader, seg: Segment, off: number, end: number, seq: number, areRecords: boolean): { count: number; exact: boolean } {
  let n = 0;
  let p = off;
  while (end - p >= REC_HEADER) {
    const h = reader.bytes(seg, p, REC_HEADER);
    if (!h) break;
    const len = h.readUInt32BE(0);
    if (h.readUInt32BE(8) * TWO_32 + h.readUInt32BE(12) !== seq + n || len < BODY_FIXED || REC_HEADER + len > HARD_MAX_RECORD) break;
    n++;
    p += REC_HEADER + len;
  }
  if (p >= end) return { count: n, exact: true };
  if (n === 0 && !areRecords) return { count: 0, exact: false };
  return { count: n + 1, exact: end - p < REC_HEADER };
}

/**
 * What a damaged stretch lost, in words: `records 5..7 are lost: 3 records, added to the drop
 * count`. Not `exact`: more records may have followed.
 */
export function lossText(from: number, to: number, exact: boolean, c: LossCount): string {
  const n = to - from + 1;
  const which = from === to ? `record ${from}` : `records ${from}..${to}`;
  const head = exact ? `${which} ${n === 1 ? 'is' : 'are'} lost: ${n} record${n === 1 ? '' : 's'}` : `${which} and perhaps later ones are lost: at least ${n} record${n === 1 ? '' : 's'}`;
  if (c.settled === 0) return `${head}, added to the drop count`;
  if (c.lost === 0) return `${head}, already acknowledged or counted: nothing added to the drop count`;
  return `${head}, ${c.settled} of them already acknowledged or counted, ${c.lost} added to the drop count`;
}
