// Metrics in the Prometheus text format (prom-client) on a loopback HTTP port, off by default
// (`metrics.enabled`). Nothing is counted on the per-message path for them: every figure is read
// from the agent's own counters when Prometheus scrapes (`collect`), so the endpoint costs nothing
// between scrapes.
//
// Prometheus conventions: prom-client's process and Node metrics keep their standard names
// (process_cpu_seconds_total, nodejs_heap_size_used_bytes, ...) so that stock dashboards find them;
// edgewarden_build_info carries the versions; a label with no value is left out, never "".
import { listenError } from '../errors.js';
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

/** What the endpoint reads at each scrape. */
export interface MetricsSource {
  /** Audited decisions so far: key `decision\taction\treason` (every deny, and the audited allows). */
  decisions(): ReadonlyMap<string, number>;
  broker(): Record<string, number>;
  clientsByKind(): Record<string, number>;
  /** Refused connections by reason code. */
  refusals(): Record<string, number>;
  snapshot(): { version: number | null; expiresAt: number | null; now: number };
  queue(): { depth: number; bytes: number; dropped: number } | null;
  link(): { state: string; sent: number } | null;
  audit(): { recorded: number; pendingEntries: number; droppedEntries: number; lostBeforeUpload: number };
}

/** The versions edgewarden_build_info reports. */
export interface BuildInfo {
  /** edgewarden's (package.json, or built into the executable) */
  readonly version: string;
  /** Node's, as process.version */
  readonly node: string;
}

export const METRICS_PATH = '/metrics';

/** The labels with a value: an empty one is left out (prom-client takes a subset of labelNames). */
export function presentLabels<K extends string>(labels: Readonly<Record<K, string>>): Partial<Record<K, string>> {
  const out: Partial<Record<K, string>> = {};
  for (const [k, v] of Object.entries(labels) as [K, string][]) if (v !== '') out[k] = v;
  return out;
}

