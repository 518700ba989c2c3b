import t, { type Test } from 'tap';
import { appendFileSync, chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AUDIT_FILE,
  AUDIT_ROTATED_FILE,
  AuditLog,
  MIN_MAX_BYTES,
  readAudit,
  readAuditDetailed,
  type AuditEntry,
  type AuditLogOptions,
  type AuditRecord,
} from '../../src/audit/audit-log.js';

const T0 = Date.parse('2027-03-01T12:00:00.000Z');

/** A clock the test moves by hand. */
function manualClock(start = T0) {
  let now = start;
  return { clock: () => now, advance: (ms: number) => (now += ms), set: (ms: number) => (now = ms) };
}

async function openLog(t: Test, opts: Partial<AuditLogOptions> & { dir: string }): Promise<{ log: AuditLog; errors: Error[] }> {
  const errors: Error[] = [];
  // A long interval by default: tests flush by hand unless they test the timer.
  const log = await AuditLog.open({ flushIntervalMs: 60_000, onError: (e) => errors.push(e), ...opts });
  t.teardown(() => log.close().catch(() => undefined));
  return { log, errors };
}

const deny = (over: Partial<AuditRecord> = {}): AuditRecord => ({
  principal: 'tech-anna',
  clientId: 'anna-phone',
  action: 'publish',
  topic: 'things/oven-1/cmd',
  thing: 'oven-1',
  decision: 'deny',
  reason: 'TOPIC_DENIED',
  snapshotVersion: 7,
  ...over,
});

const allow = (over: Partial<AuditRecord> = {}): AuditRecord => ({
  principal: 'tech-anna',
  clientId: 'anna-phone',
  action: 'EXECUTE_THING_COMMAND',
  topic: 'things/oven-1/cmd/start',
  thing: 'oven-1',
  decision: 'allow',
  snapshotVersion: 7,
  ...over,
});

const fileLines = (dir: string, name = AUDIT_FILE): string[] =>
  readFileSync(join(dir, name), 'utf8')
    .split('\n')
    .filter((l) => l.length > 0);

const diskBytes = (dir: string): number =>
  readdirSync(dir).reduce((sum, f) => sum + statSync(join(dir, f)).size, 0);

t.test('record, flush, read back', async (t) => {
  const dir = join(t.testdir(), 'audit');
  const c = manualClock();
  const { log, errors } = await openLog(t, { dir, clock: c.clock });
  t.equal(log.dir, dir);
  log.record(allow());
  c.advance(5);
  log.record(deny({ principal: null, clientId: null, thing: null, source: 'cloud' }));
  log.record(allow({ time: '2027-03-01T13:00:00+01:00', action: 'connect', topic: undefined, thing: undefined }));
  t.same(log.stats(), { recorded: 3, written: 0, droppedBytes: 0, coalesced: 0, pendingEntries: 3, droppedEntries: 0, rotations: 0, lostBeforeUpload: 0, lastLoss: null, seq: 3 });
  t.same(readFileSync(join(dir, AUDIT_FILE), 'utf8'), '', 'nothing on disk before the flush');

  await log.flush();
  t.match(log.stats(), { recorded: 3, written: 3, pendingEntries: 0 });
  const entries = await readAudit(dir);
  t.same(entries, [
    {
      time: '2027-03-01T12:00:00.000Z',
      seq: 1,
      decision: 'allow',
      principal: 'tech-anna',
      clientId: 'anna-phone',
      action: 'EXECUTE_THING_COMMAND',
      thing: 'oven-1',
      topic: 'things/oven-1/cmd/start',
      snapshotVersion: 7,
    },
    {
      time: '2027-03-01T12:00:00.005Z',
      seq: 2,
      decision: 'deny',
      reason: 'TOPIC_DENIED',
      principal: null,
      clientId: null,
      action: 'publish',
      thing: null,
      topic: 'things/oven-1/cmd',
      snapshotVersion: 7,
      source: 'cloud',
    },
    { time: '2027-03-01T12:00:00.000Z', seq: 3, decision: 'allow', principal: 'tech-anna', clientId: 'anna-phone', action: 'connect', snapshotVersion: 7 },
  ]);
  const lines = fileLines(dir);
  t.equal(lines.length, 3, 'JSON Lines, one entry a line');
  t.same(JSON.parse(lines[0]!), entries[0]);
  t.same(await readAudit(dir, { limit: 2 }), entries.slice(1), 'limit: the newest');
  t.same(await readAudit(dir, { limit: 0 }), []);

  await log.close();
  await log.close();
  t.same(errors, []);
  log.record(allow());
  log.flushSync();
  await log.flush();
  t.equal(fileLines(dir).length, 3, 'nothing is written after close');
  t.match(log.stats(), { droppedEntries: 1 });
  t.match(errors, [{ code: 'EW_STORE_IO', message: /1 audit record\(s\) dropped: recorded after close/ }]);
});

