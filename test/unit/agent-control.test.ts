// The control socket: one JSON request per connection, read linearly, bounded in size and time.
import t from 'tap';
import { createConnection } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { controlInstall, controlRequest, controlSocketPath, startControlServer } from '../../src/agent/control.js';

/** Sends raw bytes (in pieces) and resolves with what the server answered before closing. */
function raw(stateDir: string, pieces: Buffer[], end = false): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(controlSocketPath(stateDir));
    let out = '';
    socket.on('data', (d) => (out += d.toString()));
    socket.on('error', (err: NodeJS.ErrnoException) => (err.code === 'EPIPE' || err.code === 'ECONNRESET' ? resolve(out) : reject(err)));
    socket.on('close', () => resolve(out));
    socket.on('connect', () => {
      for (const p of pieces) socket.write(p);
      if (end) socket.end();
    });
  });
}

t.test('a request is answered; garbage, oversized and slow requests get a clear error', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ew-ctl-')); // a short path: a Unix socket path has at most 107 bytes
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const seen: unknown[] = [];
  const server = await startControlServer(dir, async (req) => {
    seen.push(req);
    return { ok: true, echo: req.cmd };
  }, { maxRequestBytes: 1024 * 1024, requestTimeoutMs: 500 });
  t.teardown(() => server.close());
  t.same(await controlRequest(dir, { cmd: 'status' }), { ok: true, echo: 'status' });
  // A request split into many small pieces, the newline in the last.
  const body = Buffer.from(JSON.stringify({ cmd: 'status', pad: 'x'.repeat(100_000) }) + '\n');
  const pieces: Buffer[] = [];
  for (let i = 0; i < body.length; i += 997) pieces.push(body.subarray(i, i + 997));
  t.match(await raw(dir, pieces), /"echo":"status"/, 'pieces are joined');
  t.match(await raw(dir, [Buffer.from('{not json\n')]), /"request is not JSON"/);
  // 8 MiB without a newline: refused at 1 MiB, quickly and without holding the rest.
  const started = Date.now();
  const big = Buffer.alloc(256 * 1024, 0x61);
  t.match(await raw(dir, Array.from({ length: 32 }, () => big)), /request too large: more than 1048576 bytes/);
  t.ok(Date.now() - started < 5000, `answered in ${Date.now() - started} ms`);
  t.match(await raw(dir, [Buffer.from('{"cmd":"sta')]), /not received whole within 500 ms/, 'a request that never ends its line times out');
  // After the first line nothing else on the connection is read.
  t.match(await raw(dir, [Buffer.from('{"cmd":"status"}\n{"cmd":"install","snapshot":""}\n')]), /"echo":"status"/);
  t.equal(seen.length, 3, 'the handler saw only the three whole requests');
});

t.test('a snapshot follows its request line as raw bytes, read into one buffer of its size', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ew-ctl-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  let got: Buffer | undefined;
  const server = await startControlServer(dir, async (req) => {
    if (req.cmd === 'install') got = req.bytes;
    return { ok: true, length: got?.length ?? -1 };
  }, { maxSnapshotBytes: 4 * 1024 * 1024 });
  t.teardown(() => server.close());
  const snapshot = Buffer.alloc(3 * 1024 * 1024);
  for (let i = 0; i < snapshot.length; i++) snapshot[i] = (i * 7) & 0xff; // newlines and all
  t.same(await controlInstall(dir, snapshot, 'test'), { ok: true, length: snapshot.length });
  t.ok(got?.equals(snapshot), 'byte for byte');
  const tooBig = await controlInstall(dir, Buffer.alloc(5 * 1024 * 1024), 'big');
  t.match(tooBig, { ok: false, code: 'EW_SNAPSHOT_TOO_LARGE' }, 'refused before it is read');
});
