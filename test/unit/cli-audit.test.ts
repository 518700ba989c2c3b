import t, { type Test } from 'tap';
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AUDIT_DIR_NAME, AUDIT_FILE, AuditLog, MIN_MAX_BYTES, type AuditEntry } from '../../src/audit/audit-log.js';
import { lossEntry, serialize } from '../../src/audit/audit-entry.js';
import { auditStatsCommand, auditTailCommand } from '../../src/cli/audit.js';
import { until } from '../helpers/agent.js';
import { ROOT } from '../helpers/policy.js';

const T0 = Date.parse('2027-03-01T12:00:00.000Z');

async function run(opts: { stateDir: string; lines?: string; json?: boolean }) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await auditTailCommand(opts, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out, err };
}

/** A state directory whose audit log holds `n` allows (thing-0 ...), then a coalesced flood and an anonymous deny. */
async function stateWith(t: Test, n: number): Promise<string> {
  const stateDir = t.testdir();
  let now = T0;
  const log = await AuditLog.open({ dir: join(stateDir, AUDIT_DIR_NAME), clock: () => now, flushIntervalMs: 60_000 });
  for (let i = 0; i < n; i++) {
    log.record({ principal: 'tech-anna', clientId: 'anna-phone', action: 'EXECUTE_THING_COMMAND', thing: `thing-${i}`, topic: `things/thing-${i}/cmd`, decision: 'allow', snapshotVersion: 12 });
    now += 1000;
  }
  for (let i = 0; i < 37; i++) {
    log.record({ principal: 'tech-bob', clientId: 'bob-laptop', action: 'publish', thing: 'oven-1', topic: 'things/oven-1/fw', decision: 'deny', reason: 'TOPIC_DENIED', snapshotVersion: 12 });
    now += 10;
  }
  log.record({ principal: null, clientId: 'x\u001b[31mred', action: 'connect', decision: 'deny', reason: 'UNKNOWN_PRINCIPAL', snapshotVersion: null });
  await log.close();
  return stateDir;
}

t.test('text: aligned columns, the newest last, default 20', async (t) => {
  const stateDir = await stateWith(t, 30);
  const { code, out, err } = await run({ stateDir });
  t.equal(code, 0);
  t.same(err, []);
  t.equal(out.length, 21, 'header + 20 entries');
  const header = out[0]!;
  t.match(header, /^TIME +DECISION +REASON +PRINCIPAL +CLIENT +ACTION +THING +TOPIC +SNAPSHOT +COUNT$/);
  const cols = ['DECISION', 'REASON', 'PRINCIPAL', 'CLIENT', 'ACTION', 'THING', 'TOPIC', 'SNAPSHOT'].map((c) => header.indexOf(c));
  for (const line of out.slice(1)) {
    for (const c of cols) t.equal(line[c - 1], ' ', `aligned at ${c}: ${line}`);
    t.equal(line, line.trimEnd(), 'no trailing spaces');
  }
  const cells = (line: string) => line.split(/ {2,}/);
  t.same(cells(out[1]!), ['2027-03-01T12:00:12.000Z', 'allow', '-', 'tech-anna', 'anna-phone', 'EXECUTE_THING_COMMAND', 'thing-12', 'things/thing-12/cmd', '12']);
  t.same(cells(out[19]!), ['2027-03-01T12:00:30.000Z', 'deny', 'TOPIC_DENIED', 'tech-bob', 'bob-laptop', 'publish', 'oven-1', 'things/oven-1/fw', '12', '×37']);
  t.same(cells(out[20]!), ['2027-03-01T12:00:30.370Z', 'deny', 'UNKNOWN_PRINCIPAL', '-', 'x\\u001b[31mred', 'connect', '-', '-', '-']);
  t.notOk(out.join('\n').includes('\u001b'), 'no escape sequence reaches the terminal');
});

