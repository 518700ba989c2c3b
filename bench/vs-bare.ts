// The broker against bare aedes (issue 16): one load generator, three brokers in the same run —
// bare aedes (bare-aedes-server.ts: the same aedes, a process of its own with the agents' node and
// node flags and the agent's socket options), the agent open (config/conformance.yaml) and the agent
// enforcing — QoS 0 and 1, two load shapes:
//
//   standard   the broker section's load: 16 devices on their own telemetry → 2 connections of the
//              application "dashboard" on things/+/telemetry/#, 64-byte payloads (enforcing: the
//              thing map, READ_THING decided per delivery)
//   twoToOne   the issue's: 2 devices publishing things/<id>/telemetry → 1 dashboard connection on
//              exactly things/+/telemetry, 100-byte payloads. The thing map leaves
//              things/<id>/telemetry itself outside (telemetry needs one more level, docs/broker.md),
//              so the enforcing agent allows it by topic rules (enforcingTopics below): each device
//              writes its own, the dashboard reads them; checked per publish and per delivery.
//
// In each round, per shape and QoS, the three runs go back to back in an order rotated each round
// (B O E, E B O, O E B, ...), so a drifting load on a shared machine spreads over all three. The
// broker section (broker.ts) runs this as its throughput part and takes its enforced-vs-open figures
// from the standard shape's runs; `--only vs-bare` runs it alone (vsBareSection). The figures and
// lines: vs-bare-summary.ts. See bench/README.md, "Broker against bare aedes".
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { cleanUpOnExit, startAgentProcess, type AgentProcess } from './agent-process.js';
import { startBareAedes, type BareAedes } from './bare-aedes.js';
import {
  APP,
  deviceId,
  deviceToken,
  enforcedLoad,
  Generator,
  makeSnapshot,
  STANDARD_PARAMS,
  TELEMETRY_FILTER,
  throughputRun,
  WARMUP_MS,
  WINDOW_MS,
  writeConfig,
  type Load,
  type LoadParams,
  type Target,
} from './broker-load.js';
import type { Credentials } from './mqtt-wire.js';
import { now } from './measure.js';
import { emptyShapeRuns, rotation, vsBareFigures, vsBareLines, type Broker, type ShapeInfo, type ShapeRuns, type VsBareResults } from './vs-bare-summary.js';

/** Rounds per shape, QoS and broker. */
export const VS_BARE_ROUNDS = 5;

/** The load: 2 publishers → 1 subscriber on exactly things/+/telemetry, 100-byte payloads. */
export const TWO_TO_ONE_PUBLISHERS = 2;
export const TWO_TO_ONE_FILTER = 'things/+/telemetry';
const twoToOneTopic = (id: string): string => `things/${id}/telemetry`;
/**
 * The two-to-one load's flow: QoS 0, 16 packets per write as the standard load; at most 256
 * messages in flight per publisher (QoS 0: written and not yet received; QoS 1: unacknowledged).
 * With only two publishers the standard load's 32 leave the pipeline too shallow: the broker waits
 * for the generator between chunks (bench/README.md, "Broker against bare aedes").
 */
export const TWO_TO_ONE_PARAMS: LoadParams = { payloadBytes: 100, batch: 16, inflight: 256 };

/**
 * The enforcing agent's `topics`: the thing map (the standard load: devices' own telemetry,
 * READ_THING per delivery) and, for the two-to-one load's topics, which the map leaves outside,
 * topic rules in its spirit: each of its devices writes its own things/<id>/telemetry, the
 * dashboard reads things/+/telemetry. They govern only topics outside the map, so the standard
 * load, the command latency and the offline queues are decided as before.
 */
export function enforcingTopics(): { thingMap: true; rules: { pattern: string; who: string; access: 'read' | 'write' }[] } {
  return {
    thingMap: true,
    rules: [
      ...Array.from({ length: TWO_TO_ONE_PUBLISHERS }, (_, i) => ({ pattern: twoToOneTopic(deviceId(i)), who: `principal:${deviceId(i)}`, access: 'write' as const })),
      { pattern: TWO_TO_ONE_FILTER, who: `principal:${APP.id}`, access: 'read' as const },
    ],
  };
}

type ThroughputLoad = Pick<Load, 'publishers' | 'subscribers'>;

