// The durable-ack section of the bench: what it costs that a QoS 1 message bound for the cloud is
// acknowledged to the device only once it is durable in the outbox (SPEC section 5; the broker's
// authorizePublish waits for the outbox's group commit before aedes writes the PUBACK).
//
// One enforced agent (the broker section's snapshot and configuration) with its cloud link up to a
// real mosquitto on loopback (mosquitto.ts; when there is none, to an address nothing listens on, so
// the link stays offline and the messages stay queued: the acknowledgement waits for the same append
// and fsync). cloud.forward is only things/+/telemetry/#, so a device's own alerts take the same path
// through the broker (device-own topic, same decision) and are not forwarded: the baseline. Devices
// publish QoS 1 to both, in alternating rounds, on the same agent and connections of the same kind:
//
//   latency   one message at a time, PUBLISH written to PUBACK read
//   window    16 devices each keeping 32 PUBLISHes unacknowledged: PUBACKs per second, and latency
//
// The client is this process (raw TCP, mqtt-packet; it is otherwise idle here). See bench/README.md.
import { createConnection, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_CONFIG } from '../src/config/load.js';
import { cleanUpOnExit, startAgentProcess, type AgentProcess } from './agent-process.js';
import { deviceId, deviceToken, makeSnapshot, writeConfig } from './broker.js';
import { now, settle } from './measure.js';
import { startMosquitto, type BenchMosquitto } from './mosquitto.js';
import { CONNACK, connectPacket, DISCONNECT, FrameReader, PUBACK, publishPacket, type Credentials } from './mqtt-wire.js';

const FORWARD = ['things/+/telemetry/#'];
const forwardedTopic = (id: string): string => `things/${id}/telemetry/temperature`;
const localTopic = (id: string): string => `things/${id}/alerts/temperature/high`;
const PAYLOAD_BYTES = 64;
const LATENCY_ROUNDS = 2; // per topic kind, alternating; samples pooled
const LATENCY_WARMUP = 20; // per round, not measured
const LATENCY_MESSAGES = 200; // per round
const PUBLISHERS = 16; // as the broker section's QoS 1 throughput
const INFLIGHT = 32; // unacknowledged PUBLISHes per publisher, as there
const WINDOW_ROUNDS = 3; // per topic kind, alternating
const WARMUP_MS = 500;
const WINDOW_MS = 2000;
const DRAIN_TIMEOUT_MS = 30_000;

type Kind = 'forwarded' | 'local';
export type DurableAckFigures = Record<string, string | number | boolean | number[]>;

// --- a QoS 1 publisher on a raw socket --------------------------------------------------------------------

class Publisher {
  /** performance.now() at which each packet id was written. */
  private readonly sentAt = new Float64Array(65536);
  private nextId = 1;
  outstanding = 0;
  /** Called for each PUBACK with its round trip and the time it was read. */
  onAck: (latencyMs: number, at: number) => void = () => undefined;
  /** Called after each chunk with the PUBACKs it held. */
  onChunk: (acks: number) => void = () => undefined;
  private template: Buffer;
  private idOffset: number;

  private constructor(
    private readonly socket: Socket,
    topic: string,
  ) {
    this.template = publishPacket(topic, Buffer.alloc(PAYLOAD_BYTES, 0x5a), 1, 1);
    this.idOffset = this.template.length - PAYLOAD_BYTES - 2;
  }

  static connect(port: number, c: Credentials, topic: string): Promise<Publisher> {
    return new Promise((resolve, reject) => {
      const socket = createConnection(port, '127.0.0.1');
      socket.setNoDelay(true);
      const p = new Publisher(socket, topic);
      let connected = false;
      let acks = 0;
      const reader = new FrameReader((buf, start, body) => {
        const type = buf[start]! >> 4;
        if (type === PUBACK) {
          const at = now();
          const id = buf.readUInt16BE(body);
          p.outstanding--;
          acks++;
          p.onAck(at - p.sentAt[id]!, at);
        } else if (type === CONNACK && !connected) {
          const rc = buf[body + 1];
          if (rc !== 0) return reject(new Error(`${c.clientId}: CONNACK ${rc}`));
          connected = true;
          resolve(p);
        }
      });
      socket.on('data', (chunk: Buffer) => {
        acks = 0;
        reader.feed(chunk);
        if (acks > 0) p.onChunk(acks);
      });
      socket.once('error', (err) => (connected ? undefined : reject(err)));
      socket.once('close', () => (connected ? undefined : reject(new Error(`${c.clientId}: connection closed before CONNACK`))));
      socket.write(connectPacket(c));
    });
  }