t.test('--lines', async (t) => {
  const stateDir = await stateWith(t, 3);
  const r = await run({ stateDir, lines: '2' });
  t.equal(r.out.length, 3);
  t.match(r.out[1], /TOPIC_DENIED/);
  t.equal((await run({ stateDir, lines: '1000' })).out.length, 1 + 5, 'more than there are: all');
  for (const bad of ['0', '-1', 'x', '1.5', '', '99999999']) {
    await t.rejects(auditTailCommand({ stateDir, lines: bad }, { out: () => undefined, err: () => undefined }), { code: 'EW_USAGE', message: /--lines/ }, bad);
  }
});

t.test('--json: JSON Lines, one entry each', async (t) => {
  const stateDir = await stateWith(t, 2);
  const { code, out } = await run({ stateDir, json: true });
  t.equal(code, 0);
  t.equal(out.length, 4);
  const entries = out.map((l) => JSON.parse(l) as Record<string, unknown>);
  t.same(entries[0], {
    time: '2027-03-01T12:00:00.000Z',
    seq: 1,
    decision: 'allow',
    principal: 'tech-anna',
    clientId: 'anna-phone',
    action: 'EXECUTE_THING_COMMAND',
    thing: 'thing-0',
    topic: 'things/thing-0/cmd',
    snapshotVersion: 12,
  });
  t.match(entries[2], { decision: 'deny', reason: 'TOPIC_DENIED', count: 37 });
  t.match(entries[3], { principal: null, clientId: 'x\u001b[31mred', snapshotVersion: null });
  t.notOk(out.join('\n').includes('\u001b'), 'escaped in the JSON text');
  t.same((await run({ stateDir, json: true, lines: '1' })).out.length, 1);
});

t.test('a missing audit directory: a clear message, exit 1', async (t) => {
  const stateDir = t.testdir();
  const { code, out, err } = await run({ stateDir });
  t.equal(code, 1);
  t.same(out, []);
  t.same(err, [`no audit log at ${join(stateDir, 'audit')}: has the agent run with this state directory?`]);
  const asFile = t.testdir({ audit: 'not a directory' });
  t.equal((await run({ stateDir: asFile })).code, 1);
});

t.test('an empty log, and corrupt lines', async (t) => {
  const stateDir = t.testdir();
  mkdirSync(join(stateDir, 'audit'));
  const empty = await run({ stateDir });
  t.equal(empty.code, 0);
  t.same(empty.out, []);
  t.match(empty.err, [/has no entries/]);

  const line = JSON.stringify({ time: '2027-03-01T12:00:00.000Z', decision: 'deny', reason: 'NOT_GRANTED', principal: 'p', clientId: 'c', action: 'READ_THING', thing: 'oven-1', snapshotVersion: 3 });
  writeFileSync(join(stateDir, 'audit', AUDIT_FILE), `${line}\n{"torn`);
  const r = await run({ stateDir });
  t.equal(r.code, 0);
  t.equal(r.out.length, 2);
  t.match(r.err, [/1 unreadable line\(s\) skipped/]);
});

// ---- filters, stats, --follow (issue 12: why was a device refused, in one command) ----

const quiet = { out: () => undefined, err: () => undefined };

async function runWith(cmd: 'tail' | 'stats', opts: Record<string, unknown>, deps: Parameters<typeof auditTailCommand>[2] = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const io = { out: (l: string) => out.push(l), err: (l: string) => err.push(l) };
  const code = cmd === 'tail' ? await auditTailCommand(opts as never, io, deps) : await auditStatsCommand(opts as never, io, deps);
  return { code, out, err };
}

/**
 * A log over both files (the writer rotated it at least once): per second, pump-N (N = i % 10)
 * refused NOT_GRANTED as tech-anna, every third second also an allowed command for pump-7 by
 * tech-bob; then a coalesced TOPIC_DENIED flood by pump-7 (count 37) and a refused login.
 */
