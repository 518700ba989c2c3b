// The outbox section of the bench: the store-and-forward queue of upward messages, on both
// implementations side by side in the same run (issue 13): the segment log (src/store/outbox.ts)
// and the same interface on node:sqlite (src/store/outbox-sqlite.ts). Each runs in a process of its
// own (bench/outbox-run.ts), on a temporary directory under os.tmpdir(), removed at the end: how
// fast messages are queued with the agent's durability (group commit: append resolves once
// fsynced), drained after a restart (peek + ack, as the bridge does on PUBACKs), the disk bytes
// each takes, the memory it holds, and the time to open a queue of 100,000. Then what loading
// node:sqlite costs a process that does nothing else. See bench/README.md.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RECORD_OVERHEAD_BYTES } from '../src/store/outbox.js';
import { DRAIN_BATCH, LATENCY_APPENDS, MESSAGES, PAYLOAD_BYTES, TOPIC, WINDOW, type Kind, type RunFigures } from './outbox-run.js';
import { MB } from './measure.js';

export type OutboxFigures = Record<string, number>;

const int = (n: number): string => Math.round(n).toLocaleString('en-US');
const r2 = (n: number): number => Math.round(n * 100) / 100;
const mb = (n: number): string => (n / MB).toFixed(1);
const signedMb = (n: number): string => `${n < 0 ? '−' : '+'}${mb(Math.abs(n))}`;

function runOne(kind: Kind, dir: string): RunFigures {
  const script = fileURLToPath(new URL('./outbox-run.js', import.meta.url));
  const out = execFileSync(process.execPath, ['--expose-gc', script, kind, join(dir, kind)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 20 });
  return JSON.parse(out.trim().split('\n').pop()!) as RunFigures;
}

/** RSS (VmRSS) of a fresh node process running `code`, read by itself 300 ms after it finished. */
function rssOf(code: string): number {
  const js = `${code}; setTimeout(() => process.stdout.write(String(process.memoryUsage().rss)), 300);`;
  return Number(execFileSync(process.execPath, ['-e', js], { encoding: 'utf8' }));
}

const LOAD_ROUNDS = 5;
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** What node:sqlite costs a process: imported only, and a database opened in WAL with one insert. */
function sqliteLoadCost(dir: string): { bare: number; imported: number; used: number } {
  const db = JSON.stringify(join(dir, 'load.db'));
  const bare: number[] = [];
  const imported: number[] = [];
  const used: number[] = [];
  // Alternating the kinds, so that a change in the machine's load falls on all three.
  for (let i = 0; i < LOAD_ROUNDS; i++) {
    bare.push(rssOf('void 0'));
    imported.push(rssOf("require('node:sqlite')"));
    used.push(rssOf(`const { DatabaseSync } = require('node:sqlite'); const d = new DatabaseSync(${db}); d.exec('PRAGMA journal_mode = WAL; CREATE TABLE IF NOT EXISTS t (seq INTEGER PRIMARY KEY, p BLOB)'); d.prepare('INSERT INTO t (p) VALUES (?)').run(Buffer.alloc(64))`));
  }
  return { bare: median(bare), imported: median(imported), used: median(used) };
}

