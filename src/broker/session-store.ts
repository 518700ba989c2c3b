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
// - Persistent sessions belong to the principal that made them (`ownerOf`): after a restart too, no
//   other principal takes over a client id's session and the commands queued for it.
//
// Durable (with a SessionJournal, src/store/session-journal.ts): every change to persistent
// sessions, their queues and retained messages is journaled; `SessionStore.load` rebuilds the
// state after a restart, each queued action with its authority, so it is decided again at delivery
// like before the restart. Inbound QoS 2 packets awaiting PUBREL and wills are kept in memory only:
// a will is a promise of the connection that the restart ended, and a PUBREL for a packet the
// restart forgot is answered with PUBCOMP all the same.
//
// Every aedes method is async (aedes 1.2 calls `.then` on each) and never throws synchronously.
import { Readable } from 'node:stream';
import type { Authority } from './authority.js';
import { SessionJournal } from '../store/session-journal.js';
import { inboundWindowExceeded } from './upstream/inbound-qos2-window.js';
import {
  OutgoingQueue,
  QLOBBER_OPTIONS,
  RECORD_FORMAT,
  QlobberSub,
  copyPacket,
  entryBytes,
  keyOf,
  queueCopy,
  retainedByPattern,
  revive,
  type Change,
  type DroppedMessage,
  type QueueLimits,
  type QueuedMessage,
  type SessionStoreOptions,
  type SessionStoreStats,
  type StateDoc,
  type StoredPacket,
  type StoredSubscription,
  type TrieSub,
} from './session-types.js';

export {
  ENTRY_OVERHEAD_BYTES,
  entryBytes,
  type DroppedMessage,
  type QueueLimitEvent,
  type QueueLimits,
  type QueuedMessage,
  type SessionStoreOptions,
  type SessionStoreStats,
  type StoredPacket,
  type StoredSubscription,
} from './session-types.js';

export class SessionStore {
  private readonly retained = new Map<string, StoredPacket>();
  /** Persistent sessions' owners: the principal (null = anonymous) that made each. */
  private readonly owners = new Map<string, string | null>();
  private journal: SessionJournal | null = null;
  private readonly subscriptions = new Map<string, Map<string, Omit<StoredSubscription, 'topic'>>>();
  private readonly trie = new QlobberSub(QLOBBER_OPTIONS);
  private readonly outgoing = new Map<string, OutgoingQueue>();
  private readonly incoming = new Map<string, Map<number, StoredPacket>>();
  private readonly wills = new Map<string, StoredPacket>();
  private brokerId = '';
  /** Queued messages that carry an authority (dropExpired has nothing to do while 0). */
  private actionsQueued = 0;
  /** entryBytes of every queued message. */
  private totalBytes = 0;
  /** Bytes of messages waiting elsewhere (clean sessions' in-flight windows), counted against maxTotalBytes. */
  private reservedBytes = 0;
  /** When each persistent session was last seen connected (ms, the agent's time floor); absent while connected or unknown. */
  private readonly lastSeen = new Map<string, number>();
  /** MQTT 5 sessions' Session Expiry Interval (s, already bounded by sessions.expirySeconds); absent: sessions.expirySeconds. */
  private readonly sessionExpiry = new Map<string, number>();
  /** The earliest time an MQTT 5 session's own expiry may end it (the broker sweeps then); Infinity: none. */
  nextSessionExpiry = Infinity;
  /** Queued messages, not actions, that carry an MQTT 5 message expiry (dropExpired looks at them). */
  private expiringQueued = 0;
  /** Messages dropped (oldest of a full session) and refused (all queues full) since start. */
  readonly limitCounters = { droppedOldest: 0, refusedTotal: 0, expiredSessions: 0, expiredMessages: 0 };
  private readonly now: () => number;

  constructor(private readonly opts: SessionStoreOptions = {}) {
    this.now = opts.now ?? Date.now;
  }

