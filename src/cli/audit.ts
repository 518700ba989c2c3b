// `edgewarden audit tail` and `audit stats`: the decision records of <stateDir>/audit (src/audit),
// filtered; tail as aligned text or JSON Lines, and with --follow as the agent writes them; stats as
// counts over a window. The state directory is found as `edgewarden status` finds it (-c, --state-dir);
// the agent need not be running.
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { AUDIT_DIR_NAME } from '../audit/audit-log.js';
import { AuditTally, compileFilter, isEmptyFilter, type AuditFilter } from '../audit/audit-filter.js';
import { followAudit } from '../audit/audit-follow.js';
import { readAuditForFollow, scanAudit } from '../audit/audit-read.js';
import { bundledPaths, loadConfig } from '../config/load.js';
import { EwError } from '../errors.js';
import { parseFilterFlags, parseGroupBy, type AuditFilterFlags } from './audit-args.js';
import { printer, statsJson, statsText } from './audit-render.js';
import { packageRoot } from './io.js';
import type { Io } from './output.js';

export interface AuditSourceOptions {
  /** The agent's configuration (its stateDir); default: the embedded defaults. */
  config?: string;
  /** The agent's state directory (overrides the configuration); the log is in <stateDir>/audit. */
  stateDir?: string;
}

export interface AuditTailOptions extends AuditSourceOptions, AuditFilterFlags {
  /** How many of the newest (matching) entries (default 20), as typed on the command line. */
  lines?: string;
  /** One JSON object per line instead of the text table. */
  json?: boolean;
  /** Then print new entries as the agent writes them, until SIGINT/SIGTERM. */
  follow?: boolean;
}

export interface AuditStatsOptions extends AuditSourceOptions, AuditFilterFlags {
  /** Group keys (repeatable, comma lists); default reason and principal. */
  by?: string[];
  json?: boolean;
}

/** For tests: the clock, and (tail --follow) what stops following and how often it polls. */
export interface AuditDeps {
  now?: () => number;
  /** Default: SIGINT or SIGTERM. */
  signal?: AbortSignal;
  intervalMs?: number;
}

export const DEFAULT_TAIL_LINES = 20;
const MAX_TAIL_LINES = 1_000_000;

/** -n: 1 to MAX_TAIL_LINES; 0 too with --follow (only what comes). */
export function parseLines(v: string | undefined, follow = false): number {
  if (v === undefined) return DEFAULT_TAIL_LINES;
  const n = Number(v);
  const min = follow ? 0 : 1;
  if (!/^[0-9]{1,7}$/.test(v) || n < min || n > MAX_TAIL_LINES) {
    throw new EwError('EW_USAGE', `--lines must be an integer from ${min} to ${MAX_TAIL_LINES}${follow ? '' : ' (0 only with --follow)'}, got ${JSON.stringify(v)}`);
  }
  return n;
}

/** <stateDir>/audit, or undefined (said on stderr) when there is none. */
async function auditDir(opts: AuditSourceOptions, io: Io): Promise<string | undefined> {
  const { config } = loadConfig({
    ...(opts.config === undefined ? {} : { path: opts.config }),
    overrides: opts.stateDir === undefined ? {} : { stateDir: opts.stateDir },
    bundled: bundledPaths(packageRoot()),
  });
  const dir = join(config.stateDir, AUDIT_DIR_NAME);
  try {
    const st = await stat(dir);
    if (!st.isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      io.err(`no audit log at ${dir}: has the agent run with this state directory?`);
      return undefined;
    }
    throw new EwError('EW_STORE_IO', `cannot read the audit directory: ${code ?? (err as Error).message}`, { where: dir, cause: err });
  }
  try {
    await access(dir, constants.R_OK | constants.X_OK);
  } catch (err) {
    // 0700, the agent's: another user may see that it is there, not what is in it
    throw new EwError('EW_STORE_IO', `permission denied on the audit directory: run as the agent's user (edgewarden) or root`, { where: dir, cause: err });
  }
  return dir;
}

