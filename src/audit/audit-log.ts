// Decision records (SPEC section 6): every deny, and every allowed command, parameter write,
// firmware update and registration, kept on disk, durable within about a second, bounded in size.
//
// Format: JSON Lines in <dir>/audit.log (one AuditEntry per line). When the next line would take
// audit.log past maxBytes/2, audit.log is renamed to audit.log.1 (replacing the previous one, whose
// bytes are the oldest records and are counted as dropped) and a new audit.log is started. So there
// are at most two files of at most maxBytes/2 each. Each line has a seq (1, 2, 3, ... over the log's
// life; the newest is read back at open). With an uploader attached (the cloud upload), the log urges
// it by volume, and a rotation that drops lines not yet uploaded records the loss as a 'lost' line
// (docs/audit.md).
//
// The hot path, record(), only appends to an in-memory buffer: no I/O, no throw. A timer (every
// flushIntervalMs, unref'd) and a full buffer (FLUSH_AT bytes) start a flush: write the buffer,
// then fsync. One flush runs at a time; a flood of denials costs one write and one fsync per flush,
// not per record, and identical consecutive denials within COALESCE_MS are one line with a count.
// The buffer is bounded (maxBufferBytes): when the disk is slow or hangs, the oldest buffered
// records are dropped and counted, and memory stays bounded.
//
// Writes are positional (pwrite at the end of the file as this writer knows it), not O_APPEND: a
// planned write ("job") has a fixed place in the file, so flushSync() can write again, synchronously,
// a job an asynchronous flush has handed to the thread pool but not yet finished. Both land the same
// bytes at the same offset; nothing is lost at exit and nothing is written twice. It also means one
// writer per directory (the agent's); a second process writing the same files would overwrite lines.
//
// Only the fields of AuditEntry are written, each type-checked and length-bounded: whatever else a
// caller's object carries (a password, a token, a payload) never reaches the file.
import {
  closeSync,
  close as closeCb,
  constants as FS,
  fchmod as fchmodCb,
  fstat as fstatCb,
  fsync as fsyncCb,
  fsyncSync,
  open as openCb,
  openSync,
  read as readCb,
  renameSync,
  statSync,
  write as writeCb,
  writeSync,
  type Stats,
} from 'node:fs';
import { chmod, mkdir, open, stat, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { EwError } from '../errors.js';

export type { AuditEntry, AuditRecord } from './audit-entry.js';
export { readAudit, readAuditDetailed, AUDIT_FILE, AUDIT_ROTATED_FILE, type ReadAuditOptions, type ReadAuditResult } from './audit-read.js';
import { AUDIT_FILE, AUDIT_ROTATED_FILE } from './audit-read.js';
import { lossEntry, sameDenial, seqAndTime, serialize, toEntry, type AuditEntry, type AuditLoss, type AuditRecord } from './audit-entry.js';

export interface AuditLogOptions {
  /** The audit directory (created with mode 0700). The agent uses <stateDir>/audit (AUDIT_DIR_NAME). */
  dir: string;
  /** Bound on the bytes on disk, both files together. Default 10 MiB, at least MIN_MAX_BYTES. */
  maxBytes?: number;
  /** How often buffered records are written and fsynced. Default 1000 ms. */
  flushIntervalMs?: number;
  /** Bound on the in-memory buffer (characters of serialized lines). Default 1 MiB. */
  maxBufferBytes?: number;
  /** ms since the epoch; default Date.now. */
  clock?: () => number;
  /** Told about failed background flushes and dropped records. Default: process.emitWarning. */
  onError?: (err: Error) => void;
  /** Told when rotation drops records not yet uploaded (see attachUploader); the log also gets a 'lost' line. */
  onLoss?: (loss: AuditLoss) => void;
}

/** The cloud upload, as the log sees it (see attachUploader). */
export interface AuditUploader {
  /** Upload now: enough was written since the last call, or rotation is waiting. Must not throw. */
  urge(): void;
  /** urge() after this many bytes written. */
  readonly everyBytes: number;
}

/** seq and time of a line. */
interface LineMark {
  readonly seq: number;
  readonly time: string;
}

export interface AuditStats {
  /** record() calls. */
  recorded: number;
  /** Lines whose write completed (fsynced by the end of that flush). */
  written: number;
  /** Bytes of the oldest records removed from disk by rotation. */
  droppedBytes: number;
  /** record() calls folded into the count of the previous line. */
  coalesced: number;
  /** Lines not yet written (buffered, or in a write not yet finished). */
  pendingEntries: number;
  /** Records lost before reaching the disk: buffer full, or recorded after close(). */
  droppedEntries: number;
  rotations: number;
  /** Records rotated away before they were uploaded (only counted with an uploader attached). */
  lostBeforeUpload: number;
  /** The latest such loss. */
  lastLoss: AuditLoss | null;
  /** seq of the newest line (0: none yet). */
  seq: number;
}

export const AUDIT_DIR_NAME = 'audit';
export const DEFAULT_AUDIT_MAX_BYTES = 10 * 1024 * 1024;
/** Half of it must hold the longest possible line (MAX_FIELD_CHARS per field, all escaped). */
export const MIN_MAX_BYTES = 64 * 1024;
export const DEFAULT_FLUSH_INTERVAL_MS = 1000;
export const DEFAULT_MAX_BUFFER_BYTES = 1024 * 1024;
/** Identical denials closer than this to the first of their line are coalesced into it. */
export const COALESCE_MS = 1000;
/** Distinct (decision, action, reason) tallied; actions come from the catalog and a few topic-level names. */
const MAX_TALLY_KEYS = 4096;
/** A buffer this full is flushed without waiting for the timer. */
const FLUSH_AT = 64 * 1024;
/** Largest single write. */
const MAX_JOB_BYTES = 256 * 1024;
/** The same failure is reported at most once a minute. */
const REPEAT_REPORT_MS = 60_000;

const NEWLINE = 0x0a;

interface WriteJob {
  readonly fd: number;
  /** Offset in the file: jobs are written with pwrite, so writing one twice is harmless. */
  readonly pos: number;
  readonly bytes: Buffer;
  readonly entries: number;
  done: boolean;
}

interface CoalescingTail {
  readonly entry: AuditEntry;
  /** Time of the first record of the line, ms. */
  readonly ms: number;
}

function codeOf(err: unknown): string {
  const e = err as NodeJS.ErrnoException | undefined;
  return e?.code ?? (e as Error | undefined)?.message ?? String(err);
}

function ioError(where: string, what: string, err: unknown): EwError {
  return err instanceof EwError ? err : new EwError('EW_STORE_IO', `${what}: ${codeOf(err)}`, { where, cause: err });
}

function writeAt(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => writeCb(fd, buf, off, len, pos, (err, n) => (err ? reject(err) : resolve(n))));
}

