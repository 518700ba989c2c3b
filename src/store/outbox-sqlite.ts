// The store-and-forward outbox on node:sqlite: the measured alternative to the segment log of
// outbox.ts (issue 13), behind the same interface (OutboxOptions, append/peek/ack/flush/compact/
// stats/close, the same promises). The agent uses the log: this one is kept as the measured
// alternative, run by the bench side by side with the log (bench/outbox.ts) and by the queue's
// tests; nothing in the agent imports it, so neither the executable nor the .deb carries it. The
// figures and the reasons are in docs/cloud.md, "Why the queue is a segment log, not node:sqlite".
//
// node:sqlite (DatabaseSync) is built into Node 24: no native addon, so it works inside the
// single-file executable. Every call is synchronous, on the main thread.
//
// ## On disk (all in `dir`, which the outbox owns)
//
// - `outbox.db` (with SQLite's `outbox.db-wal` and `outbox.db-shm` while open), journal_mode=WAL,
//   user_version 1:
//     records(seq INTEGER PRIMARY KEY, at, flags, size, topic TEXT, payload BLOB)
//     meta(key TEXT PRIMARY KEY, value INTEGER)   -- 'dropped', 'lastSeq'
//   `size` is the record's size as the log counts it (25 + topic + payload bytes): maxBytes bounds
//   their sum, so the same option means the same number of messages on both. A record leaves the
//   table when its acknowledgement is persisted (a DELETE), or when it is dropped for maxBytes.
//   `lastSeq` is written with every deletion, so seqs are not used again when the table is empty.
//
// ## Durability: one commit per append, one fsync per group
//
// Each append is its own autocommit INSERT with synchronous=NORMAL: SQLite write(2)s the WAL frames
// before append returns, so a SIGKILL of the agent loses nothing (as the log's one write(2)). NORMAL
// does not fsync at commit, so a power cut could lose those commits: the group commit fsyncs the
// -wal file itself (fs.fsync on its own descriptor, off the main thread), once per syncIntervalMs
// for everything appended meanwhile, and append's promise resolves only after that fsync. A WAL
// whose frames are fsynced is what synchronous=FULL gives at each commit; SQLite's checkpoints
// (every ~1000 WAL pages) fsync the WAL and then the database before the WAL is reused.
//
// The other ways were measured (bench/outbox.ts) and refused: one transaction per group with
// synchronous=FULL makes appends of the current group vanish on SIGKILL (a durability loss against
// the log), and its fsync runs inside COMMIT on the main thread, blocking the event loop (the broker)
// for a whole fsync every group; synchronous=FULL per append is one fsync per message.
//
// ## Guarantees (as outbox.ts, with these differences)
//
// - append, peek (durable records only), ack (any order, in memory at once, persisted — deleted —
//   at most ackSyncIntervalMs later, at compact() and close()), maxBytes (oldest dropped and
//   counted in `dropped`, acknowledged records first at no loss): as the log.
// - Damage: SQLite checks its pages, not each record. A database that fails to open or
//   `PRAGMA quick_check` is set aside as `outbox.db.corrupt` (with its -wal), the records a scan in
//   seq order can still read are copied into a fresh database, and the rest is reported lost
//   through onProblem and counted in `dropped` (when the last seq is known). Damage found while
//   reading (peek) does the same at once. A torn WAL tail (a power cut mid-write) is SQLite's own
//   recovery: frames after the last valid commit are ignored, and none of them was fsynced, so no
//   record that peek() could return is lost.
// - stats().segments is 1 (one database); stats().bytes is the sum of the records' sizes, not the
//   file's size (SQLite's pages and free list add to it; compact() gives free pages back).
import { closeSync, existsSync, fsync as fsyncCb, fsyncSync, openSync, renameSync, rmSync } from 'node:fs';
import { mkdir, open as openAsync } from 'node:fs/promises';
import { join } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { EwError } from '../errors.js';
import { RECORD_OVERHEAD_BYTES, resolveLimits, type AppendOptions, type OutboxLimits, type OutboxOptions, type OutboxQos, type OutboxRecord, type OutboxStats } from './outbox.js';
import { addRange, countIn, holds, type SeqRange } from './seq-ranges.js';