t.test('reopening adds to the existing log', async (t) => {
  const dir = t.testdir();
  const a = await AuditLog.open({ dir, flushIntervalMs: 60_000 });
  a.record(allow({ thing: 'first' }));
  await a.close();
  const b = await AuditLog.open({ dir, flushIntervalMs: 60_000 });
  b.record(allow({ thing: 'second' }));
  await b.close();
  t.same((await readAudit(dir)).map((e) => e.thing), ['first', 'second']);
});

t.test('identical denials are coalesced with a count; allows never', async (t) => {
  const dir = t.testdir();
  const c = manualClock();
  const { log } = await openLog(t, { dir, clock: c.clock });

  // A client floods denied publishes: 1000 in 0.5 s.
  for (let i = 0; i < 1000; i++) {
    log.record(deny());
    c.advance(0.5);
  }
  t.match(log.stats(), { recorded: 1000, coalesced: 999, pendingEntries: 1 });
  // 1 s after the first of the line, a new line starts.
  c.set(T0 + 1000);
  log.record(deny());
  log.record(deny());
  // Any field that differs starts a new line.
  for (const over of [
    { topic: 'things/oven-2/cmd' },
    { thing: 'oven-2' },
    { principal: 'tech-bob' },
    { clientId: 'other' },
    { action: 'subscribe' },
    { reason: 'RATE_LIMITED' },
    { snapshotVersion: 8 },
    { principal: null },
  ]) {
    log.record(deny(over));
    log.record(deny(over));
  }
  // Identical allows: one line each.
  for (let i = 0; i < 5; i++) log.record(allow());
  // An allow between two identical denials separates them.
  log.record(deny());
  log.record(allow());
  log.record(deny());
  await log.flush();

  const entries = await readAudit(dir);
  t.same(
    entries.map((e) => [e.decision, e.count ?? 1]),
    [
      ['deny', 1000],
      ['deny', 2],
      ...Array.from({ length: 8 }, () => ['deny', 2]),
      ...Array.from({ length: 5 }, () => ['allow', 1]),
      ['deny', 1],
      ['allow', 1],
      ['deny', 1],
    ],
  );
  t.equal(entries[0]!.time, '2027-03-01T12:00:00.000Z', 'a coalesced line has the time of its first denial');
  t.equal(entries[1]!.time, '2027-03-01T12:00:01.000Z');
  t.notOk('count' in entries[entries.length - 1]!, 'no count for a single denial');
  t.match(log.stats(), { recorded: 1000 + 2 + 16 + 5 + 3, coalesced: 999 + 1 + 8, written: 18 });
});

t.test('a flushed denial is not coalesced into any more', async (t) => {
  const dir = t.testdir();
  const c = manualClock();
  const { log } = await openLog(t, { dir, clock: c.clock });
  log.record(deny());
  await log.flush();
  log.record(deny());
  log.record(deny());
  await log.flush();
  t.same((await readAudit(dir)).map((e) => e.count ?? 1), [1, 2]);
});

