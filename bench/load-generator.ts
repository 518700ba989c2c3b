// The broker bench's load generator: a separate process (forked by broker.ts, one request at a time
// over the IPC channel) so that it and the agent each get a core of their own. It is the same code
// for both agent configurations; only the credentials and the port differ. The throughput and
// latency requests speak MQTT 3.1.1 or 5 (`protocolVersion`, for the mqtt5 section, mqtt5.ts).
//
// Raw TCP sockets and pre-built packets rather than MQTT.js: a publisher writes a ready-made batch
// of PUBLISH packets per write, a subscriber only splits the byte stream by fixed headers and counts
// (for QoS 1 it answers with one write of PUBACKs per received chunk). That keeps the generator's
// cost per message well below the broker's (MQTT.js builds, parses and emits an object per message,
// which on a 2-core machine makes the client, not the broker, the bottleneck). The generator reports
// its own CPU use so a run where it became the bottleneck shows up.
import { createConnection, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import {
  CONNACK,
  connectPacket,
  DISCONNECT,
  FrameReader,
  PUBACK,
  PUBLISH,
  publishPacket,
  publishPacketId,
  publishPacketIdOffset,
  publishPayloadStart,
  publishQos,
  pubackReasonCode,
  pubacks,
  SUBACK,
  subackFirstCode,
  subscribePacket,
  type Credentials,
  type ProtocolVersion,
} from './mqtt-wire.js';

// --- the protocol between broker.ts and this process -------------------------------------------------

export interface ThroughputRequest {
  readonly kind: 'throughput';
  readonly port: number;
  /** Every connection's MQTT version: 4 (3.1.1, the default) or 5. */
  readonly protocolVersion?: ProtocolVersion;
  readonly qos: 0 | 1;
  /** Each publishes to its own topics, in turn, as fast as the broker takes it. */
  readonly publishers: readonly (Credentials & { readonly topics: readonly string[] })[];
  /** Each subscribes to its filter (at `qos`) and counts what it receives. */
  readonly subscribers: readonly (Credentials & { readonly filter: string })[];
  readonly payloadBytes: number;
  /** QoS 0: PUBLISH packets per socket write. */
  readonly batch: number;
  /**
   * Messages per publisher on their way: QoS 1, unacknowledged PUBLISH packets; QoS 0, written but
   * not yet received by the subscribers (all publishers share the budget). Without this bound a QoS 0
   * publisher fills the loopback socket buffers (megabytes each) and the window measures a backlog.
   */
  readonly inflight: number;
  readonly warmupMs: number;
  readonly windowMs: number;
}

export interface ThroughputResult {
  /** Messages received by all subscribers, per second of the window. */
  readonly deliveredPerSecond: number;
  /** QoS 0: messages written by the publishers; QoS 1: PUBACKs they received; per second of the window. */
  readonly acceptedPerSecond: number;
  readonly windowSeconds: number;
  /** The whole run, warm-up and drain included: every accepted message should reach every subscriber. */
  readonly acceptedTotal: number;
  readonly deliveredTotal: number;
  /** The generator's CPU time in the window / the window (1 = one core busy). */
  readonly generatorCpu: number;
  readonly socketErrors: number;
  /** MQTT 5, QoS 1: PUBACKs with a reason code of 0x80 or above (refused; counted in `accepted*` all the same). */
  readonly refusedTotal: number;
}

export interface LatencyRequest {
  readonly kind: 'latency';
  readonly port: number;
  /** The sender's and the device's MQTT version: 4 (3.1.1, the default) or 5. */
  readonly protocolVersion?: ProtocolVersion;
  readonly sender: Credentials;
  readonly device: Credentials;
  /** The command topic the sender publishes to (QoS 1). */
  readonly topic: string;
  /** The device's subscription (QoS 1). */
  readonly filter: string;
  readonly warmup: number;
  readonly count: number;
  /** Pause between a delivery and the next command. */
  readonly gapMs: number;
  readonly payloadBytes: number;
  /** Give up (reject) when a command has not arrived this long after it was sent (default 10 s). */
  readonly timeoutMs?: number;
}

export interface LatencyResult {
  /** Publisher to device, per command after the warm-up, in order. */
  readonly samplesMs: number[];
}

export interface ConnectRequest {
  readonly kind: 'connect';
  readonly port: number;
  readonly devices: readonly Credentials[];
  readonly keepalive: number;
  /** At most this many connections between TCP connect and CONNACK at once. */
  readonly maxPending: number;
}

export interface ConnectResult {
  readonly accepted: number;
  readonly refused: number;
  /** From the first CONNECT written to the last CONNACK received. */
  readonly firstConnectToLastConnackMs: number;
  /** Per device, CONNECT written to CONNACK received. */
  readonly medianHandshakeMs: number;
  readonly maxHandshakeMs: number;
}

/** Disconnects the devices a 'connect' request left connected. */
export interface ReleaseRequest {
  readonly kind: 'release';
}

/**
 * One round of the offline-queue case: persistent sessions (CleanSession=0, fixed client ids) are
 * wiped (a CleanSession=1 connect), subscribe at QoS 1, disconnect; while they are offline the
 * publishers queue messages for them (QoS 1, every PUBACK awaited); then all sessions reconnect at
 * once and receive their queues. The sessions stay, with empty queues, until 'forget-sessions'.
 */
export interface OfflineQueueRequest {
  readonly kind: 'offline-queue';
  readonly port: number;
  /** `expect`: messages that will be queued for it; `actions`: whether they are actions (counted apart). */
  readonly sessions: readonly (Credentials & { readonly filter: string; readonly expect: number; readonly actions: boolean })[];
  /** Each publishes `count` messages, QoS 1, to its topics in turn, at most `inflight` unacknowledged. */
  readonly publishers: readonly (Credentials & { readonly topics: readonly string[]; readonly count: number })[];
  readonly payloadBytes: number;
  readonly inflight: number;
  /** The sessions stay offline this long after the last PUBACK (the agent's background work on the queueing settles). */
  readonly offlineMs: number;
  /** Stop waiting for the queued messages after this long without one arriving. */
  readonly idleTimeoutMs: number;
}

export interface OfflineQueueResult {
  /** Messages the publishers had acknowledged (PUBACK) before the sessions came back. */
  readonly queued: number;
  /** From the first publish to the last PUBACK. */
  readonly queueMs: number;
  /** Sessions whose CONNACK said "session present" when they came back (all, expected). */
  readonly sessionsPresent: number;
  readonly expectedActions: number;
  readonly expectedOther: number;
  /** Messages received after the reconnect, by sessions expecting actions and by the others. */
  readonly receivedActions: number;
  readonly receivedOther: number;
  /** From the first reconnect (TCP connect) to the last queued message received. */
  readonly reconnectToLastMs: number;
  /** Sessions that did not receive exactly what they expected: "<client id> <received>/<expected>". */
  readonly shortfalls: string[];
  readonly socketErrors: number;
}

/** Ends the persistent sessions of these client ids (a CleanSession=1 connect and DISCONNECT each). */
export interface ForgetSessionsRequest {
  readonly kind: 'forget-sessions';
  readonly port: number;
  readonly clients: readonly Credentials[];
}

export type GeneratorRequest = ThroughputRequest | LatencyRequest | ConnectRequest | ReleaseRequest | OfflineQueueRequest | ForgetSessionsRequest;
export type GeneratorMessage =
  | { readonly kind: 'result'; readonly result: unknown }
  | { readonly kind: 'error'; readonly message: string }
  /** Sent at the start and the end of a throughput window (offline queues: of the reconnect), so the parent can read the agent's CPU time. */
  | { readonly kind: 'mark'; readonly phase: 'start' | 'end' };

// --- connections --------------------------------------------------------------------------------------

type FrameHandler = (buf: Buffer, start: number, body: number, end: number) => void;

interface Conn {
  readonly socket: Socket;
  readonly v5: boolean;
  handler: FrameHandler;
  /** Runs after each received chunk's frames (to answer them in one write). */
  afterChunk: (() => void) | null;
}

let socketErrors = 0;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const ignore: FrameHandler = () => undefined;

interface DialOptions {
  readonly keepalive?: number;
  /** 4 (MQTT 3.1.1, the default) or 5. */
  readonly protocolVersion?: ProtocolVersion;
  /** CleanSession (default true). */
  readonly clean?: boolean;
  /**
   * Runs at the CONNACK, before the rest of its chunk is read: a resumed session's queued
   * PUBLISHes may arrive in the same chunk, so their handler must be in place by then.
   */
  readonly onConnack?: (conn: Conn, sessionPresent: boolean) => void;
}

/** TCP connect, CONNECT, CONNACK 0; rejects on any other outcome. */
function dial(port: number, c: Credentials, o: DialOptions = {}): Promise<Conn> {
  const version = o.protocolVersion ?? 4;
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.setNoDelay(true);
    const conn: Conn = {
      socket,
      v5: version === 5,
      afterChunk: null,
      handler: (buf, start, body) => {
        if (buf[start]! >> 4 !== CONNACK) return;
        // The 3.1.1 return code and the MQTT 5 reason code sit in the same byte (then 5's properties).
        const rc = buf[body + 1]!;
        conn.handler = ignore;
        if (rc === 0) o.onConnack?.(conn, (buf[body]! & 1) === 1);
        if (rc === 0) resolve(conn);
        else {
          socket.destroy();
          reject(new Error(`${c.clientId}: CONNACK return code ${rc}`));
        }
      },
    };
    const reader = new FrameReader((b, s, bo, e) => conn.handler(b, s, bo, e));
    socket.on('data', (d: Buffer) => {
      reader.feed(d);
      conn.afterChunk?.();
    });
    socket.on('error', (err) => {
      socketErrors++;
      reject(err);
    });
    socket.on('close', () => reject(new Error(`${c.clientId}: connection closed before CONNACK`)));
    socket.on('connect', () => socket.write(connectPacket(c, o.keepalive ?? 60, o.clean ?? true, version)));
  });
}