export interface VsBareShape {
  readonly info: ShapeInfo;
  readonly params: LoadParams;
  /** The connections per broker: the enforcing agent's with credentials, the open agent's and bare aedes' anonymous (the same client ids). */
  readonly loads: Record<Broker, ThroughputLoad>;
}

const anonymous = <T extends Credentials>(c: T): T => ({ ...c, username: undefined, password: undefined });

function perBroker(enforcing: ThroughputLoad): Record<Broker, ThroughputLoad> {
  const open = { publishers: enforcing.publishers.map(anonymous), subscribers: enforcing.subscribers.map(anonymous) };
  return { bare: open, open, enforcing };
}

/** The two shapes; `topicsPerPublisher` spreads the standard one as the broker section's option does. */
export function vsBareShapes(topicsPerPublisher = 1): VsBareShape[] {
  const standard = enforcedLoad(topicsPerPublisher);
  const ids = Array.from({ length: TWO_TO_ONE_PUBLISHERS }, (_, i) => deviceId(i));
  const twoToOne: ThroughputLoad = {
    publishers: ids.map((id, i) => ({ clientId: `pub-${i}`, username: id, password: deviceToken(id), topics: [twoToOneTopic(id)] })),
    subscribers: [{ clientId: 'sub-0', username: APP.id, password: APP.secret, filter: TWO_TO_ONE_FILTER }],
  };
  return [
    {
      info: {
        key: 'standard',
        publishers: standard.publishers.length,
        subscribers: standard.subscribers.length,
        filter: TELEMETRY_FILTER,
        topic: standard.publishers[0]!.topics[0]!,
        ...STANDARD_PARAMS,
        enforcing: 'devices (sha256 tokens) on their own telemetry, the dashboard (READ_THING, decided per delivery) subscribes',
      },
      params: STANDARD_PARAMS,
      loads: perBroker(standard),
    },
    {
      info: {
        key: 'twoToOne',
        publishers: TWO_TO_ONE_PUBLISHERS,
        subscribers: 1,
        filter: TWO_TO_ONE_FILTER,
        topic: twoToOneTopic(ids[0]!),
        ...TWO_TO_ONE_PARAMS,
        enforcing: 'outside the thing map, so by topic rules: each device writes its own, the dashboard reads',
      },
      params: TWO_TO_ONE_PARAMS,
      loads: perBroker(twoToOne),
    },
  ];
}

