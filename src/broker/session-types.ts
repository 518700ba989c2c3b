// What the session store keeps, and how: the packet, subscription and queue types, the journal's
// change records and state document, and copying packets in and out (src/broker/session-store.ts).
import type { Authority } from './authority.js';
import type { SessionJournalOptions } from '../store/session-journal.js';
import { QlobberSub, QlobberTrue, type QlobberSubTrie, type TrieSub } from './upstream/qlobber-sub.js';

export { QlobberSub, type QlobberSubTrie, type TrieSub };

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
  /** MQTT 5 PUBLISH properties (responseTopic, correlationData, userProperties, contentType, ...): sanitizeProperties. */
  properties?: MessageProperties;
  /** When an MQTT 5 message expires (ms, the agent's time floor): its Message Expiry Interval from when it was published. */
  messageExpiry?: number;
  [key: string]: unknown;
}

/** The MQTT 5 PUBLISH properties a message keeps while it waits (mqtt-packet's names). */
export interface MessageProperties {
  payloadFormatIndicator?: boolean;
  messageExpiryInterval?: number;
  contentType?: string;
  responseTopic?: string;
  correlationData?: Buffer;
  userProperties?: Record<string, string | string[]>;
  [key: string]: unknown;
}

/**
 * What of a PUBLISH's properties travels with the message to its subscribers [MQTT-3.3.4-2..-9]:
 * not the publisher's topic alias (a property of its connection) nor a subscription identifier (each
 * delivery gets its receiver's, from aedes). Undefined when nothing is left.
 */
export function sanitizeProperties(p: Record<string, unknown> | undefined): MessageProperties | undefined {
  if (p === undefined || p === null || typeof p !== 'object') return undefined;
  let out: MessageProperties | undefined;
  for (const k of MESSAGE_PROPERTY_NAMES) {
    const v = p[k];
    if (v === undefined || v === null) continue;
    out ??= {};
    (out as Record<string, unknown>)[k] = v;
  }
  return out;
}
const MESSAGE_PROPERTY_NAMES = ['payloadFormatIndicator', 'messageExpiryInterval', 'contentType', 'responseTopic', 'correlationData', 'userProperties'] as const;