  /** Writes `n` PUBLISH packets (QoS 1, fresh packet ids) in one write. */
  send(n: number): void {
    const len = this.template.length;
    const out = Buffer.allocUnsafe(len * n);
    const t = now();
    for (let k = 0; k < n; k++) {
      const id = this.nextId;
      this.nextId = id === 65535 ? 1 : id + 1;
      this.template.copy(out, k * len);
      out.writeUInt16BE(id, k * len + this.idOffset);
      this.sentAt[id] = t;
    }
    this.outstanding += n;
    this.socket.write(out);
  }

  close(): void {
    this.socket.end(DISCONNECT);
  }

  destroy(): void {
    this.socket.destroy();
  }
}

// --- measurements -------------------------------------------------------------------------------------------

/** One message at a time: the next PUBLISH is written when the previous PUBACK has been read. */
async function sequential(p: Publisher, count: number): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < count; i++) {
    const ms = await new Promise<number>((resolve) => {
      p.onAck = (latency) => resolve(latency);
      p.send(1);
    });
    samples.push(ms);
  }
  p.onAck = () => undefined;
  return samples;
}

interface WindowRun {
  readonly ackedPerSecond: number;
  readonly latencies: number[];
  readonly agentCpu: number;
  readonly acked: number;
}

/** PUBLISHERS publishers, INFLIGHT unacknowledged each, one more sent per PUBACK; WARMUP_MS, then WINDOW_MS counted. */
async function windowRun(agent: AgentProcess, pubs: readonly Publisher[]): Promise<WindowRun> {
  const t0 = now();
  const w0 = t0 + WARMUP_MS;
  const w1 = w0 + WINDOW_MS;
  let running = true;
  let inWindow = 0;
  let total = 0;
  const latencies: number[] = [];
  for (const p of pubs) {
    p.onAck = (ms, at) => {
      total++;
      if (at >= w0 && at < w1) {
        inWindow++;
        latencies.push(ms);
      }
    };
    p.onChunk = (acks) => {
      if (running) p.send(acks);
    };
  }
  let cpu0 = NaN;
  let cpuT0 = NaN;
  let agentCpu = NaN;
  const marks = [
    settle(w0 - now()).then(() => {
      cpu0 = agent.cpuMs() ?? NaN;
      cpuT0 = now();
    }),
    settle(w1 - now()).then(() => {
      agentCpu = ((agent.cpuMs() ?? NaN) - cpu0) / (now() - cpuT0);
      running = false;
    }),
  ];
  for (const p of pubs) p.send(INFLIGHT);
  await Promise.all(marks);
  // Drain: every PUBLISH written is acknowledged (the agent loses none).
  for (const deadline = now() + DRAIN_TIMEOUT_MS; pubs.some((p) => p.outstanding > 0); ) {
    if (now() > deadline) throw new Error(`durable-ack: ${pubs.reduce((n, p) => n + p.outstanding, 0)} PUBLISHes not acknowledged ${DRAIN_TIMEOUT_MS / 1000} s after the window`);
    await settle(5);
  }
  for (const p of pubs) {
    p.onAck = () => undefined;
    p.onChunk = () => undefined;
  }
  return { ackedPerSecond: inWindow / (WINDOW_MS / 1000), latencies, agentCpu, acked: total };
}

