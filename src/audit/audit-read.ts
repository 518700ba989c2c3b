// Reading the audit log back (`edgewarden audit tail` and `stats`, tests): the newest entries of
// audit.log.1 and audit.log, read backwards in chunks so a large log is never held whole, optionally
// only those a filter matches; every entry of both, one at a time (stats). Following the log as it
// grows is audit-follow.ts, which continues where readAuditForFollow stopped.
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { EwError } from '../errors.js';
import type { AuditEntry } from './audit-entry.js';

export const AUDIT_FILE = 'audit.log';
export const AUDIT_ROTATED_FILE = 'audit.log.1';
const NEWLINE = 0x0a;

export function ioError(where: string, what: string, err: unknown): EwError {
  const e = err as NodeJS.ErrnoException | undefined;
  return err instanceof EwError ? err : new EwError('EW_STORE_IO', `${what}: ${e?.code ?? e?.message ?? String(err)}`, { where, cause: err });
}

export interface ReadAuditOptions {
  /** Only the newest `limit` entries (of those `match` accepts). */
  limit?: number;
  /** Only the entries this accepts (default: all). */
  match?: (e: AuditEntry) => boolean;
}

export interface ReadAuditResult {
  /** Oldest first, newest last. */
  entries: AuditEntry[];
  /** Lines skipped because they are not an audit entry (a torn last line after a power cut, ...). */
  corrupt: number;
}

export const READ_CHUNK = 64 * 1024;
/** A "line" longer than this is not ours; it is skipped without being held in memory. */
export const MAX_LINE_BYTES = 1024 * 1024;

/** The entries of <dir>/audit.log.1 and <dir>/audit.log, newest last. A missing directory or file has none. */
export async function readAudit(dir: string, opts: ReadAuditOptions = {}): Promise<AuditEntry[]> {
  return (await readAuditDetailed(dir, opts)).entries;
}

/** readAudit, and how many lines were skipped. */
export async function readAuditDetailed(dir: string, opts: ReadAuditOptions = {}): Promise<ReadAuditResult> {
  const { entries, corrupt, files } = await readNewest(dir, opts);
  for (const f of files) await f.handle.close().catch(() => undefined);
  return { entries, corrupt };
}

/** Where following the log starts: the file read last (still open) and the offset read up to. */
export interface FollowStart {
  /** audit.log as opened by the read (or audit.log.1 when there was no audit.log); none: no file yet. */
  readonly file: OpenFile | undefined;
  /** Bytes of `file` already read: the file's size when it was opened. */
  readonly offset: number;
  /** The seq of the last line before `offset`, when it has one: a gap after it is records missed. */
  readonly seq?: number;
}

/**
 * readAuditDetailed, and the place to follow from: nothing written after the files were opened is
 * read here, and nothing before that place is read again by the follower. The caller owns
 * `start.file` (close it, or give it to followAudit).
 */
export async function readAuditForFollow(dir: string, opts: ReadAuditOptions = {}): Promise<ReadAuditResult & { start: FollowStart }> {
  const { entries, corrupt, files, newestSeq } = await readNewest(dir, opts);
  const [file, ...others] = files;
  for (const f of others) await f.handle.close().catch(() => undefined);
  return { entries, corrupt, start: { file, offset: file?.size ?? 0, ...(newestSeq === undefined ? {} : { seq: newestSeq }) } };
}

/**
 * The files, newest first, still open (both are closed when reading fails), and the seq of the
 * newest line of the first (read even with limit 0).
 */
async function readNewest(dir: string, opts: ReadAuditOptions): Promise<ReadAuditResult & { files: OpenFile[]; newestSeq: number | undefined }> {
  const limit = opts.limit ?? Infinity;
  if (limit !== Infinity && (!Number.isSafeInteger(limit) || limit < 0)) throw new RangeError(`limit must be a non-negative integer, got ${limit}`);
  const match = opts.match;
  const files = await openBoth(dir);
  const newestFirst: AuditEntry[] = [];
  let corrupt = 0;
  let newestFound = false;
  let newestSeq: number | undefined;
  try {
    outer: for (const f of files) {
      for await (const line of linesBackward(f)) {
        if (newestFirst.length >= limit && (newestFound || f !== files[0])) break outer;
        if (line !== null && line.length === 0) continue;
        const entry = line === null ? undefined : parseEntry(line);
        if (entry === undefined) {
          corrupt++;
          continue;
        }
        if (!newestFound && f === files[0]) {
          newestFound = true;
          newestSeq = entry.seq;
        }
        if (newestFirst.length < limit && (match === undefined || match(entry))) newestFirst.push(entry);
      }
    }
  } catch (err) {
    for (const f of files) await f.handle.close().catch(() => undefined);
    throw ioError(dir, 'cannot read the audit log', err);
  }
  return { entries: newestFirst.reverse(), corrupt, files, newestSeq };
}

/**
 * Every entry of both files, one at a time, newest first (no order is promised beyond that): for
 * counting over the whole log in bounded memory. Returns how many lines were skipped.
 */
export async function scanAudit(dir: string, visit: (e: AuditEntry) => void): Promise<{ corrupt: number }> {
  const files = await openBoth(dir);
  let corrupt = 0;
  try {
    for (const f of files) {
      for await (const line of linesBackward(f)) {
        if (line !== null && line.length === 0) continue;
        const entry = line === null ? undefined : parseEntry(line);
        if (entry === undefined) corrupt++;
        else visit(entry);
      }
    }
  } catch (err) {
    throw ioError(dir, 'cannot read the audit log', err);
  } finally {
    for (const f of files) await f.handle.close().catch(() => undefined);
  }
  return { corrupt };
}