function readAt(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => readCb(fd, buf, off, len, pos, (err, n) => (err ? reject(err) : resolve(n))));
}

function openFd(path: string, flags: number, mode: number): Promise<number> {
  return new Promise((resolve, reject) => openCb(path, flags, mode, (err, fd) => (err ? reject(err) : resolve(fd))));
}

function fstatFd(fd: number): Promise<Stats> {
  return new Promise((resolve, reject) => fstatCb(fd, (err, st) => (err ? reject(err) : resolve(st))));
}

function fchmodFd(fd: number, mode: number): Promise<void> {
  return new Promise((resolve, reject) => fchmodCb(fd, mode, (err) => (err ? reject(err) : resolve())));
}

function fsyncFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fsyncCb(fd, (err) => (err ? reject(err) : resolve())));
}

function closeFd(fd: number): Promise<void> {
  return new Promise((resolve) => closeCb(fd, () => resolve()));
}

/** Some filesystems refuse fsync on a directory; there nothing better can be done. */
function isDirSyncUnsupported(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'EINVAL' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'EISDIR';
}

async function syncDir(dir: string): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(dir, 'r');
    await handle.sync();
  } catch (err) {
    if (!isDirSyncUnsupported(err)) throw err;
  } finally {
    await handle?.close().catch(() => undefined);
  }
}

