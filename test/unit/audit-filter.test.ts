// The filters and counts of `audit tail` / `audit stats` (src/audit/audit-filter.ts), and the flags
// that make them (src/cli/audit-args.ts): table-driven, no files.
import t from 'tap';
import { AuditTally, compileFilter, groupValue, isEmptyFilter, type AuditFilter } from '../../src/audit/audit-filter.js';
import type { AuditEntry } from '../../src/audit/audit-entry.js';
import { parseFilterFlags, parseGroupBy, parseWhen } from '../../src/cli/audit-args.js';

const NOW = Date.parse('2027-03-01T12:00:00.000Z');

const entry = (over: Partial<AuditEntry> = {}): AuditEntry => ({
  time: '2027-03-01T11:30:00.000Z',
  seq: 1,
  decision: 'deny',
  reason: 'NOT_GRANTED',
  principal: 'tech-anna',
  clientId: 'anna-phone',
  action: 'EXECUTE_THING_COMMAND',
  thing: 'pump-7',
  topic: 'things/pump-7/commands/start',
  snapshotVersion: 3,
  ...over,
});

const refusedLogin = entry({ decision: 'deny', reason: 'BAD_CREDENTIALS', principal: null, clientId: 'pump-7', action: 'connect', thing: undefined, topic: undefined });
const allow = entry({ decision: 'allow', reason: undefined, principal: 'tech-bob', clientId: 'bob, laptop', thing: 'pump-70' });
const lost: AuditEntry = { time: '2027-03-01T11:59:00.000Z', decision: 'lost', principal: null, clientId: null, action: 'audit', snapshotVersion: null, count: 1432, fromSeq: 10, toSeq: 1441, from: 'a', to: 'b' };

t.test('compileFilter: every field narrows; values within a field are alternatives', async (t) => {
  const cases: [string, AuditFilter, AuditEntry, boolean][] = [
    ['empty filter', {}, entry(), true],
    ['principal exact', { principal: ['tech-anna'] }, entry(), true],
    ['principal other', { principal: ['tech-bob'] }, entry(), false],
    ['principal any of', { principal: ['tech-bob', 'tech-anna'] }, entry(), true],
    ['principal null matches no pattern', { principal: ['*'] }, refusedLogin, false],
    ['principal glob', { principal: ['tech-*'] }, entry(), true],
    ['glob anchored', { principal: ['anna*'] }, entry(), false],
    ['glob in the middle', { thing: ['pump-*7'] }, entry(), true],
    ['glob specials are literal', { thing: ['pump.7'] }, entry(), false],
    ['regexp characters literal in a glob', { clientId: ['(anna)*'] }, entry(), false],
    ['client id with a comma', { clientId: ['bob, laptop'] }, allow, true],
    ['client id', { clientId: ['pump-7'] }, refusedLogin, true],
    ['thing exact is not a prefix', { thing: ['pump-7'] }, allow, false],
    ['thing absent', { thing: ['pump-7'] }, refusedLogin, false],
    ['decision', { decision: ['deny'] }, entry(), true],
    ['decision other', { decision: ['allow', 'lost'] }, entry(), false],
    ['decision lost', { decision: ['lost'] }, lost, true],
    ['reason', { reason: ['NOT_GRANTED', 'TOPIC_DENIED'] }, entry(), true],
    ['reason: an allow has none', { reason: ['NOT_GRANTED'] }, allow, false],
    ['action', { action: ['connect'] }, refusedLogin, true],
    ['action other', { action: ['publish'] }, entry(), false],
    ['since inclusive', { since: Date.parse('2027-03-01T11:30:00.000Z') }, entry(), true],
    ['since after', { since: Date.parse('2027-03-01T11:30:00.001Z') }, entry(), false],
    ['until exclusive', { until: Date.parse('2027-03-01T11:30:00.000Z') }, entry(), false],
    ['until after', { until: Date.parse('2027-03-01T11:30:00.001Z') }, entry(), true],
    ['an unreadable time is in no window', { since: 0 }, entry({ time: 'yesterday' }), false],
    ['every field', { principal: ['tech-anna'], thing: ['pump-7'], decision: ['deny'], reason: ['NOT_GRANTED'], since: NOW - 3_600_000 }, entry(), true],
    ['every field but one', { principal: ['tech-anna'], thing: ['pump-7'], decision: ['deny'], reason: ['TOPIC_DENIED'], since: NOW - 3_600_000 }, entry(), false],
  ];
  for (const [label, f, e, want] of cases) t.equal(compileFilter(f)(e), want, label);
  t.ok(isEmptyFilter({}));
  t.notOk(isEmptyFilter({ since: 0 }));
});