t.test('rotation keeps the total within maxBytes and drops the oldest', async (t) => {
  const dir = t.testdir();
  const maxBytes = MIN_MAX_BYTES;
  const c = manualClock();
  const { log } = await openLog(t, { dir, clock: c.clock, maxBytes });
  const N = 3000; // ~200 bytes each: about 9 files' worth
  for (let i = 0; i < N; i++) {
    log.record(allow({ thing: `thing-${i}` }));
    c.advance(1);
    if (i % 97 === 0) {
      await log.flush();
      t.ok(diskBytes(dir) <= maxBytes, `after ${i + 1} records: ${diskBytes(dir)} bytes on disk`);
    }
  }
  await log.flush();
  t.same(readdirSync(dir).sort(), [AUDIT_FILE, AUDIT_ROTATED_FILE], 'exactly one rotated file');
  t.ok(statSync(join(dir, AUDIT_FILE)).size <= maxBytes / 2);
  t.ok(statSync(join(dir, AUDIT_ROTATED_FILE)).size <= maxBytes / 2);
  t.ok(diskBytes(dir) <= maxBytes);
  t.ok(diskBytes(dir) > maxBytes / 2, 'the rotated file is kept');

  const entries = await readAudit(dir);
  const ids = entries.map((e) => Number(e.thing!.slice('thing-'.length)));
  t.equal(ids[ids.length - 1], N - 1, 'the newest is kept');
  t.ok(ids[0]! > 0, `the oldest are dropped (first kept: ${ids[0]})`);
  t.same(ids, Array.from({ length: ids.length }, (_, i) => ids[0]! + i), 'what is kept is contiguous and in order');

  const s = log.stats();
  t.ok(s.rotations >= 5, `${s.rotations} rotations`);
  t.equal(s.written, N);
  // Lines differ only in the digits of the thing and of the seq: the bytes of line i are base +
  // digits(i) + digits(i + 1).
  const newest = fileLines(dir).at(-1)!;
  const base = Buffer.byteLength(newest) + 1 - String(N - 1).length - String(N).length;
  let droppedLines = 0;
  for (let i = 0; i < ids[0]!; i++) droppedLines += base + String(i).length + String(i + 1).length;
  t.equal(s.droppedBytes, droppedLines, 'droppedBytes counts exactly the bytes of the dropped lines');
  t.equal(statSync(join(dir, AUDIT_ROTATED_FILE)).mode & 0o777, 0o600, 'the rotated file is 0600');

  // One flush with a lot buffered still rotates as it goes.
  for (let i = 0; i < 1000; i++) log.record(allow({ thing: `burst-${i}` }));
  await log.flush();
  t.ok(diskBytes(dir) <= maxBytes, 'a large flush stays within the bound');
  t.equal((await readAudit(dir)).at(-1)?.thing, 'burst-999');
});

t.test('maxBytes below the minimum is refused', async (t) => {
  await t.rejects(AuditLog.open({ dir: t.testdir(), maxBytes: 1000 }), RangeError);
  await t.rejects(AuditLog.open({ dir: t.testdir(), flushIntervalMs: 0 }), RangeError);
});

t.test('a torn last line is skipped, and the next writer starts on a new line', async (t) => {
  const good = JSON.stringify({ time: '2027-03-01T12:00:00.000Z', decision: 'deny', reason: 'NOT_GRANTED', principal: 'p', clientId: 'c', action: 'publish', snapshotVersion: 3 });
  const dir = t.testdir({ [AUDIT_FILE]: `${good}\n${good}\n{"time":"2027-03-01T12:00:01.000Z","decis` });
  const r1 = await readAuditDetailed(dir);
  t.equal(r1.entries.length, 2);
  t.equal(r1.corrupt, 1, 'the torn line is counted');

  const { log } = await openLog(t, { dir });
  log.record(allow());
  await log.flush();
  const r2 = await readAuditDetailed(dir);
  t.equal(r2.entries.length, 3, 'the new entry is readable');
  t.equal(r2.entries[2]!.action, 'EXECUTE_THING_COMMAND');
  t.equal(r2.corrupt, 1, 'the torn line stays one skipped line');
});

t.test('corrupt lines: garbage, NULs from a power cut, wrong shapes, a huge line', async (t) => {
  const good = (i: number) => JSON.stringify({ time: `2027-03-01T12:00:0${i}.000Z`, decision: 'allow', principal: null, clientId: null, action: 'connect', snapshotVersion: null });
  const dir = t.testdir();
  writeFileSync(
    join(dir, AUDIT_ROTATED_FILE),
    [good(1), 'not json', '[1,2]', '{"time":1,"decision":"allow","action":"x"}', '{"time":"t","decision":"maybe","action":"x"}', good(2), ''].join('\n'),
  );
  writeFileSync(join(dir, AUDIT_FILE), `\0\0\0\0${good(3)}\n\0\0\0\0\n${'x'.repeat(3 * 1024 * 1024)}\n${good(4)}\n`);
  const r = await readAuditDetailed(dir);
  t.same(
    r.entries.map((e) => e.time),
    ['2027-03-01T12:00:01.000Z', '2027-03-01T12:00:02.000Z', '2027-03-01T12:00:03.000Z', '2027-03-01T12:00:04.000Z'],
    'rotated file first, then audit.log; leading NULs are tolerated',
  );
  t.equal(r.corrupt, 6);
  t.same((await readAuditDetailed(dir, { limit: 1 })).entries.map((e) => e.time), ['2027-03-01T12:00:04.000Z']);
  t.same(await readAudit(join(dir, 'missing')), [], 'a missing directory has no entries');
});

