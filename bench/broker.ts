// The broker section of the bench: the real agent as a child process, driven over loopback by the
// load generator (load-generator.ts, a second child process), in two configurations, and bare aedes
// as the reference (vs-bare.ts), measured side by side in one run:
//
//   enforced  the thing topic map and the decision engine on a signed snapshot of 1,000 devices:
//             devices publish their own telemetry, an application with READ_THING reads
//             things/+/telemetry/# (authorizePublish and, per delivery, authorizeForward run)
//   open      config/conformance.yaml: anonymous clients on the very same topics and filters
//   bare      aedes alone (bare-aedes-server.ts), anonymous clients as the open agent's
//
// Both agents hold the same snapshot and differ only in `topics` (and the credentials the clients
// present). The throughput part (vs-bare.ts) runs the three brokers back to back in an order rotated
// each round (bare, open, enforced; enforced, bare, open; ...), on the standard load and on issue
// 16's two publishers → one subscriber; each figure is the median of its rounds; the enforced-vs-open
// figures come from the standard load's runs. Then: the latency of an allowed command, publisher to
// device; offline queues (persistent sessions receiving, on reconnecting, what was queued while they
// were away, half of it commands the enforced agent decides again at delivery), alternating
// enforced and open; the time for 1,000 devices to connect and authenticate; the agent's RSS idle
// and with them connected. The snapshot, configurations, generator and one throughput run:
// broker-load.ts. See bench/README.md.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cleanUpOnExit, median, startAgentProcess, type AgentProcess } from './agent-process.js';
import { startBareAedes, type BareAedes } from './bare-aedes.js';
import {
  APP,
  CONNECT_KEEPALIVE,
  CONNECT_MAX_PENDING,
  COMMAND_DEVICE,
  DEVICES,
  deviceId,
  deviceToken,
  enforcedLoad,
  Generator,
  makeSnapshot,
  PAYLOAD_BYTES,
  PUBLISHERS,
  QOS0_BATCH,
  QOS1_INFLIGHT,
  SUBSCRIBERS,
  TECHNICIAN,
  TELEMETRY_FILTER,
  WARMUP_MS,
  WINDOW_MS,
  writeConfig,
  type Load,
} from './broker-load.js';
import type { Credentials } from './mqtt-wire.js';
import type { ConnectRequest, ConnectResult, ForgetSessionsRequest, LatencyRequest, LatencyResult, OfflineQueueRequest, OfflineQueueResult } from './load-generator.js';
import { MB, now } from './measure.js';
import { enforcingTopics, measureVsBare, VS_BARE_ROUNDS, vsBareShapes } from './vs-bare.js';
import { vsBareFigures, vsBareLines, type VsBareResults } from './vs-bare-summary.js';

// What the other sections have always imported from here.
export {
  CONNECT_KEEPALIVE,
  CONNECT_MAX_PENDING,
  COMMAND_DEVICE,
  DEVICES,
  deviceId,
  deviceToken,
  enforcedLoad,
  Generator,
  makeSnapshot,
  PAYLOAD_BYTES,
  PUBLISHERS,
  SUBSCRIBERS,
  TELEMETRY_FILTER,
  throughputRun,
  WARMUP_MS,
  WINDOW_MS,
  writeConfig,
  type Load,
  type Run,
} from './broker-load.js';

export const TARGET_ENFORCEMENT_COST_PERCENT = 5;

export const ROUNDS = VS_BARE_ROUNDS; // per configuration and QoS, rotated with bare aedes (vs-bare.ts)
export const LATENCY_ROUNDS = 2; // per configuration, alternating; the samples of a configuration are pooled
export const LATENCY_WARMUP = 100; // per round
export const LATENCY_COMMANDS = 1000; // per round
export const LATENCY_GAP_MS = 1;
/**
 * Offline queues: this many devices, the even-numbered dev-0000, dev-0002, ... (c-bakery, so in
 * tech-anna's scope), each with a persistent session for its commands and the dashboard with one
 * for its telemetry.
 */
const QUEUE_DEVICES = 50;
const QUEUE_PER_SESSION = 300; // messages queued per session and round: commands for a device, telemetry for the dashboard
const QUEUE_ROUNDS = 5; // per configuration, alternating
/**
 * Offline this long after the last message was queued: longer than the audit log's flush interval
 * (1 s), so the enforced agent has written the audit records of the queued commands (a cost of
 * queueing them, not of delivering them) before the sessions come back.
 */
const QUEUE_OFFLINE_MS = 1200;
const QUEUE_IDLE_TIMEOUT_MS = 3000; // a round gives up waiting after this long without a delivery

export type BrokerFigures = Record<string, string | number | boolean | number[]>;

interface Options {
  readonly progress: (line: string) => void;
  /** Run both agents and bare aedes under `node --cpu-prof` and write the profiles here. */
  readonly cpuProfDir?: string;
  /** More node flags for the agents and bare aedes (`--agent-node-options`), e.g. the systemd unit's NODE_OPTIONS. */
  readonly agentNodeArgs?: readonly string[];
  /**
   * Telemetry topics per publisher (default 1), published in turn. The agent caches up to
   * cache.decisionsPerClient (256) decisions per connection: with 16 publishers, more than 16
   * topics each make every delivery to a subscriber of the wildcard a cache miss.
   */
  readonly topicsPerPublisher?: number;
}


// --- measurements ------------------------------------------------------------------------------------------

