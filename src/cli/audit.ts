// `edgewarden audit tail`: the newest decision records of <stateDir>/audit (src/audit), as aligned
// text or as JSON Lines. Not wired into the CLI entry point here.
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { AUDIT_DIR_NAME, readAuditDetailed, type AuditEntry } from '../audit/audit-log.js';
import { EwError } from '../errors.js';
import type { Io } from './output.js';

export interface AuditTailOptions {
  /** The agent's state directory; the log is in <stateDir>/audit. */
  stateDir: string;
  /** How many of the newest entries (default 20), as typed on the command line. */
  lines?: string;
  /** One JSON object per line instead of the text table. */
  json?: boolean;
}

export const DEFAULT_TAIL_LINES = 20;
const MAX_TAIL_LINES = 1_000_000;

export function parseLines(v: string | undefined): number {
  if (v === undefined) return DEFAULT_TAIL_LINES;
  const n = Number(v);
  if (!/^[0-9]{1,7}$/.test(v) || n < 1 || n > MAX_TAIL_LINES) {
    throw new EwError('EW_USAGE', `--lines must be an integer from 1 to ${MAX_TAIL_LINES}, got ${JSON.stringify(v)}`);
  }
  return n;
}

/**
 * Topics, client ids and principals come from the network: control characters (terminal escape
 * sequences), C1 controls and bidirectional overrides are shown as \uXXXX, never sent to the terminal.
 */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const escapeUnsafe = (s: string): string => s.replace(UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

const HEADER = ['TIME', 'DECISION', 'REASON', 'PRINCIPAL', 'CLIENT', 'ACTION', 'THING', 'TOPIC', 'SNAPSHOT', 'COUNT'] as const;

function row(e: AuditEntry): string[] {
  const cell = (v: string | null | undefined): string => (v === undefined || v === null || v === '' ? '-' : escapeUnsafe(v));
  return [
    cell(e.time),
    e.stage !== undefined && e.stage !== 'publish' ? `${e.decision}@${e.stage}` : e.decision,
    cell(e.reason),
    cell(e.principal),
    e.receiver !== undefined ? `${cell(e.clientId)}→${cell(e.receiver)}` : cell(e.clientId),
    cell(e.action),
    cell(e.thing),
    e.decision === 'lost' ? `seq ${e.fromSeq ?? '?'}-${e.toSeq ?? '?'} rotated away before upload (${cell(e.from)} to ${cell(e.to)})` : cell(e.topic),
    e.snapshotVersion === null ? '-' : String(e.snapshotVersion),
    e.count !== undefined && e.count > 1 ? `×${e.count}` : '',
  ];
}

function table(rows: readonly (readonly string[])[]): string[] {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd(),
  );
}

/**
 * Prints the last N entries, oldest first. Exit 0; 1 when there is no audit directory. Unreadable
 * files are an EwError EW_STORE_IO (exit 1); a bad --lines is EW_USAGE (exit 2).
 */
export async function auditTailCommand(opts: AuditTailOptions, io: Io): Promise<number> {
  const limit = parseLines(opts.lines);
  const dir = join(opts.stateDir, AUDIT_DIR_NAME);
  try {
    const st = await stat(dir);
    if (!st.isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      io.err(`no audit log at ${dir}: has the agent run with this state directory?`);
      return 1;
    }
    throw new EwError('EW_STORE_IO', `cannot read the audit directory: ${code ?? (err as Error).message}`, { where: dir, cause: err });
  }

  const { entries, corrupt } = await readAuditDetailed(dir, { limit });
  if (corrupt > 0) io.err(`${corrupt} unreadable line(s) skipped in ${dir} (a torn write after a power cut?)`);
  if (entries.length === 0) {
    io.err(`the audit log at ${dir} has no entries`);
    return 0;
  }
  if (opts.json === true) {
    for (const e of entries) io.out(escapeUnsafe(JSON.stringify(e)));
  } else {
    for (const line of table([[...HEADER], ...entries.map(row)])) io.out(line);
  }
  return 0;
}