t.test('flushSync writes and fsyncs at once, also while an async flush is under way', async (t) => {
  const dir = t.testdir();
  const { log } = await openLog(t, { dir });
  log.record(allow({ thing: 'a' }));
  log.flushSync();
  t.same(fileLines(dir).map((l) => (JSON.parse(l) as AuditEntry).thing), ['a'], 'on disk when flushSync returns');

  for (let i = 0; i < 50; i++) log.record(allow({ thing: `b${i}` }));
  const pending = log.flush(); // its write is handed to the thread pool...
  for (let i = 0; i < 50; i++) log.record(allow({ thing: `c${i}` }));
  log.flushSync(); // ...and written again at the same place, then the rest
  const expected = ['a', ...Array.from({ length: 50 }, (_, i) => `b${i}`), ...Array.from({ length: 50 }, (_, i) => `c${i}`)];
  t.same(fileLines(dir).map((l) => (JSON.parse(l) as AuditEntry).thing), expected, 'everything, in order, once');
  await pending;
  log.record(allow({ thing: 'd' }));
  await log.flush();
  t.same(fileLines(dir).map((l) => (JSON.parse(l) as AuditEntry).thing), [...expected, 'd'], 'still once each after the async write lands');
  t.match(log.stats(), { written: 102, pendingEntries: 0 });
});

t.test('flushSync across rotations', async (t) => {
  const dir = t.testdir();
  const { log } = await openLog(t, { dir, maxBytes: MIN_MAX_BYTES });
  for (let i = 0; i < 1000; i++) log.record(allow({ thing: `t${i}` }));
  log.flushSync();
  t.ok(diskBytes(dir) <= MIN_MAX_BYTES);
  t.equal((await readAudit(dir)).at(-1)?.thing, 't999');
});

t.test('the buffer is bounded: the oldest buffered records are dropped and counted', async (t) => {
  const dir = t.testdir();
  const { log, errors } = await openLog(t, { dir, maxBufferBytes: 8 * 1024 });
  // Synchronously, as when the disk does not keep up: nothing can be written meanwhile.
  for (let i = 0; i < 1000; i++) log.record(allow({ thing: `t${i}` }));
  const s = log.stats();
  t.ok(s.droppedEntries > 900, `${s.droppedEntries} dropped`);
  t.equal(s.pendingEntries + s.droppedEntries, 1000);
  t.ok(s.pendingEntries * 150 <= 8 * 1024, `${s.pendingEntries} kept`);
  await log.flush();
  const things = (await readAudit(dir)).map((e) => e.thing);
  t.equal(things.length, s.pendingEntries);
  t.equal(things.at(-1), 't999', 'the newest are kept');
  t.match(errors, [{ code: 'EW_STORE_IO', message: new RegExp(`${s.droppedEntries} audit record\\(s\\) dropped: the buffer is full`) }]);
});

t.test('the timer flushes without an explicit flush', async (t) => {
  const dir = t.testdir();
  const { log } = await openLog(t, { dir, flushIntervalMs: 20 });
  log.record(deny());
  log.record(allow());
  for (let i = 0; i < 100 && log.stats().written < 2; i++) await sleep(10);
  t.equal((await readAudit(dir)).length, 2);
  t.match(log.stats(), { written: 2, pendingEntries: 0 });
});