export interface ConnectFigures {
  readonly conn: ConnectResult;
  /** The agent's `connected` count 1 s after the last CONNACK. */
  readonly connectedNow: number;
  /** VmRSS 1 s after the start, and 1 s after the last CONNACK. */
  readonly rssIdle: number | null;
  readonly rssConnected: number | null;
}

/**
 * DEVICES devices (each with its own token, CleanSession=1) connect to a fresh enforced agent on the
 * broker section's snapshot: the connect time, and the agent's RSS idle and with them connected.
 * Also the startup section's, with other node flags. `track` gets the agent as soon as it runs.
 */
export async function connectDevices(o: {
  gen: Generator;
  dir: string;
  name: string;
  snap: { keyFile: string; snapshotFile: string };
  nodeArgs?: readonly string[];
  track?: (a: AgentProcess) => void;
}): Promise<ConnectFigures> {
  const { configFile, stateDir } = writeConfig(o.dir, o.name, true, o.snap.keyFile, o.snap.snapshotFile);
  const fresh = await startAgentProcess({ name: o.name, configFile, stateDir, ...(o.nodeArgs ? { nodeArgs: o.nodeArgs } : {}) });
  o.track?.(fresh);
  try {
    const s = await fresh.status();
    if (s.snapshotVersion !== 1000) throw new Error(`${o.name} agent: the bench snapshot is not in force (version ${s.snapshotVersion})`);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const rssIdle = fresh.rssBytes();
    const connectReq: ConnectRequest = {
      kind: 'connect',
      port: fresh.port,
      devices: Array.from({ length: DEVICES }, (_, i) => ({ clientId: `device-${i}`, username: deviceId(i), password: deviceToken(deviceId(i)) })),
      keepalive: CONNECT_KEEPALIVE,
      maxPending: CONNECT_MAX_PENDING,
    };
    const conn = await o.gen.request<ConnectResult>(connectReq);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const connectedNow = (await fresh.status()).broker.connected ?? NaN;
    const rssConnected = fresh.rssBytes();
    await o.gen.request<{ released: number }>({ kind: 'release' });
    if (conn.accepted !== DEVICES) throw new Error(`only ${conn.accepted} of ${DEVICES} devices were accepted (${conn.refused} refused)`);
    return { conn, connectedNow, rssIdle, rssConnected };
  } finally {
    await fresh.stop();
  }
}


interface Config extends Load {
  readonly name: 'enforced' | 'open';
  readonly agent: AgentProcess;
  readonly queueSessions: OfflineQueueRequest['sessions'];
  readonly queuePublishers: OfflineQueueRequest['publishers'];
}

/** LATENCY_COMMANDS commands (QoS 1, after LATENCY_WARMUP), one at a time, from `load.sender` to `load.device`. */
export function latencyRequest(port: number, load: Load, protocolVersion: 4 | 5 = 4): LatencyRequest {
  return {
    kind: 'latency',
    port,
    protocolVersion,
    sender: load.sender,
    device: load.device,
    topic: `things/${COMMAND_DEVICE}/commands/reboot`,
    filter: `things/${COMMAND_DEVICE}/commands/+`,
    warmup: LATENCY_WARMUP,
    count: LATENCY_COMMANDS,
    gapMs: LATENCY_GAP_MS,
    payloadBytes: PAYLOAD_BYTES,
  };
}

export interface LatencyStats {
  readonly count: number;
  readonly medianMs: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

export function latencyStats(samples: readonly number[]): LatencyStats {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]!;
  return { count: s.length, medianMs: at(0.5), p90Ms: at(0.9), p99Ms: at(0.99), maxMs: s[s.length - 1]! };
}


interface QosFigures {
  delivered: Record<'enforced' | 'open', number[]>;
  accepted: Record<'enforced' | 'open', number[]>;
  agentCpu: Record<'enforced' | 'open', number[]>;
  /** Agent CPU µs per delivered message, per round. */
  cpuPerDelivery: Record<'enforced' | 'open', number[]>;
  generatorCpuMax: number;
  undelivered: Record<'enforced' | 'open', number>;
  /** Of those, dropped by the agent's bound on a clean session's wait (deliveriesDroppedWaiting). */
  droppedByBound: Record<'enforced' | 'open', number>;
}

const emptyQosFigures = (): QosFigures => ({
  delivered: { enforced: [], open: [] },
  accepted: { enforced: [], open: [] },
  agentCpu: { enforced: [], open: [] },
  cpuPerDelivery: { enforced: [], open: [] },
  generatorCpuMax: 0,
  undelivered: { enforced: 0, open: 0 },
  droppedByBound: { enforced: 0, open: 0 },
});

/** The enforced-vs-open figures: the standard shape's enforced and open runs of the comparison with bare aedes. */
function qosFiguresOf(v: VsBareResults): Record<0 | 1, QosFigures> {
  const standard = v.shapes.find((s) => s.shape.key === 'standard');
  if (!standard) throw new Error('the comparison with bare aedes ran without the standard load');
  const out: Record<0 | 1, QosFigures> = { 0: emptyQosFigures(), 1: emptyQosFigures() };
  for (const qos of [0, 1] as const) {
    const f = out[qos];
    for (const [name, b] of [['enforced', 'enforcing'], ['open', 'open']] as const) {
      for (const run of standard.runs[qos][b]) {
        f.delivered[name].push(run.delivered);
        f.accepted[name].push(run.accepted);
        f.agentCpu[name].push(run.brokerCpu);
        f.cpuPerDelivery[name].push((run.brokerCpu * 1e6) / run.delivered);
        f.generatorCpuMax = Math.max(f.generatorCpuMax, run.generatorCpu);
        f.undelivered[name] += run.undelivered;
        f.droppedByBound[name] += run.droppedByBound;
      }
    }
  }
  return out;
}

