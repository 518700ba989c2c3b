// Following the audit log as the agent writes it (`edgewarden audit tail --follow`): every complete
// line added to audit.log, across rotations, until stopped.
//
// A poll every intervalMs, robust on every file system; where fs.watch works (inotify), a change in
// the directory starts the next poll at once, so a new audit.log is opened as soon as it is made. The file followed is held open and known by its device and inode, and read
// from the offset reached; only complete lines (ending in a newline) are handed over, so a line the
// agent is still writing is read whole at the next poll. When audit.log names another file, the
// agent has rotated (audit.log -> audit.log.1, a new audit.log): the file held is read to its end —
// the writer rotates only after its last write to it — then, if audit.log.1 is neither the file held
// nor the new one (two rotations within one poll), that file is read whole, and the new audit.log is
// followed from its start. Nothing is read twice and nothing is skipped, short of three rotations
// within one poll (audit.maxBytes written in intervalMs). A gap in the seq of the lines read (such
// rotations, or records the agent could not write) is said (onNotice).
import { watch, type FSWatcher } from 'node:fs';
import { stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { AuditEntry } from './audit-entry.js';
import { AUDIT_FILE, AUDIT_ROTATED_FILE, ioError, MAX_LINE_BYTES, openForRead, parseEntry, READ_CHUNK, type FollowStart, type OpenFile } from './audit-read.js';

export const DEFAULT_FOLLOW_INTERVAL_MS = 250;
const NEWLINE = 0x0a;

export interface FollowOptions {
  /** The audit directory (<stateDir>/audit). */
  readonly dir: string;
  /** Where a read of the newest entries stopped (readAuditForFollow); the follower takes its file. */
  readonly start: FollowStart;
  /** Each new entry, in the order written. */
  readonly onEntry: (e: AuditEntry) => void;
  /** A complete line that is not an audit entry (a torn write after a power cut). */
  readonly onCorrupt?: (where: string) => void;
  /** Something the reader should know that is no entry (the log truncated by hand, ...). */
  readonly onNotice?: (message: string) => void;
  /** Ends following (resolves followAudit) when aborted. */
  readonly signal: AbortSignal;
  /** Asked after each poll: true ends following (stdout's reader has gone). */
  readonly done?: () => boolean;
  readonly intervalMs?: number;
}

/** A file being read forwards: the bytes read so far, and the start of a line not yet complete. */
interface Reading {
  readonly path: string;
  readonly handle: FileHandle;
  readonly dev: number;
  readonly ino: number;
  offset: number;
  partial: Buffer[];
  partialBytes: number;
  /** The line being read is longer than MAX_LINE_BYTES: dropped up to its newline. */
  oversized: boolean;
}

function reading(f: OpenFile, offset: number): Reading {
  return { path: f.path, handle: f.handle, dev: f.dev, ino: f.ino, offset, partial: [], partialBytes: 0, oversized: false };
}

const sameFile = (a: { dev: number; ino: number }, b: { dev: number; ino: number }) => a.dev === b.dev && a.ino === b.ino;

/**
 * Follows <dir>/audit.log from `start` until `signal` aborts or `done()` holds. Resolves when
 * stopped, with every file it opened closed; rejects with EW_STORE_IO (naming the file) when a file
 * cannot be read.
 */
export async function followAudit(opts: FollowOptions): Promise<void> {
  const f = new Follower(opts);
  try {
    await f.run();
  } finally {
    await f.close();
  }
}

class Follower {
  private cur: Reading | undefined;
  private readonly buf = Buffer.alloc(READ_CHUNK);
  private readonly currentPath: string;
  private readonly rotatedPath: string;
  private lastSeq: number | undefined;
  private watcher: FSWatcher | undefined;
  /** Ends the current wait between polls early (a change in the directory). */
  private wake: (() => void) | undefined;
  private changed = false;

  constructor(private readonly opts: FollowOptions) {
    this.currentPath = join(opts.dir, AUDIT_FILE);
    this.rotatedPath = join(opts.dir, AUDIT_ROTATED_FILE);
    if (opts.start.file !== undefined) this.cur = reading(opts.start.file, opts.start.offset);
    this.lastSeq = opts.start.seq;
  }

  async run(): Promise<void> {
    const { signal } = this.opts;
    const interval = this.opts.intervalMs ?? DEFAULT_FOLLOW_INTERVAL_MS;
    const onAbort = (): void => this.wake?.();
    signal.addEventListener('abort', onAbort);
    this.startWatching();
    try {
      while (!signal.aborted) {
        this.changed = false;
        await this.poll();
        if (this.opts.done?.() === true) return;
        if (this.changed || signal.aborted) continue; // a change during the poll: look again now
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => this.wake?.(), interval);
          this.wake = () => {
            clearTimeout(timer);
            this.wake = undefined;
            resolve();
          };
        });
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  /** Best effort: without fs.watch (some file systems, too many watches) the poll does it all. */
  private startWatching(): void {
    try {
      this.watcher = watch(this.opts.dir, { persistent: false }, () => {
        this.changed = true;
        this.wake?.();
      });
      this.watcher.on('error', () => {
        this.watcher?.close();
        this.watcher = undefined;
      });
    } catch {
      this.watcher = undefined;
    }
  }

  async close(): Promise<void> {
    this.watcher?.close();
    this.watcher = undefined;
    await this.cur?.handle.close().catch(() => undefined);
    this.cur = undefined;
  }

  private async poll(): Promise<void> {
    if (this.cur !== undefined) await this.readToEnd(this.cur);
    const now = await statOrUndefined(this.currentPath);
    if (now === undefined) return; // between the rename and the new file, or no log yet
    if (this.cur !== undefined && sameFile(now, this.cur)) {
      await this.checkTruncated(this.cur);
      return;
    }
    // audit.log is another file: rotated (or, with none held, created).
    const next = await openForRead(this.currentPath);
    if (next === undefined) return;
    const old = this.cur;
    if (old !== undefined && sameFile(next, old)) {
      // rotated back between the stat and the open: nothing changed
      await next.handle.close();
      return;
    }
    if (old !== undefined) {
      await this.readToEnd(old); // what the writer put in it before the rotation
      this.endOf(old);
      await old.handle.close().catch(() => undefined);
    }
    this.cur = reading(next, 0);
    await this.readBetween(old, next);
    await this.readToEnd(this.cur);
  }

  /**
   * audit.log.1 when it is neither the file held before nor the new audit.log: a file made and
   * rotated away within one poll, read whole. With no file held before (the log did not exist
   * when following started), an audit.log.1 already there is such a file too.
   */
  private async readBetween(old: Reading | undefined, next: OpenFile): Promise<void> {
    const rotated = await openForRead(this.rotatedPath);
    if (rotated === undefined) return;
    if ((old !== undefined && sameFile(rotated, old)) || sameFile(rotated, next)) {
      await rotated.handle.close();
      return;
    }
    const r = reading(rotated, 0);
    try {
      await this.readToEnd(r);
      this.endOf(r);
    } finally {
      await r.handle.close().catch(() => undefined);
    }
  }

  /** The file's lines from r.offset to its end, each complete one handed over. */
  private async readToEnd(r: Reading): Promise<void> {
    for (;;) {
      let bytesRead: number;
      try {
        ({ bytesRead } = await r.handle.read(this.buf, 0, this.buf.length, r.offset));
      } catch (err) {
        throw ioError(r.path, 'cannot read the audit log', err);
      }
      if (bytesRead === 0) return;
      r.offset += bytesRead;
      this.split(r, this.buf.subarray(0, bytesRead));
    }
  }

  private split(r: Reading, chunk: Buffer): void {
    let start = 0;
    for (let i = chunk.indexOf(NEWLINE); i >= 0; i = chunk.indexOf(NEWLINE, start)) {
      const piece = chunk.subarray(start, i);
      start = i + 1;
      if (r.oversized) {
        r.oversized = false;
        this.corrupt(r);
        continue;
      }
      const line = r.partialBytes > 0 ? Buffer.concat([...r.partial, piece]) : piece;
      r.partial = [];
      r.partialBytes = 0;
      this.line(r, line);
    }
    if (start < chunk.length && !r.oversized) {
      const rest = chunk.subarray(start);
      if (r.partialBytes + rest.length > MAX_LINE_BYTES) {
        r.oversized = true;
        r.partial = [];
        r.partialBytes = 0;
      } else {
        r.partial.push(Buffer.from(rest)); // the read buffer is reused
        r.partialBytes += rest.length;
      }
    }
  }

  private line(r: Reading, line: Buffer): void {
    if (line.length === 0) return;
    const entry = parseEntry(line);
    if (entry === undefined) {
      this.corrupt(r);
      return;
    }
    if (entry.seq !== undefined) {
      if (this.lastSeq !== undefined && entry.seq > this.lastSeq + 1) {
        const [from, to] = [this.lastSeq + 1, entry.seq - 1];
        this.opts.onNotice?.(`${to - from + 1} record(s) not read (seq ${from}-${to}): lost by the agent (see \`edgewarden status\`) or rotated away between two reads`);
      }
      this.lastSeq = entry.seq;
    }
    this.opts.onEntry(entry);
  }

  private corrupt(r: Reading): void {
    this.opts.onCorrupt?.(r.path);
  }

  /** A file that will not grow again: an unfinished last line is a torn write. */
  private endOf(r: Reading): void {
    if (r.partialBytes > 0 || r.oversized) this.corrupt(r);
    r.partial = [];
    r.partialBytes = 0;
    r.oversized = false;
  }

  /** audit.log made shorter in place (by hand: the agent never does): read again from its start. */
  private async checkTruncated(r: Reading): Promise<void> {
    let size: number;
    try {
      size = (await r.handle.stat()).size;
    } catch (err) {
      throw ioError(r.path, 'cannot read the audit log', err);
    }
    if (size >= r.offset) return;
    this.opts.onNotice?.(`${r.path} was truncated (from ${r.offset} to ${size} bytes): following it from its start`);
    r.offset = 0;
    r.partial = [];
    r.partialBytes = 0;
    r.oversized = false;
    await this.readToEnd(r);
  }
}

async function statOrUndefined(path: string): Promise<{ dev: number; ino: number } | undefined> {
  try {
    const st = await stat(path);
    return { dev: st.dev, ino: st.ino };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw ioError(path, 'cannot read the audit log', err);
  }
}
