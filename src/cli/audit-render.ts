// How `edgewarden audit tail` and `audit stats` show entries and counts: aligned text for a person,
// JSON for a program. Values that came from the network are escaped before they reach a terminal.
import type { AuditEntry } from '../audit/audit-entry.js';
import type { AuditCounts, GroupKey } from '../audit/audit-filter.js';
import type { Io } from './output.js';

/**
 * Topics, client ids and principals come from the network: control characters (terminal escape
 * sequences), C1 controls and bidirectional overrides are shown as \uXXXX, never sent to the terminal.
 */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
export const escapeUnsafe = (s: string): string => s.replace(UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

/** One entry as a JSON line (only the fields of AuditEntry, escaped). */
export const jsonLine = (e: AuditEntry): string => escapeUnsafe(JSON.stringify(e));

export const HEADER = ['TIME', 'DECISION', 'REASON', 'PRINCIPAL', 'CLIENT', 'ACTION', 'THING', 'TOPIC', 'SNAPSHOT', 'COUNT'] as const;

const cell = (v: string | null | undefined): string => (v === undefined || v === null || v === '' ? '-' : escapeUnsafe(v));

export function row(e: AuditEntry): string[] {
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

/**
 * Rows in columns: each column as wide as its widest cell so far. All rows at once (`table`) are
 * aligned exactly; rows that keep coming (--follow) keep the widths seen and widen when needed.
 */
export class Columns {
  private readonly widths: number[] = [];

  constructor(rows: readonly (readonly string[])[] = []) {
    for (const r of rows) this.measure(r);
  }

  measure(r: readonly string[]): void {
    r.forEach((c, i) => (this.widths[i] = Math.max(this.widths[i] ?? 0, c.length)));
  }

  format(r: readonly string[]): string {
    this.measure(r);
    return r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(this.widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  }
}

export function table(rows: readonly (readonly string[])[]): string[] {
  const cols = new Columns(rows);
  return rows.map((r) => cols.format(r));
}

/**
 * Prints entries: JSON lines; or a table, aligned over all of them at once, or with --follow over
 * the first batch and widened as longer values come (the header once, with the first row).
 */
export function printer(json: boolean, follow: boolean, io: Io): (es: readonly AuditEntry[]) => void {
  const columns = new Columns();
  let headerDone = false;
  return (es) => {
    if (json) {
      for (const e of es) io.out(jsonLine(e));
      return;
    }
    if (es.length === 0) return;
    if (!follow) {
      for (const line of table([[...HEADER], ...es.map(row)])) io.out(line);
      return;
    }
    const rows = es.map(row);
    if (!headerDone) {
      headerDone = true;
      for (const r of [[...HEADER], ...rows]) columns.measure(r);
      io.out(columns.format([...HEADER]));
    }
    for (const r of rows) io.out(columns.format(r));
  };
}

export interface StatsView {
  readonly counts: AuditCounts;
  /** The window asked for (ms), when given. */
  readonly since?: number;
  readonly until?: number;
  /** The oldest time in the log (matched or not): older records were rotated away. */
  readonly logBegins: string | null;
  readonly corrupt: number;
}

const isoOrNull = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());

/** `audit stats --json`: one object. */
export function statsJson(v: StatsView): object {
  const c = v.counts;
  return {
    since: isoOrNull(v.since),
    until: isoOrNull(v.until),
    first: c.first,
    last: c.last,
    logBegins: v.logBegins,
    lines: c.lines,
    records: c.records,
    allow: c.allow,
    deny: c.deny,
    lost: c.lost,
    corrupt: v.corrupt,
    by: Object.fromEntries(Object.entries(c.groups).map(([k, groups]) => [k, groups.map((g) => ({ value: g.value, count: g.count, lines: g.lines }))])),
  };
}

/** Rows shown per group in text; --json has them all. */
export const TEXT_GROUP_ROWS = 20;

const groupTitle = (key: GroupKey): string => (key === 'client-id' ? 'CLIENT' : key.toUpperCase());
const NONE: Record<GroupKey, string> = { reason: '- (allowed)', principal: '- (unknown)', action: '-', thing: '- (none)', decision: '-', 'client-id': '- (unknown)' };

/** `audit stats` as text: the window, the totals, then a table per group, largest first. */
export function statsText(v: StatsView): string[] {
  const c = v.counts;
  const window = `${isoOrNull(v.since) ?? 'the start of the log'} to ${isoOrNull(v.until) ?? 'now'}`;
  const head: [string, string][] = [
    ['window', window],
    ['records', `${c.records} (${c.deny} denied, ${c.allow} allowed) in ${c.lines - c.lost.lines} line${c.lines - c.lost.lines === 1 ? '' : 's'}`],
  ];
  if (c.first !== null) head.push(['first', escapeUnsafe(c.first)], ['last', escapeUnsafe(c.last ?? '-')]);
  if (c.lost.lines > 0) head.push(['lost', `${c.lost.records} record${c.lost.records === 1 ? '' : 's'} rotated away before upload (${c.lost.lines} lost line${c.lost.lines === 1 ? '' : 's'})`]);
  if (v.logBegins !== null && v.since !== undefined && Date.parse(v.logBegins) > v.since) {
    head.push(['note', `the log begins at ${escapeUnsafe(v.logBegins)}: nothing older is held (the first record, or older ones rotated away: audit.maxBytes)`]);
  }
  if (v.corrupt > 0) head.push(['skipped', `${v.corrupt} unreadable line(s) (a torn write after a power cut?)`]);
  const w = Math.max(...head.map(([k]) => k.length));
  const out = head.map(([k, val]) => `${k.padEnd(w)}  ${val}`);
  if (c.records === 0) return out;
  for (const [key, groups] of Object.entries(c.groups) as [GroupKey, AuditCounts['groups'][GroupKey]][]) {
    if (groups === undefined) continue;
    const shown = groups.slice(0, TEXT_GROUP_ROWS);
    const rows = shown.map((g) => [g.value === null ? NONE[key] : escapeUnsafe(g.value), String(g.count), `${percent(g.count, c.records)}`]);
    if (groups.length > shown.length) {
      const rest = groups.slice(shown.length).reduce((n, g) => n + g.count, 0);
      rows.push([`… ${groups.length - shown.length} more (--json lists all)`, String(rest), percent(rest, c.records)]);
    }
    rows.push(['total', String(c.records), '100%']);
    out.push('');
    out.push(...rightAligned([[groupTitle(key), 'COUNT', 'SHARE'], ...rows]));
  }
  return out;
}

function percent(n: number, total: number): string {
  if (total === 0) return '-';
  const p = (100 * n) / total;
  return p >= 10 || p === 0 ? `${Math.round(p)}%` : `${p.toFixed(1)}%`;
}

/** The first column left-aligned, the numbers right-aligned. */
function rightAligned(rows: readonly (readonly string[])[]): string[] {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[0] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ').trimEnd());
}
