// The broker against bare aedes (vs-bare.ts): the pure part. The rounds' raw figures in, the JSON
// figures and the report's lines out: medians, the ratios open ÷ bare and enforcing ÷ bare (of the
// medians, and paired per round), CPU time per delivery, the target verdict, and whether a run was
// limited by the load generator or by something other than the broker. No I/O; unit-tested in
// test/unit/bench-vs-bare.test.ts.
import { median, ratio } from './stats.js';

/** The three brokers, in the order of round 0. */
export const BROKERS = ['bare', 'open', 'enforcing'] as const;
export type Broker = (typeof BROKERS)[number];

/** Issue 16: the agent enforcing at ≥ 0.95 × bare aedes, QoS 0 and QoS 1. */
export const TARGET_ENFORCING_OVER_BARE = 0.95;
/** A run whose generator had this share of a core or more was limited by the generator. */
export const GENERATOR_SATURATED = 0.9;
/**
 * A run whose broker's main thread slept this share of the window or more (neither on a CPU nor
 * waiting for one: waiting for input) was paced by the load, not by the broker.
 */
export const BROKER_SLEPT = 0.1;
/** A run whose broker's main thread waited this share of the window or more for a CPU lost it to other processes. */
export const BROKER_STARVED = 0.1;

/**
 * The order of the brokers in round `r`: [bare, open, enforcing] rotated right by r, so that with 3
 * rounds each goes first, second and last once (B O E, E B O, O E B, B O E, ...).
 */
export function rotation(r: number): Broker[] {
  const n = BROKERS.length;
  const k = ((r % n) + n) % n;
  return BROKERS.map((_, i) => BROKERS[(i - k + n) % n]!);
}

/** One throughput run. */
export interface RunFigures {
  /** Messages received by all subscribers per second of the window. */
  readonly delivered: number;
  /** QoS 0: PUBLISH packets written by the publishers; QoS 1: PUBACKs received; per second. */
  readonly accepted: number;
  /** The broker process's CPU time in the window ÷ the window (1 = one core busy). */
  readonly brokerCpu: number;
  /** Its main thread's time on a CPU, and runnable but waiting for one, ÷ the window; NaN where unknown. */
  readonly mainThreadRun: number;
  readonly mainThreadWait: number;
  /** The load generator's, likewise. */
  readonly generatorCpu: number;
  /** Over the whole run (warm-up and drain included): accepted × subscribers − delivered; 0 expected. */
  readonly undelivered: number;
  /**
   * Of those, what the agent dropped by its bound on a clean session's in-memory wait
   * (sessions.maxQueuedMessages/Bytes past limits.maxInflightOutbound in flight; its
   * deliveriesDroppedWaiting counter over the run); 0 for bare aedes, which has no bound.
   */
  readonly droppedByBound: number;
}

/** The load of a shape, as the report names it. */
export interface ShapeInfo {
  /** JSON key part: `standard` → brokerVsBareStandard…, `twoToOne` → brokerVsBareTwoToOne… */
  readonly key: string;
  readonly publishers: number;
  readonly subscribers: number;
  readonly filter: string;
  /** An example topic (publisher 0's). */
  readonly topic: string;
  readonly payloadBytes: number;
  /** QoS 0: PUBLISH packets per write; the bound on messages in flight per publisher (QoS 0 and QoS 1). */
  readonly batch: number;
  readonly inflight: number;
  /** How the enforcing agent decides this load, one line. */
  readonly enforcing: string;
}

/** Per QoS, per broker, the runs in round order. */
export type ShapeRuns = Record<0 | 1, Record<Broker, RunFigures[]>>;

export interface VsBareResults {
  readonly rounds: number;
  readonly warmupMs: number;
  readonly windowMs: number;
  readonly aedesVersion: string;
  readonly shapes: readonly { readonly shape: ShapeInfo; readonly runs: ShapeRuns }[];
  /** The enforcing agent's counters over the runs (deltas): 0 expected, everything in the loads is allowed. */
  readonly enforcingPublishesDenied: number;
  readonly enforcingDeliveriesFiltered: number;
}

export const emptyShapeRuns = (): ShapeRuns => ({
  0: { bare: [], open: [], enforcing: [] },
  1: { bare: [], open: [], enforcing: [] },
});

