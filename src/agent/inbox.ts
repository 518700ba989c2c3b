// Snapshots dropped as files into <stateDir>/inbox (sites with no cloud link, first provisioning).
// An accepted file is removed; a refused one is renamed to <name>.refused with the reason beside it
// in <name>.refused.txt. The directory is watched, and scanned every few seconds as well (fs.watch
// misses events on some filesystems). A file is taken once it has not changed for `settleMs`: `cp`
// into the inbox creates the file before it writes it, and a half-written snapshot must not be
// refused as truncated (writing elsewhere and renaming into the inbox is taken as soon as seen).
import { mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { watch, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
import { readFileBounded } from '../store/atomic-file.js';
import { isEwError } from '../errors.js';

export class SnapshotInbox {
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private closed = false;
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
    for (const name of names) {
      const file = join(this.dir, name);
      // Still being written? (A modification time in the future, after the clock was set back, counts as settled.)
      const age = await stat(file).then((st) => Date.now() - st.mtimeMs, () => undefined);
      if (age === undefined) continue;
      if (age >= 0 && age < this.settleMs) {
        wait = Math.min(wait, this.settleMs - age);
        continue;
      }
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
        await writeFile(`${file}.refused.txt`, `${code}: ${message}\n`, { mode: 0o600 }).catch(() => undefined);
      }
    }
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
