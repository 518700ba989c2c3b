// The real agent (`bin/edgewarden.js run`, built) as a child process of the bench, on an ephemeral
// loopback port. The bench runs the agent at log level warn, which does not print the "ready" line,
// so readiness and the port come from the control socket (`status`), which opens after the listeners.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { controlRequest } from '../src/agent/control.js';

/** bin/edgewarden.js, from dist/bench/ (where this file runs) or bench/. */
const PACKAGE_JSON = fileURLToPath(new URL(import.meta.url.includes('/dist/') ? '../../package.json' : '../package.json', import.meta.url));
export const BIN = fileURLToPath(new URL(import.meta.url.includes('/dist/') ? '../../bin/edgewarden.js' : '../bin/edgewarden.js', import.meta.url));

export interface AgentStatusView {
  readonly snapshotVersion: number | null;
  readonly listeners: { readonly tcp?: number };
  readonly broker: Readonly<Record<string, number>>;
}

export interface AgentProcess {
  readonly name: string;
  /** Spawn to the arrival of the agent's "ready" log line, in ms; null when its log level hides that line (warn and above). */
  readyMs(): number | null;
  readonly pid: number;
  readonly port: number;
  readonly child: ChildProcess;
  status(): Promise<AgentStatusView>;
  /** Resident set size from /proc/<pid>/status (VmRSS), in bytes; null where there is no /proc. */
  rssBytes(): number | null;
  /** Peak resident set size since the process started, from /proc/<pid>/status (VmHWM), in bytes; null where there is no /proc. */
  peakRssBytes(): number | null;
  /** User + system CPU time of the whole process (every thread), in ms; null where there is no /proc. */
  cpuMs(): number | null;
  /** Its main thread's time on a CPU and waiting for one, in ms (/proc/<pid>/schedstat); null where there is none. */
  schedMs(): SchedMs | null;
  /** SIGTERM, then SIGKILL after 10 s. */
  stop(): Promise<void>;
  /** The agent's last output lines (it logs JSON lines at warn and above). */
  logs(): string[];
}

const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Every agent still running, from the moment it is spawned: killAgents() ends them (on any exit of the bench). */
const live = new Set<ChildProcess>();

export function killAgents(): void {
  for (const c of live) c.kill('SIGKILL');
}

/**
 * However a section ends (an exception, Ctrl-C, kill), `cleanup` runs (with killAgents() before it):
 * no agent, generator or temp dir is left behind. Returns the section's own end: it runs the cleanup
 * and removes the handlers.
 */
export function cleanUpOnExit(cleanup: () => void): () => void {
  const all = (): void => {
    killAgents();
    cleanup();
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    all();
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  process.once('exit', all);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return () => {
    all();
    process.off('exit', all);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
}

/** A /proc/<pid>/status field in bytes (VmRSS, VmHWM); null where there is no /proc or the process has gone. */
export function procStatusBytes(pid: number, field: 'VmRSS' | 'VmHWM'): number | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return null;
  }
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
  return m ? Number(m[1]) * 1024 : null;
}

export { median } from './stats.js';

/**
 * User + system CPU time of process `pid` (every thread) from /proc/<pid>/stat, in ms; null where
 * there is no /proc or the process has gone. Read in clock ticks (10 ms with CLK_TCK 100).
 */
export function procCpuMs(pid: number): number | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // Fields after the command name (which may hold spaces, hence the last ')'): utime is the 14th field, stime the 15th.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / CLOCK_TICKS;
}

/** A thread's time on a CPU and runnable but waiting for one (in a run queue), in ms. */
export interface SchedMs {
  readonly runMs: number;
  readonly waitMs: number;
}

/**
 * The main thread's (the JavaScript's) scheduling times of process `pid`, from /proc/<pid>/schedstat
 * (nanoseconds); null where there is no such file or the process has gone. Over a window, 1 − run −
 * wait is the share the thread slept: waiting for input (a socket), not for a CPU.
 */
