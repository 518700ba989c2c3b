// The local MQTT broker: aedes, with every hook a thin call into a handler of its own file, like
// aedes' handlers. The broker knows nothing of permissions; `decide` knows nothing of MQTT.
//
//   a connection       ./accept.ts: guarded parser, marks for the connection log
//   authenticate       ./authenticate.ts: credentials (or client certificate) -> principal of the
//                      snapshot in force, or a refusal with its reason (./connections.ts logs it)
//   authorizePublish   ./publish.ts: topic -> (permission, thing) -> decide; a denied publish is dropped
//                      and audited, the client stays connected and gets its normal acknowledgement
//   authorizeSubscribe ./subscribe.ts: can the filter match anything this principal may receive? else
//                      SUBACK 0x80
//   authorizeForward   ./forward.ts: each delivered message filtered per subscriber by scope; an action
//                      is also decided again for its sender at each delivery (./actions.ts)
//   errors, comings and goings  ./client-errors.ts, ./connections.ts
// The handlers share the broker's state through ./context.ts.
import type { Server, Socket } from 'node:net';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { Aedes, type AuthenticateError, type AuthErrorCode, type Client, type PublishPacket } from 'aedes';
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import type { AgentConfig } from '../config/load.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { Decision } from '../decide/reasons.js';
import { PRINCIPAL_KIND_NAMES, PrincipalKind, type PolicyIndex } from '../decide/policy-index.js';
import { compileTopicMap, compileTopicRules, type ActionRef, type DeliveryRoute, type TopicMap, type TopicRules } from '../topics/index.js';
import { permissionId } from '../catalog/index.js';
import { createGuardedMq } from './upstream/mqemitter-flat-drain.js';
import { hardenBroker } from './upstream/prototype-safe-maps.js';
import { cleanIncomingOnCleanSessions } from './upstream/clean-session-incoming.js';
import { markWills } from './upstream/delayed-will-marker.js';
import { refuseMqtt5 } from './upstream/mqtt5-refusal-gate.js';
import { versionOf } from './upstream/client-fields.js';
import { KEEPALIVE_LIMIT_OFF } from './upstream/server-keep-alive.js';
import { disconnectOnReceiveMaximum } from './upstream/inbound-qos2-window.js';
import { hookPacketWrites } from './upstream/packet-write-hook.js';
import { brokerCounter, connectedClients } from './upstream/broker-fields.js';
import { RateLimiter } from './rate-limit.js';
import { CredentialChecker, credentialStillValid } from './credentials.js';
import { ActionGate } from './actions.js';
import { actionTtls } from './authority.js';
import { SessionStore, type QueueLimitEvent } from './session-store.js';
import { DenialBudget } from './denial-budget.js';
import { DROP, EMPTY_ID, KEEPALIVE, LEVEL, SENT, logLimitOnce, type ClientMarks, type Marked, type Session } from './session.js';
import { ConnectionEvents } from './connections.js';
import { acceptConnection } from './accept.js';
import { DISCONNECT_NOT_AUTHORIZED, disconnectAndClose, exceedsClientMaximum, outboundWindow } from './flow-control.js';
import { onClientError, type ClientErrorDeps } from './client-errors.js';
import { Delivery } from './delivery.js';
import { openListeners } from './listeners.js';
import { authenticate, type AuthDeps } from './authenticate.js';
import { fanOutBulk } from './bulk.js';
import { CloudRequests } from './cloud-requests.js';
import type { WindowPacket, WindowQueue } from './inflight-window.js';
import { sentLevel } from './upstream/protocol-level-connack.js';
import { disablePacketNumberCache } from './upstream/packet-number-cache.js';
import type { BrokerContext, BrokerCounters } from './context.js';
import { authorizePublish } from './publish.js';
import { authorizeSubscribe } from './subscribe.js';
import { RULES_ROUTE, authorizeForward, mayReceive } from './forward.js';
import { SHARE_MARKER, SharedSubscriptions } from './shared-subscriptions.js';
import { clientInfo, type ClientInfo } from './client-info.js';

/** What the broker needs to know about the policy in force, read on every hook. */
export interface PolicyView {
  /** The index of the snapshot in force, or null. */
  readonly index: PolicyIndex | null;
  /** Changes whenever a decision may change: a new snapshot, or the one in force expiring. */
  readonly epoch: number;
  /** Effective time: the time floor. */
  now(): number;
}