function subscribe(conn: Conn, filter: string, qos: 0 | 1): Promise<void> {
  return new Promise((resolve, reject) => {
    conn.handler = (buf, start, body, end) => {
      if (buf[start]! >> 4 !== SUBACK) return;
      conn.handler = ignore;
      // 3.1.1: 0x80 is the only failure; 5: every reason code from 0x80 up.
      const granted = subackFirstCode(buf, body, end, conn.v5);
      if (granted < 0 || granted >= 0x80) reject(new Error(`subscription to ${filter} refused (0x${granted.toString(16)})`));
      else resolve();
    };
    conn.socket.write(subscribePacket(1, filter, qos, conn.v5 ? 5 : 4));
  });
}

async function closeAll(conns: readonly Conn[]): Promise<void> {
  await Promise.all(
    conns.map(
      (c) =>
        new Promise<void>((resolve) => {
          c.handler = ignore;
          c.afterChunk = null;
          if (c.socket.destroyed) return resolve();
          const t = setTimeout(() => {
            c.socket.destroy();
            resolve();
          }, 2000);
          c.socket.once('close', () => {
            clearTimeout(t);
            resolve();
          });
          c.socket.end(DISCONNECT);
        }),
    ),
  );
}

// --- throughput --------------------------------------------------------------------------------------

