// One pino logger for the agent; modules take child loggers. Redaction is compiled once here and
// covers every field that could carry a secret (no such field is ever logged on purpose).
//
// Where standard output goes decides the form (src/agent/log-format.ts): JSON lines with level
// names, each prefixed with its sd-daemon priority when stdout is the journal; readable lines on a
// terminal. All of it in this thread: no pino transport (a worker thread), which the single-file
// executable could not load.
import { fstatSync } from 'node:fs';
import { isatty } from 'node:tty';
import { pino, type Logger, type DestinationStream } from 'pino';
import { isJournalStream, journalPrefix, prettyLine } from './log-format.js';

export const REDACT = [
  'password',
  '*.password',
  'token',
  '*.token',
  'secret',
  '*.secret',
  'secretHash',
  'passwordHash',
  'tokenHashes',
  'payload',
  '*.payload',
  'privateKey',
  'key',
];

/** `json`: JSON lines; `journal`: JSON lines, each prefixed `<N>` with its priority; `pretty`: readable lines. */
export type LogFormat = 'json' | 'journal' | 'pretty';

/** The form for standard output: the journal (JOURNAL_STREAM names this very stdout), a terminal, or else JSON. */
export function stdoutLogFormat(env: NodeJS.ProcessEnv = process.env): LogFormat {
  let stat: { dev: bigint; ino: bigint } | undefined;
  try {
    stat = fstatSync(1, { bigint: true });
  } catch {
    stat = undefined;
  }
  if (isJournalStream(env.JOURNAL_STREAM, stat)) return 'journal';
  if (isatty(1)) return 'pretty';
  return 'json';
}

type Sink = DestinationStream & { flush?(cb?: (err?: Error) => void): void };

/**
 * A destination that rewrites each line pino writes. pino tells a stream marked
 * `needsMetadataGsym` the level of the line it is about to write (`lastLevel`).
 */
function rewriting(out: Sink, rewrite: (line: string, level: number) => string): DestinationStream {
  const stream = {
    [pino.symbols.needsMetadataGsym]: true,
    lastLevel: 30,
    write(line: string) {
      out.write(rewrite(line, stream.lastLevel));
    },
    flush(cb?: (err?: Error) => void) {
      if (out.flush) out.flush(cb);
      else cb?.();
    },
  };
  return stream;
}

function pretty(line: string, colors: boolean): string {
  try {
    return `${prettyLine(JSON.parse(line) as Record<string, unknown>, { colors })}\n`;
  } catch {
    return line;
  }
}

export function createLogger(level: string, opts: { format?: LogFormat; destination?: DestinationStream } = {}): Logger {
  const format = opts.format ?? stdoutLogFormat();
  // A terminal is written synchronously, so the lines keep their order with what goes to stderr.
  const out: Sink = opts.destination ?? pino.destination({ dest: 1, sync: format === 'pretty' });
  const destination =
    format === 'journal'
      ? rewriting(out, (line, lvl) => journalPrefix(lvl) + line)
      : format === 'pretty'
        ? rewriting(out, (line) => pretty(line, !process.env.NO_COLOR && opts.destination === undefined))
        : out;
  return pino(
    {
      name: 'edgewarden',
      level,
      redact: { paths: REDACT, censor: '[redacted]' },
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      // "level":"warn" rather than 40: the journal and jq readers need no table.
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}

/**
 * At debug level, one `memory` line for a phase of the start (`process.memoryUsage()`, in MB): where
 * the agent's resident memory comes from (bench/README.md, "Where the memory goes"). Nothing at info.
 */
export function logMemoryPhase(log: Logger, phase: string, usage: NodeJS.MemoryUsage = process.memoryUsage()): void {
  if (!log.isLevelEnabled('debug')) return;
  const mb = (b: number): number => Math.round((b / 1048576) * 10) / 10;
  log.debug({ phase, rssMB: mb(usage.rss), heapTotalMB: mb(usage.heapTotal), heapUsedMB: mb(usage.heapUsed), externalMB: mb(usage.external), arrayBuffersMB: mb(usage.arrayBuffers) }, 'memory');
}