/** A subscription as aedes hands it over (qos, and MQTT 5's rh, rap, nl). */
export interface StoredSubscription {
  topic: string;
  qos: number;
  rh?: number;
  rap?: boolean;
  nl?: boolean;
  /** MQTT 5 Subscription Identifier (aedes echoes it on the deliveries of this subscription). */
  subscriptionIdentifier?: number;
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
export function entryBytes(p: { payload?: Buffer; topic?: string; properties?: Record<string, unknown> }): number {
  const n = (p.payload?.length ?? 0) + (p.topic?.length ?? 0) + ENTRY_OVERHEAD_BYTES;
  return p.properties === undefined ? n : n + propertiesBytes(p.properties);
}

/**
 * What an MQTT 5 message's properties weigh against the bounds: a publisher must not pass them with
 * user properties of a near-megabyte and an empty payload. Counts only what does not change between
 * the queue and the wire (strings, binary data), so that a reservation and its release agree.
 */
function propertiesBytes(p: Record<string, unknown>): number {
  let n = 0;
  const add = (v: unknown): void => {
    if (typeof v === 'string') n += v.length;
    else if (v instanceof Uint8Array) n += v.length;
  };
  add(p['responseTopic']);
  add(p['contentType']);
  add(p['correlationData']);
  const u = p['userProperties'];
  if (u !== undefined && u !== null && typeof u === 'object') {
    for (const k in u) {
      n += k.length;
      const v = (u as Record<string, unknown>)[k];
      if (Array.isArray(v)) for (const x of v) add(x);
      else add(v);
    }
  }
  return n;
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
  /** Queued and retained messages dropped because their MQTT 5 Message Expiry Interval passed (actions: see ActionGate). */
  expiredMessages: number;
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
  /** The agent's time (the time floor, ms): message expiry counts on it. Default Date.now. */
  now?: () => number;
  /** A message dropped or not queued because of a bound. */
  onQueueLimit?: (e: QueueLimitEvent) => void;
  /**
   * A resumed session gets back (outgoingStream) only what was sent before, to resend it
   * [MQTT-4.4.0-1]; the messages not sent yet wait for the broker's in-flight window
   * (./inflight-window.ts), which sends them (unsent, markSent). Absent: the whole queue.
   */
  resumeSentOnly?: boolean;
  /**
   * aedes 2.0.0-beta.1 has no maxInflightInbound (1.2.0 had, ./upstream/inbound-qos2-window.ts): inbound QoS 2
   * packets awaiting PUBREL per client; past it incomingStorePacket rejects and aedes closes the connection.
   * Absent: unbounded.
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
  // Shared, never changed in place (aedes' delivery path does not either): a new object replaces it.
  if (p.properties !== undefined) c.properties = p.properties;
  if (p.messageExpiry !== undefined) c.messageExpiry = p.messageExpiry;
  return c;
}

/**
 * One journaled change. Tuples, to keep records small. Record format 2 (issue 15) only adds to format
 * 1, so that a journal written by either version loads in both: packets may carry `properties` and
 * `messageExpiry` (format 1 packets have neither), 's' may carry an 8th element, and the 'd' record is
 * new (format 1 code skips a record kind it does not know).
 *   ['r', topic, packet | null]                 retained message set or cleared
 *   ['s', clientId, topic, qos, rh, rap, nl, subscriptionIdentifier?]  subscription stored
 *   ['u', clientId, topic]                      subscription removed
 *   ['o', clientId, owner | null]               session owner (principal; null = anonymous)
 *   ['c', clientId]                             session discarded (subscriptions, queue, owner)
 *   ['e', clientId, key, packet, authority]     message queued
 *   ['E', [clientId...], key, packet, authority] message queued for several sessions (written once)
 *   ['m', clientId, key, messageId]             packet identifier assigned (sent)
 *   ['p', clientId, key, messageId]             PUBLISH replaced by its PUBREL
 *   ['x', clientId, key]                        entry removed (acknowledged, refused, expired)
 *   ['d', clientId, at | null, seconds | null]  an MQTT 5 session's Session Expiry Interval and when its
 *                                               client disconnected (ms, time floor); null: connected
 */
export type Change =
  | ['r', string, StoredPacket | null]
  | ['s', string, string, number, number | undefined, boolean | undefined, boolean | undefined, (number | undefined)?]
  | ['u', string, string]
  | ['o', string, string | null]
  | ['c', string]
  | ['e', string, string, StoredPacket, Authority | null]
  | ['E', string[], string, StoredPacket, Authority | null]
  | ['m', string, string, number]
  | ['p', string, string, number]
  | ['x', string, string]
  | ['d', string, number | null, number | null];

/** The record format written (see Change); 1 = before MQTT 5 (no version field in the state). */
export const RECORD_FORMAT = 2;

/** The whole state, as written at a compaction. */
export interface StateDoc {
  /** RECORD_FORMAT; absent in format 1. */
  format?: number;
  retained: StoredPacket[];
  owners: [string, string | null][];
  subscriptions: [string, [string, number, number | undefined, boolean | undefined, boolean | undefined, (number | undefined)?][]][];
  /** Format 2: MQTT 5 sessions' Session Expiry Interval (s) and when their client disconnected (ms, time floor; null: connected). */
  sessionExpiry?: [string, number | null, number | null][];
  /** Each queued message once (a message queued for many sessions is written once): key, packet, authority. */
  messages: [string, StoredPacket, Authority | null][];
  /** Each session's queue, in order: key, packet identifier (null: not sent yet), 1 for a PUBREL. */
  outgoing: [string, [string, number | null, 0 | 1][]][];
}

/** What a queue keeps of a packet: no packet identifier yet, DUP 0. */
export function queueCopy(p: StoredPacket): StoredPacket {
  const c = copyPacket(p);
  if (c.properties !== undefined) {
    const props = sanitizeProperties(c.properties);
    if (props === undefined) delete c.properties;
    else {
      // A view into the socket's read chunk, like the payload below.
      const cd = props.correlationData;
      if (Buffer.isBuffer(cd) && cd.buffer.byteLength > cd.length) props.correlationData = Buffer.from(cd);
      c.properties = props;
    }
  }
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
  if (typeof c.messageExpiry !== 'number') delete c.messageExpiry;
  if (c.properties !== undefined) {
    const props = sanitizeProperties(c.properties);
    if (props === undefined) delete c.properties;
    else {
      const cd = props.correlationData as unknown;
      if (cd !== undefined && !Buffer.isBuffer(cd)) {
        if (cd instanceof Uint8Array) props.correlationData = Buffer.from(cd.buffer, cd.byteOffset, cd.byteLength);
        else delete props.correlationData;
      }
      c.properties = props;
    }
  }
  return c;
}

/** The retained messages whose topic matches `pattern`. */
export function* retainedByPattern(retained: Map<string, StoredPacket>, pattern: string): Generator<StoredPacket> {
  const q = new QlobberTrue(QLOBBER_OPTIONS);
  q.add(pattern);
  for (const [topic, packet] of retained) if (q.test(topic)) yield packet;
}
