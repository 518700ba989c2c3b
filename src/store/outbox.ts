// The store-and-forward outbox (SPEC section 5, issue 5): the durable on-disk queue of upward
// messages (telemetry, events, audit records, status, snapshot refusals) that the cloud bridge
// drains, in order, after reconnecting.
//
// Pure JavaScript on node:fs, no native addon: the agent ships as single-file executables for x64,
// arm64 and armv7, and an addon (better-sqlite3, LMDB, RocksDB) would need a prebuilt binary per
// target, fetched at install. An append-only log needs only write, fsync, rename and unlink.
// node:sqlite, built into Node 24, was measured against this log behind the same interface
// (outbox-sqlite.ts, bench/outbox.ts): the log stayed; the figures and reasons are in
// docs/cloud.md, "Why the queue is a segment log, not node:sqlite".
//
// ## On disk (all in `dir`, which the outbox owns)
//
// - `<firstSeq>.seg` (firstSeq zero-padded to 16 digits): segment files. An 8-byte header
//   `EWOUTBX1`, then records, appended only:
//
//       offset size
//       0      4    body length (u32 BE)
//       4      4    CRC-32 (zlib.crc32) of bytes 0..3 and 8..end
//       8      8    sequence number (u64 BE: high u32, low u32)
//       16     1    flags: bit 0 QoS 1, bit 1 retain, bit 2 MQTT 5 properties
//       17     6    enqueuedAt, ms since the epoch (u48 BE)
//       23     2    topic length in bytes (u16 BE)
//       25     n    topic (UTF-8)
//       25+n   2+m  only with flag bit 2: properties length m (u16 BE), then m bytes of MQTT 5
//                   properties (Correlation Data, User Properties; outbox-properties.ts)
//       ...         the payload, up to the end of the body
//
//   25 bytes plus the topic per record: a 64-byte payload on `things/oven-1/telemetry/temperature`
//   takes 124 bytes. Flag bit 2 came with the cloud link's MQTT 5 replies; a record without it is
//   laid out exactly as before, so segments written by earlier versions load and send unchanged
//   (an earlier version reading a record with bit 2 takes it for damage and skips it). Sequence numbers start at 1, grow by one per append and are never reused for a
//   record that peek() returned, also across restarts, nor for one counted as lost to damage.
// - `state.json`, written atomically (writeFileAtomic):
//   `{"format":1,"ackedThrough":N,"dropped":D,"ackedAbove":[...],"lostAbove":[[from,to],...]}`.
//   Every record with seq <= ackedThrough is acknowledged (or dropped); `ackedAbove` lists the
//   records above it acknowledged out of order (the lowest 16384 of them; absent when none);
//   `dropped` counts records dropped to respect maxBytes or lost to damage, over the outbox's whole
//   life; `lostAbove` lists the seqs above ackedThrough already counted as lost to damage (the
//   lowest 4096 runs; absent when none), so damage found again is not counted again.
//
// ## Guarantees
//
// - append() writes the record to the file (one write(2)) before it returns: from then on a SIGKILL
//   of the agent loses nothing. Its promise resolves once the record is fsynced (group commit: one
//   fsync per `syncIntervalMs` for everything appended meanwhile, plus the directory when a segment
//   was created): from then on a power cut loses nothing either.
// - peek() returns only durable (fsynced) records, oldest first, skipping acknowledged ones. So the
//   cloud never sees a record the gateway could forget in a power cut.
// - ack() takes effect at once in memory: peek() never returns an acknowledged record again in this
//   process, so a reconnect without a restart re-sends only records that were never acknowledged.
//   Records may be acknowledged in any order (a QoS 1 in-flight window). The acknowledgements are
//   persisted atomically at most `ackSyncIntervalMs` after an ack, and at compact() and close().
//   After close() and a restart, peek() returns exactly the unacknowledged records. After a SIGKILL
//   or a power cut, also those acknowledged during the last `ackSyncIntervalMs` before it: no
//   record is lost, a few may be sent twice (at-least-once between crash points; the seq sent
//   with each message lets the cloud drop duplicates).
// - Bounded by `maxBytes` of segment files: when an append would exceed it, whole oldest segments
//   are removed (acknowledged ones first, at no loss); unacknowledged records in them are dropped
//   and counted (`dropped`, persisted). The newest records are never dropped.
// - Corruption never throws: open() verifies every record's CRC, truncates a torn tail (a record cut
//   by a power cut), skips over a damaged record to the next valid one, sets aside segment files
//   that are not segments, ignores unknown files, and reports each problem through `onProblem`.
//   Damage found later, by peek(), loses the rest of its segment. Each report names the records
//   lost (seqs, how many); those not acknowledged are added to `dropped` once, persisted at once,
//   and stay lost: a restart that finds them readable again does not send them.
//
// The segment format (framing, reader, record check) is in outbox-segment.ts, the open-time scan
// and its repairs in outbox-recovery.ts; this file is the queue.
import { fsync as fsyncCb, closeSync, fsyncSync, ftruncateSync, openSync } from 'node:fs';
import { mkdir, open as openAsync, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { EwError } from '../errors.js';
import { readFileBounded, removeStaleTempFiles, writeFileAtomic } from './atomic-file.js';
import { cutAtDamage, lossText, scanSegments, type LossCount } from './outbox-recovery.js';
import { BODY_FIXED, HARD_MAX_RECORD, HEADER_BYTES, MAGIC, MIB, REC_HEADER, Reader, TWO_32, errText, ioError, newSegment, noteRecord, recordCrc, segmentName, writeAll, type Segment } from './outbox-segment.js';
import { addRange, countIn, dropThrough, holds, type SeqRange } from './seq-ranges.js';
import { propertiesBytes, propertiesFit, readProperties, writeProperties, type OutboxProperties } from './outbox-properties.js';

export type { OutboxProperties } from './outbox-properties.js';

export type OutboxQos = 0 | 1;

/** One queued message, as peek() returns it. `payload` is a copy the caller may keep. */
export interface OutboxRecord {
  /** 1, 2, 3, ... in append order. */
  readonly seq: number;
  readonly topic: string;
  readonly payload: Buffer;
  readonly qos: OutboxQos;
  readonly retain: boolean;
  /** `now()` at append, ms since the epoch. */
  readonly enqueuedAt: number;
  /** MQTT 5 properties to send it with; absent when none were queued. */
  readonly properties?: OutboxProperties;
}

export interface OutboxOptions {
  /** The outbox's own directory (created, mode 0700). Nothing else may write in it; one process at a time. */
  readonly dir: string;
  /** Bound on the segment files' total size, bytes (at least 4096). */
  readonly maxBytes: number;
  /** A segment is closed and a new one started past this size. Default min(8 MiB, maxBytes / 8), kept within [max(1 KiB, maxBytes / 64), maxBytes / 4]: about 4 to 64 segments, each an open file. */
  readonly segmentBytes?: number;
  /** Group commit: the fsync of appended records happens this long after the first of them. Default 5 ms. */
  readonly syncIntervalMs?: number;
  /** The persisted ack point is written at most this long after an ack. Default 1000 ms. */
  readonly ackSyncIntervalMs?: number;
  /** Larger records (25 bytes + topic + payload) are refused. Default and upper bound min(1 MiB, maxBytes / 4); at least 64. */
  readonly maxRecordBytes?: number;
  /** Told about every problem found and recovered from (corrupt records, torn tails, failed writes), with the records it lost. */
  readonly onProblem?: (msg: string) => void;
  /** The clock for enqueuedAt (ms since the epoch). Default Date.now. */
  readonly now?: () => number;
}

export interface AppendOptions {
  /** Default 0. */
  readonly qos?: OutboxQos;
  /** Default false. */
  readonly retain?: boolean;
  /** MQTT 5 properties to send it with (Correlation Data, User Properties); at most 0xffff bytes encoded. */
  readonly properties?: OutboxProperties;
}

export interface OutboxStats {
  /** Records queued and not acknowledged (durable or not yet). */
  readonly depth: number;
  /** Size of the segment files, bytes (what maxBytes bounds). */
  readonly bytes: number;
  /** Records dropped to respect maxBytes or lost to damage (see onProblem), over the outbox's life (persisted). */
  readonly dropped: number;
  /** enqueuedAt of the oldest unacknowledged record; null when none. */
  readonly oldestEnqueuedAt: number | null;
  /** Segment files. */
  readonly segments: number;
  /** The seq of the newest record appended; 0 when none ever was. */
  readonly lastSeq: number;
  /** Every record with seq <= ackedThrough is acknowledged or dropped (in memory; persisted lazily). */
  readonly ackedThrough: number;
}

/** The effective limits after defaults and clamping. */
export interface OutboxLimits {
  readonly maxBytes: number;
  readonly segmentBytes: number;
  readonly maxRecordBytes: number;
  readonly syncIntervalMs: number;
  readonly ackSyncIntervalMs: number;
}

/** Bytes a record takes on disk besides its topic and payload. */
export const RECORD_OVERHEAD_BYTES = 25;
/** The file that holds the persisted ack point and drop count. */
export const OUTBOX_STATE_FILE = 'state.json';

const MAX_STATE_BYTES = 1024 * 1024;
/** At most this many out-of-order acknowledgements are persisted (the lowest); the others are sent again after a restart. */
const MAX_PERSISTED_ACKS = 16384;
/** At most this many runs of seqs lost to damage are remembered (the lowest); damage above them found again after a restart is counted again. */
const MAX_PERSISTED_LOST = 4096;
const MAX_U48 = 2 ** 48 - 1;

// --- helpers ---------------------------------------------------------------------------------------

function fsyncFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fsyncCb(fd, (err) => (err ? reject(err) : resolve())));
}

