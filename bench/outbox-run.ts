// One implementation of the outbox measured in a process of its own (started by bench/outbox.ts),
// so that its memory figures are not the other's: `node --expose-gc dist/bench/outbox-run.js
// log|sqlite DIR` prints one JSON object of raw figures on stdout. The steps are those of
// bench/README.md, "Outbox".
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { OutboxOptions } from '../src/store/outbox.js';
import { collect, now } from './measure.js';

export const TOPIC = 'things/oven-1/telemetry/temperature';
export const PAYLOAD_BYTES = 64;
export const MESSAGES = 100_000;
/** Appends not yet durable at most: the producer waits for the oldest beyond this. */
export const WINDOW = 8192;
export const DRAIN_BATCH = 256;
export const LATENCY_APPENDS = 100;

export type Kind = 'log' | 'sqlite';

/** What the parent reads: numbers only. */
export type RunFigures = Record<string, number>;

/** The files of the outbox directory, bytes. */
function diskBytes(dir: string): number {
  let n = 0;
  for (const f of readdirSync(dir)) n += statSync(join(dir, f)).size;
  return n;
}

function memory(): { rss: number; heap: number } {
  collect();
  const m = process.memoryUsage();
  return { rss: m.rss, heap: m.heapUsed };
}

async function run(kind: Kind, dir: string): Promise<RunFigures> {
  const problems: string[] = [];
  const onProblem = (m: string): void => void problems.push(m);
  const base = memory();
  // The implementation's modules (node:sqlite for the SQLite one) are loaded after the baseline.
  const Impl = kind === 'log' ? (await import('../src/store/outbox.js')).Outbox : (await import('../src/store/outbox-sqlite.js')).SqliteOutbox;
  const opts: OutboxOptions = { dir: join(dir, 'outbox'), maxBytes: 256 * 1024 * 1024, onProblem };
  const ob = await Impl.open(opts);
  const payload = Buffer.alloc(PAYLOAD_BYTES, 0x5a);

  // 1. Durability latency of a single append at rest (group-commit delay + one fsync).
  const lat: number[] = [];
  for (let i = 0; i < LATENCY_APPENDS; i++) {
    const t0 = now();
    await ob.append(TOPIC, payload, { qos: 1 });
    lat.push(now() - t0);
  }
  lat.sort((a, b) => a - b);
  for (let s = 1; s <= LATENCY_APPENDS; s++) ob.ack(s);
  await ob.compact();
  const bytesBefore = diskBytes(opts.dir);

  // 2. Queue MESSAGES as fast as they come, at most WINDOW waiting for their fsync. The longest
  // append() call is the longest the event loop (the broker) is held by the queue.
  const pending: Promise<number>[] = [];
  let head = 0;
  let longestCall = 0;
  const w0 = now();
  for (let i = 0; i < MESSAGES; i++) {
    const c0 = now();
    pending.push(ob.append(TOPIC, payload, { qos: 1 }));
    const c = now() - c0;
    if (c > longestCall) longestCall = c;
    if (pending.length - head > WINDOW) await pending[head++];
  }
  await Promise.all(pending.slice(head));
  const writeMs = now() - w0;
  const st = ob.stats();
  if (st.depth !== MESSAGES || st.dropped !== 0) throw new Error(`outbox bench (${kind}): depth ${st.depth}, dropped ${st.dropped} after queueing ${MESSAGES}`);
  const diskQueued = diskBytes(opts.dir);
  pending.length = 0;
  const memQueued = memory();
  await ob.close();
  const diskClosed = diskBytes(opts.dir);

  // 3. Restart (open), reconnect: drain in order, acking each.
  const r0 = now();
  const again = await Impl.open(opts);
  const openMs = now() - r0;
  const d0 = now();
  let drained = 0;
  let last = 0;
  let expected = LATENCY_APPENDS + 1;
  for (;;) {
    const batch = again.peek(DRAIN_BATCH, last);
    if (batch.length === 0) break;
    for (const r of batch) {
      if (r.seq !== expected++) throw new Error(`outbox bench (${kind}): seq ${r.seq} out of order`);
      again.ack(r.seq);
    }
    drained += batch.length;
    last = batch[batch.length - 1]!.seq;
  }
  const drainMs = now() - d0;
  if (drained !== MESSAGES) throw new Error(`outbox bench (${kind}): drained ${drained} of ${MESSAGES}`);
  const memDrained = memory();
  const c0 = now();
  await again.compact();
  const compactMs = now() - c0;
  const diskCompacted = diskBytes(opts.dir);
  await again.close();
  if (problems.length > 0) throw new Error(`outbox bench (${kind}): problems reported: ${problems.slice(0, 3).join('; ')}`);

  const pct = (p: number): number => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]!;
  const fig: RunFigures = {
    queuedPerSecond: MESSAGES / (writeMs / 1000),
    queueSeconds: writeMs / 1000,
    drainedPerSecond: MESSAGES / (drainMs / 1000),
    drainSeconds: drainMs / 1000,
    diskBytesPerMessage: (diskQueued - bytesBefore) / MESSAGES,
    diskBytesQueued: diskQueued,
    diskBytesClosed: diskClosed,
    diskBytesAfterCompact: diskCompacted,
    logicalBytes: st.bytes,
    segments: st.segments,
    reopenMs: openMs,
    compactMs,
    longestAppendCallMs: longestCall,
    latencyMedianMs: pct(0.5),
    latencyP99Ms: pct(0.99),
    syncIntervalMs: ob.limits.syncIntervalMs,
    rssDeltaQueuedBytes: memQueued.rss - base.rss,
    heapDeltaQueuedBytes: memQueued.heap - base.heap,
    rssDeltaDrainedBytes: memDrained.rss - base.rss,
    heapDeltaDrainedBytes: memDrained.heap - base.heap,
  };
  if (kind === 'sqlite') Object.assign(fig, await fullCommitCost(join(dir, 'full')));
  return fig;
}

/**
 * What the alternative commit of the SQLite queue would cost (outbox-sqlite.ts, "Durability"): a
 * COMMIT with synchronous=FULL fsyncs inside the call, on the main thread. Times 200 one-row
 * commits, as a group commit per syncIntervalMs would do, each one blocking the event loop.
 */
async function fullCommitCost(dir: string): Promise<RunFigures> {
  const { mkdirSync } = await import('node:fs');
  const { DatabaseSync } = await import('node:sqlite');
  mkdirSync(dir, { recursive: true });
  const db = new DatabaseSync(join(dir, 'full.db'));
  db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; CREATE TABLE r (seq INTEGER PRIMARY KEY, payload BLOB)');
  const ins = db.prepare('INSERT INTO r (payload) VALUES (?)');
  const payload = Buffer.alloc(PAYLOAD_BYTES, 0x5a);
  const times: number[] = [];
  for (let i = 0; i < 200; i++) {
    const t0 = now();
    ins.run(payload);
    times.push(now() - t0);
  }
  db.close();
  times.sort((a, b) => a - b);
  return { fullCommitMedianMs: times[100]!, fullCommitP99Ms: times[198]! };
}

// Runs only as the child bench/outbox.ts starts (this module also lends the parent its constants).
const [kind, dir] = process.argv.slice(2);
if (process.argv[1]?.endsWith('outbox-run.js') && (kind === 'log' || kind === 'sqlite') && dir) {
  process.stdout.write(JSON.stringify(await run(kind, dir)) + '\n');
}
