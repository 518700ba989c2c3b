// Connection events: what the operator reads about clients coming, going and being refused.
//
//   connected     one info line per connect: client id, principal and kind, address and port,
//                 listener, protocol level, clean session, keepalive, the certificate's fingerprint
//   disconnected  one info line per disconnect, with why: client (DISCONNECT), connection lost,
//                 keepalive, takeover, revoked (by snapshot N), limit, protocol error, shutdown
//   refused       one warning line per refusal, naming its reason code (docs/reasons.md), the CONNACK
//                 code when one was sent, the address and port, the client id and username sent (cut
//                 short; never a password); audited; counted by reason for `status` and the metrics
//
// Everything here is the sender's to repeat: one misconfigured device reconnecting in a loop must not
// flood the journal. Per interval (the broker's, 10 s) the first refusal of each address and reason
// is logged and audited, the others counted, and one line with the count ends the interval; likewise
// the first CONNECT_LINES of each client id's connects (and their disconnects).
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Client } from 'aedes';
import type { Logger } from 'pino';
import type { AuditRecord } from '../audit/audit-log.js';
import type { AgentConfig } from '../config/load.js';
import { PRINCIPAL_KIND_NAMES } from '../decide/policy-index.js';
import { clientCertificateFingerprint, isTlsSocket } from './client-cert.js';
import { MAX_SOURCES, RefusalCoalescer, truncateField } from './refusals.js';
import { KEEPALIVE, LEVEL, REMOTE, SENT, remoteOf, type ClientMarks, type Session } from './session.js';
import { sentDisconnect } from './upstream/client-fields.js';

/** Connect lines (with their disconnects) logged per client id and interval; the rest are counted. */
export const CONNECT_LINES = 3;

/** Why a client's connection ended, as logged. */
export type DisconnectWhy = 'client' | 'connection lost' | 'keepalive' | 'takeover' | 'revoked' | 'limit' | 'protocol error' | 'shutdown';

const PORT = Symbol('edgewarden.remotePort');
const LISTENER = Symbol('edgewarden.listener');
const SINCE = Symbol('edgewarden.connectedAt');
const WHY = Symbol('edgewarden.disconnectWhy');
const LOGGED = Symbol('edgewarden.connectLogged');
type Marks = ClientMarks & {
  [PORT]?: number;
  [LISTENER]?: 'tcp' | 'tls';
  [SINCE]?: number;
  [WHY]?: { why: DisconnectWhy; fields?: Record<string, unknown> };
  [LOGGED]?: boolean;
};

export interface ConnectionDeps {
  readonly config: AgentConfig;
  readonly log: Logger;
  audit(r: AuditRecord): void;
  /** The version of the snapshot in force, or null. */
  snapshotVersion(): number | null;
}

/** Where a refused connection came from, when there is no MQTT client (yet). */
export interface Source {
  readonly remote: string;
  readonly port?: number | undefined;
  readonly listener: 'tcp' | 'tls';
}

export class ConnectionEvents {
  /** Refusals by reason code since start (every one, logged or only counted). */
  private readonly refusedBy = new Map<string, number>();
  private refusedTotal = 0;
  /** Refusals per address and reason: the first of the interval is logged and audited. */
  private readonly refusals = new RefusalCoalescer();
  /** Connects per client id: the first CONNECT_LINES of the interval are logged. */
  private readonly connects = new RefusalCoalescer(MAX_SOURCES, CONNECT_LINES);

  constructor(private readonly d: ConnectionDeps) {}

  /** Marks a new connection with what the log lines need once its socket may be gone. */
  accepted(client: Client, socket: Socket): void {
    const m = client as Marks;
    m[REMOTE] = socket.remoteAddress;
    m[PORT] = socket.remotePort;
    m[LISTENER] = isTlsSocket(socket) ? 'tls' : 'tcp';
  }

  /** Refusals so far by reason code (non-zero only), and their total. */
  refused(): { total: number; byReason: Record<string, number> } {
    return { total: this.refusedTotal, byReason: Object.fromEntries(this.refusedBy) };
  }

