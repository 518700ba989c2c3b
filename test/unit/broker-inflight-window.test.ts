// The outgoing in-flight window (src/broker/inflight-window.ts), with a fake session queue and a fake
// sender: what is sent and when, what waits where, packet identifiers, bounds and counters.
import t from 'tap';
import { InflightWindow, type WindowCounters, type WindowPacket, type WindowQueue } from '../../src/broker/inflight-window.js';
import { entryBytes } from '../../src/broker/session-store.js';

const msg = (counter: number, extra: Partial<WindowPacket> = {}): WindowPacket => ({ brokerId: 'b1', brokerCounter: counter, topic: 't/x', payload: Buffer.from(`p${counter}`), qos: 1, retain: false, ...extra });

/** A fake persistent session queue: entries by counter, with a packet identifier once sent. */
class FakeQueue implements WindowQueue {
  readonly entries = new Map<number, number | undefined>();
  put(...counters: number[]): void {
    for (const c of counters) this.entries.set(c, undefined);
  }
  state(p: WindowPacket): 'unsent' | 'sent' | 'absent' {
    if (!this.entries.has(p.brokerCounter!)) return 'absent';
    return this.entries.get(p.brokerCounter!) === undefined ? 'unsent' : 'sent';
  }
  *unsent(): Iterable<WindowPacket> {
    for (const [c, id] of this.entries) if (id === undefined) yield msg(c);
  }
  markSent(p: WindowPacket, messageId: number): void {
    this.entries.set(p.brokerCounter!, messageId);
  }
  sentIds(): Iterable<number> {
    return [...this.entries.values()].filter((id): id is number => id !== undefined);
  }
  /** The client acknowledged it: the entry goes (what aedes' PUBACK handler does to the store). */
  ack(messageId: number): void {
    for (const [c, id] of this.entries) if (id === messageId) this.entries.delete(c);
  }
}

interface Rig {
  w: InflightWindow;
  sent: { counter: number; id: number; routed: boolean }[];
  counters: WindowCounters;
  reserved: { bytes: number };
  fulls: number;
  refuse: Set<number>;
  nextId: { value: number };
}

function rig(o: { max?: number; messages?: number; bytes?: number; queue?: FakeQueue | null; total?: number } = {}): Rig {
  const sent: Rig['sent'] = [];
  const counters: WindowCounters = { deliveriesWaited: 0, deliveriesDroppedWaiting: 0, inflightWindowFull: 0 };
  const reserved = { bytes: 0 };
  const refuse = new Set<number>();
  const nextId = { value: 1 };
  const r: Rig = { sent, counters, reserved, fulls: 0, refuse, nextId, w: undefined as unknown as InflightWindow };
  r.w = new InflightWindow(o.max ?? 3, { messages: o.messages ?? 100, bytes: o.bytes ?? 1e6 }, o.queue ?? null, {
    send: (p, routed, done) => {
      setImmediate(done);
      if (refuse.has(p.brokerCounter!)) return false;
      sent.push({ counter: p.brokerCounter!, id: p.messageId!, routed });
      return true;
    },
    nextId: () => {
      const id = nextId.value;
      nextId.value = id >= 65535 ? 1 : id + 1;
      return id;
    },
    keep: () => undefined,
    full: () => r.fulls++,
    reserve: (n) => {
      if (reserved.bytes + n > (o.total ?? Infinity)) return false;
      reserved.bytes += n;
      return true;
    },
    release: (n) => void (reserved.bytes -= n),
  }, counters);
  return r;
}

const offer = (r: Rig, ...counters: number[]): void => {
  for (const c of counters) r.w.offer(msg(c), () => undefined);
};
const counters = (r: Rig) => r.sent.map((s) => s.counter);
/** Acknowledges everything sent, including what each acknowledgement lets through. */
const ackAll = (r: Rig, q?: FakeQueue): void => {
  for (let i = 0; i < r.sent.length; i++) {
    q?.ack(r.sent[i]!.id);
    r.w.acked(r.sent[i]!.id);
  }
};

t.test('clean session: the first `max` go at once, the rest wait in order and go as acknowledgements come', async (t) => {
  const r = rig({ max: 3 });
  r.w.open();
  offer(r, 1, 2, 3, 4, 5, 6, 7);
  t.same(counters(r), [1, 2, 3], 'three sent');
  t.equal(r.w.inFlight, 3);
  t.equal(r.w.waitingInMemory, 4);
  t.same(r.counters, { deliveriesWaited: 4, deliveriesDroppedWaiting: 0, inflightWindowFull: 1 });
  t.equal(r.fulls, 1, 'full() once');
  r.w.acked(r.sent[1]!.id);
  t.same(counters(r), [1, 2, 3, 4], 'one acknowledged, one more');
  r.w.acked(r.sent[1]!.id);
  t.same(counters(r), [1, 2, 3, 4], 'the same acknowledgement again frees nothing');
  r.w.acked(999);
  t.same(counters(r), [1, 2, 3, 4], 'nor does one for a packet identifier not in flight');
  ackAll(r);
  t.same(counters(r), [1, 2, 3, 4, 5, 6, 7], 'the rest, in order');
  t.ok(r.sent.every((s) => s.routed), 'sent with the QoS they were offered at');
  offer(r, 8);
  t.same(counters(r).slice(-1), [8], 'with room and nothing waiting, a new one goes at once');
  t.equal(r.fulls, 1, 'still one full()');
});

