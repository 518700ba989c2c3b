// How a log line looks where it goes: pure functions, no I/O (src/agent/log.ts picks one).
//   - under systemd, each JSON line begins with its sd-daemon priority (`<4>{"level":"warn",...}`):
//     journald strips it (SyslogLevelPrefix=yes, the default) and files the line at that
//     PRIORITY, so `journalctl -p warning` finds warnings;
//   - on a terminal, a readable line: time, level name, message, then key=value fields.

/** pino's level numbers and names. */
const LEVEL_NAMES: Readonly<Record<number, string>> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };

/** The sd-daemon priority (syslog severity) of a pino level: 3 error and fatal, 4 warn, 6 info, 7 debug and trace. */
export function syslogPriority(level: number): 3 | 4 | 6 | 7 {
  if (level >= 50) return 3;
  if (level >= 40) return 4;
  if (level >= 30) return 6;
  return 7;
}

/** `<N>`: the prefix journald reads the priority from. */
export function journalPrefix(level: number): string {
  return `<${syslogPriority(level)}>`;
}

/**
 * True when standard output is the journal: systemd sets JOURNAL_STREAM to `DEV:INO` of the
 * stream it connects to stdout/stderr, and a process checks it against its own fd (systemd.exec(5)),
 * so that a child whose output was redirected elsewhere does not take it for the journal.
 */
export function isJournalStream(journalStream: string | undefined, stdout: { dev: bigint; ino: bigint } | undefined): boolean {
  const m = /^([0-9]+):([0-9]+)$/.exec(journalStream?.trim() ?? '');
  if (!m || !stdout) return false;
  return BigInt(m[1]!) === stdout.dev && BigInt(m[2]!) === stdout.ino;
}

/** The level's name, whether the record holds a name (`"level":"info"`) or pino's number. */
export function levelName(level: unknown): string {
  if (typeof level === 'string') return level;
  if (typeof level === 'number') return LEVEL_NAMES[level] ?? `level${level}`;
  return 'info';
}

const COLORS: Readonly<Record<string, string>> = { fatal: '31;1', error: '31', warn: '33', info: '32', debug: '90', trace: '90' };
/** Fields a terminal reader does not need on every line. */
const HIDDEN = new Set(['level', 'time', 'msg', 'pid', 'hostname', 'name']);

/**
 * Control characters (C0, DEL, C1), line and paragraph separators and bidirectional overrides as
 * \uXXXX: a client id or topic in a field must not move the cursor or recolour the terminal.
 */
function escapeControls(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** A field's value: bare when it is a plain word, else quoted (JSON) so that spaces and `=` stay unambiguous. */
export function formatValue(v: unknown): string {
  if (typeof v === 'string') return /^[\x21-\x7e]+$/.test(v) && !/["=\\]/.test(v) ? v : escapeControls(JSON.stringify(v));
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return String(v);
  if (v === undefined) return 'undefined';
  return escapeControls(JSON.stringify(v) ?? String(v));
}

/**
 * One record (a pino JSON line, parsed) as a line for a terminal, without the newline:
 * `2026-12-01T10:15:02.114Z WARN  snapshot refused source=inbox code=EW_SNAPSHOT_STALE`.
 */
export function prettyLine(record: Readonly<Record<string, unknown>>, opts: { colors?: boolean } = {}): string {
  const name = levelName(record.level);
  const label = name.toUpperCase().padEnd(5);
  const level = opts.colors && COLORS[name] ? `\x1b[${COLORS[name]}m${label}\x1b[0m` : label;
  const parts = [typeof record.time === 'string' ? record.time : typeof record.time === 'number' ? new Date(record.time).toISOString() : '', level];
  if (record.msg !== undefined) parts.push(escapeControls(String(record.msg)));
  for (const [k, v] of Object.entries(record)) {
    if (!HIDDEN.has(k)) parts.push(`${escapeControls(k)}=${formatValue(v)}`);
  }
  return parts.filter((p) => p !== '').join(' ');
}
