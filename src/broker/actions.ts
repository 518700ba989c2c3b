// Actions carry their authority to delivery (SPEC section 3: "an action never outlives its
// authority"). The broker's hooks call this gate at three moments:
//
//   publish   authorize(): the publish of an action was allowed; the packet gets its Authority
//             (sender, when, time to live) and loses its retain flag (actions are never retained)
//   handover  aedes is handed the packet: the authority is held under the packet's brokerCounter
//             until the publish completes (live deliveries, copies into offline queues); a message
//             that waits for a clean session's in-flight window keeps it on the packet (keepAuthority)
//   delivery  deliverable(): decided again for the sender against the snapshot in force and the
//             time floor; a refusal is audited (stage "delivery"), reported to the cloud for a cloud
//             request, and the message is not sent (aedes then clears it from the session's queue)
//
// and a timer drops queued actions whose time to live passed (stage "queue").
import type { Client, PublishPacket } from 'aedes';
import type { Logger } from 'pino';
import type { AuditLog } from '../audit/audit-log.js';
import { decideById } from '../decide/decide.js';
import { DENY, type Decision, type DenyReason } from '../decide/reasons.js';
import type { ActionRef } from '../topics/index.js';
import { InFlightAuthorities, type Authority } from './authority.js';
import type { SessionStore } from './session-store.js';
import type { PolicyView } from './broker.js';

export const AUTHORITY = Symbol('edgewarden.authority');
export type WithAuthority = { [AUTHORITY]?: Authority };

/** A refusal of a cloud request after it was accepted: reported on the cloud link's replies topic. */
export interface LateRefusal {
  readonly requestId: string | null;
  readonly principal: string;
  readonly topic: string;
  readonly reason: DenyReason;
  readonly stage: 'delivery' | 'queue';
}


export interface ActionGateOptions {
  readonly brokerId: string;
  /** Time to live in ms by catalog permission id. */
  readonly ttl: Float64Array;
  readonly policy: () => PolicyView;
  readonly audit: AuditLog;
  readonly log: Logger;
  /** The {thing} of a thing topic (the topic map's), else null. */
  readonly thingOf: (topic: string) => string | null;
}

const LOG_INTERVAL_MS = 10_000;

export class ActionGate {
  readonly inFlight: InFlightAuthorities;
  /** Set by the agent: a cloud request refused or expired after it was accepted. */
  onLateRefusal: ((r: LateRefusal) => void) | null = null;
  readonly counters = { refusedAtDelivery: 0, expired: 0, retainIgnored: 0, droppedQueueFull: 0 };
  private store: SessionStore | null = null;
  private loggedAt = 0;
  private suppressed = 0;

  constructor(private readonly opts: ActionGateOptions) {
    this.inFlight = new InFlightAuthorities(opts.brokerId);
  }

  /** New times to live (a reloaded configuration): for actions authorized from now on. */
  setTtls(ttl: Float64Array): void {
    this.opts.ttl.set(ttl.subarray(0, this.opts.ttl.length));
  }

  attach(store: SessionStore): void {
    this.store = store;
  }

  /**
   * An allowed action publish: attaches who sent it and when, and clears its retain flag. Returns
   * whether the flag was set (the caller audits that it was ignored).
   */
  authorize(packet: PublishPacket & WithAuthority, principal: string, clientId: string, permission: ActionRef, source: 'local' | 'cloud', requestId: string | null): boolean {
    const now = this.opts.policy().now();
    let expiresAt = now + (this.opts.ttl[permission.permissionId] || 0);
    // MQTT 5 Message Expiry Interval: the shorter of it and the time to live wins; the message then
    // expires with its authority (ACTION_EXPIRED), and is delivered with what remains of it.
    const mei = packet.properties?.messageExpiryInterval;
    if (typeof mei === 'number' && mei > 0) {
      expiresAt = Math.min(expiresAt, now + mei * 1000);
      (packet as { messageExpiry?: number }).messageExpiry = expiresAt;
    }
    packet[AUTHORITY] = Object.freeze({
      principal,
      source,
      clientId,
      requestId,
      permission: permission.permission,
      authorizedAt: now,
      expiresAt,
    });
    if (!packet.retain) return false;
    packet.retain = false;
    this.counters.retainIgnored++;
    return true;
  }