/** The database file in the outbox directory. */
export const SQLITE_OUTBOX_FILE = 'outbox.db';
const FORMAT = 1;
/** Salvage of a damaged database: how far past the damage each search for readable rows goes, seqs. */
const SALVAGE_STEP = 16;
const MAX_U48 = 2 ** 48 - 1;

function errText(err: unknown): string {
  const e = err as NodeJS.ErrnoException & { errstr?: string };
  return e?.code && e.code !== 'ERR_SQLITE_ERROR' ? e.code : ((e as Error)?.message ?? String(err));
}

function ioError(where: string, step: string, err: unknown): EwError {
  if (err instanceof EwError) return err;
  return new EwError('EW_STORE_IO', `cannot ${step}: ${errText(err)}`, { where, cause: err });
}

/** fsync of a directory; a filesystem that refuses it has nothing better to offer. */
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

interface Waiter {
  readonly seq: number;
  readonly resolve: (seq: number) => void;
  readonly reject: (err: unknown) => void;
}

/** The prepared statements of the hot paths, made once per database. */
interface Statements {
  readonly insert: StatementSync;
  readonly read: StatementSync;
  readonly deleteThrough: StatementSync;
  readonly deleteOne: StatementSync;
  readonly sizeThrough: StatementSync;
  readonly oldest: StatementSync;
  readonly setMeta: StatementSync;
}

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY, at INTEGER NOT NULL, flags INTEGER NOT NULL, size INTEGER NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL);
  CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
