// Every start failure exits 1 at once with one line that names what and where: no hang, no stack
// trace. (A port taken by another broker is the common one on a gateway.)
import t from 'tap';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDocument } from 'yaml';
import { DEMO_PUB } from '../helpers/agent.js';
import { ROOT } from '../helpers/policy.js';
import { BIN } from '../helpers/cli.js';

function run(config: Record<string, unknown>, env?: NodeJS.ProcessEnv): Promise<{ code: number | null; out: string; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'ew-start-'));
  const cfg = { gateway: { id: 'gw-plant-1' }, trust: { keys: [DEMO_PUB] }, stateDir: join(dir, 'state'), snapshot: { bootstrap: join(ROOT, 'config', 'example-snapshot.cose') }, ...config };
  const file = join(dir, 'config.yaml');
  writeFileSync(file, parseDocument(JSON.stringify(cfg)).toString());
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, 'run', '-c', file], { stdio: ['ignore', 'pipe', 'pipe'], ...(env ? { env: { ...process.env, ...env } } : {}) });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000); // a hang shows as code null
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out, dir });
    });
  });
}

/** The lines that are not the agent's JSON log. */
const plain = (out: string) => out.split('\n').filter((l) => l.length > 0 && !l.startsWith('{'));

t.test('the MQTT port taken by another program: exit 1, one line naming the listener, the address and why', async (t) => {
  const taken: Server = createServer();
  await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => taken.close(() => r())));
  const port = (taken.address() as { port: number }).port;
  const r = await run({ listeners: { tcp: { enabled: true, host: '127.0.0.1', port } } });
  t.teardown(() => rmSync(r.dir, { recursive: true, force: true }));
  t.equal(r.code, 1, 'exit status 1 (not a hang)');
  t.same(plain(r.out), [`edgewarden: EW_LISTEN: 127.0.0.1:${port}: cannot listen (listeners.tcp): the address is in use: another program (another MQTT broker?) listens there; stop it or choose another port (EADDRINUSE)`]);
  t.notMatch(r.out, /\n\s+at /, 'no stack trace');
});

t.test("the metrics port taken: the same", async (t) => {
  const taken: Server = createServer();
  await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => taken.close(() => r())));
  const port = (taken.address() as { port: number }).port;
  const r = await run({ listeners: { tcp: { enabled: true, host: '127.0.0.1', port: 0 } }, metrics: { enabled: true, host: '127.0.0.1', port } });
  t.teardown(() => rmSync(r.dir, { recursive: true, force: true }));
  t.equal(r.code, 1);
  t.match(plain(r.out), [new RegExp(`EW_LISTEN: 127\\.0\\.0\\.1:${port}: cannot listen \\(metrics\\)`)]);
  t.notMatch(r.out, /\n\s+at /);
});

t.test('an unreadable TLS key: exit 1 naming the key and the file', async (t) => {
  const r = await run({ listeners: { tcp: { enabled: true, host: '127.0.0.1', port: 0 }, tls: { enabled: true, host: '127.0.0.1', port: 0, cert: '/nonexistent/cert.pem', key: '/nonexistent/key.pem' } } });
  t.teardown(() => rmSync(r.dir, { recursive: true, force: true }));
  t.equal(r.code, 1);
  t.same(plain(r.out), ["edgewarden: EW_KEY_READ: /nonexistent/cert.pem: listeners.tls.cert: cannot read the file (ENOENT)"]);
  t.notMatch(r.out, /\n\s+at /);
});

t.test('no trusted key: exit 1, and no state directory created', async (t) => {
  const r = await run({ trust: { keys: ['/nonexistent/keys'] }, listeners: { tcp: { enabled: true, host: '127.0.0.1', port: 0 } } });
  t.teardown(() => rmSync(r.dir, { recursive: true, force: true }));
  t.equal(r.code, 1);
  t.notMatch(r.out, /\n\s+at /);
  t.notOk(existsSync(join(r.dir, 'state')), 'the state directory was not created');
});

t.test('SIGTERM during start-up: the agent finishes starting, then stops cleanly (exit 0, lock released)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ew-start-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const cfg = { gateway: { id: 'gw-plant-1' }, trust: { keys: [DEMO_PUB] }, stateDir: join(dir, 'state'), snapshot: { bootstrap: join(ROOT, 'config', 'example-snapshot.cose') }, listeners: { tcp: { enabled: true, host: '127.0.0.1', port: 0 } } };
  const file = join(dir, 'config.yaml');
  writeFileSync(file, parseDocument(JSON.stringify(cfg)).toString());
  const child = spawn(process.execPath, [BIN, 'run', '-c', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let signalled = false;
  const onData = (d: Buffer) => {
    out += d.toString();
    // The first log line: the agent is starting (the snapshot, the store and the listeners are still to come).
    if (!signalled && out.includes('starting edgewarden')) {
      signalled = true;
      child.kill('SIGTERM');
    }
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  clearTimeout(timer);
  t.equal(code, 0, 'exit 0: a clean stop, not killed by the signal');
  t.match(out, /"msg":"stopped"/);
  t.notOk(existsSync(join(dir, 'state', 'agent.lock')), 'the lock is released');
  t.notMatch(out, /READY=1/);
});

t.test('under systemd, a failed start says why in the unit status (STATUS=) before it exits', async (t) => {
  const bin = mkdtempSync(join(tmpdir(), 'ew-notify-'));
  t.teardown(() => rmSync(bin, { recursive: true, force: true }));
  const record = join(bin, 'record');
  writeFileSync(join(bin, 'systemd-notify'), `#!/bin/sh\necho "$*" >> ${record}\n`);
  chmodSync(join(bin, 'systemd-notify'), 0o755);
  const taken: Server = createServer();
  await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => taken.close(() => r())));
  const port = (taken.address() as { port: number }).port;
  const r = await run({ listeners: { tcp: { enabled: true, host: '127.0.0.1', port } } }, { NOTIFY_SOCKET: '/run/systemd/notify', PATH: `${bin}:${process.env['PATH'] ?? '/usr/bin:/bin'}` });
  t.teardown(() => rmSync(r.dir, { recursive: true, force: true }));
  t.equal(r.code, 1);
  const notes = existsSync(record) ? readFileSync(record, 'utf8') : '';
  t.match(notes, /^STATUS=start failed: EW_LISTEN: 127\.0\.0\.1:\d+: cannot listen \(listeners\.tcp\)/m);
  t.notMatch(notes, /READY=1/);
});