/** aedes' version as installed (the agent bundles the same one). */
export function aedesVersion(): string {
  try {
    const main = createRequire(import.meta.url).resolve('aedes');
    return (JSON.parse(readFileSync(join(dirname(main), 'package.json'), 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/**
 * Every round of every shape and QoS against the three brokers (each broker's runs in round order).
 * The enforcing agent's publishesDenied and deliveriesFiltered over the runs come back too (0
 * expected: a denial would make its rate meaningless).
 */
export async function measureVsBare(o: {
  gen: Generator;
  bare: Target;
  open: AgentProcess;
  enforcing: AgentProcess;
  shapes: readonly VsBareShape[];
  rounds?: number;
  progress: (line: string) => void;
}): Promise<VsBareResults> {
  const rounds = o.rounds ?? VS_BARE_ROUNDS;
  const targets: Record<Broker, Target> = { bare: o.bare, open: o.open, enforcing: o.enforcing };
  const runs: ShapeRuns[] = o.shapes.map(() => emptyShapeRuns());
  const before = (await o.enforcing.status()).broker;
  for (let r = 0; r < rounds; r++) {
    const order = rotation(r);
    for (const [s, shape] of o.shapes.entries()) {
      for (const qos of [0, 1] as const) {
        o.progress(`broker: round ${r + 1}/${rounds}, ${shape.info.key}, QoS ${qos}: ${order.join(', ')} (${WARMUP_MS / 1000} s warm-up + ${WINDOW_MS / 1000} s each)`);
        for (const b of order) {
          const load = shape.loads[b];
          const agent = b === 'bare' ? null : b === 'open' ? o.open : o.enforcing;
          const dropped0 = agent ? ((await agent.status()).broker.deliveriesDroppedWaiting ?? 0) : 0;
          const run = await throughputRun(o.gen, targets[b], load, qos, `${b} ${shape.info.key}`, 4, shape.params);
          const droppedByBound = agent ? ((await agent.status()).broker.deliveriesDroppedWaiting ?? 0) - dropped0 : 0;
          const undelivered = run.acceptedTotal * load.subscribers.length - run.deliveredTotal;
          if (undelivered !== 0) {
            o.progress(
              `broker:   ! ${b}, ${shape.info.key}, QoS ${qos}: ${undelivered} of ${run.acceptedTotal * load.subscribers.length} deliveries missing after the drain` +
                (agent ? `; ${droppedByBound} dropped by the bound on a clean session's wait (deliveriesDroppedWaiting)` : ''),
            );
          }
          runs[s]![qos][b].push({
            delivered: run.deliveredPerSecond,
            accepted: run.acceptedPerSecond,
            brokerCpu: run.agentCpu,
            generatorCpu: run.generatorCpu,
            mainThreadRun: run.mainThreadRun,
            mainThreadWait: run.mainThreadWait,
            undelivered,
            droppedByBound,
          });
        }
      }
    }
  }
  const after = (await o.enforcing.status()).broker;
  const delta = (k: string): number => (after[k] ?? NaN) - (before[k] ?? NaN);
  return {
    rounds,
    warmupMs: WARMUP_MS,
    windowMs: WINDOW_MS,
    aedesVersion: aedesVersion(),
    shapes: o.shapes.map((shape, s) => ({ shape: shape.info, runs: runs[s]! })),
    enforcingPublishesDenied: delta('publishesDenied'),
    enforcingDeliveriesFiltered: delta('deliveriesFiltered'),
  };
}

interface Options {
  readonly progress: (line: string) => void;
  /** All three brokers under `node --cpu-prof`, profiles written here. */
  readonly cpuProfDir?: string;
  /** More node flags for the agents and bare aedes alike (`--agent-node-options`). */
  readonly agentNodeArgs?: readonly string[];
  readonly topicsPerPublisher?: number;
}

/** `--only vs-bare`: the broker section's throughput part alone (about 3 minutes). */
export async function vsBareSection(o: Options): Promise<{ figures: Record<string, number | boolean | string | number[]>; lines: string[] }> {
  const started = now();
  const dir = mkdtempSync(join(tmpdir(), 'ew-bench-'));
  const agents: AgentProcess[] = [];
  let bare: BareAedes | undefined;
  let gen: Generator | undefined;
  const end = cleanUpOnExit(() => {
    gen?.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  try {
    o.progress('vs-bare: signing a snapshot of 1,000 devices with a fresh key; starting bare aedes, the open and the enforcing agent, the load generator');
    const snap = makeSnapshot(dir);
    const nodeArgs = [...(o.agentNodeArgs ?? []), ...(o.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', o.cpuProfDir] : [])];
    const start = async (name: string, enforced: boolean, extra: Record<string, unknown>): Promise<AgentProcess> => {
      const { configFile, stateDir } = writeConfig(dir, name, enforced, snap.keyFile, snap.snapshotFile, extra);
      const a = await startAgentProcess({ name, configFile, stateDir, nodeArgs });
      agents.push(a);
      const s = await a.status();
      if (s.snapshotVersion !== 1000) throw new Error(`${name} agent: the bench snapshot is not in force (version ${s.snapshotVersion})`);
      return a;
    };
    const enforcing = await start('enforced', true, { topics: enforcingTopics() });
    const open = await start('open', false, {});
    bare = await startBareAedes(nodeArgs);
    gen = new Generator();
    const results = await measureVsBare({ gen, bare, open, enforcing, shapes: vsBareShapes(o.topicsPerPublisher ?? 1), progress: o.progress });
    const seconds = (now() - started) / 1000;
    const lines = vsBareLines(results);
    if (o.cpuProfDir) lines.push(`  CPU profiles in ${o.cpuProfDir}: bare aedes pid ${bare.pid}, open agent pid ${open.pid}, enforcing agent pid ${enforcing.pid} (CPU.*.<pid>.*.cpuprofile)`);
    lines.push(`  (took ${seconds.toFixed(1)} s)`);
    return { figures: { ...vsBareFigures(results), brokerVsBareSectionSeconds: Math.round(seconds * 10) / 10 }, lines };
  } finally {
    await Promise.all([...agents.map((a) => a.stop().catch(() => undefined)), bare?.stop().catch(() => undefined)]);
    end();
  }
}
