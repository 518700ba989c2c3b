// Reading the audit log for upload (SPEC section 6: "uploaded when online"): the JSON Lines written
// since a cursor, across the one rotation the log does (audit.log -> audit.log.1).
//
// The cursor is (inode, first line, offset) of the file last read. A rename keeps the inode, so
// after a rotation the cursor's file is audit.log.1 and the rest of it is read before audit.log. The
// first line (its hash) tells the file apart from a newer one that got the same inode number after
// the old one was deleted. If the cursor's file is gone (rotated twice between uploads), those
// records were dropped by the size bound: the read starts at the oldest file still there and says
// `skipped`. Only whole lines are returned.
import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { AUDIT_FILE, AUDIT_ROTATED_FILE } from './audit-read.js';

export interface AuditCursor {
  readonly ino: number;
  /** Hash of the file's first line ('' while it has none). */
  readonly head: string;
  readonly offset: number;
  /** seq and time of the last line read (absent: lines without seq, or nothing read yet). */
  readonly seq?: number;
  readonly time?: string;
}

export interface AuditChunk {
  /** Whole JSON lines, each ending in \n; empty when nothing new. */
  readonly text: string;
  /** Where the next read starts; persist it once `text` is safely queued. */
  readonly next: AuditCursor | null;
  /** Records between the cursor and this chunk were rotated away before they were read. */
  readonly skipped: boolean;
}

interface FileAt {
  readonly handle: FileHandle;
  readonly ino: number;
  readonly head: string;
  readonly size: number;
}

const HEAD_BYTES = 4096;

/** The file open for reading, with its inode, first-line hash and size; undefined when there is none. */
async function fileAt(path: string): Promise<FileAt | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const s = await handle.stat();
    const first = await readRange(handle, 0, Math.min(s.size, HEAD_BYTES));
    const nl = first.indexOf(0x0a);
    const head = nl < 0 ? '' : createHash('sha256').update(first.subarray(0, nl)).digest('hex').slice(0, 32);
    return { handle, ino: s.ino, head, size: s.size };
  } catch (err) {
    await handle.close().catch(() => undefined);
    throw err;
  }
}

async function readRange(handle: FileHandle, from: number, to: number): Promise<Buffer> {
  const buf = Buffer.alloc(to - from);
  let n = 0;
  while (n < buf.length) {
    const { bytesRead } = await handle.read(buf, n, buf.length - n, from + n);
    if (bytesRead === 0) break;
    n += bytesRead;
  }
  return buf.subarray(0, n);
}

/**
 * audit.log.1 and audit.log, oldest first, open. audit.log is opened first: if the writer rotates
 * between the two opens, both are the same file (kept once, as the older), and the new audit.log is
 * read next time. Reading through the open files, a rotation while reading changes nothing.
 */
async function openLogFiles(dir: string): Promise<FileAt[]> {
  const current = await fileAt(join(dir, AUDIT_FILE));
  let rotated: FileAt | undefined;
  try {
    rotated = await fileAt(join(dir, AUDIT_ROTATED_FILE));
  } catch (err) {
    await current?.handle.close().catch(() => undefined);
    throw err;
  }
  if (current && rotated && current.ino === rotated.ino) {
    await current.handle.close().catch(() => undefined);
    return [rotated];
  }
  return [rotated, current].filter((f): f is FileAt => f !== undefined);
}

async function closeAll(files: FileAt[]): Promise<void> {
  for (const f of files) await f.handle.close().catch(() => undefined);
}

/** Up to about `maxBytes` of whole audit lines after `cursor` (null: from the oldest record kept). */
export async function readAuditSince(dir: string, cursor: AuditCursor | null, maxBytes: number): Promise<AuditChunk> {
  const files = await openLogFiles(dir);
  try {
    return await readFrom(files, cursor, maxBytes);
  } finally {
    await closeAll(files);
  }
}

async function readFrom(files: FileAt[], cursor: AuditCursor | null, maxBytes: number): Promise<AuditChunk> {
  let start = 0;
  let offset = 0;
  let skipped = false;
  if (cursor !== null) {
    const i = files.findIndex((f) => f.ino === cursor.ino && (f.head === cursor.head || cursor.head === ''));
    if (i >= 0) {
      start = i;
      offset = cursor.offset <= files[i]!.size ? cursor.offset : 0;
    } else skipped = files.length > 0 && cursor.offset > 0;
  }
  const parts: Buffer[] = [];
  let budget = maxBytes;
  let next: AuditCursor | null = cursor;
  for (let i = start; i < files.length && budget > 0; i++, offset = 0) {
    const f = files[i]!;
    const to = Math.min(f.size, offset + budget);
    if (to <= offset) {
      next = { ino: f.ino, head: f.head, offset };
      continue;
    }
    const bytes = await readRange(f.handle, offset, to);
    const end = bytes.lastIndexOf(0x0a) + 1;
    if (end > 0) {
      parts.push(bytes.subarray(0, end));
      budget -= end;
    }
    next = { ino: f.ino, head: f.head !== '' || end === 0 ? f.head : createHash('sha256').update(bytes.subarray(0, bytes.indexOf(0x0a))).digest('hex').slice(0, 32), offset: offset + end };
    if (offset + end < f.size) break; // a partial line (still being written) or the budget: stop here
  }
  return { text: Buffer.concat(parts).toString('utf8'), next, skipped };
}

/** Bytes of the audit log after `cursor`: what the next uploads still have to read. */
export async function auditBacklogBytes(dir: string, cursor: AuditCursor | null): Promise<number> {
  const files = await openLogFiles(dir);
  await closeAll(files);
  const i = cursor === null ? -1 : files.findIndex((f) => f.ino === cursor.ino && (f.head === cursor.head || cursor.head === ''));
  let total = 0;
  for (let k = Math.max(i, 0); k < files.length; k++) total += files[k]!.size - (k === i ? Math.min(cursor!.offset, files[k]!.size) : 0);
  return total;
}
