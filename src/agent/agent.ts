// The running agent: state directory, snapshot in force, audit log, local broker, snapshot intake
// (inbox, control socket), scheduled jobs. `edgewarden run` starts one.
//
// Start order matters: the stored snapshot is loaded and re-verified BEFORE any listener opens, so
// no client is ever served by an empty or unverified policy.
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Server } from 'node:net';
import type { Logger } from 'pino';
import cron, { type ScheduledTask } from 'node-cron';
import type { AgentConfig } from '../config/load.js';
import { AuditLog } from '../audit/audit-log.js';
import { buildIndex, type PolicyIndex } from '../decide/policy-index.js';
import { EwError, isEwError } from '../errors.js';
import { SnapshotStore } from '../store/snapshot-store.js';
import { TimeFloor } from '../store/time-floor.js';
import { loadTrustedKeys } from '../store/keys.js';
import { TrustStore, type TrustSummary } from '../store/trust-store.js';
import { readFileBounded, writeFileAtomic } from '../store/atomic-file.js';
import type { Outbox } from '../store/outbox.js';
import type { AuditUploader } from '../audit/audit-uploader.js';
import { lockStateDir, type StateLock } from './state-lock.js';
import type { CloudLink, LinkState } from '../bridge/cloud-link.js';
import type { VerifiedSnapshot } from '../snapshot/snapshot.js';
import { GatewayBroker, type PolicyView } from '../broker/broker.js';
import { SnapshotInbox } from './inbox.js';
import type { BuildInfo } from './metrics.js';
import { logMemoryPhase } from './log.js';
import type { Server as HttpServer } from 'node:http';
import { startControlServer, type ControlRequest, type ControlResponse } from './control.js';

const MAX_TIMER_MS = 2 ** 31 - 1;

export interface AgentStatus {
  readonly gatewayId: string;
  readonly snapshotVersion: number | null;
  readonly snapshotIssuedAt: string | null;
  readonly snapshotExpiresAt: string | null;
  readonly expired: boolean;
  readonly timeFloor: string;
  readonly listeners: { tcp: number | undefined; tls: number | undefined; metrics?: number };
  readonly broker: Record<string, number>;
  /** Refused connections since start by reason code (docs/reasons.md). */
  readonly refused: Record<string, number>;
  readonly audit: ReturnType<AuditLog['stats']>;
  /** The cloud link and its queue; null when cloud.enabled is false. */
  readonly cloud: { link: Record<string, unknown>; queue: ReturnType<Outbox['stats']> } | null;
  readonly startedAt: string;
  /** The configuration's warnings (plain MQTT on the network, the demo key, ...), as logged at start. */
  readonly warnings: readonly string[];
  /** Snapshot keys: configured, learned by endorsement, retired (docs/snapshots.md, "Rotating the signing key"). */
  readonly keys: TrustSummary;
}

/** How many served things get a retained things/{t}/cloud-status when the link goes up or down. */
const MAX_CLOUD_STATUS_THINGS = 100_000;

export class Agent {
  private index: PolicyIndex | null = null;
  private epoch = 0;
  private broker: GatewayBroker | undefined;
  private inbox: SnapshotInbox | undefined;
  private control: Server | undefined;
  private jobs: ScheduledTask[] = [];
  private expiryTimer: NodeJS.Timeout | undefined;
  private readonly startedAt = new Date();
  private stopping: Promise<void> | undefined;
  private link: CloudLink | undefined;
  /** Loaded by startCloudLink, when cloud.enabled. */
  private cloudLinkClass: typeof CloudLink | undefined;
  private metrics: { server: HttpServer; port: number } | undefined;
  private auditUploader: AuditUploader | undefined;
  private configWarnings: readonly string[] = [];
  private expiryReported: 'valid' | 'soon' | 'expired' = 'valid';
  private readonly childLogs: Logger[] = [];
  private readonly bridgeLog: Logger;

