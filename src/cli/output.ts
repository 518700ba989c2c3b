// How commands write: to stdout (results) and stderr (diagnostics), swappable in tests.
export interface Io {
  out(line: string): void;
  err(line: string): void;
  /** True once stdout's reader has gone (EPIPE): a command that would run on (audit tail --follow) stops. */
  outClosed?(): boolean;
}

/** What streamIo needs of a stream (process.stdout, a net.Socket, a test double). */
export interface LineSink {
  write(chunk: string): unknown;
  on(event: 'error', listener: (err: NodeJS.ErrnoException) => void): unknown;
  readonly destroyed?: boolean;
}

/**
 * One line at a time to a stream whose reader may go away: in `edgewarden catalog | head -1`, head
 * exits after a line and the next write fails with EPIPE (Node ignores SIGPIPE). That is no error of
 * the command's: from then on its lines are dropped, quietly, and it runs to its end, so the process
 * exits with the status it would have had (explain's 3 survives `set -o pipefail`). Any other write
 * error is thrown as before. The error listener is added at the first write, not at import.
 */
export function lineWriter(stream: LineSink, onClosed?: () => void): (line: string) => void {
  let closed = false;
  let listening = false;
  return (line) => {
    if (closed || stream.destroyed === true) return;
    if (!listening) {
      listening = true;
      stream.on('error', (err) => {
        if (err.code !== 'EPIPE') throw err;
        closed = true;
        onClosed?.();
      });
    }
    stream.write(line + '\n');
  };
}

export function streamIo(stdout: LineSink, stderr: LineSink): Io {
  let outClosed = false;
  return {
    out: lineWriter(stdout, () => (outClosed = true)),
    err: lineWriter(stderr),
    outClosed: () => outClosed || stdout.destroyed === true,
  };
}

export const processIo: Io = streamIo(process.stdout, process.stderr);

export function iso(ms: number): string {
  return Number.isFinite(ms) ? new Date(ms).toISOString() : String(ms);
}
