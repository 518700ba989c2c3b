// Reading the audit log for upload: from a cursor, whole lines only, across the rotation of
// audit.log to audit.log.1, and saying so when records were rotated away before they were read.
import t from 'tap';
import { appendFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AuditLog } from '../../src/audit/audit-log.js';
import { readAuditSince, type AuditCursor } from '../../src/audit/audit-upload.js';

const line = (i: number) => `${JSON.stringify({ n: i, pad: 'x'.repeat(40) })}\n`;
const numbers = (text: string) => text.split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { n: number }).n);

t.test('from nothing, from a cursor, partial lines left for later', async (t) => {
  const dir = t.testdir({});
  t.same(await readAuditSince(dir, null, 1000), { text: '', next: null, skipped: false }, 'no log yet');
  writeFileSync(join(dir, 'audit.log'), line(1) + line(2) + '{"n":3,"pa');
  const a = await readAuditSince(dir, null, 1 << 20);
  t.same(numbers(a.text), [1, 2], 'the half-written line is not returned');
  appendFileSync(join(dir, 'audit.log'), 'd":"x"}\n' + line(4));
  const b = await readAuditSince(dir, a.next, 1 << 20);
  t.same(numbers(b.text), [3, 4], 'it is read once complete');
  const c = await readAuditSince(dir, b.next, 1 << 20);
  t.equal(c.text, '', 'nothing new');
  t.same(c.next, b.next);
});

t.test('a budget splits the read into chunks of whole lines', async (t) => {
  const dir = t.testdir({});
  writeFileSync(join(dir, 'audit.log'), Array.from({ length: 50 }, (_, i) => line(i + 1)).join(''));
  let cursor: AuditCursor | null = null;
  const seen: number[] = [];
  for (let i = 0; i < 100; i++) {
    const chunk = await readAuditSince(dir, cursor, 200);
    if (chunk.text === '') break;
    t.ok(Buffer.byteLength(chunk.text) <= 200);
    seen.push(...numbers(chunk.text));
    cursor = chunk.next;
  }
  t.same(seen, Array.from({ length: 50 }, (_, i) => i + 1), 'every line once, in order');
});

t.test('across a rotation, and when records were rotated away', async (t) => {
  const dir = t.testdir({});
  const cur = join(dir, 'audit.log');
  writeFileSync(cur, line(1) + line(2));
  const a = await readAuditSince(dir, null, 1 << 20);
  appendFileSync(cur, line(3));
  renameSync(cur, join(dir, 'audit.log.1')); // rotation: the rest of the old file is read first
  writeFileSync(cur, line(4));
  const b = await readAuditSince(dir, a.next, 1 << 20);
  t.same(numbers(b.text), [3, 4]);
  t.equal(b.skipped, false);
  // Two rotations before the next read: the cursor's file is gone.
  renameSync(cur, join(dir, 'audit.log.1'));
  writeFileSync(cur, line(5));
  renameSync(cur, join(dir, 'audit.log.1'));
  writeFileSync(cur, line(6));
  const c = await readAuditSince(dir, b.next, 1 << 20);
  t.equal(c.skipped, true, 'the gap is reported');
  t.same(numbers(c.text), [5, 6], 'and the oldest records still kept are read');
});

t.test('with the real audit log writer, rotating under a small bound', async (t) => {
  const dir = t.testdir({});
  const log = await AuditLog.open({ dir, maxBytes: 64 * 1024, flushIntervalMs: 1_000_000 });
  let cursor: AuditCursor | null = null;
  const read: string[] = [];
  for (let round = 0; round < 20; round++) {
    for (let i = 0; i < 40; i++) {
      log.record({ principal: `p-${round}-${i}`, clientId: 'c', action: 'EXECUTE_THING_COMMAND', thing: 'oven-1', decision: 'allow', snapshotVersion: 1 });
    }
    await log.flush();
    const chunk = await readAuditSince(dir, cursor, 1 << 20);
    t.equal(chunk.skipped, false);
    read.push(...chunk.text.split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { principal: string }).principal));
    cursor = chunk.next;
  }
  await log.close();
  t.ok(log.stats().rotations > 0, `${log.stats().rotations} rotations`);
  t.equal(read.length, 800, 'every record read once');
  t.equal(new Set(read).size, 800);
  t.equal(read[0], 'p-0-0');
  t.equal(read.at(-1), 'p-19-39');
});