  /** A store with its state read back from its journal (opts.journal), or an empty one in memory. */
  static async load(opts: SessionStoreOptions): Promise<SessionStore> {
    const store = new SessionStore(opts);
    if (!opts.journal) return store;
    const { journal, state, changes } = await SessionJournal.open(opts.journal);
    if (state !== null) store.restore(state as StateDoc);
    for (const c of changes) store.apply(c as Change);
    store.journal = journal;
    // Nobody is connected after a start: every session's expiry counts from now, but for an MQTT 5
    // session that disconnected before the stop: its Session Expiry Interval counts from then.
    const now = store.now();
    for (const id of store.owners.keys()) {
      const seen = store.sessionExpiry.has(id) ? store.lastSeen.get(id) : undefined;
      store.lastSeen.set(id, seen ?? now);
      const expiry = store.sessionExpiry.get(id);
      if (expiry !== undefined) store.nextSessionExpiry = Math.min(store.nextSessionExpiry, (seen ?? now) + expiry * 1000);
    }
    for (const id of store.sessionExpiry.keys()) if (!store.owners.has(id)) store.sessionExpiry.delete(id);
    return store;
  }

  async setup(broker: { id: string }): Promise<void> {
    this.brokerId = broker.id;
  }

  /** Writes the whole state and closes the journal (a fast start next time). */
  async close(): Promise<void> {
    await this.journal?.close(this.serialize());
    this.journal = null;
  }

  /** Journals a change already applied in memory; compacts when the journal has grown past its bound. */
  private record(change: Change): void {
    const j = this.journal;
    if (j === null) return;
    j.append(change);
    if (j.wantsCompaction) void j.compact(this.serialize());
  }

  /** Replays one journaled change (unknown or malformed ones are skipped). */
  private apply(c: Change): void {
    if (Array.isArray(c) && c[0] === 'E' && Array.isArray(c[1])) {
      const p = revive(c[3]);
      for (const id of c[1]) if (typeof id === 'string') this.put(id, c[2], copyPacket(p), c[4] ?? null);
      return;
    }
    if (!Array.isArray(c) || typeof c[1] !== 'string') return;
    switch (c[0]) {
      case 'r':
        if (c[2] === null) this.retained.delete(c[1]);
        else this.retained.set(c[1], revive(c[2]));
        return;
      case 's':
        this.subscribe(c[1], { topic: c[2], qos: c[3], rh: c[4], rap: c[5], nl: c[6], ...(typeof c[7] === 'number' ? { subscriptionIdentifier: c[7] } : {}) });
        return;
      case 'd':
        this.setSessionExpiry(c[1], c[2], c[3]);
        return;
      case 'u':
        this.unsubscribe(c[1], c[2]);
        return;
      case 'o':
        this.owners.set(c[1], c[2]);
        return;
      case 'c':
        this.discard(c[1]);
        return;
      case 'e':
        this.put(c[1], c[2], revive(c[3]), c[4] ?? null);
        return;
      case 'm': {
        const q = this.outgoing.get(c[1]);
        const e = q?.entries.get(c[2]);
        if (q && e) this.assignMessageId(q, c[2], e, c[3]);
        return;
      }
      case 'p': {
        const q = this.outgoing.get(c[1]);
        const e = q?.entries.get(c[2]);
        if (e) this.toPubrel(e, c[3], q);
        return;
      }
      case 'x': {
        const q = this.outgoing.get(c[1]);
        const e = q?.entries.get(c[2]);
        if (q && e) this.removeEntry(c[1], q, c[2], e);
        return;
      }
    }
  }

  private serialize(): StateDoc {
    return {
      format: RECORD_FORMAT,
      retained: [...this.retained.values()],
      owners: [...this.owners],
      subscriptions: [...this.subscriptions].map(([id, m]) => [id, [...m].map(([topic, s]) => [topic, s.qos, s.rh, s.rap, s.nl, s.subscriptionIdentifier])]),
      sessionExpiry: [...this.sessionExpiry].map(([id, seconds]) => [id, this.lastSeen.get(id) ?? null, seconds]),
      messages: this.uniqueMessages(),
      outgoing: [...this.outgoing].map(([id, q]) => [id, [...q.entries].map(([key, e]) => [key, e.packet.messageId ?? null, e.packet.cmd === 'pubrel' ? 1 : 0])]),
    };
  }