  private constructor(
    readonly config: AgentConfig,
    private readonly log: Logger,
    private readonly timeFloor: TimeFloor,
    private readonly store: SnapshotStore,
    private readonly trust: TrustStore,
    readonly audit: AuditLog,
    private readonly outbox: Outbox | undefined,
    private readonly lock: StateLock,
    private readonly build: BuildInfo,
  ) {
    this.bridgeLog = this.childLog('bridge');
  }

  /** `build`: what `edgewarden_build_info` says (the version of the package or the executable, Node's). */
  static async start(config: AgentConfig, log: Logger, build: BuildInfo): Promise<Agent> {
    const stateDir = config.stateDir;
    // The keys first: nothing is created before the configuration is known to be usable.
    const trustedKeys = loadTrustedKeys(config.trust.keys);
    if (trustedKeys.size === 0) throw new EwError('EW_KEY_READ', 'no trusted snapshot key: set trust.keys', { where: 'trust.keys' });
    try {
      await mkdir(stateDir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw new EwError('EW_STORE_IO', `cannot create the state directory: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { where: stateDir, cause: err });
    }
    const lock = await lockStateDir(stateDir).catch((err: unknown) => {
      throw isEwError(err) ? err : new EwError('EW_STORE_IO', `cannot take the state directory lock: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { where: stateDir, cause: err });
    });
    try {
      return await Agent.startLocked(config, log, trustedKeys, lock, build);
    } catch (err) {
      await lock.release();
      throw err;
    }
  }

  private static async startLocked(config: AgentConfig, log: Logger, trustedKeys: ReturnType<typeof loadTrustedKeys>, lock: StateLock, build: BuildInfo): Promise<Agent> {
    const stateDir = config.stateDir;
    const storeLog = log.child({ module: 'store' });
    const timeFloor = await TimeFloor.load(stateDir, Date.now, { onProblem: (msg) => storeLog.info(msg) });
    const trust = await TrustStore.load(stateDir, trustedKeys, (level, msg) => storeLog[level](msg), timeFloor.now());
    const store = await SnapshotStore.open({
      stateDir,
      trust,
      gatewayId: config.gateway.id,
      timeFloor,
      maxBytes: config.snapshot.maxBytes,
      log: (e) => storeLog[e.level]({ code: e.code, file: e.file }, e.msg),
    });
    let initial = store.takeLoaded();
    if (!store.held() && config.snapshot.bootstrap) {
      const file = config.snapshot.bootstrap;
      try {
        const bytes = await readFileBounded(file, config.snapshot.maxBytes, { tooLargeCode: 'EW_SNAPSHOT_TOO_LARGE' });
        if (!bytes) throw new EwError('EW_STORE_IO', 'bootstrap snapshot file does not exist', { where: file });
        initial = await store.install(bytes, file);
        storeLog.info({ file, version: store.heldVersion() }, 'bootstrap snapshot installed');
      } catch (err) {
        storeLog.error({ file, code: isEwError(err) ? err.code : undefined, err: (err as Error).message }, 'bootstrap snapshot refused');
      }
    }
    const audit = await AuditLog.open({
      dir: join(stateDir, 'audit'),
      maxBytes: config.audit.maxBytes,
      flushIntervalMs: config.audit.flushIntervalMs,
      onError: (err) => log.error({ err: err.message }, 'audit write failed'),
      onLoss: (loss) => log.warn({ lost: loss.count, fromSeq: loss.fromSeq, toSeq: loss.toSeq, from: loss.from, to: loss.to }, 'audit records rotated away before they were uploaded (disk bound audit.maxBytes): recorded as a "lost" audit line'),
    });
    // The cloud link (MQTT.js), its queue and the metrics (prom-client) are loaded only when configured:
    // an agent without them does not carry their code (bench/README.md, "Where the memory goes").
    const outbox = config.cloud.enabled
      ? await (await import('../store/outbox.js')).Outbox.open({
          dir: join(stateDir, 'outbox'),
          maxBytes: config.cloud.queue.maxBytes,
          syncIntervalMs: config.cloud.queue.syncIntervalMs,
          onProblem: (msg) => log.warn({ module: 'outbox' }, msg),
        })
      : undefined;
    const agent = new Agent(config, log, timeFloor, store, trust, audit, outbox, lock, build);
    agent.adopt(initial);
    initial = undefined; // the index holds what it needs; the payload goes
    if (!agent.index) log.warn({ stateDir }, 'no valid snapshot: every request is denied (NO_SNAPSHOT) until one is installed');
    logMemoryPhase(log, 'snapshot');
    try {
      await agent.startServices();
    } catch (err) {
      // Whatever started (listeners, sockets, jobs) is stopped: a failed start leaves nothing running.
      await agent.stop().catch(() => undefined);
      throw err;
    }
    log.info({ tcp: agent.ports.tcp, tls: agent.ports.tls, snapshotVersion: agent.index?.version ?? null }, 'ready');
    return agent;
  }

