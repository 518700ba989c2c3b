// Messages on their way to a client: aedes 1.2's per-client deliver0 and deliverQoS, wrapped. Every
// delivery to a client — each subscription's, and the retained messages sent on subscribing — calls
// one of the two, looked up on the client when used (aedes' subscription handlers capture them when
// the client subscribes, after accept() wrapped them). Two things happen here:
//
// 1. The granted QoS. [MQTT-3.8.4-6] [MQTT-3.3.5-1]: a message goes to a client at min(its QoS, the
//    highest QoS granted to the client's subscriptions that match it). aedes 1.2 uses whichever
//    matching subscription it serves first (the others are deduplicated away) and downgrades only by
//    a subscription whose filter IS the topic: a QoS 1 `a/#` received QoS 2 messages, and `a/#` QoS 0
//    next to `a/+` QoS 2 delivered at QoS 0.
//
// 2. The outgoing in-flight window (./inflight-window.ts): aedes has none. The narrowest points to
//    hook it in:
//    - deliverQoS, the one way a QoS 1/2 message goes to a connected client: the window is offered
//      the message instead, and sends it through the original deliverQoS now or once there is room
//      (deliverQoS assigns no packet identifier when the packet has one: the window gives it);
//    - the client's PUBACK and PUBCOMP, seen on its parser's 'packet' event after aedes' handler,
//      which has cleared the message from the session store (synchronously), has run;
//    - aedes' 'clientReady' (after CONNACK and a resumed session's resends: emptyQueue writes what
//      outgoingStream yields, which is only what was sent before, ./session-store.ts
//      resumeSentOnly) opens the window: from then on the rest of the queue goes as it allows;
//    - the socket's close ends it.
//    Not hooked: aedes' persistence calls (outgoingEnqueue, outgoingUpdate) — the queue stays the
//    session store's, and the window asks it what waits.
import type { AedesPublishPacket, Client } from 'aedes';
import { matchesValid } from '../topics/index.js';
import { InflightWindow, type WaitBounds, type WindowCounters, type WindowPacket, type WindowQueue } from './inflight-window.js';
/** What is reached of an aedes client, and why: ./upstream/client-delivery.ts. */
import type { DeliveryClient as AedesClient } from './upstream/client-delivery.js';

export interface DeliveryOptions {
  /** The QoS granted per filter to the client (authorizeSubscribe's record); undefined until it authenticated. */
  granted(client: Client): ReadonlyMap<string, number> | undefined;
  /** A message is about to wait in memory for a client: keep with it what its delivery needs. */
  keep(packet: WindowPacket): void;
  /** The client's window filled and a message has to wait (once per connection). */
  full(client: Client, max: number): void;
  /** The bound of all queues together (the session store's). */
  reserve(bytes: number): boolean;
  release(bytes: number): void;
  readonly counters: WindowCounters;
}

export class Delivery {
  /** The packet being handed to aedes' deliverQoS now, its QoS already the granted one (authorizeForward leaves it). */
  routedPacket: AedesPublishPacket | null = null;
  /** The packet a window is sending now, and whether authorizeForward let it through. */
  private sending: unknown = null;
  private sendingForwarded = false;
  private readonly windows = new WeakMap<Client, InflightWindow>();

  constructor(private readonly opts: DeliveryOptions) {}

  /** Wraps a new client's deliveries (at accept, before it can subscribe). */
  wrap(client: Client): void {
    const c = client as unknown as AedesClient;
    const deliver0 = c.deliver0;
    const deliverQoS = c.deliverQoS;
    let granted: ReadonlyMap<string, number> | undefined; // set once, when the client has authenticated
    let window: InflightWindow | undefined;
    const route = (packet: AedesPublishPacket, cb: () => void): void => {
      if (packet.qos === 0) return deliver0(packet, cb);
      granted ??= this.opts.granted(client);
      const g = granted ? qosFor(c, granted, packet.topic) : undefined;
      const qos = g === undefined ? packet.qos : Math.min(packet.qos, g);
      if (qos === 0) return deliver0(packet, cb);
      packet.qos = qos as 1 | 2;
      window ??= this.windows.get(client);
      if (window) window.offer(packet as unknown as WindowPacket, cb);
      else this.send(c, deliverQoS, packet, true, false, cb);
    };
    c.deliver0 = route;
    c.deliverQoS = route;
    this.deliver0.set(client, deliver0);
    c._parser.on('packet', (p) => {
      if ((p.cmd === 'puback' || p.cmd === 'pubcomp') && p.messageId !== undefined) this.windows.get(client)?.acked(p.messageId);
    });
    c.conn.once('close', () => this.windows.get(client)?.close());
    this.deliverQoS.set(client, deliverQoS);
  }

  /** aedes' own deliverQoS of each client, for the windows' sends. */
  private readonly deliverQoS = new WeakMap<Client, AedesClient['deliverQoS']>();
  /** The copies (deliverCopy) a window sends: they leave aedes' duplicate check as it was. */
  private readonly copies = new WeakSet<object>();
  /** aedes' own deliver0 of each client, for copies. */
  private readonly deliver0 = new WeakMap<Client, AedesClient['deliver0']>();