  /**
   * aedes is about to take the packet: give it its brokerId and brokerCounter now (aedes keeps
   * them, see aedes-packet) and hold its authority under them until `done`. Returns the callback to
   * pass to aedes instead of `done`.
   */
  handOver(packet: PublishPacket & WithAuthority & { brokerId?: string; brokerCounter?: number }, aedes: { id: string; counter: number }, done: ((err?: Error) => void) | undefined): ((err?: Error) => void) | undefined {
    const authority = packet[AUTHORITY];
    if (authority === undefined) return done;
    delete packet[AUTHORITY];
    const counter = ++aedes.counter;
    packet.brokerId = aedes.id;
    packet.brokerCounter = counter;
    this.inFlight.hold(counter, authority);
    return (err?: Error) => {
      this.inFlight.release(counter);
      done?.(err);
    };
  }

  /**
   * A message is about to wait in memory for a clean session's in-flight window (./inflight-window.ts),
   * past the end of its publish: an action keeps its authority on the packet itself.
   */
  keepAuthority(packet: { brokerId?: string | null; brokerCounter?: number } & WithAuthority): void {
    const authority = this.inFlight.get(packet.brokerId ?? undefined, packet.brokerCounter);
    if (authority !== undefined) packet[AUTHORITY] = authority;
  }

  /** Whether an action message may be delivered to `client` now; audits and reports a refusal. */
  deliverable(client: Client, packet: { topic?: string; brokerId?: string; brokerCounter?: number } & WithAuthority, thing: string, action: ActionRef, view: PolicyView): boolean {
    const authority = this.inFlight.get(packet.brokerId, packet.brokerCounter) ?? this.store?.authorityOf(client.id, packet) ?? packet[AUTHORITY] ?? null;
    const now = view.now();
    let decision: Decision;
    if (authority === null) decision = DENY.NO_AUTHORITY;
    else if (now >= authority.expiresAt) decision = DENY.ACTION_EXPIRED;
    else if (view.index === null) decision = DENY.NO_SNAPSHOT;
    else decision = decideById(view.index, authority.principal, view.index.canonical[action.permissionId]!, thing, now);
    if (decision.allow) return true;
    this.refused(client.id, packet.topic ?? '', thing, action.permission, authority, decision.reason!, 'delivery', view);
    return false;
  }

  /** An action a queue bound dropped or did not queue (QUEUE_FULL). */
  droppedFromQueue(receiver: string, topic: string, authority: Authority, view: PolicyView): void {
    this.refused(receiver, topic, this.opts.thingOf(topic), authority.permission, authority, 'QUEUE_FULL', 'queue', view);
  }

  /** Drops queued actions whose time to live passed; audits each. */
  sweep(isConnected: (clientId: string) => boolean): number {
    if (!this.store) return 0;
    const view = this.opts.policy();
    const dropped = this.store.dropExpired(view.now(), isConnected);
    for (const d of dropped) {
      const topic = d.packet.topic ?? '';
      this.refused(d.clientId, topic, this.opts.thingOf(topic), d.authority.permission, d.authority, 'ACTION_EXPIRED', 'queue', view);
    }
    return dropped.length;
  }

  private refused(receiver: string, topic: string, thing: string | null, permission: string, a: Authority | null, reason: DenyReason, stage: 'delivery' | 'queue', view: PolicyView): void {
    if (reason === 'ACTION_EXPIRED') this.counters.expired++;
    else if (reason === 'QUEUE_FULL') this.counters.droppedQueueFull++;
    else this.counters.refusedAtDelivery++;
    this.opts.audit.record({
      principal: a?.principal ?? null,
      clientId: a?.clientId ?? null,
      action: permission,
      topic,
      thing,
      decision: 'deny',
      reason,
      snapshotVersion: view.index?.version ?? null,
      stage,
      receiver,
      ...(a ? { authorizedAt: new Date(a.authorizedAt).toISOString(), source: a.source } : {}),
    });
    const now = Date.now();
    if (now - this.loggedAt >= LOG_INTERVAL_MS) {
      this.opts.log.info({ principal: a?.principal ?? null, receiver, topic, reason, stage, suppressed: this.suppressed }, stage === 'delivery' ? 'action refused at delivery' : reason === 'QUEUE_FULL' ? 'queued action dropped: queue full' : 'queued action expired');
      this.loggedAt = now;
      this.suppressed = 0;
    } else this.suppressed++;
    if (a?.source === 'cloud') this.onLateRefusal?.({ requestId: a.requestId, principal: a.principal, topic, reason, stage });
  }
}