export interface BrokerOptions {
  readonly config: AgentConfig;
  readonly policy: () => PolicyView;
  readonly audit: AuditLog;
  readonly log: Logger;
}

/** Upward forwarding to the cloud link's outbox (SPEC section 5). */
export interface Forwarding {
  readonly filters: readonly string[];
  /** Appends to the outbox; resolves once the message is durable. */
  enqueue(topic: string, payload: Buffer, qos: 0 | 1, retain: boolean): Promise<unknown>;
}

const BULK_PERMISSION = permissionId('EXECUTE_BULK_UPDATE');
const BULK_ACTION: ActionRef = Object.freeze({ permission: 'EXECUTE_BULK_UPDATE', permissionId: BULK_PERMISSION });
/** Refused connections from one source and for one reason are one audit record per this interval (plus the first). */
const REFUSALS_INTERVAL_MS = 10_000;
/** How often queues are swept for actions whose time to live passed. */
const ACTION_SWEEP_MS = 5_000;

export class GatewayBroker {
  readonly aedes: Aedes;
  private readonly servers: Server[] = [];
  private readonly sessions = new WeakMap<Client, Session>();
  private readonly credentials: CredentialChecker;
  private readonly topicMap: TopicMap;
  /** topicMap.routeDelivery by topic, for all sessions; bounded in entries and in topic bytes. */
  private readonly deliveryRoutes = new LRUCache<string, DeliveryRoute>({ max: 4096, maxSize: 1 << 20, sizeCalculation: (_r, topic) => topic.length + 64 });
  private rules: TopicRules;
  private commandLimiter: RateLimiter;
  private firmwareLimiter: RateLimiter;
  private readonly log: Logger;
  private readonly counters: BrokerCounters = {
    connections: 0,
    publishesIn: 0,
    publishesDenied: 0,
    deliveries: 0,
    deliveriesFiltered: 0,
    messagesExpired: 0,
    oversizedPackets: 0,
    deliveriesTooLarge: 0,
    // the in-flight windows' (./inflight-window.ts)
    inflightWindowFull: 0,
    deliveriesWaited: 0,
    deliveriesDroppedWaiting: 0,
  };
  private tcpPort: number | undefined;
  private tlsPort: number | undefined;
  /** Deliveries to each client: at the granted QoS, through its in-flight window (./delivery.ts). */
  private readonly delivery: Delivery;
  /** Shared subscriptions' groups (./shared-subscriptions.ts). */
  private readonly shared: SharedSubscriptions;
  private readonly auth: AuthDeps;
  /** What the packet handlers read (./context.ts). */
  private readonly ctx: BrokerContext;
  /** Actions: authority attached at publish, decided again at delivery, expired in queues. */
  readonly actions: ActionGate;
  /** aedes' persistence: sessions, queues (with each action's authority), retained messages. */
  readonly store: SessionStore;
  private sweepTimer: NodeJS.Timeout | null = null;
  /** Connects, disconnects and refusals: logged (coalesced per REFUSALS_INTERVAL_MS), audited, counted (./connections.ts). */
  private readonly events: ConnectionEvents;
  private readonly clientErrors: ClientErrorDeps;
  /** Each client's denials write at most DENIAL_LINES_PER_SECOND audit lines a second; the rest are counted. */
  private readonly denials = new DenialBudget((r) => this.opts.audit.record(r));
  private refusalsTimer: NodeJS.Timeout | null = null;