/** audit.log, then audit.log.1 unless it is the same file; missing ones left out. */
async function openBoth(dir: string): Promise<OpenFile[]> {
  // audit.log first: if the writer rotates between the two opens, both name the same file (the
  // check below drops the second), and nothing older than what was read is missed.
  const current = await openForRead(join(dir, AUDIT_FILE));
  let rotated = await openForRead(join(dir, AUDIT_ROTATED_FILE)).catch(async (err: unknown) => {
    await current?.handle.close();
    throw err;
  });
  if (current && rotated && current.ino === rotated.ino && current.dev === rotated.dev) {
    await rotated.handle.close();
    rotated = undefined;
  }
  return [current, rotated].filter((f): f is OpenFile => f !== undefined);
}

export interface OpenFile {
  readonly path: string;
  readonly handle: FileHandle;
  readonly size: number;
  readonly dev: number;
  readonly ino: number;
}

export async function openForRead(path: string): Promise<OpenFile | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw ioError(path, 'cannot open', err);
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw Object.assign(new Error('not a regular file'), { code: 'EISDIR' });
    return { path, handle, size: st.size, dev: st.dev, ino: st.ino };
  } catch (err) {
    await handle.close().catch(() => undefined);
    throw ioError(path, 'cannot read', err);
  }
}

/** The file's lines, last first, up to its size when opened; null for a line too long to be ours. */
async function* linesBackward(f: OpenFile): AsyncGenerator<Buffer | null> {
  let pos = f.size;
  let rest = Buffer.alloc(0); // the start of a line whose beginning is further back
  let oversized = false;
  while (pos > 0) {
    const n = Math.min(READ_CHUNK, pos);
    pos -= n;
    const chunk = Buffer.alloc(n);
    let got = 0;
    while (got < n) {
      const { bytesRead } = await f.handle.read(chunk, got, n - got, pos + got);
      if (bytesRead === 0) throw Object.assign(new Error('file shrank while being read'), { code: 'EIO' });
      got += bytesRead;
    }
    const buf = rest.length > 0 ? Buffer.concat([chunk, rest]) : chunk;
    let end = buf.length;
    for (let i = buf.lastIndexOf(NEWLINE, end - 1); i >= 0; i = end > 0 ? buf.lastIndexOf(NEWLINE, end - 1) : -1) {
      yield oversized ? null : buf.subarray(i + 1, end);
      oversized = false;
      end = i;
    }
    rest = Buffer.from(buf.subarray(0, end));
    if (rest.length > MAX_LINE_BYTES) {
      oversized = true;
      rest = Buffer.alloc(0);
    }
  }
  if (oversized) yield null;
  else if (rest.length > 0) yield rest;
}

/** An entry, or undefined when the line is not one. Only AuditEntry's fields are kept. */
export function parseEntry(line: Buffer): AuditEntry | undefined {
  // A power cut can leave NUL bytes where data was not written yet.
  const text = line.toString('utf8').replace(/^\0+/, '').trim();
  if (text.length === 0) return undefined;
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return undefined;
  const o = doc as Record<string, unknown>;
  const isStringOrNull = (v: unknown) => v === null || typeof v === 'string';
  if (typeof o['time'] !== 'string' || typeof o['action'] !== 'string') return undefined;
  if (o['decision'] !== 'allow' && o['decision'] !== 'deny' && o['decision'] !== 'lost') return undefined;
  if (o['principal'] !== undefined && !isStringOrNull(o['principal'])) return undefined;
  if (o['clientId'] !== undefined && !isStringOrNull(o['clientId'])) return undefined;
  if (o['snapshotVersion'] !== undefined && o['snapshotVersion'] !== null && typeof o['snapshotVersion'] !== 'number') return undefined;
  const e: AuditEntry = {
    time: o['time'],
    ...(typeof o['seq'] === 'number' && Number.isSafeInteger(o['seq']) ? { seq: o['seq'] } : {}),
    decision: o['decision'],
    principal: (o['principal'] as string | null | undefined) ?? null,
    clientId: (o['clientId'] as string | null | undefined) ?? null,
    action: o['action'],
    snapshotVersion: (o['snapshotVersion'] as number | null | undefined) ?? null,
  };
  if (typeof o['reason'] === 'string') e.reason = o['reason'];
  const thing = o['thing'];
  if (thing === null || typeof thing === 'string') e.thing = thing;
  if (typeof o['topic'] === 'string') e.topic = o['topic'];
  if (typeof o['count'] === 'number' && Number.isSafeInteger(o['count']) && o['count'] > 1) e.count = o['count'];
  if (o['source'] === 'local' || o['source'] === 'cloud') e.source = o['source'];
  if (o['stage'] === 'publish' || o['stage'] === 'delivery' || o['stage'] === 'queue') e.stage = o['stage'];
  if (typeof o['receiver'] === 'string') e.receiver = o['receiver'];
  if (typeof o['authorizedAt'] === 'string') e.authorizedAt = o['authorizedAt'];
  if (o['retainIgnored'] === true) e.retainIgnored = true;
  if (o['will'] === true) e.will = true;
  if (typeof o['remote'] === 'string') e.remote = o['remote'];
  if (typeof o['fromSeq'] === 'number') e.fromSeq = o['fromSeq'];
  if (typeof o['toSeq'] === 'number') e.toSeq = o['toSeq'];
  if (typeof o['from'] === 'string') e.from = o['from'];
  if (typeof o['to'] === 'string') e.to = o['to'];
  return e;
}