t.test('nothing goes before open(); a message offered twice (two matching subscriptions) is sent once', async (t) => {
  const r = rig({ max: 2 });
  offer(r, 1, 1, 2);
  t.same(counters(r), [], 'before open(): all wait');
  t.equal(r.counters.deliveriesWaited, 0, 'not counted as waiting for the window');
  r.w.open();
  t.same(counters(r), [1, 2]);
  offer(r, 2, 3, 3);
  r.w.acked(r.sent[0]!.id);
  r.w.acked(r.sent[1]!.id);
  t.same(counters(r), [1, 2, 3], 'repeats dropped, waiting or not');
  ackAll(r);
  r.w.offer(msg(0, { brokerId: null }), () => undefined);
  r.w.offer(msg(0, { brokerId: null }), () => undefined);
  t.same(counters(r), [1, 2, 3, 0, 0], 'retained messages sent on subscribing (no brokerId) are not deduplicated');
});

t.test('packet identifiers: from the client\'s counter, never one in flight', async (t) => {
  const r = rig({ max: 3 });
  r.nextId.value = 65534;
  r.w.open();
  offer(r, 1, 2, 3);
  t.same(r.sent.map((s) => s.id), [65534, 65535, 1], 'wrapping from 65535 to 1');
  r.w.acked(65535);
  r.nextId.value = 65534;
  offer(r, 4);
  t.equal(r.sent[3]!.id, 65535, '65534 is in flight: skipped');
});

t.test('a message refused at delivery frees its place at once', async (t) => {
  const r = rig({ max: 2 });
  r.refuse.add(2);
  r.w.open();
  offer(r, 1, 2, 3, 4);
  t.same(counters(r), [1, 3], '2 was refused; 3 took its place');
  t.equal(r.w.inFlight, 2);
  r.refuse.add(4);
  r.w.acked(r.sent[0]!.id);
  t.equal(r.w.inFlight, 1, '4, refused when its turn came, holds no place');
});

t.test('the in-memory wait: its bounds drop the oldest; the bound of all queues drops the new one; close gives the bytes back', async (t) => {
  const one = entryBytes(msg(1));
  const r = rig({ max: 1, messages: 3, total: 4 * one });
  r.w.open();
  offer(r, 1, 2, 3, 4, 5, 6);
  t.equal(r.w.waitingInMemory, 3, 'three wait');
  t.equal(r.counters.deliveriesDroppedWaiting, 2, 'the two oldest dropped');
  t.equal(r.reserved.bytes, 3 * one, 'their bytes reserved, the dropped ones given back');
  r.w.acked(r.sent[0]!.id);
  t.same(counters(r), [1, 4], 'the oldest still waiting goes next');
  const s = rig({ max: 1, total: 2 * one });
  s.w.open();
  offer(s, 1, 2, 3, 4);
  t.equal(s.w.waitingInMemory, 2, 'two fit the bound of all queues');
  t.equal(s.counters.deliveriesDroppedWaiting, 1, 'the newest does not');
  s.w.close();
  t.equal(s.reserved.bytes, 0, 'close() gives the bytes back');
  offer(s, 5);
  t.same(counters(s), [1], 'nothing is sent after close()');
  const big = rig({ max: 1, bytes: one - 1 });
  big.w.open();
  offer(big, 1, 2);
  t.equal(big.counters.deliveriesDroppedWaiting, 1, 'a message larger than the byte bound does not wait');
});

t.test('persistent session: waiting is the queue\'s; a resumed session counts its resends; the queue goes in order', async (t) => {
  const q = new FakeQueue();
  q.put(1, 2, 3);
  q.markSent(msg(1), 40); // sent before the reconnect, not acknowledged
  const r = rig({ max: 3, queue: q });
  q.put(4);
  offer(r, 4); // live, before open(): waits in the queue
  t.same(counters(r), [], 'nothing before open()');
  r.w.open();
  t.same(counters(r), [2, 3], 'open(): the resend (40) counts; 2 and 3 fill the window');
  t.ok(r.sent.every((s) => !s.routed), 'queued messages go at their stored QoS (authorizeForward grants)');
  t.equal(r.w.inFlight, 3);
  q.put(5);
  offer(r, 5);
  t.equal(r.w.waitingInMemory, 0, 'a queued message does not wait in memory');
  q.ack(40);
  r.w.acked(40);
  t.same(counters(r), [2, 3, 4], 'the resend acknowledged: the next in the queue');
  ackAll(r, q);
  t.same(counters(r), [2, 3, 4, 5], 'and the rest');
  q.put(6);
  offer(r, 6);
  t.same(counters(r), [2, 3, 4, 5, 6], 'with room and nothing waiting, live at once');
  offer(r, 6);
  t.same(counters(r), [2, 3, 4, 5, 6], 'a message already sent is not sent again');
  offer(r, 7);
  t.equal(r.counters.deliveriesDroppedWaiting, 0, 'a message the queue does not hold (all queues full), with room: sent');
  t.same(counters(r).slice(-1), [7]);
  offer(r, 8, 9);
  t.equal(r.counters.deliveriesDroppedWaiting, 1, 'without room: it cannot wait anywhere, dropped and counted');
  r.w.offer(msg(10, { retain: true }), () => undefined);
  t.equal(r.w.waitingInMemory, 1, 'a retained message sent on subscribing (never queued) waits in memory');
});
