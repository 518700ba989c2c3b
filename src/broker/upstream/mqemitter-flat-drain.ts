// mqemitter 7.1.0 (aedes' message router, pinned exactly in package.json): two defects in draining its
// queue, corrected on our instance (aedes is given it as its `mq` option).
//
// 1. Recursion. mqemitter holds at most `concurrency` messages in delivery and queues the rest. When
//    a slow subscriber finally releases its slots (its socket drains, or it vanishes), the queue is
//    drained by `released -> _do -> released ...`; a message no subscriber matches completes
//    synchronously, so a long queue of such messages recurses once per message and ends in
//    "RangeError: Maximum call stack size exceeded" inside mqemitter/qlobber — bare aedes 1.2 dies
//    of it when a few clients flood QoS 0 publishes and vanish mid-flood.
//    Upstream: mcollina/mqemitter#204 (open pull request, "fix: prevent 'Maximum call stack size
//    exceeded' error": a setImmediate on every _do, refused for its cost; the maintainer asked for
//    "test if this was called in the same tick more than x times and then use setImmediate just in
//    that case" — which is what this guard does).
// 2. O(n^2) drain. The queue is two arrays drained with Array#shift, which copies the whole backing
//    store once an array is large: draining a flood's queue of n messages cost seconds of
//    event-loop time for 200,000 queued messages. No upstream issue found.
//
// The guard: past MAX_SYNC_DEPTH nested synchronous deliveries, the next message goes back to the
// HEAD of the queue and the slot it would have taken is held and released on a fresh stack
// (setImmediate). Whichever release comes first takes the head of the queue, so delivery order is the
// order of emit, and the stack stays flat. When another release takes the last waiting message, the
// held ("parked") slots have nothing left to deliver and are given back at once: otherwise a drain
// that ends that way leaves `current` above the number of deliveries in flight until the next
// event-loop turn (seen as slots "leaked" at the moment the last message completed, see
// test/unit/broker-mq.test.ts). While messages wait in the queue, a new emit queues behind them even
// if a slot is free (the held slot of a deferred message can leave one free): it must not overtake
// them. The queues are ring buffers (../deque.ts) instead of arrays.
//
// Internals it touches (mqemitter.js): the instance fields `_messageQueue`, `_messageCallbacks`
// (replaced: `released` reads them through `that.` at each call), `_do` (wrapped: `released` calls
// `that._do`), `_released`, `_doing`, `current`, `concurrency`, `closed`, and `emit` (wrapped).
// Shape test: test/unit/upstream-mqemitter-flat-drain.test.ts (fails when those fields change, and
// tells when a bare mqemitter no longer overflows the stack: then part 1 can go).
//
// The upstream fix (mqemitter.js), simple enough to offer: in the constructor's `released`, count the
// nested calls on the current stack, and past a bound (64) give the slot back on a fresh stack
// instead of taking the next message now —
//   let depth = 0
//   function released () {
//     if (depth >= 64) return setImmediate(released)        // `current` still counts the slot
//     depth++; try { ...as now... } finally { depth-- }
//   }
// — and replace the two arrays by one ring buffer (or a head index compacted now and then) so that
// taking the next message is O(1).
import { createRequire } from 'node:module';
import { Deque } from '../deque.js';

const require = createRequire(import.meta.url);
// eslint-disable-next-line @typescript-eslint/no-require-imports
const MQEmitter = require('mqemitter') as (opts: { concurrency?: number }) => MqEmitter;

export interface MqEmitter {
  current: number;
  concurrency: number;
  closed: boolean;
  _doing: boolean;
  _messageQueue: Queue;
  _messageCallbacks: Queue;
  _released: () => void;
  _do(message: unknown, callback: unknown): MqEmitter;
  emit(message: unknown, cb?: (err?: Error) => void): MqEmitter;
  on(topic: string, notify: (message: unknown, done: () => void) => void, done?: () => void): MqEmitter;
  removeListener(topic: string, notify: (message: unknown, done: () => void) => void, done?: () => void): MqEmitter;
  close(cb: () => void): MqEmitter;
  readonly length: number;
}

/** Nested synchronous deliveries allowed on one stack before the next is deferred. */
export const MAX_SYNC_DEPTH = 64;

const noop = (): void => undefined;

/** What mqemitter does with its queues: push, shift, length; unshift for the guard. */
export interface Queue {
  readonly length: number;
  push(item: unknown): number;
  shift(): unknown;
  unshift(item: unknown): number;
}

export function createGuardedMq(concurrency = 100): MqEmitter {
  const mq = MQEmitter({ concurrency });
  mq._messageQueue = new Deque();
  mq._messageCallbacks = new Deque();
  const originalDo = mq._do;
  const originalEmit = mq.emit;
  let depth = 0;
  // Slots held by deferred messages, each waiting for its setImmediate (wake). Invariant: parked > 0
  // only while the queue is not empty, so a parked slot always has a message to take when it wakes.
  let parked = 0;
  const wake = (): void => {
    if (parked === 0) return; // its slot was given back already: the queue ran dry before it woke
    parked--;
    mq._released();
  };
  mq._do = function guardedDo(this: MqEmitter, message: unknown, callback: unknown): MqEmitter {
    if (parked > 0 && this._messageQueue.length === 0) {
      // `message` was the last one waiting, taken by another release (an in-flight delivery that
      // completed, or another parked slot woken first): the parked slots have nothing left to take.
      // Give them back now, not one event-loop turn later — else `current` counts slots that deliver
      // nothing, and a drain that ends this way looks (and, under load, acts) like leaked slots.
      this.current -= parked;
      parked = 0;
    }
    if (depth >= MAX_SYNC_DEPTH) {
      // Back to the head of the queue; hold the slot (as _do would) and give it back on a fresh stack.
      this._messageQueue.unshift(message);
      this._messageCallbacks.unshift(callback);
      this.current++;
      parked++;
      this._doing = true;
      setImmediate(wake);
      return this;
    }
    depth++;
    try {
      return originalDo.call(this, message, callback);
    } finally {
      depth--;
    }
  };
  mq.emit = function guardedEmit(this: MqEmitter, message: unknown, cb?: (err?: Error) => void): MqEmitter {
    if (message && !this.closed && this._messageQueue.length > 0 && this.current < this.concurrency) {
      this._messageQueue.push(message);
      this._messageCallbacks.push(cb ?? noop);
      return this;
    }
    return originalEmit.call(this, message, cb);
  };
  return mq;
}