interface QueueFigures {
  /** Queued messages received per second, first reconnect to last delivery, per round. */
  delivered: Record<'enforced' | 'open', number[]>;
  /** Messages queued per second by the publishers (first publish to last PUBACK), per round. */
  queuedRate: Record<'enforced' | 'open', number[]>;
  /** Agent CPU µs per delivered message over the reconnect, per round. */
  cpuPerDelivery: Record<'enforced' | 'open', number[]>;
  /** The agent's CPU time over the reconnect ÷ its duration, per round. */
  agentCpu: Record<'enforced' | 'open', number[]>;
  /** Queued messages not received (commands; telemetry), summed over the rounds. */
  undeliveredActions: Record<'enforced' | 'open', number>;
  undeliveredOther: Record<'enforced' | 'open', number>;
  /** Messages received beyond what was queued (duplicates), summed over the rounds. */
  extra: Record<'enforced' | 'open', number>;
  /** Rounds in which not every session came back with its session present. */
  sessionsLost: Record<'enforced' | 'open', number>;
  /** Messages the agent still held in queues after a round (all acknowledged: 0 expected), summed. */
  leftQueued: Record<'enforced' | 'open', number>;
  /** The first few "<client id> <received>/<expected>" of sessions that missed messages. */
  shortfalls: string[];
  /** The enforced agent's counters over the case (deltas). */
  enforcedRefusedAtDelivery: number;
  enforcedExpired: number;
  enforcedPublishesDenied: number;
  enforcedDeliveriesFiltered: number;
}

const emptyQueueFigures = (): QueueFigures => ({
  delivered: { enforced: [], open: [] },
  queuedRate: { enforced: [], open: [] },
  cpuPerDelivery: { enforced: [], open: [] },
  agentCpu: { enforced: [], open: [] },
  undeliveredActions: { enforced: 0, open: 0 },
  undeliveredOther: { enforced: 0, open: 0 },
  extra: { enforced: 0, open: 0 },
  sessionsLost: { enforced: 0, open: 0 },
  leftQueued: { enforced: 0, open: 0 },
  shortfalls: [],
  enforcedRefusedAtDelivery: 0,
  enforcedExpired: 0,
  enforcedPublishesDenied: 0,
  enforcedDeliveriesFiltered: 0,
});

// --- the section ---------------------------------------------------------------------------------------------