async function throughput(r: ThroughputRequest): Promise<ThroughputResult> {
  const errorsBefore = socketErrors;
  const version = r.protocolVersion ?? 4;
  const subs = await Promise.all(r.subscribers.map((s) => dial(r.port, s, { protocolVersion: version })));
  await Promise.all(subs.map((s, i) => subscribe(s, r.subscribers[i]!.filter, r.qos)));
  const pubs = await Promise.all(r.publishers.map((p) => dial(r.port, p, { protocolVersion: version })));

  let delivered = 0;
  let accepted = 0;
  let refused = 0;
  let running = true;
  // QoS 0 flow control: publishers wait here while the shared budget is spent.
  const budget = r.inflight * r.publishers.length * r.subscribers.length; // in deliveries
  let waiting: (() => void)[] = [];
  const wake = (): void => {
    if (waiting.length === 0) return;
    const w = waiting;
    waiting = [];
    for (const f of w) f();
  };

  for (const s of subs) {
    const ids: number[] = [];
    let n = 0;
    s.handler = (buf, start, body) => {
      if (buf[start]! >> 4 !== PUBLISH) return;
      delivered++;
      if (publishQos(buf, start) === 1) ids[n++] = publishPacketId(buf, body);
    };
    s.afterChunk = () => {
      wake();
      if (n === 0) return;
      s.socket.write(pubacks(ids, n));
      n = 0;
    };
  }

  const payload = Buffer.alloc(r.payloadBytes, 0x61);
  const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
  pubs.forEach((p, i) => {
    const topics = r.publishers[i]!.topics;
    const T = topics.length;
    if (r.qos === 0) {
      // Batches of r.batch packets whose topics go round the publisher's list.
      const packets = topics.map((t) => publishPacket(t, payload, 0, 1, version));
      const batches = Array.from({ length: T / gcd(T, r.batch) }, (_, b) => Buffer.concat(Array.from({ length: r.batch }, (_, k) => packets[(b * r.batch + k) % T]!)));
      let b = 0;
      const pump = (): void => {
        if (!running) return;
        if ((accepted + r.batch) * subs.length - delivered > budget) {
          waiting.push(pump);
          return;
        }
        accepted += r.batch;
        const batch = batches[b]!;
        b = (b + 1) % batches.length;
        if (p.socket.write(batch)) setImmediate(pump);
        else p.socket.once('drain', pump);
      };
      pump();
      return;
    }
    // QoS 1: a ring of packets with ids 1..RING; a new one goes out for each PUBACK, so at most
    // `inflight` ids are unacknowledged and an id is reused only long after its PUBACK.
    const RING = Math.max(1024, 4 * r.inflight);
    const packets = Array.from({ length: RING }, (_, k) => publishPacket(topics[k % T]!, payload, 1, k + 1, version));
    const ring = Buffer.concat(packets);
    const at = [0]; // at[k]: where packet k starts in the ring; at[RING] = its length
    for (const pk of packets) at.push(at[at.length - 1]! + pk.length);
    let next = 0;
    let acked = 0;
    const send = (k: number): void => {
      while (k > 0) {
        const m = Math.min(k, RING - next);
        p.socket.write(ring.subarray(at[next]!, at[next + m]!));
        next = (next + m) % RING;
        k -= m;
      }
    };
    p.handler = (buf, start, body, end) => {
      if (buf[start]! >> 4 !== PUBACK) return;
      acked++;
      if (pubackReasonCode(buf, body, end) >= 0x80) refused++;
    };
    p.afterChunk = () => {
      if (acked === 0) return;
      accepted += acked;
      if (running) send(acked);
      acked = 0;
    };
    send(r.inflight);
  });

  await sleep(r.warmupMs);
  send({ kind: 'mark', phase: 'start' });
  const d0 = delivered;
  const a0 = accepted;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await sleep(r.windowMs);
  const t1 = performance.now();
  const c1 = process.cpuUsage(c0);
  const d1 = delivered;
  const a1 = accepted;
  send({ kind: 'mark', phase: 'end' });
  running = false;

  // Drain: wait until deliveries stop and every accepted message is delivered, at most 5 s (a
  // pause of 200 ms on a loaded machine does not end it early), so the totals can be compared.
  let last = -1;
  for (let waited = 0; waited < 5000 && (delivered !== last || delivered < accepted * subs.length); waited += 200) {
    last = delivered;
    await sleep(200);
  }
  const result: ThroughputResult = {
    deliveredPerSecond: (d1 - d0) / ((t1 - t0) / 1000),
    acceptedPerSecond: (a1 - a0) / ((t1 - t0) / 1000),
    windowSeconds: (t1 - t0) / 1000,
    acceptedTotal: accepted,
    deliveredTotal: delivered,
    generatorCpu: (c1.user + c1.system) / 1000 / (t1 - t0),
    socketErrors: socketErrors - errorsBefore,
    refusedTotal: refused,
  };
  await closeAll([...pubs, ...subs]);
  return result;
}

