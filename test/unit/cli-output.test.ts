// Writing lines to a stream whose reader may go away: EPIPE stops the writing quietly, nothing else.
import t from 'tap';
import { EventEmitter } from 'node:events';
import { lineWriter } from '../../src/cli/output.js';

class FakeStream extends EventEmitter {
  written: string[] = [];
  destroyed = false;
  write(chunk: string): boolean {
    this.written.push(chunk);
    return true;
  }
}

const errno = (code: string) => Object.assign(new Error(`write ${code}`), { code });

t.test('EPIPE: later lines are dropped, quietly', async (t) => {
  const s = new FakeStream();
  const write = lineWriter(s);
  t.equal(s.listenerCount('error'), 0, 'no listener before the first write');
  write('one');
  t.equal(s.listenerCount('error'), 1);
  t.doesNotThrow(() => s.emit('error', errno('EPIPE')), 'EPIPE is handled');
  write('two');
  write('three');
  t.same(s.written, ['one\n']);
});

t.test('a destroyed stream is not written to (the error event comes a tick later)', async (t) => {
  const s = new FakeStream();
  const write = lineWriter(s);
  write('one');
  s.destroyed = true;
  write('two');
  t.same(s.written, ['one\n']);
});

t.test('any other write error is not hidden', async (t) => {
  const s = new FakeStream();
  const write = lineWriter(s);
  write('one');
  t.throws(() => s.emit('error', errno('ENOSPC')), { code: 'ENOSPC' });
});