/** CPU µs per delivered message of a run. */
export const cpuPerDelivery = (r: RunFigures): number => ratio(r.brokerCpu * 1e6, r.delivered);
/** The share of the window the broker's main thread slept (waiting for input); NaN where unknown. */
export const slept = (r: RunFigures): number => Math.max(0, 1 - r.mainThreadRun - r.mainThreadWait);
const known = (xs: number[]): number[] => xs.filter((x) => !Number.isNaN(x));

export interface BrokerSummary {
  readonly delivered: number;
  readonly rounds: number[];
  readonly cpuPerDelivery: number;
  readonly brokerCpu: number;
  /** Medians of the main thread's share asleep and waiting for a CPU (NaN where unknown). */
  readonly slept: number;
  readonly waitedForCpu: number;
  readonly undelivered: number;
  readonly droppedByBound: number;
}

export interface QosSummary {
  readonly by: Record<Broker, BrokerSummary>;
  /** Ratios of the medians of delivered/s. */
  readonly openOverBare: number;
  readonly enforcingOverBare: number;
  readonly enforcingOverOpen: number;
  /** The median over the rounds of enforcing ÷ bare of the round's two runs (adjacent in time). */
  readonly enforcingOverBarePaired: number;
  /** Ratios of the medians of CPU µs per delivery (above 1: more CPU per message than bare aedes). */
  readonly cpuOpenOverBare: number;
  readonly cpuEnforcingOverBare: number;
  readonly meetsTarget: boolean;
  readonly generatorCpuMax: number;
  /** Runs (of all three brokers) whose generator had ≥ GENERATOR_SATURATED of a core. */
  readonly generatorSaturatedRuns: number;
  /** Runs whose broker's main thread slept ≥ BROKER_SLEPT of the window: the load set the pace. */
  readonly brokerSleptRuns: number;
  /** Runs whose broker's main thread waited ≥ BROKER_STARVED of the window for a CPU: other processes had it. */
  readonly brokerStarvedRuns: number;
  readonly runs: number;
}

export function summarizeQos(runs: Record<Broker, readonly RunFigures[]>): QosSummary {
  const by = {} as Record<Broker, BrokerSummary>;
  for (const b of BROKERS) {
    const rs = runs[b];
    by[b] = {
      delivered: median(rs.map((r) => r.delivered)),
      rounds: rs.map((r) => r.delivered),
      cpuPerDelivery: median(rs.map(cpuPerDelivery)),
      brokerCpu: median(rs.map((r) => r.brokerCpu)),
      slept: median(known(rs.map(slept))),
      waitedForCpu: median(known(rs.map((r) => r.mainThreadWait))),
      undelivered: rs.reduce((n, r) => n + r.undelivered, 0),
      droppedByBound: rs.reduce((n, r) => n + r.droppedByBound, 0),
    };
  }
  const all = BROKERS.flatMap((b) => runs[b]);
  const enforcingOverBare = ratio(by.enforcing.delivered, by.bare.delivered);
  return {
    by,
    openOverBare: ratio(by.open.delivered, by.bare.delivered),
    enforcingOverBare,
    enforcingOverOpen: ratio(by.enforcing.delivered, by.open.delivered),
    enforcingOverBarePaired: median(runs.enforcing.map((e, i) => ratio(e.delivered, runs.bare[i]?.delivered ?? NaN)).filter((x) => !Number.isNaN(x))),
    cpuOpenOverBare: ratio(by.open.cpuPerDelivery, by.bare.cpuPerDelivery),
    cpuEnforcingOverBare: ratio(by.enforcing.cpuPerDelivery, by.bare.cpuPerDelivery),
    meetsTarget: enforcingOverBare >= TARGET_ENFORCING_OVER_BARE,
    generatorCpuMax: all.reduce((m, r) => Math.max(m, r.generatorCpu), 0),
    generatorSaturatedRuns: all.filter((r) => r.generatorCpu >= GENERATOR_SATURATED).length,
    brokerSleptRuns: all.filter((r) => slept(r) >= BROKER_SLEPT).length,
    brokerStarvedRuns: all.filter((r) => r.mainThreadWait >= BROKER_STARVED).length,
    runs: all.length,
  };
}

const r3 = (x: number): number => Math.round(x * 1000) / 1000;
const int = (x: number): string => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : String(x));
const x3 = (x: number): string => (Number.isFinite(x) ? x.toFixed(3) : 'n/a');
const pct = (x: number): string => (Number.isFinite(x) ? `${(x * 100).toFixed(0)}%` : 'n/a');
const cap = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1);
const NAME: Record<Broker, string> = { bare: 'Bare', open: 'Open', enforcing: 'Enforcing' };

