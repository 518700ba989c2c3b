// The broker's session state on disk: persistent sessions (their owner and subscriptions), the
// messages queued for them with each action's authority, and retained messages survive an agent
// restart, a SIGKILL and (up to the last `syncIntervalMs`) a power cut.
//
// ## On disk (in `dir`, which the journal owns)
//
// - `state.cbor`, written atomically (writeFileAtomic): CBOR `{format: 1, generation: G, data}`,
//   the whole state at the last compaction (`data`: the session store's state, CBOR in a byte
//   string, opaque here).
// - `journal.log`: an 12-byte header, `EWSESS01` and the generation G (u32 BE), then the changes
//   made since that state, appended only:
//
//       offset size
//       0      4    body length (u32 BE)
//       4      4    CRC-32 of the body
//       8      n    body: one change, CBOR
//
// A journal whose generation is not the state's is stale (a compaction wrote the state, then
// stopped before it replaced the journal) and is ignored: its changes are in the state already.
//
// ## Guarantees
//
// - append() never throws and does no I/O: changes are buffered and written together (one
//   write(2), then fdatasync) every `syncIntervalMs`, and at flush() and close().
// - open() reads the state, then the journal up to the first record that is not whole and intact
//   (a torn tail after a power cut), truncates it there, and reports each problem through
//   `onProblem`. A damaged state file is set aside (`state.cbor.damaged`) and the sessions start
//   empty: a lost queued action is never delivered, which is the safe side.
// - compact() writes the state given, then a new empty journal; the journal stays within
//   max(compactBytes, 2 × the last state's size).
// - A failed write is reported once per kind and the agent runs on: the state in memory stays right,
//   only its copy on disk falls behind.
import { closeSync, fdatasync, openSync, writeSync, ftruncateSync, fstatSync, readSync } from 'node:fs';
import { mkdir, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { Encoder } from 'cbor-x';
import { EwError } from '../errors.js';
import { removeStaleTempFiles, writeFileAtomic } from './atomic-file.js';
import { crc32 } from './crc32.js';

export const SESSION_STATE_FILE = 'state.cbor';
export const SESSION_JOURNAL_FILE = 'journal.log';
const MAGIC = Buffer.from('EWSESS01', 'latin1');
const HEADER_BYTES = 12;
const FRAME_BYTES = 8;
/** A record larger than this is not one of ours (a packet is at most 256 MiB; ours are bounded by the broker's packet limit). */
const MAX_RECORD_BYTES = 300 * 1024 * 1024;

export interface SessionJournalOptions {
  /** The journal's own directory (created, mode 0700). One process at a time. */
  readonly dir: string;
  /** How long changes wait to be written and synced together, ms (0: at the next turn of the event loop). */
  readonly syncIntervalMs: number;
  /** Compact once the journal exceeds max(this, 2 × the last state). Default 4 MiB. */
  readonly compactBytes?: number;
  readonly onProblem?: (err: EwError) => void;
}

export interface OpenedJournal {
  readonly journal: SessionJournal;
  /** The state of the last compaction, or null (none, or damaged). */
  readonly state: unknown;
  /** The changes made since, in order. */
  readonly changes: unknown[];
}

const encoder = new Encoder({ useRecords: false, mapsAsObjects: true, structuredClone: false });

export class SessionJournal {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private timer: NodeJS.Timeout | null = null;
  /** Serializes writes, syncs and compactions. */
  private chain: Promise<void> = Promise.resolve();
  private reported = new Set<string>();
  private closed = false;
  /** A compaction is queued or running: no other is asked for meanwhile. */
  private compacting = false;

  private constructor(
    private readonly opts: SessionJournalOptions,
    private fd: number,
    private generation: number,
    private journalBytes: number,
    private stateBytes: number,
  ) {}

  static async open(opts: SessionJournalOptions): Promise<OpenedJournal> {
    const report = (err: EwError) => opts.onProblem?.(err);
    await mkdir(opts.dir, { recursive: true, mode: 0o700 });
    await removeStaleTempFiles(opts.dir);
    const statePath = join(opts.dir, SESSION_STATE_FILE);
    const journalPath = join(opts.dir, SESSION_JOURNAL_FILE);
    let state: unknown = null;
    let generation = 0;
    let stateBytes = 0;
    let bytes: Buffer | null = null;
    try {
      bytes = await readFile(statePath);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') report(ioError(statePath, 'read the session state', err));
    }
    if (bytes !== null) {
      try {
        const doc = encoder.decode(bytes) as { format?: unknown; generation?: unknown; data?: unknown };
        if (doc?.format !== 1 || typeof doc.generation !== 'number' || !(doc.data instanceof Uint8Array)) throw new Error('not a session state (format 1)');
        state = encoder.decode(doc.data);
        generation = doc.generation;
        stateBytes = bytes.length;
      } catch (err) {
        report(new EwError('EW_STORE_IO', `session state is damaged (${(err as Error).message}): set aside, the sessions start empty`, { where: statePath }));
        await rename(statePath, `${statePath}.damaged`).catch(() => undefined);
        generation = Date.now() % 0x7fffffff; // the old journal, if any, is not this state's
      }
    }
    const changes: unknown[] = [];
    let fd: number;
    let journalBytes = HEADER_BYTES;
    try {
      fd = openSync(journalPath, 'a+', 0o600);
    } catch (err) {
      throw ioError(journalPath, 'open the session journal', err);
    }
    try {
      const size = fstatSync(fd).size;
      const header = Buffer.alloc(HEADER_BYTES);
      const valid = size >= HEADER_BYTES && readSync(fd, header, 0, HEADER_BYTES, 0) === HEADER_BYTES && header.subarray(0, 8).equals(MAGIC);
      if (valid && header.readUInt32BE(8) === generation) {
        const body = Buffer.alloc(size - HEADER_BYTES);
        let got = 0;
        while (got < body.length) {
          const n = readSync(fd, body, got, body.length - got, HEADER_BYTES + got);
          if (n === 0) break;
          got += n;
        }
        let off = 0;
        while (off + FRAME_BYTES <= got) {
          const len = body.readUInt32BE(off);
          if (len > MAX_RECORD_BYTES || off + FRAME_BYTES + len > got) break;
          const rec = body.subarray(off + FRAME_BYTES, off + FRAME_BYTES + len);
          if (crc32(rec) !== body.readUInt32BE(off + 4)) break;
          try {
            changes.push(encoder.decode(rec));
          } catch {
            break;
          }
          off += FRAME_BYTES + len;
        }
        journalBytes = HEADER_BYTES + off;
        if (journalBytes < size) {
          report(new EwError('EW_STORE_IO', `session journal: ${size - journalBytes} bytes after the last whole record (a write cut short) are dropped`, { where: journalPath }));
          ftruncateSync(fd, journalBytes);
        }
      } else {
        if (size > 0 && !valid) report(new EwError('EW_STORE_IO', 'session journal has no valid header: started afresh', { where: journalPath }));
        ftruncateSync(fd, 0);
        writeSync(fd, header0(generation), 0, HEADER_BYTES, 0);
      }
    } catch (err) {
      closeSync(fd);
      throw ioError(journalPath, 'read the session journal', err);
    }
    return { journal: new SessionJournal(opts, fd, generation, journalBytes, stateBytes), state, changes };
  }

  /** Buffers one change (written and synced within syncIntervalMs). Never throws. */
  append(change: unknown): void {
    if (this.closed) return;
    let body: Buffer;
    try {
      body = encoder.encode(change);
    } catch (err) {
      this.reportOnce('encode', new EwError('EW_STORE_IO', `session change not encodable: ${(err as Error).message}`, { where: this.opts.dir }));
      return;
    }
    const frame = Buffer.allocUnsafe(FRAME_BYTES + body.length);
    frame.writeUInt32BE(body.length, 0);
    frame.writeUInt32BE(crc32(body), 4);
    body.copy(frame, FRAME_BYTES);
    this.pending.push(frame);
    this.pendingBytes += frame.length;
    this.timer ??= setTimeout(() => void this.flush(), this.opts.syncIntervalMs);
  }

  /** Whether the journal has grown past its bound (the store then calls compact()). */
  get wantsCompaction(): boolean {
    return !this.compacting && this.journalBytes + this.pendingBytes > Math.max(this.opts.compactBytes ?? 4 * 1024 * 1024, 2 * this.stateBytes);
  }

  /** Writes and syncs what was appended. Resolves when it is on disk; never rejects. */
  flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const batch = this.pending;
    const bytes = this.pendingBytes;
    this.pending = [];
    this.pendingBytes = 0;
    this.chain = this.chain.then(() => (batch.length === 0 ? undefined : this.write(batch, bytes)));
    return this.chain;
  }

  private async write(batch: Buffer[], bytes: number): Promise<void> {
    const where = join(this.opts.dir, SESSION_JOURNAL_FILE);
    try {
      const data = batch.length === 1 ? batch[0]! : Buffer.concat(batch, bytes);
      let off = 0;
      while (off < data.length) off += writeSync(this.fd, data, off, data.length - off);
      this.journalBytes += data.length;
      await new Promise<void>((resolve, reject) => fdatasync(this.fd, (err) => (err ? reject(err) : resolve())));
    } catch (err) {
      this.reportOnce('write', ioError(where, 'append to the session journal', err));
    }
  }

  /**
   * Replaces state and journal: `data` is the whole state now, including every change appended so
   * far (those still buffered are dropped: they are in it). Resolves when both are on disk.
   */
  compact(data: unknown): Promise<void> {
    // Encoded now: the state object shares mutable parts with the store.
    let encoded: Buffer;
    try {
      encoded = encoder.encode(data);
    } catch (err) {
      this.reportOnce('encode', new EwError('EW_STORE_IO', `session state not encodable: ${(err as Error).message}`, { where: this.opts.dir }));
      return this.chain;
    }
    this.pending = [];
    this.pendingBytes = 0;
    this.compacting = true;
    this.chain = this.chain.then(async () => {
      const generation = (this.generation + 1) >>> 0;
      const bytes = encoder.encode({ format: 1, generation, data: encoded });
      const statePath = join(this.opts.dir, SESSION_STATE_FILE);
      const journalPath = join(this.opts.dir, SESSION_JOURNAL_FILE);
      try {
        await writeFileAtomic(statePath, bytes, { mode: 0o600 });
        await writeFileAtomic(journalPath, header0(generation), { mode: 0o600 });
        const fd = openSync(journalPath, 'a', 0o600);
        closeSync(this.fd);
        this.fd = fd;
        this.generation = generation;
        this.journalBytes = HEADER_BYTES;
        this.stateBytes = bytes.length;
      } catch (err) {
        this.reportOnce('compact', ioError(statePath, 'compact the session journal', err));
      } finally {
        this.compacting = false;
      }
    });
    return this.chain;
  }

  /** Compacts to `data` (or flushes) and closes. */
  async close(data?: unknown): Promise<void> {
    if (this.closed) return;
    if (data !== undefined) await this.compact(data);
    else await this.flush();
    await this.chain;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    try {
      closeSync(this.fd);
    } catch {
      // already closed
    }
  }

  stats(): { journalBytes: number; stateBytes: number; pendingBytes: number } {
    return { journalBytes: this.journalBytes, stateBytes: this.stateBytes, pendingBytes: this.pendingBytes };
  }

  private reportOnce(kind: string, err: EwError): void {
    if (this.reported.has(kind)) return;
    this.reported.add(kind);
    this.opts.onProblem?.(err);
  }
}

function header0(generation: number): Buffer {
  const h = Buffer.alloc(HEADER_BYTES);
  MAGIC.copy(h, 0);
  h.writeUInt32BE(generation >>> 0, 8);
  return h;
}

function ioError(where: string, step: string, err: unknown): EwError {
  if (err instanceof EwError) return err;
  const e = err as NodeJS.ErrnoException;
  return new EwError('EW_STORE_IO', `cannot ${step}: ${e?.code ?? e?.message ?? String(err)}`, { where, cause: err });
}