`;

/** Opens `path` as an outbox database (created when absent). Throws when it is not one or is damaged. */
function openDatabase(path: string, check: boolean): DatabaseSync {
  const db = new DatabaseSync(path);
  try {
    // auto_vacuum must be set before the first table: compact() gives free pages back with it.
    db.exec('PRAGMA auto_vacuum = INCREMENTAL');
    const mode = (db.prepare('PRAGMA journal_mode = WAL').get() as { journal_mode: string }).journal_mode;
    if (mode !== 'wal') throw new Error(`journal_mode is ${mode}, not wal`);
    db.exec('PRAGMA synchronous = NORMAL');
    const version = (db.prepare('PRAGMA user_version').get() as { user_version: number }).user_version;
    if (version === 0) {
      db.exec(SCHEMA + `PRAGMA user_version = ${FORMAT};`);
    } else if (version !== FORMAT) {
      throw new Error(`user_version ${version} is not outbox format ${FORMAT}`);
    }
    if (check) {
      const rows = db.prepare('PRAGMA quick_check(5)').all() as Array<{ quick_check: string }>;
      if (rows.length !== 1 || rows[0]!.quick_check !== 'ok') throw new Error(`quick_check: ${rows.map((r) => r.quick_check).join('; ')}`);
    }
    return db;
  } catch (err) {
    try {
      db.close();
    } catch {
      // failing already
    }
    throw err;
  }
}

function prepare(db: DatabaseSync): Statements {
  const read = db.prepare('SELECT seq, at, flags, topic, payload FROM records WHERE seq > ? AND seq <= ? ORDER BY seq');
  read.setReturnArrays(true);
  const oldest = db.prepare('SELECT seq, size FROM records WHERE seq > ? ORDER BY seq');
  oldest.setReturnArrays(true);
  return {
    insert: db.prepare('INSERT INTO records (seq, at, flags, size, topic, payload) VALUES (?, ?, ?, ?, ?, ?)'),
    read,
    deleteThrough: db.prepare('DELETE FROM records WHERE seq <= ?'),
    deleteOne: db.prepare('DELETE FROM records WHERE seq = ? RETURNING size'),
    sizeThrough: db.prepare('SELECT coalesce(sum(size), 0) AS n FROM records WHERE seq <= ?'),
    oldest,
    setMeta: db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value'),
  };
}

export class SqliteOutbox {
  readonly dir: string;
  private readonly lim: OutboxLimits;
  private readonly report: (msg: string) => void;
  private readonly clock: () => number;
  private readonly dbPath: string;
  private db!: DatabaseSync;
  private st!: Statements;
  /** Our own descriptor of the -wal file: the group commit fsyncs it (see the top). */
  private walFd: number | undefined;

  private nextSeq = 1;
  /** Every seq <= floor is acknowledged, dropped or never existed. */
  private floor = 0;
  private readonly ackedAbove = new Set<number>();
  /** Acknowledged out of order and not yet deleted. */
  private pendingDeletes: number[] = [];
  /** Seqs above floor that no row has, [from, to] inclusive, ascending. */
  private gaps: SeqRange[] = [];
  private durableSeq = 0;
  private dropped = 0;
  /** Sum of `size` of the rows in the table. */
  private liveBytes = 0;
  private persistedFloor = 0;
  private persistedDropped = 0;

  private waiters: Waiter[] = [];
  private waiterHead = 0;
  private flushTimer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private flushAgain = false;
  private stateTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;
  private oldestCache: { floor: number; at: number } | undefined;

  private constructor(opts: OutboxOptions, lim: OutboxLimits) {
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
    this.dbPath = join(opts.dir, SQLITE_OUTBOX_FILE);
  }

  /**
   * Opens (or creates) the outbox database in `opts.dir`. A damaged database is set aside and what
   * can be read of it is kept (reported). Rejects only when the directory or a fresh database cannot
   * be created (EW_STORE_IO), or an option is out of range (RangeError).
   */
  static async open(opts: OutboxOptions): Promise<SqliteOutbox> {
    const ob = new SqliteOutbox(opts, resolveLimits(opts));
    await ob.load();
    return ob;
  }

  get limits(): OutboxLimits {
    return { ...this.lim };
  }

  // --- open ----------------------------------------------------------------------------------------

  private async load(): Promise<void> {
    try {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw ioError(this.dir, 'create the outbox directory', err);
    }
    let db: DatabaseSync | undefined;
    try {
      db = openDatabase(this.dbPath, true);
    } catch (err) {
      db = this.replaceDamaged(`cannot be opened or fails its check (${errText(err)})`);
    }
    this.attach(db);
    // What a SIGKILL left in the page cache becomes durable now: from here on every record is.
    this.syncFilesNow();
    try {
      await syncDir(this.dir);
    } catch (err) {
      this.report(`cannot fsync the directory (${errText(err)})`);
    }
    this.durableSeq = this.nextSeq - 1;
    // A smaller maxBytes than last time: drop the oldest now.
    if (this.liveBytes > this.lim.maxBytes) this.makeRoom(0);
  }

  /** Takes `db` as the queue's database: statements, the in-memory state from its rows. */
  private attach(db: DatabaseSync): void {
    this.db = db;
    this.st = prepare(db);
    const meta = new Map((db.prepare('SELECT key, value FROM meta').all() as Array<{ key: string; value: number }>).map((r) => [r.key, r.value]));
    const agg = db.prepare('SELECT min(seq) AS lo, max(seq) AS hi, count(*) AS n, coalesce(sum(size), 0) AS bytes FROM records').get() as { lo: number | null; hi: number | null; n: number; bytes: number };
    const lastSeq = Math.max(meta.get('lastSeq') ?? 0, agg.hi ?? 0);
    this.dropped = this.persistedDropped = meta.get('dropped') ?? 0;
    this.nextSeq = lastSeq + 1;
    this.floor = this.persistedFloor = agg.lo === null ? lastSeq : agg.lo - 1;
    this.liveBytes = agg.bytes;
    this.gaps = [];
    // Rows deleted out of order (persisted acknowledgements) or never written leave holes: gaps.
    if (agg.n > 0 && agg.hi! - agg.lo! + 1 > agg.n) {
      const holes = db.prepare('SELECT seq + 1 AS a, nxt - 1 AS b FROM (SELECT seq, lead(seq) OVER (ORDER BY seq) AS nxt FROM records) WHERE nxt > seq + 1').all() as Array<{ a: number; b: number }>;
      for (const h of holes) addRange(this.gaps, h.a, h.b);
    }
    const walPath = `${this.dbPath}-wal`;
    try {
      this.walFd = openSync(walPath, 'r');
    } catch (err) {
      this.walFd = undefined;
      this.report(`cannot open ${walPath} to fsync it (${errText(err)}); appends will fail until it can be`);
    }
  }

  /** fsync of the database and its WAL, synchronously (open only). */
  private syncFilesNow(): void {
    for (const p of [this.dbPath, `${this.dbPath}-wal`]) {
      let fd: number | undefined;
      try {
        fd = openSync(p, 'r');
        fsyncSync(fd);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.report(`cannot fsync ${p} (${errText(err)})`);
      } finally {
        if (fd !== undefined) closeSync(fd);
      }
    }
  }

  /**
   * The database at dbPath is damaged: copies the records a scan in seq order can read into a fresh
   * database, sets the damaged one aside as `.corrupt`, reports what was lost. Returns the fresh
   * database, open. Throws EW_STORE_IO only when no fresh database can be made.
   */
  private replaceDamaged(why: string): DatabaseSync {
    const fresh = `${this.dbPath}.new`;
    for (const p of [fresh, `${fresh}-wal`, `${fresh}-shm`]) rmSync(p, { force: true });
    let out: DatabaseSync;
    try {
      out = openDatabase(fresh, false);
    } catch (err) {
      this.report(`${this.dbPath} ${why}, and no fresh database can be made (${errText(err)})`);
      throw ioError(fresh, 'create the outbox database', err);
    }
    let kept = 0;
    let first = 0;
    let last = 0;
    let lastSeq: number | undefined;
    let dropped = 0;
    let stopped = '';
    /** Stretches of seqs skipped over damage between records read: their records are lost. */
    const skipped: SeqRange[] = [];
    let old: DatabaseSync | undefined;
    try {
      old = new DatabaseSync(this.dbPath);
      try {
        const meta = old.prepare('SELECT key, value FROM meta').all() as Array<{ key: string; value: number }>;
        for (const r of meta) {
          if (r.key === 'lastSeq' && Number.isSafeInteger(r.value)) lastSeq = r.value;
          if (r.key === 'dropped' && Number.isSafeInteger(r.value) && r.value >= 0) dropped = r.value;
        }
      } catch {
        // meta unreadable: the lost records cannot be counted
      }
      let hi = lastSeq ?? 0;
      try {
        hi = Math.max(hi, (old.prepare('SELECT max(seq) AS m FROM records').get() as { m: number | null }).m ?? 0);
      } catch {
        // the right edge of the table is damaged too
      }
      const sel = old.prepare('SELECT seq, at, flags, size, topic, payload FROM records WHERE seq > ? ORDER BY seq');
      const ins = out.prepare('INSERT INTO records (seq, at, flags, size, topic, payload) VALUES (?, ?, ?, ?, ?, ?)');
      out.exec('BEGIN');
      // A scan in seq order until damage, then past it: a search for a seq SALVAGE_STEP further
      // on, and so on, until one reads (the B-tree's interior pages lead around a damaged leaf).
      let from = 0;
      let gapFrom = 0;
      for (;;) {
        let failed = false;
        try {
          for (const r of sel.iterate(from) as Iterable<{ seq: number; at: number; flags: number; size: number; topic: string; payload: Uint8Array }>) {
            if (gapFrom > 0) {
              addRange(skipped, gapFrom, r.seq - 1);
              gapFrom = 0;
            }
            ins.run(r.seq, r.at, r.flags, r.size, r.topic, r.payload);
            if (kept === 0) first = r.seq;
            last = from = r.seq;
            kept++;
          }
        } catch (err) {
          stopped ||= errText(err);
          failed = true;
        }
        if (!failed) break;
        if (last > 0 && gapFrom === 0) gapFrom = last + 1;
        let next = from + SALVAGE_STEP;
        let resumed = false;
        for (; next < hi; next += SALVAGE_STEP) {
          try {
            sel.get(next);
            resumed = true;
            break;
          } catch {
            // still damaged
          }
        }
        if (!resumed) break;
        from = next;
      }
      out.exec('COMMIT');
      if (gapFrom > 0 && gapFrom <= hi) addRange(skipped, gapFrom, hi);
      lastSeq = lastSeq === undefined ? undefined : Math.max(lastSeq, hi);
    } catch (err) {
      stopped ||= errText(err);
      if (out.isTransaction) out.exec('COMMIT');
    } finally {
      try {
        old?.close();
      } catch {
        // damaged
      }
    }
    // Records after the last one read, up to the last seq the database gave out.
    if (stopped !== '' && lastSeq !== undefined && lastSeq > last && kept > 0) addRange(skipped, last + 1, lastSeq);
    const top = Math.max(lastSeq ?? 0, last);
    const salvage = kept > 0 ? `${kept} records that could be read are kept (seqs ${first}..${last})` : 'no record could be read';
    let lost: string;
    if (stopped === '') lost = 'no other record is lost';
    else {
      const parts: string[] = [];
      let n = 0;
      for (const [a, b] of skipped) {
        parts.push(a === b ? `${a}` : `${a}..${b}`);
        n += b - a + 1;
      }
      dropped += n;
      // Rows acknowledged out of order were deleted, so a skipped stretch may have held fewer.
      if (kept === 0) lost = 'how many records it held cannot be known; none is added to the drop count';
      else {
        lost = n > 0 ? `records ${parts.slice(0, 5).join(', ')}${parts.length > 5 ? ', ...' : ''} are lost: at most ${n}, ${n} added to the drop count` : 'no record after the first one read is lost';
        if (first > 1) lost += `; any before seq ${first} not yet acknowledged are lost too, not counted (the ack point was in the damaged pages)`;
      }
    }
    const setMeta = out.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value');
    setMeta.run('lastSeq', top);
    setMeta.run('dropped', dropped);
    out.close();
    const aside = `${this.dbPath}.corrupt`;
    try {
      renameSync(this.dbPath, aside);
      for (const ext of ['-wal', '-shm']) if (existsSync(this.dbPath + ext)) renameSync(this.dbPath + ext, aside + ext);
      renameSync(fresh, this.dbPath);
    } catch (err) {
      this.report(`${this.dbPath} ${why}; it cannot be moved aside (${errText(err)})`);
      throw ioError(this.dbPath, 'set the damaged outbox database aside', err);
    }
    this.report(`${this.dbPath} ${why}${stopped ? ` (reading stopped at: ${stopped})` : ''}; moved aside to ${aside}; ${salvage}; ${lost}`);
    return openDatabase(this.dbPath, false);
  }

  /** Damage found while reading: the database is replaced as at open, the queue goes on. */
  private damagedWhileReading(err: unknown): void {
    // What this process knows beyond the damaged database: seqs handed out, drops not yet persisted.
    const nextSeq = this.nextSeq;
    const unpersistedDrops = this.dropped - this.persistedDropped;
    this.closeDb();
    try {
      this.attach(this.replaceDamaged(`is damaged (found while reading: ${errText(err)})`));
    } catch {
      this.closed = true; // reported; the queue cannot go on
      return;
    }
    if (nextSeq > this.nextSeq) {
      // Seqs whose rows the salvage could not read are not used again: a gap up to the last handed out.
      addRange(this.gaps, this.nextSeq, nextSeq - 1);
      this.nextSeq = nextSeq;
    }
    this.dropped += unpersistedDrops;
    this.persistAcks(true);
    // The renames (damaged aside, fresh in place) become durable with the directory.
    syncDir(this.dir).catch((e: unknown) => this.report(`cannot fsync the directory (${errText(e)})`));
    this.ackedAbove.clear();
    this.pendingDeletes = [];
    this.syncFilesNow();
    this.durableSeq = this.nextSeq - 1;
  }

  private closeDb(): void {
    if (this.walFd !== undefined) {
      try {
        closeSync(this.walFd);
      } catch {
        // already closed
      }
      this.walFd = undefined;
    }
    try {
      this.db.close();
    } catch {
      // already closed, or damaged
    }
  }

  // --- sequence bookkeeping ------------------------------------------------------------------------

  private inGap(seq: number): boolean {
    return holds(this.gaps, seq);
  }

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

  // --- appending -----------------------------------------------------------------------------------

  /**
   * Queues a message (see outbox.ts): committed to the WAL before append returns, resolved with its
   * seq once the WAL is fsynced. Same rejections as the log's append.
   */
  append(topic: string, payload: Uint8Array | string, opts: AppendOptions = {}): Promise<number> {
    if (this.closed) return Promise.reject(new EwError('EW_STORE_IO', 'the outbox is closed', { where: this.dir }));
    const qos = opts.qos ?? 0;
    if (qos !== 0 && qos !== 1) return Promise.reject(new RangeError(`outbox qos must be 0 or 1, not ${String(qos)}`));
    // MQTT 5 properties (the cloud link's replies) came after the measurement, to the log only: refused, never dropped silently.
    if (opts.properties !== undefined) return Promise.reject(new RangeError('the SQLite outbox does not store MQTT 5 properties'));
    const body = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
    const topicBytes = Buffer.byteLength(topic, 'utf8');
    const total = RECORD_OVERHEAD_BYTES + topicBytes + body.length;
    if (total > this.lim.maxRecordBytes || topicBytes > 0xffff) {
      return Promise.reject(
        new EwError(
          'EW_OUTBOX_RECORD_TOO_LARGE',
          `message on ${JSON.stringify(topic.length > 200 ? topic.slice(0, 200) + '...' : topic)} refused: ${total} bytes (topic ${topicBytes}, payload ${body.length}, framing ${RECORD_OVERHEAD_BYTES}) is more than the ${Math.min(this.lim.maxRecordBytes, 0xffff + RECORD_OVERHEAD_BYTES + body.length)} allowed`,
          { where: this.dir },
        ),
      );
    }
    if (this.walFd === undefined) return Promise.reject(new EwError('EW_STORE_IO', 'the outbox WAL cannot be fsynced', { where: this.dir }));
    const seq = this.nextSeq;
    const at = Math.min(MAX_U48, Math.max(0, Math.floor(this.clock()) || 0));
    try {
      if (this.liveBytes + total > this.lim.maxBytes) this.makeRoom(total);
      this.st.insert.run(seq, at, (qos === 1 ? 1 : 0) | (opts.retain ? 2 : 0), total, topic, body);
    } catch (err) {
      this.report(`cannot append a record (${errText(err)})`);
      return Promise.reject(ioError(this.dbPath, 'append a record', err));
    }
    this.nextSeq = seq + 1;
    this.liveBytes += total;
    return new Promise<number>((resolve, reject) => {
      this.waiters.push({ seq, resolve, reject });
      this.scheduleFlush();
    });
  }

  /**
   * Makes room for `bytes` under maxBytes: deletes the acknowledged rows first (no loss), then the
   * oldest unacknowledged ones (counted as dropped), with some slack so this runs once per 1/64 of
   * the bound rather than once per append. Throws on a database error.
   */
  private makeRoom(bytes: number): void {
    this.persistAcks();
    const need = this.liveBytes + bytes - this.lim.maxBytes;
    if (need <= 0) return;
    const want = need + Math.floor(this.lim.maxBytes / 64);
    let freed = 0;
    let through = this.floor;
    let count = 0;
    // The newest records are never dropped: at most everything already queued.
    for (const row of this.st.oldest.iterate(this.floor) as Iterable<[number, number]>) {
      through = row[0];
      freed += row[1];
      count++;
      if (freed >= want) break;
    }
    if (count === 0) return;
    this.dropped += count;
    this.floor = through;
    for (const s of this.ackedAbove) if (s <= through) this.ackedAbove.delete(s);
    this.advance();
    this.persistAcks();
  }

  // --- durability ----------------------------------------------------------------------------------

  private scheduleFlush(): void {
    if (this.flushTimer !== undefined || this.flushing !== undefined) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      void this.doFlush();
    }, this.lim.syncIntervalMs);
  }

  /** fsyncs the WAL and resolves the appends it covers; one at a time. */
  private doFlush(): Promise<void> {
    if (this.flushing) {
      this.flushAgain = true;
      return this.flushing;
    }
    const target = this.nextSeq - 1;
    const fd = this.walFd;
    this.flushing = new Promise<void>((done) => {
      const finish = (err: unknown): void => {
        if (err) this.report(`fsync failed (${errText(err)}); appends waiting for it are rejected`);
        else if (target > this.durableSeq) this.durableSeq = target;
        this.settle(target, err);
        this.flushing = undefined;
        done();
        if (this.flushAgain && !this.closed) {
          this.flushAgain = false;
          void this.doFlush();
        } else if (this.waiterHead < this.waiters.length && !this.closed) this.scheduleFlush();
      };
      if (fd === undefined) finish(new Error('the WAL is not open'));
      else fsyncCb(fd, (err) => finish(err ?? undefined));
    });
    return this.flushing;
  }

  private settle(target: number, failure: unknown): void {
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
  }

  /** Resolves when every record appended so far is durable. */
  async flush(): Promise<void> {
    if (this.closed) return this.closing ?? Promise.resolve();
    if (this.flushTimer !== undefined) {
      clearTimeout(this.flushTimer);
      this.flushTimer = undefined;
    }
    // A flush already running may have started before the last append: one more after it.
    while (this.flushing) await this.flushing;
    await this.doFlush();
  }

  /**
   * Persists the acknowledgements (deletes their rows) and the drop count, in one transaction.
   * Committed to the WAL; fsynced by the next group commit or checkpoint. Never throws (reported).
   */
  private persistAcks(force = false): void {
    if (this.closed && this.closing === undefined) return;
    const floor = this.floor;
    if (!force && floor === this.persistedFloor && this.pendingDeletes.length === 0 && this.dropped === this.persistedDropped) return;
    const st = this.st;
    try {
      this.db.exec('BEGIN');
      let freed = 0;
      if (floor > this.persistedFloor) {
        freed += (st.sizeThrough.get(floor) as { n: number }).n;
        st.deleteThrough.run(floor);
      }
      for (const s of this.pendingDeletes) {
        if (s <= floor) continue;
        const r = st.deleteOne.get(s) as { size: number } | undefined;
        if (r) freed += r.size;
      }
      st.setMeta.run('lastSeq', this.nextSeq - 1);
      st.setMeta.run('dropped', this.dropped);
      this.db.exec('COMMIT');
      this.liveBytes -= freed;
      this.persistedFloor = floor;
      this.persistedDropped = this.dropped;
      this.pendingDeletes = [];
    } catch (err) {
      try {
        if (this.db.isTransaction) this.db.exec('ROLLBACK');
      } catch {
        // nothing more to do
      }
      this.report(`cannot persist the ack point (${errText(err)}); will retry`);
    }
  }

  private scheduleStatePersist(): void {
    if (this.stateTimer !== undefined || this.closed) return;
    this.stateTimer = setTimeout(() => {
      this.stateTimer = undefined;
      this.persistAcks();
      // The deletions become durable with the next fsync of the WAL, at once.
      void this.doFlush();
    }, this.lim.ackSyncIntervalMs);
    this.stateTimer.unref();
  }

  // --- reading -------------------------------------------------------------------------------------

  /** Up to `max` durable, unacknowledged records with seq > `afterSeq`, in order (see outbox.ts). */
  peek(max: number, afterSeq?: number): OutboxRecord[] {
    const out: OutboxRecord[] = [];
    if (this.closed || !(max >= 1)) return out;
    const after = Math.max(this.floor, afterSeq !== undefined && Number.isFinite(afterSeq) ? Math.floor(afterSeq) : 0);
    if (after >= this.durableSeq) return out;
    try {
      for (const row of this.st.read.iterate(after, this.durableSeq) as Iterable<[number, number, number, string, Uint8Array]>) {
        const seq = row[0];
        if (this.ackedAbove.has(seq)) continue;
        const p = row[4];
        out.push({ seq, topic: row[3], payload: Buffer.from(p.buffer, p.byteOffset, p.byteLength), qos: (row[2] & 1) as OutboxQos, retain: (row[2] & 2) !== 0, enqueuedAt: row[1] });
        if (out.length >= max) break;
      }
    } catch (err) {
      this.damagedWhileReading(err);
      return this.closed ? out : this.peek(max, afterSeq);
    }
    return out;
  }

  // --- acknowledging -------------------------------------------------------------------------------

  /** Acknowledges one record, any order; unknown or repeated seqs are ignored. Persisted lazily. */
  ack(seq: number): void {
    if (!Number.isSafeInteger(seq) || seq <= this.floor || seq >= this.nextSeq || this.inGap(seq) || this.ackedAbove.has(seq)) return;
    this.ackedAbove.add(seq);
    if (seq !== this.floor + 1) this.pendingDeletes.push(seq);
    this.advance();
    this.scheduleStatePersist();
  }

  /** Persists the acknowledgements, gives free pages back to the file system, checkpoints the WAL. */
  async compact(): Promise<void> {
    if (this.closed) return;
    this.persistAcks();
    try {
      this.db.exec('PRAGMA incremental_vacuum');
      this.db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
    } catch (err) {
      this.report(`compaction failed (${errText(err)})`);
    }
    await this.doFlush();
  }

  stats(): OutboxStats {
    const lastSeq = this.nextSeq - 1;
    const depth = this.countExisting(this.floor, lastSeq) - this.ackedAbove.size;
    return {
      depth,
      bytes: this.liveBytes,
      dropped: this.dropped,
      oldestEnqueuedAt: depth > 0 ? this.oldestAt() : null,
      segments: 1,
      lastSeq,
      ackedThrough: this.floor,
    };
  }

  private oldestAt(): number | null {
    if (this.oldestCache?.floor === this.floor) return this.oldestCache.at;
    if (this.closed) return null;
    const r = this.peekAny();
    if (r === undefined) return null;
    this.oldestCache = { floor: this.floor, at: r };
    return r;
  }

  /** enqueuedAt of the first row above the floor, durable or not. */
  private peekAny(): number | undefined {
    try {
      for (const row of this.st.read.iterate(this.floor, Number.MAX_SAFE_INTEGER) as Iterable<[number, number]>) return row[1];
    } catch {
      // found again by peek()
    }
    return undefined;
  }

  /** fsyncs what was appended, persists the acknowledgements, closes the database. Idempotent. */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    if (this.flushTimer !== undefined) clearTimeout(this.flushTimer);
    if (this.stateTimer !== undefined) clearTimeout(this.stateTimer);
    this.flushTimer = undefined;
    this.stateTimer = undefined;
    this.flushAgain = false;
    this.closing = (async () => {
      // No fsync may be left running on the WAL's descriptor when it is closed.
      while (this.flushing) await this.flushing;
      await this.doFlush();
      // lastSeq too, always: if the database is damaged later, it tells how many records it held.
      this.persistAcks(true);
      // close() checkpoints the WAL into the database (fsyncing both) and removes it.
      this.closeDb();
    })();
    return this.closing;
  }
}
