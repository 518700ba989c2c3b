// Files that survive a power cut (SPEC section 4): write a temp file in the same directory, fsync it,
// rename it over the target, fsync the directory. rename(2) replaces the name atomically, so a
// reader (or the next boot) sees either the whole old file or the whole new one, never a torn one.
// The fsync of the file before the rename makes sure the new name never points at unwritten data;
// the fsync of the directory makes the rename itself durable.
//
// Reads are bounded: the size is checked on the open handle before a byte is read.
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { open, readdir, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { EwError, type ErrorCode } from '../errors.js';

export interface WriteOptions {
  /** Permission bits of the new file (before the umask). Default 0o600: state files are the agent's own. */
  readonly mode?: number;
}

const DEFAULT_MODE = 0o600;

/** Temp files are `.<target name>.tmp-<pid>-<random hex>` beside the target. */
const TEMP_NAME = /^\..+\.tmp-\d+-[0-9a-f]{12}$/;

function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
}

/** True for a name this module gives its temp files (left behind only by a crash mid-write). */
export function isTempFileName(name: string): boolean {
  return TEMP_NAME.test(name);
}

function errnoOf(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code ? `${e.code}` : (e as Error).message ?? String(err);
}

function ioError(path: string, operation: string, err: unknown): EwError {
  return new EwError('EW_STORE_IO', `cannot ${operation}: ${errnoOf(err)}`, { where: path, cause: err });
}

function toBytes(data: Uint8Array | string): Uint8Array {
  return typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
}

/**
 * Some filesystems refuse fsync on a directory (EINVAL, ENOTSUP, EISDIR on a few). There the rename
 * is as durable as the filesystem makes it and nothing better can be done, so these are not failures.
 */
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
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch (err) {
    if (!isDirSyncUnsupported(err)) throw err;
  } finally {
    if (fd !== undefined) {
      try {
        closeSync(fd);
      } catch {
        // nothing to do
      }
    }
  }
}

/**
 * Replaces `path` with `data` atomically and durably. On failure the temp file is removed, the
 * target is left as it was, and an EwError EW_STORE_IO names the path and the step that failed.
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string, opts: WriteOptions = {}): Promise<void> {
  const bytes = toBytes(data);
  const tmp = tempPathFor(path);
  let step = `create temp file ${tmp}`;
  let handle: FileHandle | undefined;
  let renamed = false;
  try {
    handle = await open(tmp, 'wx', opts.mode ?? DEFAULT_MODE);
    step = `write temp file ${tmp}`;
    let off = 0;
    while (off < bytes.length) {
      const { bytesWritten } = await handle.write(bytes, off, bytes.length - off);
      off += bytesWritten;
    }
    step = `fsync temp file ${tmp}`;
    await handle.sync();
    step = `close temp file ${tmp}`;
    const h = handle;
    handle = undefined;
    await h.close();
    step = `rename ${tmp} over the file`;
    await rename(tmp, path);
    renamed = true;
    step = `fsync directory ${dirname(path)}`;
    await syncDir(dirname(path));
  } catch (err) {
    await handle?.close().catch(() => undefined);
    if (!renamed) await unlink(tmp).catch(() => undefined);
    throw ioError(path, step, err);
  }
}

/**
 * Replaces `path` with a copy of `source`, atomically and durably like writeFileAtomic, read and
 * written in 1 MiB pieces (a large file is never held whole), provided the copy's sha256 is
 * `sha256` (hex): a source damaged on disk is not copied. Resolves false (and `path` is left as it
 * was) when the source is missing, unreadable, not a regular file or does not match; EW_STORE_IO
 * when writing the copy fails.
 */
export async function copyFileAtomic(source: string, path: string, sha256: string, opts: WriteOptions = {}): Promise<boolean> {
  let src: FileHandle;
  try {
    src = await open(source, 'r');
    if (!(await src.stat()).isFile()) {
      await src.close();
      return false;
    }
  } catch {
    return false;
  }
  const tmp = tempPathFor(path);
  let step = `create temp file ${tmp}`;
  let handle: FileHandle | undefined;
  let renamed = false;
  try {
    handle = await open(tmp, 'wx', opts.mode ?? DEFAULT_MODE);
    const hash = createHash('sha256');
    const buf = Buffer.allocUnsafe(1024 * 1024);
    for (let pos = 0; ; ) {
      let bytesRead: number;
      try {
        bytesRead = (await src.read(buf, 0, buf.length, pos)).bytesRead;
      } catch {
        bytesRead = -1; // the source is damaged: not copied
      }
      if (bytesRead < 0) {
        await handle.close();
        handle = undefined;
        await unlink(tmp).catch(() => undefined);
        return false;
      }
      if (bytesRead === 0) break;
      hash.update(buf.subarray(0, bytesRead));
      step = `write temp file ${tmp}`;
      for (let off = 0; off < bytesRead; ) off += (await handle.write(buf, off, bytesRead - off)).bytesWritten;
      pos += bytesRead;
    }
    if (hash.digest('hex') !== sha256) {
      await handle.close();
      handle = undefined;
      await unlink(tmp).catch(() => undefined);
      return false;
    }
    step = `fsync temp file ${tmp}`;
    await handle.sync();
    step = `close temp file ${tmp}`;
    const h = handle;
    handle = undefined;
    await h.close();
    step = `rename ${tmp} over the file`;
    await rename(tmp, path);
    renamed = true;
    step = `fsync directory ${dirname(path)}`;
    await syncDir(dirname(path));
    return true;
  } catch (err) {
    await handle?.close().catch(() => undefined);
    if (!renamed) await unlink(tmp).catch(() => undefined);
    throw ioError(path, step, err);
  } finally {
    await src.close().catch(() => undefined);
  }
}

