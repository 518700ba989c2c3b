// The SQLite outbox's own damage and crash tests (src/store/outbox-sqlite.ts, the measured
// alternative of issue 13). The queue's contract is tested on both implementations in
// store-outbox.test.ts; here, what only a database has: a file that is not one, a damaged page, a
// torn WAL tail, compaction of its pages.
import t from 'tap';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { SqliteOutbox, SQLITE_OUTBOX_FILE } from '../../src/store/outbox-sqlite.js';
import type { OutboxOptions } from '../../src/store/outbox.js';
import { ROOT } from '../helpers/policy.js';

const TOPIC = 'things/oven-1/telemetry/temperature';

async function open(dir: string, extra: Partial<OutboxOptions> = {}): Promise<{ ob: SqliteOutbox; problems: string[] }> {
  const problems: string[] = [];
  const ob = await SqliteOutbox.open({ dir, maxBytes: 16 << 20, onProblem: (m) => problems.push(m), ...extra });
  return { ob, problems };
}

async function fill(ob: SqliteOutbox, n: number, payloadBytes = 40): Promise<number[]> {
  const ps: Promise<number>[] = [];
  for (let k = 0; k < n; k++) ps.push(ob.append(TOPIC, `msg-${k}`.padEnd(payloadBytes, '.'), { qos: 1 }));
  return Promise.all(ps);
}

const seqsOf = (ob: SqliteOutbox): number[] => ob.peek(1_000_000).map((r) => r.seq);
const range = (a: number, b: number): number[] => Array.from({ length: b - a + 1 }, (_, k) => a + k);

t.test('a file that is not a database is set aside, a fresh queue starts, reported once', async (t) => {
  const dir = t.testdir();
  writeFileSync(join(dir, SQLITE_OUTBOX_FILE), randomBytes(10_000));
  const { ob, problems } = await open(dir);
  t.equal(problems.length, 1);
  t.match(problems[0], /outbox\.db cannot be opened or fails its check \(.*\).*; moved aside to .*outbox\.db\.corrupt; no record could be read; how many records it held cannot be known; none is added to the drop count$/);
  t.ok(readdirSync(dir).includes(`${SQLITE_OUTBOX_FILE}.corrupt`), 'the damaged file is kept aside');
  t.equal(ob.stats().depth, 0);
  t.equal(await ob.append(TOPIC, 'x'), 1);
  await ob.close();
  const again = await open(dir);
  t.same(again.problems, [], 'set aside once');
  t.same(seqsOf(again.ob), [1]);
  await again.ob.close();
});

t.test('a damaged page: the records around it are kept, those on it counted as lost, their seqs not used again', async (t) => {
  const dir = t.testdir();
  const first = await open(dir);
  await fill(first.ob, 2000);
  await first.ob.close(); // checkpointed into outbox.db, lastSeq written
  const path = join(dir, SQLITE_OUTBOX_FILE);
  const bytes = readFileSync(path);
  const pages = bytes.length / 4096;
  t.ok(pages > 20, `${pages} pages`);
  const victim = Math.floor(pages * 0.6);
  bytes.fill(0xff, victim * 4096, (victim + 1) * 4096);
  writeFileSync(path, bytes);

  const { ob, problems } = await open(dir);
  t.equal(problems.length, 1);
  const m = /(\d+) records that could be read are kept \(seqs 1\.\.2000\); records (\d+)\.\.(\d+) are lost: at most (\d+), \d+ added to the drop count$/.exec(problems[0] ?? '');
  t.ok(m, `reported: ${problems[0]}`);
  const [kept, from, to, lost] = [Number(m?.[1]), Number(m?.[2]), Number(m?.[3]), Number(m?.[4])];
  t.equal(kept + lost, 2000, `read past the damaged page: ${kept} kept, ${lost} lost (${from}..${to})`);
  t.ok(lost < 200, 'about one page of records is lost, not the rest of the queue');
  t.same(seqsOf(ob), [...range(1, from - 1), ...range(to + 1, 2000)], 'in order, nothing twice');
  t.equal(ob.stats().dropped, lost, 'counted as dropped (exact here: nothing was acknowledged)');
  t.equal(await ob.append(TOPIC, 'after'), 2001, 'the lost seqs are not used again');
  await ob.close();
  const again = await open(dir);
  t.same(again.problems, []);
  t.equal(again.ob.stats().dropped, lost, 'the count is persisted');
  t.equal(again.ob.stats().depth, kept + 1);
  await again.ob.close();
});