async function rotatedState(t: Test, seconds = 150): Promise<{ stateDir: string; end: number }> {
  const stateDir = t.testdir();
  let now = T0;
  const log = await AuditLog.open({ dir: join(stateDir, AUDIT_DIR_NAME), clock: () => now, flushIntervalMs: 60_000, maxBytes: MIN_MAX_BYTES });
  for (let i = 0; i < seconds; i++) {
    log.record({ principal: 'tech-anna', clientId: 'anna-phone', action: 'EXECUTE_THING_COMMAND', thing: `pump-${i % 10}`, topic: `things/pump-${i % 10}/commands/start`, decision: 'deny', reason: 'NOT_GRANTED', snapshotVersion: 4 });
    if (i % 3 === 0) log.record({ principal: 'tech-bob', clientId: 'bob-laptop', action: 'EXECUTE_THING_COMMAND', thing: 'pump-7', topic: 'things/pump-7/commands/stop', decision: 'allow', snapshotVersion: 4 });
    now += 1000;
  }
  for (let i = 0; i < 37; i++) {
    log.record({ principal: 'pump-7', clientId: 'pump-7', action: 'publish', thing: 'pump-7', topic: 'things/pump-7/nope', decision: 'deny', reason: 'TOPIC_DENIED', snapshotVersion: 4 });
    now += 10;
  }
  log.record({ principal: null, clientId: 'pump-7', action: 'connect', decision: 'deny', reason: 'BAD_CREDENTIALS', snapshotVersion: 4, remote: '10.0.0.7' });
  await log.close();
  if (seconds >= 150) t.equal(log.stats().rotations, 1, 'the log was rotated once: all of it is in the two files');
  return { stateDir, end: now };
}

t.test('tail with filters: the last N that match, read back through the rotated file', async (t) => {
  const { stateDir } = await rotatedState(t);
  const r = await runWith('tail', { stateDir, json: true, lines: '5', thing: ['pump-3'], decision: ['deny'] });
  t.equal(r.code, 0);
  const es = r.out.map((l) => JSON.parse(l) as AuditEntry);
  t.equal(es.length, 5);
  t.ok(es.every((e) => e.thing === 'pump-3' && e.decision === 'deny'));
  t.same(es.map((e) => e.time), [103, 113, 123, 133, 143].map((s) => new Date(T0 + s * 1000).toISOString()), 'the newest five, oldest first');

  const older = await runWith('tail', { stateDir, json: true, lines: '1000', principal: ['tech-anna'], until: new Date(T0 + 10_000).toISOString() });
  t.same(older.out.map((l) => (JSON.parse(l) as AuditEntry).thing), ['pump-0', 'pump-1', 'pump-2', 'pump-3', 'pump-4', 'pump-5', 'pump-6', 'pump-7', 'pump-8', 'pump-9'], 'from audit.log.1');
  const all = await runWith('tail', { stateDir, json: true, lines: '1000', principal: ['tech-anna'] });
  t.equal(all.out.length, 150, 'both files, every match');

  const why = await runWith('tail', { stateDir, clientId: ['pump-7'], decision: ['deny'] });
  t.equal(why.out.length, 3, 'header, the coalesced flood, the refused login');
  t.match(why.out[1], /deny +TOPIC_DENIED +pump-7 +pump-7 +publish .* ×37$/);
  t.match(why.out[2], /deny +BAD_CREDENTIALS +- +pump-7 +connect/);

  const since = await runWith('tail', { stateDir, json: true, lines: '1000', action: ['execute_thing_command'], decision: ['allow'], since: new Date(T0 + 140_000).toISOString() }, { now: () => T0 });
  t.same(since.out.map((l) => (JSON.parse(l) as AuditEntry).time), [141, 144, 147].map((s) => new Date(T0 + s * 1000).toISOString()));

  const relative = await runWith('tail', { stateDir, json: true, lines: '1000', reason: ['TOPIC_DENIED,BAD_CREDENTIALS'], since: '1m' }, { now: () => T0 + 151_000 });
  t.equal(relative.out.length, 2, '--since 1m, relative to now');

  const none = await runWith('tail', { stateDir, thing: ['pump-70'] });
  t.equal(none.code, 0);
  t.same(none.out, []);
  t.match(none.err, [/^no entries in the audit log at .* match$/]);
});