/** fsync of a directory; a filesystem that refuses it (EINVAL, ENOTSUP, EISDIR) has nothing better to offer. */
async function syncDir(dir: string): Promise<void> {
  const handle = await openAsync(dir, 'r');
  try {
    await handle.sync();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'EISDIR') throw err;
  } finally {
    await handle.close().catch(() => undefined);
  }
}

function intOption(name: string, value: number | undefined, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min) throw new RangeError(`outbox option ${name} must be a number >= ${min}, not ${String(value)}`);
  return Math.floor(value);
}

// --- the outbox ------------------------------------------------------------------------------------

interface Waiter {
  readonly seq: number;
  readonly resolve: (seq: number) => void;
  readonly reject: (err: unknown) => void;
}

interface Limits {
  maxBytes: number;
  segmentBytes: number;
  maxRecordBytes: number;
  syncIntervalMs: number;
  ackSyncIntervalMs: number;
}

/** The limits after defaults and clamping; shared with the SQLite outbox (outbox-sqlite.ts), which takes the same options. */
export function resolveLimits(opts: OutboxOptions): OutboxLimits {
  const maxBytes = intOption('maxBytes', opts.maxBytes, Number.NaN, 4096);
  if (Number.isNaN(maxBytes)) throw new RangeError('outbox option maxBytes is required');
  // At most about 64 segments (each holds a file descriptor open), at least 4.
  const segLow = Math.max(1024, Math.ceil(maxBytes / 64));
  const segHigh = Math.floor(maxBytes / 4);
  const segmentBytes = Math.min(segHigh, Math.max(segLow, intOption('segmentBytes', opts.segmentBytes, Math.min(8 * MIB, Math.floor(maxBytes / 8)), 0)));
  const recHigh = Math.min(HARD_MAX_RECORD, Math.floor(maxBytes / 4));
  const maxRecordBytes = Math.min(recHigh, Math.max(64, intOption('maxRecordBytes', opts.maxRecordBytes, recHigh, 0)));
  return {
    maxBytes,
    segmentBytes,
    maxRecordBytes,
    syncIntervalMs: intOption('syncIntervalMs', opts.syncIntervalMs, 5, 0),
    ackSyncIntervalMs: intOption('ackSyncIntervalMs', opts.ackSyncIntervalMs, 1000, 0),
  };
}

