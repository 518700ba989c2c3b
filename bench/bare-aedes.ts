// Bare aedes: the reference the agent's footprint is held against (issue 13: "idle and loaded RSS
// side by side with bare aedes"). The same aedes on node:net, on 127.0.0.1 and an ephemeral port,
// with aedes' defaults: no authentication, no authorization, no sessions on disk, no audit, no
// logging. What is left between it and the agent is what enforcement, the audit log, the snapshot,
// the durable sessions and the rest cost.
//
// The broker itself is bare-aedes-server.ts, a program that loads aedes and node:net only, with the
// agent's socket options; `startBareAedes` spawns it with the agent's node flags (the same node, the
// same process model: one process of its own), `connectBareAedes` connects the bench's 1,000 devices
// to it as the startup section does to the agent, and the broker section's throughput runs
// (vs-bare.ts) drive it with the same load generator requests as the agent.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { procCpuMs, procSchedMs, procStatusBytes, trackChild, type SchedMs } from './agent-process.js';
import { CONNECT_KEEPALIVE, CONNECT_MAX_PENDING, deviceId, deviceToken, DEVICES, type Generator } from './broker-load.js';
import type { ConnectRequest, ConnectResult } from './load-generator.js';
import { settle } from './measure.js';

const SERVER = fileURLToPath(new URL('./bare-aedes-server.js', import.meta.url));

export interface BareAedes {
  readonly pid: number;
  readonly port: number;
  rssBytes(): number | null;
  /** User + system CPU time of the process, in ms (/proc/<pid>/stat); null where there is no /proc. */
  cpuMs(): number | null;
  /** Its main thread's time on a CPU and waiting for one, in ms (/proc/<pid>/schedstat). */
  schedMs(): SchedMs | null;
  /** SIGTERM (it closes, and writes its CPU profile under --cpu-prof), then SIGKILL after 5 s. */
  stop(): Promise<void>;
}

/** A bare aedes process with `nodeArgs`, once it listens. */
export async function startBareAedes(nodeArgs: readonly string[] = []): Promise<BareAedes> {
  const child = spawn(process.execPath, [...nodeArgs, SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
  trackChild(child);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`bare aedes: no "ready" line in 30 s: ${out}`)), 30_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString('utf8');
      const m = /"msg":"ready","port":(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`bare aedes exited (${code}) before listening: ${out}`));
    });
  });
  const pid = child.pid!;
  return {
    pid,
    port,
    rssBytes: () => procStatusBytes(pid, 'VmRSS'),
    cpuMs: () => procCpuMs(pid),
    schedMs: () => procSchedMs(pid),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** The bench's devices connect to bare aedes: its RSS `idleMs` after the start and 1 s after the last CONNACK. */
export async function connectBareAedes(gen: Generator, nodeArgs: readonly string[], idleMs: number): Promise<{ rssIdle: number | null; rssConnected: number | null; accepted: number }> {
  const bare = await startBareAedes(nodeArgs);
  try {
    await settle(idleMs);
    const rssIdle = bare.rssBytes();
    const req: ConnectRequest = {
      kind: 'connect',
      port: bare.port,
      devices: Array.from({ length: DEVICES }, (_, i) => ({ clientId: `device-${i}`, username: deviceId(i), password: deviceToken(deviceId(i)) })),
      keepalive: CONNECT_KEEPALIVE,
      maxPending: CONNECT_MAX_PENDING,
    };
    const conn = await gen.request<ConnectResult>(req);
    await settle(1000);
    const rssConnected = bare.rssBytes();
    await gen.request<{ released: number }>({ kind: 'release' });
    return { rssIdle, rssConnected, accepted: conn.accepted };
  } finally {
    await bare.stop();
  }
}
