// `edgewarden audit tail --follow` and `audit stats` as a field engineer runs them: the built CLI as
// a child process, reading a state directory that the real AuditLog writes (so the format, the
// rotation and the flushes are the agent's). Waits are for what the child prints, with generous
// deadlines; nothing is timed. Every child is stopped by the test that started it.
import t, { type Test } from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { AUDIT_DIR_NAME, AuditLog, MIN_MAX_BYTES, type AuditEntry, type AuditRecord } from '../../src/audit/audit-log.js';
import { BIN, cli } from '../helpers/cli.js';
import { until } from '../helpers/agent.js';
import { ROOT } from '../helpers/policy.js';

const NO_TRACE = /EPIPE|Unhandled|node:internal|at .*\.js:\d+|unexpected error/;

interface Child {
  proc: ChildProcess;
  lines: string[];
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts a command; its complete stdout lines are collected. Killed at the test's end if still running. */
function start(t: Test, command: string, args: string[]): Child {
  const proc = spawn(command, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let partial = '';
  let stderr = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
    const parts = (partial + d).split('\n');
    partial = parts.pop() ?? '';
    lines.push(...parts);
  });
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.on('close', (code, signal) => resolve({ code, signal })));
  t.teardown(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL');
      await exited;
    }
  });
  return { proc, lines, stderr: () => stderr, exited };
}

const T0 = Date.parse('2027-03-01T12:00:00.000Z');

/** ms left until `ms` from now, for several waits that share one deadline. */
function deadline(ms: number): () => number {
  const end = Date.now() + ms;
  return () => Math.max(0, end - Date.now());
}

/** The child's exit, told to stop already; a child that does not stop within 30 s fails the test (and is killed). */
async function exitOf(t: Test, child: Child): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  void child.exited.then((e) => (exit = e));
  if (!(await until(() => exit !== undefined, 30_000))) {
    t.fail('the child did not stop within 30 s');
    child.proc.kill('SIGKILL');
  }
  return child.exited;
}

async function writer(t: Test, stateDir: string): Promise<{ log: AuditLog; record: (r: Partial<AuditRecord>) => void; clock: { now: number } }> {
  const clock = { now: T0 };
  const log = await AuditLog.open({ dir: join(stateDir, AUDIT_DIR_NAME), clock: () => clock.now, flushIntervalMs: 60_000, maxBytes: MIN_MAX_BYTES });
  t.teardown(() => log.close());
  const record = (r: Partial<AuditRecord>) => {
    log.record({ principal: 'tech-anna', clientId: 'anna-phone', action: 'EXECUTE_THING_COMMAND', thing: 'pump-7', topic: 'things/pump-7/commands/start', decision: 'allow', snapshotVersion: 4, ...r });
    clock.now += 1000;
  };
  return { log, record, clock };
}

t.test('tail --follow --json: the last lines, then every new one across rotations, each once; SIGTERM ends it with 0', async (t) => {
  const stateDir = t.testdir();
  const { log, record } = await writer(t, stateDir);
  for (let i = 0; i < 5; i++) record({ topic: `t/${i}` });
  await log.flush();

  const child = start(t, process.execPath, [BIN, 'audit', 'tail', '--follow', '--json', '-n', '2', '--state-dir', stateDir]);
  t.ok(await until(() => child.lines.length >= 2, 30_000), 'the last two');

  // Many flushes of a few lines, over several rotations of the log (a file holds about 150 lines).
  // After each rotation the writer waits for the reader to catch up: however starved of CPU the
  // child is, it never meets three rotations between two reads (which only writing audit.maxBytes
  // within one poll would do: not the case under test, and said, not hidden, when it happens).
  // One deadline for all the waits, well within tap's timeout: a failure ends the test, not tap.
  const left = deadline(120_000);
  let rotations = 0;
  for (let i = 5; i < 700; i++) {
    record({ topic: `t/${i}` });
    if (i % 11 !== 0) continue;
    await log.flush();
    if (log.stats().rotations > rotations) {
      rotations = log.stats().rotations;
      if (!(await until(() => child.lines.length >= 2 + i + 1 - 5, left()))) {
        t.fail(`the reader did not catch up after rotation ${rotations}`);
        break;
      }
    }
  }
  await log.flush();
  t.ok(log.stats().rotations >= 3, `${log.stats().rotations} rotations`);
  t.ok(await until(() => child.lines.length >= 2 + 695, left()), `every new record printed (${child.lines.length - 2} of 695)`);

  child.proc.kill('SIGTERM');
  const { code, signal } = await exitOf(t, child);
  t.equal(code, 0, 'exit 0');
  t.equal(signal, null);
  t.equal(child.stderr(), '', 'nothing on stderr: no trace, no notice of records missed');
  const seqs = child.lines.map((l) => (JSON.parse(l) as AuditEntry).seq);
  t.same(seqs, Array.from({ length: 697 }, (_, i) => 4 + i), 'seq 4..700: none lost, none twice, in order');
});