/** The JSON figures: flat keys brokerVsBare<Shape>Qos<q><Figure> (bench/README.md, "Broker against bare aedes"). */
export function vsBareFigures(m: VsBareResults): Record<string, number | boolean | string | number[]> {
  const f: Record<string, number | boolean | string | number[]> = {
    brokerVsBareTarget: TARGET_ENFORCING_OVER_BARE,
    brokerVsBareRounds: m.rounds,
    brokerVsBareWarmupSeconds: m.warmupMs / 1000,
    brokerVsBareWindowSeconds: m.windowMs / 1000,
    brokerVsBareAedesVersion: m.aedesVersion,
    brokerVsBareEnforcingPublishesDenied: m.enforcingPublishesDenied,
    brokerVsBareEnforcingDeliveriesFiltered: m.enforcingDeliveriesFiltered,
  };
  for (const { shape, runs } of m.shapes) {
    const S = `brokerVsBare${cap(shape.key)}`;
    Object.assign(f, {
      [`${S}Publishers`]: shape.publishers,
      [`${S}Subscribers`]: shape.subscribers,
      [`${S}Filter`]: shape.filter,
      [`${S}PayloadBytes`]: shape.payloadBytes,
      [`${S}Qos0BatchPackets`]: shape.batch,
      [`${S}InflightPerPublisher`]: shape.inflight,
    });
    for (const qos of [0, 1] as const) {
      const s = summarizeQos(runs[qos]);
      const Q = `${S}Qos${qos}`;
      for (const b of BROKERS) {
        Object.assign(f, {
          [`${Q}DeliveredPerSecond${NAME[b]}`]: Math.round(s.by[b].delivered),
          [`${Q}DeliveredPerSecond${NAME[b]}Rounds`]: s.by[b].rounds.map(Math.round),
          [`${Q}CpuMicrosecondsPerDelivery${NAME[b]}`]: r3(s.by[b].cpuPerDelivery),
          [`${Q}BrokerCpu${NAME[b]}`]: r3(s.by[b].brokerCpu),
          [`${Q}BrokerSlept${NAME[b]}`]: r3(s.by[b].slept),
          [`${Q}BrokerWaitedForCpu${NAME[b]}`]: r3(s.by[b].waitedForCpu),
          [`${Q}Undelivered${NAME[b]}`]: s.by[b].undelivered,
          [`${Q}DroppedByBound${NAME[b]}`]: s.by[b].droppedByBound,
        });
      }
      Object.assign(f, {
        [`${Q}OpenOverBare`]: r3(s.openOverBare),
        [`${Q}EnforcingOverBare`]: r3(s.enforcingOverBare),
        [`${Q}EnforcingOverOpen`]: r3(s.enforcingOverOpen),
        [`${Q}EnforcingOverBarePairedMedian`]: r3(s.enforcingOverBarePaired),
        [`${Q}CpuPerDeliveryOpenOverBare`]: r3(s.cpuOpenOverBare),
        [`${Q}CpuPerDeliveryEnforcingOverBare`]: r3(s.cpuEnforcingOverBare),
        [`${Q}GeneratorCpuMax`]: r3(s.generatorCpuMax),
        [`${Q}GeneratorSaturatedRuns`]: s.generatorSaturatedRuns,
        [`${Q}BrokerSleptRuns`]: s.brokerSleptRuns,
        [`${Q}BrokerStarvedRuns`]: s.brokerStarvedRuns,
        [`meetsTarget${cap(Q)}EnforcingOverBare`]: s.meetsTarget,
      });
    }
  }
  return f;
}

