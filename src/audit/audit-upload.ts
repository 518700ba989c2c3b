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
import { open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { AUDIT_FILE, AUDIT_ROTATED_FILE } from './audit-read.js';

export interface AuditCursor {
  readonly ino: number;
  /** Hash of the file's first line ('' while it has none). */
  readonly head: string;
  readonly offset: number;
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
  readonly path: string;
  readonly ino: number;
  readonly head: string;
  readonly size: number;
}

const HEAD_BYTES = 4096;

async function fileAt(path: string): Promise<FileAt | undefined> {
  try {
    const s = await stat(path);
    const first = await readRange(path, 0, Math.min(s.size, HEAD_BYTES));
    const nl = first.indexOf(0x0a);
    const head = nl < 0 ? '' : createHash('sha256').update(first.subarray(0, nl)).digest('hex').slice(0, 32);
    return { path, ino: s.ino, head, size: s.size };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

async function readRange(path: string, from: number, to: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(to - from);
    let n = 0;
    while (n < buf.length) {
      const { bytesRead } = await fh.read(buf, n, buf.length - n, from + n);
      if (bytesRead === 0) break;
      n += bytesRead;
    }
    return buf.subarray(0, n);
  } finally {
    await fh.close();
  }
}

/** Up to about `maxBytes` of whole audit lines after `cursor` (null: from the oldest record kept). */
export async function readAuditSince(dir: string, cursor: AuditCursor | null, maxBytes: number): Promise<AuditChunk> {
  const rotated = await fileAt(join(dir, AUDIT_ROTATED_FILE));
  const current = await fileAt(join(dir, AUDIT_FILE));
  const files = [rotated, current].filter((f): f is FileAt => f !== undefined);
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
    const bytes = await readRange(f.path, offset, to);
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
  const files = [await fileAt(join(dir, AUDIT_ROTATED_FILE)), await fileAt(join(dir, AUDIT_FILE))].filter((f): f is FileAt => f !== undefined);
  const i = cursor === null ? -1 : files.findIndex((f) => f.ino === cursor.ino && (f.head === cursor.head || cursor.head === ''));
  let total = 0;
  for (let k = Math.max(i, 0); k < files.length; k++) total += files[k]!.size - (k === i ? Math.min(cursor!.offset, files[k]!.size) : 0);
  return total;
}
