// The guarded mqemitter (src/broker/upstream/mqemitter-flat-drain.ts). The crash it prevents: mqemitter with `concurrency`
// slots all held by a slow subscriber queues every further message; when the subscriber releases
// its slots, the queue drains by recursion (released -> _do -> released ...), one level per message
// that completes synchronously, e.g. one that no subscriber matches. Bare mqemitter dies of it with
// "RangeError: Maximum call stack size exceeded"; the guarded one must drain, in order.
import t from 'tap';
import { createRequire } from 'node:module';
import { createGuardedMq, MAX_SYNC_DEPTH, type MqEmitter } from '../../src/broker/upstream/mqemitter-flat-drain.js';
import { Deque } from '../../src/broker/deque.js';

const require = createRequire(import.meta.url);
const bareMqemitter = require('mqemitter') as (opts: { concurrency?: number }) => MqEmitter;

const QUEUED = 200_000;
const CONCURRENCY = 100;

/**
 * A subscriber on `slow/#` that holds its callbacks, CONCURRENCY messages to fill every slot,
 * QUEUED messages for an unmatched topic behind them (every 1000th for a subscriber that completes
 * synchronously), all recorded in delivery order; `release()` calls the held callbacks.
 */
function loaded(mq: MqEmitter) {
  const held: (() => void)[] = [];
  const delivered: number[] = []; // sequence numbers, in delivery order
  mq.on('slow/#', (_m, done) => held.push(done));
  mq.on('sync/#', (m, done) => {
    delivered.push((m as { seq: number }).seq);
    done();
  });
  for (let i = 0; i < CONCURRENCY; i++) mq.emit({ topic: 'slow/x', seq: -1 });
  const completed: number[] = []; // emit callbacks, in completion order
  for (let seq = 0; seq < QUEUED; seq++) {
    mq.emit({ topic: seq % 1000 === 0 ? 'sync/x' : 'nobody/listens', seq }, () => completed.push(seq));
  }
  return {
    held,
    delivered,
    completed,
    release: () => {
      for (const done of held.splice(0)) done();
    },
  };
}

