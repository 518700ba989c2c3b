// The message router aedes delivers through: mqemitter, with a guard against deep recursion.
//
// mqemitter holds at most `concurrency` messages in delivery and queues the rest. When a slow
// subscriber finally releases its slots (its socket drains, or it vanishes), the queue is drained
// by `released -> _do -> released ...`; a message no subscriber matches completes synchronously,
// so a long queue of such messages recurses once per message and ends in "RangeError: Maximum
// call stack size exceeded" inside mqemitter/qlobber — bare aedes 1.2 dies of it when a few
// clients flood QoS 0 publishes and vanish mid-flood. The guard below bounds the recursion: past
// a small depth, the next message is delivered on a fresh stack (setImmediate) while keeping its
// concurrency slot, so order is preserved and the stack stays flat.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
// eslint-disable-next-line @typescript-eslint/no-require-imports
const MQEmitter = require('mqemitter') as (opts: { concurrency?: number }) => MqEmitter;

export interface MqEmitter {
  current: number;
  _do(message: unknown, callback: unknown): MqEmitter;
  emit(message: unknown, cb?: (err?: Error) => void): MqEmitter;
  readonly length: number;
}

export const MAX_SYNC_DEPTH = 64;

export function createGuardedMq(concurrency = 100): MqEmitter {
  const mq = MQEmitter({ concurrency });
  const original = mq._do;
  let depth = 0;
  mq._do = function guardedDo(this: MqEmitter, message: unknown, callback: unknown): MqEmitter {
    if (depth >= MAX_SYNC_DEPTH) {
      this.current++; // keep the slot so newer messages queue behind this one
      setImmediate(() => {
        this.current--;
        mq._do(message, callback);
      });
      return this;
    }
    depth++;
    try {
      return original.call(this, message, callback);
    } finally {
      depth--;
    }
  };
  return mq;
}
