// A real mosquitto as the cloud broker of the durable-ack section: on 127.0.0.1 and a free ephemeral
// port, anonymous, no persistence, in a throw-away directory. The configuration is that of the
// integration tests' helper (test/helpers/mosquitto.ts), which the built bench cannot import (it
// finds the repository from its own place under test/, and loads the other test helpers).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';

export interface BenchMosquitto {
  readonly url: string;
  readonly pid: number;
  /** SIGTERM, then SIGKILL after 5 s; removes its directory. */
  stop(): Promise<void>;
  /** SIGKILL at once (on the bench's exit). */
  kill(): void;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      s.close(() => resolve(typeof addr === 'object' && addr ? addr.port : 0));
    });
  });
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = createConnection(port, '127.0.0.1');
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

/** Starts mosquitto; resolves with null when there is no `mosquitto` on the PATH. */
export async function startMosquitto(): Promise<BenchMosquitto | null> {
  const dir = mkdtempSync(join(tmpdir(), 'ew-bench-mosquitto-'));
  const port = await freePort();
  const conf = join(dir, 'mosquitto.conf');
  // As root, mosquitto would switch to the user "mosquitto", who cannot read the temporary directory.
  writeFileSync(
    conf,
    ['per_listener_settings false', 'allow_anonymous true', `user ${userInfo().username}`, 'persistence false', 'log_dest stderr', 'log_type error', 'log_type warning', `listener ${port} 127.0.0.1`, ''].join(
      '\n',
    ),
  );
  let out = '';
  const child: ChildProcess = spawn('mosquitto', ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const missing = await new Promise<boolean>((resolve) => {
    child.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ENOENT'));
    child.once('spawn', () => resolve(false));
  });
  if (missing) {
    rmSync(dir, { recursive: true, force: true });
    return null;
  }
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const kill = (): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  for (let i = 0; ; i++) {
    if (await accepts(port)) break;
    if (child.exitCode !== null || child.signalCode !== null || i >= 200) {
      kill();
      throw new Error(`mosquitto did not start on port ${port}: ${out.trim()}`);
    }
    await sleep(25);
  }
  return {
    url: `mqtt://127.0.0.1:${port}`,
    pid: child.pid!,
    kill,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