t.test('tail: wrong flags are usage errors naming the flag', async (t) => {
  const { stateDir } = await stateWith(t, 1).then((s) => ({ stateDir: s }));
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ decision: ['denied'] }, /^--decision/],
    [{ reason: ['NOPE'] }, /^--reason/],
    [{ action: ['EXPLODE'] }, /^--action/],
    [{ since: 'last week' }, /^--since/],
    [{ follow: true, until: '1h' }, /^--until cannot be used with --follow/],
    [{ lines: '0' }, /^--lines must be an integer from 1 .*\(0 only with --follow\)/],
  ];
  for (const [opts, message] of cases) await t.rejects(auditTailCommand({ stateDir, ...opts } as never, quiet), { code: 'EW_USAGE', message }, JSON.stringify(opts));
  await t.rejects(auditStatsCommand({ stateDir, by: ['topic'] }, quiet), { code: 'EW_USAGE', message: /^--by/ });
});

t.test('stats: records add each line\'s count; lost records apart; grouped, largest first', async (t) => {
  const { stateDir } = await rotatedState(t);
  // A loss line as the writer makes it (the writer makes one only with an uploader attached).
  appendFileSync(join(stateDir, AUDIT_DIR_NAME, AUDIT_FILE), serialize({ ...lossEntry(new Date(T0 + 500_000).toISOString(), { count: 1432, fromSeq: 1, toSeq: 1432, from: 'a', to: 'b' }), seq: 99_999 }));
  const r = await runWith('stats', { stateDir, json: true });
  t.equal(r.code, 0);
  t.equal(r.out.length, 1);
  const s = JSON.parse(r.out[0]!) as Record<string, any>;
  t.match(s, {
    since: null,
    until: null,
    first: new Date(T0).toISOString(),
    last: new Date(T0 + 500_000).toISOString(),
    logBegins: new Date(T0).toISOString(),
    lines: 150 + 50 + 1 + 1 + 1,
    records: 150 + 50 + 37 + 1,
    allow: 50,
    deny: 188,
    lost: { records: 1432, lines: 1 },
    corrupt: 0,
  });
  t.same(s.by.reason, [
    { value: 'NOT_GRANTED', count: 150, lines: 150 },
    { value: null, count: 50, lines: 50 },
    { value: 'TOPIC_DENIED', count: 37, lines: 1 },
    { value: 'BAD_CREDENTIALS', count: 1, lines: 1 },
  ]);
  t.same(s.by.principal.map((g: { value: string | null; count: number }) => [g.value, g.count]), [['tech-anna', 150], ['tech-bob', 50], ['pump-7', 37], [null, 1]]);

  const pump7 = JSON.parse((await runWith('stats', { stateDir, json: true, thing: ['pump-7'], since: '75s', by: ['decision,client-id'] }, { now: () => T0 + 150_000 })).out[0]!) as Record<string, any>;
  t.match(pump7, { since: new Date(T0 + 75_000).toISOString(), records: 8 + 25 + 37, deny: 45, allow: 25, lost: { records: 0, lines: 0 } });
  t.same(Object.keys(pump7.by), ['decision', 'client-id']);
  t.same(pump7.by.decision, [{ value: 'deny', count: 45, lines: 9 }, { value: 'allow', count: 25, lines: 25 }]);
  t.same(pump7.by['client-id'], [{ value: 'pump-7', count: 37, lines: 1 }, { value: 'bob-laptop', count: 25, lines: 25 }, { value: 'anna-phone', count: 8, lines: 8 }]);

  const text = await runWith('stats', { stateDir, since: new Date(T0 - 3_600_000).toISOString() });
  t.equal(text.code, 0);
  const lines = text.out.join('\n');
  t.match(lines, /^window +2027-03-01T11:00:00.000Z to now$/m);
  t.match(lines, /^records +238 \(188 denied, 50 allowed\) in 202 lines$/m);
  t.match(lines, /^lost +1432 records rotated away before upload \(1 lost line\)$/m);
  t.match(lines, /^note +the log begins at 2027-03-01T12:00:00.000Z: nothing older is held/m);
  t.match(lines, /^REASON +COUNT +SHARE\nNOT_GRANTED +150 +63%\n- \(allowed\) +50 +21%\nTOPIC_DENIED +37 +16%\nBAD_CREDENTIALS +1 +0\.4%\ntotal +238 +100%$/m);
  t.match(lines, /^PRINCIPAL +COUNT +SHARE\ntech-anna +150/m);

  const empty = await runWith('stats', { stateDir, principal: ['nobody'] });
  t.same(empty.out, ['window   the start of the log to now', 'records  0 (0 denied, 0 allowed) in 0 lines']);
});

