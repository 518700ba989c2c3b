// What the session store keeps, and how: the packet, subscription and queue types, the journal's
// change records and state document, and copying packets in and out (src/broker/session-store.ts).
import { createRequire } from 'node:module';
import type { Authority } from './authority.js';
import type { SessionJournalOptions } from '../store/session-journal.js';

const require = createRequire(import.meta.url);
// eslint-disable-next-line @typescript-eslint/no-require-imports
export const QlobberSub = require('qlobber/aedes/qlobber-sub') as new (opts: object) => QlobberSubTrie;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { QlobberTrue } = require('qlobber') as { QlobberTrue: new (opts: object) => { add(topic: string): void; test(topic: string): boolean } };

export interface QlobberSubTrie {
  subscriptionsCount: number;
  add(topic: string, value: TrieSub): void;
  remove(topic: string, value: { clientId: string; topic: string }): void;
  match(topic: string): TrieSub[];
}

export const QLOBBER_OPTIONS = { wildcard_one: '+', wildcard_some: '#', separator: '/' };

/** The packet fields aedes stores and reads back (aedes-packet's shape). */
export interface StoredPacket {
  cmd: string;
  brokerId?: string;
  brokerCounter?: number;
  topic?: string;
  payload?: Buffer;
  qos?: 0 | 1 | 2;
  retain?: boolean;
  dup?: boolean;
  messageId?: number;
  clientId?: string;
  properties?: StoredProperties;
  [key: string]: unknown;
}

/** A subscription as aedes hands it over (qos, and MQTT 5's rh, rap, nl). */
export interface StoredSubscription {
  topic: string;
  qos: number;
  rh?: number;
  rap?: boolean;
  nl?: boolean;
}

export interface TrieSub {
  clientId: string;
  topic: string;
  qos: number;
  rh?: number;
  rap?: boolean;
  nl?: boolean;
}

/** One message in a session's outgoing queue. */
export interface QueuedMessage {
  packet: StoredPacket;
  /** The authority of an action message; null for any other message (or an action that lacks one). */
  authority: Authority | null;
}

/** One session's outgoing queue: in order, by (brokerId, brokerCounter), and by packet identifier once sent. */
export class OutgoingQueue {
  readonly entries = new Map<string, QueuedMessage>();
  readonly byMessageId = new Map<number, string>();
  /** Sum of entryBytes of the entries. */
  bytes = 0;
}

/** What a queued message is counted as against the bounds: payload, topic, and the entry's own keep. */
export function entryBytes(p: { payload?: Buffer; topic?: string }): number {
  return (p.payload?.length ?? 0) + (p.topic?.length ?? 0) + ENTRY_OVERHEAD_BYTES;
}
/** About what an entry costs besides payload and topic (packet object, map entries, key string). */
export const ENTRY_OVERHEAD_BYTES = 200;

/** Bounds of the queues (sessions.* in the configuration). */
export interface QueueLimits {
  /** Messages queued for one session; past it the oldest is dropped. */
  readonly maxMessages: number;
  /** Bytes (entryBytes) queued for one session; past it the oldest are dropped. */
  readonly maxBytes: number;
  /** Bytes queued for all sessions together; a message that would pass it is not queued. */
  readonly maxTotalBytes: number;
}

export interface SessionStoreStats {
  retained: number;
  /** Persistent sessions (with an owner). */
  sessions: number;
  queued: number;
  queuedBytes: number;
  /** Bytes of messages waiting for clean sessions' in-flight windows (in memory, not in a queue here). */
  waitingBytes: number;
  actionsQueued: number;
  incoming: number;
  wills: number;
  droppedOldest: number;
  refusedTotal: number;
  expiredSessions: number;
}

/** A message a bound kept out: the oldest of a full session ('session'), or a new one when all queues are full ('total'). */
export interface QueueLimitEvent {
  readonly clientId: string;
  readonly bound: 'session' | 'total';
  readonly packet: StoredPacket;
  readonly authority: Authority | null;
}

export interface SessionStoreOptions {
  /** Keep the state on disk (a SessionJournal in this directory); absent: in memory only. */
  journal?: SessionJournalOptions;
  /** The authority of a message being published now (the broker's InFlightAuthorities). */
  authorityOf?: (brokerId: string | undefined, brokerCounter: number | undefined) => Authority | undefined;
  /** Whether a topic is an action topic: never retained. */
  isActionTopic?: (topic: string) => boolean;
  /** Whether the broker granted `filter` to the client (aedes stores refused ones too). */
  isGranted?: (client: unknown, filter: string) => boolean;
  /** Queue bounds; absent: unbounded. */
  limits?: QueueLimits;
  /** A message dropped or not queued because of a bound. */
  onQueueLimit?: (e: QueueLimitEvent) => void;
  /**
   * A resumed session gets back (outgoingStream) only what was sent before, to resend it
   * [MQTT-4.4.0-1]; the messages not sent yet wait for the broker's in-flight window
   * (./inflight-window.ts), which sends them (unsent, markSent). Absent: the whole queue.
   */
  resumeSentOnly?: boolean;
  /**
   * aedes 2.0.0-beta.1 has no maxInflightInbound (1.2.0 had, ./aedes2.ts): inbound QoS 2 packets awaiting PUBREL per
   * client; past it incomingStorePacket rejects and aedes closes the connection. Absent: unbounded.
   */
  maxIncomingPerClient?: number;
}

