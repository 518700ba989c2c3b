// The outgoing in-flight window of one client connection (limits.maxInflightOutbound): at most `max` QoS 1/2 messages sent to it
// and not yet acknowledged — PUBACK for QoS 1, PUBCOMP for QoS 2 (a PUBREC'd message awaits its
// PUBCOMP, and so still counts, as MQTT 5's Receive Maximum counts it). MQTT 3.1.1 lets a server
// bound this (4.4: "the Server [may] restrict the number of messages in flight"); aedes 1.2 does
// not, and a subscriber that never acknowledged was sent every message published to it.
//
// Messages past the window wait, and are sent in order as acknowledgements free it:
//   - a persistent session's (CleanSession=0) in its queue in the session store, where aedes put
//     it before delivering it (the queue's bounds, sessions.maxQueuedMessages and maxQueuedBytes,
//     drop the oldest); this window only notes that the queue holds messages it has not sent;
//   - a clean session's (and a retained message sent on subscribing, which aedes never queues) in
//     memory here, bounded like a session queue (waitBounds: dropping the oldest, counted) and
//     counted against the bytes all queues together may hold (sessions.maxTotalQueuedBytes: a
//     message that would pass it is dropped).
// A message that waits is decided at its delivery when it is sent, like any queued message.
//
// The window knows nothing of aedes: ./delivery.ts feeds it (offer, acked, open) and sends for it.
import { Deque } from './deque.js';
import { entryBytes } from './session-store.js';

/** A PUBLISH to be sent to the client (an aedes packet). */
export interface WindowPacket {
  brokerId?: string | null;
  brokerCounter?: number;
  topic: string;
  payload: Buffer;
  qos: number;
  retain: boolean;
  messageId?: number;
}

/** The client's persistent session's queue (in the session store); null for a clean session. */
export interface WindowQueue {
  /** Where the message is in the queue: waiting to be sent, sent (it has a packet identifier), or not there. */
  state(packet: WindowPacket): 'unsent' | 'sent' | 'absent';
  /** Copies of the queued messages not yet sent, oldest first. */
  unsent(): Iterable<WindowPacket>;
  /** The queued message is sent now, with this packet identifier. */
  markSent(packet: WindowPacket, messageId: number): void;
  /** The packet identifiers of the messages sent and not yet acknowledged (a PUBLISH, or the PUBREL that replaced it). */
  sentIds(): Iterable<number>;
}

/** What the window does through the broker. */
export interface WindowIo {
  /**
   * Sends the message (its messageId set) through aedes; `done` as aedes' own delivery callback.
   * `routed`: its QoS is already the granted one. Returns false when it was not sent (refused at
   * delivery): its place in the window is free again.
   */
  send(packet: WindowPacket, routed: boolean, done: () => void): boolean;
  /** The next packet identifier of the client's counter (1 to 65535). */
  nextId(): number;
  /** The message is about to wait in memory: keep with it what its delivery will need (an action's authority). */
  keep(packet: WindowPacket): void;
  /** The window is full and a message has to wait: called once per window. */
  full(): void;
  /** Takes bytes from the bound of all queues together; false when they would pass it. */
  reserve(bytes: number): boolean;
  release(bytes: number): void;
}

/** Bounds of the in-memory wait (sessions.maxQueuedMessages and maxQueuedBytes). */
export interface WaitBounds {
  readonly messages: number;
  readonly bytes: number;
}

/** Counters shared by all windows (the broker's status). */
export interface WindowCounters {
  /** Messages that waited for the window. */
  deliveriesWaited: number;
  /** Waiting messages dropped: the oldest of a full wait, or one no queue would take. */
  deliveriesDroppedWaiting: number;
  /** Windows that filled (clients told to wait; each logged once). */
  inflightWindowFull: number;
}

const noop = (): void => undefined;
const later = (done: () => void): void => void setImmediate(done);

export class InflightWindow {
  /** Packet identifiers sent and not yet acknowledged. */
  private readonly inflight = new Set<number>();
  /** Messages waiting in memory, oldest first. */
  private readonly waiting = new Deque();
  private waitingBytes = 0;
  /** The persistent session's queue may hold messages this window has not sent. */
  private backlog = false;
  /** Until open(), every message waits: a resuming session's resends go first, then the queue in order. */
  private ready = false;
  private closed = false;
  private pumping = false;
  private fullNoted = false;
  /** The newest brokerCounter offered, per brokerId: a message matching two of the client's subscriptions is offered twice. */
  private readonly offered = new Map<string, number>();

  constructor(
    readonly max: number,
    private readonly bounds: WaitBounds,
    private readonly queue: WindowQueue | null,
    private readonly io: WindowIo,
    private readonly counters: WindowCounters,
  ) {}

  /** Messages sent and not yet acknowledged. */
  get inFlight(): number {
    return this.inflight.size;
  }