  private async startServices(): Promise<void> {
    const c = this.config;
    this.broker = await GatewayBroker.start({ config: c, policy: () => this.view(), audit: this.audit, log: this.childLog('broker') });
    this.log.info({ tcp: this.broker.ports.tcp, tls: this.broker.ports.tls, gateway: c.gateway.id, snapshotVersion: this.index?.version ?? null }, 'listening');
    logMemoryPhase(this.log, 'broker');
    if (c.snapshot.inbox) {
      this.inbox = new SnapshotInbox(join(c.stateDir, 'inbox'), (bytes, source) => this.installSnapshot(bytes, source), c.snapshot.maxBytes, (file, r) => {
        if (r.ok) this.log.info({ file }, 'inbox snapshot accepted');
        else this.log.warn({ file, code: r.code, reason: r.message }, 'inbox snapshot refused');
      });
      await this.inbox.start();
    }
    // A request carries at most one snapshot of snapshot.maxBytes, in base64, and a little JSON.
    this.control = await startControlServer(c.stateDir, (req) => this.handleControl(req), {
      maxRequestBytes: Math.ceil(c.snapshot.maxBytes / 3) * 4 + 64 * 1024,
      maxSnapshotBytes: c.snapshot.maxBytes,
    });
    if (this.outbox) await this.startCloudLink(this.outbox);
    this.scheduleJobs();
    if (c.metrics.enabled) await this.startMetrics();
    logMemoryPhase(this.log, 'services');
  }

  private async startMetrics(): Promise<void> {
    const c = this.config.metrics;
    const { createRegistry, startMetricsServer } = await import('./metrics.js');
    const registry = createRegistry({
      decisions: () => this.audit.decisionCounts(),
      broker: () => this.broker?.stats() ?? {},
      clientsByKind: () => this.broker?.clientsByKind() ?? {},
      refusals: () => this.broker?.refusedByReason() ?? {},
      snapshot: () => ({ version: this.index?.version ?? null, expiresAt: this.index?.expiresAt ?? null, now: this.timeFloor.now() }),
      queue: () => this.outbox?.stats() ?? null,
      link: () => (this.link ? (this.link.stats() as { state: string; sent: number }) : null),
      audit: () => this.audit.stats(),
    }, this.build);
    this.metrics = await startMetricsServer(registry, c.host, c.port);
    this.log.info({ host: c.host, port: this.metrics.port, path: '/metrics' }, 'metrics endpoint listening');
  }

  /** The module's logger; its level follows configuration reloads. */
  private childLog(module: string): Logger {
    const child = this.log.child({ module });
    this.childLogs.push(child);
    return child;
  }

  private scheduleJobs(): void {
    const c = this.config.schedule;
    this.job('time-floor', c.timeFloorPersist, () => this.timeFloor.persist());
    this.job('expiry-check', c.expiryCheck, async () => this.checkExpiry());
    const outbox = this.outbox;
    if (this.link && outbox) {
      this.job('snapshot-refresh', c.snapshotRefresh, async () => this.link?.requestSnapshot('schedule'));
      this.job('audit-upload', c.auditUpload, async () => this.auditUploader?.urge());
      this.job('queue-compact', c.queueCompact, () => outbox.compact());
    }
  }