function syncDirSync(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } catch (err) {
    if (!isDirSyncUnsupported(err)) throw err;
  } finally {
    closeSync(fd);
  }
}


/** What the files say when the log opens: the newest seq, the first line of each file, the rotated file's size. */
interface FileMarks {
  readonly seq: number;
  readonly curFirst: LineMark | undefined;
  readonly rotFirst: LineMark | undefined;
  readonly rotSize: number;
}

/** Lines are at most a few KiB (fields are cut to MAX_FIELD_CHARS): the first and last are in this much. */
const MARK_SCAN_BYTES = 64 * 1024;

async function readFullAt(fd: number, buf: Buffer, pos: number): Promise<Buffer> {
  let n = 0;
  while (n < buf.length) {
    const got = await readAt(fd, buf, n, buf.length - n, pos + n);
    if (got === 0) break;
    n += got;
  }
  return buf.subarray(0, n);
}

/** The first and the last line with a seq in the file's first and last MARK_SCAN_BYTES. */
async function marksOf(fd: number, size: number): Promise<{ first: LineMark | undefined; last: LineMark | undefined }> {
  if (size === 0) return { first: undefined, last: undefined };
  const head = (await readFullAt(fd, Buffer.alloc(Math.min(size, MARK_SCAN_BYTES)), 0)).toString('utf8');
  const tailStart = Math.max(0, size - MARK_SCAN_BYTES);
  const tail = tailStart === 0 ? head : (await readFullAt(fd, Buffer.alloc(size - tailStart), tailStart)).toString('utf8');
  let first: LineMark | undefined;
  for (const line of head.split('\n').slice(0, -1)) if ((first = seqAndTime(line)) !== undefined) break;
  let last: LineMark | undefined;
  const lines = tail.split('\n');
  for (let i = lines.length - 1; i >= 0 && last === undefined; i--) last = seqAndTime(lines[i]!);
  return { first, last };
}