  private constructor(
    private readonly opts: BrokerOptions,
    aedes: Aedes,
    actions: ActionGate,
    store: SessionStore,
  ) {
    this.aedes = aedes;
    this.actions = actions;
    this.store = store;
    const c = opts.config;
    this.log = opts.log;
    this.credentials = new CredentialChecker(c.cache.credentials);
    this.events = new ConnectionEvents({
      config: c,
      log: opts.log,
      audit: (r) => opts.audit.record(r),
      snapshotVersion: () => opts.policy().index?.version ?? null,
    });
    this.clientErrors = {
      log: opts.log,
      events: this.events,
      audit: (r) => opts.audit.record(r),
      snapshotVersion: () => opts.policy().index?.version ?? null,
      session: (client) => this.sessions.get(client),
      maxInflight: c.limits.maxInflightPerClient,
    };
    this.topicMap = compileTopicMap({ enabled: c.topics.thingMap });
    this.rules = compileTopicRules(c.topics.rules);
    this.commandLimiter = new RateLimiter(c.rateLimits.commandsPerMinute, 60_000);
    this.firmwareLimiter = new RateLimiter(c.rateLimits.firmwareUpdatesPerHour, 3_600_000);
    this.delivery = new Delivery({
      granted: (client) => this.sessions.get(client)?.grantedQos,
      keep: (packet) => this.actions.keepAuthority(packet),
      full: (client, max) => {
        const s = this.sessions.get(client);
        if (s) logLimitOnce(this.log, client, s, 'inflightOutbound', { max }, 'in-flight window full: further QoS 1/2 messages wait until the client acknowledges (limits.maxInflightOutbound, or the MQTT 5 client\'s Receive Maximum)');
      },
      reserve: (bytes) => this.store.reserve(bytes),
      release: (bytes) => this.store.release(bytes),
      counters: this.counters,
    });
    this.shared = new SharedSubscriptions({
      aedes,
      // A member the message is too large for is passed over too (3.1.2.25 lets the server pick one that can take it).
      mayReceive: (client, packet) => mayReceive(this.ctx, client, packet) && !exceedsClientMaximum(client, packet),
      filtered: () => void this.counters.deliveriesFiltered++,
      deliver: (client, packet, cb) => this.delivery.deliverCopy(client, packet, cb),
    });
    this.auth = {
      config: this.opts.config,
      policy: () => this.opts.policy(),
      credentials: () => this.credentials,
      allowsAnonymous: () => this.rules.allowsAnonymous,
      store: () => this.store,
      connectedPrincipal: (clientId) => {
        const existing = this.clients()[clientId];
        const s = existing ? this.sessions.get(existing) : undefined;
        return s === undefined ? undefined : s.principal;
      },
      refused: (client, reason, principal, connack, fields) => this.events.refuse(client, reason, principal, connack, fields),
      log: this.log,
    };
    const self = this;
    this.ctx = {
      config: c,
      log: opts.log,
      audit: opts.audit,
      policy: opts.policy,
      sessions: this.sessions,
      counters: this.counters,
      topicMap: this.topicMap,
      get rules() {
        return self.rules;
      },
      get commandLimiter() {
        return self.commandLimiter;
      },
      get firmwareLimiter() {
        return self.firmwareLimiter;
      },
      actions,
      delivery: this.delivery,
      shared: this.shared,
      denials: this.denials,
      get forwarding() {
        return self.forwarding;
      },
      deliveryRoute: (topic) => this.deliveryRoute(topic),
      fanOutBulk: (client, session, operation, packet, view) => this.fanOutBulk(client, session, operation, packet, view),
    };
  }