const settle = async (pred: () => boolean, ms = 10_000) => {
  const end = Date.now() + ms;
  while (!pred() && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
  return pred();
};

t.test('bare mqemitter overflows the stack draining the queue (the test can fail)', async (t) => {
  const mq = bareMqemitter({ concurrency: CONCURRENCY });
  const l = loaded(mq);
  t.equal(l.held.length, CONCURRENCY, 'every slot held by the slow subscriber');
  t.equal(mq.length, QUEUED, `${QUEUED} messages queued`);
  t.throws(() => l.release(), RangeError, 'RangeError: Maximum call stack size exceeded');
});

t.test('the guarded mqemitter drains every message, in order, with a flat stack', async (t) => {
  const mq = createGuardedMq(CONCURRENCY);
  const l = loaded(mq);
  t.equal(l.held.length, CONCURRENCY);
  t.equal(mq.length, QUEUED);
  const started = Date.now();
  t.doesNotThrow(() => l.release(), 'releasing the slots does not throw');
  // Emitted after the release, while the queue drains: must come after everything queued before.
  const late: number[] = [];
  for (let i = 0; i < 10; i++) mq.emit({ topic: 'sync/late', seq: QUEUED + i }, () => late.push(i));
  t.ok(await settle(() => l.completed.length === QUEUED && late.length === 10), `all ${QUEUED} queued messages completed (${l.completed.length})`);
  t.ok(Date.now() - started < 5000, `drained in ${Date.now() - started} ms`);
  let firstOutOfOrder = -1;
  for (let i = 0; i < l.completed.length; i++) {
    if (l.completed[i] !== i) {
      firstOutOfOrder = i;
      break;
    }
  }
  t.equal(firstOutOfOrder, -1, 'completion order is emit order');
  const expected = [];
  for (let seq = 0; seq < QUEUED; seq += 1000) expected.push(seq);
  for (let i = 0; i < 10; i++) expected.push(QUEUED + i);
  t.same(l.delivered, expected, 'a matching subscriber sees its messages in order, the late ones last');
  t.equal(mq.length, 0, 'queue empty');
  t.equal(mq.current, 0, 'no slot leaked');
  // Still a working emitter afterwards.
  const after: number[] = [];
  mq.on('after/#', (m, done) => {
    after.push((m as { seq: number }).seq);
    done();
  });
  for (let i = 0; i < 5; i++) mq.emit({ topic: 'after/x', seq: i });
  t.ok(await settle(() => after.length === 5));
  t.same(after, [0, 1, 2, 3, 4]);
  t.equal(mq.current, 0);
});

t.test('a subscriber that re-emits synchronously: a deferred message is not overtaken by later emits', async (t) => {
  const mq = createGuardedMq(CONCURRENCY);
  const delivered: string[] = [];
  const emitted: string[] = [];
  const emit = (name: string) => {
    emitted.push(name);
    mq.emit({ topic: `chain/${name}` });
  };
  // Each chain message emits the next one from inside its delivery (emit -> _do -> subscriber ->
  // emit ...) and completes later: the stack deepens by one delivery per message until the guard
  // defers one, with slots to spare.
  mq.on('chain/#', (m, done) => {
    const name = (m as { topic: string }).topic.slice('chain/'.length);
    delivered.push(name);
    const n = Number(name);
    if (Number.isInteger(n) && n < 3 * MAX_SYNC_DEPTH) emit(String(n + 1));
    setImmediate(done);
  });
  emit('0');
  t.equal(delivered.length, MAX_SYNC_DEPTH, `the synchronous chain was cut at depth ${MAX_SYNC_DEPTH}`);
  t.equal(mq.length, 1, 'the deferred message waits at the head of the queue');
  t.ok(mq.current < CONCURRENCY, `a slot is free meanwhile (${mq.current} of ${CONCURRENCY} taken)`);
  emit('late-a'); // with a free slot, a bare emit would deliver these at once, ahead of the deferred one
  emit('late-b');
  t.same(delivered.slice(MAX_SYNC_DEPTH), [], 'not delivered ahead of the deferred message');
  t.ok(await settle(() => delivered.length === emitted.length && mq.current === 0), 'everything delivered, every slot back');
  t.equal(delivered.length, 3 * MAX_SYNC_DEPTH + 3);
  t.same(delivered, emitted, 'delivery order is emit order');
  t.equal(mq.current, 0);
  t.equal(mq.length, 0);
});

t.test('a deferred message taken by another release: its held slot is given back with the last message', async (t) => {
  // Two slots, both held by a slow subscriber; MAX_SYNC_DEPTH + 1 unmatched messages queued. The
  // first release drains MAX_SYNC_DEPTH of them on its stack and defers the last one, holding its
  // slot until setImmediate; the second release takes that last message at once. The held slot has
  // nothing left to deliver: it must not stay counted (it did until the next event-loop turn, so a
  // drain ending this way showed `current` > 0 with nothing in flight).
  const mq = createGuardedMq(2);
  const held: (() => void)[] = [];
  mq.on('slow/#', (_m, done) => held.push(done));
  mq.emit({ topic: 'slow/a' });
  mq.emit({ topic: 'slow/b' });
  t.equal(mq.current, 2, 'both slots held');
  const completed: number[] = [];
  for (let seq = 0; seq <= MAX_SYNC_DEPTH; seq++) mq.emit({ topic: 'nobody/listens', seq }, () => completed.push(seq));
  t.equal(mq.length, MAX_SYNC_DEPTH + 1);
  held[0]!();
  t.equal(completed.length, MAX_SYNC_DEPTH, 'the first release drained one stack-full');
  t.equal(mq.length, 1, 'and deferred the last message');
  t.equal(mq.current, 2, 'holding its slot meanwhile');
  held[1]!();
  t.equal(completed.length, MAX_SYNC_DEPTH + 1, 'the second release delivered the deferred message');
  t.same(completed, [...Array(MAX_SYNC_DEPTH + 1).keys()], 'in order');
  t.equal(mq.length, 0, 'queue empty');
  t.equal(mq.current, 0, 'no slot held once the last message completed');
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setTimeout(r, 5));
  t.equal(mq.current, 0, 'nor after the deferral fired');
  // Deferred again, and the deferral fires first this time: still balanced.
  held.length = 0;
  mq.emit({ topic: 'slow/c' });
  mq.emit({ topic: 'slow/d' });
  const again: number[] = [];
  for (let seq = 0; seq < 3 * MAX_SYNC_DEPTH; seq++) mq.emit({ topic: 'nobody/listens', seq }, () => again.push(seq));
  held[0]!();
  t.ok(await settle(() => again.length === 3 * MAX_SYNC_DEPTH), 'drained by the deferrals alone');
  t.equal(mq.current, 1, 'only the still-held slow delivery counted');
  held[1]!();
  t.equal(mq.current, 0);
  t.same(again, [...Array(3 * MAX_SYNC_DEPTH).keys()], 'in order');
  const after: number[] = [];
  mq.on('after/#', (m, done) => {
    after.push((m as { seq: number }).seq);
    done();
  });
  for (let i = 0; i < 3; i++) mq.emit({ topic: 'after/x', seq: i });
  t.ok(await settle(() => after.length === 3));
  t.equal(mq.current, 0, 'still a working emitter with every slot free');
});

t.test('Deque: push, shift, unshift across growth and wrap-around', async (t) => {
  const d = new Deque();
  const model: number[] = [];
  let seed = 42;
  const rnd = (n: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  for (let i = 0; i < 50_000; i++) {
    const op = rnd(10);
    if (op < 5) {
      d.push(i);
      model.push(i);
    } else if (op < 7) {
      d.unshift(i);
      model.unshift(i);
    } else if (d.shift() !== model.shift()) {
      t.fail(`shift differs at step ${i}`);
      return;
    }
    if (d.length !== model.length) {
      t.fail(`length differs at step ${i}`);
      return;
    }
  }
  const rest: unknown[] = [];
  while (d.length > 0) rest.push(d.shift());
  t.same(rest, model, `the remaining ${model.length} in order`);
  t.equal(d.shift(), undefined, 'empty: undefined, as Array#shift');
  t.equal(d.length, 0);
});