t.test('stats: more groups than a screen: the first 20 and the rest in one row', async (t) => {
  const stateDir = t.testdir();
  const log = await AuditLog.open({ dir: join(stateDir, AUDIT_DIR_NAME), clock: () => T0, flushIntervalMs: 60_000 });
  for (let i = 0; i < 25; i++) log.record({ principal: `dev-${String(i).padStart(2, '0')}`, clientId: 'c', action: 'connect', decision: 'deny', reason: 'BAD_CREDENTIALS', snapshotVersion: 1, count: 25 - i });
  await log.close();
  const r = await runWith('stats', { stateDir, by: ['principal'] });
  const rows = r.out.slice(r.out.indexOf('') + 1);
  t.equal(rows.length, 1 + 20 + 2);
  t.match(rows[1], /^dev-00 +25 /);
  t.match(rows[21], /^… 5 more \(--json lists all\) +15 /);
  t.match(rows[22], /^total +325 +100%$/);
});

t.test('-c CONFIG: the state directory of the configuration; --state-dir overrides it', async (t) => {
  const { stateDir } = await rotatedState(t, 20);
  const dir = join(stateDir, 'etc');
  mkdirSync(dir);
  writeFileSync(join(dir, 'agent.yaml'), `stateDir: ${JSON.stringify(stateDir)}\ntrust:\n  keys: [${JSON.stringify(join(ROOT, 'config', 'demo-keys', 'demo.pub.pem'))}]\n`);
  const r = await runWith('stats', { config: join(dir, 'agent.yaml'), json: true });
  t.equal(r.code, 0);
  t.match(JSON.parse(r.out[0]!), { records: 20 + 7 + 37 + 1 });
  const other = await runWith('tail', { config: join(dir, 'agent.yaml'), stateDir: join(dir, 'elsewhere') });
  t.equal(other.code, 1);
  t.match(other.err, [/^no audit log at .*elsewhere\/audit/]);
});

