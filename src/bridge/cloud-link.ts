// The link to the cloud's MQTT broker (SPEC section 5), with MQTT.js. Under the gateway's prefix P
// (default `edgewarden/{gatewayId}/`):
//
//   down  P snapshot            retained signed snapshot: accepted exactly as from a file (SPEC 4)
//         P down/<local topic>  a request for a cloud principal, JSON {principal, id?, payload? |
//                               payloadBase64?, qos?}: enforced like a local publish of that
//                               principal, then delivered on <local topic>
//   up    P status              retained JSON: online/offline (offline is the last will), snapshot
//                               version and expiry, queue depth and drops
//         P snapshot/request    asks for a fresh snapshot (on every connect, and on schedule)
//         P snapshot/refused    a snapshot the gateway refused, with the reason   (queued)
//         P replies             the outcome of each down request                  (queued)
//                               (or the request's MQTT 5 response topic below P replies/, with its
//                               correlation data: reply-routes.ts)
//         P up/<local topic>    device telemetry and events                       (queued)
//         P audit               audit records, JSON Lines                         (queued)
//
// Queued messages go through the outbox (src/store/outbox.ts): on disk first, then sent in order,
// QoS 1, at most `inflight` unacknowledged, each acknowledged in the outbox only on its PUBACK. With
// MQTT 5 each carries the user properties `ew-seq` (the outbox sequence number, for the cloud to drop
// a duplicate after a crash) and `ew-enqueued-at`.
//
// Every connection is a new MQTT.js client with automatic reconnection off: nothing of a dead
// connection is resent behind our back, so the outbox alone decides what goes up, in order. Between
// attempts the link waits a random delay below a bound that doubles from reconnectMinMs up to
// reconnectMaxMs (full jitter), and the first attempt after start waits a random part of
// reconnectMinMs: a fleet of gateways restarting at once spreads out instead of hammering the cloud.
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import mqtt, { type IClientOptions, type IClientPublishOptions, type IPublishPacket, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import type { AgentConfig } from '../config/load.js';
import type { Outbox, OutboxProperties, OutboxRecord } from '../store/outbox.js';
import type { Decision } from '../decide/reasons.js';
import { EwError, isEwError } from '../errors.js';
import { MQTT5_PAYLOAD_FORMAT_INVALID, MQTT5_SUCCESS, mqtt5CodeFor } from '../broker/reason-codes.js';
import { ReplyRoutes, type ReplyRoute } from './reply-routes.js';

export type CloudConfig = AgentConfig['cloud'];
export type LinkState = 'connecting' | 'online' | 'offline' | 'stopped';

/** What the link needs from the agent. */
export interface CloudLinkHost {
  /** SPEC section 4 acceptance; throws an EwError with the refusal's code. */
  installSnapshot(bytes: Uint8Array, source: string): Promise<{ version: number }>;
  /** A request for a cloud principal, enforced like a local publish of it, delivered when allowed. */
  request(principal: string, topic: string, payload: Buffer, qos: 0 | 1, requestId: string | null): Promise<Decision>;
  /** Snapshot facts for the retained status. */
  snapshotStatus(): { version: number | null; expiresAt: string | null; expired: boolean };
  /** The link went up, or down (the first failed attempt after start or after being up). */
  onStateChange?(state: 'online' | 'offline'): void;
}

export interface CloudLinkOptions {
  readonly config: CloudConfig;
  readonly gatewayId: string;
  readonly outbox: Outbox;
  readonly host: CloudLinkHost;
  readonly log: Logger;
  /** Uniform [0, 1); injectable for tests of the back-off. */
  readonly random?: () => number;
  /**
   * The largest snapshot accepted (snapshot.maxBytes). The link tells the cloud broker (MQTT 5
   * Maximum Packet Size) not to send it anything larger than that or a request: a broker drops
   * such a message instead of the agent buffering it whole before refusing it.
   */
  readonly maxSnapshotBytes?: number;
}

/** Largest down request accepted (the envelope, JSON). */
export const MAX_REQUEST_BYTES = 1024 * 1024;
/** Maximum Packet Size announced to the cloud broker: a snapshot or a request, with room for its topic and properties. */
export function maxIncomingPacketBytes(maxSnapshotBytes: number): number {
  return Math.min(268_435_455, Math.max(maxSnapshotBytes, MAX_REQUEST_BYTES) + 64 * 1024);
}

type Outcome = 'delivered' | 'denied' | 'invalid' | 'expired';

/** A reply's user properties, one frozen object per outcome and reason (a fixed set), made once. */
const REPLY_USER_PROPERTIES = new Map<string, Readonly<Record<string, string>>>();
export function replyUserProperties(outcome: Outcome, reason: string | undefined): Readonly<Record<string, string>> {
  const key = reason === undefined ? outcome : `${outcome} ${reason}`;
  const known = REPLY_USER_PROPERTIES.get(key);
  if (known !== undefined) return known;
  const p: Record<string, string> = { 'ew-outcome': outcome };
  if (reason !== undefined) p['ew-reason'] = reason;
  Object.freeze(p);
  if (REPLY_USER_PROPERTIES.size < 256) REPLY_USER_PROPERTIES.set(key, p);
  return p;
}

/** The MQTT 5 properties a reply is queued with: its outcome and reason, and the request's correlation data. */
function replyProperties(route: ReplyRoute, outcome: Outcome, reason: string | undefined): OutboxProperties {
  const userProperties = replyUserProperties(outcome, reason);
  return route.correlationData === undefined ? { userProperties } : { correlationData: route.correlationData, userProperties };
}

/** A connection that stays up this long resets the back-off. */
const STABLE_MS = 30_000;

/** The back-off bound before attempt `failures` (0 = the first after a loss), in ms. */
export function backoffBound(failures: number, minMs: number, maxMs: number): number {
  return Math.min(maxMs, minMs * 2 ** Math.min(failures, 40));
}

/** `{gatewayId}` replaced. */
export function expandGatewayId(template: string, gatewayId: string): string {
  return template.split('{gatewayId}').join(gatewayId);
}

export interface CloudRequest {
  readonly principal: string;
  readonly id: string | null;
  readonly payload: Buffer;
  readonly qos: 0 | 1;
}

/** A down request's envelope, checked: the request, or what is wrong with it. */
export function parseCloudRequest(bytes: Buffer): CloudRequest | { error: string; id: string | null } {
  if (bytes.length > MAX_REQUEST_BYTES) return { error: `request of ${bytes.length} bytes is larger than ${MAX_REQUEST_BYTES}`, id: null };
  let body: unknown;
  try {
    body = JSON.parse(bytes.toString('utf8'));
  } catch {
    return { error: 'request is not JSON', id: null };
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return { error: 'request must be a JSON object', id: null };
  const b = body as Record<string, unknown>;
  const id = typeof b['id'] === 'string' && b['id'].length <= 256 ? b['id'] : null;
  if (b['id'] !== undefined && id === null) return { error: 'id must be a string of at most 256 characters', id: null };
  const principal = b['principal'];
  if (typeof principal !== 'string' || principal.length === 0 || principal.length > 256) return { error: 'principal must be a non-empty string', id };
  const qos = b['qos'] ?? 1;
  if (qos !== 0 && qos !== 1) return { error: 'qos must be 0 or 1', id };
  let payload: Buffer;
  if (typeof b['payloadBase64'] === 'string') {
    if (b['payload'] !== undefined) return { error: 'give payload or payloadBase64, not both', id };
    payload = Buffer.from(b['payloadBase64'], 'base64');
  } else if (typeof b['payload'] === 'string') payload = Buffer.from(b['payload'], 'utf8');
  else if (b['payload'] === undefined) payload = Buffer.alloc(0);
  else return { error: 'payload must be a string (or use payloadBase64)', id };
  return { principal, id, payload, qos };
}

export class CloudLink {
  readonly prefix: string;
  private client: MqttClient | null = null;
  private linkState: LinkState = 'offline';
  private notified: 'online' | 'offline' | null = null;
  private failures = 0;
  private connectedAt = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private readonly inflight = new Set<number>();
  private lastSent: number | undefined;
  private stopped = false;
  private password: string | undefined;
  private readonly refusedSeen = new Set<string>();
  private readonly routes: ReplyRoutes;
  private requests: Promise<void> = Promise.resolve();
  private readonly random: () => number;
  private readonly log: Logger;
  private readonly counters = { connects: 0, connectFailures: 0, sent: 0, requests: 0, requestsDenied: 0, snapshotsAccepted: 0, snapshotsRefused: 0 };
  private lastError: string | null = null;

  constructor(private readonly opts: CloudLinkOptions) {
    this.prefix = expandGatewayId(opts.config.prefix, opts.gatewayId);
    this.random = opts.random ?? Math.random;
    this.log = opts.log;
    this.routes = new ReplyRoutes(this.prefix, opts.log);
  }

  get state(): LinkState {
    return this.linkState;
  }

  /** Starts connecting after a random part of reconnectMinMs (fleet restarts spread out). */
  start(): void {
    const c = this.opts.config;
    if (c.passwordFile !== null) {
      // Read once at start; never logged. A missing file is a configuration error worth stopping for.
      try {
        this.password = readFileSync(c.passwordFile, 'utf8').split(/\r?\n/)[0] ?? '';
      } catch (err) {
        throw new EwError('EW_CONFIG_READ', `cloud.passwordFile cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { where: c.passwordFile, cause: err });
      }
    }
    this.schedule(Math.floor(this.random() * c.reconnectMinMs));
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => this.connect(), delayMs);
    this.reconnectTimer.unref();
  }

  private setState(s: LinkState): void {
    if (this.linkState === s) return;
    this.linkState = s;
    // The host hears of real changes only: up, or down (once, not on every failed attempt).
    const reached = s === 'online' ? 'online' : s === 'offline' ? 'offline' : null;
    if (reached === null || reached === this.notified) return;
    this.notified = reached;
    try {
      this.opts.host.onStateChange?.(reached);
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'cloud link state handler failed');
    }
  }

  private clientOptions(): IClientOptions {
    const c = this.opts.config;
    const id = this.opts.gatewayId;
    const opts: IClientOptions = {
      clientId: expandGatewayId(c.clientId, id),
      protocolVersion: 5,
      clean: true,
      keepalive: c.keepaliveSeconds,
      connectTimeout: c.connectTimeoutMs,
      reconnectPeriod: 0,
      resubscribe: false,
      queueQoSZero: false,
      properties: { maximumPacketSize: maxIncomingPacketBytes(this.opts.maxSnapshotBytes ?? 32 * 1024 * 1024) },
      will: {
        topic: `${this.prefix}status`,
        payload: Buffer.from(JSON.stringify({ gatewayId: id, state: 'offline', reason: 'connection lost' })),
        qos: 1,
        retain: true,
      },
    };
    if (c.username !== null) opts.username = c.username;
    if (this.password !== undefined) opts.password = this.password;
    if (c.ca !== null) opts.ca = readFileSync(c.ca);
    if (c.cert !== null) opts.cert = readFileSync(c.cert);
    if (c.key !== null) opts.key = readFileSync(c.key);
    return opts;
  }

  private connect(): void {
    if (this.stopped) return;
    this.setState('connecting');
    let client: MqttClient;
    try {
      client = mqtt.connect(this.opts.config.url, this.clientOptions());
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'cloud link: cannot connect');
      this.lost(null);
      return;
    }
    this.client = client;
    client.on('connect', () => this.onConnect(client));
    client.on('message', (topic, payload, packet) => this.onMessage(topic, payload, packet));
    client.on('error', (err) => {
      // MQTT.js errors name the host and the reason; they never carry the password.
      if (this.lastError !== err.message) this.log.warn({ url: this.opts.config.url, err: err.message }, 'cloud link error');
      this.lastError = err.message;
    });
    client.on('close', () => this.lost(client));
  }

  private onConnect(client: MqttClient): void {
    if (client !== this.client) return;
    this.counters.connects++;
    this.connectedAt = Date.now();
    this.lastError = null;
    this.inflight.clear();
    this.lastSent = undefined;
    this.log.info({ url: this.opts.config.url, prefix: this.prefix }, 'cloud link up');
    client.subscribe(
      [`${this.prefix}snapshot`, `${this.prefix}down/#`],
      { qos: 1 },
      (err) => {
        if (err) this.log.warn({ err: err.message }, 'cloud link: subscription failed');
      },
    );
    this.setState('online');
    this.publishStatus();
    this.requestSnapshot('reconnect');
    this.pump();
  }

  private lost(client: MqttClient | null): void {
    if (client !== null && client !== this.client) return;
    const wasOnline = this.linkState === 'online';
    if (this.client) {
      this.client.removeAllListeners();
      this.client.on('error', () => undefined);
      this.client.end(true);
      this.client = null;
    }
    this.inflight.clear();
    this.lastSent = undefined;
    if (this.stopped) return;
    if (wasOnline) {
      if (Date.now() - this.connectedAt >= STABLE_MS) this.failures = 0;
      this.log.warn({ queued: this.opts.outbox.stats().depth }, 'cloud link down: queueing upward messages on disk');
    } else this.counters.connectFailures++;
    this.setState('offline');
    const c = this.opts.config;
    const delay = Math.floor(this.random() * backoffBound(this.failures, c.reconnectMinMs, c.reconnectMaxMs));
    this.failures++;
    this.schedule(Math.max(delay, 10));
  }

  /** Queues an upward message on disk (resolves when durable) and sends what the window allows. */
  async enqueue(topic: string, payload: Buffer | string, opts: { qos?: 0 | 1; retain?: boolean; properties?: OutboxProperties } = {}): Promise<number> {
    const seq = await this.opts.outbox.append(topic, payload, opts);
    this.pump();
    return seq;
  }

  /** Sends queued records, oldest first, while the window has room. */
  pump(): void {
    const client = this.client;
    if (this.linkState !== 'online' || client === null) return;
    const room = this.opts.config.inflight - this.inflight.size;
    if (room <= 0) return;
    let records: OutboxRecord[];
    try {
      records = this.opts.outbox.peek(room, this.lastSent);
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'cloud link: cannot read the queue');
      return;
    }
    for (const r of records) {
      this.lastSent = r.seq;
      this.inflight.add(r.seq);
      const userProperties: Record<string, string> = { 'ew-seq': String(r.seq), 'ew-enqueued-at': new Date(r.enqueuedAt).toISOString() };
      const options: IClientPublishOptions = { qos: 1, retain: r.retain, properties: { userProperties } };
      const rp = r.properties;
      if (rp !== undefined) {
        // A reply's outcome and reason, after ew-seq and ew-enqueued-at (which it cannot replace), and
        // the request's correlation data.
        if (rp.userProperties !== undefined) for (const k in rp.userProperties) if (!(k in userProperties)) userProperties[k] = rp.userProperties[k]!;
        if (rp.correlationData !== undefined) options.properties!.correlationData = rp.correlationData;
      }
      client.publish(`${this.prefix}${r.topic}`, r.payload, options, (err) => {
        if (client !== this.client) return; // a dead connection: the record is sent again on the next
        this.inflight.delete(r.seq);
        if (err) return;
        this.opts.outbox.ack(r.seq);
        this.counters.sent++;
        this.pump();
      });
    }
  }

  private onMessage(topic: string, payload: Buffer, packet: IPublishPacket): void {
    try {
      if (topic === `${this.prefix}snapshot`) this.onSnapshot(payload);
      else if (topic.startsWith(`${this.prefix}down/`)) {
        const local = topic.slice(this.prefix.length + 'down/'.length);
        // MQTT 5 request/response: where the reply goes, and what it carries back.
        const responseTopic = packet.properties?.responseTopic;
        const correlationData = packet.properties?.correlationData;
        // Requests are handled one at a time, in arrival order.
        this.requests = this.requests.then(() => this.onRequest(local, payload, responseTopic, correlationData)).catch((err: Error) => this.log.error({ err: err.message }, 'cloud request failed'));
      }
    } catch (err) {
      this.log.error({ topic, err: (err as Error).message }, 'cloud message not handled');
    }
  }

  private onSnapshot(bytes: Buffer): void {
    if (bytes.length === 0) return; // the retained snapshot was cleared
    const digest = createHash('sha256').update(bytes).digest('hex');
    this.opts.host.installSnapshot(bytes, `cloud ${this.prefix}snapshot`).then(
      (r) => {
        this.counters.snapshotsAccepted++;
        this.log.info({ version: r.version }, 'cloud snapshot accepted');
        this.publishStatus();
      },
      (err: unknown) => {
        const code = isEwError(err) ? err.code : 'EW_STORE_IO';
        if (code === 'EW_SNAPSHOT_DUPLICATE') return; // the retained copy of what we hold
        this.counters.snapshotsRefused++;
        if (this.refusedSeen.has(digest)) return; // reported once per agent run
        if (this.refusedSeen.size > 1000) this.refusedSeen.clear();
        this.refusedSeen.add(digest);
        const report = {
          gatewayId: this.opts.gatewayId,
          code,
          reason: (err as Error).message,
          sha256: digest,
          bytes: bytes.length,
          heldVersion: this.opts.host.snapshotStatus().version,
          at: new Date().toISOString(),
        };
        this.enqueue('snapshot/refused', JSON.stringify(report), { qos: 1 }).catch((e: Error) => this.log.error({ err: e.message }, 'snapshot refusal not queued'));
      },
    );
  }

  private async onRequest(localTopic: string, bytes: Buffer, responseTopic: string | undefined, correlationData: Buffer | undefined): Promise<void> {
    this.counters.requests++;
    const req = parseCloudRequest(bytes);
    const base = { gatewayId: this.opts.gatewayId, topic: localTopic };
    let reply: Record<string, unknown>;
    let route: ReplyRoute;
    let properties: OutboxProperties;
    if ('error' in req) {
      this.counters.requestsDenied++;
      this.log.warn({ topic: localTopic, err: req.error }, 'cloud request refused: malformed');
      route = this.routes.route(responseTopic, correlationData);
      properties = replyProperties(route, 'invalid', undefined);
      reply = { ...base, id: req.id, outcome: 'invalid', reasonCode: MQTT5_PAYLOAD_FORMAT_INVALID, error: req.error };
    } else {
      route = this.routes.route(responseTopic, correlationData);
      // Remembered before it is delivered: a refusal at delivery may come before request() resolves.
      this.routes.remember(req.id, route);
      const d = await this.opts.host.request(req.principal, localTopic, req.payload, req.qos, req.id);
      if (d.allow) {
        properties = replyProperties(route, 'delivered', undefined);
        reply = { ...base, id: req.id, principal: req.principal, outcome: 'delivered', reasonCode: MQTT5_SUCCESS };
      } else {
        this.counters.requestsDenied++;
        this.routes.forget(req.id);
        properties = replyProperties(route, 'denied', d.reason);
        reply = { ...base, id: req.id, principal: req.principal, outcome: 'denied', reason: d.reason, reasonCode: mqtt5CodeFor(d.reason) };
      }
    }
    reply['snapshotVersion'] = this.opts.host.snapshotStatus().version;
    reply['at'] = new Date().toISOString();
    await this.enqueue(route.topic, JSON.stringify(reply), { qos: 1, properties });
  }

  /**
   * A request that was delivered (accepted locally) and then refused when it was to reach the
   * device — its sender revoked or narrowed in between, its time to live passed (stage 'queue': it
   * expired waiting for an offline device): a second reply with the same id says so, on the first
   * reply's topic with its correlation data (while the request is remembered, see reply-routes.ts).
   * An expiry has no MQTT 5 reason code: its reply has no reasonCode.
   */
  async reportLateRefusal(r: { requestId: string | null; principal: string; topic: string; reason: string; stage: 'delivery' | 'queue' }): Promise<void> {
    const outcome = r.reason === 'ACTION_EXPIRED' ? 'expired' : 'denied';
    const route = this.routes.late(r.requestId);
    const reply = {
      gatewayId: this.opts.gatewayId,
      topic: r.topic,
      id: r.requestId,
      principal: r.principal,
      outcome,
      reason: r.reason,
      ...(outcome === 'denied' ? { reasonCode: mqtt5CodeFor(r.reason) } : {}),
      stage: r.stage,
      snapshotVersion: this.opts.host.snapshotStatus().version,
      at: new Date().toISOString(),
    };
    await this.enqueue(route.topic, JSON.stringify(reply), { qos: 1, properties: replyProperties(route, outcome, r.reason) });
  }

  /** Asks the cloud for a fresh snapshot (when online). */
  requestSnapshot(why: string): void {
    const client = this.client;
    if (this.linkState !== 'online' || client === null) return;
    const body = { gatewayId: this.opts.gatewayId, heldVersion: this.opts.host.snapshotStatus().version, why, at: new Date().toISOString() };
    client.publish(`${this.prefix}snapshot/request`, JSON.stringify(body), { qos: 1 }, () => undefined);
  }

  statusBody(state: 'online' | 'offline', reason?: string): Record<string, unknown> {
    const s = this.opts.host.snapshotStatus();
    const q = this.opts.outbox.stats();
    return {
      gatewayId: this.opts.gatewayId,
      state,
      ...(reason === undefined ? {} : { reason }),
      snapshotVersion: s.version,
      snapshotExpiresAt: s.expiresAt,
      snapshotExpired: s.expired,
      queue: { depth: q.depth, bytes: q.bytes, dropped: q.dropped, oldestEnqueuedAt: q.oldestEnqueuedAt === null ? null : new Date(q.oldestEnqueuedAt).toISOString() },
      at: new Date().toISOString(),
    };
  }

  /** Publishes the retained status (when online). */
  publishStatus(): void {
    const client = this.client;
    if (this.linkState !== 'online' || client === null) return;
    client.publish(`${this.prefix}status`, JSON.stringify(this.statusBody('online')), { qos: 1, retain: true }, () => undefined);
  }

  stats(): Record<string, unknown> {
    return { state: this.linkState, url: this.opts.config.url, prefix: this.prefix, inflight: this.inflight.size, ...this.counters, lastError: this.lastError };
  }

  /** Publishes a retained offline status, then disconnects. Queued messages stay on disk. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    const client = this.client;
    this.client = null;
    if (client && this.linkState === 'online') {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 2000);
        client.publish(`${this.prefix}status`, JSON.stringify(this.statusBody('offline', 'stopped')), { qos: 1, retain: true }, () => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    if (client) {
      client.removeAllListeners();
      client.on('error', () => undefined);
      // A clean DISCONNECT (so the broker does not publish the last will over our "stopped"), but
      // never wait long for it: whatever is unacknowledged stays queued on disk.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => client.end(true, {}, () => resolve()), 2000);
        client.end(false, {}, () => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    this.linkState = 'stopped';
  }
}