// --- latency of one command at a time ---------------------------------------------------------------------

async function latency(r: LatencyRequest): Promise<LatencyResult> {
  const version = r.protocolVersion ?? 4;
  const v5 = version === 5;
  const device = await dial(r.port, r.device, { protocolVersion: version });
  await subscribe(device, r.filter, 1);
  const sender = await dial(r.port, r.sender, { protocolVersion: version });
  const total = r.warmup + r.count;
  const samples = new Float64Array(r.count);
  // One packet, patched in place: packet id, sequence number, then the timestamp just before the write.
  const payloadBytes = Math.max(16, r.payloadBytes); // timestamp (float64) + sequence number (uint32)
  const template = publishPacket(r.topic, Buffer.alloc(payloadBytes), 1, 1, version);
  const payloadAt = template.length - payloadBytes;
  const idAt = publishPacketIdOffset(template); // after the topic (then, in MQTT 5, the properties length)
  let seq = 0;
  let sentAt = 0; // Date.now() of the command on its way; 0 between a delivery and the next command
  const sendOne = (): void => {
    sentAt = Date.now();
    const packet = Buffer.from(template);
    const id = (seq % 65535) + 1;
    packet[idAt] = id >> 8;
    packet[idAt + 1] = id & 0xff;
    packet.writeUInt32BE(seq, payloadAt + 8);
    packet.writeDoubleBE(performance.now(), payloadAt);
    sender.socket.write(packet);
  };
  const timeoutMs = r.timeoutMs ?? 10_000;
  let watchdog: NodeJS.Timeout | undefined;
  await new Promise<void>((resolve, reject) => {
    const ids: number[] = [];
    let n = 0;
    // A command that never arrives (refused, lost) fails the request instead of hanging it.
    watchdog = setInterval(() => {
      if (sentAt > 0 && Date.now() - sentAt > timeoutMs) reject(new Error(`command ${seq} not delivered within ${timeoutMs} ms`));
    }, 500);
    device.handler = (buf, start, body, end) => {
      if (buf[start]! >> 4 !== PUBLISH) return;
      const at = publishPayloadStart(buf, start, body, end, v5);
      const ms = performance.now() - buf.readDoubleBE(at);
      const got = buf.readUInt32BE(at + 8);
      if (publishQos(buf, start) === 1) ids[n++] = publishPacketId(buf, body);
      if (got !== seq) return reject(new Error(`command ${got} arrived while waiting for ${seq}`));
      if (seq >= r.warmup) samples[seq - r.warmup] = ms;
      seq++;
      sentAt = 0;
      if (seq === total) return resolve();
      setTimeout(sendOne, r.gapMs);
    };
    device.afterChunk = () => {
      if (n === 0) return;
      device.socket.write(pubacks(ids, n));
      n = 0;
    };
    sendOne();
  }).finally(() => clearInterval(watchdog));
  await closeAll([sender, device]);
  return { samplesMs: Array.from(samples) };
}

