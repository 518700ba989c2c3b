import t from 'tap';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MAX_STEP_MS, TimeFloor, TIME_FLOOR_FILE } from '../../src/store/time-floor.js';

const T0 = Date.UTC(2026, 0, 1);
const DAY = 24 * 3600 * 1000;

function fakeClock(start: number): { clock: () => number; set: (ms: number) => void } {
  let now = start;
  return { clock: () => now, set: (ms) => (now = ms) };
}

/** The monotonic clock of every TimeFloor here: it moves only when a test moves it. */
const MONO = { now: 0 };
const monotonic = () => MONO.now;

function floorFile(dir: string): { floor: number; iso: string } {
  return JSON.parse(readFileSync(join(dir, TIME_FLOOR_FILE), 'utf8')) as { floor: number; iso: string };
}

t.test('missing file: floor 0, the clock rules, the problem is reported', async (t) => {
  const dir = t.testdir();
  const problems: string[] = [];
  const c = fakeClock(T0);
  const tf = await TimeFloor.load(dir, c.clock, { monotonic, onProblem: (m) => problems.push(m) });
  t.equal(tf.floor, 0);
  t.equal(tf.now(), T0);
  t.equal(problems.length, 1);
  t.match(problems[0], /no persisted time floor/);
  t.match(problems[0], join(dir, TIME_FLOOR_FILE));
  t.same(readdirSync(dir), [], 'loading writes nothing');
});

t.test('observe raises and never lowers; now() is max(clock, floor)', async (t) => {
  const c = fakeClock(T0);
  const tf = await TimeFloor.load(t.testdir(), c.clock, { monotonic });
  tf.observe(T0 + DAY);
  t.equal(tf.floor, T0 + DAY);
  t.equal(tf.now(), T0 + DAY, 'floor ahead of the clock');
  tf.observe(T0 - DAY);
  t.equal(tf.floor, T0 + DAY, 'not lowered');
  tf.observe(Number.NaN);
  tf.observe(Number.POSITIVE_INFINITY);
  t.equal(tf.floor, T0 + DAY, 'non-finite values are ignored');
  c.set(T0 + 2 * DAY);
  t.equal(tf.now(), T0 + 2 * DAY, 'clock ahead of the floor');
  t.equal(tf.floor, T0 + DAY, 'now() does not move the floor');
});

t.test('persist moves the floor to the clock, at most an hour past signed evidence; a reopen with the clock set back keeps it', async (t) => {
  const dir = t.testdir();
  const c = fakeClock(T0 + 5 * DAY);
  const tf = await TimeFloor.load(dir, c.clock, { monotonic });
  tf.observe(T0 + 5 * DAY - 30 * 60 * 1000); // a snapshot issued half an hour ago
  await tf.persist();
  t.equal(tf.floor, T0 + 5 * DAY, 'the clock raised the floor (within an hour of the evidence)');
  t.same(floorFile(dir), { floor: T0 + 5 * DAY, iso: new Date(T0 + 5 * DAY).toISOString() });

  // A reboot without a real-time clock: the system clock is back in 1970.
  const problems: string[] = [];
  const booted = fakeClock(1000);
  const again = await TimeFloor.load(dir, booted.clock, { monotonic, onProblem: (m) => problems.push(m) });
  t.same(problems, []);
  t.equal(again.floor, T0 + 5 * DAY);
  t.equal(again.now(), T0 + 5 * DAY);
  await again.persist();
  t.equal(floorFile(dir).floor, T0 + 5 * DAY, 'a clock behind the floor does not lower it');

  again.observe(T0 + 9 * DAY);
  again.persistSync();
  t.equal(floorFile(dir).floor, T0 + 9 * DAY, 'persistSync');
  t.equal((await TimeFloor.load(dir, booted.clock, { monotonic })).floor, T0 + 9 * DAY);
  t.same(readdirSync(dir), [TIME_FLOOR_FILE], 'no temp file left');
});

t.test('time that heals: a clock ten years ahead for a moment moves the floor an hour at most', async (t) => {
  const dir = t.testdir();
  MONO.now = 0;
  const c = fakeClock(T0);
  const tf = await TimeFloor.load(dir, c.clock, { monotonic });
  tf.observe(T0); // a snapshot issued now
  c.set(T0 + 3650 * DAY); // a bad NTP answer
  t.equal(tf.now(), T0 + 3650 * DAY, 'decisions in that moment see the wrong clock (and deny: expired)');
  await tf.persist();
  t.equal(tf.floor, T0 + MAX_STEP_MS, 'the floor on disk moves one step, not ten years');
  c.set(T0 + 1000);
  MONO.now = 1000;
  t.equal(tf.now(), T0 + MAX_STEP_MS, 'and the gateway is an hour ahead at worst, not bricked');
  const reopened = await TimeFloor.load(dir, c.clock, { monotonic });
  t.equal(reopened.floor, T0 + MAX_STEP_MS);
});