export async function brokerSection(o: Options): Promise<{ figures: BrokerFigures; lines: string[] }> {
  const started = now();
  const topicsPerPublisher = o.topicsPerPublisher ?? 1;
  if (!Number.isInteger(topicsPerPublisher) || topicsPerPublisher < 1 || topicsPerPublisher > 1000) throw new Error(`topics per publisher must be 1-1000, not ${topicsPerPublisher}`);
  const dir = mkdtempSync(join(tmpdir(), 'ew-bench-'));
  const agents: AgentProcess[] = [];
  let bare: BareAedes | undefined;
  let gen: Generator | undefined;
  const end = cleanUpOnExit(() => {
    gen?.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  try {
    o.progress(`broker: signing a snapshot of ${DEVICES} devices (sha256 tokens) with a fresh key`);
    const snap = makeSnapshot(dir);
    const nodeArgs = [...(o.agentNodeArgs ?? []), ...(o.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', o.cpuProfDir] : [])];
    const start = async (name: 'enforced' | 'open', enforced: boolean, extra: Record<string, unknown> = {}): Promise<AgentProcess> => {
      const { configFile, stateDir } = writeConfig(dir, name, enforced, snap.keyFile, snap.snapshotFile, extra);
      const a = await startAgentProcess({ name, configFile, stateDir, nodeArgs });
      agents.push(a);
      const s = await a.status();
      if (s.snapshotVersion !== 1000) throw new Error(`${name} agent: the bench snapshot is not in force (version ${s.snapshotVersion})`);
      return a;
    };
    o.progress('broker: starting the enforced and the open agent, bare aedes, and the load generator');
    // The thing map, and topic rules for the two-to-one load's topics outside it (vs-bare.ts).
    const enforcedAgent = await start('enforced', true, { topics: enforcingTopics() });
    const openAgent = await start('open', false);
    bare = await startBareAedes(nodeArgs);
    gen = new Generator();

    const queueIds = Array.from({ length: QUEUE_DEVICES }, (_, i) => deviceId(2 * i));
    const enforced: Config = {
      name: 'enforced',
      agent: enforcedAgent,
      ...enforcedLoad(topicsPerPublisher),
      // Each device's session gets commands (actions: decided again at delivery, for tech-anna), the
      // dashboard's session for that device its telemetry (not an action); as many of each.
      queueSessions: queueIds.flatMap((id) => [
        { clientId: `oq-${id}`, username: id, password: deviceToken(id), filter: `things/${id}/commands/+`, expect: QUEUE_PER_SESSION, actions: true },
        { clientId: `oq-dash-${id}`, username: APP.id, password: APP.secret, filter: `things/${id}/telemetry/+`, expect: QUEUE_PER_SESSION, actions: false },
      ]),
      queuePublishers: [
        { clientId: 'oq-tech', username: TECHNICIAN.id, password: TECHNICIAN.password, topics: queueIds.map((id) => `things/${id}/commands/c`), count: QUEUE_PER_SESSION * queueIds.length },
        ...queueIds.map((id) => ({ clientId: `oq-pub-${id}`, username: id, password: deviceToken(id), topics: [`things/${id}/telemetry/t`], count: QUEUE_PER_SESSION })),
      ],
    };
    const strip = <T extends Credentials>(c: T): T => ({ ...c, username: undefined, password: undefined });
    const open: Config = {
      name: 'open',
      agent: openAgent,
      publishers: enforced.publishers.map(strip),
      subscribers: enforced.subscribers.map(strip),
      sender: strip(enforced.sender),
      device: strip(enforced.device),
      queueSessions: enforced.queueSessions.map(strip),
      queuePublishers: enforced.queuePublishers.map(strip),
    };

    // 1. throughput: bare aedes, open, enforced in rotated order, both load shapes (vs-bare.ts); the
    // enforced-vs-open figures come from the standard shape's runs.
    const vsBare = await measureVsBare({ gen, bare, open: openAgent, enforcing: enforcedAgent, shapes: vsBareShapes(topicsPerPublisher), progress: o.progress });
    const barePid = bare.pid;
    await bare.stop();
    const qosFigures = qosFiguresOf(vsBare);
    const enforcedCounters = (await enforcedAgent.status()).broker;

    // 2. latency of an allowed command, one at a time, alternating
    const latency = async (c: Config, round: number): Promise<LatencyResult> => {
      o.progress(`broker: latency round ${round + 1}/${LATENCY_ROUNDS}, ${c.name}: ${LATENCY_COMMANDS} commands (QoS 1) one at a time to ${COMMAND_DEVICE}`);
      return gen!.request<LatencyResult>(latencyRequest(c.agent.port, c));
    };
    const samples: Record<'enforced' | 'open', number[]> = { enforced: [], open: [] };
    for (let r = 0; r < LATENCY_ROUNDS; r++) {
      for (const c of r % 2 === 0 ? [enforced, open] : [open, enforced]) {
        const got = (await latency(c, r)).samplesMs;
        o.progress(`broker:   median ${latencyStats(got).medianMs.toFixed(3)} ms, p99 ${latencyStats(got).p99Ms.toFixed(3)} ms`);
        samples[c.name].push(...got);
      }
    }
    const latEnforced = latencyStats(samples.enforced);
    const latOpen = latencyStats(samples.open);

    // 3. offline queues, alternating
    const oq = emptyQueueFigures();
    const before = (await enforcedAgent.status()).broker;
    // Round 0 of each configuration warms its queue paths up (first-time code: the JIT) and is not
    // measured; its deliveries are checked all the same.
    for (let r = 0; r <= QUEUE_ROUNDS; r++) {
      for (const c of r % 2 === 1 ? [enforced, open] : [open, enforced]) {
        const round = r === 0 ? 'warm-up round' : `round ${r}/${QUEUE_ROUNDS}`;
        o.progress(
          `broker: offline queues ${round}, ${c.name}: ${c.queueSessions.length} persistent sessions, ${QUEUE_PER_SESSION} messages queued for each (half of them commands), then all reconnect`,
        );
        let cpu0 = 0;
        let t0 = 0;
        let cpuMs = NaN;
        let windowMs = NaN;
        const res = await gen.request<OfflineQueueResult>(
          {
            kind: 'offline-queue',
            port: c.agent.port,
            sessions: c.queueSessions,
            publishers: c.queuePublishers,
            payloadBytes: PAYLOAD_BYTES,
            inflight: QOS1_INFLIGHT,
            offlineMs: QUEUE_OFFLINE_MS,
            idleTimeoutMs: QUEUE_IDLE_TIMEOUT_MS,
          },
          (phase) => {
            const cpu = c.agent.cpuMs() ?? NaN;
            if (phase === 'start') {
              cpu0 = cpu;
              t0 = now();
            } else {
              cpuMs = cpu - cpu0;
              windowMs = now() - t0;
            }
          },
        );
        const got = res.receivedActions + res.receivedOther;
        const seconds = (res.reconnectToLastMs ?? NaN) / 1000;
        const rate = Math.min(got, res.queued) / seconds;
        if (r > 0) {
          oq.delivered[c.name].push(rate);
          oq.queuedRate[c.name].push(res.queued / (res.queueMs / 1000));
          oq.cpuPerDelivery[c.name].push((cpuMs * 1000) / got);
          oq.agentCpu[c.name].push(cpuMs / windowMs);
        }
        oq.undeliveredActions[c.name] += Math.max(0, res.expectedActions - res.receivedActions);
        oq.undeliveredOther[c.name] += Math.max(0, res.expectedOther - res.receivedOther);
        oq.extra[c.name] += Math.max(0, res.receivedActions - res.expectedActions) + Math.max(0, res.receivedOther - res.expectedOther);
        if (res.sessionsPresent !== c.queueSessions.length) oq.sessionsLost[c.name]++;
        const left = (await c.agent.status()).broker.sessionsQueued ?? 0;
        oq.leftQueued[c.name] += left;
        if (res.shortfalls.length > 0) oq.shortfalls.push(...res.shortfalls.slice(0, 3).map((x) => `${c.name} ${round}: ${x}`));
        o.progress(
          `broker:   ${int(rate)} deliveries/s (${got} of ${res.expectedActions + res.expectedOther} in ${(seconds * 1000).toFixed(0)} ms; ${res.receivedActions} of ${res.expectedActions} commands); ` +
            `${res.sessionsPresent} sessions present; ${left} left queued${res.shortfalls.length > 0 ? `; short: ${res.shortfalls.slice(0, 3).join(', ')}` : ''}`,
        );
      }
    }
    const after = (await enforcedAgent.status()).broker;
    const delta = (k: string): number => (after[k] ?? NaN) - (before[k] ?? NaN);
    oq.enforcedRefusedAtDelivery = delta('actionsRefusedAtDelivery');
    oq.enforcedExpired = delta('actionsExpired');
    oq.enforcedPublishesDenied = delta('publishesDenied');
    oq.enforcedDeliveriesFiltered = delta('deliveriesFiltered');
    for (const c of [enforced, open]) {
      const forget: ForgetSessionsRequest = { kind: 'forget-sessions', port: c.agent.port, clients: c.queueSessions };
      await gen.request<{ forgotten: number }>(forget);
    }

    await enforcedAgent.stop();
    await openAgent.stop();

    // 4. 1,000 devices connecting, on a fresh enforced agent; RSS idle and with them connected
    o.progress(`broker: a fresh enforced agent; ${DEVICES} devices connect (at most ${CONNECT_MAX_PENDING} at once)`);
    const { conn, connectedNow, rssIdle, rssConnected } = await connectDevices({ gen, dir, name: 'enforced-connect', snap, nodeArgs, track: (a) => agents.push(a) });

    return summarize({
      q: qosFigures,
      latEnforced,
      latOpen,
      oq,
      queueSessions: enforced.queueSessions.length,
      conn,
      connectedNow,
      rssIdle,
      rssConnected,
      enforcedCounters,
      snapshotThings: snap.devices,
      topicsPerPublisher,
      seconds: (now() - started) / 1000,
      vsBare,
      cpuProf: o.cpuProfDir ? { dir: o.cpuProfDir, enforcedPid: enforcedAgent.pid, openPid: openAgent.pid, barePid } : undefined,
    });
  } finally {
    await Promise.all([...agents.map((a) => a.stop().catch(() => undefined)), bare?.stop().catch(() => undefined)]);
    end();
  }
}

// --- figures and lines -------------------------------------------------------------------------------------------

const r1 = (x: number): number => Math.round(x * 10) / 10;
const r3 = (x: number): number => Math.round(x * 1000) / 1000;
const int = (x: number): string => Math.round(x).toLocaleString('en-US');
const signed = (x: number): string => `${x >= 0 ? '+' : '−'}${Math.abs(x).toFixed(1)}%`;

function summarize(m: {
  q: Record<0 | 1, QosFigures>;
  latEnforced: LatencyStats;
  latOpen: LatencyStats;
  oq: QueueFigures;
  queueSessions: number;
  conn: ConnectResult;
  connectedNow: number;
  rssIdle: number | null;
  rssConnected: number | null;
  enforcedCounters: Readonly<Record<string, number>>;
  snapshotThings: number;
  topicsPerPublisher: number;
  seconds: number;
  vsBare: VsBareResults;
  cpuProf: { dir: string; enforcedPid: number; openPid: number; barePid: number } | undefined;
}): { figures: BrokerFigures; lines: string[] } {
  const figures: BrokerFigures = {
    brokerSnapshotDevices: DEVICES,
    brokerSnapshotThings: m.snapshotThings,
    brokerPublishers: PUBLISHERS,
    brokerTopicsPerPublisher: m.topicsPerPublisher,
    brokerSubscribers: SUBSCRIBERS,
    brokerPayloadBytes: PAYLOAD_BYTES,
    brokerQos0BatchPackets: QOS0_BATCH,
    brokerQos1InflightPerPublisher: QOS1_INFLIGHT,
    brokerRoundsPerConfiguration: ROUNDS,
    brokerWarmupSeconds: WARMUP_MS / 1000,
    brokerWindowSeconds: WINDOW_MS / 1000,
  };
  const lines: string[] = [
    `Broker — the agent as a child process, load generator in another (raw TCP, pre-built packets), loopback`,
    `  ${PUBLISHERS} publishers each on ${m.topicsPerPublisher === 1 ? 'its own telemetry topic' : `${m.topicsPerPublisher} telemetry topics of its own, in turn`}, ${SUBSCRIBERS} subscribers on ${TELEMETRY_FILTER}, ${PAYLOAD_BYTES}-byte payloads;`,
    `  enforced: devices with sha256 tokens publish their own telemetry, the application "dashboard" (READ_THING) subscribes;`,
    `  open: config/conformance.yaml, anonymous clients, same topics. Snapshot: ${int(m.snapshotThings)} things. Median of ${ROUNDS} rounds each (the runs of the`,
    `  comparison with bare aedes below: in each round the three brokers back to back, in rotated order),`,
    `  ${WARMUP_MS / 1000} s warm-up then ${WINDOW_MS / 1000} s measured; deliveries = messages received by the subscribers.`,
  ];
  for (const qos of [0, 1] as const) {
    const f = m.q[qos];
    const dE = median(f.delivered.enforced);
    const dO = median(f.delivered.open);
    const aE = median(f.accepted.enforced);
    const aO = median(f.accepted.open);
    const cE = median(f.agentCpu.enforced);
    const cO = median(f.agentCpu.open);
    const change = (dE / dO - 1) * 100;
    // Round r's enforced and open runs were adjacent: the median of their ratios is less exposed to drifting load.
    const paired = median(f.delivered.enforced.map((e, r) => (e / f.delivered.open[r]! - 1) * 100));
    const acceptedChange = (aE / aO - 1) * 100;
    // CPU time of the agent per delivered message: less exposed than the rates to other processes taking the CPU.
    const usE = median(f.cpuPerDelivery.enforced);
    const usO = median(f.cpuPerDelivery.open);
    const cpuChange = (usE / usO - 1) * 100;
    const ok = change >= -TARGET_ENFORCEMENT_COST_PERCENT;
    const Q = `Qos${qos}`;
    Object.assign(figures, {
      [`broker${Q}DeliveredPerSecondEnforced`]: Math.round(dE),
      [`broker${Q}DeliveredPerSecondOpen`]: Math.round(dO),
      [`broker${Q}DeliveredEnforcedVsOpenPercent`]: r1(change),
      [`broker${Q}DeliveredEnforcedVsOpenPercentPairedMedian`]: r1(paired),
      [`broker${Q}AcceptedPerSecondEnforced`]: Math.round(aE),
      [`broker${Q}AcceptedPerSecondOpen`]: Math.round(aO),
      [`broker${Q}AcceptedEnforcedVsOpenPercent`]: r1(acceptedChange),
      [`broker${Q}DeliveredPerSecondEnforcedRounds`]: f.delivered.enforced.map(Math.round),
      [`broker${Q}DeliveredPerSecondOpenRounds`]: f.delivered.open.map(Math.round),
      [`broker${Q}AgentCpuEnforced`]: r3(cE),
      [`broker${Q}AgentCpuOpen`]: r3(cO),
      [`broker${Q}AgentCpuMicrosecondsPerDeliveryEnforced`]: r3(usE),
      [`broker${Q}AgentCpuMicrosecondsPerDeliveryOpen`]: r3(usO),
      [`broker${Q}AgentCpuPerDeliveryEnforcedVsOpenPercent`]: r1(cpuChange),
      [`broker${Q}GeneratorCpuMax`]: r3(f.generatorCpuMax),
      [`broker${Q}UndeliveredEnforced`]: f.undelivered.enforced,
      [`broker${Q}UndeliveredOpen`]: f.undelivered.open,
      [`broker${Q}DroppedByBoundEnforced`]: f.droppedByBound.enforced,
      [`broker${Q}DroppedByBoundOpen`]: f.droppedByBound.open,
      [`meetsTargetBroker${Q}EnforcementCost`]: ok,
    });
    const rounds = (xs: number[]): string => xs.map((x) => int(x)).join(', ');
    lines.push(
      `  QoS ${qos}  delivered/s   enforced ${int(dE).padStart(9)}   open ${int(dO).padStart(9)}   enforced/open − 1 = ${signed(change)}; target ≥ −${TARGET_ENFORCEMENT_COST_PERCENT}%: ${ok ? 'meets target' : 'MISSES TARGET'}`,
      `         accepted/s    enforced ${int(aE).padStart(9)}   open ${int(aO).padStart(9)}   ${signed(acceptedChange)}   (${qos === 0 ? 'PUBLISH packets written by the publishers' : 'PUBACKs received by the publishers'})`,
      `         rounds        enforced ${rounds(f.delivered.enforced)}; open ${rounds(f.delivered.open)} delivered/s; median of the ${ROUNDS} paired ratios ${signed(paired)}`,
      `         agent CPU     enforced ${usE.toFixed(2)} µs/delivery (${(cE * 100).toFixed(0)}% of a core), open ${usO.toFixed(2)} µs/delivery (${(cO * 100).toFixed(0)}%): ${signed(cpuChange)}; generator ≤ ${(f.generatorCpuMax * 100).toFixed(0)}% of a core`,
    );
    if (f.undelivered.enforced !== 0 || f.undelivered.open !== 0) {
      lines.push(
        `         not delivered after the drain: enforced ${f.undelivered.enforced}, open ${f.undelivered.open}${qos === 0 ? ' (QoS 0: counted at the publisher\'s write)' : ''}` +
          `; dropped by the bound on a clean session's wait (counted): enforced ${f.droppedByBound.enforced}, open ${f.droppedByBound.open}`,
      );
    }
  }
  // The agent should be busy all through a window (the load is closed-loop and the generator is cheaper
  // per message). When it was not, something else took the CPU: the rates are then not comparable.
  const cpus = [0, 1].flatMap((qos) => [...m.q[qos as 0 | 1].agentCpu.enforced, ...m.q[qos as 0 | 1].agentCpu.open]);
  const starved = cpus.filter((c) => !(c >= 0.9)).length;
  figures.brokerRunsWithAgentBelow90PercentCpu = starved;
  if (starved > 0) {
    lines.push(
      `  ! in ${starved} of ${cpus.length} runs the agent had less than 90% of a core: other processes took the CPU, so the rates are`,
      `    noisy; the CPU time per delivery is the steadier comparison. Rerun on an idle machine.`,
    );
  }
  const denied = m.enforcedCounters.publishesDenied ?? NaN;
  const filtered = m.enforcedCounters.deliveriesFiltered ?? NaN;
  Object.assign(figures, { brokerEnforcedPublishesDenied: denied, brokerEnforcedDeliveriesFiltered: filtered });
  lines.push(`  enforced agent counters     ${int(m.enforcedCounters.publishesIn ?? NaN)} publishes in, ${denied} denied, ${filtered} deliveries filtered (all should be allowed)`);
  Object.assign(figures, vsBareFigures(m.vsBare));
  lines.push('', ...vsBareLines(m.vsBare));

  const lat = (l: LatencyStats): string => `median ${l.medianMs.toFixed(3)} ms, p90 ${l.p90Ms.toFixed(3)} ms, p99 ${l.p99Ms.toFixed(3)} ms, max ${l.maxMs.toFixed(2)} ms`;
  Object.assign(figures, {
    brokerCommandLatencyCommands: m.latEnforced.count,
    brokerCommandLatencyMedianMs: r3(m.latEnforced.medianMs),
    brokerCommandLatencyP90Ms: r3(m.latEnforced.p90Ms),
    brokerCommandLatencyP99Ms: r3(m.latEnforced.p99Ms),
    brokerCommandLatencyMaxMs: r3(m.latEnforced.maxMs),
    brokerCommandLatencyOpenMedianMs: r3(m.latOpen.medianMs),
    brokerCommandLatencyOpenP99Ms: r3(m.latOpen.p99Ms),
  });
  lines.push(
    '',
    `Command latency — ${int(m.latEnforced.count)} commands (QoS 1) per configuration in ${LATENCY_ROUNDS} alternating rounds (after ${LATENCY_WARMUP} warm-up each), one at a time ${LATENCY_GAP_MS} ms apart, publisher to device`,
    `  enforced  tech-anna (partner technician, EXECUTE_THING_COMMAND) → ${COMMAND_DEVICE}: ${lat(m.latEnforced)}`,
    `  open      anonymous, same topic:                                 ${lat(m.latOpen)}`,
  );

  {
    const q = m.oq;
    const dE = median(q.delivered.enforced);
    const dO = median(q.delivered.open);
    const change = (dE / dO - 1) * 100;
    const paired = median(q.delivered.enforced.map((e, r) => (e / q.delivered.open[r]! - 1) * 100));
    const usE = median(q.cpuPerDelivery.enforced);
    const usO = median(q.cpuPerDelivery.open);
    const cpuChange = (usE / usO - 1) * 100;
    const cE = median(q.agentCpu.enforced);
    const cO = median(q.agentCpu.open);
    const perRound = m.queueSessions * QUEUE_PER_SESSION;
    Object.assign(figures, {
      brokerOfflineQueueDevices: QUEUE_DEVICES,
      brokerOfflineQueueSessions: m.queueSessions,
      brokerOfflineQueueMessagesPerRound: perRound,
      brokerOfflineQueueActionsPerRound: QUEUE_DEVICES * QUEUE_PER_SESSION,
      brokerOfflineQueueRoundsPerConfiguration: QUEUE_ROUNDS,
      brokerOfflineQueueDeliveredPerSecondEnforced: Math.round(dE),
      brokerOfflineQueueDeliveredPerSecondOpen: Math.round(dO),
      brokerOfflineQueueDeliveredEnforcedVsOpenPercent: r1(change),
      brokerOfflineQueueDeliveredEnforcedVsOpenPercentPairedMedian: r1(paired),
      brokerOfflineQueueDeliveredPerSecondEnforcedRounds: q.delivered.enforced.map(Math.round),
      brokerOfflineQueueDeliveredPerSecondOpenRounds: q.delivered.open.map(Math.round),
      brokerOfflineQueueAgentCpuMicrosecondsPerDeliveryEnforced: r3(usE),
      brokerOfflineQueueAgentCpuMicrosecondsPerDeliveryOpen: r3(usO),
      brokerOfflineQueueAgentCpuPerDeliveryEnforcedVsOpenPercent: r1(cpuChange),
      brokerOfflineQueueAgentCpuEnforced: r3(cE),
      brokerOfflineQueueAgentCpuOpen: r3(cO),
      brokerOfflineQueueQueuedPerSecondEnforced: Math.round(median(q.queuedRate.enforced)),
      brokerOfflineQueueQueuedPerSecondOpen: Math.round(median(q.queuedRate.open)),
      brokerOfflineQueueUndeliveredActionsEnforced: q.undeliveredActions.enforced,
      brokerOfflineQueueUndeliveredActionsOpen: q.undeliveredActions.open,
      brokerOfflineQueueUndeliveredOtherEnforced: q.undeliveredOther.enforced,
      brokerOfflineQueueUndeliveredOtherOpen: q.undeliveredOther.open,
      brokerOfflineQueueDuplicatesEnforced: q.extra.enforced,
      brokerOfflineQueueDuplicatesOpen: q.extra.open,
      brokerOfflineQueueLeftQueuedEnforced: q.leftQueued.enforced,
      brokerOfflineQueueLeftQueuedOpen: q.leftQueued.open,
      brokerOfflineQueueEnforcedRefusedAtDelivery: q.enforcedRefusedAtDelivery,
      brokerOfflineQueueEnforcedExpired: q.enforcedExpired,
      brokerOfflineQueueEnforcedPublishesDenied: q.enforcedPublishesDenied,
      brokerOfflineQueueEnforcedDeliveriesFiltered: q.enforcedDeliveriesFiltered,
    });
    const rounds = (xs: number[]): string => xs.map((x) => int(x)).join(', ');
    lines.push(
      '',
      `Offline queues — ${QUEUE_DEVICES} devices (tech-anna's scope) each with a persistent session (CleanSession=0, QoS 1) on its commands, the dashboard with`,
      `  one per device on its telemetry: ${m.queueSessions} sessions. While they are offline tech-anna queues ${QUEUE_PER_SESSION} commands per device and each device`,
      `  ${QUEUE_PER_SESSION} telemetry messages (QoS 1, ${int(perRound)} per round, half of them actions); then all reconnect at once. Deliveries/s = queued messages ÷`,
      `  (first reconnect → last one received). Median of ${QUEUE_ROUNDS} alternating rounds each, after one warm-up round; enforced decides every command again`,
      `  at delivery, for tech-anna, from the session's queue.`,
      `  delivered/s   enforced ${int(dE).padStart(9)}   open ${int(dO).padStart(9)}   enforced/open − 1 = ${signed(change)} (median of the ${QUEUE_ROUNDS} paired ratios ${signed(paired)})`,
      `  rounds        enforced ${rounds(q.delivered.enforced)}; open ${rounds(q.delivered.open)} delivered/s`,
      `  agent CPU     enforced ${usE.toFixed(2)} µs/delivery (${(cE * 100).toFixed(0)}% of a core), open ${usO.toFixed(2)} µs/delivery (${(cO * 100).toFixed(0)}%) over the reconnect: ${signed(cpuChange)}`,
      `                (the agent's CPU time is read in clock ticks, 10 ms: about ±2% of a round's)`,
      `  queueing      enforced ${int(median(q.queuedRate.enforced))}/s, open ${int(median(q.queuedRate.open))}/s (publish to PUBACK, not part of the figure)`,
      `  enforced agent over the case: ${q.enforcedRefusedAtDelivery} actions refused at delivery, ${q.enforcedExpired} expired, ${q.enforcedPublishesDenied} publishes denied, ${q.enforcedDeliveriesFiltered} deliveries filtered (0 expected)`,
    );
    const problems =
      q.undeliveredActions.enforced + q.undeliveredActions.open + q.undeliveredOther.enforced + q.undeliveredOther.open + q.extra.enforced + q.extra.open + q.leftQueued.enforced + q.leftQueued.open + q.sessionsLost.enforced + q.sessionsLost.open;
    if (problems > 0) {
      lines.push(
        `  ! not delivered: commands enforced ${q.undeliveredActions.enforced}, open ${q.undeliveredActions.open}; telemetry enforced ${q.undeliveredOther.enforced}, open ${q.undeliveredOther.open};` +
          ` duplicates enforced ${q.extra.enforced}, open ${q.extra.open}; left queued enforced ${q.leftQueued.enforced}, open ${q.leftQueued.open}; rounds with a session lost enforced ${q.sessionsLost.enforced}, open ${q.sessionsLost.open}`,
      );
      if (q.shortfalls.length > 0) lines.push(`    e.g. ${q.shortfalls.slice(0, 6).join('; ')}`);
    }
  }

  const rssMB = (b: number | null): number => (b === null ? NaN : b / MB);
  const perDeviceKB = m.rssIdle !== null && m.rssConnected !== null ? (m.rssConnected - m.rssIdle) / 1024 / DEVICES : NaN;
  Object.assign(figures, {
    brokerConnectDevices: DEVICES,
    brokerConnectAccepted: m.conn.accepted,
    brokerConnectMaxPending: CONNECT_MAX_PENDING,
    brokerConnect1000DevicesMs: r1(m.conn.firstConnectToLastConnackMs),
    brokerConnectMedianHandshakeMs: r3(m.conn.medianHandshakeMs),
    brokerConnectMaxHandshakeMs: r3(m.conn.maxHandshakeMs),
    brokerRssIdleMB: r1(rssMB(m.rssIdle)),
    brokerRss1000DevicesMB: r1(rssMB(m.rssConnected)),
    brokerRssPerConnectedDeviceKB: r1(perDeviceKB),
    brokerSectionSeconds: r1(m.seconds),
  });
  lines.push(
    '',
    `Connections — ${int(DEVICES)} devices, each with its own token, CleanSession=1, keepalive ${CONNECT_KEEPALIVE}; fresh enforced agent`,
    `  first CONNECT → last CONNACK   ${m.conn.firstConnectToLastConnackMs.toFixed(0)} ms (${m.conn.accepted} accepted; at most ${CONNECT_MAX_PENDING} handshakes at once; per device median ${m.conn.medianHandshakeMs.toFixed(2)} ms, max ${m.conn.maxHandshakeMs.toFixed(1)} ms)`,
    `  agent RSS                      idle ${rssMB(m.rssIdle).toFixed(1)} MB → ${rssMB(m.rssConnected).toFixed(1)} MB with ${int(m.connectedNow)} connected (${perDeviceKB.toFixed(1)} KB per device)`,
  );
  if (m.cpuProf) {
    lines.push(`  CPU profiles in ${m.cpuProf.dir}: enforced agent pid ${m.cpuProf.enforcedPid}, open agent pid ${m.cpuProf.openPid}, bare aedes pid ${m.cpuProf.barePid} (CPU.*.<pid>.*.cpuprofile)`);
  }
  lines.push(`  (broker section took ${m.seconds.toFixed(1)} s)`);
  return { figures, lines };
}