  static async start(opts: BrokerOptions): Promise<GatewayBroker> {
    const c = opts.config;
    const id = randomUUID();
    const topicMap = compileTopicMap({ enabled: c.topics.thingMap });
    let broker: GatewayBroker | undefined;
    const actionOf = (topic: string): DeliveryRoute | null => {
      const r = broker ? broker.deliveryRoute(topic) : topicMap.routeDelivery(topic);
      return r.kind === 'read' || r.kind === 'inbox' ? (r.action === null ? null : r) : null;
    };
    const actions = new ActionGate({
      brokerId: id,
      ttl: actionTtls(c),
      policy: opts.policy,
      audit: opts.audit,
      log: opts.log,
      thingOf: (topic) => (actionOf(topic) as { thing?: string } | null)?.thing ?? null,
    });
    const store = await SessionStore.load({
      authorityOf: (brokerId, counter) => actions.inFlight.get(brokerId, counter),
      isActionTopic: (topic) => actionOf(topic) !== null,
      isGranted: (client, filter) => broker?.granted(client as Client, filter) ?? true,
      limits: { maxMessages: c.sessions.maxQueuedMessages, maxBytes: c.sessions.maxQueuedBytes, maxTotalBytes: c.sessions.maxTotalQueuedBytes },
      onQueueLimit: (e) => broker?.onQueueLimit(e),
      // MQTT 5 message and session expiry count on the time floor, like actions' time to live.
      now: () => opts.policy().now(),
      // The unsent rest of a resumed session's queue waits for its in-flight window (./delivery.ts).
      resumeSentOnly: true,
      maxIncomingPerClient: c.limits.maxInflightPerClient,
      ...(c.sessions.persist
        ? {
            journal: {
              dir: join(c.stateDir, 'sessions'),
              syncIntervalMs: c.sessions.syncIntervalMs,
              onProblem: (err) => opts.log.error({ code: err.code, where: err.where, err: err.message }, 'session store problem'),
            },
          }
        : {}),
    });
    // A session whose expiry passed while the agent was stopped (an MQTT 5 one's own interval, counted
    // from its disconnect) is not revived by the start.
    const gone = store.expireSessions(opts.policy().now(), c.sessions.expirySeconds * 1000, () => false);
    if (gone.length > 0) opts.log.info({ expired: gone.length, first: gone.slice(0, 5) }, 'persistent sessions expired while the agent was stopped');
    const restored = store.stats();
    if (restored.sessions + restored.queued + restored.retained > 0) opts.log.info(restored, 'sessions restored');
    actions.attach(store);
    disablePacketNumberCache();
    hookPacketWrites(); // the CONNACK's shared subscriptions, PUBACK 0x97 (./upstream/packet-write-hook.ts)
    const aedes = await Aedes.createBroker({
      id,
      persistence: store as never,
      mq: createGuardedMq(100) as never,
      connectTimeout: c.limits.connectTimeoutMs,
      // limits.keepaliveLimitSeconds is checked in authenticate: aedes' own check answers CONNACK 6,
      // a return code MQTT 3.1.1 does not have (0 to 5) (./upstream/server-keep-alive.ts).
      keepaliveLimit: KEEPALIVE_LIMIT_OFF,
      // aedes 2.0.0-beta.1 has no maxInflightInbound (1.2.0 had): the inbound QoS 2 window is the session
      // store's (maxIncomingPerClient above; ./upstream/inbound-qos2-window.ts). MQTT 5 Receive Maximum: aedes advertises it, we enforce it.
      receiveMaximum: Math.min(65535, c.limits.maxInflightPerClient),
      // MQTT 5 Maximum Packet Size in CONNACK: ours counts the whole packet as MQTT 5's does. Our frame
      // guard (./accept.ts) closes a larger one first, before it is buffered; aedes' check repeats it.
      maximumPacketSize: c.limits.maxPacketBytes,
      // MQTT 5 topic aliases (inbound): resolved by aedes before authorizePublish, which sees the real topic.
      topicAliasMaximum: c.limits.maxTopicAliases,
      // MQTT 5 Session Expiry Interval: bounded by ours; aedes' timers end a session in time while the
      // agent runs, our store keeps the deadline across a restart (./session-store.ts disconnected).
      // Its timers are bounded like the persistent sessions themselves.
      sessionExpiryIntervalLimit: c.sessions.expirySeconds,
      pendingSessionsLimit: c.sessions.maxPersistent,
      queueLimit: Math.max(42, c.limits.maxInflightPerClient),
      maxTopicLevels: c.limits.maxTopicLevels,
      maxClientsIdLength: 128,
      drainTimeout: 30_000,
      heartbeatInterval: 60_000,
    });
    hardenBroker(aedes);
    disconnectOnReceiveMaximum(aedes, store as never);
    markWills(aedes);
    broker = new GatewayBroker(opts, aedes, actions, store);
    const purged = store.purgeRetained((topic) => actionOf(topic) !== null);
    if (purged > 0) opts.log.warn({ purged }, 'retained messages on action topics purged: actions are never retained');
    broker.installHooks();
    broker.sweepTimer = setInterval(() => broker!.sweepExpiredActions(), ACTION_SWEEP_MS);
    broker.sweepTimer.unref();
    broker.refusalsTimer = setInterval(() => broker!.flushRefusals(), REFUSALS_INTERVAL_MS);
    broker.refusalsTimer.unref();
    try {
      const opened = await openListeners(c, (socket) =>
        acceptConnection(
          { aedes: broker!.aedes, config: c, log: opts.log, events: broker!.events, delivery: broker!.delivery, counters: broker!.counters, protocolError: (client, err) => onClientError(broker!.clientErrors, client, err) },
          socket,
        ), {
        log: opts.log,
        refused: (source, reason, fields) => broker!.events.refuseSocket(source, reason, fields),
        servers: broker.servers,
      });
      broker.tcpPort = opened.tcp;
      broker.tlsPort = opened.tls;
    } catch (err) {
      // A listener that cannot open (a port taken): stop what started (aedes, the session journal).
      await broker.close().catch(() => undefined);
      throw err;
    }
    return broker;
  }