  private uniqueMessages(): [string, StoredPacket, Authority | null][] {
    const seen = new Map<string, [string, StoredPacket, Authority | null]>();
    for (const q of this.outgoing.values()) {
      for (const [key, e] of q.entries) {
        if (e.packet.cmd === 'pubrel' || seen.has(key)) continue;
        const p = copyPacket(e.packet);
        delete p.messageId;
        p.dup = false;
        seen.set(key, [key, p, e.authority]);
      }
    }
    return [...seen.values()];
  }

  private restore(doc: StateDoc): void {
    for (const p of doc.retained ?? []) if (typeof p?.topic === 'string') this.retained.set(p.topic, revive(p));
    for (const [id, owner] of doc.owners ?? []) this.owners.set(id, owner ?? null);
    for (const [id, subs] of doc.subscriptions ?? []) {
      for (const [topic, qos, rh, rap, nl, sid] of subs) this.subscribe(id, { topic, qos, rh, rap, nl, ...(typeof sid === 'number' ? { subscriptionIdentifier: sid } : {}) });
    }
    for (const [id, at, seconds] of doc.sessionExpiry ?? []) if (typeof id === 'string') this.setSessionExpiry(id, at, seconds);
    const messages = new Map<string, [StoredPacket, Authority | null]>();
    for (const [key, packet, authority] of doc.messages ?? []) messages.set(key, [revive(packet), authority ?? null]);
    for (const [id, entries] of doc.outgoing ?? []) {
      for (const [key, messageId, pubrel] of entries) {
        if (pubrel === 1) {
          if (typeof messageId === 'number') this.put(id, key, { cmd: 'pubrel', messageId }, null);
          continue;
        }
        const m = messages.get(key);
        if (!m) continue;
        const p = copyPacket(m[0]);
        if (typeof messageId === 'number') p.messageId = messageId;
        this.put(id, key, p, m[1]);
      }
    }
  }

  // --- owners of persistent sessions -----------------------------------------------------------------

  /** The principal a persistent session belongs to (null: anonymous); undefined: no such session. */
  ownerOf(clientId: string): string | null | undefined {
    return this.owners.get(clientId);
  }

  setOwner(clientId: string, owner: string | null): void {
    if (this.owners.has(clientId) && this.owners.get(clientId) === owner) return;
    this.owners.set(clientId, owner);
    this.record(['o', clientId, owner]);
  }

  /**
   * The session's client disconnected (its expiry counts from `at`, the time floor). `expirySeconds`:
   * an MQTT 5 client's Session Expiry Interval as it stands at the disconnect (journaled: a restart
   * keeps the deadline); null for MQTT 3.1.1 (sessions.expirySeconds, counted from the start).
   */
  disconnected(clientId: string, at: number, expirySeconds: number | null = null): void {
    if (!this.owners.has(clientId)) return;
    this.lastSeen.set(clientId, at);
    if (expirySeconds === null && !this.sessionExpiry.has(clientId)) return;
    this.setSessionExpiry(clientId, at, expirySeconds);
    this.record(['d', clientId, at, expirySeconds]);
    if (expirySeconds !== null) this.nextSessionExpiry = Math.min(this.nextSessionExpiry, at + expirySeconds * 1000);
  }

  /** The session's client is connected again: a restart from now on does not count its expiry from the last disconnect. */
  reconnected(clientId: string): void {
    const seconds = this.sessionExpiry.get(clientId);
    if (seconds === undefined || !this.lastSeen.has(clientId)) return;
    this.lastSeen.delete(clientId);
    this.record(['d', clientId, null, seconds]);
  }

  private setSessionExpiry(clientId: string, at: unknown, seconds: unknown): void {
    if (typeof seconds === 'number' && seconds >= 0) this.sessionExpiry.set(clientId, seconds);
    else this.sessionExpiry.delete(clientId);
    if (typeof at === 'number') this.lastSeen.set(clientId, at);
    else this.lastSeen.delete(clientId);
  }

  /** Persistent sessions (with an owner). */
  get sessionCount(): number {
    return this.owners.size;
  }

