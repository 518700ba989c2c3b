// Following the audit log (src/audit/audit-follow.ts): complete lines only, in order, across
// rotations — one or two within a poll — never twice. The files change inside the follower's `done`
// callback, which runs between two polls: each step lands between the same two polls however slow
// the machine is, so nothing here depends on timing.
import t, { type Test } from 'tap';
import { appendFileSync, mkdirSync, renameSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AUDIT_FILE, AUDIT_ROTATED_FILE, readAuditForFollow } from '../../src/audit/audit-read.js';
import { followAudit } from '../../src/audit/audit-follow.js';

const line = (seq: number): string =>
  JSON.stringify({ time: new Date(Date.parse('2027-03-01T12:00:00Z') + seq * 1000).toISOString(), seq, decision: 'deny', reason: 'NOT_GRANTED', principal: 'p', clientId: 'c', action: 'READ_THING', thing: `thing-${seq}`, snapshotVersion: 1 }) + '\n';
const lines = (from: number, to: number): string => Array.from({ length: to - from + 1 }, (_, i) => line(from + i)).join('');

interface Followed {
  seqs: number[];
  corrupt: string[];
  notices: string[];
}

/**
 * Follows `dir` from the end of what it holds; before poll i + 1, steps[i] runs. Stops after the
 * last step's poll.
 */
async function follow(t: Test, dir: string, steps: (() => void)[]): Promise<Followed> {
  const got: Followed = { seqs: [], corrupt: [], notices: [] };
  const { start } = await readAuditForFollow(dir, { limit: 0 });
  const ac = new AbortController();
  let polls = 0;
  const stopped = followAudit({
    dir,
    start,
    signal: ac.signal,
    intervalMs: 10,
    onEntry: (e) => got.seqs.push(e.seq ?? -1),
    onCorrupt: (where) => got.corrupt.push(where),
    onNotice: (m) => got.notices.push(m),
    done: () => {
      const step = steps[polls++];
      if (step === undefined) return true;
      step();
      return false;
    },
  });
  t.teardown(() => ac.abort());
  await stopped;
  return got;
}

function auditDir(t: Test, content = lines(1, 3)): string {
  const dir = join(t.testdir(), 'audit');
  mkdirSync(dir);
  writeFileSync(join(dir, AUDIT_FILE), content);
  return dir;
}

t.test('new lines, a line written in two parts, rotations one and two within a poll', async (t) => {
  const dir = auditDir(t);
  const cur = join(dir, AUDIT_FILE);
  const rot = join(dir, AUDIT_ROTATED_FILE);
  const five = line(5);
  const got = await follow(t, dir, [
    () => appendFileSync(cur, line(4) + five.slice(0, 20)),
    () => appendFileSync(cur, five.slice(20) + line(6)),
    () => {
      // one rotation; the old file gets no more lines after it (the writer rotates after its last write)
      appendFileSync(cur, line(7));
      renameSync(cur, rot);
      writeFileSync(cur, line(8));
    },
    () => appendFileSync(cur, line(9)),
    () => {
      // two rotations before the next poll: the file between is read whole
      appendFileSync(cur, line(10));
      renameSync(cur, rot);
      writeFileSync(cur, lines(11, 12));
      renameSync(cur, rot);
      writeFileSync(cur, line(13));
    },
    () => {
      // between the rename and the new file
      renameSync(cur, rot);
    },
    () => writeFileSync(cur, line(14)),
    () => appendFileSync(cur, line(15)),
  ]);
  t.same(got.seqs, [4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15], 'each once, in order');
  t.same(got.corrupt, []);
  t.same(got.notices, []);
});

t.test('three rotations within a poll: the records missed are said, by seq', async (t) => {
  const dir = auditDir(t);
  const cur = join(dir, AUDIT_FILE);
  const rot = join(dir, AUDIT_ROTATED_FILE);
  const got = await follow(t, dir, [
    () => appendFileSync(cur, line(4)),
    () => {
      // rotations: 1..5 to .1, 6..7 to .1 (1..5 gone), 8..9 to .1 (6..7 gone)
      appendFileSync(cur, line(5));
      renameSync(cur, rot);
      writeFileSync(cur, lines(6, 7));
      renameSync(cur, rot);
      writeFileSync(cur, lines(8, 9));
      renameSync(cur, rot);
      writeFileSync(cur, line(10));
    },
    () => appendFileSync(cur, line(11)),
  ]);
  t.same(got.seqs, [4, 5, 8, 9, 10, 11]);
  t.match(got.notices, [/^2 record\(s\) not read \(seq 6-7\)/]);
});