t.test('tail -f with filters, text, Ctrl-C (SIGINT): only the matching records; exit 0', async (t) => {
  const stateDir = t.testdir();
  const { log, record } = await writer(t, stateDir);
  record({ thing: 'pump-7', decision: 'deny', reason: 'NOT_GRANTED', topic: 'before' });
  await log.flush();
  const child = start(t, process.execPath, [BIN, 'audit', 'tail', '-f', '-n', '1', '--thing', 'pump-7', '--decision', 'deny', '--state-dir', stateDir]);
  t.ok(await until(() => child.lines.length >= 2, 30_000), 'the header and the record before');
  record({ thing: 'pump-8', decision: 'deny', reason: 'NOT_GRANTED', topic: 'other-thing' });
  record({ thing: 'pump-7', decision: 'allow', topic: 'allowed' });
  record({ thing: 'pump-7', decision: 'deny', reason: 'OUT_OF_SCOPE', topic: 'after' });
  await log.flush();
  t.ok(await until(() => child.lines.length >= 3, 30_000), 'the new denial');
  child.proc.kill('SIGINT');
  const { code } = await exitOf(t, child);
  t.equal(code, 0);
  t.equal(child.stderr(), '');
  t.match(child.lines[0], /^TIME +DECISION +REASON/);
  t.match(child.lines[1], /deny +NOT_GRANTED +tech-anna +anna-phone +EXECUTE_THING_COMMAND +pump-7 +before/);
  t.match(child.lines[2], /deny +OUT_OF_SCOPE +tech-anna +anna-phone +EXECUTE_THING_COMMAND +pump-7 +after/);
  t.equal(child.lines.length, 3);
});

t.test('tail -f | head -n 3: it stops, quietly, with 0, once its reader has gone', async (t) => {
  const stateDir = t.testdir();
  const { log, record } = await writer(t, stateDir);
  for (let i = 0; i < 2; i++) record({ topic: `t/${i}` });
  await log.flush();
  const script = `node "$BIN" audit tail -f -n 2 --state-dir "$STATE" | head -n 3; echo "statuses \${PIPESTATUS[*]}"`;
  const sh = spawn('bash', ['-c', script], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, BIN, STATE: stateDir } });
  let stdout = '';
  let stderr = '';
  sh.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  sh.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => sh.on('close', (code) => resolve(code)));
  let done = false;
  void exited.then(() => (done = true));
  t.teardown(() => {
    if (!done) sh.kill('SIGKILL');
  });
  t.ok(await until(() => stdout.split('\n').length > 3, 30_000), 'head has its three lines');
  // The CLI learns that its reader has gone when it next writes: records come until it has ended.
  const left = deadline(90_000);
  while (!done && left() > 0) {
    record({ topic: 'more' });
    await log.flush();
    await until(() => done, Math.min(200, left()));
  }
  t.ok(done, 'the pipeline ended');
  if (!done) return;
  t.equal(await exited, 0);
  t.match(stdout, /^statuses 0 0$/m, 'the CLI ended with 0 (and head with 0)');
  t.notMatch(stderr, NO_TRACE);
});

t.test('stats over a window, with count fields; --json', async (t) => {
  const stateDir = t.testdir();
  const { log, record, clock } = await writer(t, stateDir);
  record({ decision: 'deny', reason: 'NOT_GRANTED', principal: 'viewer-carl', clientId: 'carl-tablet' });
  clock.now += 3_600_000; // the rest within the hour before the last record
  for (let i = 0; i < 25; i++) record({ decision: 'deny', reason: 'BAD_CREDENTIALS', principal: null, clientId: 'pump-7', action: 'connect', thing: undefined, topic: undefined, count: 4 });
  for (let i = 0; i < 5; i++) record({});
  await log.flush();
  const before = new Date(clock.now).toISOString();
  const since = new Date(clock.now - 3_600_000).toISOString();

  const json = cli(['audit', 'stats', '--since', since, '--until', before, '--json', '--state-dir', stateDir]);
  t.equal(json.code, 0, json.stderr);
  const s = JSON.parse(json.stdout) as Record<string, any>;
  t.match(s, { since, until: before, records: 100 + 5, deny: 100, allow: 5, lines: 30 });
  t.same(s.by.reason, [
    { value: 'BAD_CREDENTIALS', count: 100, lines: 25 },
    { value: null, count: 5, lines: 5 },
  ]);

  const text = cli(['audit', 'stats', '--since', since, '--until', before, '--client-id', 'pump-7', '--by', 'reason', '--state-dir', stateDir]);
  t.equal(text.code, 0, text.stderr);
  t.match(text.stdout, /^records +100 \(100 denied, 0 allowed\) in 25 lines$/m);
  t.match(text.stdout, /^BAD_CREDENTIALS +100 +100%$/m);

  const bad = cli(['audit', 'stats', '--since', 'an hour ago', '--state-dir', stateDir]);
  t.equal(bad.code, 2, 'a usage error');
  t.match(bad.stderr, /^edgewarden: EW_USAGE: --since must be/);
  t.notMatch(bad.stderr, NO_TRACE);
});
