// The broker's session state: aedes' persistence interface (the one aedes-persistence's memory
// store implements), written for edgewarden. What it keeps: retained messages, the subscriptions of
// persistent sessions (CleanSession=0), each session's outgoing queue (QoS 1/2 messages not yet
// acknowledged by the client), inbound QoS 2 packets awaiting PUBREL, and wills.
//
// Why our own, and not aedes-persistence 11's memory store:
// - An action message waiting in a queue carries its Authority (src/broker/authority.ts): who sent
//   it and when it was allowed, so that its delivery is decided again for that sender. The memory
//   store copies queued packets with aedes-packet, which drops any field of ours.
// - A queued message refused at delivery that was never sent has no packet identifier. aedes 1.2
//   then calls outgoingClearMessageId with messageId undefined, and the memory store removes the
//   first never-sent entry of the queue, whichever message that is, and keeps the refused one, to
//   be refused again at every reconnect. Here an entry without a packet identifier is found by its
//   (brokerId, brokerCounter).
// - [MQTT-3.1.2-6]: a clean session discards the session's state. The memory store's
//   cleanSubscriptions keeps the outgoing queue of a client id that reconnects with
//   CleanSession=1, forever. Here the queue goes with the subscriptions.
// - [MQTT-4.3.3-1]: after PUBREC the stored QoS 2 PUBLISH is replaced by its PUBREL. The memory
//   store finds the entry to replace by brokerId/brokerCounter, and by packet identifier only for
//   a packet of another broker; aedes' PUBREL has neither, so it "matches" the first PUBREL stored
//   and overwrites that one's identifier; with two QoS 2 deliveries between PUBREC and PUBCOMP the
//   second PUBLISH stays queued and is resent on the next resume. Here the PUBREL replaces the
//   entry with its packet identifier, in place.
// - [MQTT-3.3.1-1] [MQTT-4.4.0-1]: a PUBLISH resent when a session resumes carries DUP 1; the
//   memory store hands it back as stored, DUP 0. outgoingStream sets DUP on every PUBLISH that
//   already has a packet identifier (it was sent before).
// - aedes 1.2 stores a whole SUBSCRIBE's filter list for each granted filter of it, refused ones
//   included; `isGranted` lets the broker keep only what it granted.
// - Actions are never retained: storeRetained refuses an action topic (defence in depth behind the
//   broker, which clears the flag), and purgeRetained removes any from an older store at start.
//
// Every method is async (aedes 1.2 calls `.then` on each) and never throws synchronously.
import { Readable } from 'node:stream';
import { createRequire } from 'node:module';
import type { Authority } from './authority.js';

const require = createRequire(import.meta.url);
// eslint-disable-next-line @typescript-eslint/no-require-imports
const QlobberSub = require('qlobber/aedes/qlobber-sub') as new (opts: object) => QlobberSubTrie;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { QlobberTrue } = require('qlobber') as { QlobberTrue: new (opts: object) => { add(topic: string): void; test(topic: string): boolean } };

interface QlobberSubTrie {
  subscriptionsCount: number;
  add(topic: string, value: TrieSub): void;
  remove(topic: string, value: { clientId: string; topic: string }): void;
  match(topic: string): TrieSub[];
}

const QLOBBER_OPTIONS = { wildcard_one: '+', wildcard_some: '#', separator: '/' };

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

interface TrieSub {
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
class OutgoingQueue {
  readonly entries = new Map<string, QueuedMessage>();
  readonly byMessageId = new Map<number, string>();
}

export interface SessionStoreOptions {
  /** The authority of a message being published now (the broker's InFlightAuthorities). */
  authorityOf?: (brokerId: string | undefined, brokerCounter: number | undefined) => Authority | undefined;
  /** Whether a topic is an action topic: never retained. */
  isActionTopic?: (topic: string) => boolean;
  /** Whether the broker granted `filter` to the client (aedes stores refused ones too). */
  isGranted?: (client: unknown, filter: string) => boolean;
}

/** An entry dropped by dropExpired. */
export interface DroppedMessage {
  readonly clientId: string;
  readonly packet: StoredPacket;
  readonly authority: Authority;
}

const keyOf = (brokerId: string | undefined, brokerCounter: number | undefined): string => `${brokerId ?? ''}/${brokerCounter ?? 0}`;

function copyPacket(p: StoredPacket): StoredPacket {
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
  return c;
}

export class SessionStore {
  private readonly retained = new Map<string, StoredPacket>();
  private readonly subscriptions = new Map<string, Map<string, Omit<StoredSubscription, 'topic'>>>();
  private readonly trie = new QlobberSub(QLOBBER_OPTIONS);
  private readonly outgoing = new Map<string, OutgoingQueue>();
  private readonly incoming = new Map<string, Map<number, StoredPacket>>();
  private readonly wills = new Map<string, StoredPacket>();
  private brokerId = '';
  /** Queued messages that carry an authority (dropExpired has nothing to do while 0). */
  private actionsQueued = 0;