async function readMarks(fd: number, size: number, rotatedPath: string): Promise<FileMarks> {
  const cur = await marksOf(fd, size);
  let rot: { first: LineMark | undefined; last: LineMark | undefined } = { first: undefined, last: undefined };
  let rotSize = 0;
  let rfd: number | undefined;
  try {
    rfd = await openFd(rotatedPath, FS.O_RDONLY, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (rfd !== undefined) {
    try {
      rotSize = (await fstatFd(rfd)).size;
      rot = await marksOf(rfd, rotSize);
    } finally {
      await closeFd(rfd);
    }
  }
  return { seq: Math.max(cur.last?.seq ?? 0, rot.last?.seq ?? 0), curFirst: cur.first, rotFirst: rot.first, rotSize };
}

export class AuditLog {
  readonly dir: string;
  private readonly path: string;
  private readonly rotatedPath: string;
  /** Bound of each file: maxBytes / 2. */
  private readonly fileBound: number;
  private readonly maxBuffer: number;
  private readonly clock: () => number;
  private readonly onError: (err: Error) => void;
  private readonly onLoss: ((loss: AuditLoss) => void) | undefined;

  /** audit.log, open for writing. */
  private fd: number;
  /** Bytes of audit.log, counting planned writes. */
  private size: number;
  /** Files rotated away, still to fsync and close. */
  private retired: number[] = [];
  private dirDirty = false;
  private unsynced = false;

  /** Serialized lines not yet planned into a write; lines[head..] are live. */
  private lines: string[] = [];
  private head = 0;
  private bufferedChars = 0;
  /** The last record if it is a denial: it may still be coalesced, so it is not serialized yet. */
  private tail: CoalescingTail | undefined;
  /** The planned write not yet known to be done (in flight, or failed and to be retried). */
  private job: WriteJob | undefined;

  private running: Promise<void> | undefined;
  private queued: Promise<void> | undefined;
  private kickScheduled = false;
  private readonly timer: NodeJS.Timeout;
  private closing: Promise<void> | undefined;
  private closed = false;

  private recorded = 0;
  private readonly tally = new Map<string, number>();
  private written = 0;
  private droppedBytes = 0;
  private coalesced = 0;
  private droppedEntries = 0;
  private reportedDrops = 0;
  private rotations = 0;
  private lastReport: { message: string; at: number } | undefined;

  /** seq of the newest line made. */
  private seq: number;
  /** First line of audit.log and of audit.log.1 (undefined: empty, or older lines without seq). */
  private curFirst: LineMark | undefined;
  private rotFirst: LineMark | undefined;
  /** Bytes of audit.log.1. */
  private rotSize: number;
  private uploader: AuditUploader | undefined;
  /** The newest line uploaded (null: not known yet, no loss is counted). */
  private uploaded: LineMark | null = null;
  private writtenSinceUrge = 0;
  private lostBeforeUpload = 0;
  private lastLoss: AuditLoss | null = null;
  private pendingLoss: AuditLoss | undefined;

  private constructor(
    opts: { dir: string; maxBytes: number; maxBuffer: number; flushIntervalMs: number; clock: () => number; onError: (err: Error) => void; onLoss: ((loss: AuditLoss) => void) | undefined },
    fd: number,
    size: number,
    marks: FileMarks,
  ) {
    this.dir = opts.dir;
    this.path = join(opts.dir, AUDIT_FILE);
    this.rotatedPath = join(opts.dir, AUDIT_ROTATED_FILE);
    this.fileBound = Math.floor(opts.maxBytes / 2);
    this.onLoss = opts.onLoss;
    this.seq = marks.seq;
    this.curFirst = marks.curFirst;
    this.rotFirst = marks.rotFirst;
    this.rotSize = marks.rotSize;
    this.maxBuffer = opts.maxBuffer;
    this.clock = opts.clock;
    this.onError = opts.onError;
    this.fd = fd;
    this.size = size;
    this.timer = setInterval(() => this.tick(), opts.flushIntervalMs);
    this.timer.unref();
  }

  /**
   * Creates the directory (0700) and opens <dir>/audit.log (0600) to add to it. A torn last line
   * (power cut mid-write) is ended with a newline, so it stays one skipped line.
   */
  static async open(opts: AuditLogOptions): Promise<AuditLog> {
    const maxBytes = opts.maxBytes ?? DEFAULT_AUDIT_MAX_BYTES;
    if (!Number.isSafeInteger(maxBytes) || maxBytes < MIN_MAX_BYTES) {
      throw new RangeError(`audit maxBytes must be an integer of at least ${MIN_MAX_BYTES}, got ${maxBytes}`);
    }
    const flushIntervalMs = opts.flushIntervalMs ?? DEFAULT_FLUSH_INTERVAL_MS;
    if (!Number.isFinite(flushIntervalMs) || flushIntervalMs <= 0) {
      throw new RangeError(`audit flushIntervalMs must be a positive number, got ${flushIntervalMs}`);
    }
    const maxBuffer = opts.maxBufferBytes ?? DEFAULT_MAX_BUFFER_BYTES;
    if (!Number.isFinite(maxBuffer) || maxBuffer <= 0) {
      throw new RangeError(`audit maxBufferBytes must be a positive number, got ${maxBuffer}`);
    }
    const dir = opts.dir;
    try {
      // The new directory's own name is made durable too.
      if ((await mkdir(dir, { recursive: true, mode: 0o700 })) !== undefined) await syncDir(dirname(dir));
      const st = await stat(dir);
      if (!st.isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
      if ((st.mode & 0o077) !== 0) await chmod(dir, 0o700);
    } catch (err) {
      throw ioError(dir, 'cannot create the audit directory', err);
    }

    const path = join(dir, AUDIT_FILE);
    // A numeric descriptor, not a FileHandle: the synchronous paths need it, and a FileHandle
    // would be closed when garbage-collected. No O_APPEND: writes are positional (see the top).
    let fd: number | undefined;
    let size: number;
    try {
      fd = await openFd(path, FS.O_RDWR | FS.O_CREAT, 0o600);
      const st = await fstatFd(fd);
      if (!st.isFile()) throw Object.assign(new Error('not a regular file'), { code: 'EISDIR' });
      if ((st.mode & 0o077) !== 0) await fchmodFd(fd, 0o600);
      size = st.size;
      if (size > 0) {
        const last = Buffer.alloc(1);
        await readAt(fd, last, 0, 1, size - 1);
        if (last[0] !== NEWLINE) {
          await writeAt(fd, Buffer.from('\n'), 0, 1, size);
          size += 1;
        }
      }
      await syncDir(dir);
    } catch (err) {
      if (fd !== undefined) await closeFd(fd);
      throw ioError(path, 'cannot open the audit log', err);
    }
    await chmod(join(dir, AUDIT_ROTATED_FILE), 0o600).catch(() => undefined);
    let marks: FileMarks;
    try {
      marks = await readMarks(fd, size, join(dir, AUDIT_ROTATED_FILE));
    } catch (err) {
      await closeFd(fd);
      throw ioError(path, 'cannot read the audit log', err);
    }

    return new AuditLog(
      {
        dir,
        maxBytes,
        maxBuffer,
        flushIntervalMs,
        clock: opts.clock ?? Date.now,
        onError: opts.onError ?? ((err) => process.emitWarning(err)),
        onLoss: opts.onLoss,
      },
      fd,
      size,
      marks,
    );
  }

  /**
   * Ties the log to the cloud upload. The uploader is urged every `everyBytes` written, so while
   * uploads go out the records not yet uploaded stay far fewer than a file holds, and rotation —
   * which drops audit.log.1, records older than all of audit.log — drops only uploaded ones. When
   * the bound drops records not yet uploaded anyway (offline, or the upload does not keep up), they
   * are counted, reported (onLoss) and recorded as a 'lost' line with their seqs and times. Without
   * an uploader nothing counts as lost: there is nothing to wait for.
   */
  attachUploader(uploader: AuditUploader): void {
    this.uploader = uploader;
  }

  /** The upload has taken every line up to `seq` (a line it read; its time is `time`). */
  markUploaded(seq: number, time: string): void {
    if (this.uploaded === null || seq > this.uploaded.seq) this.uploaded = { seq, time };
  }

  /** Adds a record to the buffer. Synchronous, no I/O, never throws. */
  record(r: AuditRecord): void {
    try {
      this.recorded++;
      if (this.closed) {
        this.droppedEntries++;
        this.reportDrops('recorded after close');
        return;
      }
      const given = typeof r.time === 'string' ? Date.parse(r.time) : NaN;
      const now = Number.isFinite(given) ? given : this.clock();
      const ms = Number.isFinite(now) ? now : Date.now();
      const entry = toEntry(r);
      const key = `${entry.decision}\t${entry.action}\t${entry.reason ?? ''}`;
      if (this.tally.size < MAX_TALLY_KEYS || this.tally.has(key)) this.tally.set(key, (this.tally.get(key) ?? 0) + 1);
      const tail = this.tail;
      if (tail !== undefined && entry.count === undefined && sameDenial(tail.entry, entry) && ms >= tail.ms && ms - tail.ms < COALESCE_MS) {
        tail.entry.count = (tail.entry.count ?? 1) + 1;
        this.coalesced++;
        return;
      }
      entry.time = new Date(ms).toISOString();
      this.sealTail();
      if (entry.decision === 'deny' && entry.count === undefined) this.tail = { entry, ms };
      else this.emit(entry);
    } catch (err) {
      this.report(err instanceof Error ? err : new Error(String(err)));
    }
  }

  /** Writes everything recorded so far and fsyncs it. Rejects with EW_STORE_IO (and keeps the records) on failure. */
  flush(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.running === undefined) {
      const p: Promise<void> = this.run().finally(() => {
        if (this.running === p) this.running = undefined;
        if (this.bufferedChars >= FLUSH_AT) this.scheduleKick();
      });
      this.running = p;
      return p;
    }
    this.queued ??= this.running
      .then(
        () => undefined,
        () => undefined,
      )
      .then(() => {
        this.queued = undefined;
        return this.flush();
      });
    return this.queued;
  }

  /**
   * flush() for shutdown and signal handlers: writes and fsyncs synchronously, including a write an
   * asynchronous flush has started but not finished. Never throws: failures go to onError.
   */
  flushSync(): void {
    if (this.closed) return;
    try {
      this.sealTail();
      if (this.job !== undefined) this.writeJobSync(this.job);
      for (let job = this.planJob(Infinity); job !== undefined; job = this.planJob(Infinity)) this.writeJobSync(job);
      if (this.unsynced) {
        fsyncSync(this.fd);
        this.unsynced = false;
      }
      // Closed by the next asynchronous flush or close(): one may still be writing to them.
      for (const fd of this.retired) fsyncSync(fd);
      if (this.dirDirty) {
        syncDirSync(this.dir);
        this.dirDirty = false;
      }
    } catch (err) {
      this.report(ioError(this.path, 'cannot write the audit log', err));
    }
  }

  /** Stops the timer, flushes, closes the files. Records after this are dropped (and counted). */
  close(): Promise<void> {
    this.closing ??= (async () => {
      clearInterval(this.timer);
      let failure: unknown;
      try {
        // Records made while the last flush was writing get one more.
        for (let i = 0; i < 3 && this.hasWork(); i++) await this.flush();
      } catch (err) {
        failure = err;
      }
      await this.running?.catch(() => undefined);
      this.closed = true;
      for (const fd of this.retired) await closeFd(fd);
      this.retired = [];
      await closeFd(this.fd);
      if (failure !== undefined) throw failure;
    })();
    return this.closing;
  }

  /**
   * Records so far by decision, action and reason (before coalescing): every deny, and the audited
   * allows. Keys are `decision\taction\treason`. For the metrics endpoint.
   */
  decisionCounts(): ReadonlyMap<string, number> {
    return this.tally;
  }

  stats(): AuditStats {
    return {
      recorded: this.recorded,
      written: this.written,
      droppedBytes: this.droppedBytes,
      coalesced: this.coalesced,
      pendingEntries: this.lines.length - this.head + (this.tail ? 1 : 0) + (this.job && !this.job.done ? this.job.entries : 0),
      droppedEntries: this.droppedEntries,
      rotations: this.rotations,
      lostBeforeUpload: this.lostBeforeUpload,
      lastLoss: this.lastLoss,
      seq: this.seq,
    };
  }

  // ---- buffer ----

  /** Serializes with the next seq and buffers. */
  private emit(entry: AuditEntry): void {
    entry.seq = ++this.seq;
    this.push(serialize(entry));
  }

  private push(line: string): void {
    this.lines.push(line);
    this.bufferedChars += line.length;
    if (this.bufferedChars > this.maxBuffer) this.dropOldest();
    if (this.bufferedChars >= FLUSH_AT) this.scheduleKick();
  }

  private sealTail(): void {
    if (this.tail === undefined) return;
    const { entry } = this.tail;
    this.tail = undefined;
    this.emit(entry);
  }

  /** The disk does not keep up: forget the oldest buffered lines. */
  private dropOldest(): void {
    while (this.bufferedChars > this.maxBuffer && this.head < this.lines.length) {
      this.bufferedChars -= this.lines[this.head]!.length;
      this.lines[this.head] = '';
      this.head++;
      this.droppedEntries++;
    }
    this.compact();
  }

  private compact(): void {
    if (this.head === this.lines.length) {
      this.lines = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.lines.length) {
      this.lines = this.lines.slice(this.head);
      this.head = 0;
    }
  }

  private hasWork(): boolean {
    return this.tail !== undefined || this.head < this.lines.length || this.job !== undefined || this.unsynced || this.retired.length > 0 || this.dirDirty;
  }

  // ---- writing ----

  /** A flush started from record() waits for the next turn of the event loop: record() does no I/O. */
  private scheduleKick(): void {
    if (this.kickScheduled || this.running !== undefined || this.closed) return;
    this.kickScheduled = true;
    setImmediate(() => {
      this.kickScheduled = false;
      if (this.running === undefined) this.kick();
    });
  }

  private kick(): void {
    this.flush().catch((err: unknown) => this.report(err as Error));
  }

  private tick(): void {
    this.reportDrops('the buffer is full (is the disk slow or not writable?)');
    if (this.running === undefined && this.hasWork()) this.kick();
  }

  private async run(): Promise<void> {
    this.sealTail();
    // Only what is buffered now: under a flood each flush still ends, with its fsync.
    let budget = this.lines.length - this.head;
    try {
      // A job an earlier flush failed to write goes first, at its place.
      if (this.job !== undefined) await this.writeJob(this.job);
      for (let job = this.planJob(budget); job !== undefined; job = this.planJob(budget)) {
        budget -= job.entries;
        await this.writeJob(job);
      }
      if (this.unsynced) {
        this.unsynced = false;
        try {
          await fsyncFd(this.fd);
        } catch (err) {
          this.unsynced = true;
          throw err;
        }
      }
      while (this.retired.length > 0) {
        const fd = this.retired[0]!;
        await fsyncFd(fd);
        // No other write can be in flight on it: this is the only asynchronous flush running.
        if (this.retired[0] === fd) this.retired.shift();
        await closeFd(fd);
      }
      if (this.dirDirty) {
        this.dirDirty = false;
        await syncDir(this.dir);
      }
    } catch (err) {
      throw ioError(this.path, 'cannot write the audit log', err);
    } finally {
      this.reportDrops('the buffer is full (is the disk slow or not writable?)');
    }
  }

  /**
   * Takes buffered lines (at most `maxEntries`) into one write at the end of audit.log, rotating
   * first when the next line does not fit in it. Synchronous, so state is consistent between awaits.
   */
  private planJob(maxEntries: number): WriteJob | undefined {
    const parts: Buffer[] = [];
    let bytes = 0;
    while (this.head < this.lines.length && parts.length < maxEntries) {
      const line = this.lines[this.head]!;
      const buf = Buffer.from(line, 'utf8');
      if (this.size + bytes + buf.length > this.fileBound && this.size + bytes > 0) {
        if (parts.length > 0) break; // write these first; the next job starts a new file
        this.rotate(line);
      }
      if (this.size + bytes === 0) this.curFirst = this.markOf(line);
      if (parts.length > 0 && bytes + buf.length > MAX_JOB_BYTES) break;
      parts.push(buf);
      bytes += buf.length;
      this.bufferedChars -= line.length;
      this.lines[this.head] = '';
      this.head++;
    }
    this.compact();
    if (parts.length === 0) return undefined;
    const job: WriteJob = { fd: this.fd, pos: this.size, bytes: Buffer.concat(parts, bytes), entries: parts.length, done: false };
    this.size += bytes;
    this.job = job;
    const loss = this.pendingLoss;
    if (loss !== undefined) {
      this.pendingLoss = undefined;
      this.recordLoss(loss);
    }
    return job;
  }

  /** seq and time of lines[head] (`line`): buffered lines have consecutive seqs ending at this.seq. */
  private markOf(line: string): LineMark | undefined {
    const seq = this.seq - (this.lines.length - this.head) + 1;
    // serialize() writes {"time":"<iso>",... first.
    const end = line.indexOf('"', 9);
    return line.startsWith('{"time":"') && end > 9 ? { seq, time: line.slice(9, end) } : undefined;
  }

  private urge(): void {
    this.writtenSinceUrge = 0;
    try {
      this.uploader?.urge();
    } catch {
      // the uploader's failure must not break writing
    }
  }

  /** The records of audit.log.1 that rotation is about to drop and that were not uploaded. */
  private lossAtRotation(): AuditLoss | undefined {
    if (this.uploader === undefined || this.uploaded === null || this.rotSize === 0 || this.rotFirst === undefined || this.curFirst === undefined) return undefined;
    const toSeq = this.curFirst.seq - 1;
    const fromSeq = Math.max(this.uploaded.seq + 1, this.rotFirst.seq);
    if (toSeq < fromSeq) return undefined;
    const from = fromSeq === this.rotFirst.seq ? this.rotFirst.time : this.uploaded.time;
    return { count: toSeq - fromSeq + 1, fromSeq, toSeq, from, to: this.curFirst.time };
  }

  /**
   * audit.log -> audit.log.1 (the old audit.log.1, the oldest records, is dropped), and a new
   * audit.log whose first line will be `next`. Synchronous: rare (once per maxBytes/2) and only
   * names, no data.
   */
  private rotate(next: string): void {
    const loss = this.lossAtRotation();
    let old = 0;
    try {
      old = statSync(this.rotatedPath).size;
    } catch {
      // no rotated file yet
    }
    try {
      renameSync(this.path, this.rotatedPath);
    } catch (err) {
      // audit.log removed by someone else: its records are gone already; start a new one.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      old = 0;
    }
    let fd: number;
    try {
      fd = openSync(this.path, FS.O_WRONLY | FS.O_CREAT | FS.O_EXCL, 0o600);
    } catch (err) {
      // Put the name back so the state matches the files; the next flush tries again.
      try {
        renameSync(this.rotatedPath, this.path);
      } catch {
        // nothing better to do; the error below is the one to report
      }
      throw err;
    }
    this.droppedBytes += old;
    this.retired.push(this.fd);
    this.fd = fd;
    this.rotSize = this.size;
    this.size = 0;
    this.rotFirst = this.curFirst;
    this.curFirst = this.markOf(next);
    this.dirDirty = true;
    this.rotations++;
    // Recorded once the job being planned is built: a line pushed now could make the buffer drop
    // its oldest lines under planJob's feet.
    if (loss !== undefined) this.pendingLoss = loss;
  }

  /** Counted, reported, and a 'lost' line after the lines already buffered. */
  private recordLoss(loss: AuditLoss): void {
    this.lostBeforeUpload += loss.count;
    this.lastLoss = loss;
    const ms = this.clock();
    this.emit(lossEntry(new Date(Number.isFinite(ms) ? ms : Date.now()).toISOString(), loss));
    try {
      this.onLoss?.(loss);
    } catch {
      // a failing handler must not break writing
    }
  }

  private async writeJob(job: WriteJob): Promise<void> {
    let off = 0;
    while (off < job.bytes.length && !job.done) {
      off += await writeAt(job.fd, job.bytes, off, job.bytes.length - off, job.pos + off);
    }
    this.finishJob(job);
  }

  private writeJobSync(job: WriteJob): void {
    let off = 0;
    while (off < job.bytes.length && !job.done) off += writeSync(job.fd, job.bytes, off, job.bytes.length - off, job.pos + off);
    this.finishJob(job);
  }

  private finishJob(job: WriteJob): void {
    if (this.job === job) this.job = undefined;
    if (job.done) return;
    job.done = true;
    this.written += job.entries;
    if (job.fd === this.fd) this.unsynced = true;
    this.writtenSinceUrge += job.bytes.length;
    if (this.uploader !== undefined && this.writtenSinceUrge >= this.uploader.everyBytes) this.urge();
  }

  // ---- reporting ----

  private reportDrops(why: string): void {
    const n = this.droppedEntries - this.reportedDrops;
    if (n <= 0) return;
    this.reportedDrops = this.droppedEntries;
    this.report(new EwError('EW_STORE_IO', `${n} audit record(s) dropped: ${why}`, { where: this.path }));
  }

  private report(err: Error): void {
    const now = Date.now();
    const last = this.lastReport;
    if (last !== undefined && last.message === err.message && now - last.at < REPEAT_REPORT_MS) return;
    this.lastReport = { message: err.message, at: now };
    try {
      this.onError(err);
    } catch {
      // a failing error handler must not break recording
    }
  }
}

