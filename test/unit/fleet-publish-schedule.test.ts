// The scheduling core of `fleet publish` with a fake send: never more than `concurrency` in flight,
// retries with back-off, no retry of a job that cannot be prepared, abandonment, one outcome per job.
import t from 'tap';
import { defaultBackoffMs, runJobs, type Outcome } from '../../src/fleet/publish-schedule.js';
import { progressLine } from '../../src/cli/fleet-publish.js';

/** A fake send: resolves or rejects after a random few event-loop turns, counting what is in flight. */
function fakeSend(failFirst: (job: number, attempt: number) => boolean) {
  let inFlight = 0;
  const s = { max: 0, attempts: new Map<number, number>() };
  const send = async (job: number) => {
    inFlight++;
    s.max = Math.max(s.max, inFlight);
    const attempt = (s.attempts.get(job) ?? 0) + 1;
    s.attempts.set(job, attempt);
    try {
      for (let i = Math.floor(Math.random() * 5); i >= 0; i--) await new Promise((r) => setImmediate(r));
      if (failFirst(job, attempt)) throw new Error(`fake failure ${job}/${attempt}`);
    } finally {
      inFlight--;
    }
  };
  return { s, send };
}

const noWait = () => Promise.resolve();

t.test('never more than `concurrency` sends in flight, and the bound is used', async (t) => {
  for (const concurrency of [1, 3, 32]) {
    const jobs = Array.from({ length: 500 }, (_, i) => i);
    const { s, send } = fakeSend((job, attempt) => job % 7 === 0 && attempt === 1);
    const outcomes = new Map<number, Outcome>();
    await runJobs(jobs, {
      concurrency,
      retries: 3,
      backoffMs: () => 0,
      wait: noWait,
      prepare: (j) => j,
      send: (j) => send(j),
      settled: (j, o) => {
        t.notOk(outcomes.has(j), `job ${j} settled once`);
        outcomes.set(j, o);
      },
    });
    t.ok(s.max <= concurrency, `concurrency ${concurrency}: at most ${s.max} in flight`);
    t.equal(s.max, concurrency, `concurrency ${concurrency}: the bound is reached`);
    t.equal(outcomes.size, 500);
    t.ok([...outcomes.values()].every((o) => o.ok), 'all published (the failed first attempts retried)');
    t.equal(outcomes.get(7)!.attempts, 2);
    t.equal(outcomes.get(8)!.attempts, 1);
  }
});

t.test('retries: `retries` more attempts with the back-off between, then the last reason', async (t) => {
  const waits: number[] = [];
  const { s, send } = fakeSend((job) => job === 1);
  const outcomes = new Map<number, Outcome>();
  await runJobs([0, 1, 2], {
    concurrency: 2,
    retries: 3,
    backoffMs: defaultBackoffMs,
    wait: async (ms) => void waits.push(ms),
    prepare: (j) => j,
    send: (j) => send(j),
    settled: (j, o) => outcomes.set(j, o),
  });
  t.equal(s.attempts.get(1), 4, 'the first attempt and 3 retries');
  t.same(waits, [500, 1000, 2000], 'exponential back-off');
  t.same(outcomes.get(1), { ok: false, reason: 'fake failure 1/4 (after 4 attempts)', attempts: 4 });
  t.same(outcomes.get(0), { ok: true, attempts: 1 });
  t.equal(defaultBackoffMs(10), 10_000, 'capped at 10 s');
});

t.test('a job that cannot be prepared fails at once, without a send; the others go on', async (t) => {
  const { s, send } = fakeSend(() => false);
  const outcomes = new Map<number, Outcome>();
  await runJobs([0, 1, 2, 3], {
    concurrency: 2,
    retries: 3,
    backoffMs: () => 0,
    wait: noWait,
    prepare: (j) => {
      if (j === 2) throw new Error('sha256 mismatch');
      return j;
    },
    send: (j) => send(j),
    settled: (j, o) => outcomes.set(j, o),
  });
  t.same(outcomes.get(2), { ok: false, reason: 'sha256 mismatch', attempts: 0 });
  t.notOk(s.attempts.has(2), 'never sent');
  t.same([0, 1, 3].map((j) => outcomes.get(j)!.ok), [true, true, true]);
});

t.test('once abandoned, the jobs not yet sent fail with the reason, without an attempt', async (t) => {
  let gone: string | undefined;
  const { s, send } = fakeSend(() => true);
  const outcomes = new Map<number, Outcome>();
  await runJobs(Array.from({ length: 50 }, (_, i) => i), {
    concurrency: 4,
    retries: 1,
    backoffMs: () => 0,
    wait: noWait,
    abandoned: () => gone,
    prepare: (j) => j,
    send: (j) => send(j),
    settled: (j, o) => {
      outcomes.set(j, o);
      gone ??= 'the broker is unreachable';
    },
  });
  t.equal(outcomes.size, 50, 'every job settled');
  const unattempted = [...outcomes.values()].filter((o) => o.attempts === 0);
  t.ok(unattempted.length >= 40, `${unattempted.length} failed without an attempt`);
  t.ok(unattempted.every((o) => !o.ok && o.reason === 'the broker is unreachable'));
  t.ok(s.attempts.size <= 8, `${s.attempts.size} jobs were attempted at all`);
});

t.test('bad parameters are refused', async (t) => {
  const o = { retries: 0, backoffMs: () => 0, prepare: () => 0, send: async () => {}, settled: () => {} };
  await t.rejects(runJobs([1], { ...o, concurrency: 0 }), RangeError);
  await t.rejects(runJobs([1], { ...o, concurrency: 1, retries: -1 }), RangeError);
});

t.test('the progress line', async (t) => {
  t.equal(progressLine({ published: 400, unchanged: 10, failed: 2 }, 1000), '[########............] 412/1000 published 400 unchanged 10 failed 2');
  t.equal(progressLine({ published: 0, unchanged: 0, failed: 0 }, 0), '[####################] 0/0 published 0 unchanged 0 failed 0');
});