t.test('--follow: the last N, then each new record as the agent writes it, across rotations; none twice', async (t) => {
  const stateDir = t.testdir();
  let now = T0;
  const dir = join(stateDir, AUDIT_DIR_NAME);
  const log = await AuditLog.open({ dir, clock: () => now, flushIntervalMs: 60_000, maxBytes: MIN_MAX_BYTES });
  t.teardown(() => log.close());
  const record = (i: number) =>
    log.record({ principal: 'tech-anna', clientId: 'anna-phone', action: 'EXECUTE_THING_COMMAND', thing: i % 2 === 0 ? 'pump-7' : 'pump-8', topic: `things/t/${i}`, decision: 'allow', snapshotVersion: 4 });
  for (let i = 0; i < 10; i++) record(i);
  await log.flush();

  const out: string[] = [];
  const err: string[] = [];
  const ac = new AbortController();
  const following = auditTailCommand({ stateDir, follow: true, json: true, lines: '3' }, { out: (l) => out.push(l), err: (l) => err.push(l) }, { signal: ac.signal, intervalMs: 20 });
  t.teardown(() => ac.abort());
  t.ok(await until(() => out.length === 3), 'the last three');

  // Records in many small flushes, over several rotations (a file holds about 160).
  // After each rotation, the reader catches up before more is written: never three between two polls.
  let rotations = 0;
  for (let i = 10; i < 600; i++) {
    record(i);
    now += 1000;
    if (i % 7 !== 0) continue;
    await log.flush();
    if (log.stats().rotations > rotations) {
      rotations = log.stats().rotations;
      if (!(await until(() => out.length >= 3 + i + 1 - 10, 30_000))) {
        t.fail(`the reader did not catch up after rotation ${rotations}`);
        break;
      }
    }
  }
  await log.flush();
  t.ok(log.stats().rotations >= 3, `${log.stats().rotations} rotations`);
  t.ok(await until(() => out.length >= 3 + 590, 30_000), `all printed (${out.length})`);
  ac.abort();
  t.equal(await following, 0, 'exit 0 when stopped');
  const seqs = out.map((l) => (JSON.parse(l) as AuditEntry).seq);
  t.same(seqs, Array.from({ length: 593 }, (_, i) => 8 + i), 'each once, in order, no gap');
  t.same(err, []);
});

t.test('--follow with filters, text: the header once, then matching rows; stops when stdout goes', async (t) => {
  const stateDir = t.testdir();
  const dir = join(stateDir, AUDIT_DIR_NAME);
  const log = await AuditLog.open({ dir, clock: () => T0, flushIntervalMs: 60_000 });
  t.teardown(() => log.close());
  const deny = (principal: string, thing: string, topic: string) => log.record({ principal, clientId: 'a', action: 'publish', thing, topic, decision: 'deny', reason: 'TOPIC_DENIED', snapshotVersion: 1 });
  deny('a', 'pump-7', 'w');
  await log.flush();
  const out: string[] = [];
  let closed = false;
  const stopped = auditTailCommand(
    { stateDir, follow: true, lines: '1', thing: ['pump-7'], decision: ['deny'] },
    { out: (l) => out.push(l), err: () => undefined, outClosed: () => closed },
    { intervalMs: 20, signal: new AbortController().signal },
  );
  // Once the record written before is printed, the follower knows where it starts: what comes is new.
  t.ok(await until(() => out.length >= 2), 'the record before');
  deny('a', 'pump-8', 'x');
  log.record({ principal: 'a', clientId: 'a', action: 'publish', thing: 'pump-7', topic: 'x', decision: 'allow', snapshotVersion: 1 });
  deny('a', 'pump-7', 'y');
  await log.flush();
  t.ok(await until(() => out.length >= 3), 'the new match');
  deny('a-much-longer-principal', 'pump-7', 'z');
  await log.flush();
  t.ok(await until(() => out.length >= 4), 'and the next');
  closed = true; // stdout's reader has gone
  t.equal(await stopped, 0);
  t.match(out[0], /^TIME +DECISION +REASON +PRINCIPAL/);
  t.match(out[1], /deny +TOPIC_DENIED +a +a +publish +pump-7 +w/);
  t.match(out[2], /deny +TOPIC_DENIED +a +a +publish +pump-7 +y/);
  t.equal(out[1]!.indexOf('publish'), out[2]!.indexOf('publish'), 'aligned with the rows before');
  t.match(out[3], /deny +TOPIC_DENIED +a-much-longer-principal +a +publish +pump-7 +z/);
  t.equal(out.length, 4);
});

t.test('--follow: no audit directory is exit 1, as without', async (t) => {
  const r = await runWith('tail', { stateDir: t.testdir(), follow: true }, { signal: new AbortController().signal });
  t.equal(r.code, 1);
  t.match(r.err, [/^no audit log at/]);
});