  /** A node-cron job that never runs twice at once and never throws. */
  private job(name: string, expression: string, run: () => Promise<unknown>): void {
    const task = cron.schedule(
      expression,
      () => run().catch((err: Error) => this.log.error({ job: name, err: err.message }, 'scheduled job failed')),
      { noOverlap: true, name } as Parameters<typeof cron.schedule>[2],
    );
    this.jobs.push(task);
  }

  // --- the cloud (SPEC section 5) --------------------------------------------------------------------

  private newCloudLink(outbox: Outbox): CloudLink {
    const c = this.config;
    const CloudLink = this.cloudLinkClass;
    if (!CloudLink) throw new Error('the cloud link module is not loaded');
    const broker = this.broker!;
    const log = this.bridgeLog;
    return new CloudLink({
      config: c.cloud,
      gatewayId: c.gateway.id,
      maxSnapshotBytes: c.snapshot.maxBytes,
      outbox,
      log,
      host: {
        installSnapshot: (bytes, source) => this.installSnapshot(bytes, source),
        request: (principal, topic, payload, qos, requestId) => broker.cloudPublish(principal, topic, payload, qos, requestId),
        snapshotStatus: () => {
          const i = this.index;
          return { version: i?.version ?? null, expiresAt: i ? new Date(i.expiresAt).toISOString() : null, expired: i ? this.timeFloor.now() >= i.expiresAt : false };
        },
        onStateChange: (state) => {
          // Persist the ack point now: what the cloud acknowledged is never sent again after a crash.
          if (state === 'offline') outbox.compact().catch((err: Error) => log.error({ err: err.message }, 'queue ack point not persisted'));
          this.publishCloudStatus(state);
          // What the audit log holds while offline goes up as soon as the link is back.
          if (state === 'online') this.auditUploader?.urge();
        },
      },
    });
  }

  private async startCloudLink(outbox: Outbox): Promise<void> {
    this.cloudLinkClass = (await import('../bridge/cloud-link.js')).CloudLink;
    const { AuditUploader } = await import('../audit/audit-uploader.js');
    const log = this.bridgeLog;
    const broker = this.broker!;
    this.link = this.newCloudLink(outbox);
    broker.actions.onLateRefusal = (r) => {
      this.link?.reportLateRefusal(r).catch((err: Error) => log.error({ err: err.message, id: r.requestId }, 'late refusal of a cloud request not queued'));
    };
    // Allowed device telemetry and events go up through the queue, and are acknowledged to the device
    // only once they are on disk. A client's QoS 0/1 publish is queued by the broker's authorizePublish,
    // before aedes writes the PUBACK; a QoS 2 one (and what has no publishing client: a cloud request,
    // the agent's own) by this subscription, whose handler aedes waits for before it sends PUBREC.
    broker.setForwarding({
      filters: this.config.cloud.forward,
      enqueue: (topic, payload, qos, retain) => this.link?.enqueue(`up/${topic}`, payload, { qos, retain }) ?? Promise.resolve(),
    });
    for (const filter of this.config.cloud.forward) {
      await new Promise<void>((resolve) =>
        broker.aedes.subscribe(
          filter,
          (packet, done) => {
            if (packet.topic.startsWith('$')) return done();
            if (packet.qos < 2 && (packet as { clientId?: string }).clientId !== undefined) return done(); // queued by the broker already
            const link = this.link;
            if (!link) return done();
            link.enqueue(`up/${packet.topic}`, packet.payload as Buffer, { qos: packet.qos > 0 ? 1 : 0, retain: packet.retain }).then(
              () => done(),
              (err: Error) => {
                log.error({ topic: packet.topic, err: err.message }, 'upward message not queued');
                done();
              },
            );
          },
          resolve,
        ),
      );
    }
    const link = this.link;
    const sink = { online: () => link.state === 'online', enqueue: (text: string) => link.enqueue('audit', text, { qos: 1 }), maxChunkBytes: outbox.limits.maxRecordBytes };
    this.auditUploader = await AuditUploader.start(this.audit, sink, this.config.stateDir, this.config.audit.maxBytes, this.childLog('audit'));
    link.start();
  }