export class Outbox {
  readonly dir: string;
  private readonly lim: Limits;
  private readonly report: (msg: string) => void;
  private readonly clock: () => number;
  private readonly statePath: string;
  private readonly reader = new Reader();

  /** Live segments, ascending; the last one takes appends. */
  private segments: Segment[] = [];
  /** Removed from the queue; their files go once the state that covers them is persisted. */
  private doomed: Segment[] = [];
  private liveBytes = 0;

  private nextSeq = 1;
  /** Every seq <= floor is acknowledged, dropped or never existed. */
  private floor = 0;
  /** Acknowledged out of order, all > floor + 1. */
  private readonly ackedAbove = new Set<number>();
  /** Seqs above floor that no record has (lost to damage, or never written), [from, to] inclusive, ascending. */
  private gaps: SeqRange[] = [];
  private durableSeq = 0;
  /** Records dropped to respect maxBytes or lost to damage. */
  private dropped = 0;
  /** Seqs above floor already counted in `dropped` as lost to damage (persisted): never counted twice, never used again. */
  private lost: SeqRange[] = [];

  private persistedFloor = -1;
  private persistedDropped = -1;
  /** Bumped whenever the set of out-of-order acknowledgements changes. */
  private ackVersion = 0;
  private persistedAckVersion = 0;
  /** Bumped whenever `lost` grows. */
  private lostVersion = 0;
  private persistedLostVersion = 0;
  /** Out-of-order acknowledgements read from the state file, applied once the segments are known. */
  private loadedAcks = new Set<number>();

  private waiters: Waiter[] = [];
  private waiterHead = 0;
  private flushTimer: NodeJS.Timeout | undefined;
  private flushQueued = false;
  private stateTimer: NodeJS.Timeout | undefined;
  private dirDirty = false;
  /** Every async file operation runs on this chain, one at a time: no fd is closed under an fsync. */
  private io: Promise<void> = Promise.resolve();
  private closed = false;
  private closing: Promise<void> | undefined;
  private oldestCache: { floor: number; at: number } | undefined;

  private constructor(opts: OutboxOptions, lim: Limits) {
    this.dir = opts.dir;
    this.lim = lim;
    this.clock = opts.now ?? Date.now;
    const onProblem = opts.onProblem;
    this.report = (msg) => {
      try {
        onProblem?.(`outbox ${opts.dir}: ${msg}`);
      } catch {
        // a failing logger must not break the queue
      }
    };
    this.statePath = join(opts.dir, OUTBOX_STATE_FILE);
  }

  /**
   * Opens (or creates) the outbox in `opts.dir`: scans and verifies the segments, recovers what is
   * valid, and continues the sequence. Rejects only when the directory cannot be created or listed,
   * or no segment can be created in it (EW_STORE_IO), or an option is not a number in range
   * (RangeError).
   */
  static async open(opts: OutboxOptions): Promise<Outbox> {
    const ob = new Outbox(opts, resolveLimits(opts));
    await ob.load();
    return ob;
  }

  /** The effective limits. */
  get limits(): OutboxLimits {
    return { ...this.lim };
  }

  // --- open ----------------------------------------------------------------------------------------

  private async load(): Promise<void> {
    const dir = this.dir;
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw ioError(dir, 'create the outbox directory', err);
    }
    try {
      await removeStaleTempFiles(dir);
    } catch (err) {
      this.report(`stale temp files cannot be removed (${errText(err)})`);
    }
    await this.loadState();