t.test('a gap right after the lines read before following is said too', async (t) => {
  const dir = auditDir(t);
  const got = await follow(t, dir, [() => appendFileSync(join(dir, AUDIT_FILE), line(6))]);
  t.same(got.seqs, [6]);
  t.match(got.notices, [/^2 record\(s\) not read \(seq 4-5\)/]);
});

t.test('a torn line: skipped and reported once, the lines around it kept', async (t) => {
  const dir = auditDir(t);
  const cur = join(dir, AUDIT_FILE);
  const rot = join(dir, AUDIT_ROTATED_FILE);
  const got = await follow(t, dir, [
    // a power cut mid-line; at its next start the agent ends the line with a newline
    () => appendFileSync(cur, line(4) + line(5).slice(0, 30)),
    () => appendFileSync(cur, '\n' + line(6)),
    // a file rotated away with an unfinished last line
    () => {
      appendFileSync(cur, line(7) + '{"time":"2027');
      renameSync(cur, rot);
      writeFileSync(cur, line(8));
    },
    () => appendFileSync(cur, `${'\0'.repeat(8)}\n${line(9)}`),
  ]);
  t.same(got.seqs, [4, 6, 7, 8, 9]);
  t.same(got.corrupt, [cur, cur, cur], 'the torn line, the unfinished one, the NUL bytes');
  t.match(got.notices, [/^1 record\(s\) not read \(seq 5-5\)/]);
});

t.test('audit.log truncated by hand: read again from its start, said', async (t) => {
  const dir = auditDir(t);
  const cur = join(dir, AUDIT_FILE);
  const got = await follow(t, dir, [
    () => truncateSync(cur, 0),
    () => appendFileSync(cur, line(4)),
  ]);
  t.same(got.seqs, [4]);
  t.match(got.notices, [/audit\.log was truncated \(from \d+ to 0 bytes\): following it from its start/]);
});

t.test('no log yet: followed from the first line once the agent makes it', async (t) => {
  const dir = join(t.testdir(), 'audit');
  mkdirSync(dir);
  const cur = join(dir, AUDIT_FILE);
  const got = await follow(t, dir, [() => undefined, () => writeFileSync(cur, lines(1, 2)), () => appendFileSync(cur, line(3))]);
  t.same(got.seqs, [1, 2, 3]);
});

t.test('started while audit.log.1 is the only file (mid-rotation): nothing read twice', async (t) => {
  const dir = join(t.testdir(), 'audit');
  mkdirSync(dir);
  const rot = join(dir, AUDIT_ROTATED_FILE);
  writeFileSync(rot, lines(1, 3));
  const got = await follow(t, dir, [() => writeFileSync(join(dir, AUDIT_FILE), line(4)), () => appendFileSync(join(dir, AUDIT_FILE), line(5))]);
  t.same(got.seqs, [4, 5]);
});

t.test('a line longer than any entry is skipped without being held', async (t) => {
  const dir = auditDir(t);
  const cur = join(dir, AUDIT_FILE);
  const got = await follow(t, dir, [
    () => appendFileSync(cur, 'x'.repeat(600 * 1024)),
    () => appendFileSync(cur, 'x'.repeat(600 * 1024)),
    () => appendFileSync(cur, '\n' + line(4)),
  ]);
  t.same(got.seqs, [4]);
  t.equal(got.corrupt.length, 1);
});

t.test('stopping: the signal ends it between polls', async (t) => {
  const dir = auditDir(t);
  const { start } = await readAuditForFollow(dir, { limit: 0 });
  const ac = new AbortController();
  let polls = 0;
  const stopped = followAudit({ dir, start, signal: ac.signal, intervalMs: 60_000, onEntry: () => undefined, done: () => (polls++, false) });
  while (polls === 0) await new Promise((r) => setImmediate(r));
  ac.abort();
  await stopped;
  t.equal(polls, 1, 'no wait for the interval');
});
