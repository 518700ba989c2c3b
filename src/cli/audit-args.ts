// The flags `edgewarden audit tail` and `audit stats` share: the filters (--principal, --client-id,
// --thing, --decision, --reason, --action, --since, --until) and --by, checked and turned into an
// AuditFilter. A wrong value is EW_USAGE naming the flag.
import { AUDIT_DECISIONS, GROUP_KEYS, DEFAULT_GROUPS, type AuditDecision, type AuditFilter, type GroupKey } from '../audit/audit-filter.js';
import { CONNECTION_REFUSAL_REASONS } from '../broker/connection-reasons.js';
import { CATALOG } from '../catalog/index.js';
import { DENY_REASON_CODES } from '../decide/reasons.js';
import { EwError } from '../errors.js';
import { parseTime } from './snapshot.js';

/** The filter flags as commander hands them over: the repeatable ones as lists. */
export interface AuditFilterFlags {
  principal?: string[];
  clientId?: string[];
  thing?: string[];
  decision?: string[];
  reason?: string[];
  action?: string[];
  since?: string;
  until?: string;
}

/** Actions that are not permissions: topic-level decisions, connections, and the `lost` lines. */
export const NON_PERMISSION_ACTIONS = Object.freeze(['publish', 'subscribe', 'unsubscribe', 'connect', 'audit'] as const);
const REASONS = new Set<string>([...DENY_REASON_CODES, ...CONNECTION_REFUSAL_REASONS]);
const PERMISSIONS = new Set(CATALOG.map((p) => p.name));

const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };
const RELATIVE = /^(?:[0-9]{1,6}[smhdw])+$/;
const DATE_ONLY = /^[0-9]{4}-[0-9]{2}-[0-9]{2}$/;

/**
 * A point in time for --since/--until: an ISO 8601 time with a zone (parseTime), a date (its start,
 * UTC), or a time ago: 30s, 10m, 2h, 1d, 1w, or a sum such as 1h30m. `now` is ms since the epoch.
 */
export function parseWhen(v: string, flag: string, now: number): number {
  const s = v.trim();
  if (RELATIVE.test(s)) {
    let ms = 0;
    for (const m of s.matchAll(/([0-9]+)([smhdw])/g)) ms += Number(m[1]) * UNITS[m[2]!]!;
    return now - ms;
  }
  if (DATE_ONLY.test(s)) {
    const ms = Date.parse(`${s}T00:00:00Z`);
    if (!Number.isNaN(ms) && new Date(ms).toISOString().startsWith(s)) return ms;
  } else if (/^[0-9]{4}-/.test(s)) {
    try {
      return parseTime(s, flag);
    } catch {
      // the message below says every form accepted
    }
  }
  throw new EwError(
    'EW_USAGE',
    `${flag} must be an ISO 8601 time with a zone (2027-01-31T09:00:00Z), a date (2027-01-31, UTC) or a time ago (30s, 10m, 2h, 1d, 1w, 1h30m), got ${JSON.stringify(v)}`,
  );
}

/** Repeated flags and comma lists, as one list; an empty item is an error. */
function items(values: readonly string[] | undefined, flag: string, commas: boolean): string[] | undefined {
  if (values === undefined || values.length === 0) return undefined;
  const out: string[] = [];
  for (const v of values) {
    for (const item of commas ? v.split(',') : [v]) {
      const s = item.trim();
      if (s === '') throw new EwError('EW_USAGE', `${flag} must not be empty${commas ? ' (nor have an empty item in a comma list)' : ''}, got ${JSON.stringify(v)}`);
      out.push(s);
    }
  }
  return out;
}

function decisionOf(v: string): AuditDecision {
  const d = v.toLowerCase();
  if ((AUDIT_DECISIONS as readonly string[]).includes(d)) return d as AuditDecision;
  throw new EwError('EW_USAGE', `--decision must be ${AUDIT_DECISIONS.join(', ')} (or a comma list of them), got ${JSON.stringify(v)}`);
}

function reasonOf(v: string): string {
  const r = v.toUpperCase();
  if (REASONS.has(r)) return r;
  throw new EwError('EW_USAGE', `--reason ${JSON.stringify(v)} is no reason code; the codes are listed in docs/reasons.md: ${[...REASONS].join(', ')}`);
}

function actionOf(v: string): string {
  const lower = v.toLowerCase();
  if ((NON_PERMISSION_ACTIONS as readonly string[]).includes(lower)) return lower;
  const upper = v.toUpperCase();
  if (PERMISSIONS.has(upper)) return upper;
  throw new EwError(
    'EW_USAGE',
    `--action ${JSON.stringify(v)} is neither a permission of the catalog (\`edgewarden catalog --legacy\` lists them) nor ${NON_PERMISSION_ACTIONS.join(', ')}`,
  );
}

/** The filter the flags describe; `now` (ms) anchors relative times. Throws EW_USAGE naming the flag. */
export function parseFilterFlags(o: AuditFilterFlags, now: number): AuditFilter {
  const f: { -readonly [K in keyof AuditFilter]: AuditFilter[K] } = {};
  const principal = items(o.principal, '--principal', false);
  if (principal) f.principal = principal;
  const clientId = items(o.clientId, '--client-id', false);
  if (clientId) f.clientId = clientId;
  const thing = items(o.thing, '--thing', false);
  if (thing) f.thing = thing;
  const decision = items(o.decision, '--decision', true);
  if (decision) f.decision = decision.map(decisionOf);
  const reason = items(o.reason, '--reason', true);
  if (reason) f.reason = reason.map(reasonOf);
  const action = items(o.action, '--action', true);
  if (action) f.action = action.map(actionOf);
  if (o.since !== undefined) f.since = parseWhen(o.since, '--since', now);
  if (o.until !== undefined) f.until = parseWhen(o.until, '--until', now);
  if (f.since !== undefined && f.until !== undefined && f.since >= f.until) {
    throw new EwError('EW_USAGE', `--since (${new Date(f.since).toISOString()}) must be before --until (${new Date(f.until).toISOString()})`);
  }
  return f;
}

/** --by: group keys, repeatable or a comma list, in the order given, each once; default reason and principal. */
export function parseGroupBy(values: readonly string[] | undefined): GroupKey[] {
  const list = items(values, '--by', true);
  if (list === undefined) return [...DEFAULT_GROUPS];
  const out: GroupKey[] = [];
  for (const v of list) {
    const k = v.toLowerCase() === 'clientid' ? 'client-id' : v.toLowerCase();
    if (!(GROUP_KEYS as readonly string[]).includes(k)) throw new EwError('EW_USAGE', `--by must be ${GROUP_KEYS.join(', ')} (or a comma list of them), got ${JSON.stringify(v)}`);
    if (!out.includes(k as GroupKey)) out.push(k as GroupKey);
  }
  return out;
}
