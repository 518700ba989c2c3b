// The scheduling core of `fleet publish`: which job is sent when, how many at once, how often again.
// It knows nothing of MQTT or files: `prepare` and `send` are passed in (test/unit/fleet-publish-
// schedule.test.ts drives it with a fake `send` and counts what is in flight).
//
//   - at most `concurrency` jobs are being prepared or sent at any moment (a worker pool of that
//     size: a job waiting out its back-off keeps its worker, so nothing more starts meanwhile);
//   - `prepare` throwing fails the job at once (a broken file does not get better by retrying);
//   - `send` rejecting is retried up to `retries` more times, after backoffMs(1), backoffMs(2), ...;
//   - once `abandoned()` returns a reason (the broker is unreachable, the user pressed Ctrl-C),
//     jobs not yet sent fail with it without another attempt;
//   - `settled` is called exactly once per job.

export type Outcome = { readonly ok: true; readonly attempts: number } | { readonly ok: false; readonly reason: string; readonly attempts: number };

export interface ScheduleOptions<J, P> {
  readonly concurrency: number;
  /** Attempts after the first one. */
  readonly retries: number;
  /** The wait before attempt `n + 1`, n >= 1. */
  readonly backoffMs: (n: number) => number;
  /** Throws: the job fails without an attempt. */
  readonly prepare: (job: J) => P;
  /** Rejects: the attempt failed, retried while attempts are left. */
  readonly send: (job: J, prepared: P) => Promise<void>;
  readonly settled: (job: J, outcome: Outcome) => void;
  /** A reason once no further attempt should be made. */
  readonly abandoned?: () => string | undefined;
  readonly wait?: (ms: number) => Promise<void>;
}

/** Exponential back-off: 500 ms, 1 s, 2 s, ... at most 10 s. */
export function defaultBackoffMs(n: number): number {
  return Math.min(10_000, 500 * 2 ** Math.min(n - 1, 20));
}

const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** Runs every job to an outcome; resolves when all are settled. */
export async function runJobs<J, P>(jobs: readonly J[], o: ScheduleOptions<J, P>): Promise<void> {
  if (!Number.isSafeInteger(o.concurrency) || o.concurrency < 1) throw new RangeError(`concurrency must be a positive integer, got ${o.concurrency}`);
  if (!Number.isSafeInteger(o.retries) || o.retries < 0) throw new RangeError(`retries must be a non-negative integer, got ${o.retries}`);
  const wait = o.wait ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  let next = 0;

  const runOne = async (job: J): Promise<Outcome> => {
    const gone = o.abandoned?.();
    if (gone !== undefined) return { ok: false, reason: gone, attempts: 0 };
    let prepared: P;
    try {
      prepared = o.prepare(job);
    } catch (err) {
      return { ok: false, reason: message(err), attempts: 0 };
    }
    for (let attempt = 1; ; attempt++) {
      try {
        await o.send(job, prepared);
        return { ok: true, attempts: attempt };
      } catch (err) {
        // An attempted job reports its own last failure, also when abandoned since.
        const reason = attempt > 1 ? `${message(err)} (after ${attempt} attempts)` : message(err);
        if (attempt > o.retries || o.abandoned?.() !== undefined) return { ok: false, reason, attempts: attempt };
        await wait(o.backoffMs(attempt));
        if (o.abandoned?.() !== undefined) return { ok: false, reason, attempts: attempt };
      }
    }
  };

  const worker = async (): Promise<void> => {
    while (next < jobs.length) {
      const job = jobs[next++]!;
      o.settled(job, await runOne(job));
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.concurrency, jobs.length) }, worker));
}
