// Which audit entries a field engineer asked for (`edgewarden audit tail|stats` filters), and the
// counts of `audit stats`. No I/O: the command line parses the flags into an AuditFilter (with the
// clock it read), the readers in audit-read.ts and audit-follow.ts hand the entries over.
import type { AuditEntry } from './audit-entry.js';

export type AuditDecision = AuditEntry['decision'];
export const AUDIT_DECISIONS: readonly AuditDecision[] = Object.freeze(['allow', 'deny', 'lost'] as const);

/**
 * Each field narrows: an entry matches when it matches every field given. Within a field, any of
 * the values will do. principal, clientId and thing are patterns: `*` stands for any run of
 * characters (pump-*), everything else is literal; an absent (null) value matches no pattern.
 */
export interface AuditFilter {
  readonly principal?: readonly string[];
  readonly clientId?: readonly string[];
  readonly thing?: readonly string[];
  readonly decision?: readonly AuditDecision[];
  /** Reason codes, exact. An entry without a reason (an allow) matches none. */
  readonly reason?: readonly string[];
  /** Permission names or publish/subscribe/unsubscribe/connect/audit, exact. */
  readonly action?: readonly string[];
  /** ms since the epoch: the entry's time is at or after it. */
  readonly since?: number;
  /** ms since the epoch: the entry's time is before it. */
  readonly until?: number;
}

/** An AuditFilter with nothing set matches everything. */
export function isEmptyFilter(f: AuditFilter): boolean {
  return Object.values(f).every((v) => v === undefined);
}

function patternMatcher(patterns: readonly string[]): (v: string | null | undefined) => boolean {
  const exact = new Set(patterns.filter((p) => !p.includes('*')));
  const globs = patterns
    .filter((p) => p.includes('*'))
    .map((p) => new RegExp(`^${p.split('*').map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`, 's'));
  return (v) => typeof v === 'string' && (exact.has(v) || globs.some((g) => g.test(v)));
}

/** The filter as one predicate, built once (patterns compiled). */
export function compileFilter(f: AuditFilter): (e: AuditEntry) => boolean {
  const tests: ((e: AuditEntry) => boolean)[] = [];
  if (f.decision !== undefined) {
    const s = new Set<string>(f.decision);
    tests.push((e) => s.has(e.decision));
  }
  if (f.reason !== undefined) {
    const s = new Set(f.reason);
    tests.push((e) => e.reason !== undefined && s.has(e.reason));
  }
  if (f.action !== undefined) {
    const s = new Set(f.action);
    tests.push((e) => s.has(e.action));
  }
  if (f.principal !== undefined) {
    const m = patternMatcher(f.principal);
    tests.push((e) => m(e.principal));
  }
  if (f.clientId !== undefined) {
    const m = patternMatcher(f.clientId);
    tests.push((e) => m(e.clientId));
  }
  if (f.thing !== undefined) {
    const m = patternMatcher(f.thing);
    tests.push((e) => m(e.thing));
  }
  if (f.since !== undefined || f.until !== undefined) {
    const since = f.since ?? -Infinity;
    const until = f.until ?? Infinity;
    tests.push((e) => {
      const t = Date.parse(e.time);
      return t >= since && t < until; // NaN (an unreadable time) is in no window
    });
  }
  return (e) => tests.every((test) => test(e));
}

/** What `audit stats --by` groups by (the names of the filter flags). */
export const GROUP_KEYS = Object.freeze(['reason', 'principal', 'action', 'thing', 'decision', 'client-id'] as const);
export type GroupKey = (typeof GROUP_KEYS)[number];
export const DEFAULT_GROUPS: readonly GroupKey[] = Object.freeze(['reason', 'principal'] as const);

export function groupValue(e: AuditEntry, key: GroupKey): string | null {
  switch (key) {
    case 'reason':
      return e.reason ?? null;
    case 'principal':
      return e.principal;
    case 'action':
      return e.action;
    case 'thing':
      return e.thing ?? null;
    case 'decision':
      return e.decision;
    case 'client-id':
      return e.clientId;
  }
}

export interface GroupCount {
  /** null: the entries have none (an allow has no reason; a refused login no principal). */
  readonly value: string | null;
  /** Records (the sum of the lines' `count`). */
  readonly count: number;
  /** Lines. */
  readonly lines: number;
}

export interface AuditCounts {
  /** Lines matched, lost lines included. */
  readonly lines: number;
  /** Decisions (allow and deny), each line counting its `count` (absent: 1). */
  readonly records: number;
  readonly allow: number;
  readonly deny: number;
  /** Records rotated away before upload, from the `lost` lines (their `count`), and those lines. */
  readonly lost: { readonly records: number; readonly lines: number };
  /** The earliest and latest time among the matched lines (ISO 8601); null when none matched. */
  readonly first: string | null;
  readonly last: string | null;
  /** Per group key: the decisions (not the lost lines), largest count first, then by value. */
  readonly groups: { readonly [K in GroupKey]?: readonly GroupCount[] };
}

/**
 * Counts of the entries added: records (not lines: a coalesced line stands for `count` events),
 * by decision and by each group key. Memory grows with the distinct values, not with the lines.
 */
export class AuditTally {
  private lines = 0;
  private allow = 0;
  private deny = 0;
  private lostRecords = 0;
  private lostLines = 0;
  private firstMs = Infinity;
  private lastMs = -Infinity;
  private first: string | null = null;
  private last: string | null = null;
  private readonly groups: Map<GroupKey, Map<string | null, { count: number; lines: number }>>;

  constructor(readonly by: readonly GroupKey[]) {
    this.groups = new Map(by.map((k) => [k, new Map()]));
  }

  add(e: AuditEntry): void {
    const n = e.count !== undefined && Number.isSafeInteger(e.count) && e.count > 0 ? e.count : 1;
    this.lines++;
    const ms = Date.parse(e.time);
    if (ms < this.firstMs) [this.firstMs, this.first] = [ms, e.time];
    if (ms > this.lastMs) [this.lastMs, this.last] = [ms, e.time];
    if (e.decision === 'lost') {
      this.lostRecords += n;
      this.lostLines++;
      return;
    }
    if (e.decision === 'allow') this.allow += n;
    else this.deny += n;
    for (const [key, counts] of this.groups) {
      const v = groupValue(e, key);
      const c = counts.get(v);
      if (c === undefined) counts.set(v, { count: n, lines: 1 });
      else {
        c.count += n;
        c.lines++;
      }
    }
  }

  result(): AuditCounts {
    const groups: { [K in GroupKey]?: GroupCount[] } = {};
    for (const [key, counts] of this.groups) {
      groups[key] = [...counts]
        .map(([value, c]) => ({ value, count: c.count, lines: c.lines }))
        .sort((a, b) => b.count - a.count || compareValues(a.value, b.value));
    }
    return {
      lines: this.lines,
      records: this.allow + this.deny,
      allow: this.allow,
      deny: this.deny,
      lost: { records: this.lostRecords, lines: this.lostLines },
      first: this.first,
      last: this.last,
      groups,
    };
  }
}

/** Values in order, null last. */
function compareValues(a: string | null, b: string | null): number {
  if (a === b) return 0;
  if (a === null) return 1;
  if (b === null) return -1;
  return a < b ? -1 : 1;
}
