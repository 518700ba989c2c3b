// A real mosquitto (Debian's package) as the cloud broker of the integration tests: on 127.0.0.1
// and a free ephemeral port, with a throw-away configuration; stop() and start() again on the same
// port for outage tests.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { createServer, createConnection } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { sleep } from './agent.js';

export interface Mosquitto {
  readonly port: number;
  readonly url: string;
  start(): Promise<void>;
  /** SIGTERM (mosquitto saves its persistent sessions first) by default. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  logs(): string;
}

export function freePort(): Promise<number> {
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

/**
 * Starts mosquitto (anonymous) and resolves once it accepts connections. With `persistence`, its
 * sessions and queued messages survive a stop() and start(): a cloud application with a
 * persistent session misses nothing during the outage.
 */
export async function startMosquitto(opts: { persistence?: boolean; tls?: boolean; listener?: string[]; config?: string[] } = {}): Promise<Mosquitto> {
  const dir = mkdtempSync(join(tmpdir(), 'ew-mosquitto-'));
  const port = await freePort();
  const conf = join(dir, 'mosquitto.conf');
  const persistence = opts.persistence
    ? ['persistence true', `persistence_location ${dir}/`, 'max_queued_messages 100000', 'max_inflight_messages 100']
    : ['persistence false'];
  // As root, mosquitto would switch to the user "mosquitto", who cannot write the temporary directory.
  // `listener` lines configure the listener (TLS: cafile, certfile, keyfile, require_certificate);
  // `config` lines replace allow_anonymous true (password_file, ...).
  writeFileSync(
    conf,
    [
      'per_listener_settings false',
      ...(opts.config ?? ['allow_anonymous true']),
      `user ${userInfo().username}`,
      ...persistence,
      'log_dest stderr',
      'log_type error',
      'log_type warning',
      `listener ${port} 127.0.0.1`,
      ...(opts.listener ?? []),
      '',
    ].join('\n'),
  );
  let child: ChildProcess | null = null;
  let out = '';
  const m: Mosquitto = {
    port,
    url: `${opts.tls ? 'mqtts' : 'mqtt'}://127.0.0.1:${port}`,
    async start() {
      if (child) return;
      const c = spawn('mosquitto', ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
      child = c;
      c.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      c.stderr!.on('data', (d: Buffer) => (out += d.toString()));
      c.on('exit', () => {
        if (child === c) child = null;
      });
      for (let i = 0; i < 200; i++) {
        if (await accepts(port)) return;
        if (child !== c) throw new Error(`mosquitto exited: ${out}`);
        await sleep(25);
      }
      throw new Error(`mosquitto did not start on port ${port}: ${out}`);
    },
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      const c = child;
      if (!c) return;
      child = null;
      await new Promise<void>((resolve) => {
        c.once('exit', () => resolve());
        c.kill(signal);
      });
    },
    logs: () => out,
  };
  await m.start();
  // Never leave a broker behind: not at exit, nor when tap stops the test file with a signal
  // (Node then exits without 'exit' handlers): kill it, then die of the same signal.
  const cleanup = () => {
    (child as ChildProcess | null)?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', cleanup);
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      cleanup();
      process.kill(process.pid, signal);
    });
  }
  return m;
}