/** writeFileAtomic for places that cannot wait (shutdown, exit handlers). Same steps, same errors. */
export function writeFileAtomicSync(path: string, data: Uint8Array | string, opts: WriteOptions = {}): void {
  const bytes = toBytes(data);
  const tmp = tempPathFor(path);
  let step = `create temp file ${tmp}`;
  let fd: number | undefined;
  let renamed = false;
  try {
    fd = openSync(tmp, 'wx', opts.mode ?? DEFAULT_MODE);
    step = `write temp file ${tmp}`;
    let off = 0;
    while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
    step = `fsync temp file ${tmp}`;
    fsyncSync(fd);
    step = `close temp file ${tmp}`;
    const f = fd;
    fd = undefined;
    closeSync(f);
    step = `rename ${tmp} over the file`;
    renameSync(tmp, path);
    renamed = true;
    step = `fsync directory ${dirname(path)}`;
    syncDirSync(dirname(path));
  } catch (err) {
    if (fd !== undefined) {
      try {
        closeSync(fd);
      } catch {
        // already failing; the original error is the one to report
      }
    }
    if (!renamed) {
      try {
        unlinkSync(tmp);
      } catch {
        // the temp file may never have been created
      }
    }
    throw ioError(path, step, err);
  }
}

/** Thrown by readFileBounded for a file larger than allowed; nothing of it has been read. */
export class FileTooLargeError extends EwError {
  readonly size: number;
  readonly maxBytes: number;
  constructor(code: ErrorCode, path: string, size: number, maxBytes: number) {
    super(code, `${size} bytes is more than the ${maxBytes} allowed (not read)`, { where: path });
    this.name = 'FileTooLargeError';
    this.size = size;
    this.maxBytes = maxBytes;
  }
}

/**
 * Reads a regular file of at most `maxBytes`. Returns undefined when it does not exist. A larger
 * file is refused before any of it is read (FileTooLargeError, code `tooLargeCode`, default
 * EW_STORE_IO); any other problem is EW_STORE_IO. A file that grows between the size check and the
 * read is still never read past `maxBytes`.
 */
export async function readFileBounded(
  path: string,
  maxBytes: number,
  opts: { tooLargeCode?: ErrorCode } = {},
): Promise<Buffer | undefined> {
  // stat by name first: opening a FIFO or a device could block or have side effects.
  let size: number;
  try {
    const st = await stat(path);
    if (!st.isFile()) throw new EwError('EW_STORE_IO', 'cannot read: not a regular file', { where: path });
    size = st.size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    if (err instanceof EwError) throw err;
    throw ioError(path, 'stat', err);
  }
  const tooLargeCode = opts.tooLargeCode ?? 'EW_STORE_IO';
  if (size > maxBytes) throw new FileTooLargeError(tooLargeCode, path, size, maxBytes);

  let handle: FileHandle | undefined;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined; // removed since the stat
    throw ioError(path, 'open', err);
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new EwError('EW_STORE_IO', 'cannot read: not a regular file', { where: path });
    if (st.size > maxBytes) throw new FileTooLargeError(tooLargeCode, path, st.size, maxBytes);
    // One byte of room beyond the stated size tells a file that grew meanwhile.
    const buf = Buffer.allocUnsafe(Math.min(st.size, maxBytes) + 1);
    let off = 0;
    while (off < buf.length) {
      const { bytesRead } = await handle.read(buf, off, buf.length - off, off);
      if (bytesRead === 0) break;
      off += bytesRead;
    }
    if (off > maxBytes) throw new FileTooLargeError(tooLargeCode, path, off, maxBytes);
    return buf.subarray(0, off);
  } catch (err) {
    if (err instanceof EwError) throw err;
    throw ioError(path, 'read', err);
  } finally {
    await handle.close().catch(() => undefined);
  }
}

/**
 * Removes temp files a crash left in `dir` (only names made by this module). Returns the removed
 * paths. Call it only where no write is under way (at start, before the first write).
 */
export async function removeStaleTempFiles(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw ioError(dir, 'list directory', err);
  }
  const removed: string[] = [];
  for (const name of names) {
    if (!isTempFileName(name)) continue;
    const p = join(dir, name);
    try {
      await unlink(p);
      removed.push(p);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw ioError(p, 'remove stale temp file', err);
    }
  }
  return removed;
}
