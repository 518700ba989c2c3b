// One owner per directory: <dir>/<lock file> holds the pid of the edgewarden process that owns it
// (an agent its state directory, src/agent/state-lock.ts; fleet sign its fleet directory).
//
// Node has no flock(2), so the lock is a file
// made atomically: the pid is written to a temp file, then link(2)ed to agent.lock, which fails if
// agent.lock exists. An existing lock whose process is gone (a SIGKILL, a power cut) is stale: it is
// renamed away (only one of two racing agents can rename it) and the link is tried again. A pid the
// kernel has given to another program since is also stale: the holder must look like an edgewarden
// process (its /proc/<pid>/cmdline names edgewarden).
import { link, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { EwError } from '../errors.js';

export interface DirLock {
  readonly path: string;
  release(): Promise<void>;
}

async function holderOf(path: string): Promise<number | undefined> {
  try {
    const pid = Number((await readFile(path, 'utf8')).trim());
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Whether `pid` is a live edgewarden process (not this process). */
async function isEdgewarden(pid: number): Promise<boolean> {
  if (pid === process.pid) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM: alive, another user's; it still holds the directory.
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    return (await readFile(`/proc/${pid}/cmdline`, 'utf8')).includes('edgewarden');
  } catch {
    return true; // no /proc: trust that the pid is alive
  }
}

/**
 * Takes `<dir>/<file>`, or throws EW_STATE_LOCKED with `held(pid)`: what holds it and what to do.
 */
export async function lockDirectory(dir: string, file: string, held: (pid: number) => string): Promise<DirLock> {
  const path = join(dir, file);
  const tmp = join(dir, `.${file}.${process.pid}.${randomBytes(4).toString('hex')}`);
  await writeFile(tmp, `${process.pid}\n`, { mode: 0o600 });
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await link(tmp, path);
        return {
          path,
          release: async () => {
            if ((await holderOf(path)) === process.pid) await unlink(path).catch(() => undefined);
          },
        };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const holder = await holderOf(path);
      if (holder !== undefined && (await isEdgewarden(holder))) throw new EwError('EW_STATE_LOCKED', held(holder), { where: path });
      // Stale: renamed away, so that of two processes taking it over at once only one succeeds.
      const stale = `${path}.stale-${randomBytes(4).toString('hex')}`;
      try {
        await rename(path, stale);
        await unlink(stale);
      } catch {
        // another process took it over first: the next attempt sees its lock
      }
    }
    throw new EwError('EW_STATE_LOCKED', 'cannot take the lock: it changed hands three times while trying', { where: path });
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}