export async function outboxSection(o: { progress: (line: string) => void }): Promise<{ figures: OutboxFigures; lines: string[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'edgewarden-bench-outbox-'));
  try {
    o.progress(`outbox: segment log, ${LATENCY_APPENDS} single appends, ${int(MESSAGES)} queued, reopened, drained (own process)`);
    const log = runOne('log', dir);
    o.progress(`outbox: node:sqlite, the same (own process)`);
    const sql = runOne('sqlite', dir);
    o.progress(`outbox: RSS of node processes with and without node:sqlite (${LOAD_ROUNDS} rounds)`);
    const load = sqliteLoadCost(dir);

    const figures: OutboxFigures = {
      outboxMessages: MESSAGES,
      outboxPayloadBytes: PAYLOAD_BYTES,
      outboxTopicBytes: Buffer.byteLength(TOPIC),
      outboxRecordOverheadBytes: RECORD_OVERHEAD_BYTES,
      outboxSyncIntervalMs: log.syncIntervalMs!,
    };
    // The log's keys are those of earlier runs; the SQLite queue's the same with `outboxSqlite`.
    for (const [prefix, f] of [
      ['outbox', log],
      ['outboxSqlite', sql],
    ] as const) {
      Object.assign(figures, {
        [`${prefix}QueuedPerSecond`]: Math.round(f.queuedPerSecond!),
        [`${prefix}QueueSeconds`]: r2(f.queueSeconds!),
        [`${prefix}DrainedPerSecond`]: Math.round(f.drainedPerSecond!),
        [`${prefix}DrainSeconds`]: r2(f.drainSeconds!),
        [`${prefix}DiskBytesPerMessage`]: r2(f.diskBytesPerMessage!),
        [`${prefix}DiskBytes`]: f.diskBytesQueued!,
        [`${prefix}DiskBytesClosed`]: f.diskBytesClosed!,
        [`${prefix}ReopenMs`]: Math.round(f.reopenMs!),
        [`${prefix}CompactMs`]: r2(f.compactMs!),
        [`${prefix}DiskBytesAfterCompact`]: f.diskBytesAfterCompact!,
        [`${prefix}AppendDurableLatencyMedianMs`]: r2(f.latencyMedianMs!),
        [`${prefix}AppendDurableLatencyP99Ms`]: r2(f.latencyP99Ms!),
        [`${prefix}LongestAppendCallMs`]: r2(f.longestAppendCallMs!),
        [`${prefix}RssDeltaQueuedMB`]: r2(f.rssDeltaQueuedBytes! / MB),
        [`${prefix}HeapDeltaQueuedMB`]: r2(f.heapDeltaQueuedBytes! / MB),
        [`${prefix}RssDeltaDrainedMB`]: r2(f.rssDeltaDrainedBytes! / MB),
        [`${prefix}HeapDeltaDrainedMB`]: r2(f.heapDeltaDrainedBytes! / MB),
      });
    }
    figures.outboxSegments = log.segments!;
    figures.outboxSqliteFullCommitMedianMs = r2(sql.fullCommitMedianMs!);
    figures.outboxSqliteFullCommitP99Ms = r2(sql.fullCommitP99Ms!);
    figures.outboxNodeBareRssMB = r2(load.bare / MB);
    figures.outboxNodeSqliteImportedRssMB = r2(load.imported / MB);
    figures.outboxNodeSqliteUsedRssMB = r2(load.used / MB);

    const row = (label: string, a: string, b: string, note = ''): string => `  ${label.padEnd(30)}${a.padStart(16)}${b.padStart(16)}${note ? `   ${note}` : ''}`;
    const lines = [
      `Outbox — ${int(MESSAGES)} messages of ${PAYLOAD_BYTES} bytes on ${TOPIC}, group commit every ${log.syncIntervalMs} ms, directory in ${tmpdir()}; each queue in a process of its own`,
      row('', 'segment log', 'node:sqlite'),
      row('queued (durable), messages/s', int(log.queuedPerSecond!), int(sql.queuedPerSecond!), `at most ${int(WINDOW)} waiting for their fsync (${r2(log.queueSeconds!)} s, ${r2(sql.queueSeconds!)} s)`),
      row('drained after a restart, msg/s', int(log.drainedPerSecond!), int(sql.drainedPerSecond!), `peek ${DRAIN_BATCH} + ack each`),
      row('open a queue of 100,000, ms', int(log.reopenMs!), int(sql.reopenMs!), 'log: scan + CRC of every record; sqlite: quick_check + bookkeeping'),
      row('disk per queued message, B', String(r2(log.diskBytesPerMessage!)), String(r2(sql.diskBytesPerMessage!)), `files while open (sqlite: db + WAL); after close ${int(log.diskBytesClosed!)} / ${int(sql.diskBytesClosed!)} bytes`),
      row('after drain + compact, bytes', int(log.diskBytesAfterCompact!), int(sql.diskBytesAfterCompact!), `compact ${r2(log.compactMs!)} ms / ${r2(sql.compactMs!)} ms`),
      row('one append to durable, ms', `${r2(log.latencyMedianMs!)} / ${r2(log.latencyP99Ms!)}`, `${r2(sql.latencyMedianMs!)} / ${r2(sql.latencyP99Ms!)}`, `median / p99, ${LATENCY_APPENDS} appends one at a time`),
      row('longest append() call, ms', String(r2(log.longestAppendCallMs!)), String(r2(sql.longestAppendCallMs!)), 'the event loop held by one call (sqlite: its checkpoints run inside a commit)'),
      row('RSS / heap Δ 100k queued, MB', `${mb(log.rssDeltaQueuedBytes!)} / ${mb(log.heapDeltaQueuedBytes!)}`, `${mb(sql.rssDeltaQueuedBytes!)} / ${mb(sql.heapDeltaQueuedBytes!)}`, 'after gc, against the process before the module was imported'),
      row('RSS / heap Δ after the drain, MB', `${mb(log.rssDeltaDrainedBytes!)} / ${mb(log.heapDeltaDrainedBytes!)}`, `${mb(sql.rssDeltaDrainedBytes!)} / ${mb(sql.heapDeltaDrainedBytes!)}`),
      `  sqlite with synchronous=FULL, one commit: median ${r2(sql.fullCommitMedianMs!)} ms, p99 ${r2(sql.fullCommitP99Ms!)} ms on the main thread (the fsync inside COMMIT; refused, see docs/cloud.md)`,
      `  node:sqlite in a bare process: RSS ${mb(load.bare)} MB bare, ${mb(load.imported)} MB imported (${signedMb(load.imported - load.bare)}), ${mb(load.used)} MB with a WAL database open and written (${signedMb(load.used - load.bare)}); median of ${LOAD_ROUNDS}`,
    ];
    return { figures, lines };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