t.test('a full buffer is flushed without waiting for the timer, in a few writes', async (t) => {
  const dir = t.testdir();
  const { log } = await openLog(t, { dir, flushIntervalMs: 60_000 });
  for (let i = 0; i < 2000; i++) log.record(allow({ thing: `t${i}` })); // ~400 kB
  t.equal(log.stats().written, 0, 'record() itself writes nothing');
  for (let i = 0; i < 200 && log.stats().written < 2000; i++) await sleep(10);
  t.equal(log.stats().written, 2000);
  t.equal((await readAudit(dir)).length, 2000);
});

t.test('file and directory modes', async (t) => {
  const base = t.testdir();
  const dir = join(base, 'state', 'audit');
  const { log } = await openLog(t, { dir });
  log.record(allow());
  await log.flush();
  t.equal(statSync(dir).mode & 0o777, 0o700, 'directory 0700');
  t.equal(statSync(join(dir, AUDIT_FILE)).mode & 0o777, 0o600, 'audit.log 0600');

  const loose = join(base, 'loose');
  mkdirSync(loose, { mode: 0o755 });
  chmodSync(loose, 0o755);
  writeFileSync(join(loose, AUDIT_FILE), '');
  chmodSync(join(loose, AUDIT_FILE), 0o644);
  await openLog(t, { dir: loose });
  t.equal(statSync(loose).mode & 0o777, 0o700, 'an existing directory is tightened');
  t.equal(statSync(join(loose, AUDIT_FILE)).mode & 0o777, 0o600, 'an existing file is tightened');

  const notDir = join(base, 'file');
  writeFileSync(notDir, 'x');
  await t.rejects(AuditLog.open({ dir: notDir }), { code: 'EW_STORE_IO', where: notDir });
});

t.test('only the entry fields are written: no password, token or payload', async (t) => {
  const dir = t.testdir();
  const { log } = await openLog(t, { dir });
  const leaky = {
    ...allow(),
    password: 'hunter2-secret',
    token: 'tok-secret',
    payload: Buffer.from('payload-secret'),
    headers: { authorization: 'Bearer auth-secret' },
  } as AuditRecord;
  log.record(leaky);
  log.record({ ...deny(), payload: 'payload-secret-2' } as AuditRecord);
  await log.flush();
  const text = readFileSync(join(dir, AUDIT_FILE), 'utf8');
  t.notMatch(text, /secret/);
  t.same(Object.keys(JSON.parse(text.split('\n')[0]!) as object).sort(), ['action', 'clientId', 'decision', 'principal', 'seq', 'snapshotVersion', 'thing', 'time', 'topic']);
});

t.test('record() never throws; odd values are made safe', async (t) => {
  const dir = t.testdir();
  const c = manualClock();
  const { log, errors } = await openLog(t, { dir, clock: c.clock });
  const circular: Record<string, unknown> = {};
  circular['self'] = circular;
  const odd = [
    { ...allow(), principal: circular, topic: 42, thing: { x: 1 }, snapshotVersion: NaN, action: undefined, count: 'many' },
    { ...deny(), decision: 'maybe', time: 'not a date', reason: 12n },
    { ...allow(), topic: 't/'.repeat(40_000) },
  ] as unknown as AuditRecord[];
  for (const r of odd) t.doesNotThrow(() => log.record(r));
  c.set(NaN);
  t.doesNotThrow(() => log.record(allow()));
  await log.flush();
  const entries = await readAudit(dir);
  t.equal(entries.length, 4);
  t.match(entries[0], { principal: null, thing: null, snapshotVersion: null, action: '?' });
  t.notOk('topic' in entries[0]!);
  t.notOk('count' in entries[0]!);
  t.match(entries[1], { decision: 'deny', time: '2027-03-01T12:00:00.000Z' }, 'an unknown decision is recorded as a deny; a bad time is the clock');
  t.notOk('reason' in entries[1]!);
  t.ok(entries[2]!.topic!.length <= 256, 'long strings are cut');
  t.ok(entries[2]!.topic!.endsWith('…'));
  t.same(errors, []);
});

t.test('a given count is kept and not coalesced into', async (t) => {
  const dir = t.testdir();
  const { log } = await openLog(t, { dir });
  log.record(deny({ count: 5 }));
  log.record(deny());
  log.record(deny());
  await log.flush();
  t.same((await readAudit(dir)).map((e) => e.count ?? 1), [5, 2]);
});