  /**
   * Ends the persistent sessions not connected for maxAgeMs, or for an MQTT 5 session's own Session
   * Expiry Interval when shorter; returns their client ids.
   */
  expireSessions(now: number, maxAgeMs: number, isConnected: (clientId: string) => boolean): string[] {
    const expired: string[] = [];
    let next = Infinity;
    for (const id of [...this.owners.keys()]) {
      if (isConnected(id)) continue;
      const seen = this.lastSeen.get(id);
      if (seen === undefined) {
        this.lastSeen.set(id, now);
        continue;
      }
      const own = this.sessionExpiry.get(id);
      const age = own === undefined ? maxAgeMs : Math.min(maxAgeMs, own * 1000);
      if (now - seen < age) {
        if (own !== undefined) next = Math.min(next, seen + age);
        continue;
      }
      this.discardSession(id);
      this.limitCounters.expiredSessions++;
      expired.push(id);
    }
    this.nextSessionExpiry = next;
    return expired;
  }

  /** Every persistent session's client id and owner. */
  sessionOwners(): IterableIterator<[string, string | null]> {
    return this.owners.entries();
  }

  /** Ends a persistent session: subscriptions, queue, owner (its owner left the snapshot). */
  discardSession(clientId: string): void {
    this.discard(clientId);
    this.record(['c', clientId]);
  }

  private discard(clientId: string): void {
    const stored = this.subscriptions.get(clientId);
    if (stored) {
      for (const [topic, s] of stored) if (s.qos > 0) this.trie.remove(topic, { clientId, topic });
      this.subscriptions.delete(clientId);
    }
    this.dropQueue(clientId);
    this.owners.delete(clientId);
    this.lastSeen.delete(clientId);
    this.sessionExpiry.delete(clientId);
  }

  // --- retained messages ---------------------------------------------------------------------------

  async storeRetained(packet: StoredPacket): Promise<void> {
    const topic = packet.topic ?? '';
    if (!packet.payload || packet.payload.length === 0) {
      if (this.retained.delete(topic)) this.record(['r', topic, null]);
    } else if (this.opts.isActionTopic?.(topic)) {
      return; // actions are never retained
    } else {
      const copy = queueCopy(packet);
      this.retained.set(topic, copy);
      this.record(['r', topic, copy]);
    }
  }

  createRetainedStreamCombi(patterns: string[]): Readable {
    const retained = this.retained;
    const self = this;
    return Readable.from(
      (function* () {
        for (const p of patterns) yield* self.unexpired(retainedByPattern(retained, p));
      })(),
    );
  }

  createRetainedStream(pattern: string): Readable {
    return Readable.from(this.unexpired(retainedByPattern(this.retained, pattern)));
  }

  /**
   * [MQTT-3.3.2-5] Retained messages whose Message Expiry Interval has not passed (on the time floor;
   * an expired one is removed); each with an expiry is handed over as a copy whose properties carry
   * the remaining interval [MQTT-3.3.2-6] and no `messageExpiry` (aedes would count it on the wall clock).
   */
  private *unexpired(packets: Iterable<StoredPacket>): Generator<StoredPacket> {
    for (const p of packets) {
      if (p.messageExpiry === undefined) {
        yield p;
        continue;
      }
      const remaining = p.messageExpiry - this.now();
      if (remaining <= 0) {
        const topic = p.topic ?? '';
        if (this.retained.get(topic) === p) {
          this.retained.delete(topic);
          this.record(['r', topic, null]);
          this.limitCounters.expiredMessages++;
        }
        continue;
      }
      const c = copyPacket(p);
      delete c.messageExpiry;
      c.properties = { ...p.properties, messageExpiryInterval: Math.ceil(remaining / 1000) };
      yield c;
    }
  }

  /** Removes every retained message on a topic `drop` says; returns how many. */
  purgeRetained(drop: (topic: string) => boolean): number {
    let n = 0;
    for (const topic of [...this.retained.keys()]) {
      if (drop(topic)) {
        this.retained.delete(topic);
        this.record(['r', topic, null]);
        n++;
      }
    }
    return n;
  }

  // --- subscriptions of persistent sessions ----------------------------------------------------------

