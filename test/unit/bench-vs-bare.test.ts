// The broker bench against bare aedes, its pure part (bench/vs-bare-summary.ts, bench/stats.ts): the
// rotated order of the brokers, medians and ratios, the target verdict, the flags for runs the
// generator or something other than the broker limited, and the JSON keys other tools read.
import t from 'tap';
import { median, ratio } from '../../bench/stats.js';
import {
  BROKERS,
  emptyShapeRuns,
  rotation,
  summarizeQos,
  TARGET_ENFORCING_OVER_BARE,
  vsBareFigures,
  vsBareLines,
  type Broker,
  type RunFigures,
  type ShapeInfo,
  type VsBareResults,
} from '../../bench/vs-bare-summary.js';

/** A run at `delivered`/s: the broker busy on one core (main thread 95% on a CPU, 2% waiting for one), the generator on half. */
const run = (delivered: number, o: Partial<RunFigures> = {}): RunFigures => ({
  delivered,
  accepted: delivered,
  brokerCpu: 1,
  mainThreadRun: 0.95,
  mainThreadWait: 0.02,
  generatorCpu: 0.5,
  undelivered: 0,
  droppedByBound: 0,
  ...o,
});

/** Per broker, one run per round with these delivered/s (as `run`). */
const runsOf = (d: Record<Broker, number[]>, o: Partial<RunFigures> = {}): Record<Broker, RunFigures[]> => ({
  bare: d.bare.map((x) => run(x, o)),
  open: d.open.map((x) => run(x, o)),
  enforcing: d.enforcing.map((x) => run(x, o)),
});

const SHAPE: ShapeInfo = {
  key: 'twoToOne',
  publishers: 2,
  subscribers: 1,
  filter: 'things/+/telemetry',
  topic: 'things/dev-0000/telemetry',
  payloadBytes: 100,
  batch: 16,
  inflight: 256,
  enforcing: 'by topic rules',
};

t.test('median and ratio', async (t) => {
  t.equal(median([3, 1, 2]), 2, 'odd count: the middle value, whatever the order');
  t.equal(median([4, 1, 3, 2]), 2.5, 'even count: the mean of the two middle values');
  t.ok(Number.isNaN(median([])), 'nothing: NaN, not 0');
  t.equal(ratio(95, 100), 0.95);
  t.ok(Number.isNaN(ratio(1, 0)), 'a ratio to 0 says nothing');
  t.ok(Number.isNaN(ratio(NaN, 1)), 'nor one of a missing figure');
});

t.test('rotation: each broker goes first, second and last once in three rounds', async (t) => {
  t.same(rotation(0), ['bare', 'open', 'enforcing']);
  t.same(rotation(1), ['enforcing', 'bare', 'open']);
  t.same(rotation(2), ['open', 'enforcing', 'bare']);
  t.same(rotation(3), rotation(0), 'then again');
  for (let pos = 0; pos < 3; pos++) {
    t.same(new Set([0, 1, 2].map((r) => rotation(r)[pos])), new Set(BROKERS), `position ${pos} holds every broker once`);
  }
});

t.test('summarizeQos: ratios of the medians, paired ratios, CPU per delivery, the target', async (t) => {
  const s = summarizeQos(
    runsOf({
      bare: [100, 90, 110, 105, 95], // median 100
      open: [97, 99, 80, 98, 96], // median 97
      enforcing: [96, 94, 70, 95, 93], // median 94
    }),
  );
  t.equal(s.by.bare.delivered, 100);
  t.same(s.by.open.rounds, [97, 99, 80, 98, 96], 'every round, in order');
  t.equal(s.openOverBare, 0.97);
  t.equal(s.enforcingOverBare, 0.94);
  t.equal(Math.round(s.enforcingOverOpen * 1e6) / 1e6, Math.round((94 / 97) * 1e6) / 1e6);
  // Paired per round: 96/100, 94/90 (1.04), 70/110 (0.64), 95/105 (0.90), 93/95 (0.98) -> median 0.96.
  t.equal(s.enforcingOverBarePaired, 0.96);
  t.equal(s.meetsTarget, false, `0.94 misses ${TARGET_ENFORCING_OVER_BARE}`);
  t.equal(s.by.bare.cpuPerDelivery, 1e6 / 100, 'one core at 100/s: 10,000 µs per delivery');
  t.equal(s.cpuEnforcingOverBare, 100 / 94, 'the same CPU for fewer deliveries: more per delivery');
  t.equal(s.generatorSaturatedRuns, 0);
  t.equal(s.brokerSleptRuns, 0);
  t.equal(s.brokerStarvedRuns, 0);
  t.equal(Math.round(s.by.open.slept * 1000) / 1000, 0.03, 'slept: neither on a CPU nor waiting for one');
  t.equal(s.by.open.waitedForCpu, 0.02);
  t.equal(s.runs, 15);

  const at = summarizeQos(runsOf({ bare: [100], open: [100], enforcing: [95] }));
  t.equal(at.meetsTarget, true, 'exactly 0.95 × bare meets the target');
});