t.test('close flushes and stops the timer', async (t) => {
  const dir = t.testdir();
  const log = await AuditLog.open({ dir, flushIntervalMs: 10 });
  log.record(deny());
  await log.close();
  t.equal((await readAudit(dir)).length, 1);
  t.ok(existsSync(join(dir, AUDIT_FILE)));
  // An open log does not keep the process alive (the timer is unref'd): tap would time out otherwise.
  const other = await AuditLog.open({ dir: t.testdir(), flushIntervalMs: 10 });
  other.record(allow());
  other.flushSync();
  appendFileSync(join(dir, 'unrelated'), '');
  await other.close();
});

/** audit-log.js with node:fs's asynchronous write replaced, to fail or hang on demand. */
async function withControlledWrite(t: Test) {
  const fs = await import('node:fs');
  const ctl = {
    mode: 'pass' as 'pass' | 'fail' | 'hang',
    hung: [] as (() => void)[],
    calls: 0,
  };
  const write = (...args: unknown[]) => {
    ctl.calls++;
    const cb = args[args.length - 1] as (err: NodeJS.ErrnoException | null, n?: number) => void;
    const real = () => (fs.write as unknown as (...a: unknown[]) => void)(...args);
    if (ctl.mode === 'fail') process.nextTick(() => cb(Object.assign(new Error('no space left on device'), { code: 'ENOSPC' })));
    else if (ctl.mode === 'hang') ctl.hung.push(real);
    else real();
  };
  const mod = await t.mockImport<typeof import('../../src/audit/audit-log.js')>('../../src/audit/audit-log.js', {
    'node:fs': { ...fs, write },
  });
  return { mod, ctl };
}

t.test('a failed write keeps the records and is retried at the same place', async (t) => {
  const dir = t.testdir();
  const { mod, ctl } = await withControlledWrite(t);
  const errors: Error[] = [];
  const log = await mod.AuditLog.open({ dir, flushIntervalMs: 60_000, onError: (e) => errors.push(e) });
  t.teardown(() => log.close().catch(() => undefined));
  log.record(allow({ thing: 'a' }));
  await log.flush();
  ctl.mode = 'fail';
  log.record(allow({ thing: 'b' }));
  log.record(allow({ thing: 'c' }));
  await t.rejects(log.flush(), { code: 'EW_STORE_IO', where: join(dir, AUDIT_FILE), message: /cannot write the audit log: ENOSPC/ });
  t.match(log.stats(), { written: 1, pendingEntries: 2 });
  log.record(allow({ thing: 'd' }));
  await t.rejects(log.flush(), { code: 'EW_STORE_IO' });
  ctl.mode = 'pass';
  await log.flush();
  t.same((await readAudit(dir)).map((e) => e.thing), ['a', 'b', 'c', 'd'], 'in order, once each');
  t.match(log.stats(), { written: 4, pendingEntries: 0 });
});

t.test('a hung disk: record() stays cheap, memory stays bounded, nothing is lost but the overflow', async (t) => {
  const dir = t.testdir();
  const { mod, ctl } = await withControlledWrite(t);
  const errors: Error[] = [];
  const log = await mod.AuditLog.open({ dir, flushIntervalMs: 5, maxBufferBytes: 16 * 1024, onError: (e) => errors.push(e) });
  t.teardown(() => log.close().catch(() => undefined));
  ctl.mode = 'hang';
  log.record(allow({ thing: 'first' }));
  await sleep(30); // the timer's flush starts and hangs in its write
  t.equal(ctl.hung.length, 1, 'one write is under way');
  for (let i = 0; i < 2000; i++) log.record(allow({ thing: `t${i}` }));
  await sleep(30);
  t.equal(ctl.hung.length, 1, 'no more writes are started while one hangs');
  const s = log.stats();
  t.ok(s.droppedEntries > 1500, `${s.droppedEntries} dropped`);
  t.ok(s.pendingEntries < 200, `${s.pendingEntries} kept in memory`);
  t.match(errors, [{ message: /audit record\(s\) dropped: the buffer is full/ }], 'the drop is reported while the flush hangs');
  // The disk comes back.
  ctl.mode = 'pass';
  ctl.hung.shift()!();
  await log.flush();
  await log.flush();
  const things = (await readAudit(dir)).map((e) => e.thing);
  t.equal(things[0], 'first');
  t.equal(things.at(-1), 't1999');
  t.equal(things.length, s.pendingEntries, 'the write under way ("first") plus what the buffer kept');
});

