// The outbox section of the bench (src/store/outbox.ts): how fast upward messages are queued on disk
// with the durability the agent uses (group commit: append resolves once fsynced), how fast they
// are drained after a restart and reconnect (peek + ack, as the bridge does on PUBACKs), and the
// disk bytes each queued message takes. A temporary directory under os.tmpdir(), removed at the end.
// See bench/README.md.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Outbox, RECORD_OVERHEAD_BYTES } from '../src/store/outbox.js';
import { now } from './measure.js';

const TOPIC = 'things/oven-1/telemetry/temperature';
const PAYLOAD_BYTES = 64;
const MESSAGES = 100_000;
/** Appends not yet durable at most: the producer waits for the oldest beyond this. */
const WINDOW = 8192;
const DRAIN_BATCH = 256;
const LATENCY_APPENDS = 100;

export type OutboxFigures = Record<string, number>;

const int = (n: number): string => Math.round(n).toLocaleString('en-US');

export async function outboxSection(o: { progress: (line: string) => void }): Promise<{ figures: OutboxFigures; lines: string[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'edgewarden-bench-outbox-'));
  const problems: string[] = [];
  const onProblem = (m: string): void => void problems.push(m);
  try {
    const opts = { dir: join(dir, 'outbox'), maxBytes: 256 * 1024 * 1024, onProblem };
    const ob = await Outbox.open(opts);
    const payload = Buffer.alloc(PAYLOAD_BYTES, 0x5a);

    // 1. Durability latency of a single append at rest (group-commit delay + one fsync).
    o.progress(`outbox: ${LATENCY_APPENDS} appends one at a time (latency to durable)`);
    const lat: number[] = [];
    for (let i = 0; i < LATENCY_APPENDS; i++) {
      const t0 = now();
      await ob.append(TOPIC, payload, { qos: 1 });
      lat.push(now() - t0);
    }
    lat.sort((a, b) => a - b);
    for (let s = 1; s <= LATENCY_APPENDS; s++) ob.ack(s);
    await ob.compact();
    const bytesBefore = ob.stats().bytes;

    // 2. Queue MESSAGES as fast as they come, at most WINDOW waiting for their fsync.
    o.progress(`outbox: queueing ${int(MESSAGES)} messages of ${PAYLOAD_BYTES} bytes`);
    const pending: Promise<number>[] = [];
    let head = 0;
    const w0 = now();
    for (let i = 0; i < MESSAGES; i++) {
      pending.push(ob.append(TOPIC, payload, { qos: 1 }));
      if (pending.length - head > WINDOW) await pending[head++];
    }
    await Promise.all(pending.slice(head));
    const writeMs = now() - w0;
    const st = ob.stats();
    if (st.depth !== MESSAGES || st.dropped !== 0) throw new Error(`outbox bench: depth ${st.depth}, dropped ${st.dropped} after queueing ${MESSAGES}`);
    const bytesPerMessage = (st.bytes - bytesBefore) / MESSAGES;
    await ob.close();

    // 3. Restart (open scans and verifies every record), reconnect: drain in order, acking each.
    o.progress('outbox: reopening and draining');
    const r0 = now();
    const again = await Outbox.open(opts);
    const openMs = now() - r0;
    const d0 = now();
    let drained = 0;
    let last = 0;
    let expected = LATENCY_APPENDS + 1;
    for (;;) {
      const batch = again.peek(DRAIN_BATCH, last);
      if (batch.length === 0) break;
      for (const r of batch) {
        if (r.seq !== expected++) throw new Error(`outbox bench: seq ${r.seq} out of order`);
        again.ack(r.seq);
      }
      drained += batch.length;
      last = batch[batch.length - 1]!.seq;
    }
    const drainMs = now() - d0;
    if (drained !== MESSAGES) throw new Error(`outbox bench: drained ${drained} of ${MESSAGES}`);
    const c0 = now();
    await again.compact();
    const compactMs = now() - c0;
    const after = again.stats();
    await again.close();
    if (problems.length > 0) throw new Error(`outbox bench: problems reported: ${problems.slice(0, 3).join('; ')}`);

    const pct = (p: number): number => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]!;
    const r2 = (n: number): number => Math.round(n * 100) / 100;
    const figures: OutboxFigures = {
      outboxMessages: MESSAGES,
      outboxPayloadBytes: PAYLOAD_BYTES,
      outboxTopicBytes: Buffer.byteLength(TOPIC),
      outboxQueuedPerSecond: Math.round(MESSAGES / (writeMs / 1000)),
      outboxQueueSeconds: r2(writeMs / 1000),
      outboxDrainedPerSecond: Math.round(MESSAGES / (drainMs / 1000)),
      outboxDrainSeconds: r2(drainMs / 1000),
      outboxDiskBytesPerMessage: r2(bytesPerMessage),
      outboxRecordOverheadBytes: RECORD_OVERHEAD_BYTES,
      outboxSegments: st.segments,
      outboxDiskBytes: st.bytes,
      outboxReopenMs: Math.round(openMs),
      outboxCompactMs: r2(compactMs),
      outboxDiskBytesAfterCompact: after.bytes,
      outboxSyncIntervalMs: ob.limits.syncIntervalMs,
      outboxAppendDurableLatencyMedianMs: r2(pct(0.5)),
      outboxAppendDurableLatencyP99Ms: r2(pct(0.99)),
    };
    const lines = [
      `Outbox — ${int(MESSAGES)} messages of ${PAYLOAD_BYTES} bytes on ${TOPIC}, group commit every ${ob.limits.syncIntervalMs} ms, ${os()}`,
      `  queued (durable)           ${int(figures.outboxQueuedPerSecond!).padStart(10)} messages/s   (${figures.outboxQueueSeconds} s, at most ${int(WINDOW)} waiting for their fsync)`,
      `  drained after a restart    ${int(figures.outboxDrainedPerSecond!).padStart(10)} messages/s   (peek ${DRAIN_BATCH} + ack each; reopen ${figures.outboxReopenMs} ms, compaction ${figures.outboxCompactMs} ms)`,
      `  disk per queued message    ${String(figures.outboxDiskBytesPerMessage).padStart(10)} bytes        (${RECORD_OVERHEAD_BYTES} of framing + topic + payload; ${st.segments} segments, ${int(st.bytes)} bytes)`,
      `  one append, to durable     median ${figures.outboxAppendDurableLatencyMedianMs} ms, p99 ${figures.outboxAppendDurableLatencyP99Ms} ms (${LATENCY_APPENDS} appends one at a time)`,
    ];
    return { figures, lines };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function os(): string {
  return `directory in ${tmpdir()}`;
}
