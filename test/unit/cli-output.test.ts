// Writing lines to a stream whose reader may go away: EPIPE stops the writing quietly, nothing else.
import t from 'tap';
import { EventEmitter } from 'node:events';
import { lineWriter, streamIo } from '../../src/cli/output.js';

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

t.test('streamIo tells a command that runs on (audit tail --follow) when stdout has gone', async (t) => {
  const out = new FakeStream();
  const err = new FakeStream();
  const io = streamIo(out, err);
  t.equal(io.outClosed?.(), false);
  io.out('one');
  t.equal(io.outClosed?.(), false);
  out.emit('error', errno('EPIPE'));
  t.equal(io.outClosed?.(), true, 'after EPIPE');
  io.err('stderr still written');
  t.same(err.written, ['stderr still written\n']);
  const destroyed = new FakeStream();
  const io2 = streamIo(destroyed, err);
  destroyed.destroyed = true;
  t.equal(io2.outClosed?.(), true, 'a destroyed stdout');
});
