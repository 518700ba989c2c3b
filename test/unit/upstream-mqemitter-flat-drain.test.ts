// src/broker/upstream/mqemitter-flat-drain.ts: a bare mqemitter still overflows the stack draining a
// queue of synchronously completed messages (else the depth guard may go), keeps its queue in the
// fields the workaround replaces and drains it through the `_do` it wraps (else it is broken).
// Behaviour of the guarded emitter: test/unit/broker-mq.test.ts.
import t from 'tap';
import { createRequire } from 'node:module';
import { Deque } from '../../src/broker/deque.js';
import { createGuardedMq, type MqEmitter } from '../../src/broker/upstream/mqemitter-flat-drain.js';
import { upstreamChanged } from '../helpers/bare-aedes.js';

const MODULE = 'mqemitter-flat-drain.ts';
const require = createRequire(import.meta.url);
const bare = require('mqemitter') as (opts: { concurrency?: number }) => MqEmitter & Record<string, unknown>;

/** `concurrency` slots held by a slow subscriber, then `n` messages nobody matches queued behind them; returns the release. */
function flood(mq: MqEmitter, concurrency: number, n: number): () => void {
  const held: (() => void)[] = [];
  mq.on('slow/#', (_m, done) => held.push(done));
  for (let i = 0; i < concurrency; i++) mq.emit({ topic: 'slow/x' });
  for (let i = 0; i < n; i++) mq.emit({ topic: 'nobody/listens' });
  return () => {
    for (const done of held.splice(0)) done();
  };
}

t.test('the fields the workaround replaces and wraps', async (t) => {
  const mq = bare({ concurrency: 10 });
  for (const name of ['_messageQueue', '_messageCallbacks']) t.ok(Array.isArray(mq[name]), upstreamChanged(`mqemitter's ${name} is no longer an array`, MODULE));
  for (const name of ['_do', '_released', 'emit']) t.type(mq[name], 'function', upstreamChanged(`mqemitter has no ${name}()`, MODULE));
  for (const name of ['current', 'concurrency']) t.type(mq[name], 'number', upstreamChanged(`mqemitter has no numeric ${name}`, MODULE));
  for (const name of ['_doing', 'closed']) t.type(mq[name], 'boolean', upstreamChanged(`mqemitter has no ${name} flag`, MODULE));
});

t.test("mqemitter drains through the instance's queues and _do, looked up at each release", async (t) => {
  const mq = bare({ concurrency: 2 });
  mq._messageQueue = new Deque();
  mq._messageCallbacks = new Deque();
  const original = mq._do;
  let done = 0;
  mq._do = function spied(this: MqEmitter, message: unknown, callback: unknown) {
    done++;
    return original.call(this, message, callback);
  };
  const release = flood(mq, 2, 100);
  t.equal(mq.length, 100, upstreamChanged('messages past the concurrency no longer wait in _messageQueue', MODULE));
  const before = done;
  release();
  t.equal(mq.length, 0, 'drained');
  t.equal(done - before, 100, upstreamChanged("the drain no longer goes through the instance's _do", MODULE));
});

t.test('a bare mqemitter still overflows the stack draining 100,000 such messages', async (t) => {
  const release = flood(bare({ concurrency: 10 }), 10, 100_000);
  t.throws(release, RangeError, upstreamChanged('bare mqemitter drains 100,000 synchronously completed messages without a RangeError (the depth guard may be unneeded)', MODULE));
});

t.test('guarded, the same drain completes', async (t) => {
  const mq = createGuardedMq(10);
  const release = flood(mq, 10, 100_000);
  t.doesNotThrow(release);
  const deadline = Date.now() + 10_000;
  while (mq.length > 0 && Date.now() < deadline) await new Promise((r) => setImmediate(r));
  t.equal(mq.length, 0, 'drained');
});