/** The report's lines. */
export function vsBareLines(m: VsBareResults): string[] {
  const order = [0, 1, 2].map((r) => rotation(r).map((b) => b[0]!.toUpperCase()).join(' ')).join(', ');
  const lines = [
    `Broker against bare aedes — one load generator, three brokers in one run: bare aedes ${m.aedesVersion} (a process of its own, the`,
    `  agents' node and node flags, the agent's socket options), the agent open (config/conformance.yaml) and the agent enforcing.`,
    `  ${m.rounds} rounds; in each, per shape and QoS, the three runs back to back in an order rotated each round (${order}, ...);`,
    `  ${m.warmupMs / 1000} s warm-up then ${m.windowMs / 1000} s measured, new connections every run; medians of the rounds; ratios = ratio of the medians;`,
    `  CPU = the broker process's user + system time (/proc/<pid>/stat, 10 ms ticks) in the window; its main thread (/proc/<pid>/schedstat)`,
    `  "slept" = neither on a CPU nor waiting for one (waiting for input: the load set the pace), "waited" = runnable, no CPU free.`,
  ];
  for (const { shape, runs } of m.shapes) {
    lines.push(
      `  ${shape.key}: ${shape.publishers} publisher${shape.publishers === 1 ? '' : 's'} (e.g. ${shape.topic}) → ${shape.subscribers} subscriber${shape.subscribers === 1 ? '' : 's'} on ${shape.filter}, ${shape.payloadBytes}-byte payloads;`,
      `    QoS 0 ${shape.batch} packets per write and QoS 0/1 at most ${shape.inflight} messages in flight per publisher; enforcing: ${shape.enforcing}`,
    );
    for (const qos of [0, 1] as const) {
      const s = summarizeQos(runs[qos]);
      lines.push(`    QoS ${qos}       delivered/s   × bare   CPU µs/delivery   × bare   of a core   slept  waited   rounds (delivered/s, in order)`);
      for (const b of BROKERS) {
        const d = s.by[b];
        const rel = b === 'bare' ? 1 : b === 'open' ? s.openOverBare : s.enforcingOverBare;
        const relCpu = b === 'bare' ? 1 : b === 'open' ? s.cpuOpenOverBare : s.cpuEnforcingOverBare;
        lines.push(
          `      ${b.padEnd(9)} ${int(d.delivered).padStart(11)}   ${x3(rel)}   ${(Number.isFinite(d.cpuPerDelivery) ? d.cpuPerDelivery.toFixed(2) : 'n/a').padStart(15)}   ${x3(relCpu)}   ${pct(d.brokerCpu).padStart(9)}   ${pct(d.slept).padStart(5)}  ${pct(d.waitedForCpu).padStart(6)}   ${d.rounds.map(int).join(', ')}`,
        );
      }
      lines.push(
        `      target enforcing ≥ ${TARGET_ENFORCING_OVER_BARE} × bare: ${s.meetsTarget ? 'meets target' : 'MISSES TARGET'} (${x3(s.enforcingOverBare)}; median of the ${m.rounds} paired ratios ${x3(s.enforcingOverBarePaired)}); generator ≤ ${(s.generatorCpuMax * 100).toFixed(0)}% of a core`,
      );
      if (s.generatorSaturatedRuns > 0) {
        lines.push(
          `      ! the generator had ≥ ${GENERATOR_SATURATED * 100}% of a core in ${s.generatorSaturatedRuns} of ${s.runs} runs: it, not the broker, set the pace there, so the ratio measures the generator`,
        );
      }
      if (s.brokerSleptRuns > 0) {
        lines.push(
          `      ! the broker's main thread slept ≥ ${BROKER_SLEPT * 100}% of the window in ${s.brokerSleptRuns} of ${s.runs} runs: it waited for input, so the load, not the broker, set the pace there`,
        );
      }
      if (s.brokerStarvedRuns > 0) {
        lines.push(
          `      ! the broker's main thread waited ≥ ${BROKER_STARVED * 100}% of the window for a CPU in ${s.brokerStarvedRuns} of ${s.runs} runs: other processes had the CPUs, so the rates are noisy, and CPU µs per delivery too (a broker kept waiting reads bigger chunks, cheaper per message)`,
        );
      }
      const undelivered = BROKERS.filter((b) => s.by[b].undelivered !== 0);
      if (undelivered.length > 0) {
        const bound = (b: Broker): string => (s.by[b].droppedByBound > 0 ? ` (${s.by[b].droppedByBound} of them dropped by the agent's bound on a clean session's wait, counted)` : '');
        lines.push(`      ! not delivered after the drain: ${undelivered.map((b) => `${b} ${s.by[b].undelivered}${bound(b)}`).join(', ')}${qos === 0 ? ' (QoS 0: counted at the publisher\'s write)' : ''}`);
      }
    }
  }
  lines.push(
    `  enforcing agent over these runs: ${m.enforcingPublishesDenied} publishes denied, ${m.enforcingDeliveriesFiltered} deliveries filtered (0 expected: everything in the loads is allowed)`,
  );
  return lines;
}
