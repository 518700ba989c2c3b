// The store-and-forward outbox (SPEC section 5, issue 5): the durable on-disk queue of upward
// messages (telemetry, events, audit records, status, snapshot refusals) that the cloud bridge
// drains, in order, after reconnecting.
//
// Pure JavaScript on node:fs, no native addon: the agent ships as single-file executables for x64,
// arm64 and armv7, and an addon (better-sqlite3, LMDB, RocksDB) would need a prebuilt binary per
// target, fetched at install. An append-only log needs only write, fsync, rename and unlink.
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
//       16     1    flags: bit 0 QoS 1, bit 1 retain
//       17     6    enqueuedAt, ms since the epoch (u48 BE)
//       23     2    topic length in bytes (u16 BE)
//       25     n    topic (UTF-8), then the payload up to the end of the body
//
//   25 bytes plus the topic per record: a 64-byte payload on `things/oven-1/telemetry/temperature`
//   takes 124 bytes. Sequence numbers start at 1, grow by one per append and are never reused for a
//   record that peek() returned, also across restarts.
// - `state.json`, written atomically (writeFileAtomic): `{"format":1,"ackedThrough":N,"dropped":D}`.
//   Every record with seq <= ackedThrough is acknowledged (or dropped); `dropped` counts records
//   dropped to respect maxBytes over the outbox's whole life.
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
//   Records may be acknowledged out of order; the persisted point is the highest contiguous one,
//   written atomically at most `ackSyncIntervalMs` after an ack, and at compact() and close().
//   After a restart, peek() returns exactly the records above the persisted point: after close(),
//   exactly the unacknowledged ones; after SIGKILL or a power cut, also those acknowledged during
//   the last `ackSyncIntervalMs` before it, or out of order above a gap (at-least-once between crash
//   points; the bridge sends the seq with each message so the cloud can drop duplicates).
// - Bounded by `maxBytes` of segment files: when an append would exceed it, whole oldest segments
//   are removed (acknowledged ones first, at no loss); unacknowledged records in them are dropped
//   and counted (`dropped`, persisted). The newest records are never dropped.
// - Corruption never throws: open() verifies every record's CRC, truncates a torn tail (a record cut
//   by a power cut), skips over a damaged record to the next valid one, sets aside segment files
//   that are not segments, ignores unknown files, and reports each problem through `onProblem`.

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
}

export interface OutboxOptions {
  /** The outbox's own directory (created, mode 0700). Nothing else may write in it. */
  readonly dir: string;
  /** Bound on the segment files' total size, bytes (at least 4096). */
  readonly maxBytes: number;
  /** A segment is closed and a new one started past this size. Default min(8 MiB, maxBytes / 8), kept within [max(1 KiB, maxBytes / 1024), maxBytes / 4]. */
  readonly segmentBytes?: number;
  /** Group commit: the fsync of appended records happens this long after the first of them. Default 5 ms. */
  readonly syncIntervalMs?: number;
  /** The persisted ack point is written at most this long after an ack. Default 1000 ms. */
  readonly ackSyncIntervalMs?: number;
  /** Larger records (25 bytes + topic + payload) are refused. Default and upper bound min(1 MiB, maxBytes / 4). */
  readonly maxRecordBytes?: number;
  /** Told about every problem found and recovered from (corrupt records, torn tails, failed writes). */
  readonly onProblem?: (msg: string) => void;
  /** The clock for enqueuedAt (ms since the epoch). Default Date.now. */
  readonly now?: () => number;
}

export interface AppendOptions {
  /** Default 0. */
  readonly qos?: OutboxQos;
  /** Default false. */
  readonly retain?: boolean;
}

export interface OutboxStats {
  /** Records queued and not acknowledged (durable or not yet). */
  readonly depth: number;
  /** Size of the segment files, bytes (what maxBytes bounds). */
  readonly bytes: number;
  /** Records dropped to respect maxBytes, over the outbox's life (persisted). */
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

export class Outbox {
  /**
   * Opens (or creates) the outbox in `opts.dir`: scans and verifies the segments, recovers what is
   * valid, and continues the sequence. Rejects only when the directory cannot be created or listed
   * (EW_STORE_IO) or the options are not numbers in range (RangeError).
   */
  static async open(opts: OutboxOptions): Promise<Outbox> {
    void opts;
    throw new Error('not implemented yet');
  }

  /** The effective limits. */
  get limits(): OutboxLimits {
    throw new Error('not implemented yet');
  }

  /**
   * Queues a message. Returns its seq once it is durable (fsynced). The record is written to the
   * file before append returns, so a SIGKILL after the call loses nothing. Rejects with
   * EW_OUTBOX_RECORD_TOO_LARGE for a record over maxRecordBytes (nothing queued), EW_STORE_IO when
   * the write or its fsync fails or the outbox is closed. May drop the oldest records (counted) to
   * stay within maxBytes.
   */
  append(topic: string, payload: Uint8Array | string, opts?: AppendOptions): Promise<number> {
    void topic;
    void payload;
    void opts;
    throw new Error('not implemented yet');
  }

  /** Resolves when every record appended so far is durable. */
  flush(): Promise<void> {
    throw new Error('not implemented yet');
  }

  /**
   * Up to `max` durable, unacknowledged records with seq > `afterSeq` (default: from the oldest),
   * in sequence order. Synchronous: reads from the segment files (page cache), never holds the
   * whole queue in memory. Typical use: peek(window) after connecting, then peek(n, lastSentSeq)
   * as acks free the window.
   */
  peek(max: number, afterSeq?: number): OutboxRecord[] {
    void max;
    void afterSeq;
    throw new Error('not implemented yet');
  }

  /**
   * Acknowledges one record (e.g. on its PUBACK); any order. Unknown, already acknowledged or
   * dropped seqs are ignored. Persisted lazily (see the guarantees above).
   */
  ack(seq: number): void {
    void seq;
    throw new Error('not implemented yet');
  }

  /** Persists the ack point and removes the segment files whose records are all acknowledged. */
  compact(): Promise<void> {
    throw new Error('not implemented yet');
  }

  stats(): OutboxStats {
    throw new Error('not implemented yet');
  }

  /** Fsyncs what was appended, persists the ack point, closes the files. Idempotent. */
  close(): Promise<void> {
    throw new Error('not implemented yet');
  }
}