  /**
   * A refused CONNECT: counted, and — the first of its address and reason in the interval — audited
   * and logged at warning level. `connack` is the return code sent (absent when none was).
   */
  refuse(client: Client, reason: string, principal: string | null, connack?: number, fields?: Record<string, unknown>): void {
    const m = client as Marks;
    this.count(reason);
    const remote = remoteOf(client);
    if (!this.refusals.first(remote, reason)) return;
    // Before aedes accepts the protocol level it has not set client.id: the CONNECT's own fields.
    const sent = m[SENT];
    const clientId = truncateField(client.id ?? sent?.clientId);
    const username = truncateField(principal ?? sent?.username);
    this.d.audit({ principal: username, clientId, action: 'connect', decision: 'deny', reason, snapshotVersion: this.d.snapshotVersion(), remote });
    this.d.log.warn(
      {
        reason,
        ...(connack === undefined ? {} : { connack: `0x0${connack}` }),
        remote,
        port: m[PORT],
        listener: m[LISTENER],
        clientId,
        username,
        protocolLevel: m[LEVEL],
        keepalive: m[KEEPALIVE],
        ...fields,
      },
      `connection refused: ${reason}`,
    );
  }

  /** A connection refused before any MQTT was read (the listener's limit, TLS): counted, audited and logged as refuse(). */
  refuseSocket(source: Source, reason: string, fields?: Record<string, unknown>): void {
    this.count(reason);
    const remote = source.remote;
    if (!this.refusals.first(remote, reason)) return;
    this.d.audit({ principal: null, clientId: null, action: 'connect', decision: 'deny', reason, snapshotVersion: this.d.snapshotVersion(), remote });
    this.d.log.warn({ reason, remote, port: source.port, listener: source.listener, ...fields }, `connection refused: ${reason}`);
  }

  /** A client is connected (aedes registered it): one info line, unless its client id connects in a loop. */
  connected(client: Client, session: Session | undefined): void {
    const m = client as Marks;
    m[SINCE] = Date.now();
    if (!this.connects.first(truncateField(client.id) ?? '', 'connect')) return;
    m[LOGGED] = true;
    const conn = client.conn as Socket;
    const cert = m[LISTENER] === 'tls' ? clientCertificateFingerprint(this.d.config.listeners.tls, conn as TLSSocket) : undefined;
    this.d.log.info(
      {
        clientId: client.id,
        principal: session?.principal ?? null,
        kind: kindName(session),
        remote: m[REMOTE],
        port: m[PORT],
        listener: m[LISTENER],
        protocolLevel: m[LEVEL],
        clean: client.clean,
        keepalive: m[KEEPALIVE],
        ...(cert === undefined ? {} : { certFingerprint: cert }),
      },
      `client connected: ${client.id}`,
    );
  }

  /** Why the client's connection is about to end, when the broker ends it (the first reason given wins). */
  ending(client: Client, why: DisconnectWhy, fields?: Record<string, unknown>): void {
    const m = client as Marks;
    if (m[WHY] === undefined) m[WHY] = fields === undefined ? { why } : { why, fields };
  }

  /** A connected client is gone: one info line (when its connect was logged), with why. */
  disconnected(client: Client, session: Session | undefined): void {
    const m = client as Marks;
    if (m[LOGGED] !== true) return;
    const ended = m[WHY] ?? { why: sentDisconnect(client) ? ('client' as const) : ('connection lost' as const) };
    const since = m[SINCE];
    this.d.log.info(
      {
        clientId: client.id,
        principal: session?.principal ?? null,
        remote: m[REMOTE],
        port: m[PORT],
        why: ended.why,
        ...ended.fields,
        ...(since === undefined ? {} : { connectedSeconds: Math.round((Date.now() - since) / 1000) }),
      },
      `client disconnected: ${client.id} (${ended.why})`,
    );
  }

  /** Ends the interval: one line (and, for refusals, one audit record) for what was only counted. */
  flush(): void {
    const version = this.d.snapshotVersion();
    for (const r of this.refusals.flush()) {
      this.d.audit({ principal: null, clientId: null, action: 'connect', decision: 'deny', reason: r.reason, snapshotVersion: version, remote: r.remote, ...(r.count > 1 ? { count: r.count } : {}) });
      this.d.log.warn({ reason: r.reason, remote: r.remote, count: r.count }, `connection refused: ${r.reason}, ${r.count} more time(s) from ${r.remote} (repeats are counted, not logged one by one)`);
    }
    for (const c of this.connects.flush()) {
      this.d.log.info({ clientId: c.remote, count: c.count }, `client ${c.remote} connected ${c.count} more time(s) (a reconnect loop: these connects and their disconnects are counted, not logged one by one)`);
    }
  }

  private count(reason: string): void {
    this.refusedTotal++;
    this.refusedBy.set(reason, (this.refusedBy.get(reason) ?? 0) + 1);
  }
}

function kindName(s: Session | undefined): string | null {
  if (!s) return null;
  return s.kind === -1 ? 'anonymous' : (PRINCIPAL_KIND_NAMES[s.kind] ?? null);
}