  /** Drops queued actions whose time to live passed (also run every ACTION_SWEEP_MS), and every minute the abandoned sessions. */
  sweepExpiredActions(): number {
    const clients = this.clients();
    const isConnected = (clientId: string) => clients[clientId] !== undefined;
    const now = this.opts.policy().now();
    if (now - this.sessionsSweptAt >= Math.min(60_000, this.opts.config.sessions.expirySeconds * 500) || now >= this.store.nextSessionExpiry) {
      this.sessionsSweptAt = now;
      const expired = this.store.expireSessions(now, this.opts.config.sessions.expirySeconds * 1000, isConnected);
      if (expired.length > 0) this.log.info({ expired: expired.length, expirySeconds: this.opts.config.sessions.expirySeconds, first: expired.slice(0, 5) }, 'abandoned persistent sessions expired');
    }
    return this.actions.sweep(isConnected);
  }

  /** When the sessions were last swept (time floor; 0: at the first sweep). */
  private sessionsSweptAt = 0;

  /** Ends the interval of coalesced connection lines: one line (and audit record) each for what was only counted. */
  flushRefusals(): void {
    this.events.flush();
  }

  /** Whether the client holds `filter` as granted by authorizeSubscribe (its persistent session stores only those). */
  private granted(client: Client, filter: string): boolean {
    return this.sessions.get(client)?.subscriptions.has(filter) ?? false;
  }

  get ports(): { tcp: number | undefined; tls: number | undefined } {
    return { tcp: this.tcpPort, tls: this.tlsPort };
  }

  stats(): Record<string, number> {
    return {
      ...this.counters,
      refusedConnections: this.events.refused().total,
      connected: Object.keys(this.clients()).length,
      ...prefixKeys('actions', this.actions.counters),
      ...prefixKeys('sessions', this.store.stats()),
      ...prefixKeys('credentialCache', this.credentials.stats()),
    };
  }

  /** Refused connections since start by reason code (docs/reasons.md). */
  refusedByReason(): Record<string, number> {
    return this.events.refused().byReason;
  }

  /** Connected clients by principal kind (user, apiKey, application, device, gateway, anonymous); counted when asked. */
  clientsByKind(): Record<string, number> {
    const counts: Record<string, number> = { anonymous: 0 };
    for (const name of PRINCIPAL_KIND_NAMES) counts[name] = 0;
    for (const client of Object.values(this.clients())) {
      const s = this.sessions.get(client);
      if (!s) continue;
      const kind = s.kind === -1 ? 'anonymous' : PRINCIPAL_KIND_NAMES[s.kind];
      if (kind !== undefined) counts[kind]!++;
    }
    return counts;
  }

  /** aedes' map of connected clients by client id (not in its type declarations). */
  private clients(): Record<string, Client> {
    return connectedClients(this.aedes);
  }

  // --- hooks ---------------------------------------------------------------------------------------

