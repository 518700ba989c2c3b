// The mqtt5 section of the bench (issue 15): MQTT 5 next to MQTT 3.1.1 on one enforced agent, in the
// same run. The broker section's enforced configuration (its snapshot of 1,000 devices, its config,
// its publishers, subscribers, command sender and device: broker.ts) and its load generator, which
// speaks either version (`protocolVersion`). Rounds alternate the versions (3.1.1, 5; 5, 3.1.1;
// ...): QoS 0 and QoS 1 throughput (delivered/s, the agent's CPU time per delivery), then the
// latency of an allowed command; medians over the rounds and the ratio 5 ÷ 3.1.1 of each. Every run
// is checked: each accepted message reached each subscriber, or the agent counted it dropped (a
// subscriber's in-flight window and its wait full: on a loaded machine, a starved subscriber at QoS
// 1), no PUBACK refused, no publish denied.
// See bench/README.md "MQTT 5".
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cleanUpOnExit, median, startAgentProcess, type AgentProcess } from './agent-process.js';
import {
  COMMAND_DEVICE,
  enforcedLoad,
  Generator,
  LATENCY_COMMANDS,
  LATENCY_GAP_MS,
  LATENCY_ROUNDS,
  LATENCY_WARMUP,
  latencyRequest,
  latencyStats,
  makeSnapshot,
  PAYLOAD_BYTES,
  PUBLISHERS,
  ROUNDS,
  SUBSCRIBERS,
  TELEMETRY_FILTER,
  throughputRun,
  WARMUP_MS,
  WINDOW_MS,
  writeConfig,
  type LatencyStats,
} from './broker.js';
import type { LatencyResult } from './load-generator.js';
import type { ProtocolVersion } from './mqtt-wire.js';
import { now } from './measure.js';

export type Mqtt5Figures = Record<string, number | number[]>;

interface Options {
  readonly progress: (line: string) => void;
  /** More node flags for the agent (`--agent-node-options`). */
  readonly agentNodeArgs?: readonly string[];
}

const VERSIONS = [4, 5] as const;
const NAME: Record<ProtocolVersion, string> = { 4: '3.1.1', 5: '5' };
const KEY: Record<ProtocolVersion, string> = { 4: 'V311', 5: 'V5' };
/** Round r's order: 3.1.1 first in even rounds, 5 first in odd ones. */
const order = (r: number): readonly ProtocolVersion[] => (r % 2 === 0 ? [4, 5] : [5, 4]);

type PerVersion<T> = Record<ProtocolVersion, T>;

interface QosFigures {
  delivered: PerVersion<number[]>;
  agentCpu: PerVersion<number[]>;
  /** Agent CPU µs per delivered message, per round. */
  cpuPerDelivery: PerVersion<number[]>;
  /** Deliveries over the whole runs (warm-up and drain included), every one checked against what was accepted. */
  deliveredTotal: PerVersion<number>;
  /** Messages the agent dropped waiting for a subscriber's in-flight window (deliveriesDroppedWaiting), over the runs. */
  droppedWaiting: PerVersion<number>;
  generatorCpuMax: number;
}

const emptyQosFigures = (): QosFigures => ({
  delivered: { 4: [], 5: [] },
  agentCpu: { 4: [], 5: [] },
  cpuPerDelivery: { 4: [], 5: [] },
  deliveredTotal: { 4: 0, 5: 0 },
  droppedWaiting: { 4: 0, 5: 0 },
  generatorCpuMax: 0,
});

