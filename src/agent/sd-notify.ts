// Service notifications to systemd (sd_notify(3)): READY=1 once the agent serves, STOPPING=1 when it
// drains, WATCHDOG=1 every WatchdogSec/2 while the event loop turns. Node has no AF_UNIX datagram sockets, so each notification
// spawns systemd-notify(1), which (systemd 246+) waits until the manager has taken the message; the
// unit therefore says NotifyAccess=all (the sender is a child of the agent). Outside a Type=notify
// service (no NOTIFY_SOCKET) nothing is spawned. A failed notification is reported, never thrown.
import { spawn } from 'node:child_process';

export interface SdNotifyOptions {
  /** Environment (NOTIFY_SOCKET, PATH for systemd-notify); default process.env. */
  readonly env?: NodeJS.ProcessEnv;
  /** Give up after this many milliseconds (default 10 s). */
  readonly timeoutMs?: number;
}

/** Whether systemd asked for notifications (NOTIFY_SOCKET is set). */
export function sdNotifyEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(env.NOTIFY_SOCKET);
}

/**
 * Sends `KEY=VALUE` assignments (e.g. 'READY=1', 'STATUS=serving') to systemd. Resolves `sent: true`
 * when systemd-notify reported success; `sent: false` when notifications are off, or with `error`
 * when it failed.
 */
export function sdNotify(assignments: readonly string[], opts: SdNotifyOptions = {}): Promise<{ sent: boolean; error?: string }> {
  const env = opts.env ?? process.env;
  if (!sdNotifyEnabled(env)) return Promise.resolve({ sent: false });
  for (const a of assignments) {
    if (!/^[A-Z_]+=[^\n]*$/.test(a)) return Promise.resolve({ sent: false, error: `not a KEY=VALUE assignment: ${JSON.stringify(a)}` });
  }
  return new Promise((resolve) => {
    let done = false;
    const finish = (r: { sent: boolean; error?: string }) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(r);
    };
    const child = spawn('systemd-notify', [...assignments], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr = (stderr + c.toString('utf8')).slice(-500)));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      finish({ sent: false, error: `systemd-notify did not finish in ${opts.timeoutMs ?? 10_000} ms` });
    }, opts.timeoutMs ?? 10_000);
    timer.unref();
    child.on('error', (err) => finish({ sent: false, error: `systemd-notify: ${err.message}` }));
    child.on('close', (code, signal) =>
      finish(code === 0 ? { sent: true } : { sent: false, error: `systemd-notify exited with ${code ?? signal}${stderr ? `: ${stderr.trim()}` : ''}` }),
    );
  });
}

/**
 * The watchdog ping interval systemd asks for, in milliseconds: half of WATCHDOG_USEC (set by
 * WatchdogSec= in the unit), as sd_watchdog_enabled(3) reads it; undefined when there is no
 * watchdog, or it is meant for another process (WATCHDOG_PID).
 */
export function watchdogIntervalMs(env: NodeJS.ProcessEnv = process.env, pid = process.pid): number | undefined {
  const usec = env.WATCHDOG_USEC;
  if (usec === undefined || !/^[1-9][0-9]{0,15}$/.test(usec)) return undefined;
  if (env.WATCHDOG_PID !== undefined && env.WATCHDOG_PID !== String(pid)) return undefined;
  return Math.max(1, Math.floor(Number(usec) / 2000));
}

/**
 * Pings the systemd watchdog (WATCHDOG=1) every `intervalMs` from a timer: pings stop when the event
 * loop stops turning, and systemd then restarts the agent. A ping still under way when the next is
 * due is not doubled. Returns the function that stops the pings.
 */
export function startWatchdog(intervalMs: number, ping: () => Promise<unknown>): () => void {
  let pending = false;
  const beat = () => {
    if (pending) return;
    pending = true;
    void ping().finally(() => (pending = false));
  };
  const timer = setInterval(beat, intervalMs);
  timer.unref();
  beat();
  return () => clearInterval(timer);
}