  /** Messages waiting in memory (a persistent session's wait in its queue). */
  get waitingInMemory(): number {
    return this.waiting.length;
  }

  /**
   * A QoS 1/2 message for the client (its QoS the granted one): sent now if the window has room and
   * nothing older waits, else it waits. `done` is aedes' delivery callback: called once the message
   * is written, or at once when it waits (the message router must not wait for this client).
   * `copy`: a further copy of a message the client may also get through another subscription (a
   * shared subscription's): neither checked nor noted as offered.
   */
  offer(packet: WindowPacket, done: () => void, copy = false): void {
    if (this.closed || (!copy && this.isRepeat(packet))) return later(done);
    const where = this.queue !== null && !packet.retain ? this.queue.state(packet) : 'memory';
    if (where === 'sent') return later(done); // already sent (a resumed session's resend)
    if (this.hasRoom() && !this.backlog && this.waiting.length === 0) {
      this.admit(packet, where === 'unsent', true, done);
      return;
    }
    if (this.ready) {
      this.counters.deliveriesWaited++;
      if (this.inflight.size >= this.max && !this.fullNoted) {
        this.fullNoted = true;
        this.counters.inflightWindowFull++;
        this.io.full();
      }
    }
    if (where === 'unsent') this.backlog = true;
    else if (where === 'absent') this.counters.deliveriesDroppedWaiting++; // no queue took it (all queues full)
    else this.wait(packet);
    later(done);
    if (this.hasRoom()) this.pump();
  }

  /** The client acknowledged a message (PUBACK, PUBCOMP): its place is free; the next waiting go. */
  acked(messageId: number): void {
    if (this.inflight.delete(messageId)) this.pump();
  }

  /**
   * The connection is ready (after CONNACK, and a resumed session's resends): those resends are in
   * flight; the messages waiting go now, as far as the window allows.
   */
  open(): void {
    if (this.closed || this.ready) return;
    this.ready = true;
    if (this.queue !== null) {
      for (const id of this.queue.sentIds()) this.inflight.add(id);
      this.backlog = true;
    }
    this.pump();
  }

  /** The connection is gone: what waits in memory is dropped (a persistent session's queue keeps its own). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.io.release(this.waitingBytes);
    this.waitingBytes = 0;
    while (this.waiting.length > 0) this.waiting.shift();
  }

  private hasRoom(): boolean {
    return this.ready && !this.closed && this.inflight.size < this.max;
  }

  private isRepeat(packet: WindowPacket): boolean {
    const id = packet.brokerId;
    if (!id) return false; // a retained message sent on subscribing (aedes does not deduplicate those either)
    const counter = packet.brokerCounter ?? 0;
    const last = this.offered.get(id);
    if (last !== undefined && counter <= last) return true;
    this.offered.set(id, counter);
    return false;
  }

  private admit(packet: WindowPacket, queued: boolean, routed: boolean, done: () => void): void {
    const id = this.allocate();
    if (queued) this.queue!.markSent(packet, id);
    packet.messageId = id;
    this.inflight.add(id);
    if (!this.io.send(packet, routed, done)) this.inflight.delete(id);
  }

  /** A packet identifier not in flight (one is free: the window is smaller than the 65,535 there are). */
  private allocate(): number {
    for (;;) {
      const id = this.io.nextId();
      if (!this.inflight.has(id)) return id;
    }
  }

  /** Into the in-memory wait: past its bounds the oldest go; past the bound of all queues, this one does. */
  private wait(packet: WindowPacket): void {
    const bytes = entryBytes(packet);
    if (bytes > this.bounds.bytes || !this.io.reserve(bytes)) {
      this.counters.deliveriesDroppedWaiting++;
      return;
    }
    this.io.keep(packet);
    this.waiting.push(packet);
    this.waitingBytes += bytes;
    while (this.waiting.length > this.bounds.messages || this.waitingBytes > this.bounds.bytes) {
      this.release(this.waiting.shift() as WindowPacket);
      this.counters.deliveriesDroppedWaiting++;
    }
  }

  private release(packet: WindowPacket): void {
    const bytes = entryBytes(packet);
    this.waitingBytes -= bytes;
    this.io.release(bytes);
  }

  /** Sends what waits, oldest first — memory, then the session's queue — while the window has room. */
  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.hasRoom()) {
        if (this.waiting.length > 0) {
          const packet = this.waiting.shift() as WindowPacket;
          this.release(packet);
          this.admit(packet, false, true, noop);
          continue;
        }
        if (!this.backlog) return;
        let drained = true;
        for (const packet of this.queue!.unsent()) {
          if (!this.hasRoom()) {
            drained = false;
            break;
          }
          this.admit(packet, true, false, noop);
        }
        if (drained) this.backlog = false;
        return;
      }
    } finally {
      this.pumping = false;
    }
  }
}