  constructor(private readonly opts: SessionStoreOptions = {}) {}

  async setup(broker: { id: string }): Promise<void> {
    this.brokerId = broker.id;
  }

  // --- retained messages ---------------------------------------------------------------------------

  async storeRetained(packet: StoredPacket): Promise<void> {
    const topic = packet.topic ?? '';
    if (!packet.payload || packet.payload.length === 0) this.retained.delete(topic);
    else if (this.opts.isActionTopic?.(topic)) return; // actions are never retained
    else this.retained.set(topic, copyPacket(packet));
  }

  createRetainedStreamCombi(patterns: string[]): Readable {
    const retained = this.retained;
    return Readable.from(
      (function* () {
        for (const p of patterns) yield* retainedByPattern(retained, p);
      })(),
    );
  }

  createRetainedStream(pattern: string): Readable {
    return Readable.from(retainedByPattern(this.retained, pattern));
  }

  /** Removes every retained message on a topic `drop` says; returns how many. */
  purgeRetained(drop: (topic: string) => boolean): number {
    let n = 0;
    for (const topic of [...this.retained.keys()]) {
      if (drop(topic)) {
        this.retained.delete(topic);
        n++;
      }
    }
    return n;
  }

  // --- subscriptions of persistent sessions ----------------------------------------------------------

  async addSubscriptions(client: { id: string }, subs: StoredSubscription[]): Promise<void> {
    let stored = this.subscriptions.get(client.id);
    if (!stored) {
      stored = new Map();
      this.subscriptions.set(client.id, stored);
    }
    for (const sub of subs) {
      if (this.opts.isGranted && !this.opts.isGranted(client, sub.topic)) continue;
      const previous = stored.get(sub.topic);
      if (sub.qos > 0) this.trie.add(sub.topic, { clientId: client.id, topic: sub.topic, qos: sub.qos, rh: sub.rh, rap: sub.rap, nl: sub.nl });
      else if (previous && previous.qos > 0) this.trie.remove(sub.topic, { clientId: client.id, topic: sub.topic });
      stored.set(sub.topic, { qos: sub.qos, rh: sub.rh, rap: sub.rap, nl: sub.nl });
    }
    if (stored.size === 0) this.subscriptions.delete(client.id);
  }

  async removeSubscriptions(client: { id: string }, topics: string[]): Promise<void> {
    const stored = this.subscriptions.get(client.id);
    if (!stored) return;
    for (const topic of topics) {
      const s = stored.get(topic);
      if (s === undefined) continue;
      if (s.qos > 0) this.trie.remove(topic, { clientId: client.id, topic });
      stored.delete(topic);
    }
    if (stored.size === 0) this.subscriptions.delete(client.id);
  }

  async subscriptionsByClient(client: { id: string }): Promise<StoredSubscription[]> {
    const stored = this.subscriptions.get(client.id);
    if (!stored) return [];
    return [...stored].map(([topic, s]) => ({ topic, ...s }));
  }

  async countOffline(): Promise<{ subsCount: number; clientsCount: number }> {
    return { subsCount: this.trie.subscriptionsCount, clientsCount: this.subscriptions.size };
  }

  async subscriptionsByTopic(topic: string): Promise<TrieSub[]> {
    return this.trie.match(topic);
  }

  /** The session ends ([MQTT-3.1.2-6]): its subscriptions, and the messages queued for it. */
  async cleanSubscriptions(client: { id: string }): Promise<void> {
    const stored = this.subscriptions.get(client.id);
    if (stored) {
      for (const [topic, s] of stored) if (s.qos > 0) this.trie.remove(topic, { clientId: client.id, topic });
      this.subscriptions.delete(client.id);
    }
    this.dropQueue(client.id);
  }

  // --- outgoing queues -------------------------------------------------------------------------------

