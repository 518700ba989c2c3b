// What the packet handlers (./publish.ts, ./subscribe.ts, ./forward.ts) share: the broker's state,
// read through this object. The broker (./broker.ts) owns it and hands it to each hook; the mutable
// parts (topic rules, rate limiters, forwarding: a reload or the cloud link changes them) are getters.
import type { Client, PublishPacket } from 'aedes';
import type { Logger } from 'pino';
import type { AuditLog } from '../audit/audit-log.js';
import type { AgentConfig } from '../config/load.js';
import type { DeliveryRoute, TopicMap, TopicRules } from '../topics/index.js';
import type { ActionGate } from './actions.js';
import type { Forwarding, PolicyView } from './broker.js';
import type { Delivery } from './delivery.js';
import type { DenialBudget } from './denial-budget.js';
import type { RateLimiter } from './rate-limit.js';
import type { SharedSubscriptions } from './shared-subscriptions.js';
import type { Marked, Session } from './session.js';

/** The broker's counters, read by `status` and the metrics. */
export interface BrokerCounters {
  connections: number;
  publishesIn: number;
  publishesDenied: number;
  deliveries: number;
  deliveriesFiltered: number;
  /** Deliveries not made because the message's MQTT 5 Message Expiry Interval had passed (not actions: ACTION_EXPIRED). */
  messagesExpired: number;
  oversizedPackets: number;
  /** Deliveries dropped for an MQTT 5 client: larger than its Maximum Packet Size (./flow-control.ts). */
  deliveriesTooLarge: number;
  // the in-flight windows' (./inflight-window.ts)
  inflightWindowFull: number;
  deliveriesWaited: number;
  deliveriesDroppedWaiting: number;
}

export interface BrokerContext {
  readonly config: AgentConfig;
  readonly log: Logger;
  readonly audit: AuditLog;
  policy(): PolicyView;
  /** Each authenticated client's session. */
  readonly sessions: WeakMap<Client, Session>;
  readonly counters: BrokerCounters;
  readonly topicMap: TopicMap;
  readonly rules: TopicRules;
  readonly commandLimiter: RateLimiter;
  readonly firmwareLimiter: RateLimiter;
  readonly actions: ActionGate;
  readonly delivery: Delivery;
  /** The groups of shared subscriptions (./shared-subscriptions.ts). */
  readonly shared: SharedSubscriptions;
  /** Each client's denials: at most so many audit lines a second (./denial-budget.ts). */
  readonly denials: DenialBudget;
  /** The cloud link's upward forwarding, once it exists. */
  readonly forwarding: Forwarding | null;
  /** The topic's delivery route, cached for every subscriber. */
  deliveryRoute(topic: string): DeliveryRoute;
  /** `bulk/{operation}`: fanned out to each thing the publisher may update (./bulk.ts). */
  fanOutBulk(client: Client, session: Session, operation: string, packet: PublishPacket & Marked, view: PolicyView): void;
}