  /**
   * A shared subscription's copy of a message (./shared-subscriptions.ts), its QoS already the one to
   * send it at: not deduplicated against the copies of the same message the client gets through its
   * other subscriptions (MQTT 5 4.8.2: a client with an ordinary and a shared subscription matching a
   * message may get it twice), and leaving aedes' and the window's duplicate checks as they were, so
   * that it does not suppress those either. Otherwise a delivery like any (authorizeForward decides it).
   */
  deliverCopy(client: Client, packet: AedesPublishPacket, cb: () => void): void {
    const c = client as unknown as AedesClient;
    if (packet.qos === 0) {
      const deliver0 = this.deliver0.get(client);
      if (!deliver0) return void setImmediate(cb);
      const id = (packet as { brokerId?: string }).brokerId;
      if (!id) return deliver0(packet, cb);
      const before = c.duplicates[id];
      c.duplicates[id] = ((packet as { brokerCounter?: number }).brokerCounter ?? 0) - 1;
      try {
        deliver0(packet, cb);
      } finally {
        if (before === undefined) delete c.duplicates[id];
        else c.duplicates[id] = before;
      }
      return;
    }
    const window = this.windows.get(client);
    if (window) {
      this.copies.add(packet);
      return window.offer(packet as unknown as WindowPacket, cb, true);
    }
    const deliverQoS = this.deliverQoS.get(client);
    if (!deliverQoS) return void setImmediate(cb);
    this.send(c, deliverQoS, packet, true, 'transparent', cb);
  }

  /**
   * Gives an authenticated client its window: at most `max` unacknowledged QoS 1/2 messages; a
   * persistent session's messages wait in `queue`, a clean session's in memory within `bounds`.
   * It opens at ready().
   */
  openWindow(client: Client, max: number, bounds: WaitBounds, queue: WindowQueue | null): void {
    const c = client as unknown as AedesClient;
    const deliverQoS = this.deliverQoS.get(client);
    if (!deliverQoS) return;
    const o = this.opts;
    const window = new InflightWindow(
      max,
      bounds,
      queue,
      {
        send: (packet, routed, done) => this.send(c, deliverQoS, packet as unknown as AedesPublishPacket, routed, this.copies.has(packet) ? 'transparent' : true, done),
        nextId: () => {
          const id = c._nextId >= 1 && c._nextId <= 65535 ? c._nextId : 1;
          c._nextId = id >= 65535 ? 1 : id + 1;
          return id;
        },
        keep: (packet) => o.keep(packet),
        full: () => o.full(client, max),
        reserve: (bytes) => o.reserve(bytes),
        release: (bytes) => o.release(bytes),
      },
      o.counters,
    );
    this.windows.set(client, window);
  }

  /** aedes' 'clientReady': CONNACK is out, and a resumed session's resends. */
  ready(client: Client): void {
    this.windows.get(client)?.open();
  }

  /** The highest QoS granted to the client's subscriptions that match the topic; undefined when none does. */
  qosFor(client: Client, topic: string): number | undefined {
    const granted = this.opts.granted(client);
    return granted ? qosFor(client as unknown as AedesClient, granted, topic) : undefined;
  }

  /** authorizeForward's answer for a packet (read back by a window's send). */
  forwarded(packet: unknown, ok: boolean): void {
    if (packet === this.sending) this.sendingForwarded = ok;
  }

  /**
   * Hands a packet to aedes' deliverQoS; returns whether it was forwarded (authorizeForward let it
   * through: it will be written). `routed`: its QoS is already the granted one.
   */
  private send(c: AedesClient, deliverQoS: AedesClient['deliverQoS'], packet: AedesPublishPacket, routed: boolean, bypassDuplicates: boolean | 'transparent', done: () => void): boolean {
    // aedes' duplicate check keeps the newest brokerCounter delivered per brokerId and drops anything
    // older: a message that waited in a window while a newer one went out (at QoS 0, or a message of
    // the same publish to another subscription) would be dropped. The window offers each message once
    // (its own check), so for its sends aedes' check is passed: set just below this packet's counter
    // for the synchronous check in deliverQoS, then put back (as aedes would have left it).
    const id = (packet as { brokerId?: string }).brokerId;
    const counter = (packet as { brokerCounter?: number }).brokerCounter ?? 0;
    const bypass = bypassDuplicates && !!id;
    const before = bypass ? c.duplicates[id!] : undefined;
    if (bypass) c.duplicates[id!] = counter - 1;
    this.routedPacket = routed ? packet : null;
    this.sending = packet;
    this.sendingForwarded = false;
    try {
      deliverQoS(packet, done);
    } finally {
      this.routedPacket = null;
      this.sending = null;
      // 'transparent' (a copy, deliverCopy): as if it had not been sent.
      if (bypass) {
        if (bypassDuplicates !== 'transparent') c.duplicates[id!] = Math.max(before ?? 0, counter);
        else if (before === undefined) delete c.duplicates[id!];
        else c.duplicates[id!] = before;
      }
    }
    // aedes then downgrades by the subscription named like the topic, if any (when it builds the
    // packet, on the next turn): it must not undercut the granted QoS.
    const literal = c.subscriptions[packet.topic];
    if (literal && literal.qos < packet.qos) literal.qos = packet.qos;
    return this.sendingForwarded;
  }
}

function qosFor(c: AedesClient, granted: ReadonlyMap<string, number>, topic: string): number | undefined {
  let max: number | undefined;
  for (const filter in c.subscriptions) {
    if (!matchesValid(filter, topic)) continue;
    const q = granted.get(filter) ?? c.subscriptions[filter]!.qos;
    if (max === undefined || q > max) max = q;
    if (max >= 2) break;
  }
  return max;
}
