// The time floor of SPEC section 4: the highest of the system clock, the newest snapshot issuedAt
// seen and the last time persisted. Gateways without a real-time clock boot in the past; the floor
// keeps an expired snapshot expired (and an old one from being replayed as fresh) across reboots.
//
// Time that heals (issue 10). Two clocks and a rule keep one wrong reading from bricking the gateway:
// - Trusted time runs on the MONOTONIC clock from the last evidence: the floor at start, or the
//   newest signed issuedAt seen. While the agent runs, now() never stands still because the wall
//   clock is behind (a board a day slow: an expired snapshot still expires on time).
// - The wall clock moves the PERSISTED floor at most MAX_STEP_MS beyond trusted time. One second ten
//   years ahead (a bad NTP answer) no longer ratchets the floor to 2036 for good: decisions during
//   that second see the wrong clock (and deny, expired), the floor on disk moves an hour at most.
// - Evidence re-anchors trusted time: each accepted snapshot's signed issuedAt. A floor that got
//   ahead anyway (an older version, a clock wrong for a long time) is healed by the next snapshot
//   with a higher version, issued after the held one and valid by the system clock: the store
//   accepts it and reset() brings the floor down to its issuedAt — never below the issuedAt of the
//   newest snapshot held. What that keeps out: freezing time (the monotonic clock runs on) and
//   rolling it back (an older version is refused by version; the floor never goes below signed
//   evidence of the newest snapshot).
//
// Persisted in <stateDir>/time-floor.json as {"floor": <ms>, "iso": "<the same as ISO 8601>"};
// `iso` is for people reading the file and is ignored on load.
import { mkdir } from 'node:fs/promises';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { EwError, isEwError } from '../errors.js';
import { readFileBounded, writeFileAtomic, writeFileAtomicSync } from './atomic-file.js';

export type Clock = () => number;

export interface TimeFloorOptions {
  /** Told about a missing, unreadable or corrupt time-floor.json (the floor then starts at 0). */
  readonly onProblem?: (msg: string) => void;
  /** The monotonic clock, ms (injectable for tests; default performance.now). */
  readonly monotonic?: Clock;
}

/** How far beyond trusted time the wall clock may move the persisted floor. */
export const MAX_STEP_MS = 60 * 60 * 1000;

export const TIME_FLOOR_FILE = 'time-floor.json';
/** time-floor.json is a few dozen bytes; anything much larger is not ours. */
const MAX_TIME_FLOOR_BYTES = 4096;

export class TimeFloor {
  /** The system clock (injectable for tests), ms since the epoch. */
  readonly clock: Clock;
  readonly path: string;
  private readonly stateDir: string;
  private value: number;
  private persisting: Promise<void> = Promise.resolve();
  private readonly monotonic: Clock;
  /** Trusted time = base + (monotonic() - baseMono): the last evidence, advanced by the monotonic clock. */
  private base: number;
  private baseMono: number;

  private constructor(stateDir: string, clock: Clock, floor: number, monotonic: Clock) {
    this.stateDir = stateDir;
    this.path = join(stateDir, TIME_FLOOR_FILE);
    this.clock = clock;
    this.value = floor;
    this.monotonic = monotonic;
    this.base = floor;
    this.baseMono = monotonic();
  }

  /** Reads <stateDir>/time-floor.json. Never throws for its content: a bad file means floor 0. */
  static async load(stateDir: string, clock: Clock = Date.now, opts: TimeFloorOptions = {}): Promise<TimeFloor> {
    const path = join(stateDir, TIME_FLOOR_FILE);
    const problem = (msg: string): void => opts.onProblem?.(`time floor ${path}: ${msg}`);
    let floor = 0;
    try {
      const bytes = await readFileBounded(path, MAX_TIME_FLOOR_BYTES);
      if (bytes === undefined) {
        problem('no persisted time floor (first start?); the floor starts at the system clock');
      } else {
        const parsed = parseFloorFile(bytes.toString('utf8'));
        if (typeof parsed === 'string') problem(`${parsed}; ignored, the floor starts at the system clock`);
        else floor = parsed;
      }
    } catch (err) {
      const msg = isEwError(err) ? err.message : (err as Error).message;
      problem(`cannot be read (${msg}); ignored, the floor starts at the system clock`);
    }
    return new TimeFloor(stateDir, clock, floor, opts.monotonic ?? (() => performance.now()));
  }

