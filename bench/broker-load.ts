// The broker bench's common ground (broker.ts, vs-bare.ts, mqtt5.ts, startup.ts, bare-aedes.ts): the
// snapshot of 1,000 devices and the agent configurations on it, the load generator process
// (load-generator.ts) and one throughput run against a broker process, and the standard load
// (PUBLISHERS devices on their own telemetry → SUBSCRIBERS connections of the application
// "dashboard" on TELEMETRY_FILTER). See bench/README.md, "Broker".
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { compilePolicy, loadPolicyText } from '../src/policy/validate.js';
import { sha256Hash } from '../src/policy/credentials.js';
import { generateKeyPair, parsePrivateKey } from '../src/snapshot/keys.js';
import { signSnapshot } from '../src/snapshot/snapshot.js';
import type { SnapshotPayload } from '../src/policy/schema.js';
import type { Credentials } from './mqtt-wire.js';
import type { GeneratorMessage, GeneratorRequest, ThroughputRequest, ThroughputResult } from './load-generator.js';
import { now } from './measure.js';
import type { SchedMs } from './agent-process.js';

const ROOT = fileURLToPath(new URL(import.meta.url.includes('/dist/') ? '../../' : '../', import.meta.url));
const GENERATOR = fileURLToPath(new URL('./load-generator.js', import.meta.url));

export const DEVICES = 1000;
// The load, shared with the mqtt5 section (mqtt5.ts).
export const PUBLISHERS = 16;
export const SUBSCRIBERS = 2;
export const PAYLOAD_BYTES = 64;
export const QOS0_BATCH = 16;
export const QOS1_INFLIGHT = 32;
export const WARMUP_MS = 500;
export const WINDOW_MS = 1500;

export const CONNECT_KEEPALIVE = 60;
/** Connections between TCP connect and CONNACK at once; below Node's listen backlog (511), so no SYN is dropped. */
export const CONNECT_MAX_PENDING = 256;

export const TELEMETRY_FILTER = 'things/+/telemetry/#';
export const deviceId = (i: number): string => `dev-${String(i).padStart(4, '0')}`;
export const deviceToken = (id: string): string => `${id}-token`;
export const APP = { id: 'dashboard', secret: 'dashboard-secret' }; // config/example-policy.yaml: READ_THING tenant-wide
export const TECHNICIAN = { id: 'tech-anna', password: 'anna-pass' }; // partner of c-bakery, EXECUTE_THING_COMMAND (scrypt hash)
export const COMMAND_DEVICE = deviceId(0); // c-bakery, line-1: in tech-anna's scope and served by gw-plant-1

// --- the snapshot and the two configurations ----------------------------------------------------------

export function makeSnapshot(dir: string): { snapshotFile: string; keyFile: string; devices: number } {
  const file = join(ROOT, 'config', 'example-policy.yaml');
  const { policy } = loadPolicyText(readFileSync(file, 'utf8'), file);
  const payload: SnapshotPayload = compilePolicy(policy, { version: 1000, issuedAt: Date.now() - 60_000 });
  const customers = [
    { customer: 'c-bakery', location: 'l-bakery-north' },
    { customer: 'c-dairy', location: 'l-dairy-main' },
  ];
  const devices = Array.from({ length: DEVICES }, (_, i) => {
    const id = deviceId(i);
    return { id, name: `bench device ${i}`, ...customers[i % 2]!, resourceGroup: 'line-1', tokenHashes: [sha256Hash(deviceToken(id))] };
  });
  const signed: SnapshotPayload = { ...payload, things: [...(payload.things ?? []), ...devices] };
  const kp = generateKeyPair();
  const key = parsePrivateKey(kp.privateKeyPem);
  const snapshotFile = join(dir, 'bench-snapshot.cose');
  const keyFile = join(dir, 'bench.pub.pem');
  writeFileSync(snapshotFile, signSnapshot(signed, key, kp.kid));
  writeFileSync(keyFile, kp.publicKeyPem);
  return { snapshotFile, keyFile, devices: signed.things?.length ?? 0 };
}