export function createRegistry(source: MetricsSource, build: BuildInfo): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  new Gauge({
    name: 'edgewarden_build_info',
    help: 'Always 1; the labels say which edgewarden and which Node run',
    labelNames: ['version', 'node'],
    registers: [registry],
  }).set(presentLabels({ version: build.version, node: build.node }), 1);
  /** A counter whose value is read from `get` at scrape time. */
  const counter = (name: string, help: string, get: () => number) =>
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(get());
      },
    });
  const gauge = (name: string, help: string, get: () => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(get());
      },
    });

  new Counter({
    name: 'edgewarden_decisions_total',
    help: 'Audited decisions by result, action (permission, or publish/subscribe/connect) and reason code (denies only): every deny, and every allowed command, parameter write, firmware update, registration and bulk update',
    labelNames: ['result', 'action', 'reason'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [key, n] of source.decisions()) {
        const [result = '', action = '', reason = ''] = key.split('\t');
        this.inc(presentLabels({ result, action, reason }), n);
      }
    },
  });
  new Gauge({
    name: 'edgewarden_clients_connected',
    help: 'Connected MQTT clients by principal kind',
    labelNames: ['kind'],
    registers: [registry],
    collect() {
      for (const [kind, n] of Object.entries(source.clientsByKind())) this.set(presentLabels({ kind }), n);
    },
  });
  const b = (k: string) => () => source.broker()[k] ?? 0;
  counter('edgewarden_connections_total', 'TCP/TLS connections accepted by the listeners', b('connections'));
  new Counter({
    name: 'edgewarden_connections_refused_total',
    help: 'Connections refused, by reason code (docs/reasons.md): credentials, certificate, client id, limits, protocol, TLS handshake',
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [reason, n] of Object.entries(source.refusals())) this.inc({ reason }, n);
    },
  });
  counter('edgewarden_messages_in_total', 'PUBLISH packets received from local clients', b('publishesIn'));
  counter('edgewarden_messages_denied_total', 'PUBLISH packets dropped by a decision (audited)', b('publishesDenied'));
  counter('edgewarden_messages_out_total', 'Messages delivered to local clients', b('deliveries'));
  counter('edgewarden_deliveries_filtered_total', 'Deliveries withheld from a subscriber outside its scope', b('deliveriesFiltered'));
  counter('edgewarden_inflight_window_full_total', 'Client connections whose outgoing in-flight window (limits.maxInflightOutbound) filled: they acknowledge slower than messages come', b('inflightWindowFull'));
  counter('edgewarden_deliveries_waited_total', 'QoS 1/2 messages that waited for a client\'s in-flight window', b('deliveriesWaited'));
  counter('edgewarden_deliveries_dropped_waiting_total', 'Messages dropped while waiting for a clean session\'s in-flight window (its wait full: the oldest), or that no queue would take', b('deliveriesDroppedWaiting'));
  counter('edgewarden_actions_refused_at_delivery_total', 'Actions (commands, writes, firmware, ...) refused when decided again at delivery for their sender (audited, stage delivery)', b('actionsRefusedAtDelivery'));
  counter('edgewarden_actions_expired_total', 'Actions dropped because they waited longer than their time to live or MQTT 5 message expiry, the shorter (ACTION_EXPIRED)', b('actionsExpired'));
  counter('edgewarden_messages_expired_total', 'Messages (not actions) dropped because their MQTT 5 Message Expiry Interval passed: queued, retained, or at delivery', () => b('messagesExpired')() + b('sessionsExpiredMessages')());
  counter('edgewarden_actions_retain_ignored_total', 'Action publishes whose retain flag was ignored (actions are never retained)', b('actionsRetainIgnored'));
  gauge('edgewarden_sessions_persistent', 'Persistent sessions (CleanSession=0) with subscriptions', b('sessionsSessions'));
  gauge('edgewarden_sessions_queued_messages', 'QoS 1/2 messages queued for persistent sessions, not yet acknowledged', b('sessionsQueued'));
  counter('edgewarden_oversized_packets_total', 'Connections closed for a packet over limits.maxPacketBytes', b('oversizedPackets'));
  counter('edgewarden_deliveries_too_large_total', 'Messages not sent to an MQTT 5 client because they are larger than the Maximum Packet Size of its CONNECT (dropped for that client)', b('deliveriesTooLarge'));
  gauge('edgewarden_snapshot_version', 'Version of the snapshot in force; 0 when none is held', () => source.snapshot().version ?? 0);
  gauge('edgewarden_snapshot_expiry_seconds', 'Seconds until the snapshot in force expires, against the time floor (negative: expired); 0 when none is held', () => {
    const s = source.snapshot();
    return s.expiresAt === null ? 0 : (s.expiresAt - s.now) / 1000;
  });
  gauge('edgewarden_queue_depth', 'Upward messages queued on disk and not yet acknowledged by the cloud', () => source.queue()?.depth ?? 0);
  gauge('edgewarden_queue_bytes', 'Bytes of the upward queue on disk', () => source.queue()?.bytes ?? 0);
  counter('edgewarden_queue_dropped_total', 'Queued messages dropped, oldest first, because the queue was full, or lost to damage on disk (over its life)', () => source.queue()?.dropped ?? 0);
  gauge('edgewarden_cloud_link_up', '1 when the link to the cloud broker is up, 0 when it is down or disabled', () => (source.link()?.state === 'online' ? 1 : 0));
  counter('edgewarden_cloud_messages_sent_total', 'Queued messages the cloud broker acknowledged', () => source.link()?.sent ?? 0);
  counter('edgewarden_audit_records_total', 'Audit records made', () => source.audit().recorded);
  gauge('edgewarden_audit_pending_records', 'Audit records not yet on disk', () => source.audit().pendingEntries);
  counter('edgewarden_audit_lost_records_total', 'Audit records lost before reaching the disk (buffer full)', () => source.audit().droppedEntries);
  counter('edgewarden_audit_records_rotated_before_upload_total', 'Audit records the disk bound (audit.maxBytes) rotated away before they were uploaded to the cloud; each loss is also a "lost" audit line', () => source.audit().lostBeforeUpload);
  return registry;
}

/** Serves GET /metrics; anything else is 404. Resolves with the bound port. */
export function startMetricsServer(registry: Registry, host: string, port: number): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== METRICS_PATH) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try GET /metrics\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${err.message}\n`),
    );
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 10_000;
  return new Promise((resolve, reject) => {
    const failed = (err: Error) => reject(listenError(err, 'metrics', `${host}:${port}`));
    server.once('error', failed);
    server.listen(port, host, () => {
      server.off('error', failed);
      const addr = server.address();
      resolve({ server, port: typeof addr === 'object' && addr ? addr.port : port });
    });
  });
}