export function procSchedMs(pid: number): SchedMs | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/schedstat`, 'utf8');
  } catch {
    return null;
  }
  const [run, wait] = text.trim().split(' ').map(Number);
  return Number.isFinite(run) && Number.isFinite(wait) ? { runMs: run! / 1e6, waitMs: wait! / 1e6 } : null;
}

/** Another child the bench starts (bare aedes): killAgents() ends it too, however the bench ends. */
export function trackChild(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
}

/**
 * `configFile` undefined: the embedded defaults, as the README's `npm start` runs it
 * (`edgewarden run --state-dir DIR`), on an ephemeral port.
 */
export async function startAgentProcess(o: {
  name: string;
  configFile?: string;
  stateDir: string;
  nodeArgs?: readonly string[];
  /** The single executable to run instead of node and bin/edgewarden.js; it gets `nodeArgs` as NODE_OPTIONS, as the unit gives them. */
  executable?: string;
}): Promise<AgentProcess> {
  const args = ['run', ...(o.configFile === undefined ? [] : ['-c', o.configFile]), '--state-dir', o.stateDir, '--port', '0'];
  const spawnedAt = performance.now();
  let readyAt: number | undefined;
  const child =
    o.executable === undefined
      ? spawn(process.execPath, [...(o.nodeArgs ?? []), BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn(o.executable, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_OPTIONS: (o.nodeArgs ?? []).join(' ') } });
  const lines: string[] = [];
  const keep = (chunk: Buffer): void => {
    for (const l of chunk.toString('utf8').split('\n')) {
      if (!l.trim()) continue;
      lines.push(l);
      if (readyAt === undefined && l.includes('"msg":"ready"')) readyAt = performance.now();
    }
    if (lines.length > 200) lines.splice(0, lines.length - 200);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  live.add(child);
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      live.delete(child);
      resolve();
    }),
  );
  const pid = child.pid;
  if (pid === undefined) throw new Error(`${o.name} agent: could not start ${process.execPath}`);

  const status = async (): Promise<AgentStatusView> => {
    const r = await controlRequest(o.stateDir, { cmd: 'status' }, 5000);
    if (!r.ok) throw new Error(`${o.name} agent: status refused: ${r.message}`);
    return r.status as AgentStatusView;
  };
  let port: number | undefined;
  for (const deadline = Date.now() + 30_000; port === undefined; ) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${o.name} agent exited while starting; output:\n${lines.slice(-20).join('\n')}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${o.name} agent not ready after 30 s; output:\n${lines.slice(-20).join('\n')}`);
    }
    try {
      port = (await status()).listeners.tcp;
    } catch {
      await sleep(50); // the control socket is not there yet
    }
  }

  // At info and below, the "ready" line comes right after the control socket opens: wait for it (at most 2 s).
  const infoLogged = (): boolean => lines.some((l) => l.includes('"level":"info"'));
  for (const deadline = Date.now() + 2000; readyAt === undefined && infoLogged() && Date.now() < deadline; ) await sleep(5);
  return {
    name: o.name,
    pid,
    port,
    child,
    status,
    logs: () => lines.slice(),
    readyMs: () => (readyAt === undefined ? null : readyAt - spawnedAt),
    rssBytes: () => procStatusBytes(pid, 'VmRSS'),
    peakRssBytes: () => procStatusBytes(pid, 'VmHWM'),
    cpuMs: () => procCpuMs(pid),
    schedMs: () => procSchedMs(pid),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** The V8 flags the executable starts with (its SEA execArgv: package.json "edgewarden.nodeFlags"). */
export function packageNodeFlags(): string[] {
  try {
    return (JSON.parse(readFileSync(PACKAGE_JSON, 'utf8')) as { edgewarden?: { nodeFlags?: string[] } }).edgewarden?.nodeFlags ?? [];
  } catch {
    return [];
  }
}
