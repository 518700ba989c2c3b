// A file read after checking its size: never more than `max` bytes (the command line's inputs).
import { readFileSync, statSync } from 'node:fs';
import { EwError, type ErrorCode } from '../errors.js';

/** Reads a file after checking its size; never reads more than `max` bytes. */
export function readBounded(path: string, max: number, tooLarge: ErrorCode, readCode: ErrorCode): Buffer {
  let size: number;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new Error('not a regular file');
    size = st.size;
  } catch (err) {
    throw new EwError(readCode, `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { where: path, cause: err });
  }
  if (size > max) throw new EwError(tooLarge, `${size} bytes is more than the ${max} allowed`, { where: path });
  try {
    return readFileSync(path);
  } catch (err) {
    throw new EwError(readCode, `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { where: path, cause: err });
  }
}