t.test('no file descriptor is leaked across rotations and close', { skip: !existsSync('/proc/self/fd') }, async (t) => {
  const fds = () => readdirSync('/proc/self/fd').length;
  const before = fds();
  const dir = t.testdir();
  const log = await AuditLog.open({ dir, maxBytes: MIN_MAX_BYTES, flushIntervalMs: 60_000 });
  for (let round = 0; round < 10; round++) {
    for (let i = 0; i < 300; i++) log.record(allow({ thing: `r${round}-${i}` }));
    if (round % 2 === 0) await log.flush();
    else log.flushSync();
  }
  t.ok(log.stats().rotations >= 5);
  await log.close();
  t.equal(fds(), before);
});

// ---- seq, and rotation tied to the cloud upload ----

t.test('every line has a seq, consecutive, continued after a reopen and across rotations', async (t) => {
  const dir = t.testdir();
  const first = await openLog(t, { dir, maxBytes: MIN_MAX_BYTES });
  for (let i = 0; i < 700; i++) first.log.record(allow({ thing: `t-${i}` }));
  await first.log.close();
  t.equal(first.log.stats().seq, 700);
  const second = await openLog(t, { dir, maxBytes: MIN_MAX_BYTES });
  t.equal(second.log.stats().seq, 700, 'the reopened log knows the newest seq');
  for (let i = 0; i < 10; i++) second.log.record(deny({ topic: `x/${i}` }));
  await second.log.flush();
  const seqs = (await readAudit(dir)).map((e) => e.seq!);
  t.equal(seqs.at(-1), 710);
  t.same(seqs, Array.from({ length: seqs.length }, (_, i) => seqs[0]! + i), 'no gap and no repeat');
});

/** An uploader the test drives: live or not, and what it has uploaded. */
function fakeUploader(log: AuditLog, everyBytes = 1 << 30) {
  const u = { urged: 0, urge: () => void u.urged++, everyBytes };
  log.attachUploader(u);
  return u;
}

async function uploadAll(dir: string, log: AuditLog): Promise<number> {
  const last = (await readAudit(dir)).at(-1)!;
  log.markUploaded(last.seq!, last.time);
  return last.seq!;
}

t.test('an uploader urged by volume keeps up: rotation drops only uploaded records', async (t) => {
  const dir = t.testdir();
  const maxBytes = MIN_MAX_BYTES;
  const losses: unknown[] = [];
  const { log } = await openLog(t, { dir, maxBytes, onLoss: (l) => losses.push(l) });
  let uploading: Promise<unknown> = Promise.resolve();
  const up = { urged: 0, everyBytes: 4096, urge: () => void (up.urged++, (uploading = uploading.then(() => uploadAll(dir, log)))) };
  log.attachUploader(up);
  log.markUploaded(0, new Date(0).toISOString());
  for (let i = 0; i < 3000; i++) {
    log.record(allow({ thing: `t-${i}` }));
    if (i % 20 === 0) {
      await log.flush();
      await uploading;
    }
  }
  await log.flush();
  t.ok(log.stats().rotations > 3, `${log.stats().rotations} rotations`);
  t.ok(up.urged > 50, `urged ${up.urged} times`);
  t.equal(log.stats().lostBeforeUpload, 0, 'nothing lost');
  t.same(losses, []);
  t.ok(diskBytes(dir) <= maxBytes);
});