/**
 * config/conformance.yaml with the bench's state directory, key, snapshot and log level; the
 * enforced configuration differs from it only in `topics` (the thing map on, no topic rules unless
 * `extra` gives some: the broker section's, vs-bare.ts `enforcingTopics`).
 */
export function writeConfig(
  dir: string,
  name: string,
  enforced: boolean,
  keyFile: string,
  snapshotFile: string,
  extra: Record<string, unknown> = {},
): { configFile: string; stateDir: string } {
  const conformance = parseYaml(readFileSync(join(ROOT, 'config', 'conformance.yaml'), 'utf8')) as Record<string, unknown>;
  const stateDir = join(dir, name);
  mkdirSync(stateDir, { recursive: true });
  const cfg = {
    ...conformance,
    stateDir,
    trust: { keys: [keyFile] },
    snapshot: { bootstrap: snapshotFile },
    // warn keeps logging off the hot path (the agent logs nothing per message at info either).
    log: { level: 'warn' },
    // No command or firmware rate limits (as in conformance.yaml; stated here because the latency and
    // offline-queue cases send thousands of commands a minute).
    rateLimits: { commandsPerMinute: 0, firmwareUpdatesPerHour: 0 },
    ...(enforced ? { topics: { thingMap: true, rules: [] } } : {}),
    // Other sections' additions (the durable-ack section's cloud link).
    ...extra,
  };
  const configFile = join(dir, `${name}.yaml`);
  writeFileSync(configFile, toYaml(cfg));
  return { configFile, stateDir };
}

// --- the load generator process --------------------------------------------------------------------------

export class Generator {
  readonly child: ChildProcess;
  private pending: { resolve: (r: unknown) => void; reject: (e: Error) => void; onMark?: (phase: 'start' | 'end') => void } | null = null;