  async addSubscriptions(client: { id: string }, subs: StoredSubscription[]): Promise<void> {
    for (const sub of subs) {
      if (this.opts.isGranted && !this.opts.isGranted(client, sub.topic)) continue;
      const previous = this.subscriptions.get(client.id)?.get(sub.topic);
      const sid = typeof sub.subscriptionIdentifier === 'number' ? sub.subscriptionIdentifier : undefined;
      if (previous && previous.qos === sub.qos && previous.rh === sub.rh && previous.rap === sub.rap && previous.nl === sub.nl && previous.subscriptionIdentifier === sid) continue;
      this.subscribe(client.id, { topic: sub.topic, qos: sub.qos, rh: sub.rh, rap: sub.rap, nl: sub.nl, ...(sid !== undefined ? { subscriptionIdentifier: sid } : {}) });
      this.record(sid === undefined ? ['s', client.id, sub.topic, sub.qos, sub.rh, sub.rap, sub.nl] : ['s', client.id, sub.topic, sub.qos, sub.rh, sub.rap, sub.nl, sid]);
    }
  }

  private subscribe(clientId: string, sub: StoredSubscription): void {
    let stored = this.subscriptions.get(clientId);
    if (!stored) {
      stored = new Map();
      this.subscriptions.set(clientId, stored);
    }
    const previous = stored.get(sub.topic);
    if (sub.qos > 0) this.trie.add(sub.topic, { clientId, topic: sub.topic, qos: sub.qos, rh: sub.rh, rap: sub.rap, nl: sub.nl });
    else if (previous && previous.qos > 0) this.trie.remove(sub.topic, { clientId, topic: sub.topic });
    stored.set(sub.topic, { qos: sub.qos, rh: sub.rh, rap: sub.rap, nl: sub.nl, ...(sub.subscriptionIdentifier !== undefined ? { subscriptionIdentifier: sub.subscriptionIdentifier } : {}) });
  }

  async removeSubscriptions(client: { id: string }, topics: string[]): Promise<void> {
    for (const topic of topics) if (this.unsubscribe(client.id, topic)) this.record(['u', client.id, topic]);
  }