  /** Retained `things/{t}/cloud-status` for the served things: whether the gateway reaches the cloud. */
  private publishCloudStatus(state: LinkState): void {
    if (state !== 'online' && state !== 'offline') return;
    this.log.info({ state }, `cloud link ${state}`);
    const index = this.index;
    const broker = this.broker;
    if (!index || !broker) return;
    const payload = Buffer.from(JSON.stringify({ gatewayId: this.config.gateway.id, cloud: state, at: new Date().toISOString() }));
    let n = 0;
    for (let i = 0; i < index.thingIds.length && n < MAX_CLOUD_STATUS_THINGS; i++) {
      const thing = index.thingIds[i]!;
      if (index.thingServed[index.ids.get(thing)!] !== 1) continue;
      n++;
      broker.aedes.publish({ cmd: 'publish', topic: `things/${thing}/cloud-status`, payload, qos: 0, retain: true, dup: false } as never, () => undefined);
    }
  }

  /** Logs when the snapshot in force expires or is about to (once per change) and refreshes the cloud status. */
  private async checkExpiry(): Promise<void> {
    const index = this.index;
    const now = this.timeFloor.now();
    const state = !index ? 'valid' : now >= index.expiresAt ? 'expired' : index.expiresAt - now < 24 * 3600_000 ? 'soon' : 'valid';
    if (state !== this.expiryReported && index) {
      const fields = { version: index.version, expiresAt: new Date(index.expiresAt).toISOString(), expiredMode: index.expiredMode };
      if (state === 'expired') this.log.warn(fields, 'snapshot in force has expired: waiting for a fresh one');
      else if (state === 'soon') this.log.warn(fields, 'snapshot in force expires within 24 hours');
      if (state !== 'valid') this.link?.requestSnapshot(state === 'expired' ? 'expired' : 'expiring');
    }
    this.expiryReported = state;
    this.link?.publishStatus();
  }

  /** The policy view the broker reads on every hook. */
  private readonly viewObject = { index: null as PolicyIndex | null, epoch: 0, now: () => this.timeFloor.now() };
  private view(): PolicyView {
    return this.viewObject;
  }

  /** Builds the index of `v` and puts it in force. Nothing keeps `v` after this: the index holds what it needs. */
  private adopt(v: VerifiedSnapshot | undefined): void {
    this.setIndex(v ? buildIndex(v.payload, { expiredMode: this.config.snapshot.expiredMode, consume: true }) : null);
  }

  private setIndex(index: PolicyIndex | null): void {
    this.index = index;
    this.epoch++;
    this.viewObject.index = this.index;
    this.viewObject.epoch = this.epoch;
    for (const w of this.index?.warnings ?? []) this.log.warn({ version: this.index?.version }, `snapshot: ${w}`);
    this.armExpiryTimer();
  }

  /** Decisions change when the snapshot in force expires: bump the epoch then, so caches are dropped. */
  private armExpiryTimer(): void {
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    const index = this.index;
    if (!index) return;
    const wait = index.expiresAt - this.timeFloor.now();
    if (wait <= 0) return;
    this.expiryTimer = setTimeout(() => {
      if (this.index !== index) return;
      if (this.timeFloor.now() >= index.expiresAt) {
        this.epoch++;
        this.viewObject.epoch = this.epoch;
        this.log.warn({ version: index.version, expiresAt: new Date(index.expiresAt).toISOString(), expiredMode: index.expiredMode }, 'snapshot expired');
      } else this.armExpiryTimer();
    }, Math.min(wait + 5, MAX_TIMER_MS));
    this.expiryTimer.unref();
  }