  constructor() {
    // stdout ignored: with --json, the bench's stdout carries only the JSON object.
    this.child = fork(GENERATOR, [], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    this.child.on('message', (m: GeneratorMessage) => {
      const p = this.pending;
      if (!p) return;
      if (m.kind === 'mark') return p.onMark?.(m.phase);
      this.pending = null;
      if (m.kind === 'result') p.resolve(m.result);
      else p.reject(new Error(`load generator: ${m.message}`));
    });
    this.child.on('exit', (code, signal) => {
      const p = this.pending;
      this.pending = null;
      p?.reject(new Error(`load generator exited (${code ?? signal})`));
    });
  }

  request<T>(req: GeneratorRequest, onMark?: (phase: 'start' | 'end') => void): Promise<T> {
    if (this.pending) throw new Error('load generator: one request at a time');
    return new Promise<T>((resolve, reject) => {
      this.pending = { resolve: resolve as (r: unknown) => void, reject, ...(onMark ? { onMark } : {}) };
      this.child.send(req);
    });
  }

  stop(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
  }
}

/** Who publishes and subscribes in the throughput runs, and who sends a command to which device in the latency runs. */
export interface Load {
  readonly publishers: ThroughputRequest['publishers'];
  readonly subscribers: ThroughputRequest['subscribers'];
  readonly sender: Credentials;
  readonly device: Credentials;
}

const telemetryTopics = (id: string, topicsPerPublisher: number): string[] =>
  topicsPerPublisher === 1 ? [`things/${id}/telemetry/temperature`] : Array.from({ length: topicsPerPublisher }, (_, k) => `things/${id}/telemetry/m${k}`);

/**
 * The enforced configuration's load: PUBLISHERS devices (sha256 tokens) on their own telemetry,
 * SUBSCRIBERS connections of the application "dashboard" (READ_THING) on TELEMETRY_FILTER,
 * tech-anna (EXECUTE_THING_COMMAND) commanding COMMAND_DEVICE.
 */
export function enforcedLoad(topicsPerPublisher = 1): Load {
  const pubIds = Array.from({ length: PUBLISHERS }, (_, i) => deviceId(i));
  return {
    publishers: pubIds.map((id, i) => ({ clientId: `pub-${i}`, username: id, password: deviceToken(id), topics: telemetryTopics(id, topicsPerPublisher) })),
    subscribers: Array.from({ length: SUBSCRIBERS }, (_, j) => ({ clientId: `sub-${j}`, username: APP.id, password: APP.secret, filter: TELEMETRY_FILTER })),
    sender: { clientId: 'cmd-sender', username: TECHNICIAN.id, password: TECHNICIAN.password },
    device: { clientId: 'cmd-device', username: COMMAND_DEVICE, password: deviceToken(COMMAND_DEVICE) },
  };
}

/** What a throughput run drives: a broker process on a loopback port (an agent, bare aedes) whose CPU time can be read. */
export interface Target {
  readonly port: number;
  /** User + system CPU time of the process, in ms; null where there is no /proc. */
  cpuMs(): number | null;
  /** Its main thread's time on a CPU and waiting for one, in ms; null (or absent) where unknown. */
  schedMs?(): SchedMs | null;
}

/** The load's shape beyond who connects: payload size, QoS 0 packets per write, messages in flight per publisher. */
export interface LoadParams {
  readonly payloadBytes: number;
  readonly batch: number;
  readonly inflight: number;
}

/** The standard load's: PAYLOAD_BYTES, QOS0_BATCH, QOS1_INFLIGHT. */
export const STANDARD_PARAMS: LoadParams = { payloadBytes: PAYLOAD_BYTES, batch: QOS0_BATCH, inflight: QOS1_INFLIGHT };

export interface Run extends ThroughputResult {
  /** The broker's CPU time in the window / the window (1 = one core busy). */
  readonly agentCpu: number;
  /** Its main thread's time on a CPU / the window; NaN where unknown. */
  readonly mainThreadRun: number;
  /** Its main thread's time runnable but waiting for a CPU (other processes had them) / the window; NaN where unknown. */
  readonly mainThreadWait: number;
}

/**
 * One throughput run of `load` against `agent` (`label` names it in errors); `protocolVersion` 4
 * (3.1.1) or 5; `params` the standard load's unless given.
 */
export async function throughputRun(
  gen: Generator,
  agent: Target,
  load: Pick<Load, 'publishers' | 'subscribers'>,
  qos: 0 | 1,
  label: string,
  protocolVersion: 4 | 5 = 4,
  params: LoadParams = STANDARD_PARAMS,
): Promise<Run> {
  let cpu0 = 0;
  let t0 = 0;
  let agentCpu = NaN;
  let sched0: SchedMs | null = null;
  let mainThreadRun = NaN;
  let mainThreadWait = NaN;
  const r = await gen.request<ThroughputResult>(
    {
      kind: 'throughput',
      port: agent.port,
      protocolVersion,
      qos,
      publishers: load.publishers,
      subscribers: load.subscribers,
      payloadBytes: params.payloadBytes,
      batch: params.batch,
      inflight: params.inflight,
      warmupMs: WARMUP_MS,
      windowMs: WINDOW_MS,
    },
    (phase) => {
      const cpu = agent.cpuMs() ?? NaN;
      const sched = agent.schedMs?.() ?? null;
      if (phase === 'start') {
        cpu0 = cpu;
        sched0 = sched;
        t0 = now();
        return;
      }
      const ms = now() - t0;
      agentCpu = (cpu - cpu0) / ms;
      if (sched && sched0) {
        mainThreadRun = (sched.runMs - sched0.runMs) / ms;
        mainThreadWait = (sched.waitMs - sched0.waitMs) / ms;
      }
    },
  );
  if (r.deliveredPerSecond <= 0) throw new Error(`${label} QoS ${qos}: nothing was delivered`);
  return { ...r, agentCpu, mainThreadRun, mainThreadWait };
}