  async outgoingEnqueue(sub: { clientId: string }, packet: StoredPacket): Promise<void> {
    this.enqueue(sub.clientId, packet, this.opts.authorityOf?.(packet.brokerId, packet.brokerCounter) ?? null);
  }

  async outgoingEnqueueCombi(subs: { clientId: string }[], packet: StoredPacket): Promise<void> {
    const authority = this.opts.authorityOf?.(packet.brokerId, packet.brokerCounter) ?? null;
    for (const sub of subs) this.enqueue(sub.clientId, packet, authority);
  }

  private enqueue(clientId: string, packet: StoredPacket, authority: Authority | null): void {
    let q = this.outgoing.get(clientId);
    if (!q) {
      q = new OutgoingQueue();
      this.outgoing.set(clientId, q);
    }
    const key = keyOf(packet.brokerId, packet.brokerCounter);
    if (q.entries.has(key)) return; // the same message twice (two matching subscriptions): once
    const copy = copyPacket(packet);
    delete copy.messageId;
    q.entries.set(key, { packet: copy, authority });
    if (authority) this.actionsQueued++;
  }

  /** A PUBLISH got its packet identifier (it is being sent), or a PUBREL replaces its PUBLISH. */
  async outgoingUpdate(client: { id: string }, packet: StoredPacket): Promise<void> {
    const q = this.outgoing.get(client.id);
    if (packet.cmd === 'pubrel') {
      const key = packet.messageId === undefined ? undefined : q?.byMessageId.get(packet.messageId);
      const entry = key === undefined ? undefined : q!.entries.get(key);
      if (!entry) return; // nothing to replace: the PUBREL is sent all the same
      if (entry.authority) this.actionsQueued--;
      entry.packet = { cmd: 'pubrel', messageId: packet.messageId! };
      entry.authority = null;
      return;
    }
    const key = keyOf(packet.brokerId, packet.brokerCounter);
    let entry = q?.entries.get(key);
    if (!entry) {
      // Delivered live to a persistent session whose queue copy is gone (dropped as expired in
      // between): track it again, so that its PUBACK has something to clear.
      this.enqueue(client.id, packet, this.opts.authorityOf?.(packet.brokerId, packet.brokerCounter) ?? null);
      entry = this.outgoing.get(client.id)!.entries.get(key)!;
    }
    const queue = this.outgoing.get(client.id)!;
    const old = entry.packet.messageId;
    if (old !== undefined && old !== packet.messageId && queue.byMessageId.get(old) === key) queue.byMessageId.delete(old);
    if (packet.messageId !== undefined) {
      entry.packet.messageId = packet.messageId;
      queue.byMessageId.set(packet.messageId, key);
    }
  }

  /**
   * The client acknowledged it (PUBACK, PUBCOMP), or it is not to be sent (refused at delivery): the
   * entry goes. Found by packet identifier, or by (brokerId, brokerCounter) when it has none.
   */
  async outgoingClearMessageId(client: { id: string }, packet: StoredPacket): Promise<StoredPacket | undefined> {
    const q = this.outgoing.get(client.id);
    if (!q) return undefined;
    let key: string | undefined;
    if (packet.messageId !== undefined) key = q.byMessageId.get(packet.messageId);
    if (key === undefined && packet.cmd !== 'pubrel' && packet.brokerId !== undefined) key = keyOf(packet.brokerId, packet.brokerCounter);
    if (key === undefined) return undefined;
    const entry = q.entries.get(key);
    if (!entry) return undefined;
    this.removeEntry(client.id, q, key, entry);
    return entry.packet;
  }

  /** The queue in order; a PUBLISH sent before (it has a packet identifier) comes back with DUP 1. */
  outgoingStream(client: { id: string }): Readable {
    const q = this.outgoing.get(client.id);
    const packets = q ? [...q.entries.values()].map((e) => (e.packet.cmd === 'publish' && e.packet.messageId !== undefined ? { ...e.packet, dup: true } : e.packet)) : [];
    return Readable.from(packets);
  }

  /** The authority of a queued message (null: queued without one; undefined: not queued for this client). */
  authorityOf(clientId: string, packet: { brokerId?: string; brokerCounter?: number }): Authority | null | undefined {
    return this.outgoing.get(clientId)?.entries.get(keyOf(packet.brokerId, packet.brokerCounter))?.authority;
  }