  private installHooks(): void {
    const a = this.aedes;
    a.preConnect = (client, packet, cb) => {
      // [MQTT-3.1.3-8]: a zero-byte client id with CleanSession=0 gets CONNACK 0x02. aedes would
      // invent an id and accept; remember it here, refuse it in authenticate.
      if (!packet.clientId) (client as ClientMarks)[EMPTY_ID] = true;
      (client as ClientMarks)[LEVEL] = sentLevel(packet as { protocolVersion?: number; bridgeMode?: boolean });
      // listeners.mqtt5 false: MQTT 5 is refused as by an MQTT 3.1.1 broker (aedes' init answers a level it
      // does not serve with CONNACK 0x01 in 3.1.1's format). authenticate cannot: aedes maps its return
      // codes outside 2-5 to 5.
      if (!this.opts.config.listeners.mqtt5) refuseMqtt5(packet); // ./upstream/mqtt5-refusal-gate.ts
      (client as ClientMarks)[KEEPALIVE] = packet.keepalive;
      (client as ClientMarks)[SENT] = { clientId: packet.clientId ?? '', username: packet.username ?? null };
      cb(null, true);
    };
    a.authenticate = (client, username, password, cb) => {
      this.authenticate(client, username, password).then(
        (err) => cb(err, err === null),
        (err: Error) => {
          this.log.error({ err: err.message }, 'authentication failed unexpectedly');
          cb(Object.assign(new Error('server unavailable'), { returnCode: 3 as AuthErrorCode }), false);
        },
      );
    };
    const ctx = this.ctx;
    a.authorizePublish = (client, packet, cb) => authorizePublish(ctx, client, packet, cb);
    a.authorizeSubscribe = (client, sub, cb) => cb(null, authorizeSubscribe(ctx, client, sub));
    a.authorizeForward = (client, packet) => (authorizeForward(ctx, client, packet) ? packet : null);

    // DUP on resent PUBLISHes [MQTT-3.3.1-1] and PUBREL replacing its PUBLISH [MQTT-4.3.3-1] are the
    // session store's (./session-store.ts).

    // A denied publish is acknowledged (QoS 1/2) but never routed: swallow it here. An allowed
    // action is handed over with its authority (./actions.ts).
    const publish = a.publish.bind(a);
    const counter = brokerCounter(a); // ./upstream/broker-fields.ts
    // aedes calls publish(packet, client, done); the agent's own publishes (packet, done): named
    // parameters, no rest array per message.
    a.publish = ((packet: PublishPacket & Marked, clientOrDone?: unknown, maybeDone?: unknown) => {
      const doneFirst = typeof clientOrDone === 'function';
      const done = (doneFirst ? clientOrDone : typeof maybeDone === 'function' ? maybeDone : undefined) as ((err?: Error) => void) | undefined;
      if (packet[DROP] === true) {
        if (done) setImmediate(done);
        return;
      }
      // MQTT 5 Message Expiry Interval: its deadline on the time floor (an action's was set with its
      // authority, the shorter of it and the time to live), before aedes sets one on the wall clock.
      const props = packet.properties;
      if (props !== undefined && (packet as { messageExpiry?: number }).messageExpiry === undefined) {
        const mei = props.messageExpiryInterval;
        if (typeof mei === 'number' && mei > 0) (packet as { messageExpiry?: number }).messageExpiry = this.opts.policy().now() + mei * 1000;
      }
      const handed = this.actions.handOver(packet, counter, done);
      const p = publish as (...args: unknown[]) => unknown;
      if (doneFirst) return p(packet, handed);
      return handed === undefined ? p(packet, clientOrDone) : p(packet, clientOrDone, handed);
    }) as typeof a.publish;

    // The subscription limit counts the filters a client holds: an UNSUBSCRIBE gives places back.
    a.on('unsubscribe', (filters, client) => {
      const s = this.sessions.get(client);
      if (s) for (const f of filters) s.subscriptions.delete(f);
      for (const f of filters) if (f.startsWith(SHARE_MARKER)) this.shared.leave(client, f);
    });
    a.on('client', (client) => this.events.connected(client, this.sessions.get(client)));
    a.on('clientDisconnect', (client) => this.onGone(client));
    // An MQTT 5 session's expiry timer fired (aedes has wiped its subscriptions and queue): the session
    // ends, its owner with it, as when our sweep ends it.
    a.on('sessionExpired' as 'clientDisconnect', (client: Client) => {
      if (this.clients()[client.id] === undefined && this.store.ownerOf(client.id) !== undefined) {
        this.store.discardSession(client.id);
        this.store.limitCounters.expiredSessions++;
        this.log.info({ clientId: client.id, sessionExpiryInterval: (client as { sessionExpiryInterval?: number }).sessionExpiryInterval }, 'MQTT 5 session expired');
      }
    });
    cleanIncomingOnCleanSessions(a, this.store);
    a.on('clientReady', (client) => this.delivery.ready(client));
    a.on('clientError', (client, err) => onClientError(this.clientErrors, client, err));
    a.on('connectionError', (client, err) => onClientError(this.clientErrors, client, err));
  }

  private async authenticate(client: Client, username: string | undefined, password: Buffer | undefined): Promise<AuthenticateError | null> {
    const r = await authenticate(this.auth, client, username, password);
    if ('error' in r) return r.error;
    // [MQTT-3.1.4-2] The same client id connected: aedes closes that connection once this one is registered.
    const previous = this.clients()[client.id];
    if (previous !== undefined && previous !== client) this.events.ending(previous, 'takeover', { by: (client.conn as Socket | undefined)?.remoteAddress });
    this.sessions.set(client, r.session);
    this.openWindow(client);
    return null;
  }


