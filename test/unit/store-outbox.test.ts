import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Outbox, OUTBOX_STATE_FILE, RECORD_OVERHEAD_BYTES, type OutboxOptions } from '../../src/store/outbox.js';
import { SqliteOutbox } from '../../src/store/outbox-sqlite.js';
import { isEwError } from '../../src/errors.js';
import { ROOT } from '../helpers/policy.js';

const TOPIC = 'things/oven-1/telemetry/temperature';
const T0 = Date.UTC(2026, 0, 1);

// The tests of the queue's contract run on both implementations (issue 13: the segment log of
// outbox.ts and its measured alternative on node:sqlite, outbox-sqlite.ts); those about the segment
// files (torn tails, damaged records, state.json, compaction of segments) are the log's only, the
// SQLite database's own damage tests are in store-outbox-sqlite.test.ts.
const OUTBOXES = { log: Outbox, sqlite: SqliteOutbox } as const;
type Kind = keyof typeof OUTBOXES;
type AnyOutbox = Outbox | SqliteOutbox;
// The same public interface, checked by the compiler both ways.
const sameShape: [(o: SqliteOutbox) => Pick<Outbox, keyof Outbox>, (o: Outbox) => Pick<SqliteOutbox, keyof SqliteOutbox>] = [(o) => o, (o) => o];
void sameShape;

interface Opened<O extends AnyOutbox = Outbox> {
  ob: O;
  problems: string[];
}

const openRaw = (kind: Kind, opts: OutboxOptions): Promise<AnyOutbox> => OUTBOXES[kind].open(opts);

async function openAs(kind: Kind, dir: string, extra: Partial<OutboxOptions> = {}): Promise<Opened<AnyOutbox>> {
  const problems: string[] = [];
  let clock = T0;
  const ob = await openRaw(kind, { dir, maxBytes: 1 << 20, onProblem: (m) => problems.push(m), now: () => clock++, ...extra });
  return { ob, problems };
}

async function open(dir: string, extra: Partial<OutboxOptions> = {}): Promise<Opened> {
  return (await openAs('log', dir, extra)) as Opened;
}

/** A test of the queue's contract, once per implementation. */
function both(name: string, fn: (t: Test, kind: Kind) => Promise<void>): void {
  for (const kind of Object.keys(OUTBOXES) as Kind[]) t.test(`${kind}: ${name}`, (tt) => fn(tt, kind));
}

/** Appends `n` messages `msg-<from + k>` and waits until they are durable; returns their seqs. */
async function fill(ob: AnyOutbox, n: number, from = 0, payloadBytes = 0): Promise<number[]> {
  const ps: Promise<number>[] = [];
  for (let k = 0; k < n; k++) {
    const tag = `msg-${from + k}`;
    ps.push(ob.append(TOPIC, payloadBytes > 0 ? tag.padEnd(payloadBytes, '.') : tag, { qos: 1 }));
  }
  return Promise.all(ps);
}

function tags(ob: AnyOutbox, max = 1_000_000, after?: number): string[] {
  return ob.peek(max, after).map((r) => r.payload.toString('utf8').replace(/\.+$/, ''));
}

const seqsOf = (ob: AnyOutbox, max = 1_000_000, after?: number): number[] => ob.peek(max, after).map((r) => r.seq);
const range = (a: number, b: number): number[] => Array.from({ length: b - a + 1 }, (_, k) => a + k);
const segFiles = (dir: string): string[] => readdirSync(dir).filter((n) => n.endsWith('.seg')).sort();
const stateOf = (dir: string): Record<string, unknown> => JSON.parse(readFileSync(join(dir, OUTBOX_STATE_FILE), 'utf8'));
/** On disk, a record `fill` wrote with `payloadBytes`. */
const recordBytes = (payloadBytes: number): number => RECORD_OVERHEAD_BYTES + TOPIC.length + payloadBytes;

/** Flips a payload byte of record `seq` in segment `file`, whose records are all `recBytes` long. */
function damageRecord(dir: string, file: string, seq: number, recBytes: number): void {
  const path = join(dir, file);
  const bytes = readFileSync(path);
  bytes[8 + (seq - Number(file.slice(0, 16))) * recBytes + recBytes - 2]! ^= 0x55;
  writeFileSync(path, bytes);
}

