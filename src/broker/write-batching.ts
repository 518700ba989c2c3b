// Writes to a client's socket leave in one batch per event-loop turn: one `writev` system call per
// socket per turn instead of one per packet.
//
// mqtt-packet's writeToStream corks the stream for each packet it generates and uncorks it on the
// next tick, so the pieces of one packet go out together. But aedes answers and forwards packets
// across ticks and microtasks (persistence callbacks, mqemitter's queue, fastparallel), so nearly
// every packet ends up in its own `writev`: with QoS 0 telemetry fanned out to subscribers the
// system calls were ~40-60 % of the broker's CPU (docs/notes/broker-speed.md). Here the first
// packet written in a turn puts one more cork on the socket, and one `setImmediate` per turn (shared
// by every socket) takes it off after the poll phase: everything written in that turn leaves in one
// `writev`, and the delay is the rest of the turn, never a timer (Nagle stays off: setNoDelay).
//
// A socket destroyed while corked would drop what it holds (a CONNACK refusal, a DISCONNECT, a
// PUBACK just before aedes closes the connection): `destroy` sends it first. `end()` uncorks fully
// by itself (node:stream Writable.end).
import type { Socket } from 'node:net';

const pending: Socket[] = [];
let scheduled = false;

function flushAll(): void {
  scheduled = false;
  // A socket added while flushing (a write from a 'drain' listener) waits for the next turn.
  const n = pending.length;
  for (let i = 0; i < n; i++) uncorkOurs(pending[i]!);
  pending.splice(0, n);
}

const OURS = Symbol('edgewarden.batchCorked');
type Batched = Socket & { [OURS]: boolean };

function uncorkOurs(s: Socket): void {
  const b = s as Batched;
  if (!b[OURS]) return;
  b[OURS] = false;
  s.uncork();
}

/** Batches `socket`'s writes per event-loop turn (see the header). Call once, before any write. */
export function batchWrites(socket: Socket): void {
  const b = socket as Batched;
  b[OURS] = false;
  const cork = socket.cork;
  const destroy = socket.destroy;
  socket.cork = function batchedCork(this: Socket): void {
    if (!b[OURS] && !socket.destroyed) {
      b[OURS] = true;
      cork.call(socket); // ours, taken off in flushAll
      pending.push(socket);
      if (!scheduled) {
        scheduled = true;
        setImmediate(flushAll);
      }
    }
    cork.call(socket); // the writer's own (mqtt-packet's), taken off by its own uncork
  };
  socket.destroy = function flushThenDestroy(this: Socket, err?: Error): Socket {
    uncorkOurs(socket);
    return destroy.call(socket, err);
  } as Socket['destroy'];
}
