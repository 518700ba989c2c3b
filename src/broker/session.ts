// A connected client's session as the broker keeps it: who it is, what it holds, its per-epoch
// decision caches, and bounded logging of its denials and limits. Also the marks the broker sets on
// aedes' packets and clients (symbols: invisible to aedes and to the wire).
import type { Socket } from 'node:net';
import type { Client } from 'aedes';
import type { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import type { Decision } from '../decide/reasons.js';
import type { PrincipalKind } from '../decide/policy-index.js';
import type { DeliveryRoute, PublishRoute } from '../topics/index.js';
import type { WithAuthority } from './actions.js';
import { DenialBudget, type DenialWindow } from './denial-budget.js';

export interface Session {
  /** Principal id; null for an anonymous client. */
  readonly principal: string | null;
  readonly kind: PrincipalKind | -1;
  readonly role: string | null;
  /** The stored hash that matched, `cert:<fingerprint>`, or `anonymous`. */
  readonly credential: string;
  readonly who: { anonymous: boolean; principal: string | null; role: string | null };
  /** When it authenticated, ms since the epoch (`explain --client-id`). */
  readonly connectedAt: number;
  subscriptions: Set<string>;
  /** QoS granted per filter, as last subscribed (aedes' own record is adjusted by ./delivery.ts). */
  grantedQos: Map<string, number>;
  publishCache: LRUCache<string, PublishVerdict> | null;
  /** Per topic: the delivery route when this session may receive it, false when not. */
  forwardCache: LRUCache<string, DeliveryRoute | false> | null;
  /**
   * In front of each LRU, the last topic and its answer: a client publishes, and a subscriber
   * receives, runs of messages on one topic, and a string comparison is cheaper than the LRU's
   * hashing and recency bookkeeping. Same epoch as the LRUs, cleared with them.
   */
  lastPublishTopic: string | null;
  lastPublishVerdict: PublishVerdict | null;
  lastForwardTopic: string | null;
  lastForward: DeliveryRoute | false;
  cacheEpoch: number;
  denyLogAt: number;
  denySuppressed: number;
  limitsLogged: Set<string>;
  /** The reason of this session's latest denial (read back by cloudPublish). */
  lastDeny: string | null;
  /** This client's audit lines for denials in the current second (see DenialBudget). */
  denials: DenialWindow;
}

export interface PublishVerdict {
  readonly route: PublishRoute;
  readonly decision: Decision;
  /** Audit action name: a permission, or 'publish' for topic-level decisions. */
  readonly action: string;
  readonly thing: string | null;
  /** An allowed publish of this action is audited (AUDITED_ALLOWS). */
  readonly audited: boolean;
  /** The topic matches the cloud link's forward filters (cloud.forward). */
  readonly forwards: boolean;
}

export const DROP = Symbol('edgewarden.drop');
export const EMPTY_ID = Symbol('edgewarden.emptyClientId');
export const LEVEL = Symbol('edgewarden.protocolLevel');
export const REMOTE = Symbol('edgewarden.remote');
export const KEEPALIVE = Symbol('edgewarden.keepalive');
/** The client id and username the CONNECT carried (aedes sets client.id only once it accepts the level). */
export const SENT = Symbol('edgewarden.sentIdentity');
export const REQUEST_ID = Symbol('edgewarden.cloudRequestId');
export type Marked = { [DROP]?: boolean; [REQUEST_ID]?: string | null } & WithAuthority;
export type ClientMarks = { [EMPTY_ID]?: boolean; [LEVEL]?: number; [REMOTE]?: string; [KEEPALIVE]?: number; [SENT]?: { clientId: string; username: string | null } };


/** Denials of one client are logged at most once per this interval (the rest are counted). */
export const DENY_LOG_INTERVAL_MS = 10_000;

export function newSession(principal: string | null, kind: PrincipalKind | -1, role: string | null, credential: string): Session {
  return {
    principal,
    kind,
    role,
    credential,
    who: { anonymous: principal === null, principal, role },
    connectedAt: Date.now(),
    subscriptions: new Set(),
    grantedQos: new Map(),
    publishCache: null,
    forwardCache: null,
    lastPublishTopic: null,
    lastPublishVerdict: null,
    lastForwardTopic: null,
    lastForward: false as const,
    cacheEpoch: -1,
    denyLogAt: 0,
    denySuppressed: 0,
    limitsLogged: new Set(),
    lastDeny: null,
    denials: DenialBudget.window(),
  };
}

/** Caches are valid for one policy epoch: a new snapshot (or its expiry) is never served a stale answer. */
export function refreshCaches(s: Session, epoch: number): void {
  if (s.cacheEpoch !== epoch) {
    s.cacheEpoch = epoch;
    s.publishCache?.clear();
    s.forwardCache?.clear();
    s.lastPublishTopic = null;
    s.lastPublishVerdict = null;
    s.lastForwardTopic = null;
  }
}

/** A denial, logged at most once per DENY_LOG_INTERVAL_MS for the session (the others counted). */
export function logDeny(log: Logger, client: Client, s: Session, topic: string, action: string, reason: string | undefined): void {
  s.lastDeny = reason ?? null;
  const now = Date.now();
  if (now - s.denyLogAt < DENY_LOG_INTERVAL_MS) {
    s.denySuppressed++;
    return;
  }
  log.info({ principal: s.principal, clientId: client.id, action, topic, reason, suppressed: s.denySuppressed }, 'denied');
  s.denyLogAt = now;
  s.denySuppressed = 0;
}

/** A limit the client hit, logged once per session. */
export function logLimitOnce(log: Logger, client: Client, s: Session, limit: string, fields: Record<string, unknown>, msg: string): void {
  if (s.limitsLogged.has(limit)) return;
  s.limitsLogged.add(limit);
  log.warn({ principal: s.principal, clientId: client.id, limit, ...fields }, msg);
}

/** The client's remote address (and port is left out: one source, whatever port it comes from). */
export function remoteOf(client: Client | undefined): string {
  const conn = client?.conn as Socket | undefined;
  return (client as ClientMarks | undefined)?.[REMOTE] ?? conn?.remoteAddress ?? 'unknown';
}