/** An entry dropped by dropExpired. */
export interface DroppedMessage {
  readonly clientId: string;
  readonly packet: StoredPacket;
  readonly authority: Authority;
}

export const keyOf = (brokerId: string | undefined, brokerCounter: number | undefined): string => `${brokerId ?? ''}/${brokerCounter ?? 0}`;

export function copyPacket(p: StoredPacket): StoredPacket {
  const c: StoredPacket = { cmd: p.cmd || 'publish' };
  if (p.brokerId !== undefined) c.brokerId = p.brokerId;
  if (p.brokerCounter !== undefined) c.brokerCounter = p.brokerCounter;
  if (p.topic !== undefined) c.topic = p.topic;
  if (p.payload !== undefined) c.payload = p.payload;
  c.qos = p.qos ?? 0;
  c.retain = p.retain ?? false;
  c.dup = p.dup ?? false;
  if (p.messageId !== undefined) c.messageId = p.messageId;
  if (p.clientId !== undefined) c.clientId = p.clientId;
  const props = p.properties === undefined ? undefined : messageProperties(p.properties);
  if (props !== undefined) c.properties = props;
  return c;
}

/** MQTT 5 PUBLISH properties (mqtt-packet's names) a stored message may carry. */
export interface StoredProperties {
  topicAlias?: number;
  subscriptionIdentifier?: number | number[];
  correlationData?: Buffer;
  [key: string]: unknown;
}

/**
 * What a stored message keeps of its MQTT 5 properties: the message's own (user properties, content
 * type, payload format indicator, response topic, correlation data, message expiry interval), shared
 * with the packet (aedes treats them as read-only), not the publisher's connection-scoped Topic Alias
 * nor a subscriber's Subscription Identifier. A retained or queued message is delivered with them, as
 * a live one is.
 */
function messageProperties(props: StoredProperties): StoredProperties | undefined {
  if (props.topicAlias === undefined && props.subscriptionIdentifier === undefined) return props;
  const { topicAlias: _alias, subscriptionIdentifier: _id, ...rest } = props;
  return Object.keys(rest).length > 0 ? rest : undefined;
}

/**
 * One journaled change. Tuples, to keep records small:
 *   ['r', topic, packet | null]                 retained message set or cleared
 *   ['s', clientId, topic, qos, rh, rap, nl]    subscription stored
 *   ['u', clientId, topic]                      subscription removed
 *   ['o', clientId, owner | null]               session owner (principal; null = anonymous)
 *   ['c', clientId]                             session discarded (subscriptions, queue, owner)
 *   ['e', clientId, key, packet, authority]     message queued
 *   ['E', [clientId...], key, packet, authority] message queued for several sessions (written once)
 *   ['m', clientId, key, messageId]             packet identifier assigned (sent)
 *   ['p', clientId, key, messageId]             PUBLISH replaced by its PUBREL
 *   ['x', clientId, key]                        entry removed (acknowledged, refused, expired)
 */
export type Change =
  | ['r', string, StoredPacket | null]
  | ['s', string, string, number, number | undefined, boolean | undefined, boolean | undefined]
  | ['u', string, string]
  | ['o', string, string | null]
  | ['c', string]
  | ['e', string, string, StoredPacket, Authority | null]
  | ['E', string[], string, StoredPacket, Authority | null]
  | ['m', string, string, number]
  | ['p', string, string, number]
  | ['x', string, string];

/** The whole state, as written at a compaction. */
export interface StateDoc {
  retained: StoredPacket[];
  owners: [string, string | null][];
  subscriptions: [string, [string, number, number | undefined, boolean | undefined, boolean | undefined][]][];
  /** Each queued message once (a message queued for many sessions is written once): key, packet, authority. */
  messages: [string, StoredPacket, Authority | null][];
  /** Each session's queue, in order: key, packet identifier (null: not sent yet), 1 for a PUBREL. */
  outgoing: [string, [string, number | null, 0 | 1][]][];
}

/** What a queue keeps of a packet: no packet identifier yet, DUP 0. */
export function queueCopy(p: StoredPacket): StoredPacket {
  const c = copyPacket(p);
  delete c.messageId;
  c.dup = false;
  // The parser's payload is a view into the socket's read chunk (up to 64 KiB): a queue that keeps
  // the view keeps the whole chunk. Kept once per message, shared by every session's copy.
  if (c.payload !== undefined && c.payload.buffer.byteLength > c.payload.length) c.payload = Buffer.from(c.payload);
  return c;
}

/** A packet read back from disk: its payload a Buffer again (CBOR gives a Uint8Array view). */
export function revive(p: StoredPacket): StoredPacket {
  if (p.cmd === 'pubrel') return { cmd: 'pubrel', messageId: p.messageId! };
  const c = copyPacket(p);
  if (c.payload !== undefined && !Buffer.isBuffer(c.payload)) c.payload = Buffer.from(c.payload as Uint8Array);
  const corr = c.properties?.correlationData;
  if (corr !== undefined && !Buffer.isBuffer(corr)) c.properties = { ...c.properties, correlationData: Buffer.from(corr as Uint8Array) };
  if (p.messageId !== undefined) c.messageId = p.messageId;
  return c;
}

/** The retained messages whose topic matches `pattern`. */
export function* retainedByPattern(retained: Map<string, StoredPacket>, pattern: string): Generator<StoredPacket> {
  const q = new QlobberTrue(QLOBBER_OPTIONS);
  q.add(pattern);
  for (const [topic, packet] of retained) if (q.test(topic)) yield packet;
}