    const scanned = await scanSegments(dir, OUTBOX_STATE_FILE, this.reader, {
      report: this.report,
      lose: (from, to) => this.lose(from, to),
      isLost: (seq) => holds(this.lost, seq),
    });
    this.segments = scanned.segments;
    const prevSeq = scanned.lastSeq;
    // A seq counted as lost is not used again, also when its damage was cut off (a torn tail): the
    // cloud may have received the record it named.
    const lastLost = this.lost[this.lost.length - 1]?.[1] ?? 0;
    this.nextSeq = Math.max(this.nextSeq, scanned.nextSeq, this.floor + 1, lastLost + 1);
    this.gaps = scanned.gaps;
    // Records between the ack point and the first record that survived do not exist: a gap.
    const first = this.segments.find((s) => s.count > 0);
    if (first && first.idxSeq[0]! > this.floor + 1) this.addGap(this.floor + 1, first.idxSeq[0]! - 1);
    // Seqs between the last record and a later segment name (its records lost before they were durable) do not exist either.
    const top = Math.max(prevSeq, this.floor);
    if (this.nextSeq - 1 > top) this.addGap(top + 1, this.nextSeq - 1);
    for (const s of this.loadedAcks) if (s > this.floor && s < this.nextSeq && !this.inGap(s)) this.ackedAbove.add(s);
    this.loadedAcks.clear();
    this.persistedAckVersion = this.ackVersion = this.ackedAbove.size > 0 ? 1 : 0;
    this.advance();

    // Whole segments at or below the ack point, and empty ones, are not needed (but the last stays).
    const last = this.segments[this.segments.length - 1];
    // The last usable segment takes appends only if it ends with its last valid record (it may
    // have been scanned as a middle one, when the files after it were not segments).
    if (last && last.readEnd < last.size) last.sealed = true;
    this.segments = this.segments.filter((s) => {
      if ((s === last && !(s.sealed && s.count === 0)) || (s.count > 0 && s.lastSeq > this.floor)) return true;
      this.doomed.push(s);
      return false;
    });
    if (last === undefined || last.sealed) this.roll();

    this.liveBytes = this.segments.reduce((n, s) => n + s.size, 0);

    // What a SIGKILL left in the page cache becomes durable now: from here on every record is.
    for (const s of this.segments) {
      try {
        fsyncSync(s.fd);
        s.synced = s.size;
      } catch (err) {
        this.report(`cannot fsync ${s.path} (${errText(err)})`);
      }
    }
    try {
      await syncDir(dir);
      this.dirDirty = false;
    } catch (err) {
      this.report(`cannot fsync the directory (${errText(err)})`);
    }
    this.durableSeq = this.nextSeq - 1;