  private unsubscribe(clientId: string, topic: string): boolean {
    const stored = this.subscriptions.get(clientId);
    const s = stored?.get(topic);
    if (!stored || s === undefined) return false;
    if (s.qos > 0) this.trie.remove(topic, { clientId, topic });
    stored.delete(topic);
    if (stored.size === 0) this.subscriptions.delete(clientId);
    return true;
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

  /** The session ends ([MQTT-3.1.2-6]): its subscriptions, and the messages queued for it. (Its owner is the broker's to clear.) */
  async cleanSubscriptions(client: { id: string }): Promise<void> {
    if (!this.subscriptions.has(client.id) && !this.outgoing.has(client.id)) return;
    const owner = this.owners.get(client.id);
    this.discard(client.id);
    if (owner !== undefined) this.owners.set(client.id, owner);
    this.record(['c', client.id]);
    if (owner !== undefined) this.record(['o', client.id, owner]);
  }

  // --- outgoing queues -------------------------------------------------------------------------------

  async outgoingEnqueue(sub: { clientId: string }, packet: StoredPacket): Promise<void> {
    this.enqueue(sub.clientId, packet, this.opts.authorityOf?.(packet.brokerId, packet.brokerCounter) ?? null);
  }

  /** One message for every matching persistent session: journaled once, whatever the number of sessions. */
  async outgoingEnqueueCombi(subs: { clientId: string }[], packet: StoredPacket): Promise<void> {
    // aedes 2 calls this for every QoS 1/2 publish, with no session at all when every subscriber is a
    // clean one: nothing to copy then.
    if (subs.length === 0) return;
    if (subs.length === 1) return this.outgoingEnqueue(subs[0]!, packet);
    const authority = this.opts.authorityOf?.(packet.brokerId, packet.brokerCounter) ?? null;
    const key = keyOf(packet.brokerId, packet.brokerCounter);
    const copy = queueCopy(packet);
    const added: string[] = [];
    for (const sub of subs) if (this.admit(sub.clientId, key, copy, authority)) added.push(sub.clientId);
    if (added.length === 0) return;
    this.record(['E', added, key, copy, authority]);
    const limits = this.opts.limits;
    if (limits) for (const id of added) this.trim(id, limits);
  }

  private enqueue(clientId: string, packet: StoredPacket, authority: Authority | null): void {
    const key = keyOf(packet.brokerId, packet.brokerCounter);
    const copy = queueCopy(packet);
    if (!this.admit(clientId, key, copy, authority)) return;
    this.record(['e', clientId, key, copy, authority]);
    const limits = this.opts.limits;
    if (limits) this.trim(clientId, limits);
  }

  /** Puts a copy of the message into the client's queue unless it is there or the bounds refuse it. */
  private admit(clientId: string, key: string, copy: StoredPacket, authority: Authority | null): boolean {
    if (this.outgoing.get(clientId)?.entries.has(key)) return false; // the same message twice (two matching subscriptions): once
    const limits = this.opts.limits;
    // All queues together are full: the new message is not queued (which session's oldest to give up
    // would be arbitrary; the gateway protects itself). Nor is one larger than a session may hold.
    if (limits && (this.totalBytes + this.reservedBytes + entryBytes(copy) > limits.maxTotalBytes || entryBytes(copy) > limits.maxBytes)) {
      this.limitCounters.refusedTotal++;
      this.opts.onQueueLimit?.({ clientId, bound: 'total', packet: copy, authority });
      return false;
    }
    this.put(clientId, key, copyPacket(copy), authority);
    return true;
  }

  /**
   * A session's queue past its bounds gives up its oldest messages: a device that comes back wants
   * the newest state, and what is oldest is nearest its time to live anyway.
   */
  private trim(clientId: string, limits: QueueLimits): void {
    const q = this.outgoing.get(clientId);
    if (!q) return;
    while (q.entries.size > limits.maxMessages || q.bytes > limits.maxBytes) {
      const first = q.entries.entries().next();
      if (first.done) return;
      const [key, entry] = first.value;
      this.removeEntry(clientId, q, key, entry);
      this.record(['x', clientId, key]);
      this.limitCounters.droppedOldest++;
      this.opts.onQueueLimit?.({ clientId, bound: 'session', packet: entry.packet, authority: entry.authority });
      if (q.entries.size === 0) return;
    }
  }

  private put(clientId: string, key: string, packet: StoredPacket, authority: Authority | null): void {
    let q = this.outgoing.get(clientId);
    if (!q) {
      q = new OutgoingQueue();
      this.outgoing.set(clientId, q);
    }
    if (q.entries.has(key)) return;
    q.entries.set(key, { packet, authority });
    const n = entryBytes(packet);
    q.bytes += n;
    this.totalBytes += n;
    if (authority) this.actionsQueued++;
    else if (packet.messageExpiry !== undefined) this.expiringQueued++;
    if (packet.messageId !== undefined) q.byMessageId.set(packet.messageId, key);
  }

  private assignMessageId(q: OutgoingQueue, key: string, entry: QueuedMessage, messageId: number): void {
    const old = entry.packet.messageId;
    if (old !== undefined && old !== messageId && q.byMessageId.get(old) === key) q.byMessageId.delete(old);
    entry.packet.messageId = messageId;
    q.byMessageId.set(messageId, key);
  }

  private toPubrel(entry: QueuedMessage, messageId: number, q: OutgoingQueue | undefined): void {
    if (entry.authority) this.actionsQueued--;
    else if (entry.packet.messageExpiry !== undefined) this.expiringQueued--;
    const before = entryBytes(entry.packet);
    entry.packet = { cmd: 'pubrel', messageId };
    entry.authority = null;
    const delta = entryBytes(entry.packet) - before;
    if (q) q.bytes += delta;
    this.totalBytes += delta;
  }

  /** A PUBLISH got its packet identifier (it is being sent), or a PUBREL replaces its PUBLISH. */
  async outgoingUpdate(client: { id: string }, packet: StoredPacket): Promise<void> {
    const q = this.outgoing.get(client.id);
    if (packet.cmd === 'pubrel') {
      const key = packet.messageId === undefined ? undefined : q?.byMessageId.get(packet.messageId);
      const entry = key === undefined ? undefined : q!.entries.get(key);
      if (!entry) return; // nothing to replace: the PUBREL is sent all the same
      this.toPubrel(entry, packet.messageId!, q);
      this.record(['p', client.id, key!, packet.messageId!]);
      return;
    }
    const key = keyOf(packet.brokerId, packet.brokerCounter);
    let entry = q?.entries.get(key);
    if (!entry) {
      // Delivered live to a persistent session whose queue copy is gone (dropped as expired in
      // between, or never queued: all queues were full): track it again, so that its PUBACK has
      // something to clear. When the bounds refuse that too, it is sent untracked (as to a clean
      // session); rejecting here would make aedes close the client.
      this.enqueue(client.id, packet, this.opts.authorityOf?.(packet.brokerId, packet.brokerCounter) ?? null);
      entry = this.outgoing.get(client.id)?.entries.get(key);
      if (!entry) return;
    }
    if (packet.messageId !== undefined && entry.packet.messageId !== packet.messageId) {
      this.assignMessageId(this.outgoing.get(client.id)!, key, entry, packet.messageId);
      this.record(['m', client.id, key, packet.messageId]);
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
    this.record(['x', client.id, key]);
    return entry.packet;
  }

  /**
   * The queue in order, as aedes resends it when the session resumes; a PUBLISH sent before (it has
   * a packet identifier) comes back with DUP 1. With resumeSentOnly, only what was sent before.
   */
  outgoingStream(client: { id: string }): Readable {
    const q = this.outgoing.get(client.id);
    const entries = q ? [...q.entries.values()] : [];
    const resend = this.opts.resumeSentOnly ? entries.filter((e) => e.packet.messageId !== undefined) : entries;
    // A copy of the properties too: aedes writes the remaining expiry interval into them in place.
    return Readable.from(
      resend.map((e) =>
        e.packet.cmd === 'publish' && e.packet.messageId !== undefined
          ? { ...e.packet, dup: true, ...(e.packet.properties !== undefined ? { properties: { ...e.packet.properties } } : {}) }
          : e.packet,
      ),
    );
  }

  // --- for the in-flight window (./inflight-window.ts: WindowQueue) -----------------------------------

  /** Where a message is in the client's queue: not yet sent, sent (it has a packet identifier), or not there. */
  queueState(clientId: string, packet: { brokerId?: string | null; brokerCounter?: number }): 'unsent' | 'sent' | 'absent' {
    const e = this.outgoing.get(clientId)?.entries.get(keyOf(packet.brokerId ?? undefined, packet.brokerCounter));
    return e === undefined ? 'absent' : e.packet.messageId === undefined ? 'unsent' : 'sent';
  }

  /** Copies of the client's queued PUBLISHes not yet sent, oldest first (safe to send while iterating). */
  *unsent(clientId: string): Generator<StoredPacket> {
    const q = this.outgoing.get(clientId);
    if (!q) return;
    for (const e of q.entries.values()) if (e.packet.cmd === 'publish' && e.packet.messageId === undefined) yield copyPacket(e.packet);
  }

  /** A queued message is being sent with this packet identifier (what outgoingUpdate records, at once). */
  markSent(clientId: string, packet: { brokerId?: string | null; brokerCounter?: number }, messageId: number): void {
    const q = this.outgoing.get(clientId);
    const key = keyOf(packet.brokerId ?? undefined, packet.brokerCounter);
    const entry = q?.entries.get(key);
    if (!q || !entry || entry.packet.messageId === messageId) return;
    this.assignMessageId(q, key, entry, messageId);
    this.record(['m', clientId, key, messageId]);
  }

  /** Packet identifiers of the client's messages sent and not acknowledged (PUBLISH, or PUBREL). */
  sentIds(clientId: string): number[] {
    return [...(this.outgoing.get(clientId)?.byMessageId.keys() ?? [])];
  }

  /** Takes `bytes` from the bound of all queues together for a message waiting elsewhere; false when it would pass it. */
  reserve(bytes: number): boolean {
    const limits = this.opts.limits;
    if (limits && this.totalBytes + this.reservedBytes + bytes > limits.maxTotalBytes) {
      this.limitCounters.refusedTotal++;
      return false;
    }
    this.reservedBytes += bytes;
    return true;
  }

  release(bytes: number): void {
    this.reservedBytes = Math.max(0, this.reservedBytes - bytes);
  }

  /** The authority of a queued message (null: queued without one; undefined: not queued for this client). */
  authorityOf(clientId: string, packet: { brokerId?: string; brokerCounter?: number }): Authority | null | undefined {
    return this.outgoing.get(clientId)?.entries.get(keyOf(packet.brokerId, packet.brokerCounter))?.authority;
  }

  /**
   * Drops the queued actions whose time to live (or message expiry, the shorter: see ActionGate) has
   * passed: those not yet sent, and those sent to a client that is not connected now (a connected
   * client's PUBACK clears what it was sent); returned, for the audit. Also drops the other queued
   * messages whose MQTT 5 Message Expiry Interval has passed [MQTT-3.3.2-5], the same way (counted).
   */
  dropExpired(now: number, isConnected: (clientId: string) => boolean): DroppedMessage[] {
    const dropped: DroppedMessage[] = [];
    if (this.actionsQueued === 0 && this.expiringQueued === 0) return dropped;
    for (const [clientId, q] of this.outgoing) {
      const connected = isConnected(clientId);
      for (const [key, entry] of q.entries) {
        const a = entry.authority;
        const expiresAt = a !== null ? a.expiresAt : entry.packet.messageExpiry;
        if (expiresAt === undefined || expiresAt > now) continue;
        if (connected && entry.packet.messageId !== undefined) continue;
        this.removeEntry(clientId, q, key, entry);
        this.record(['x', clientId, key]);
        if (a !== null) dropped.push({ clientId, packet: entry.packet, authority: a });
        else this.limitCounters.expiredMessages++;
      }
    }
    return dropped;
  }

  private removeEntry(clientId: string, q: OutgoingQueue, key: string, entry: QueuedMessage): void {
    q.entries.delete(key);
    const n = entryBytes(entry.packet);
    q.bytes -= n;
    this.totalBytes -= n;
    const id = entry.packet.messageId;
    if (id !== undefined && q.byMessageId.get(id) === key) q.byMessageId.delete(id);
    if (entry.authority) this.actionsQueued--;
    else if (entry.packet.messageExpiry !== undefined) this.expiringQueued--;
    if (q.entries.size === 0) this.outgoing.delete(clientId);
  }

  private dropQueue(clientId: string): void {
    const q = this.outgoing.get(clientId);
    if (!q) return;
    for (const e of q.entries.values()) {
      if (e.authority) this.actionsQueued--;
      else if (e.packet.messageExpiry !== undefined) this.expiringQueued--;
    }
    this.totalBytes -= q.bytes;
    this.outgoing.delete(clientId);
  }

  /** Messages queued for a client (tests, status). */
  queued(clientId: string): number {
    return this.outgoing.get(clientId)?.entries.size ?? 0;
  }

  /** What the store holds, for status and tests. */
  stats(): SessionStoreStats {
    let queued = 0;
    for (const q of this.outgoing.values()) queued += q.entries.size;
    let incoming = 0;
    for (const m of this.incoming.values()) incoming += m.size;
    return {
      retained: this.retained.size,
      sessions: this.owners.size,
      queued,
      queuedBytes: this.totalBytes,
      waitingBytes: this.reservedBytes,
      actionsQueued: this.actionsQueued,
      incoming,
      wills: this.wills.size,
      ...this.limitCounters,
    };
  }

  // --- inbound QoS 2 ---------------------------------------------------------------------------------

  async incomingStorePacket(client: { id: string }, packet: StoredPacket): Promise<void> {
    let m = this.incoming.get(client.id);
    if (!m) {
      m = new Map();
      this.incoming.set(client.id, m);
    }
    const max = this.opts.maxIncomingPerClient;
    // Checked and taken synchronously: aedes dispatches a whole read chunk concurrently.
    if (max !== undefined && max > 0 && !m.has(packet.messageId!) && m.size >= max) {
      throw inboundWindowExceeded(max); // aedes closes the connection (./upstream/inbound-qos2-window.ts)
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
    // aedes 2.0.0-beta.1 (./upstream/persistence-contract.ts): its PUBREL handler calls this under .finally() without a catch
    // (1.2.0 catches); two PUBRELs for one packet in one read race here, and a rejection would end the
    // process. Test: test/integration/aedes2-regressions.test.ts "two PUBRELs".
    if (!m || !m.delete(packet.messageId!)) return;
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
    await this.close();
  }
}

