// The time floor of SPEC section 4: the highest of the system clock, the newest snapshot issuedAt
// seen and the last time persisted. Gateways without a real-time clock boot in the past; the floor
// keeps an expired snapshot expired (and an old one from being replayed as fresh) across reboots.
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
}

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

  private constructor(stateDir: string, clock: Clock, floor: number) {
    this.stateDir = stateDir;
    this.path = join(stateDir, TIME_FLOOR_FILE);
    this.clock = clock;
    this.value = floor;
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
    return new TimeFloor(stateDir, clock, floor);
  }

  /** The floor itself: newest issuedAt observed and last time persisted, ms since the epoch (no clock). */
  get floor(): number {
    return this.value;
  }

  /** The effective now: max(system clock, floor). No I/O. */
  now(): number {
    const c = this.clock();
    return c > this.value ? c : this.value;
  }

  /** Raises the floor (e.g. with an accepted snapshot's issuedAt). Never lowers it. */
  observe(ms: number): void {
    if (Number.isFinite(ms) && ms > this.value) this.value = Math.floor(ms);
  }

  /** Raises the floor to the clock and writes it atomically. Concurrent calls are serialized. */
  persist(): Promise<void> {
    const run = async (): Promise<void> => {
      this.observe(this.clock());
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
    this.observe(this.clock());
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