t.test('summarizeQos: runs the generator, the load or other processes limited are counted apart', async (t) => {
  const rs = runsOf({ bare: [100, 100], open: [100, 100], enforcing: [100, 100] });
  rs.bare[0] = run(100, { generatorCpu: 0.95 });
  rs.open[0] = run(100, { brokerCpu: 0.6, mainThreadRun: 0.55, mainThreadWait: 0.01 }); // asleep 44%: waiting for input
  rs.open[1] = run(100, { brokerCpu: 0.6, mainThreadRun: 0.55, mainThreadWait: 0.4 }); // waiting for a CPU 40%
  rs.enforcing[1] = run(100, { mainThreadRun: NaN, mainThreadWait: NaN }); // no schedstat: neither
  rs.enforcing[0] = run(100, { undelivered: 7 });
  const s = summarizeQos(rs);
  t.equal(s.generatorSaturatedRuns, 1);
  t.equal(s.generatorCpuMax, 0.95);
  t.equal(s.brokerSleptRuns, 1, 'the run whose broker slept');
  t.equal(s.brokerStarvedRuns, 1, 'the run whose broker waited for a CPU');
  t.equal(Math.round(s.by.enforcing.slept * 1000) / 1000, 0.03, 'an unknown run is left out of the median');
  t.equal(s.by.enforcing.undelivered, 7);
});

function results(): VsBareResults {
  const runs = emptyShapeRuns();
  runs[0] = runsOf({ bare: [100, 100, 100], open: [98, 98, 98], enforcing: [96, 96, 96] });
  runs[1] = runsOf({ bare: [50, 50, 50], open: [40, 40, 40], enforcing: [45, 45, 45] });
  runs[1].bare[2] = run(50, { generatorCpu: 0.97, mainThreadRun: 0.5, mainThreadWait: 0 });
  return {
    rounds: 3,
    warmupMs: 500,
    windowMs: 1500,
    aedesVersion: '2.0.0-beta.1',
    shapes: [{ shape: SHAPE, runs }],
    enforcingPublishesDenied: 0,
    enforcingDeliveriesFiltered: 0,
  };
}

t.test('vsBareFigures: flat keys per shape and QoS', async (t) => {
  const f = vsBareFigures(results());
  t.equal(f.brokerVsBareTarget, 0.95);
  t.equal(f.brokerVsBareRounds, 3);
  t.equal(f.brokerVsBareTwoToOneFilter, 'things/+/telemetry');
  t.equal(f.brokerVsBareTwoToOnePayloadBytes, 100);
  t.equal(f.brokerVsBareTwoToOneQos0DeliveredPerSecondBare, 100);
  t.same(f.brokerVsBareTwoToOneQos0DeliveredPerSecondEnforcingRounds, [96, 96, 96]);
  t.equal(f.brokerVsBareTwoToOneQos0OpenOverBare, 0.98);
  t.equal(f.brokerVsBareTwoToOneQos0EnforcingOverBare, 0.96);
  t.equal(f.meetsTargetBrokerVsBareTwoToOneQos0EnforcingOverBare, true);
  t.equal(f.brokerVsBareTwoToOneQos1EnforcingOverBare, 0.9);
  t.equal(f.meetsTargetBrokerVsBareTwoToOneQos1EnforcingOverBare, false);
  t.equal(f.brokerVsBareTwoToOneQos1GeneratorSaturatedRuns, 1);
  t.equal(f.brokerVsBareTwoToOneQos1GeneratorCpuMax, 0.97);
  t.equal(f.brokerVsBareTwoToOneQos0CpuMicrosecondsPerDeliveryBare, 10000);
  t.equal(f.brokerVsBareTwoToOneQos0CpuPerDeliveryEnforcingOverBare, 1.042, 'rounded to 3 decimals');
  for (const [k, v] of Object.entries(f)) {
    t.match(k, /^(brokerVsBare|meetsTargetBrokerVsBare)[A-Za-z0-9]+$/, `${k}: one flat key, broker's prefix`);
    if (typeof v === 'number') t.ok(Number.isFinite(v), `${k} is a finite number`);
  }
});

t.test('vsBareLines: one row per broker, the verdict, and why a ratio may not measure the broker', async (t) => {
  const text = vsBareLines(results()).join('\n');
  t.match(text, /B O E, E B O, O E B/, 'states the rotated order');
  t.match(text, /twoToOne: 2 publishers \(e\.g\. things\/dev-0000\/telemetry\) → 1 subscriber on things\/\+\/telemetry, 100-byte payloads/);
  t.match(text, /QoS 0[^\n]*\n\s+bare\s+100\s+1\.000/);
  t.match(text, /enforcing\s+96\s+0\.960/);
  t.match(text, /target enforcing ≥ 0\.95 × bare: meets target \(0\.960/);
  t.match(text, /target enforcing ≥ 0\.95 × bare: MISSES TARGET \(0\.900/);
  t.match(text, /the generator had ≥ 90% of a core in 1 of 9 runs: [^\n]*the ratio measures the generator/);
  t.match(text, /the broker's main thread slept ≥ 10% of the window in 1 of 9 runs: it waited for input/);
  t.match(text, /bare\s+50\s+1\.000\s+20000\.00\s+1\.000\s+100%\s+3%\s+2%/, 'the row: rate, × bare, µs, × bare, core, slept, waited (medians)');
  t.notMatch(text, /waited ≥ 10% of the window for a CPU/, 'no broker waited for a CPU');
  t.equal(text.match(/main thread slept ≥/g)?.length, 1, 'only the QoS 1 runs had a broker asleep');
  t.match(text, /0 publishes denied, 0 deliveries filtered/);
});