t.test('AuditTally: records add count (absent: 1); lost lines apart; groups largest first', async (t) => {
  const tally = new AuditTally(['reason', 'principal', 'client-id']);
  tally.add(entry({ time: '2027-03-01T11:00:00.000Z' }));
  tally.add(entry({ reason: 'TOPIC_DENIED', count: 37, time: '2027-03-01T11:40:00.000Z' }));
  tally.add(entry({ reason: 'TOPIC_DENIED', principal: 'tech-bob', count: 2 }));
  tally.add(allow);
  tally.add(refusedLogin);
  tally.add(lost);
  const r = tally.result();
  t.equal(r.lines, 6);
  t.equal(r.records, 1 + 37 + 2 + 1 + 1, 'decisions, by count');
  t.equal(r.deny, 41);
  t.equal(r.allow, 1);
  t.same(r.lost, { records: 1432, lines: 1 });
  t.equal(r.first, '2027-03-01T11:00:00.000Z');
  t.equal(r.last, '2027-03-01T11:59:00.000Z', 'the lost line is in the window');
  t.same(r.groups.reason, [
    { value: 'TOPIC_DENIED', count: 39, lines: 2 },
    { value: 'BAD_CREDENTIALS', count: 1, lines: 1 },
    { value: 'NOT_GRANTED', count: 1, lines: 1 },
    { value: null, count: 1, lines: 1 },
  ]);
  t.same(r.groups.principal, [
    { value: 'tech-anna', count: 38, lines: 2 },
    { value: 'tech-bob', count: 3, lines: 2 },
    { value: null, count: 1, lines: 1 },
  ]);
  t.same(r.groups['client-id']?.map((g) => g.value), ['anna-phone', 'bob, laptop', 'pump-7']);
  t.same(new AuditTally([]).result(), { lines: 0, records: 0, allow: 0, deny: 0, lost: { records: 0, lines: 0 }, first: null, last: null, groups: {} });
});

t.test('groupValue', async (t) => {
  t.same(['reason', 'principal', 'action', 'thing', 'decision', 'client-id'].map((k) => groupValue(refusedLogin, k as never)), ['BAD_CREDENTIALS', null, 'connect', null, 'deny', 'pump-7']);
});

t.test('parseWhen: ISO 8601 with a zone, a date, or a time ago', async (t) => {
  const ok: [string, number][] = [
    ['2027-03-01T09:00:00Z', Date.parse('2027-03-01T09:00:00Z')],
    ['2027-03-01T10:00:00+01:00', Date.parse('2027-03-01T09:00:00Z')],
    ['2027-03-01T09:00:00.250Z', Date.parse('2027-03-01T09:00:00.250Z')],
    ['2027-03-01', Date.parse('2027-03-01T00:00:00Z')],
    ['30s', NOW - 30_000],
    ['10m', NOW - 600_000],
    ['2h', NOW - 7_200_000],
    ['1d', NOW - 86_400_000],
    ['1w', NOW - 604_800_000],
    ['1h30m', NOW - 5_400_000],
    ['0m', NOW],
    [' 10m ', NOW - 600_000],
  ];
  for (const [v, want] of ok) t.equal(parseWhen(v, '--since', NOW), want, v);
  for (const bad of ['', 'yesterday', '10', '10 m', '-10m', '10y', 'm', '2027-03-01T09:00:00', '2027-02-30', '2027-13-01T00:00:00Z', 'now', '1.5h']) {
    t.throws(() => parseWhen(bad, '--until', NOW), { code: 'EW_USAGE', message: /^--until must be an ISO 8601 time/ }, JSON.stringify(bad));
  }
});

t.test('parseFilterFlags: values checked, normalised, each error names its flag', async (t) => {
  t.same(parseFilterFlags({}, NOW), {});
  t.same(
    parseFilterFlags(
      {
        principal: ['tech-anna', 'dev-*'],
        clientId: ['bob, laptop'],
        thing: ['pump-7'],
        decision: ['deny,LOST'],
        reason: ['not_granted', 'TOPIC_DENIED,BAD_CREDENTIALS'],
        action: ['execute_thing_command', 'Connect'],
        since: '1h',
        until: '2027-03-01T12:00:00Z',
      },
      NOW,
    ),
    {
      principal: ['tech-anna', 'dev-*'],
      clientId: ['bob, laptop'],
      thing: ['pump-7'],
      decision: ['deny', 'lost'],
      reason: ['NOT_GRANTED', 'TOPIC_DENIED', 'BAD_CREDENTIALS'],
      action: ['EXECUTE_THING_COMMAND', 'connect'],
      since: NOW - 3_600_000,
      until: NOW,
    },
    'principal, client id and thing are not split at commas; the others are',
  );
  const bad: [object, RegExp][] = [
    [{ decision: ['maybe'] }, /^--decision must be allow, deny, lost/],
    [{ decision: ['deny,'] }, /^--decision must not be empty/],
    [{ reason: ['NOT_GRANTD'] }, /^--reason "NOT_GRANTD" is no reason code.*NOT_GRANTED/],
    [{ action: ['launch'] }, /^--action "launch" is neither a permission/],
    [{ principal: [''] }, /^--principal must not be empty/],
    [{ clientId: [' '] }, /^--client-id must not be empty/],
    [{ thing: [''] }, /^--thing must not be empty/],
    [{ since: 'soon' }, /^--since must be/],
    [{ until: 'later' }, /^--until must be/],
    [{ since: '1h', until: '2h' }, /^--since \(.*\) must be before --until/],
  ];
  for (const [flags, message] of bad) t.throws(() => parseFilterFlags(flags, NOW), { code: 'EW_USAGE', message }, JSON.stringify(flags));
});

t.test('parseGroupBy', async (t) => {
  t.same(parseGroupBy(undefined), ['reason', 'principal']);
  t.same(parseGroupBy(['thing,decision', 'Client-Id', 'thing']), ['thing', 'decision', 'client-id']);
  t.throws(() => parseGroupBy(['topic']), { code: 'EW_USAGE', message: /^--by must be reason, principal, action, thing, decision, client-id/ });
  t.throws(() => parseGroupBy(['']), { code: 'EW_USAGE', message: /^--by must not be empty/ });
});