  /** The last evidence (floor at start, newest issuedAt) advanced by the monotonic clock. */
  trusted(): number {
    return this.base + (this.monotonic() - this.baseMono);
  }

  /** The floor itself: newest issuedAt observed and last time persisted, ms since the epoch (no clock). */
  get floor(): number {
    return this.value;
  }

  /** The effective now: max(system clock, floor, trusted time). No I/O. */
  now(): number {
    const c = this.clock();
    const t = this.trusted();
    const m = c > this.value ? c : this.value;
    return t > m ? Math.floor(t) : m;
  }

  /** Raises the floor with signed evidence (an accepted snapshot's issuedAt), and re-anchors trusted time. Never lowers it. */
  observe(ms: number): void {
    if (!Number.isFinite(ms)) return;
    if (ms > this.value) this.value = Math.floor(ms);
    if (ms > this.trusted()) {
      this.base = Math.floor(ms);
      this.baseMono = this.monotonic();
    }
  }

  /**
   * Brings a floor that got ahead back to signed evidence: the issuedAt of a snapshot accepted
   * although it expired by the floor (see the top of this file). Trusted time restarts from it.
   */
  reset(issuedAt: number): void {
    if (!Number.isFinite(issuedAt)) return;
    this.value = Math.floor(issuedAt);
    this.base = this.value;
    this.baseMono = this.monotonic();
  }

  /** Where persist() moves the floor: to the wall clock, but no more than MAX_STEP_MS beyond trusted time; never back. */
  private advance(): void {
    const t = this.trusted();
    const c = this.clock();
    // No evidence at all yet (a first start, or a damaged file): the wall clock is all there is.
    const target = Math.floor(this.base === 0 ? Math.max(t, c) : Math.max(t, Math.min(c, t + MAX_STEP_MS)));
    if (target > this.value) this.value = target;
  }

  /** Raises the floor to the clock and writes it atomically. Concurrent calls are serialized. */
  persist(): Promise<void> {
    const run = async (): Promise<void> => {
      this.advance();
      try {
        await mkdir(this.stateDir, { recursive: true, mode: 0o700 });
      } catch (err) {
        throw mkdirError(this.stateDir, err);
      }
      await writeFileAtomic(this.path, this.serialize());
    };
    const p = this.persisting.then(run, run);
    this.persisting = p.catch(() => undefined);
    return p;
  }

  /** persist() for shutdown and exit handlers. */
  persistSync(): void {
    this.advance();
    try {
      mkdirSync(this.stateDir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw mkdirError(this.stateDir, err);
    }
    writeFileAtomicSync(this.path, this.serialize());
  }

  private serialize(): string {
    return JSON.stringify({ floor: this.value, iso: new Date(this.value).toISOString() }) + '\n';
  }
}

function mkdirError(dir: string, err: unknown): EwError {
  return new EwError('EW_STORE_IO', `cannot create the state directory: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, {
    where: dir,
    cause: err,
  });
}

/** The floor in the file, or a string saying what is wrong with it. */
function parseFloorFile(text: string): number | string {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return 'not JSON';
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return 'not a JSON object';
  const floor = (doc as { floor?: unknown }).floor;
  if (typeof floor !== 'number' || !Number.isSafeInteger(floor) || floor < 0) {
    return `"floor" is ${JSON.stringify(floor) ?? 'missing'}, not a non-negative integer of ms`;
  }
  // new Date() takes up to 8.64e15 ms; a floor beyond it cannot be a time.
  if (floor > 8.64e15) return `"floor" ${floor} is beyond any date`;
  return floor;
}