t.test('damage found while reading: the database is replaced at once, the records around the damage are kept, the queue goes on', async (t) => {
  const dir = t.testdir();
  const first = await open(dir);
  await fill(first.ob, 60_000);
  await first.ob.close();
  const path = join(dir, SQLITE_OUTBOX_FILE);
  const size = statSync(path).size;
  // Larger than SQLite's page cache (2 MB by default): after the open's quick_check, the first
  // pages are read from the file again by peek().
  t.ok(size > 3 * 1024 * 1024, `${size} bytes`);
  const { ob, problems } = await open(dir);
  t.same(problems, [], 'the open finds nothing');
  const bytes = readFileSync(path);
  bytes.fill(0xff, 10 * 4096, 11 * 4096); // page 11: among the lowest records
  writeFileSync(path, bytes);

  const seqs = seqsOf(ob);
  t.equal(problems.length, 1);
  t.match(problems[0], /outbox\.db is damaged \(found while reading: .*\); moved aside to .*outbox\.db\.corrupt; \d+ records that could be read are kept \(seqs 1\.\.60000\); records \d+\.\.\d+ are lost: at most \d+, \d+ added to the drop count$/);
  const lost = ob.stats().dropped;
  t.ok(lost > 0 && lost < 200, `about one page of records lost (${lost})`);
  t.equal(seqs.length, 60_000 - lost, 'every other record is still offered, once');
  t.same(seqs, [...seqs].sort((a, b) => a - b), 'in order');
  t.equal(ob.stats().depth, seqs.length);
  t.equal(await ob.append(TOPIC, 'after'), 60_001, 'the sequence goes on');
  await ob.close();
});

t.test('compaction deletes the acknowledged rows and gives the pages back', async (t) => {
  const dir = t.testdir();
  const { ob } = await open(dir);
  await fill(ob, 3000);
  const big = statSync(join(dir, SQLITE_OUTBOX_FILE)).size + statSync(join(dir, `${SQLITE_OUTBOX_FILE}-wal`)).size;
  for (let s = 1; s <= 3000; s++) ob.ack(s);
  await ob.compact();
  t.equal(ob.stats().bytes, 0);
  const small = statSync(join(dir, SQLITE_OUTBOX_FILE)).size + statSync(join(dir, `${SQLITE_OUTBOX_FILE}-wal`)).size;
  t.ok(small < big / 4, `${big} -> ${small} bytes`);
  t.equal(await ob.append(TOPIC, 'x'), 3001);
  await ob.close();
});

/** The `--import` that lets a child node run TypeScript, as tap's own runner does. */
function tsImport(): string[] {
  const a = process.execArgv.find((x) => x.includes('@tapjs/typescript'));
  return a === undefined ? [] : [a];
}

t.test('SIGKILL, then a torn WAL tail (cut mid-frame, as a power cut mid-write): the commits before it are kept in order, none twice', async (t) => {
  const dir = t.testdir();
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  const child = spawn(process.execPath, [...tsImport(), join(ROOT, 'test', 'fixtures', 'outbox', 'append-child.ts'), dir, 'sqlite'], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let durable = 0;
  let buf = '';
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
  child.stdout.on('data', (chunk: Buffer) => {
    buf += chunk.toString('utf8');
    const lines = buf.split('\n');
    buf = lines.pop()!;
    for (const line of lines) if (line.startsWith('d ')) durable++;
    if (durable >= 3000 && !child.killed) child.kill('SIGKILL');
  });
  t.equal(await exited, 'SIGKILL');
  const wal = join(dir, `${SQLITE_OUTBOX_FILE}-wal`);
  const size = statSync(wal).size;
  t.ok(size > 10_000, `a WAL was left (${size} bytes)`);
  truncateSync(wal, size - 1000);

  const { ob, problems } = await open(dir, { maxBytes: 64 * 1024 * 1024 });
  const recs = ob.peek(1_000_000);
  t.ok(recs.length > 0);
  t.same(
    recs.map((r) => r.seq),
    range(1, recs.length),
    'contiguous from 1, in order, no duplicates',
  );
  t.ok(
    recs.every((r) => r.payload.toString() === `msg-${r.seq - 1}`),
    'each record holds its message',
  );
  t.same(problems, [], "SQLite's own recovery: frames after the last whole commit are ignored");
  t.equal(await ob.append(TOPIC, 'after'), recs.length + 1);
  await ob.close();
});