// --- many devices connecting ------------------------------------------------------------------------------

let held: Conn[] = [];

function connectMany(r: ConnectRequest): Promise<ConnectResult> {
  return new Promise((resolve) => {
    let first = -1;
    let last = 0;
    let next = 0;
    let pending = 0;
    let accepted = 0;
    let refused = 0;
    const handshakes: number[] = [];
    const finish = (): void => {
      handshakes.sort((a, b) => a - b);
      resolve({
        accepted,
        refused,
        firstConnectToLastConnackMs: last - first,
        medianHandshakeMs: handshakes[Math.floor(handshakes.length / 2)] ?? NaN,
        maxHandshakeMs: handshakes[handshakes.length - 1] ?? NaN,
      });
    };
    const launch = (): void => {
      while (pending < r.maxPending && next < r.devices.length) {
        const c = r.devices[next++]!;
        pending++;
        let sentAt = 0;
        let done = false;
        const settle = (ok: boolean): void => {
          if (done) return;
          done = true;
          pending--;
          last = performance.now();
          if (ok) accepted++;
          else refused++;
          if (accepted + refused === r.devices.length) finish();
          else launch();
        };
        const socket = createConnection({ host: '127.0.0.1', port: r.port });
        socket.setNoDelay(true);
        const conn: Conn = {
          socket,
          v5: false,
          afterChunk: null,
          handler: (buf, start, body) => {
            if (buf[start]! >> 4 !== CONNACK) return;
            conn.handler = ignore;
            handshakes.push(performance.now() - sentAt);
            settle(buf[body + 1] === 0);
          },
        };
        held.push(conn);
        const reader = new FrameReader((b, s, bo, e) => conn.handler(b, s, bo, e));
        socket.on('data', (d: Buffer) => reader.feed(d));
        socket.on('error', () => {
          socketErrors++;
          settle(false);
        });
        socket.on('close', () => settle(false));
        socket.on('connect', () => {
          sentAt = performance.now();
          if (first < 0) first = sentAt;
          socket.write(connectPacket(c, r.keepalive));
        });
      }
    };
    launch();
  });
}