/** Waits for what the outbox does in the background (a file written), failing after 10 s. */
async function until(what: string, check: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

both('records come back in order with their fields; acks in any order; seqs continue after a restart', async (t, kind) => {
  const dir = t.testdir();
  const { ob, problems } = await openAs(kind, dir);
  t.same(ob.stats(), { depth: 0, bytes: kind === 'log' ? 8 : 0, dropped: 0, oldestEnqueuedAt: null, segments: 1, lastSeq: 0, ackedThrough: 0 }, 'the log counts its segment header');
  t.equal(await ob.append('a/b', Buffer.from([0, 1, 2, 255]), { qos: 1, retain: true }), 1);
  t.equal(await ob.append('c', ''), 2);
  t.equal(await ob.append('ü/€', 'text'), 3);
  t.same(
    ob.peek(10).map((r) => ({ ...r, payload: [...r.payload] })),
    [
      { seq: 1, topic: 'a/b', payload: [0, 1, 2, 255], qos: 1, retain: true, enqueuedAt: T0 },
      { seq: 2, topic: 'c', payload: [], qos: 0, retain: false, enqueuedAt: T0 + 1 },
      { seq: 3, topic: 'ü/€', payload: [...Buffer.from('text')], qos: 0, retain: false, enqueuedAt: T0 + 2 },
    ],
  );
  t.same(seqsOf(ob, 2), [1, 2], 'max is respected');
  t.same(seqsOf(ob, 10, 1), [2, 3], 'afterSeq');
  t.same(seqsOf(ob, 10, 3), [], 'nothing after the last');

  ob.ack(2);
  t.same(seqsOf(ob, 10), [1, 3], 'an acknowledged record is not returned again');
  t.equal(ob.stats().ackedThrough, 0, 'out of order: the contiguous point stays');
  t.equal(ob.stats().depth, 2);
  ob.ack(1);
  t.equal(ob.stats().ackedThrough, 2);
  t.equal(ob.stats().oldestEnqueuedAt, T0 + 2);
  ob.ack(1);
  ob.ack(99);
  ob.ack(-1);
  ob.ack(Number.NaN);
  t.equal(ob.stats().depth, 1, 'repeated and unknown acks are ignored');
  await ob.close();
  t.same(problems, []);
  t.rejects(ob.append('x', 'y'), { code: 'EW_STORE_IO' }, 'closed');
  t.same(ob.peek(10), [], 'closed: nothing');

  const again = await openAs(kind, dir);
  t.same(seqsOf(again.ob), [3], 'exactly the unacknowledged record');
  t.equal(await again.ob.append('d', 'x'), 4, 'the sequence continues');
  again.ob.ack(3);
  again.ob.ack(4);
  await again.ob.close();
  const third = await openAs(kind, dir);
  t.same(seqsOf(third.ob), []);
  t.equal(await third.ob.append('e', 'x'), 5, 'continues after everything was acknowledged');
  await third.ob.close();
  t.same([...again.problems, ...third.problems], []);
});

both('peek returns only durable records; append resolves once they are', async (t, kind) => {
  const { ob } = await openAs(kind, t.testdir(), { syncIntervalMs: 50 });
  const p = ob.append(TOPIC, 'x');
  t.same(ob.peek(10), [], 'not yet fsynced: not offered for sending');
  t.equal(ob.stats().depth, 1, 'but counted');
  t.equal(await p, 1);
  t.same(seqsOf(ob), [1]);
  const q = ob.append(TOPIC, 'y');
  await ob.flush();
  t.same(seqsOf(ob), [1, 2], 'flush() makes everything appended durable');
  t.equal(await q, 2);
  await ob.close();
});

both('acknowledgements out of order are persisted with the contiguous point', async (t, kind) => {
  const dir = t.testdir();
  const { ob } = await openAs(kind, dir);
  await fill(ob, 10);
  for (const s of [1, 2, 3, 5, 6, 9]) ob.ack(s);
  t.same(seqsOf(ob), [4, 7, 8, 10]);
  await ob.compact();
  if (kind === 'log') t.same(JSON.parse(readFileSync(join(dir, OUTBOX_STATE_FILE), 'utf8')), { format: 1, ackedThrough: 3, dropped: 0, ackedAbove: [5, 6, 9] });
  await ob.close();
  const again = await openAs(kind, dir);
  t.same(seqsOf(again.ob), [4, 7, 8, 10], 'after close and reopen: exactly the unacknowledged records');
  t.equal(again.ob.stats().depth, 4);
  again.ob.ack(4);
  t.equal(again.ob.stats().ackedThrough, 6);
  await again.ob.close();
  if (kind === 'log') t.same(JSON.parse(readFileSync(join(dir, OUTBOX_STATE_FILE), 'utf8')), { format: 1, ackedThrough: 6, dropped: 0, ackedAbove: [9] });
  const third = await openAs(kind, dir);
  t.same(seqsOf(third.ob), [7, 8, 10], 'the acknowledgements of the second run were persisted at close');
  await third.ob.close();
});

both('a crash before the ack point is persisted sends those records again, loses none', async (t, kind) => {
  const dir = t.testdir();
  const crashed = await openAs(kind, dir, { ackSyncIntervalMs: 3_600_000 });
  await fill(crashed.ob, 10);
  await crashed.ob.compact();
  for (let s = 1; s <= 5; s++) crashed.ob.ack(s);
  t.same(seqsOf(crashed.ob), range(6, 10));
  // No close(): the next open sees the files as a SIGKILL would leave them.
  const after = await openAs(kind, dir);
  t.same(seqsOf(after.ob), range(1, 10), 'acknowledged but not yet persisted: sent again (at-least-once)');
  await after.ob.close();
  await crashed.ob.close();
});

t.test('seqs below an empty segment whose records never became durable are skipped by the ack point', async (t) => {
  const dir = t.testdir();
  const { ob } = await open(dir);
  await fill(ob, 5);
  await ob.close();
  writeFileSync(join(dir, '0000000000000009.seg'), 'EWOUTBX1');
  const again = await open(dir);
  t.equal(again.ob.stats().depth, 5);
  for (let s = 1; s <= 5; s++) again.ob.ack(s);
  t.equal(again.ob.stats().ackedThrough, 8);
  t.equal(again.ob.stats().depth, 0);
  t.equal(await again.ob.append(TOPIC, 'x'), 9);
  t.same(again.problems, []);
  await again.ob.close();
});

both('drain pattern: a window of in-flight records, peek after the last sent', async (t, kind) => {
  const { ob } = await openAs(kind, t.testdir(), { maxBytes: 262144, segmentBytes: 4096 });
  await fill(ob, 500);
  const seen: number[] = [];
  let window = ob.peek(32);
  let last = 0;
  while (window.length > 0) {
    for (const r of window) seen.push(r.seq);
    last = window[window.length - 1]!.seq;
    // acknowledge in reverse order, as PUBACKs may come
    for (const r of [...window].reverse()) ob.ack(r.seq);
    window = ob.peek(32, last);
  }
  t.same(seen, range(1, 500), 'every record once, in order, across segments');
  t.equal(ob.stats().depth, 0);
  t.equal(ob.stats().ackedThrough, 500);
  if (kind === 'log') t.ok(ob.stats().segments > 5, 'spread over several segments');
  await ob.close();
});

both('bound: filling past maxBytes drops the oldest, counts them, and the count survives a reopen', async (t, kind) => {
  const dir = t.testdir();
  const opts = { maxBytes: 16384, segmentBytes: 2048 };
  const { ob, problems } = await openAs(kind, dir, opts);
  t.same(ob.limits, { maxBytes: 16384, segmentBytes: 2048, maxRecordBytes: 4096, syncIntervalMs: 5, ackSyncIntervalMs: 1000 });
  const perRecord = RECORD_OVERHEAD_BYTES + TOPIC.length + 64;
  const n = 1000;
  const seqs = await fill(ob, n, 0, 64);
  t.same(seqs, range(1, n));
  const st = ob.stats();
  t.ok(st.bytes <= 16384, `within the bound (${st.bytes} bytes)`);
  t.ok(st.depth > 16384 / 2 / perRecord, `keeps more than half the bound (${st.depth} records)`);
  t.equal(st.dropped + st.depth, n, 'every record is either queued or counted as dropped');
  const queued = seqsOf(ob);
  t.same(queued, range(n - st.depth + 1, n), 'the newest are kept, contiguous up to the last');
  t.same(tags(ob, 1), [`msg-${n - st.depth}`]);
  if (kind === 'log') t.equal(segFiles(dir).length, st.segments);
  await ob.close();
  t.same(problems, [], 'dropping is not a problem report');

  const again = await openAs(kind, dir, opts);
  t.equal(again.ob.stats().dropped, st.dropped, 'drop count persisted');
  t.same(seqsOf(again.ob), queued);
  await fill(again.ob, 100, n, 64);
  t.ok(again.ob.stats().dropped > st.dropped, 'keeps counting');
  t.equal(again.ob.stats().dropped + again.ob.stats().depth, n + 100);
  await again.ob.close();
});

both('bound: acknowledged segments go first, at no loss', async (t, kind) => {
  const { ob } = await openAs(kind, t.testdir(), { maxBytes: 16384, segmentBytes: 2048 });
  const first = await fill(ob, 100, 0, 64);
  for (const s of first) ob.ack(s);
  await fill(ob, 20, 100, 64);
  t.equal(ob.stats().dropped, 0);
  t.same(seqsOf(ob), range(101, 120));
  await ob.close();
});

both('a smaller maxBytes at reopen drops the oldest at once', async (t, kind) => {
  const dir = t.testdir();
  const big = await openAs(kind, dir, { maxBytes: 65536, segmentBytes: 2048 });
  await fill(big.ob, 400, 0, 64);
  await big.ob.close();
  const small = await openAs(kind, dir, { maxBytes: 8192, segmentBytes: 2048 });
  const st = small.ob.stats();
  t.ok(st.bytes <= 8192);
  t.equal(st.dropped + st.depth, 400);
  t.same(seqsOf(small.ob), range(401 - st.depth, 400));
  await small.ob.close();
});

t.test('torn tail: the cut record is removed and counted as dropped, everything before it stays, its seq is not used again', async (t) => {
  const dir = t.testdir();
  const { ob } = await open(dir);
  await fill(ob, 10);
  await ob.close();
  const [seg] = segFiles(dir);
  const path = join(dir, seg!);
  truncateSync(path, statSync(path).size - 7);

  const again = await open(dir);
  t.same(tags(again.ob), range(0, 8).map((k) => `msg-${k}`));
  t.equal(again.problems.length, 1);
  t.match(again.problems[0], /torn tail of \d+ bytes after the last valid record \(seq 9\) removed; record 10 is lost: 1 record, added to the drop count$/);
  t.match(again.problems[0], seg!);
  t.equal(again.ob.stats().dropped, 1);
  t.match(stateOf(dir), { dropped: 1 }, 'persisted at open');
  t.equal(await again.ob.append(TOPIC, 'after'), 11, 'a seq counted as lost is not used again (the cloud may have had it)');
  t.same(seqsOf(again.ob), [...range(1, 9), 11]);
  await again.ob.close();
  const third = await open(dir);
  t.same(third.problems, [], 'repaired: nothing to report the next time');
  t.equal(third.ob.stats().depth, 10);
  t.equal(third.ob.stats().dropped, 1, 'counted once');
  for (let s = 1; s <= 9; s++) third.ob.ack(s);
  t.equal(third.ob.stats().ackedThrough, 10, 'the ack point moves over the lost seq');
  await third.ob.close();
});

t.test('torn tail: records whose headers can be read are counted exactly; unreadable bytes are "at least one"', async (t) => {
  const dir = t.testdir();
  const { ob } = await open(dir);
  await fill(ob, 10, 0, 40);
  await ob.close();
  const [seg] = segFiles(dir);
  const path = join(dir, seg!);
  damageRecord(dir, seg!, 9, recordBytes(40));
  truncateSync(path, statSync(path).size - 7); // record 10 cut
  const cut = await open(dir);
  t.equal(cut.problems.length, 1);
  t.match(cut.problems[0], /records 9\.\.10 are lost: 2 records, added to the drop count$/, 'record 9 whole with a bad CRC, 10 cut: both by their headers');
  t.equal(cut.ob.stats().dropped, 2);
  t.equal(await cut.ob.append(TOPIC, 'x'), 11);
  await cut.ob.close();

  // A filesystem may extend a file with zeros that were never written (a power cut mid-append).
  writeFileSync(path, Buffer.concat([readFileSync(path), Buffer.alloc(40)]));
  const zeros = await open(dir);
  t.equal(zeros.problems.length, 1);
  t.match(zeros.problems[0], /torn tail of 40 bytes .*; record 12 and perhaps later ones are lost: at least 1 record, added to the drop count$/);
  t.equal(zeros.ob.stats().dropped, 3);
  t.equal(await zeros.ob.append(TOPIC, 'y'), 13);
  t.same(seqsOf(zeros.ob), [...range(1, 8), 11, 13]);
  await zeros.ob.close();
  t.match(stateOf(dir), { dropped: 3 });
});

t.test('a segment cut while being created (no header yet) is repaired silently', async (t) => {
  const dir = t.testdir();
  const { ob } = await open(dir, { maxBytes: 65536, segmentBytes: 1024 });
  await fill(ob, 30, 0, 20);
  await ob.close();
  const files = segFiles(dir);
  writeFileSync(join(dir, '0000000000000031.seg'), '');
  const again = await open(dir, { maxBytes: 65536, segmentBytes: 1024 });
  t.same(again.problems, []);
  t.same(seqsOf(again.ob), range(1, 30));
  t.equal(await again.ob.append(TOPIC, 'x'), 31);
  t.same(segFiles(dir), [...files, '0000000000000031.seg']);
  await again.ob.close();
});

t.test('a damaged record inside a segment: skipped, the valid ones before and after are kept, the lost ones counted', async (t) => {
  const dir = t.testdir();
  const { ob } = await open(dir);
  await fill(ob, 10, 0, 40);
  await ob.close();
  const path = join(dir, segFiles(dir)[0]!);
  const bytes = readFileSync(path);
  const recBytes = recordBytes(40);
  const fifth = 8 + 4 * recBytes; // record seq 5
  bytes[fifth + RECORD_OVERHEAD_BYTES + TOPIC.length + 3]! ^= 0x55; // a payload byte
  bytes[fifth + 2 * recBytes + 1]! ^= 0xff; // the length field of seq 7
  writeFileSync(path, bytes);

  const again = await open(dir);
  t.same(tags(again.ob), ['msg-0', 'msg-1', 'msg-2', 'msg-3', 'msg-5', 'msg-7', 'msg-8', 'msg-9']);
  t.equal(again.problems.length, 2);
  t.match(again.problems[0], /damaged record at offset \d+; \d+ bytes skipped to the next valid record; record 5 is lost: 1 record, added to the drop count$/);
  t.match(again.problems[1], /record 7 is lost: 1 record, added to the drop count$/);
  t.equal(again.ob.stats().depth, 8);
  t.equal(again.ob.stats().dropped, 2);
  for (const s of [1, 2, 3, 4, 6]) again.ob.ack(s);
  t.equal(again.ob.stats().ackedThrough, 7, 'the ack point moves over the lost seqs 5 and 7');
  t.equal(again.ob.stats().depth, 3);
  t.same(seqsOf(again.ob), [8, 9, 10]);
  t.equal(await again.ob.append(TOPIC, 'x'), 11);
  await again.ob.close();
});

t.test('damage that stays on disk is counted once: reopened twice, and after the ack point passed it', async (t) => {
  const dir = t.testdir();
  const first = await open(dir);
  await fill(first.ob, 10, 0, 40);
  await first.ob.close();
  damageRecord(dir, segFiles(dir)[0]!, 5, recordBytes(40));

  const second = await open(dir);
  t.match(second.problems, [/record 5 is lost: 1 record, added to the drop count$/]);
  t.equal(second.ob.stats().dropped, 1);
  t.same(stateOf(dir), { format: 1, ackedThrough: 0, dropped: 1, lostAbove: [[5, 5]] }, 'the count and the seqs it covers, persisted at open');
  await second.ob.close();

  for (const n of [3, 4]) {
    const again = await open(dir);
    t.match(again.problems, [/record 5 is lost: 1 record, already acknowledged or counted: nothing added to the drop count$/], `open ${n}: found again, not counted again`);
    t.equal(again.ob.stats().dropped, 1, `open ${n}: stats`);
    t.equal(again.ob.stats().depth, 9);
    await again.ob.close();
    t.match(stateOf(dir), { dropped: 1 }, `open ${n}: state file`);
  }

  const acking = await open(dir);
  for (let s = 1; s <= 4; s++) acking.ob.ack(s);
  await acking.ob.close();
  t.same(stateOf(dir), { format: 1, ackedThrough: 5, dropped: 1 }, 'below the ack point the lost seqs need no remembering');
  const last = await open(dir);
  t.match(last.problems, [/record 5 is lost: 1 record, already acknowledged or counted/]);
  t.equal(last.ob.stats().dropped, 1);
  await last.ob.close();
});

t.test('damaged records already acknowledged are reported, not counted', async (t) => {
  const dir = t.testdir();
  const first = await open(dir);
  await fill(first.ob, 10, 0, 40);
  for (const s of [1, 2, 3, 4, 7]) first.ob.ack(s);
  await first.ob.close();
  t.same(stateOf(dir), { format: 1, ackedThrough: 4, dropped: 0, ackedAbove: [7] });
  const [seg] = segFiles(dir);
  for (const s of [3, 7, 8]) damageRecord(dir, seg!, s, recordBytes(40));

  const { ob, problems } = await open(dir);
  t.equal(problems.length, 2);
  t.match(problems[0], /record 3 is lost: 1 record, already acknowledged or counted: nothing added to the drop count$/, 'below the ack point');
  t.match(problems[1], /records 7\.\.8 are lost: 2 records, 1 of them already acknowledged or counted, 1 added to the drop count$/, '7 acknowledged out of order, 8 not');
  t.equal(ob.stats().dropped, 1);
  t.same(seqsOf(ob), [5, 6, 9, 10]);
  t.match(stateOf(dir), { dropped: 1 });
  await ob.close();
  const again = await open(dir);
  t.equal(again.ob.stats().dropped, 1);
  await again.ob.close();
});

t.test('damage found while reading: reported, the rest of that segment is lost and counted, nothing throws', async (t) => {
  const dir = t.testdir();
  const { ob, problems } = await open(dir, { maxBytes: 65536, segmentBytes: 1024 });
  await fill(ob, 40, 0, 20);
  const files = segFiles(dir);
  t.ok(files.length >= 3);
  const path = join(dir, files[0]!);
  const bytes = readFileSync(path);
  const recBytes = recordBytes(20);
  const inFirst = Math.floor((bytes.length - 8) / recBytes);
  bytes[8 + 2 * recBytes + 20]! ^= 0x01; // inside record seq 3
  writeFileSync(path, bytes);

  const seqs = seqsOf(ob);
  t.same(seqs, [1, 2, ...range(inFirst + 1, 40)]);
  t.equal(problems.length, 1);
  t.match(problems[0], new RegExp(`records 3\\.\\.${inFirst} are lost: ${inFirst - 2} records, added to the drop count$`));
  t.equal(ob.stats().depth, seqs.length);
  t.equal(ob.stats().dropped, inFirst - 2);
  ob.ack(1);
  ob.ack(2);
  t.equal(ob.stats().ackedThrough, inFirst);
  t.equal(await ob.append(TOPIC, 'x'), 41);
  await ob.close();
});

t.test('damage found while reading: the count is persisted at once; after a restart the records it gave up stay lost', async (t) => {
  const dir = t.testdir();
  const opts = { maxBytes: 65536, segmentBytes: 1024, ackSyncIntervalMs: 3_600_000 };
  const { ob } = await open(dir, opts);
  await fill(ob, 40, 0, 20);
  await ob.close();
  const files = segFiles(dir);
  t.ok(files.length >= 3);
  const inFirst = Number(files[1]!.slice(0, 16)) - 1;

  const reading = await open(dir, opts);
  damageRecord(dir, files[0]!, 3, recordBytes(20)); // after open: found by peek (the open scan read this file before the later ones)
  t.same(seqsOf(reading.ob), [1, 2, ...range(inFirst + 1, 40)]);
  t.match(reading.problems, [new RegExp(`found while reading\\); records 3\\.\\.${inFirst} are lost: ${inFirst - 2} records, added to the drop count$`)]);
  t.equal(reading.ob.stats().dropped, inFirst - 2);
  await until('the drop count in the state file', () => stateOf(dir)['dropped'] === inFirst - 2);
  t.same(stateOf(dir), { format: 1, ackedThrough: 0, dropped: inFirst - 2, lostAbove: [[3, inFirst]] }, 'with no acknowledgement and no append to carry it');
  await reading.ob.close();

  // The open scan skips the damaged record and finds the rest of the segment readable: still lost.
  const again = await open(dir, opts);
  t.equal(again.problems.length, 2);
  t.match(again.problems[0], /record 3 is lost: 1 record, already acknowledged or counted: nothing added to the drop count$/);
  t.match(again.problems[1], new RegExp(`records 4\\.\\.${inFirst} were counted as lost before, when damage hid them; skipped$`));
  t.equal(again.ob.stats().dropped, inFirst - 2, 'not counted again');
  t.same(seqsOf(again.ob), [1, 2, ...range(inFirst + 1, 40)], 'nothing is sent behind the drop count');
  t.equal(again.ob.stats().depth, 40 - inFirst + 2);
  again.ob.ack(1);
  again.ob.ack(2);
  t.equal(again.ob.stats().ackedThrough, inFirst);
  await again.ob.close();
});

t.test('a whole segment unreadable is set aside; its records are counted by the next segment\'s first seq, or by their headers when it was the last', async (t) => {
  const dir = t.testdir();
  const opts = { maxBytes: 65536, segmentBytes: 1024 };
  const { ob } = await open(dir, opts);
  await fill(ob, 40, 0, 20);
  ob.ack(1);
  await ob.close();
  const files = segFiles(dir);
  t.ok(files.length >= 3);
  const firstSeqs = files.map((f) => Number(f.slice(0, 16)));
  const [middle, last] = [files[1]!, files[files.length - 1]!];
  for (const f of [middle, last]) {
    const bytes = readFileSync(join(dir, f));
    bytes.write('garbage!', 0, 'latin1');
    writeFileSync(join(dir, f), bytes);
  }
  const midLost = firstSeqs[2]! - firstSeqs[1]!;
  const lastLost = 40 - firstSeqs[firstSeqs.length - 1]! + 1;

  const again = await open(dir, opts);
  t.equal(again.problems.length, 2);
  t.match(again.problems[0], new RegExp(`${middle} is not an outbox segment \\(wrong header\\); moved aside to .*\\.corrupt; records ${firstSeqs[1]}\\.\\.${firstSeqs[2]! - 1} are lost: ${midLost} records, added to the drop count$`));
  t.match(again.problems[1], new RegExp(`${last} is not an outbox segment \\(wrong header\\); moved aside to .*\\.corrupt; records ${firstSeqs[firstSeqs.length - 1]}\\.\\.40 are lost: ${lastLost} records, added to the drop count$`));
  t.equal(again.ob.stats().dropped, midLost + lastLost);
  t.equal(again.ob.stats().depth, 39 - midLost - lastLost);
  t.match(stateOf(dir), { dropped: midLost + lastLost });
  t.equal(await again.ob.append(TOPIC, 'x'), 41, 'the seqs of the last segment are not used again');
  await again.ob.close();

  for (const n of [2, 3]) {
    const later = await open(dir, opts);
    t.same(later.problems, [], `reopen ${n}: set aside once, nothing to report`);
    t.equal(later.ob.stats().dropped, midLost + lastLost, `reopen ${n}: counted once`);
    t.equal(later.ob.stats().depth, 40 - midLost - lastLost);
    await later.ob.close();
  }
});

t.test('damage found while reading over a stretch already skipped at open: the depth counts each record once', async (t) => {
  const dir = t.testdir();
  const opts = { maxBytes: 65536, segmentBytes: 1024 };
  const first = await open(dir, opts);
  await fill(first.ob, 30, 0, 20);
  await first.ob.close();
  const path = join(dir, segFiles(dir)[0]!);
  const recBytes = RECORD_OVERHEAD_BYTES + TOPIC.length + 20;
  const flip = (seq: number): void => {
    const bytes = readFileSync(path);
    bytes[8 + (seq - 1) * recBytes + 30]! ^= 0x01;
    writeFileSync(path, bytes);
  };
  flip(5);
  const { ob } = await open(dir, opts);
  flip(3); // after open: found by peek (the open scan read this file before the later ones)
  const seqs = seqsOf(ob);
  t.same(seqs.slice(0, 2), [1, 2]);
  t.equal(ob.stats().depth, seqs.length, 'as many as peek returns');
  ob.ack(1);
  ob.ack(2);
  t.equal(ob.stats().depth, seqs.length - 2);
  await ob.close();
});

t.test('garbage in the directory and a damaged state file do not stop open', async (t) => {
  const dir = t.testdir();
  const { ob } = await open(dir);
  await fill(ob, 5);
  ob.ack(1);
  await ob.close();
  writeFileSync(join(dir, 'junk.bin'), randomBytes(1000));
  writeFileSync(join(dir, '0000000000000003.seg.tmp'), randomBytes(100));
  writeFileSync(join(dir, '0000000000000099.seg'), randomBytes(5000)); // a segment name, not a segment
  writeFileSync(join(dir, '0000000000000000.seg'), randomBytes(3)); // seq 0: not a valid name
  mkdirSync(join(dir, '0000000000000077.seg'));
  writeFileSync(join(dir, OUTBOX_STATE_FILE), randomBytes(200));

  const again = await open(dir);
  t.same(tags(again.ob), ['msg-0', 'msg-1', 'msg-2', 'msg-3', 'msg-4'], 'the ack point is lost with the state file: at-least-once');
  t.match(again.problems.join('\n'), /state\.json is damaged/);
  t.match(again.problems.join('\n'), /ignored 4 entries that are not outbox files/);
  t.match(again.problems.join('\n'), /0000000000000099\.seg is not an outbox segment \(wrong header\); moved aside/);
  t.ok(readdirSync(dir).includes('0000000000000099.seg.corrupt'));
  t.equal(await again.ob.append(TOPIC, 'x'), 6);
  await again.ob.close();
  const third = await open(dir);
  t.same(third.problems.filter((p) => !/ignored 4 entries/.test(p)), [], 'set aside once');
  await third.ob.close();
});

t.test('a segment of random bytes and an empty outbox directory of garbage only', async (t) => {
  const dir = t.testdir();
  for (let k = 1; k <= 5; k++) writeFileSync(join(dir, `${String(k * 10).padStart(16, '0')}.seg`), randomBytes(k * 700));
  writeFileSync(join(dir, `${'1'.padStart(16, '0')}.seg`), Buffer.concat([Buffer.from('EWOUTBX1'), randomBytes(3000)]));
  const { ob, problems } = await open(dir);
  t.equal(ob.stats().depth, 0);
  t.ok(problems.length >= 5);
  const seq = await ob.append(TOPIC, 'x');
  t.ok(seq >= 1);
  t.same(seqsOf(ob), [seq]);
  await ob.close();
});

t.test('compaction removes the acknowledged segments', async (t) => {
  const dir = t.testdir();
  const { ob } = await open(dir, { maxBytes: 65536, segmentBytes: 1024 });
  await fill(ob, 100, 0, 20);
  const before = segFiles(dir).length;
  t.ok(before >= 8);
  for (let s = 1; s <= 50; s++) ob.ack(s);
  await ob.compact();
  const mid = segFiles(dir);
  t.ok(mid.length < before && mid.length > 1, `some removed (${before} -> ${mid.length})`);
  t.equal(ob.stats().segments, mid.length);
  t.ok(Number(mid[0]!.slice(0, 16)) <= 51, 'the segment holding seq 51 stays');
  t.same(seqsOf(ob), range(51, 100));
  for (let s = 51; s <= 100; s++) ob.ack(s);
  await ob.compact();
  t.same(segFiles(dir), ['0000000000000101.seg'], 'one empty segment, named after the next seq');
  t.equal(ob.stats().bytes, 8);
  t.equal(await ob.append(TOPIC, 'x'), 101);
  await ob.close();
  const again = await open(dir, { maxBytes: 65536, segmentBytes: 1024 });
  t.same(seqsOf(again.ob), [101]);
  await again.ob.close();
});

both('a record over maxRecordBytes is refused with a clear error, nothing queued', async (t, kind) => {
  const { ob } = await openAs(kind, t.testdir(), { maxBytes: 65536 });
  t.equal(ob.limits.maxRecordBytes, 16384);
  const err = await ob.append(TOPIC, Buffer.alloc(20000)).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(isEwError(err));
  t.match(err, { code: 'EW_OUTBOX_RECORD_TOO_LARGE', message: /20060 bytes .*is more than the 16384 allowed/ });
  t.rejects(ob.append('t'.repeat(70000), 'x'), { code: 'EW_OUTBOX_RECORD_TOO_LARGE' });
  t.rejects(ob.append(TOPIC, 'x', { qos: 2 as 0 }), RangeError);
  t.equal(ob.stats().depth, 0);
  const fits = 16384 - RECORD_OVERHEAD_BYTES - TOPIC.length;
  t.equal(await ob.append(TOPIC, Buffer.alloc(fits, 7)), 1, 'exactly the limit fits, and the seq was not used up');
  t.same(ob.peek(1)[0]?.payload, Buffer.alloc(fits, 7));
  await ob.close();
});

t.test('segment size is kept within bounds: at most about 64 segments, at least 4', async (t) => {
  const dir = t.testdir();
  const huge = await open(join(dir, 'a'), { maxBytes: 8 * 1024 * 1024 * 1024, segmentBytes: 1024 });
  t.equal(huge.ob.limits.segmentBytes, 128 * 1024 * 1024);
  t.equal(huge.ob.limits.maxRecordBytes, 1024 * 1024);
  await huge.ob.close();
  const def = await open(join(dir, 'b'), { maxBytes: 64 * 1024 * 1024 });
  t.same(def.ob.limits, { maxBytes: 64 * 1024 * 1024, segmentBytes: 8 * 1024 * 1024, maxRecordBytes: 1024 * 1024, syncIntervalMs: 5, ackSyncIntervalMs: 1000 });
  await def.ob.close();
  const small = await open(join(dir, 'c'), { maxBytes: 8192, segmentBytes: 1 << 20, maxRecordBytes: 1 << 20 });
  t.equal(small.ob.limits.segmentBytes, 2048);
  t.equal(small.ob.limits.maxRecordBytes, 2048);
  await small.ob.close();
});

both('options out of range are refused', async (t, kind) => {
  const dir = t.testdir();
  await t.rejects(openRaw(kind, { dir, maxBytes: 100 }), RangeError);
  await t.rejects(openRaw(kind, { dir, maxBytes: Number.NaN }), RangeError);
  await t.rejects(openRaw(kind, { dir, maxBytes: 1 << 20, syncIntervalMs: -1 }), RangeError);
});

/** The `--import` that lets a child node run TypeScript, as tap's own runner does. */
function tsImport(): string[] {
  const a = process.execArgv.find((x) => x.includes('@tapjs/typescript'));
  return a === undefined ? [] : [a];
}

both('SIGKILL mid-stream loses no written record; seqs are in order without duplicates', async (t, kind) => {
  const dir = t.testdir();
  t.ok(tsImport().length > 0, 'the TypeScript loader of the runner is found');
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  const child = spawn(process.execPath, [...tsImport(), join(ROOT, 'test', 'fixtures', 'outbox', 'append-child.ts'), dir, kind], { stdio: ['ignore', 'pipe', 'pipe'], env });
  const written: number[] = [];
  const durable = new Map<number, number>();
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  let buf = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  child.stdout.on('data', (chunk: Buffer) => {
    buf += chunk.toString('utf8');
    const lines = buf.split('\n');
    buf = lines.pop()!;
    for (const line of lines) {
      const [kind, a, b] = line.split(' ');
      if (kind === 'w') written.push(Number(a));
      else if (kind === 'd') durable.set(Number(a), Number(b));
    }
    if (durable.size >= 3000 && !child.killed) child.kill('SIGKILL');
  });
  const { signal } = await exited;
  t.equal(signal, 'SIGKILL', `killed (stderr: ${stderr.slice(0, 500)})`);
  t.ok(durable.size >= 3000);

  const { ob, problems } = await openAs(kind, dir, { maxBytes: 64 * 1024 * 1024 });
  const recs = ob.peek(1_000_000);
  const seqs = recs.map((r) => r.seq);
  t.same(seqs, range(1, seqs.length), 'contiguous from 1, in order, no duplicates');
  t.ok(recs.every((r) => r.payload.toString() === `msg-${r.seq - 1}`), 'each record holds its message');
  for (const [seq, n] of durable) {
    if (seq !== n + 1) t.fail(`durable seq ${seq} was message ${n}`);
  }
  t.ok(Math.max(...durable.keys()) <= seqs.length, 'every resolved append is there');
  t.ok(Math.max(...written) + 1 <= seqs.length, 'every append that returned is there, resolved or not');
  t.equal(ob.stats().depth, seqs.length);
  t.same(problems, [], 'a SIGKILL leaves no torn record (each write(2) is whole)');
  t.equal(await ob.append(TOPIC, 'after'), seqs.length + 1);
  await ob.close();
});