  /** The client's outgoing in-flight window (limits.maxInflightOutbound): a persistent session's messages wait in its queue. */
  private openWindow(client: Client): void {
    const c = this.opts.config;
    const id = client.id;
    const store = this.store;
    const queue: WindowQueue | null = client.clean
      ? null
      : {
          state: (p) => store.queueState(id, p),
          unsent: () => store.unsent(id) as Iterable<WindowPacket>,
          markSent: (p, messageId) => store.markSent(id, p, messageId),
          sentIds: () => store.sentIds(id),
        };
    // [MQTT-3.3.4-9] no more in flight to an MQTT 5 client than its Receive Maximum (./flow-control.ts).
    this.delivery.openWindow(client, outboundWindow(client, c.limits.maxInflightOutbound), { messages: c.sessions.maxQueuedMessages, bytes: c.sessions.maxQueuedBytes }, queue);
  }

  /** Set by the agent once its cloud link exists: client publishes on these topics go to the outbox, QoS 1 before its PUBACK. */
  setForwarding(f: Forwarding | null): void {
    this.forwarding = f;
    for (const client of Object.values(this.clients())) {
      const s = this.sessions.get(client);
      if (s) s.cacheEpoch = -1;
    }
    this.cloud.invalidate();
  }

  private forwarding: Forwarding | null = null;

  /** `bulk/{operation}`: delivered to `things/{t}/bulk/{operation}` for each named (or, if none, each in-scope) thing the publisher may update. */
  private fanOutBulk(client: Client, session: Session, operation: string, packet: PublishPacket & Marked, view: PolicyView): void {
    fanOutBulk(
      {
        audit: (r) => this.opts.audit.record(r),
        fanOutTopic: (thing, op) => this.topicMap.fanOutTopic(thing, op),
        authorize: (share, principal, clientId, source, requestId) => this.actions.authorize(share, principal, clientId, BULK_ACTION, source, requestId),
        publish: (share) => this.aedes.publish(share, () => undefined),
        log: this.log,
      },
      client,
      session,
      operation,
      packet,
      view,
    );
  }

  /** The topic's delivery route (one look-up serves every subscriber; the map is configuration). */
  private deliveryRoute(topic: string): DeliveryRoute {
    if (!this.topicMap.enabled) return RULES_ROUTE;
    let r = this.deliveryRoutes.get(topic);
    if (r === undefined) {
      r = this.topicMap.routeDelivery(topic);
      this.deliveryRoutes.set(topic, r);
    }
    return r;
  }

  // --- snapshot changes ----------------------------------------------------------------------------

  /** After a new snapshot: sessions whose credentials it no longer contains (or revokes) are dropped. */
  dropStaleSessions(index: PolicyIndex): number {
    let dropped = 0;
    for (const client of Object.values(this.clients())) {
      const s = this.sessions.get(client);
      if (!s || s.principal === null) continue;
      const n = index.ids.get(s.principal);
      const unserved = s.kind === PrincipalKind.Device && (n === undefined || index.thingServed[n] !== 1);
      if (unserved || !credentialStillValid(index, s.principal, s.credential)) {
        dropped++;
        this.log.info({ principal: s.principal, clientId: client.id, version: index.version }, 'session dropped: credentials gone or revoked in the new snapshot');
        this.opts.audit.record({ principal: s.principal, clientId: client.id, action: 'connect', decision: 'deny', reason: 'REVOKED', snapshotVersion: index.version });
        this.events.ending(client, 'revoked', { snapshotVersion: index.version });
        // MQTT 5 clients are told why (DISCONNECT 0x87 Not authorized); 3.1.1 ones are closed.
        disconnectAndClose(client, DISCONNECT_NOT_AUTHORIZED, 'credentials revoked');
      }
    }
    // A persistent session whose owner left the snapshot ends, with the messages queued for it.
    for (const [clientId, owner] of [...this.store.sessionOwners()]) {
      if (owner !== null && !index.ids.has(owner)) this.store.discardSession(clientId);
    }
    this.credentials.clear();
    this.commandLimiter.clear();
    this.firmwareLimiter.clear();
    return dropped;
  }

  // --- limits, bounded logging ----------------------------------------------------------------------