t.test('time that heals: while running, the floor advances with the monotonic clock when the wall clock is behind', async (t) => {
  const dir = t.testdir();
  MONO.now = 5_000;
  const c = fakeClock(T0 - DAY); // the wall clock a day slow
  const tf = await TimeFloor.load(dir, c.clock, { monotonic });
  tf.observe(T0); // signed evidence: a snapshot issued at T0
  MONO.now = 5_000 + 2 * 3600 * 1000; // two hours later
  c.set(T0 - DAY + 2 * 3600 * 1000);
  t.equal(tf.now(), T0 + 2 * 3600 * 1000, 'now() is the evidence plus the time that passed, not the slow wall clock');
  await tf.persist();
  t.equal(tf.floor, T0 + 2 * 3600 * 1000, 'and so is the floor');
});

t.test('time that heals: reset brings a floor that got ahead back to signed evidence', async (t) => {
  const dir = t.testdir();
  MONO.now = 0;
  writeFileSync(join(dir, TIME_FLOOR_FILE), JSON.stringify({ floor: T0 + 3650 * DAY }));
  const c = fakeClock(T0);
  const tf = await TimeFloor.load(dir, c.clock, { monotonic });
  t.equal(tf.now(), T0 + 3650 * DAY, 'a floor from an older version, ten years ahead');
  tf.reset(T0 - 60_000);
  t.equal(tf.floor, T0 - 60_000);
  t.equal(tf.now(), T0, 'the wall clock rules again');
  await tf.persist();
  t.equal(floorFile(dir).floor, T0, 'persisted');
});

t.test('persist creates the state directory', async (t) => {
  const dir = join(t.testdir(), 'var', 'lib', 'edgewarden');
  const tf = await TimeFloor.load(dir, () => T0, { monotonic });
  await tf.persist();
  t.equal(floorFile(dir).floor, T0);
});

t.test('concurrent persists leave the highest floor', async (t) => {
  const dir = t.testdir();
  const c = fakeClock(T0);
  const tf = await TimeFloor.load(dir, c.clock, { monotonic });
  const all: Promise<void>[] = [];
  for (let i = 1; i <= 10; i++) {
    tf.observe(T0 + i * DAY);
    all.push(tf.persist());
  }
  await Promise.all(all);
  t.equal(floorFile(dir).floor, T0 + 10 * DAY);
  t.same(readdirSync(dir), [TIME_FLOOR_FILE]);
});

const corrupt: Array<[string, string | Buffer]> = [
  ['empty', ''],
  ['not JSON', '{"floor": 17'],
  ['binary', Buffer.from([0xff, 0x00, 0x13, 0x37, 0xde, 0xad])],
  ['an array', '[1767225600000]'],
  ['null', 'null'],
  ['a number', '1767225600000'],
  ['floor missing', '{"iso":"2026-01-01T00:00:00.000Z"}'],
  ['floor a string', '{"floor":"1767225600000"}'],
  ['floor negative', '{"floor":-5}'],
  ['floor fractional', '{"floor":1.5}'],
  ['floor beyond any date', '{"floor":9000000000000000}'],
  ['too large', JSON.stringify({ floor: T0, pad: 'x'.repeat(10000) })],
];

for (const [name, content] of corrupt) {
  t.test(`corrupt time-floor.json (${name}) is survived: floor 0, problem reported`, async (t) => {
    const dir = t.testdir({ [TIME_FLOOR_FILE]: content });
    const problems: string[] = [];
    const tf = await TimeFloor.load(dir, () => T0, { onProblem: (m) => problems.push(m) });
    t.equal(tf.floor, 0);
    t.equal(tf.now(), T0);
    t.equal(problems.length, 1);
    t.match(problems[0], TIME_FLOOR_FILE);
    t.match(problems[0], /ignored/);
    await tf.persist();
    t.equal(floorFile(dir).floor, T0, 'the next persist repairs the file');
  });
}

t.test('a time-floor.json that is a directory is survived', async (t) => {
  const dir = t.testdir({ [TIME_FLOOR_FILE]: {} });
  const problems: string[] = [];
  const tf = await TimeFloor.load(dir, () => T0, { onProblem: (m) => problems.push(m) });
  t.equal(tf.floor, 0);
  t.match(problems, [/cannot be read .*not a regular file/]);
  await t.rejects(tf.persist(), { code: 'EW_STORE_IO' }, 'persist reports the I/O error');
});

t.test('without onProblem a corrupt file is silent', async (t) => {
  const dir = t.testdir({ [TIME_FLOOR_FILE]: 'garbage' });
  const tf = await TimeFloor.load(dir);
  t.equal(tf.floor, 0);
  t.ok(Math.abs(tf.now() - Date.now()) < 5000, 'the default clock is the system clock');
});