interface Stats {
  readonly count: number;
  readonly medianMs: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

function stats(samples: readonly number[]): Stats {
  const s = Float64Array.from(samples).sort();
  const at = (q: number): number => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
  return { count: s.length, medianMs: at(0.5), p90Ms: at(0.9), p99Ms: at(0.99), maxMs: s[s.length - 1]! };
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

interface CloudView {
  readonly link: { state?: string; sent?: number };
  readonly queue: { depth: number; lastSeq: number; dropped: number };
}

async function cloudStatus(agent: AgentProcess): Promise<CloudView> {
  const s = (await agent.status()) as unknown as { cloud: CloudView | null };
  if (!s.cloud) throw new Error('durable-ack: the agent has no cloud link');
  return s.cloud;
}

// --- the section ---------------------------------------------------------------------------------------------

export async function durableAckSection(o: { progress: (line: string) => void }): Promise<{ figures: DurableAckFigures; lines: string[] }> {
  const started = now();
  const dir = mkdtempSync(join(tmpdir(), 'ew-bench-durable-ack-'));
  let agent: AgentProcess | undefined;
  let cloud: BenchMosquitto | null = null;
  const publishers: Publisher[] = [];
  const end = cleanUpOnExit(() => {
    cloud?.kill();
    rmSync(dir, { recursive: true, force: true });
  });
  try {
    o.progress('durable-ack: starting mosquitto as the cloud broker');
    cloud = await startMosquitto();
    // Nothing listens on a port just found free: the link retries with backoff, messages stay queued.
    const url = cloud?.url ?? 'mqtt://127.0.0.1:9';
    if (!cloud) o.progress('durable-ack: no mosquitto on the PATH: the cloud link points at a closed port (messages stay queued)');
    const snap = makeSnapshot(dir);
    const { configFile, stateDir } = writeConfig(dir, 'durable-ack', true, snap.keyFile, snap.snapshotFile, {
      cloud: { enabled: true, url, forward: FORWARD, reconnectMinMs: 100 },
    });
    o.progress(`durable-ack: starting the agent (enforced, cloud link to ${url}, cloud.forward ${FORWARD.join(', ')})`);
    agent = await startAgentProcess({ name: 'durable-ack', configFile, stateDir });
    if ((await agent.status()).snapshotVersion !== 1000) throw new Error('durable-ack: the bench snapshot is not in force');
    if (cloud) {
      for (const deadline = now() + 15_000; (await cloudStatus(agent)).link.state !== 'online'; ) {
        if (now() > deadline) throw new Error(`durable-ack: the cloud link is not online after 15 s: ${JSON.stringify((await cloudStatus(agent)).link)}`);
        await settle(50);
      }
    }
    const before = await cloudStatus(agent);
    const port = agent.port;
    const cred = (i: number, role: string): Credentials => ({ clientId: `da-${role}-${i}`, username: deviceId(i), password: deviceToken(deviceId(i)) });
    const topicOf = (k: Kind, i: number): string => (k === 'forwarded' ? forwardedTopic(deviceId(i)) : localTopic(deviceId(i)));
    let forwardedAcked = 0;

    // 1. Latency, one at a time, alternating the topic kinds.
    const lat: Record<Kind, number[]> = { forwarded: [], local: [] };
    for (let r = 0; r < LATENCY_ROUNDS; r++) {
      for (const k of (r % 2 === 0 ? ['forwarded', 'local'] : ['local', 'forwarded']) as Kind[]) {
        o.progress(`durable-ack: latency round ${r + 1}/${LATENCY_ROUNDS}, ${k}: ${LATENCY_MESSAGES} QoS 1 publishes one at a time`);
        const p = await Publisher.connect(port, cred(0, `lat-${k}`), topicOf(k, 0));
        publishers.push(p);
        await sequential(p, LATENCY_WARMUP);
        lat[k].push(...(await sequential(p, LATENCY_MESSAGES)));
        if (k === 'forwarded') forwardedAcked += LATENCY_WARMUP + LATENCY_MESSAGES;
        p.close();
      }
    }

    // 2. A pipelined window, alternating.
    const win: Record<Kind, WindowRun[]> = { forwarded: [], local: [] };
    for (let r = 0; r < WINDOW_ROUNDS; r++) {
      for (const k of (r % 2 === 0 ? ['forwarded', 'local'] : ['local', 'forwarded']) as Kind[]) {
        o.progress(`durable-ack: window round ${r + 1}/${WINDOW_ROUNDS}, ${k}: ${PUBLISHERS} devices × ${INFLIGHT} unacknowledged, ${WARMUP_MS / 1000} s warm-up + ${WINDOW_MS / 1000} s`);
        const pubs = await Promise.all(Array.from({ length: PUBLISHERS }, (_, i) => Publisher.connect(port, cred(i, `win-${k}`), topicOf(k, i))));
        publishers.push(...pubs);
        const run = await windowRun(agent, pubs);
        win[k].push(run);
        if (k === 'forwarded') forwardedAcked += run.acked;
        for (const p of pubs) p.close();
      }
    }

    // 3. Everything forwarded reaches the cloud broker (or, with no cloud, is still queued).
    let after = await cloudStatus(agent);
    if (cloud) {
      for (const deadline = now() + DRAIN_TIMEOUT_MS; after.queue.depth > 0 && now() < deadline; after = await cloudStatus(agent)) await settle(50);
    }
    return summarize({
      cloud: cloud ? 'mosquitto' : 'unreachable',
      lat,
      win,
      forwardedAcked,
      queued: after.queue.lastSeq - before.queue.lastSeq,
      sent: (after.link.sent ?? NaN) - (before.link.sent ?? NaN),
      depthAfter: after.queue.depth,
      dropped: after.queue.dropped,
      seconds: (now() - started) / 1000,
    });
  } finally {
    for (const p of publishers) p.destroy();
    await agent?.stop().catch(() => undefined);
    await cloud?.stop().catch(() => undefined);
    end();
  }
}

// --- figures and lines ---------------------------------------------------------------------------------------

const r1 = (x: number): number => Math.round(x * 10) / 10;
const r3 = (x: number): number => Math.round(x * 1000) / 1000;
const int = (x: number): string => Math.round(x).toLocaleString('en-US');

function summarize(m: {
  cloud: 'mosquitto' | 'unreachable';
  lat: Record<Kind, number[]>;
  win: Record<Kind, WindowRun[]>;
  forwardedAcked: number;
  queued: number;
  sent: number;
  depthAfter: number;
  dropped: number;
  seconds: number;
}): { figures: DurableAckFigures; lines: string[] } {
  const syncIntervalMs = DEFAULT_CONFIG.cloud.queue.syncIntervalMs;
  const lf = stats(m.lat.forwarded);
  const ll = stats(m.lat.local);
  const wf = stats(m.win.forwarded.flatMap((w) => w.latencies));
  const wl = stats(m.win.local.flatMap((w) => w.latencies));
  const rateF = median(m.win.forwarded.map((w) => w.ackedPerSecond));
  const rateL = median(m.win.local.map((w) => w.ackedPerSecond));
  const cpuF = median(m.win.forwarded.map((w) => w.agentCpu));
  const cpuL = median(m.win.local.map((w) => w.agentCpu));
  const figures: DurableAckFigures = {
    durableAckCloud: m.cloud,
    durableAckSyncIntervalMs: syncIntervalMs,
    durableAckPayloadBytes: PAYLOAD_BYTES,
    durableAckLatencyMessages: lf.count,
    durableAckLatencyForwardedMedianMs: r3(lf.medianMs),
    durableAckLatencyForwardedP99Ms: r3(lf.p99Ms),
    durableAckLatencyForwardedMaxMs: r3(lf.maxMs),
    durableAckLatencyLocalMedianMs: r3(ll.medianMs),
    durableAckLatencyLocalP99Ms: r3(ll.p99Ms),
    durableAckLatencyLocalMaxMs: r3(ll.maxMs),
    durableAckLatencyAddedMedianMs: r3(lf.medianMs - ll.medianMs),
    durableAckWindowPublishers: PUBLISHERS,
    durableAckWindowInflightPerPublisher: INFLIGHT,
    durableAckWindowRoundsPerKind: WINDOW_ROUNDS,
    durableAckWindowSeconds: WINDOW_MS / 1000,
    durableAckWindowForwardedPerSecond: Math.round(rateF),
    durableAckWindowLocalPerSecond: Math.round(rateL),
    durableAckWindowForwardedPerSecondRounds: m.win.forwarded.map((w) => Math.round(w.ackedPerSecond)),
    durableAckWindowLocalPerSecondRounds: m.win.local.map((w) => Math.round(w.ackedPerSecond)),
    durableAckWindowForwardedVsLocalPercent: r1((rateF / rateL - 1) * 100),
    durableAckWindowLatencyForwardedMedianMs: r3(wf.medianMs),
    durableAckWindowLatencyForwardedP99Ms: r3(wf.p99Ms),
    durableAckWindowLatencyLocalMedianMs: r3(wl.medianMs),
    durableAckWindowLatencyLocalP99Ms: r3(wl.p99Ms),
    durableAckWindowAgentCpuForwarded: r3(cpuF),
    durableAckWindowAgentCpuLocal: r3(cpuL),
    durableAckForwardedPublishes: m.forwardedAcked,
    durableAckQueuedByAgent: m.queued,
    durableAckSentToCloud: m.sent,
    durableAckQueueDepthAfter: m.depthAfter,
    durableAckQueueDropped: m.dropped,
    durableAckSectionSeconds: r1(m.seconds),
  };
  const lat = (s: Stats): string => `median ${s.medianMs.toFixed(3)} ms, p90 ${s.p90Ms.toFixed(3)} ms, p99 ${s.p99Ms.toFixed(3)} ms, max ${s.maxMs.toFixed(2)} ms`;
  const cloudLine =
    m.cloud === 'mosquitto'
      ? `the cloud link up to mosquitto on loopback: ${int(m.sent)} messages sent up, ${m.depthAfter} left queued after the drain`
      : `the cloud link pointing at a closed port (no mosquitto here): everything forwarded stays queued (${int(m.depthAfter)} at the end)`;
  const lines = [
    `Durable acknowledgement — QoS 1 from devices, PUBLISH to PUBACK, on one enforced agent: ${FORWARD.join(', ')} is forwarded to the cloud`,
    `  (PUBACK once the outbox has fsynced it: group commit every ${syncIntervalMs} ms, cloud.queue.syncIntervalMs), the device's own alerts are not (baseline);`,
    `  ${cloudLine}; alternating rounds, ${PAYLOAD_BYTES}-byte payloads`,
    `  one at a time   forwarded ${lat(lf)}`,
    `                  local     ${lat(ll)}`,
    `                  (${lf.count} each in ${LATENCY_ROUNDS} rounds; the durable acknowledgement adds ${(lf.medianMs - ll.medianMs).toFixed(2)} ms at the median)`,
    `  window          forwarded ${int(rateF).padStart(7)} PUBACKs/s, latency median ${wf.medianMs.toFixed(2)} ms, p99 ${wf.p99Ms.toFixed(2)} ms; agent ${(cpuF * 100).toFixed(0)}% of a core`,
    `                  local     ${int(rateL).padStart(7)} PUBACKs/s, latency median ${wl.medianMs.toFixed(2)} ms, p99 ${wl.p99Ms.toFixed(2)} ms; agent ${(cpuL * 100).toFixed(0)}% of a core`,
    `                  (${PUBLISHERS} devices × ${INFLIGHT} unacknowledged; median of ${WINDOW_ROUNDS} rounds: forwarded ${m.win.forwarded.map((w) => int(w.ackedPerSecond)).join(', ')}; local ${m.win.local.map((w) => int(w.ackedPerSecond)).join(', ')})`,
    `  outbox          ${int(m.queued)} records queued by the agent for ${int(m.forwardedAcked)} forwarded publishes acknowledged; ${m.dropped} dropped`,
  ];
  if (m.queued < m.forwardedAcked) lines.push(`  ! fewer records queued than forwarded publishes acknowledged`);
  if (m.cloud === 'mosquitto' && m.depthAfter > 0) lines.push(`  ! ${m.depthAfter} messages still queued ${DRAIN_TIMEOUT_MS / 1000} s after the last round`);
  lines.push(`  (durable-ack section took ${m.seconds.toFixed(1)} s)`);
  return { figures, lines };
}