  /** SPEC section 4 acceptance, then the new policy takes effect at once; refusals change nothing. */
  async installSnapshot(bytes: Uint8Array, source: string): Promise<{ version: number }> {
    try {
      const v = await this.store.install(bytes, source);
      this.adopt(v);
      const dropped = this.broker?.dropStaleSessions(this.index!) ?? 0;
      this.link?.publishStatus();
      this.log.info({ source, version: v.payload.version, kid: v.kid, ...(v.endorsement ? { endorsedBy: v.endorsement.endorserKid } : {}), expiresAt: new Date(v.payload.expiresAt).toISOString(), dropped }, 'snapshot accepted');
      return { version: v.payload.version };
    } catch (err) {
      this.log.warn({ source, code: isEwError(err) ? err.code : undefined, reason: (err as Error).message }, 'snapshot refused');
      throw err;
    }
  }

  private async handleControl(req: ControlRequest): Promise<ControlResponse> {
    if (req.cmd === 'status') {
      const status = this.status();
      if (!this.link) return { ok: true, status };
      const uploadBacklogBytes = (await this.auditUploader?.backlogBytes()) ?? null;
      return { ok: true, status: { ...status, audit: { ...status.audit, uploadBacklogBytes } } };
    }
    if (req.cmd === 'client') {
      if (typeof req.clientId !== 'string') return { ok: false, code: 'EW_USAGE', message: 'client: clientId must be a string' };
      return { ok: true, client: this.broker?.describeClient(req.clientId) ?? null, snapshotVersion: this.index?.version ?? null };
    }
    if (req.cmd === 'install') {
      try {
        const bytes = req.bytes ?? (typeof req.snapshot === 'string' ? Buffer.from(req.snapshot, 'base64') : undefined);
        if (bytes === undefined) return { ok: false, code: 'EW_USAGE', message: 'install: no snapshot (length and bytes, or snapshot in base64)' };
        const r = await this.installSnapshot(bytes, req.source ?? 'control socket');
        return { ok: true, version: r.version };
      } catch (err) {
        return { ok: false, code: isEwError(err) ? err.code : 'EW_STORE_IO', message: (err as Error).message };
      }
    }
    return { ok: false, code: 'EW_USAGE', message: `unknown command ${JSON.stringify((req as { cmd?: unknown }).cmd)}` };
  }

  status(): AgentStatus {
    const i = this.index;
    return {
      gatewayId: this.config.gateway.id,
      snapshotVersion: i?.version ?? null,
      snapshotIssuedAt: i ? new Date(i.issuedAt).toISOString() : null,
      snapshotExpiresAt: i ? new Date(i.expiresAt).toISOString() : null,
      expired: i ? this.timeFloor.now() >= i.expiresAt : false,
      timeFloor: new Date(this.timeFloor.now()).toISOString(),
      listeners: { ...(this.broker?.ports ?? { tcp: undefined, tls: undefined }), ...(this.metrics ? { metrics: this.metrics.port } : {}) },
      broker: this.broker?.stats() ?? {},
      refused: this.broker?.refusedByReason() ?? {},
      audit: this.audit.stats(),
      cloud: this.link && this.outbox ? { link: this.link.stats(), queue: this.outbox.stats() } : null,
      startedAt: this.startedAt.toISOString(),
      warnings: this.configWarnings,
      keys: this.trust.summary(this.timeFloor.now()),
    };
  }

  get ports(): { tcp: number | undefined; tls: number | undefined } {
    return this.broker?.ports ?? { tcp: undefined, tls: undefined };
  }

  // --- configuration reload (SIGHUP) ------------------------------------------------------------------