  /**
   * A bound of the session queues kept a message out (the oldest of a full session, or a new one
   * when all queues together are full): counted (in the store), logged once per session until it
   * reconnects, and, for an action, audited QUEUE_FULL.
   */
  onQueueLimit(e: QueueLimitEvent): void {
    if (!this.queueLimitLogged.has(e.clientId)) {
      if (this.queueLimitLogged.size >= 10_000) this.queueLimitLogged.clear();
      this.queueLimitLogged.add(e.clientId);
      const c = this.opts.config.sessions;
      this.log.warn(
        { clientId: e.clientId, bound: e.bound, maxQueuedMessages: c.maxQueuedMessages, maxQueuedBytes: c.maxQueuedBytes, maxTotalQueuedBytes: c.maxTotalQueuedBytes },
        e.bound === 'session' ? 'session queue full: its oldest messages are dropped' : 'session queues full: new messages are not queued',
      );
    }
    if (e.authority) this.actions.droppedFromQueue(e.clientId, e.packet.topic ?? '', e.authority, this.opts.policy());
  }

  private readonly queueLimitLogged = new Set<string>();

  private onGone(client: Client): void {
    if (!client.clean && client.id) {
      const v5 = versionOf(client) === 5 ? (client as { sessionExpiryInterval?: number }).sessionExpiryInterval ?? null : null;
      this.store.disconnected(client.id, this.opts.policy().now(), v5);
    }
    this.queueLimitLogged.delete(client.id);
    const s = this.sessions.get(client);
    this.events.disconnected(client, s);
    if (s) this.denials.close(s.denials);
    if (s && s.denySuppressed > 0) this.log.info({ principal: s.principal, clientId: client.id, suppressed: s.denySuppressed }, 'denials not logged individually');
  }

  // --- configuration reload (SIGHUP) ----------------------------------------------------------------

  /**
   * Takes new topic rules, rate limits and action times to live (the caller has put them into the configuration object
   * the broker reads). Every cached decision is dropped, since topic rules decide publishes,
   * subscriptions and deliveries; rate-limit buckets start afresh.
   */
  reconfigure(): void {
    const c = this.opts.config;
    this.rules = compileTopicRules(c.topics.rules);
    this.commandLimiter = new RateLimiter(c.rateLimits.commandsPerMinute, 60_000);
    this.firmwareLimiter = new RateLimiter(c.rateLimits.firmwareUpdatesPerHour, 3_600_000);
    this.actions.setTtls(actionTtls(c));
    for (const client of Object.values(this.clients())) {
      const s = this.sessions.get(client);
      if (s) s.cacheEpoch = -1;
    }
    this.cloud.clear();
  }

  // --- requests from the cloud ------------------------------------------------------------------------

  /**
   * A request the cloud issues on behalf of `principal` (SPEC section 5): decided exactly like the same
   * PUBLISH from a local client of that principal (./cloud-requests.ts).
   */
  cloudPublish(principal: string, topic: string, payload: Buffer, qos: 0 | 1, requestId: string | null = null): Promise<Decision> {
    return this.cloud.publish(principal, topic, payload, qos, requestId);
  }

  private readonly cloud: CloudRequests = new CloudRequests({
    policy: () => this.opts.policy(),
    audit: (r) => this.opts.audit.record(r),
    register: (client, session) => this.sessions.set(client, session),
    authorize: (client, packet, cb) => authorizePublish(this.ctx, client, packet, cb),
    publish: (packet, cb) => this.aedes.publish(packet, cb),
  });

  /** Stops accepting connections, closes every client connection, and resolves when the listeners are closed. */
  async close(): Promise<void> {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    if (this.refusalsTimer) clearInterval(this.refusalsTimer);
    for (const client of Object.values(this.clients())) this.events.ending(client, 'shutdown');
    this.flushRefusals();
    this.denials.stop();
    // A listener's close() waits for its open connections: stop listening first, then close the
    // clients (aedes.close), then wait for both.
    const listeners = Promise.all(this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    await new Promise<void>((resolve) => this.aedes.close(() => resolve()));
    await listeners;
    await this.store.close();
  }

  /** The connected client with this id, as `explain --client-id` shows it (./client-info.ts); null when none. */
  describeClient(clientId: string): ClientInfo | null { return clientInfo(this.clients()[clientId], this.sessions.get(this.clients()[clientId]!)); }
}

function prefixKeys(prefix: string, o: object): Record<string, number> {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [prefix + k[0]!.toUpperCase() + k.slice(1), v as number]));
}