    // A smaller maxBytes than last time: drop the oldest now.
    while (this.liveBytes > this.lim.maxBytes && this.segments.length > 1) this.dropOldestSegment();
    await this.persistAndReap();
  }

  private async loadState(): Promise<void> {
    let bytes: Buffer | undefined;
    try {
      bytes = await readFileBounded(this.statePath, MAX_STATE_BYTES);
    } catch (err) {
      this.report(`${OUTBOX_STATE_FILE} cannot be read (${errText(err)}); every record on disk will be sent again and the drop count starts at 0`);
      return;
    }
    if (bytes === undefined) return;
    let doc: unknown;
    try {
      doc = JSON.parse(bytes.toString('utf8'));
    } catch {
      doc = undefined;
    }
    const d = doc as { format?: unknown; ackedThrough?: unknown; dropped?: unknown; ackedAbove?: unknown; lostAbove?: unknown } | undefined;
    const okInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
    if (typeof d !== 'object' || d === null || d.format !== 1 || !okInt(d.ackedThrough) || !okInt(d.dropped)) {
      this.report(`${OUTBOX_STATE_FILE} is damaged; ignored: every record on disk will be sent again and the drop count starts at 0`);
      return;
    }
    this.floor = d.ackedThrough;
    this.dropped = d.dropped;
    this.persistedFloor = d.ackedThrough;
    this.persistedDropped = d.dropped;
    if (d.ackedAbove !== undefined) {
      if (Array.isArray(d.ackedAbove) && d.ackedAbove.every(okInt)) this.loadedAcks = new Set(d.ackedAbove);
      else this.report(`${OUTBOX_STATE_FILE}: "ackedAbove" is damaged; ignored: those records will be sent again`);
    }
    if (d.lostAbove !== undefined) {
      const isRun = (r: unknown): r is [number, number] => Array.isArray(r) && r.length === 2 && okInt(r[0]) && okInt(r[1]) && r[0] >= 1 && r[0] <= r[1];
      if (Array.isArray(d.lostAbove) && d.lostAbove.every(isRun)) for (const [from, to] of d.lostAbove) addRange(this.lost, from, to);
      else this.report(`${OUTBOX_STATE_FILE}: "lostAbove" is damaged; ignored: records lost to damage that are found again will be counted again`);
      dropThrough(this.lost, this.floor);
    }
  }

  // --- sequence bookkeeping ------------------------------------------------------------------------

  /** Merged with the gaps it overlaps: damage found while reading can take seqs skipped at open again. */
  private addGap(from: number, to: number): void {
    addRange(this.gaps, from, to);
  }

  private inGap(seq: number): boolean {
    return holds(this.gaps, seq);
  }

  /** Seqs of existing records in (a, b]. */
  private countExisting(a: number, b: number): number {
    return b <= a ? 0 : b - a - countIn(this.gaps, a + 1, b);
  }

  /** Moves the floor over acknowledged seqs and gaps. */
  private advance(): void {
    for (;;) {
      while (this.gaps.length > 0 && this.gaps[0]![1] <= this.floor) this.gaps.shift();
      const next = this.floor + 1;
      if (this.ackedAbove.delete(next)) {
        this.floor = next;
        continue;
      }
      const g = this.gaps[0];
      if (g && g[0] <= next) {
        this.floor = g[1];
        this.gaps.shift();
        continue;
      }
      break;
    }
  }

  /** Raises the floor to `to` (records dropped or lost), keeping the set and gaps consistent. */
  private raiseFloor(to: number): void {
    if (to <= this.floor) return;
    this.floor = to;
    for (const s of this.ackedAbove) if (s <= to) this.ackedAbove.delete(s);
    this.advance();
  }

  /**
   * Counts seqs [from, to] as lost to damage (found by outbox-recovery.ts at open, or while
   * reading): those above the floor that are neither acknowledged, nor a gap, nor counted before
   * are added to `dropped`. The run is remembered in `lost`, persisted with the drop count, so
   * damage found again (it stays on disk) is not counted again, also after a restart.
   */
  private lose(from: number, to: number): LossCount {
    const above = Math.max(from, this.floor + 1);
    if (to < above) return { lost: 0, settled: to - from + 1 };
    const settledRuns: SeqRange[] = this.lost.map(([a, b]) => [a, b]);
    for (const [a, b] of this.gaps) addRange(settledRuns, a, b);
    let settled = above - from + countIn(settledRuns, above, to);
    const isAckedHere = (s: number): boolean => s >= above && s <= to && !holds(settledRuns, s);
    for (const s of this.ackedAbove) if (isAckedHere(s)) settled++;
    for (const s of this.loadedAcks) if (isAckedHere(s) && !this.ackedAbove.has(s)) settled++;
    const lost = to - from + 1 - settled;
    addRange(this.lost, above, to);
    this.lostVersion++;
    this.dropped += lost;
    return { lost, settled };
  }

  private ackedBetween(a: number, b: number): number {
    let n = 0;
    for (const s of this.ackedAbove) if (s > a && s <= b) n++;
    return n;
  }

  // --- appending -----------------------------------------------------------------------------------

  /**
   * Queues a message. Returns its seq once it is durable (fsynced). The record is written to the
   * file before append returns, so a SIGKILL after the call loses nothing. Rejects with
   * EW_OUTBOX_RECORD_TOO_LARGE for a record over maxRecordBytes (nothing queued), EW_STORE_IO when
   * the write fails or the outbox is closed (nothing queued), or when the fsync fails (the record
   * was written and may still be sent). May drop the oldest records (counted) to stay within maxBytes.
   */
  append(topic: string, payload: Uint8Array | string, opts: AppendOptions = {}): Promise<number> {
    if (this.closed) return Promise.reject(new EwError('EW_STORE_IO', 'the outbox is closed', { where: this.dir }));
    const qos = opts.qos ?? 0;
    if (qos !== 0 && qos !== 1) return Promise.reject(new RangeError(`outbox qos must be 0 or 1, not ${String(qos)}`));
    const body = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
    const topicBytes = Buffer.byteLength(topic, 'utf8');
    const props = opts.properties;
    const propBytes = propertiesBytes(props);
    if (propBytes > 0xffff || (propBytes > 0 && !propertiesFit(props!))) {
      return Promise.reject(new EwError('EW_OUTBOX_RECORD_TOO_LARGE', `message on ${JSON.stringify(topic.length > 200 ? topic.slice(0, 200) + '...' : topic)} refused: its MQTT 5 properties take ${propBytes} bytes, more than 65535 (or one of them more than 65535)`, { where: this.dir }));
    }
    const propBlock = propBytes > 0 ? 2 + propBytes : 0;
    const total = REC_HEADER + BODY_FIXED + topicBytes + propBlock + body.length;
    if (total > this.lim.maxRecordBytes || topicBytes > 0xffff) {
      return Promise.reject(
        new EwError(
          'EW_OUTBOX_RECORD_TOO_LARGE',
          `message on ${JSON.stringify(topic.length > 200 ? topic.slice(0, 200) + '...' : topic)} refused: ${total} bytes (topic ${topicBytes}, payload ${body.length}, framing ${RECORD_OVERHEAD_BYTES}${propBlock > 0 ? `, properties ${propBlock}` : ''}) is more than the ${Math.min(this.lim.maxRecordBytes, 0xffff + RECORD_OVERHEAD_BYTES + body.length)} allowed`,
          { where: this.dir },
        ),
      );
    }
    const rec = Buffer.allocUnsafe(total);
    rec.writeUInt32BE(total - REC_HEADER, 0);
    rec[16] = (qos === 1 ? 1 : 0) | (opts.retain ? 2 : 0) | (propBlock > 0 ? 4 : 0);
    const at = Math.min(MAX_U48, Math.max(0, Math.floor(this.clock()) || 0));
    rec.writeUIntBE(at, 17, 6);
    rec.writeUInt16BE(topicBytes, 23);
    rec.write(topic, 25, topicBytes, 'utf8');
    if (propBlock > 0) {
      rec.writeUInt16BE(propBytes, 25 + topicBytes);
      writeProperties(rec, 27 + topicBytes, props!);
    }
    rec.set(body, 25 + topicBytes + propBlock);

    let seg: Segment;
    try {
      seg = this.makeRoom(total);
    } catch (err) {
      return Promise.reject(err);
    }
    const seq = this.nextSeq;
    rec.writeUInt32BE(Math.floor(seq / TWO_32), 8);
    rec.writeUInt32BE(seq >>> 0, 12);
    rec.writeUInt32BE(recordCrc(rec), 4);
    const at0 = seg.size;
    try {
      writeAll(seg.fd, rec, at0);
    } catch (err) {
      this.reader.forget(seg);
      try {
        ftruncateSync(seg.fd, at0);
      } catch (e2) {
        this.report(`after a failed write, ${seg.path} cannot be cut back (${errText(e2)}); a new segment is started`);
        seg.sealed = true;
      }
      return Promise.reject(ioError(seg.path, 'append a record', err));
    }
    this.nextSeq = seq + 1;
    noteRecord(seg, seq, at0, total);
    this.liveBytes += total;
    return new Promise<number>((resolve, reject) => {
      this.waiters.push({ seq, resolve, reject });
      this.scheduleFlush();
    });
  }

  /** The segment the next record of `bytes` goes to, after rolling and dropping as needed. */
  private makeRoom(bytes: number): Segment {
    let seg = this.segments[this.segments.length - 1];
    if (!seg || seg.sealed || (seg.count > 0 && seg.size + bytes > this.lim.segmentBytes)) seg = this.roll();
    let dropped = false;
    while (this.liveBytes + bytes > this.lim.maxBytes && this.segments.length > 1) {
      this.dropOldestSegment();
      dropped = true;
    }
    if (dropped) void this.persistAndReap();
    return seg;
  }

  /** Starts a new segment named after the next seq. Throws EW_STORE_IO. */
  private roll(): Segment {
    // An empty last segment (sealed after a failed write) is replaced, never left behind: its name may be the new one's.
    const prevLast = this.segments[this.segments.length - 1];
    if (prevLast && prevLast.count === 0) {
      // Closed and removed on the I/O chain (a flush may be fsyncing it right now).
      this.segments.pop();
      this.liveBytes -= prevLast.size;
      this.doomed.push(prevLast);
      void this.persistAndReap();
    }
    const path = join(this.dir, segmentName(this.nextSeq));
    let fd: number | undefined;
    try {
      fd = openSync(path, 'w+', 0o600);
      writeAll(fd, MAGIC, 0);
    } catch (err) {
      if (fd !== undefined) {
        try {
          closeSync(fd);
        } catch {
          // failing already
        }
      }
      this.report(`cannot create segment ${path} (${errText(err)})`);
      throw ioError(path, 'create a segment', err);
    }
    const seg = newSegment(this.nextSeq, path, fd);
    this.segments.push(seg);
    this.liveBytes += seg.size;
    this.dirDirty = true;
    return seg;
  }

  /** Removes the oldest segment from the queue, counting its unacknowledged records as dropped. */
  private dropOldestSegment(): void {
    const seg = this.segments.shift();
    if (!seg) return;
    this.liveBytes -= seg.size;
    this.doomed.push(seg);
    if (seg.count > 0 && seg.lastSeq > this.floor) {
      const lost = this.countExisting(this.floor, seg.lastSeq) - this.ackedBetween(this.floor, seg.lastSeq);
      this.dropped += lost;
      this.raiseFloor(seg.lastSeq);
    }
  }

  // --- durability ----------------------------------------------------------------------------------

  private enqueue(task: () => Promise<void>): Promise<void> {
    const p = this.io.then(task);
    this.io = p.catch(() => undefined);
    return p;
  }

  private scheduleFlush(): void {
    if (this.flushTimer !== undefined || this.flushQueued) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      void this.queueFlush();
    }, this.lim.syncIntervalMs);
  }

  private queueFlush(): Promise<void> {
    this.flushQueued = true;
    return this.enqueue(() => this.doFlush());
  }

  private async doFlush(): Promise<void> {
    this.flushQueued = false;
    const target = this.nextSeq - 1;
    const dirty = this.segments.filter((s) => s.synced < s.size).map((s) => ({ s, size: s.size }));
    const dir = this.dirDirty;
    this.dirDirty = false;
    let failure: unknown;
    try {
      await Promise.all(dirty.map(({ s }) => fsyncFd(s.fd)));
      for (const { s, size } of dirty) s.synced = Math.max(s.synced, size);
      if (dir) await syncDir(this.dir);
    } catch (err) {
      failure = err;
      if (dir) this.dirDirty = true;
      this.report(`fsync failed (${errText(err)}); appends waiting for it are rejected`);
    }
    if (failure === undefined && target > this.durableSeq) this.durableSeq = target;
    const ws = this.waiters;
    let i = this.waiterHead;
    for (; i < ws.length && ws[i]!.seq <= target; i++) {
      const w = ws[i]!;
      if (failure === undefined) w.resolve(w.seq);
      else w.reject(ioError(this.dir, 'fsync appended records', failure));
    }
    if (i === ws.length) {
      this.waiters = [];
      this.waiterHead = 0;
    } else if (i > 1024 && i * 2 > ws.length) {
      this.waiters = ws.slice(i);
      this.waiterHead = 0;
    } else {
      this.waiterHead = i;
    }
    if (this.waiterHead < this.waiters.length && !this.closed) this.scheduleFlush();
  }

  /** Resolves when every record appended so far is durable. */
  flush(): Promise<void> {
    if (this.closed) return this.closing ?? Promise.resolve();
    if (this.flushTimer !== undefined) {
      clearTimeout(this.flushTimer);
      this.flushTimer = undefined;
    }
    return this.queueFlush();
  }

  /** Writes the state if it changed, then removes the files of doomed segments it covers. Never rejects. */
  private persistAndReap(): Promise<void> {
    return this.enqueue(async () => {
      const floor = this.floor;
      const dropped = this.dropped;
      const ackVersion = this.ackVersion;
      const lostVersion = this.lostVersion;
      if (floor !== this.persistedFloor || dropped !== this.persistedDropped || ackVersion !== this.persistedAckVersion || lostVersion !== this.persistedLostVersion) {
        const above = [...this.ackedAbove].sort((a, b) => a - b).slice(0, MAX_PERSISTED_ACKS);
        dropThrough(this.lost, floor);
        const lost = this.lost.slice(0, MAX_PERSISTED_LOST).map(([a, b]) => [a, b]);
        const doc = { format: 1, ackedThrough: floor, dropped, ...(above.length > 0 && { ackedAbove: above }), ...(lost.length > 0 && { lostAbove: lost }) };
        try {
          await writeFileAtomic(this.statePath, JSON.stringify(doc) + '\n');
          this.persistedFloor = floor;
          this.persistedDropped = dropped;
          this.persistedAckVersion = ackVersion;
          this.persistedLostVersion = lostVersion;
        } catch (err) {
          this.report(`cannot persist the ack point (${errText(err)}); will retry`);
          return;
        }
      }
      const keep: Segment[] = [];
      for (const seg of this.doomed) {
        if (seg.count > 0 && seg.lastSeq > this.persistedFloor) {
          keep.push(seg);
          continue;
        }
        this.reader.forget(seg);
        try {
          closeSync(seg.fd);
        } catch {
          // already closed
        }
        if (this.segments.some((s) => s.path === seg.path)) continue; // the name was reused by a new segment
        try {
          await unlink(seg.path);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.report(`cannot remove ${seg.path} (${errText(err)})`);
        }
      }
      this.doomed = keep;
    });
  }

  private scheduleStatePersist(): void {
    if (this.stateTimer !== undefined || this.closed) return;
    this.stateTimer = setTimeout(() => {
      this.stateTimer = undefined;
      void this.persistAndReap();
    }, this.lim.ackSyncIntervalMs);
    this.stateTimer.unref();
  }

  // --- reading -------------------------------------------------------------------------------------

  /**
   * Up to `max` durable, unacknowledged records with seq > `afterSeq` (default: from the oldest),
   * in sequence order. Synchronous: reads from the segment files (page cache), never holds the
   * whole queue in memory. Typical use: peek(window) after connecting, then peek(n, lastSentSeq)
   * as acks free the window.
   */
  peek(max: number, afterSeq?: number): OutboxRecord[] {
    const out: OutboxRecord[] = [];
    if (this.closed || !(max >= 1)) return out;
    const after = Math.max(this.floor, afterSeq !== undefined && Number.isFinite(afterSeq) ? Math.floor(afterSeq) : 0);
    const limit = this.durableSeq;
    if (after >= limit) return out;
    const segs = this.segments;
    for (let i = this.segmentAfter(after); i < segs.length && out.length < max; i++) {
      const seg = segs[i]!;
      let off = this.offsetAfter(seg, after);
      while (off < seg.readEnd && out.length < max) {
        const skip = seg.skips?.get(off);
        if (skip !== undefined) {
          off = skip;
          continue;
        }
        const head = this.reader.bytes(seg, off, REC_HEADER + BODY_FIXED);
        const len = head ? head.readUInt32BE(0) : 0;
        const bytes = REC_HEADER + len;
        const seq = head ? head.readUInt32BE(8) * TWO_32 + head.readUInt32BE(12) : 0;
        if (!head || len < BODY_FIXED || off + bytes > seg.readEnd || seq < 1) {
          this.damagedWhileReading(seg, off);
          break;
        }
        if (seq > limit) return out;
        if (seq > after && !this.ackedAbove.has(seq)) {
          const rec = this.reader.bytes(seg, off, bytes);
          if (!rec || recordCrc(rec) !== rec.readUInt32BE(4)) {
            this.damagedWhileReading(seg, off);
            break;
          }
          const tlen = rec.readUInt16BE(23);
          const flags = rec[16]!;
          const topic = rec.toString('utf8', 25, 25 + tlen);
          const enqueuedAt = rec.readUIntBE(17, 6);
          if ((flags & 4) === 0) {
            out.push({ seq, topic, payload: Buffer.from(rec.subarray(25 + tlen)), qos: (flags & 1) as OutboxQos, retain: (flags & 2) !== 0, enqueuedAt });
          } else {
            const plen = rec.readUInt16BE(25 + tlen);
            const properties = readProperties(rec.subarray(27 + tlen, 27 + tlen + plen));
            if (properties === undefined) this.report(`record ${seq} in ${seg.path} has malformed MQTT 5 properties: sent without them`);
            out.push({ seq, topic, payload: Buffer.from(rec.subarray(27 + tlen + plen)), qos: (flags & 1) as OutboxQos, retain: (flags & 2) !== 0, enqueuedAt, ...(properties === undefined ? {} : { properties }) });
          }
        }
        off += bytes;
      }
    }
    return out;
  }

  /** Index of the first segment holding a record with seq > after (or segments.length). */
  private segmentAfter(after: number): number {
    const segs = this.segments;
    let lo = 0;
    let hi = segs.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const s = segs[mid]!;
      if (s.count > 0 && s.lastSeq > after) hi = mid;
      else if (s.count === 0 && s.firstSeq > after) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  /** An offset in `seg` at or before the first record with seq > after. */
  private offsetAfter(seg: Segment, after: number): number {
    const idx = seg.idxSeq;
    let lo = 0;
    let hi = idx.length - 1;
    let best = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (idx[mid]! <= after) {
        best = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return best < 0 ? HEADER_BYTES : seg.idxOff[best]!;
  }

  /** A record that verified at open (or was written) no longer does: the rest of its segment is lost. */
  private damagedWhileReading(seg: Segment, off: number): void {
    const { lastGood, lostTo } = cutAtDamage(this.reader, seg, off);
    // Counted before the gap below is added: lose() takes gaps as records already gone.
    const lost = lostTo > lastGood ? lossText(lastGood + 1, lostTo, true, this.lose(lastGood + 1, lostTo)) : 'no record is lost';
    this.report(`segment ${seg.path}: record at offset ${off} is damaged (found while reading); ${lost}`);
    if (lostTo > lastGood) {
      for (const s of this.ackedAbove) if (s > lastGood && s <= lostTo) this.ackedAbove.delete(s);
      this.ackVersion++;
      this.addGap(Math.max(lastGood + 1, this.floor + 1), lostTo);
      this.advance();
      // The drop count is persisted now, not with the next acknowledgement.
      void this.persistAndReap();
    }
  }

  // --- acknowledging -------------------------------------------------------------------------------

  /**
   * Acknowledges one record (e.g. on its PUBACK); any order. Unknown, already acknowledged or
   * dropped seqs are ignored. Persisted lazily (see the guarantees above).
   */
  ack(seq: number): void {
    if (!Number.isSafeInteger(seq) || seq <= this.floor || seq >= this.nextSeq || this.inGap(seq)) return;
    this.ackedAbove.add(seq);
    this.ackVersion++;
    this.advance();
    this.scheduleStatePersist();
  }

  /** Persists the ack point and removes the segment files whose records are all acknowledged. */
  async compact(): Promise<void> {
    if (this.closed) return;
    const last = this.segments[this.segments.length - 1];
    if (last && last.count > 0 && last.lastSeq <= this.floor) {
      try {
        this.roll();
      } catch {
        // reported; the fully acknowledged segment simply stays
      }
    }
    while (this.segments.length > 1) {
      const s = this.segments[0]!;
      if (s.count > 0 && s.lastSeq > this.floor) break;
      this.segments.shift();
      this.liveBytes -= s.size;
      this.doomed.push(s);
    }
    await this.persistAndReap();
  }

  stats(): OutboxStats {
    const lastSeq = this.nextSeq - 1;
    const depth = this.countExisting(this.floor, lastSeq) - this.ackedAbove.size;
    return {
      depth,
      bytes: this.liveBytes,
      dropped: this.dropped,
      oldestEnqueuedAt: depth > 0 ? this.oldestAt() : null,
      segments: this.segments.length,
      lastSeq,
      ackedThrough: this.floor,
    };
  }

  private oldestAt(): number | null {
    if (this.oldestCache?.floor === this.floor) return this.oldestCache.at;
    if (this.closed) return null;
    const i = this.segmentAfter(this.floor);
    const seg = this.segments[i];
    if (!seg) return null;
    let off = this.offsetAfter(seg, this.floor);
    while (off < seg.readEnd) {
      const skip = seg.skips?.get(off);
      if (skip !== undefined) {
        off = skip;
        continue;
      }
      const h = this.reader.bytes(seg, off, REC_HEADER + BODY_FIXED);
      if (!h) return null;
      const seq = h.readUInt32BE(8) * TWO_32 + h.readUInt32BE(12);
      if (seq > this.floor) {
        const at = h.readUIntBE(17, 6);
        this.oldestCache = { floor: this.floor, at };
        return at;
      }
      off += REC_HEADER + h.readUInt32BE(0);
    }
    return null;
  }

  /** Fsyncs what was appended, persists the ack point, closes the files. Idempotent. */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    if (this.flushTimer !== undefined) clearTimeout(this.flushTimer);
    if (this.stateTimer !== undefined) clearTimeout(this.stateTimer);
    this.flushTimer = undefined;
    this.stateTimer = undefined;
    this.closing = (async () => {
      await this.queueFlush();
      await this.persistAndReap();
      await this.enqueue(async () => {
        for (const s of [...this.segments, ...this.doomed]) {
          try {
            closeSync(s.fd);
          } catch {
            // already closed
          }
        }
        this.reader.forget();
      });
    })();
    return this.closing;
  }
}
