// One agent per state directory: a second agent on it refuses to start, within a second, naming
// the first; a lock left by an agent that was killed is taken over.
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { agentFor } from '../helpers/agent.js';
import { BIN } from '../helpers/cli.js';
import { controlRequest } from '../../src/agent/control.js';

function run(configFile: string, stateDir: string): Promise<{ code: number | null; out: string; ms: number }> {
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, 'run', '-c', configFile, '--state-dir', stateDir, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out, ms: Date.now() - started });
    });
  });
}

t.test('a second agent on the same state directory is refused and names the first', async (t) => {
  const first = await agentFor(t);
  const lock = join(first.stateDir, 'agent.lock');
  t.equal(readFileSync(lock, 'utf8').trim(), String(first.child.pid), 'agent.lock holds the pid');
  const second = await run(join(first.stateDir, 'test-config.yaml'), first.stateDir);
  t.equal(second.code, 1, 'exit status 1');
  t.match(second.out, new RegExp(`EW_STATE_LOCKED.*pid ${first.child.pid}`), 'the message names the holder');
  t.notMatch(second.out, /\n\s+at /, 'no stack trace');
  t.equal(readFileSync(lock, 'utf8').trim(), String(first.child.pid), 'the first keeps its lock');
  const status = await controlRequest(first.stateDir, { cmd: 'status' });
  t.ok(status.ok, 'the first still answers on its control socket');
  await first.stop();
  t.notOk(existsSync(lock), 'a clean stop removes the lock');
});

t.test('a lock left by a killed agent is taken over', async (t) => {
  const first = await agentFor(t);
  await first.kill();
  t.ok(existsSync(join(first.stateDir, 'agent.lock')), 'SIGKILL leaves the lock');
  const again = await agentFor(t, { stateDir: first.stateDir });
  t.equal(readFileSync(join(first.stateDir, 'agent.lock'), 'utf8').trim(), String(again.child.pid), 'the new agent holds it');
});
