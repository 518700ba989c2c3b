// Requests the cloud issues on behalf of a principal (SPEC section 5): each is decided exactly like
// the same PUBLISH from a local client of that principal — topic map, decide, rate limits, audit,
// with the client id `cloud:<principal>` — then, when allowed, delivered on the local topic. One
// session per cloud principal and policy epoch, so rate limits, deny logging and caches work as for a
// local client.
import type { Client, PublishPacket } from 'aedes';
import type { AuditRecord } from '../audit/audit-log.js';
import { principalOf } from '../decide/policy-index.js';
import { ALLOW, DENY, type Decision } from '../decide/reasons.js';
import { DROP, REQUEST_ID, newSession, type Marked, type Session } from './session.js';
import type { PolicyView } from './broker.js';

/** Cloud principals with a session at once; past it, all are dropped and made again as needed. */
const MAX_CLOUD_SESSIONS = 10_000;

export interface CloudRequestHooks {
  policy(): PolicyView;
  audit(r: AuditRecord): void;
  /** Makes the session the broker's for this (pseudo) client. */
  register(client: Client, session: Session): void;
  /** The broker's publish authorization; marks the packet DROP when it is denied. */
  authorize(client: Client, packet: PublishPacket & Marked, cb: () => void): void;
  publish(packet: PublishPacket, cb: () => void): void;
}

export class CloudRequests {
  private readonly sessions = new Map<string, { client: Client; session: Session; epoch: number }>();

  constructor(private readonly hooks: CloudRequestHooks) {}

  /** Resolves with the decision; an allowed bulk update resolves once it is fanned out. */
  publish(principal: string, topic: string, payload: Buffer, qos: 0 | 1, requestId: string | null): Promise<Decision> {
    const view = this.hooks.policy();
    let entry = this.sessions.get(principal);
    if (!entry || entry.epoch !== view.epoch) {
      const p = view.index ? principalOf(view.index, principal) : undefined;
      const client = { id: `cloud:${principal}` } as unknown as Client;
      entry = { client, session: newSession(principal, p?.kind ?? -1, p?.role ?? null, 'cloud'), epoch: view.epoch };
      this.hooks.register(client, entry.session);
      if (this.sessions.size >= MAX_CLOUD_SESSIONS) this.sessions.clear();
      this.sessions.set(principal, entry);
    }
    const { client, session } = entry;
    const packet = { cmd: 'publish', topic, payload, qos, retain: false, dup: false, [REQUEST_ID]: requestId } as PublishPacket & Marked;
    if (topic.includes('+') || topic.includes('#') || topic === '' || topic.includes('\u0000')) {
      this.hooks.audit({ principal, clientId: client.id, action: 'publish', topic, thing: null, decision: 'deny', reason: 'TOPIC_DENIED', snapshotVersion: view.index?.version ?? null, source: 'cloud' });
      return Promise.resolve(DENY.TOPIC_DENIED);
    }
    session.lastDeny = null;
    return new Promise((resolve) => {
      this.hooks.authorize(client, packet, () => {
        if (packet[DROP] === true) {
          resolve(session.lastDeny === null ? ALLOW : ((DENY as Record<string, Decision>)[session.lastDeny] ?? DENY.TOPIC_DENIED));
          return;
        }
        this.hooks.publish(packet, () => resolve(ALLOW));
      });
    });
  }

  /** A new snapshot: every cached decision of the cloud sessions goes. */
  invalidate(): void {
    for (const e of this.sessions.values()) e.session.cacheEpoch = -1;
  }

  /** A configuration reload: the sessions are made again. */
  clear(): void {
    this.sessions.clear();
  }
}