async function release(): Promise<{ released: number }> {
  const conns = held;
  held = [];
  await closeAll(conns);
  return { released: conns.length };
}

// --- offline queues: persistent sessions receiving what was queued while they were away --------------

async function forgetSessions(port: number, clients: readonly Credentials[]): Promise<{ forgotten: number }> {
  await closeAll(await Promise.all(clients.map((c) => dial(port, c, { clean: true }))));
  return { forgotten: clients.length };
}

/** Publishes `count` QoS 1 messages to `topics` in turn, at most `inflight` unacknowledged; resolves at the last PUBACK. */
function publishCounted(conn: Conn, topics: readonly string[], count: number, payload: Buffer, inflight: number): Promise<void> {
  return new Promise((resolve) => {
    if (count === 0) return resolve();
    // One packet per topic, copied and given its packet id (right after the topic) per send.
    const templates = topics.map((t) => publishPacket(t, payload, 1, 1));
    let sent = 0;
    let acked = 0;
    const sendOne = (): void => {
      const p = Buffer.from(templates[sent % templates.length]!);
      const id = (sent % 65535) + 1;
      const idAt = publishPacketIdOffset(p);
      p[idAt] = id >> 8;
      p[idAt + 1] = id & 0xff;
      sent++;
      conn.socket.write(p);
    };
    conn.handler = (buf, start) => {
      if (buf[start]! >> 4 !== PUBACK) return;
      acked++;
      if (acked === count) resolve();
      else if (sent < count) sendOne();
    };
    while (sent < Math.min(count, inflight)) sendOne();
  });
}