t.test('offline, the disk bound drops un-uploaded records: counted, reported and recorded as a "lost" line', async (t) => {
  const dir = t.testdir();
  const maxBytes = MIN_MAX_BYTES;
  const c = manualClock();
  const losses: { count: number; fromSeq: number; toSeq: number; from: string; to: string }[] = [];
  const { log } = await openLog(t, { dir, maxBytes, clock: c.clock, onLoss: (l) => losses.push(l) });
  fakeUploader(log); // offline: urged, but uploads nothing
  // 100 records uploaded, then the link goes down.
  for (let i = 0; i < 100; i++) {
    log.record(allow({ thing: `t-${i}` }));
    c.advance(10);
  }
  await log.flush();
  const uploaded = await uploadAll(dir, log);
  t.equal(uploaded, 100);
  const N = 2000;
  for (let i = 100; i < N; i++) {
    log.record(allow({ thing: `t-${i}` }));
    c.advance(10);
    if (i % 50 === 0) await log.flush();
  }
  await log.flush();
  t.ok(diskBytes(dir) <= maxBytes, 'the disk bound holds');
  const entries = await readAudit(dir);
  const kept = entries.filter((e) => e.decision === 'allow').map((e) => e.seq!);
  const lostLines = entries.filter((e) => e.decision === 'lost');
  t.ok(losses.length > 0, `${losses.length} loss(es) reported`);
  // Every seq from 101 on is either kept or in a reported loss, exactly once.
  const covered = new Set<number>(kept);
  let lostTotal = 0;
  for (const l of losses) {
    t.equal(l.count, l.toSeq - l.fromSeq + 1);
    lostTotal += l.count;
    for (let s = l.fromSeq; s <= l.toSeq; s++) {
      t.notOk(covered.has(s), `seq ${s} counted once`);
      covered.add(s);
    }
    t.ok(Date.parse(l.from) <= Date.parse(l.to), 'an interval');
  }
  const allowSeqs = new Set(entries.filter((e) => e.decision === 'lost').map((e) => e.seq!));
  for (let s = uploaded + 1; s <= log.stats().seq; s++) if (!allowSeqs.has(s)) t.ok(covered.has(s) || s <= uploaded, `seq ${s} kept or reported lost`);
  t.equal(log.stats().lostBeforeUpload, lostTotal);
  t.same(log.stats().lastLoss, losses.at(-1));
  t.equal(losses[0]!.fromSeq, uploaded + 1, 'the first loss starts right after the last uploaded record');
  t.equal(losses[0]!.from, new Date(T0 + (uploaded - 1) * 10).toISOString(), 'from: the time of the last uploaded record');
  t.ok(lostLines.length > 0, 'the losses are in the log');
  t.match(lostLines.at(-1), { decision: 'lost', action: 'audit', count: losses.at(-1)!.count, fromSeq: losses.at(-1)!.fromSeq, toSeq: losses.at(-1)!.toSeq });
});

t.test('an upload that does not keep up: the bound still holds, and the loss is recorded', async (t) => {
  const dir = t.testdir();
  const maxBytes = MIN_MAX_BYTES;
  const { log } = await openLog(t, { dir, maxBytes });
  fakeUploader(log);
  log.markUploaded(0, new Date(0).toISOString());
  for (let i = 0; i < 3000; i++) {
    log.record(allow({ thing: `t-${i}` }));
    if (i % 100 === 0) {
      await log.flush();
      t.ok(diskBytes(dir) <= maxBytes, `within maxBytes after ${i + 1}`);
    }
  }
  await log.flush();
  t.ok(diskBytes(dir) <= maxBytes);
  t.ok(log.stats().lostBeforeUpload > 0, `${log.stats().lostBeforeUpload} lost and counted`);
});

t.test('the uploader is urged by volume written, not only on its schedule', async (t) => {
  const dir = t.testdir();
  const { log } = await openLog(t, { dir });
  const up = fakeUploader(log, 8 * 1024);
  for (let i = 0; i < 30; i++) log.record(allow({ thing: `t-${i}` }));
  await log.flush();
  t.equal(up.urged, 0, 'a few records: no urge');
  for (let i = 0; i < 200; i++) log.record(allow({ thing: `t-${i}` }));
  await log.flush();
  t.equal(up.urged, 1, 'urged once more than 8 KiB was written');
  for (let round = 0; round < 5; round++) {
    for (let i = 0; i < 200; i++) log.record(allow({ thing: `t-${i}` }));
    await log.flush();
  }
  t.equal(up.urged, 6, 'and again for each 8 KiB after that');
});

t.test('without an uploader nothing counts as lost (there is nothing to upload)', async (t) => {
  const dir = t.testdir();
  const { log } = await openLog(t, { dir, maxBytes: MIN_MAX_BYTES });
  for (let i = 0; i < 3000; i++) log.record(allow({ thing: `t-${i}` }));
  await log.flush();
  t.ok(log.stats().rotations > 2);
  t.equal(log.stats().lostBeforeUpload, 0);
  t.equal((await readAudit(dir)).filter((e) => e.decision === 'lost').length, 0);
});