  /**
   * Drops the queued actions whose time to live has passed: those not yet sent, and those sent to a
   * client that is not connected now (a connected client's PUBACK clears what it was sent).
   */
  dropExpired(now: number, isConnected: (clientId: string) => boolean): DroppedMessage[] {
    const dropped: DroppedMessage[] = [];
    if (this.actionsQueued === 0) return dropped;
    for (const [clientId, q] of this.outgoing) {
      const connected = isConnected(clientId);
      for (const [key, entry] of q.entries) {
        const a = entry.authority;
        if (a === null || a.expiresAt > now) continue;
        if (connected && entry.packet.messageId !== undefined) continue;
        this.removeEntry(clientId, q, key, entry);
        dropped.push({ clientId, packet: entry.packet, authority: a });
      }
    }
    return dropped;
  }

  private removeEntry(clientId: string, q: OutgoingQueue, key: string, entry: QueuedMessage): void {
    q.entries.delete(key);
    const id = entry.packet.messageId;
    if (id !== undefined && q.byMessageId.get(id) === key) q.byMessageId.delete(id);
    if (entry.authority) this.actionsQueued--;
    if (q.entries.size === 0) this.outgoing.delete(clientId);
  }

  private dropQueue(clientId: string): void {
    const q = this.outgoing.get(clientId);
    if (!q) return;
    for (const e of q.entries.values()) if (e.authority) this.actionsQueued--;
    this.outgoing.delete(clientId);
  }

  /** Messages queued for a client (tests, status). */
  queued(clientId: string): number {
    return this.outgoing.get(clientId)?.entries.size ?? 0;
  }

  /** What the store holds, for status and tests. */
  stats(): { retained: number; sessions: number; queued: number; actionsQueued: number; incoming: number; wills: number } {
    let queued = 0;
    for (const q of this.outgoing.values()) queued += q.entries.size;
    let incoming = 0;
    for (const m of this.incoming.values()) incoming += m.size;
    return { retained: this.retained.size, sessions: this.subscriptions.size, queued, actionsQueued: this.actionsQueued, incoming, wills: this.wills.size };
  }

  // --- inbound QoS 2 ---------------------------------------------------------------------------------

  async incomingStorePacket(client: { id: string }, packet: StoredPacket): Promise<void> {
    let m = this.incoming.get(client.id);
    if (!m) {
      m = new Map();
      this.incoming.set(client.id, m);
    }
    const copy = copyPacket(packet);
    copy.messageId = packet.messageId;
    m.set(packet.messageId!, copy);
  }

  async incomingGetPacket(client: { id: string }, packet: StoredPacket): Promise<StoredPacket> {
    const p = this.incoming.get(client.id)?.get(packet.messageId!);
    if (!p) throw new Error('no such packet');
    return p;
  }

  async incomingDelPacket(client: { id: string }, packet: StoredPacket): Promise<void> {
    const m = this.incoming.get(client.id);
    if (!m || !m.delete(packet.messageId!)) throw new Error('no such packet');
    if (m.size === 0) this.incoming.delete(client.id);
  }

  async cleanIncoming(client: { id: string }): Promise<void> {
    this.incoming.delete(client.id);
  }

  // --- wills -----------------------------------------------------------------------------------------

  async putWill(client: { id: string }, packet: StoredPacket): Promise<void> {
    packet.brokerId = this.brokerId;
    packet.clientId = client.id;
    this.wills.set(client.id, packet);
  }

  async getWill(client: { id: string }): Promise<StoredPacket | undefined> {
    return this.wills.get(client.id);
  }

  async delWill(client: { id: string }): Promise<StoredPacket | undefined> {
    const will = this.wills.get(client.id);
    this.wills.delete(client.id);
    return will;
  }

  /** Wills of brokers not alive (aedes' cluster mode); this broker's own are fired by the client's close. */
  streamWill(brokers: Record<string, unknown> = {}): Readable {
    return Readable.from([...this.wills.values()].filter((w) => !brokers[w.brokerId ?? '']));
  }

  getClientList(topic: string): Readable {
    return Readable.from([...this.subscriptions].filter(([, m]) => m.has(topic)).map(([id]) => id));
  }

  async destroy(): Promise<void> {
    this.retained.clear();
  }
}

function* retainedByPattern(retained: Map<string, StoredPacket>, pattern: string): Generator<StoredPacket> {
  const q = new QlobberTrue(QLOBBER_OPTIONS);
  q.add(pattern);
  for (const [topic, packet] of retained) if (q.test(topic)) yield packet;
}