export async function mqtt5Section(o: Options): Promise<{ figures: Mqtt5Figures; lines: string[] }> {
  const started = now();
  const dir = mkdtempSync(join(tmpdir(), 'ew-bench-mqtt5-'));
  let agent: AgentProcess | undefined;
  let gen: Generator | undefined;
  const end = cleanUpOnExit(() => {
    gen?.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  try {
    o.progress('mqtt5: signing the broker section\'s snapshot (1,000 devices) with a fresh key; starting one enforced agent and the load generator');
    const snap = makeSnapshot(dir);
    const { configFile, stateDir } = writeConfig(dir, 'mqtt5', true, snap.keyFile, snap.snapshotFile);
    agent = await startAgentProcess({ name: 'mqtt5', configFile, stateDir, ...(o.agentNodeArgs ? { nodeArgs: o.agentNodeArgs } : {}) });
    const s = await agent.status();
    if (s.snapshotVersion !== 1000) throw new Error(`mqtt5 agent: the bench snapshot is not in force (version ${s.snapshotVersion})`);
    gen = new Generator();
    const load = enforcedLoad();
    const before = s.broker;

    // 1. throughput, alternating the versions
    const q: Record<0 | 1, QosFigures> = { 0: emptyQosFigures(), 1: emptyQosFigures() };
    for (let r = 0; r < ROUNDS; r++) {
      for (const v of order(r)) {
        for (const qos of [0, 1] as const) {
          const what = `MQTT ${NAME[v]}, QoS ${qos}, round ${r + 1}/${ROUNDS}`;
          o.progress(`mqtt5: ${what}: ${PUBLISHERS} publishers, ${SUBSCRIBERS} subscribers, ${WARMUP_MS / 1000} s warm-up + ${WINDOW_MS / 1000} s`);
          const dropped0 = (await agent.status()).broker.deliveriesDroppedWaiting ?? NaN;
          const run = await throughputRun(gen, agent, load, qos, `MQTT ${NAME[v]}`, v);
          const dropped = ((await agent.status()).broker.deliveriesDroppedWaiting ?? NaN) - dropped0;
          // Everything accepted (QoS 0: written; QoS 1: PUBACKed) reached every subscriber, once, or
          // the agent counted it dropped: a QoS 1 publisher's PUBACK does not wait for the deliveries,
          // so a subscriber that reads slower than the agent delivers (or is starved of CPU) falls behind, and past its in-flight window and the wait
          // (limits.maxInflightOutbound, sessions.maxQueuedMessages) the agent drops the oldest.
          const expected = run.acceptedTotal * SUBSCRIBERS;
          if (run.deliveredTotal + dropped !== expected) {
            throw new Error(
              `mqtt5: ${what}: ${run.acceptedTotal} messages accepted × ${SUBSCRIBERS} subscribers = ${expected} deliveries expected, ${run.deliveredTotal} received and ${dropped} dropped by the agent`,
            );
          }
          if (dropped > 0) o.progress(`mqtt5:   ! the agent dropped ${dropped} deliveries waiting for a subscriber's in-flight window (the subscriber fell behind)`);
          if (run.refusedTotal !== 0) throw new Error(`mqtt5: ${what}: ${run.refusedTotal} PUBACKs refused (reason code ≥ 0x80)`);
          if (run.socketErrors !== 0) throw new Error(`mqtt5: ${what}: ${run.socketErrors} socket errors`);
          const f = q[qos];
          f.delivered[v].push(run.deliveredPerSecond);
          f.agentCpu[v].push(run.agentCpu);
          f.cpuPerDelivery[v].push((run.agentCpu * 1e6) / run.deliveredPerSecond);
          f.deliveredTotal[v] += run.deliveredTotal;
          f.droppedWaiting[v] += dropped;
          f.generatorCpuMax = Math.max(f.generatorCpuMax, run.generatorCpu);
        }
      }
    }

    // 2. command latency, alternating the versions; the samples of a version are pooled
    const samples: PerVersion<number[]> = { 4: [], 5: [] };
    for (let r = 0; r < LATENCY_ROUNDS; r++) {
      for (const v of order(r)) {
        o.progress(`mqtt5: latency, MQTT ${NAME[v]}, round ${r + 1}/${LATENCY_ROUNDS}: ${LATENCY_COMMANDS} commands (QoS 1) one at a time to ${COMMAND_DEVICE}`);
        const got = (await gen.request<LatencyResult>(latencyRequest(agent.port, load, v))).samplesMs;
        // The generator fails the request on a command lost or out of order; here, on a count short.
        if (got.length !== LATENCY_COMMANDS) throw new Error(`mqtt5: latency, MQTT ${NAME[v]}: ${got.length} of ${LATENCY_COMMANDS} commands timed`);
        const st = latencyStats(got);
        o.progress(`mqtt5:   median ${st.medianMs.toFixed(3)} ms, p99 ${st.p99Ms.toFixed(3)} ms`);
        samples[v].push(...got);
      }
    }

    const after = (await agent.status()).broker;
    const delta = (k: string): number => (after[k] ?? NaN) - (before[k] ?? NaN);
    const denied = delta('publishesDenied');
    const filtered = delta('deliveriesFiltered');
    if (denied !== 0 || filtered !== 0) throw new Error(`mqtt5: the agent denied ${denied} publishes and filtered ${filtered} deliveries (everything in the load is allowed: 0 expected)`);
    const agentCpus = [0, 1].flatMap((qos) => VERSIONS.flatMap((v) => q[qos as 0 | 1].agentCpu[v]));

    return summarize({
      q,
      lat: { 4: latencyStats(samples[4]), 5: latencyStats(samples[5]) },
      denied,
      filtered,
      starved: agentCpus.filter((c) => !(c >= 0.9)).length,
      runs: agentCpus.length,
      seconds: (now() - started) / 1000,
    });
  } finally {
    await agent?.stop().catch(() => undefined);
    end();
  }
}

// --- figures and lines -------------------------------------------------------------------------------------------

const r1 = (x: number): number => Math.round(x * 10) / 10;
const r3 = (x: number): number => Math.round(x * 1000) / 1000;
const int = (x: number): string => Math.round(x).toLocaleString('en-US');
const ratio = (x: number): string => x.toFixed(3);

function summarize(m: {
  q: Record<0 | 1, QosFigures>;
  lat: PerVersion<LatencyStats>;
  denied: number;
  filtered: number;
  starved: number;
  runs: number;
  seconds: number;
}): { figures: Mqtt5Figures; lines: string[] } {
  const figures: Mqtt5Figures = {
    mqtt5Publishers: PUBLISHERS,
    mqtt5Subscribers: SUBSCRIBERS,
    mqtt5PayloadBytes: PAYLOAD_BYTES,
    mqtt5RoundsPerVersion: ROUNDS,
    mqtt5WarmupSeconds: WARMUP_MS / 1000,
    mqtt5WindowSeconds: WINDOW_MS / 1000,
  };
  const lines: string[] = [
    `MQTT 5 — one enforced agent (the broker section's snapshot and enforced load), the same clients speaking MQTT 3.1.1 or MQTT 5,`,
    `  rounds alternating 3.1.1, 5; 5, 3.1.1; ... ${PUBLISHERS} devices publish their own telemetry, ${SUBSCRIBERS} "dashboard" connections subscribe to`,
    `  ${TELEMETRY_FILTER}, ${PAYLOAD_BYTES}-byte payloads; median of ${ROUNDS} rounds per version, ${WARMUP_MS / 1000} s warm-up then ${WINDOW_MS / 1000} s measured.`,
  ];
  const rounds = (xs: number[]): string => xs.map((x) => int(x)).join(', ');
  for (const qos of [0, 1] as const) {
    const f = m.q[qos];
    const d = { 4: median(f.delivered[4]), 5: median(f.delivered[5]) };
    const us = { 4: median(f.cpuPerDelivery[4]), 5: median(f.cpuPerDelivery[5]) };
    const cpu = { 4: median(f.agentCpu[4]), 5: median(f.agentCpu[5]) };
    // Round r's two runs were adjacent in time: the median of their ratios is less exposed to drifting load.
    const paired = median(f.delivered[5].map((x, r) => x / f.delivered[4][r]!));
    const Q = `mqtt5Qos${qos}`;
    for (const v of VERSIONS) {
      Object.assign(figures, {
        [`${Q}DeliveredPerSecond${KEY[v]}`]: Math.round(d[v]),
        [`${Q}DeliveredPerSecond${KEY[v]}Rounds`]: f.delivered[v].map(Math.round),
        [`${Q}AgentCpuMicrosecondsPerDelivery${KEY[v]}`]: r3(us[v]),
        [`${Q}AgentCpu${KEY[v]}`]: r3(cpu[v]),
        [`${Q}DeliveredTotal${KEY[v]}`]: f.deliveredTotal[v],
        [`${Q}DroppedWaiting${KEY[v]}`]: f.droppedWaiting[v],
      });
    }
    Object.assign(figures, {
      [`${Q}DeliveredV5VsV311Ratio`]: r3(d[5] / d[4]),
      [`${Q}DeliveredV5VsV311RatioPairedMedian`]: r3(paired),
      [`${Q}AgentCpuPerDeliveryV5VsV311Ratio`]: r3(us[5] / us[4]),
      [`${Q}GeneratorCpuMax`]: r3(f.generatorCpuMax),
    });
    lines.push(
      `  QoS ${qos}  delivered/s   3.1.1 ${int(d[4]).padStart(9)}   5 ${int(d[5]).padStart(9)}   5 ÷ 3.1.1 = ${ratio(d[5] / d[4])} (median of the ${ROUNDS} paired ratios ${ratio(paired)})`,
      `         rounds        3.1.1 ${rounds(f.delivered[4])}; 5 ${rounds(f.delivered[5])}`,
      `         agent CPU     3.1.1 ${us[4].toFixed(2)} µs/delivery (${(cpu[4] * 100).toFixed(0)}% of a core), 5 ${us[5].toFixed(2)} µs/delivery (${(cpu[5] * 100).toFixed(0)}%): 5 ÷ 3.1.1 = ${ratio(us[5] / us[4])}; generator ≤ ${(f.generatorCpuMax * 100).toFixed(0)}% of a core`,
      `         checked       every accepted message reached both subscribers${f.droppedWaiting[4] + f.droppedWaiting[5] > 0 ? ' or was counted dropped' : ''}: ${int(f.deliveredTotal[4])} deliveries over the 3.1.1 runs, ${int(f.deliveredTotal[5])} over the 5 runs`,
    );
    if (f.droppedWaiting[4] + f.droppedWaiting[5] > 0) {
      lines.push(
        `         ! the agent dropped deliveries waiting for a subscriber's in-flight window: 3.1.1 ${int(f.droppedWaiting[4])}, 5 ${int(f.droppedWaiting[5])}`,
        `           (a subscriber fell more than limits.maxInflightOutbound + sessions.maxQueuedMessages behind: the bound at work; the generator's`,
        `           subscribers read slower than the agent delivers, or were starved of CPU on a busy machine)`,
      );
    }
  }
  figures.mqtt5RunsWithAgentBelow90PercentCpu = m.starved;
  if (m.starved > 0) {
    lines.push(
      `  ! in ${m.starved} of ${m.runs} runs the agent had less than 90% of a core: other processes took the CPU, so the rates are`,
      `    noisy; the CPU time per delivery is the steadier comparison. Rerun on an idle machine.`,
    );
  }
  Object.assign(figures, { mqtt5PublishesDenied: m.denied, mqtt5DeliveriesFiltered: m.filtered });
  lines.push(`  agent counters over the section: ${m.denied} publishes denied, ${m.filtered} deliveries filtered (everything is allowed: 0 expected)`);

  const lat = (l: LatencyStats): string => `median ${l.medianMs.toFixed(3)} ms, p90 ${l.p90Ms.toFixed(3)} ms, p99 ${l.p99Ms.toFixed(3)} ms, max ${l.maxMs.toFixed(2)} ms`;
  figures.mqtt5CommandLatencyCommandsPerVersion = m.lat[4].count;
  for (const v of VERSIONS) {
    Object.assign(figures, {
      [`mqtt5CommandLatency${KEY[v]}MedianMs`]: r3(m.lat[v].medianMs),
      [`mqtt5CommandLatency${KEY[v]}P90Ms`]: r3(m.lat[v].p90Ms),
      [`mqtt5CommandLatency${KEY[v]}P99Ms`]: r3(m.lat[v].p99Ms),
      [`mqtt5CommandLatency${KEY[v]}MaxMs`]: r3(m.lat[v].maxMs),
    });
  }
  const rm = m.lat[5].medianMs / m.lat[4].medianMs;
  const r90 = m.lat[5].p90Ms / m.lat[4].p90Ms;
  const r99 = m.lat[5].p99Ms / m.lat[4].p99Ms;
  Object.assign(figures, {
    mqtt5CommandLatencyMedianV5VsV311Ratio: r3(rm),
    mqtt5CommandLatencyP90V5VsV311Ratio: r3(r90),
    mqtt5CommandLatencyP99V5VsV311Ratio: r3(r99),
    mqtt5SectionSeconds: r1(m.seconds),
  });
  lines.push(
    '',
    `MQTT 5 command latency — ${int(m.lat[4].count)} commands (QoS 1) per version in ${LATENCY_ROUNDS} alternating rounds (after ${LATENCY_WARMUP} warm-up each), one at a time ${LATENCY_GAP_MS} ms apart,`,
    `  tech-anna → ${COMMAND_DEVICE}, publisher to device, both connections of the round's version`,
    `  3.1.1      ${lat(m.lat[4])}`,
    `  5          ${lat(m.lat[5])}`,
    `  5 ÷ 3.1.1  median ${ratio(rm)}, p90 ${ratio(r90)}, p99 ${ratio(r99)}`,
    `  (mqtt5 section took ${m.seconds.toFixed(1)} s)`,
  );
  return { figures, lines };
}
