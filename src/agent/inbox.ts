// Snapshots dropped as files into <stateDir>/inbox (sites with no cloud link, first provisioning).
// An accepted file is removed; a refused one is renamed to <name>.refused with the reason beside it
// in <name>.refused.txt. The directory is watched, and scanned every few seconds as well (fs.watch
// misses events on some filesystems). A file is taken once it has not changed for `settleMs`: `cp`
// into the inbox creates the file before it writes it, and a half-written snapshot must not be
// refused as truncated. A file renamed into the inbox is complete, but the inbox cannot tell a rename
// from a copy: it too is taken once its size and modification time have held for `settleMs`.
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { watch, type FSWatcher, type Stats } from 'node:fs';
import { join } from 'node:path';
import { readFileBounded, writeFileAtomic } from '../store/atomic-file.js';
import { isEwError } from '../errors.js';

/** A modification time further in the future than this means the clock was set back: the file is settled. */
const FUTURE_MS = 5_000;

export class SnapshotInbox {
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private closed = false;
  /** Unsettled files: size and modification time as last seen, and since when (monotonic ms) unchanged. */
  private readonly watched = new Map<string, { size: number; mtimeMs: number; since: number }>();
  /** A scan scheduled for when the youngest unsettled file will have settled. */
  private settleTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly dir: string,
    private readonly install: (bytes: Uint8Array, source: string) => Promise<unknown>,
    private readonly maxBytes: number,
    private readonly onResult: (file: string, result: { ok: true } | { ok: false; code: string; message: string }) => void,
    private readonly scanIntervalMs = 2000,
    private readonly settleMs = 1000,
  ) {}

  async start(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    try {
      this.watcher = watch(this.dir, () => this.scan());
      this.watcher.on('error', () => undefined);
    } catch {
      /* polling below still works */
    }
    this.timer = setInterval(() => this.scan(), this.scanIntervalMs);
    this.timer.unref();
    this.scan();
    await this.running;
  }

  /** Processes every *.cose file once; scans never overlap. */
  scan(): Promise<void> {
    this.running = this.running.then(() => this.scanOnce()).catch(() => undefined);
    return this.running;
  }

  private async scanOnce(): Promise<void> {
    if (this.closed) return;
    let names: string[];
    try {
      names = (await readdir(this.dir)).filter((n) => n.endsWith('.cose') && !n.startsWith('.')).sort();
    } catch {
      return;
    }
    let wait = Infinity;
    const seenNow = new Set<string>();
    // In the order they were dropped (modification time, then name): snapshots copied in one after
    // another, oldest version first, are installed in that order, not refused as stale because a
    // name sorts first ("v10" before "v9").
    const files: { file: string; st: Stats }[] = [];
    for (const name of names) {
      const file = join(this.dir, name);
      seenNow.add(file);
      const st = await stat(file).catch(() => undefined);
      if (st !== undefined) files.push({ file, st });
    }
    files.sort((a, b) => a.st.mtimeMs - b.st.mtimeMs || (a.file < b.file ? -1 : a.file > b.file ? 1 : 0));
    // A file still being written holds back the ones dropped after it: the order stays.
    let held = false;
    for (const { file, st } of files) {
      // Still being written? Settled when its size and modification time have not changed for
      // settleMs by our own (monotonic) watch. A file old by the wall clock is settled at once, and
      // so is one dated well in the future (the clock was set back); one a hair in the future is
      // just written (a file's time and Date.now() differ by a tick or so): it is watched.
      const age = Date.now() - st.mtimeMs;
      if (!(age >= this.settleMs || age < -FUTURE_MS)) {
        const mono = performance.now();
        const seen = this.watched.get(file);
        if (seen === undefined || seen.size !== st.size || seen.mtimeMs !== st.mtimeMs) {
          this.watched.set(file, { size: st.size, mtimeMs: st.mtimeMs, since: mono });
          wait = Math.min(wait, this.settleMs);
          held = true;
          continue;
        }
        if (mono - seen.since < this.settleMs) {
          wait = Math.min(wait, this.settleMs - (mono - seen.since));
          held = true;
          continue;
        }
      }
      if (held) continue; // settled, but after one that is not: next scan
      this.watched.delete(file);
      try {
        const bytes = await readFileBounded(file, this.maxBytes, { tooLargeCode: 'EW_SNAPSHOT_TOO_LARGE' });
        if (!bytes) continue;
        await this.install(bytes, file);
        await rm(file, { force: true });
        this.onResult(file, { ok: true });
      } catch (err) {
        const code = isEwError(err) ? err.code : 'EW_STORE_IO';
        const message = (err as Error).message;
        this.onResult(file, { ok: false, code, message });
        await rename(file, `${file}.refused`).catch(() => rm(file, { force: true }));
        // Atomically: whoever sees the file sees the reason in it (not an empty file being written).
        await writeFileAtomic(`${file}.refused.txt`, `${code}: ${message}\n`, { mode: 0o600 }).catch(() => undefined);
      }
    }
    for (const file of this.watched.keys()) if (!seenNow.has(file)) this.watched.delete(file);
    if (wait !== Infinity && !this.closed && this.settleTimer === undefined) {
      this.settleTimer = setTimeout(() => {
        this.settleTimer = undefined;
        void this.scan();
      }, Math.ceil(wait) + 10);
      this.settleTimer.unref();
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.watcher?.close();
    if (this.timer) clearInterval(this.timer);
    if (this.settleTimer) clearTimeout(this.settleTimer);
    await this.running;
  }
}