async function offlineQueue(r: OfflineQueueRequest): Promise<OfflineQueueResult> {
  const errorsBefore = socketErrors;
  // 1. A clean start (whatever an earlier round left), then the persistent sessions and their subscriptions.
  await forgetSessions(r.port, r.sessions);
  const setup = await Promise.all(r.sessions.map((s) => dial(r.port, s, { clean: false })));
  await Promise.all(setup.map((c, i) => subscribe(c, r.sessions[i]!.filter, 1)));
  await closeAll(setup);
  await sleep(100); // the agent has closed them too: nothing below is delivered live

  // 2. While they are offline: the publishers queue their messages.
  const payload = Buffer.alloc(r.payloadBytes, 0x61);
  const pubs = await Promise.all(r.publishers.map((p) => dial(r.port, p)));
  const q0 = performance.now();
  await Promise.all(pubs.map((c, i) => publishCounted(c, r.publishers[i]!.topics, r.publishers[i]!.count, payload, r.inflight)));
  const queueMs = performance.now() - q0;
  await closeAll(pubs);
  const queued = r.publishers.reduce((n, p) => n + p.count, 0);
  await sleep(r.offlineMs);

  // 3. All sessions come back at once and receive their queues (PUBACK per received chunk).
  const received = new Array<number>(r.sessions.length).fill(0);
  const expected = r.sessions.reduce((n, s) => n + s.expect, 0);
  let total = 0;
  let last = 0;
  let sessionsPresent = 0;
  let finish: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (finish = resolve));
  const counting = (i: number) => (conn: Conn, present: boolean): void => {
    if (present) sessionsPresent++;
    const ids: number[] = [];
    let n = 0;
    conn.handler = (buf, start, body) => {
      if (buf[start]! >> 4 !== PUBLISH) return;
      received[i]!++;
      total++;
      last = performance.now();
      if (publishQos(buf, start) === 1) ids[n++] = publishPacketId(buf, body);
      if (total === expected) finish();
    };
    conn.afterChunk = () => {
      if (n === 0) return;
      conn.socket.write(pubacks(ids, n));
      n = 0;
    };
  };
  send({ kind: 'mark', phase: 'start' });
  const t0 = performance.now();
  const sessions = await Promise.all(r.sessions.map((s, i) => dial(r.port, s, { clean: false, onConnack: counting(i) })));
  // Everything expected, or nothing more for idleTimeoutMs (then the shortfalls say what is missing).
  const watchdog = setInterval(() => {
    if (performance.now() - Math.max(last, t0) > r.idleTimeoutMs) finish();
  }, 50);
  await done;
  clearInterval(watchdog);
  send({ kind: 'mark', phase: 'end' });
  await sleep(100); // anything beyond the expected (duplicates) shows up in the counts
  await closeAll(sessions);

  let receivedActions = 0;
  let receivedOther = 0;
  let expectedActions = 0;
  let expectedOther = 0;
  const shortfalls: string[] = [];
  r.sessions.forEach((s, i) => {
    if (s.actions) {
      receivedActions += received[i]!;
      expectedActions += s.expect;
    } else {
      receivedOther += received[i]!;
      expectedOther += s.expect;
    }
    if (received[i] !== s.expect) shortfalls.push(`${s.clientId} ${received[i]}/${s.expect}`);
  });
  return {
    queued,
    queueMs,
    sessionsPresent,
    expectedActions,
    expectedOther,
    receivedActions,
    receivedOther,
    reconnectToLastMs: total === 0 ? NaN : last - t0,
    shortfalls,
    socketErrors: socketErrors - errorsBefore,
  };
}

// --- main ---------------------------------------------------------------------------------------------

function send(m: GeneratorMessage): void {
  process.send?.(m);
}

async function handle(req: GeneratorRequest): Promise<unknown> {
  switch (req.kind) {
    case 'throughput':
      return throughput(req);
    case 'latency':
      return latency(req);
    case 'connect':
      return connectMany(req);
    case 'release':
      return release();
    case 'offline-queue':
      return offlineQueue(req);
    case 'forget-sessions':
      return forgetSessions(req.port, req.clients);
  }
}

if (process.send === undefined) {
  process.stderr.write('load-generator.js is started by the broker bench (bench/broker.ts), not by hand\n');
  process.exit(2);
}
process.on('message', (req: GeneratorRequest) => {
  handle(req).then(
    (result) => send({ kind: 'result', result }),
    (err: Error) => send({ kind: 'error', message: err.message }),
  );
});
process.on('disconnect', () => process.exit(0));