/**
 * Prints the last N (matching) entries, oldest first; with --follow, then each new matching entry
 * until SIGINT/SIGTERM or stdout's reader goes (exit 0). Exit 1 when there is no audit directory.
 * Unreadable files are EW_STORE_IO (exit 1); a wrong flag is EW_USAGE (exit 2).
 */
export async function auditTailCommand(opts: AuditTailOptions, io: Io, deps: AuditDeps = {}): Promise<number> {
  const follow = opts.follow === true;
  const limit = parseLines(opts.lines, follow);
  const filter = parseFilterFlags(opts, (deps.now ?? Date.now)());
  if (follow && filter.until !== undefined) throw new EwError('EW_USAGE', '--until cannot be used with --follow (new records are never before it)');
  const dir = await auditDir(opts, io);
  if (dir === undefined) return 1;
  const match = compileFilter(filter);

  // With --follow, Ctrl-C ends it from the start: a signal before the first record is no crash either.
  const stop = !follow ? undefined : deps.signal === undefined ? stopOnSignals() : { signal: deps.signal, release: () => undefined };
  try {
    const { entries, corrupt, start } = await readAuditForFollow(dir, { limit, match });
    try {
      const print = printer(opts.json === true, follow, io);
      if (corrupt > 0) io.err(`${corrupt} unreadable line(s) skipped in ${dir} (a torn write after a power cut?)`);
      if (entries.length === 0 && limit > 0) io.err(isEmptyFilter(filter) ? `the audit log at ${dir} has no entries` : `no entries in the audit log at ${dir} match`);
      print(entries);
      if (stop === undefined) return 0;
      await followAudit({
        dir,
        start,
        signal: stop.signal,
        ...(deps.intervalMs === undefined ? {} : { intervalMs: deps.intervalMs }),
        ...(io.outClosed === undefined ? {} : { done: () => io.outClosed!() }),
        onEntry: (e) => {
          if (match(e)) print([e]);
        },
        onCorrupt: (where) => io.err(`an unreadable line skipped in ${where} (a torn write after a power cut?)`),
        onNotice: (message) => io.err(message),
      });
    } finally {
      // followAudit closes it when it ends; closing twice is harmless
      await start.file?.handle.close().catch(() => undefined);
    }
  } finally {
    stop?.release();
  }
  return 0;
}

/** An AbortSignal that SIGINT (Ctrl-C) or SIGTERM aborts, and the handlers' removal. */
function stopOnSignals(): { signal: AbortSignal; release: () => void } {
  const ac = new AbortController();
  const onSignal = (): void => ac.abort();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    signal: ac.signal,
    release: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}

/**
 * Counts of the matching records over the window: totals, lost records, and by each --by key.
 * Every line of both files is read once, in bounded memory. Exit 0; 1 when there is no audit directory.
 */
export async function auditStatsCommand(opts: AuditStatsOptions, io: Io, deps: AuditDeps = {}): Promise<number> {
  const by = parseGroupBy(opts.by);
  const filter: AuditFilter = parseFilterFlags(opts, (deps.now ?? Date.now)());
  const dir = await auditDir(opts, io);
  if (dir === undefined) return 1;
  const match = compileFilter(filter);
  const tally = new AuditTally(by);
  let oldestMs = Infinity;
  let logBegins: string | null = null;
  const { corrupt } = await scanAudit(dir, (e) => {
    const ms = Date.parse(e.time);
    if (ms < oldestMs) [oldestMs, logBegins] = [ms, e.time];
    if (match(e)) tally.add(e);
  });
  const view = {
    counts: tally.result(),
    ...(filter.since === undefined ? {} : { since: filter.since }),
    ...(filter.until === undefined ? {} : { until: filter.until }),
    logBegins,
    corrupt,
  };
  if (opts.json === true) io.out(JSON.stringify(statsJson(view)));
  else for (const line of statsText(view)) io.out(line);
  return 0;
}