  /**
   * Applies a new configuration (already validated) to the running agent: log level, trusted keys,
   * expired-snapshot mode, topic rules, rate limits, schedules and the cloud link take effect at
   * once, without dropping connections. Listeners, state directory, gateway id, limits, caches and
   * the queue's bound need a restart: those keep their running values and are named in the result.
   */
  async reload(next: AgentConfig): Promise<{ applied: string[]; needsRestart: string[] }> {
    const cur = this.config;
    const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
    const needsRestart: string[] = (['gateway', 'stateDir', 'listeners', 'limits', 'cache', 'metrics', 'sessions'] as const).filter((k) => !same(cur[k], next[k]));
    if (cur.cloud.enabled !== next.cloud.enabled) needsRestart.push('cloud.enabled');
    if (!same(cur.cloud.queue, next.cloud.queue)) needsRestart.push('cloud.queue');
    if (!same(cur.cloud.forward, next.cloud.forward)) needsRestart.push('cloud.forward');
    if (cur.snapshot.inbox !== next.snapshot.inbox) needsRestart.push('snapshot.inbox');
    const applied: string[] = [];
    // Checked first: a reload that cannot be applied whole changes nothing.
    const keys = same(cur.trust, next.trust) ? undefined : loadTrustedKeys(next.trust.keys);
    if (keys && keys.size === 0) throw new EwError('EW_KEY_READ', 'no trusted snapshot key: set trust.keys', { where: 'trust.keys' });
    if (cur.log.level !== next.log.level) {
      cur.log.level = next.log.level;
      this.log.level = next.log.level;
      for (const child of this.childLogs) child.level = next.log.level;
      applied.push('log.level');
    }
    if (keys) {
      this.trust.setConfigured(keys);
      cur.trust = next.trust;
      applied.push('trust.keys');
    }
    cur.snapshot.bootstrap = next.snapshot.bootstrap;
    cur.snapshot.maxBytes = next.snapshot.maxBytes;
    if (cur.snapshot.expiredMode !== next.snapshot.expiredMode) {
      cur.snapshot.expiredMode = next.snapshot.expiredMode;
      if (this.index) this.setIndex({ ...this.index, expiredMode: next.snapshot.expiredMode });
      applied.push('snapshot.expiredMode');
    }
    if (!same(cur.topics, next.topics) || !same(cur.rateLimits, next.rateLimits) || !same(cur.actions, next.actions)) {
      cur.topics = next.topics;
      cur.rateLimits = next.rateLimits;
      cur.actions = next.actions;
      this.broker?.reconfigure();
      applied.push('topics', 'rateLimits', 'actions');
    }
    if (!same(cur.schedule, next.schedule)) {
      cur.schedule = next.schedule;
      for (const j of this.jobs) j.stop();
      this.jobs = [];
      this.scheduleJobs();
      applied.push('schedule');
    }
    const linkConfig = (c: AgentConfig['cloud']) => ({ ...c, queue: null, forward: null });
    if (this.link && this.outbox && next.cloud.enabled && !same(linkConfig(cur.cloud), linkConfig(next.cloud))) {
      await this.link.stop();
      cur.cloud = { ...next.cloud, queue: cur.cloud.queue, forward: cur.cloud.forward };
      this.link = this.newCloudLink(this.outbox);
      this.link.start();
      applied.push('cloud');
    }
    if (!same(cur.audit, next.audit)) needsRestart.push('audit');
    this.log.info({ applied, needsRestart }, needsRestart.length > 0 ? 'configuration reloaded; some changes need a restart' : 'configuration reloaded');
    return { applied, needsRestart };
  }

  /** The configuration's warnings, repeated by `status` (the caller logs them). */
  setConfigWarnings(warnings: readonly string[]): void {
    this.configWarnings = [...warnings];
  }

  /** Stops listening, flushes the audit log and persists the time floor. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      for (const j of this.jobs) j.stop();
      if (this.expiryTimer) clearTimeout(this.expiryTimer);
      await this.inbox?.close();
      await new Promise<void>((resolve) => (this.control ? this.control.close(() => resolve()) : resolve()));
      await this.link?.stop();
      await this.auditUploader?.stop();
      await new Promise<void>((resolve) => (this.metrics ? this.metrics.server.close(() => resolve()) : resolve()));
      await this.broker?.close();
      await this.audit.close();
      await this.outbox?.close();
      await this.timeFloor.persist().catch(() => undefined);
      await this.lock.release();
    })();
    return this.stopping;
  }
}
