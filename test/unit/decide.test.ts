// Decision table: (principal, permission, thing) -> allow | deny reason, on test/fixtures/decide-policy.yaml
// (a standard gateway serving resource group g1, only the Connected Field Service module active).
import t from 'tap';
import { decide, explain } from '../../src/decide/decide.js';
import { buildIndex, principalOf } from '../../src/decide/policy-index.js';
import { DENY_REASON_CODES, type DenyReason } from '../../src/decide/reasons.js';
import { fixtureIndex, fixturePayload } from '../helpers/policy.js';

const NOW = Date.parse('2027-06-01T00:00:00Z');
const AFTER_EXPIRY = Date.parse('2031-01-01T00:00:00Z');
type Row = [principal: string, permission: string, thing: string | undefined, expected: 'allow' | DenyReason, why: string];

const standard = fixtureIndex('decide-policy.yaml');
const privileged = fixtureIndex('decide-policy.yaml', (p) => {
  p.gateway.role = 'privileged';
});
const noModules = fixtureIndex('decide-policy.yaml', (p) => {
  p.modules = [];
});
const vads = fixtureIndex('decide-policy.yaml', (p) => {
  p.modules = ['VALUE_ADDED_DIGITAL_SERVICES'];
});

const standardCases: Row[] = [
  ['u-admin', 'EXECUTE_THING_COMMAND', 't-1', 'allow', 'organization admin, thing in gateway group'],
  ['u-admin', 'UPDATE_FIRMWARE', 't-4', 'GATEWAY_SCOPE', 'standard gateway refuses a thing outside its groups even for an admin'],
  ['u-admin', 'EXECUTE_THING_COMMAND', 't-4', 'GATEWAY_SCOPE', 'no command reaches a thing outside the groups'],
  ['u-admin', 'SET_THING_PARAMETER', 't-4', 'GATEWAY_SCOPE', 'no parameter reaches a thing outside the groups'],
  ['u-admin', 'UPDATE_FIRMWARE', 't-5', 'allow', 'admin, any customer of the tenant'],
  ['u-admin', 'WRITE_TASK', 't-1', 'MODULE_INACTIVE', 'WRITE_TASK needs Value-added Digital Services'],
  ['u-admin', 'PLACE_ORDER', undefined, 'USER_TYPE_RESTRICTED', 'PLACE_ORDER is for CUSTOMER and PARTNER only'],
  ['u-admin', 'READ_HISTORICAL_DATA', 't-1', 'allow', 'back-office user with CFS active'],
  ['u-admin', 'REGISTER_THING', 't-new', 'GATEWAY_SCOPE', 'registering needs a privileged gateway'],
  ['u-admin', 'NO_SUCH_PERMISSION', 't-1', 'UNKNOWN_PERMISSION', 'not in the catalog'],
  ['u-admin', 'read_thing', 't-1', 'UNKNOWN_PERMISSION', 'API names are case-sensitive'],
  ['nobody', 'READ_THING', 't-1', 'UNKNOWN_PRINCIPAL', 'not in the snapshot'],
  ['u-admin', 'READ_THING', 't-unknown', 'UNKNOWN_THING', 'thing not in the snapshot'],
  ['u-admin', 'READ_CUSTOMER', undefined, 'allow', 'tenant-level permission, no thing'],
  ['u-admin', 'WRITE_CLOUD_STATUS', 't-1', 'allow', 'WRITE_CLOUD_STATUS is ORGANIZATION-only and admin holds it'],
  ['u-ops', 'EXECUTE_THING_COMMAND', 't-3', 'allow', 'organization user: all things of the tenant'],
  ['u-ops', 'SET_THING_PARAMETER', 't-3', 'NOT_GRANTED', 'role org-ops lacks it'],
  ['u-ops', 'WRITE_TASK', 't-1', 'MODULE_INACTIVE', 'granted but module inactive'],
  ['u-ops', 'EXECUTE_BULK_UPDATE', undefined, 'allow', 'needs CFS or VADS: CFS is active'],
  ['u-ops-narrow', 'EXECUTE_THING_COMMAND', 't-3', 'allow', 'organization authorization on customer c-2'],
  ['u-ops-narrow', 'EXECUTE_THING_COMMAND', 't-6', 'allow', 'c-2 again'],
  ['u-ops-narrow', 'EXECUTE_THING_COMMAND', 't-1', 'allow', 'organization authorization on thing t-1'],
  ['u-ops-narrow', 'EXECUTE_THING_COMMAND', 't-2', 'OUT_OF_SCOPE', 'narrowed: t-2 is not authorized'],
  ['u-ops-narrow', 'EXECUTE_THING_COMMAND', 't-5', 'OUT_OF_SCOPE', 'narrowed: c-3 is not authorized'],
  ['u-partner', 'EXECUTE_THING_COMMAND', 't-1', 'allow', 'c-1 is assigned to partner p-1'],
  ['u-partner', 'SET_THING_PARAMETER', 't-2', 'allow', 'c-1 again'],
  ['u-partner', 'EXECUTE_THING_COMMAND', 't-3', 'OUT_OF_SCOPE', 'c-2 is not assigned to p-1'],
  ['u-partner', 'EXECUTE_THING_COMMAND', 't-5', 'OUT_OF_SCOPE', 'c-3 is assigned to another partner'],
  ['u-partner', 'UPDATE_FIRMWARE', 't-4', 'GATEWAY_SCOPE', 'in scope but outside the gateway groups'],
  ['u-partner', 'PLACE_ORDER', undefined, 'MODULE_INACTIVE', 'needs Spare Parts or VADS'],
  ['u-partner', 'WRITE_CLOUD_STATUS', 't-1', 'USER_TYPE_RESTRICTED', 'ORGANIZATION-only permission'],
  ['u-partner', 'READ_HISTORICAL_DATA', 't-1', 'allow', 'back-office user, CFS active'],
  ['u-partner', 'WRITE_ALERT_STATUS', 't-1', 'NOT_GRANTED', 'role lacks it'],
  ['u-partner-admin', 'WRITE_CLOUD_STATUS', 't-1', 'USER_TYPE_RESTRICTED', 'admin of a PARTNER does not get ORGANIZATION-only permissions'],
  ['u-partner-admin', 'WRITE_USER_AUTHORIZATION', undefined, 'USER_TYPE_RESTRICTED', 'CUSTOMER-only permission'],
  ['u-partner-admin', 'UPDATE_FIRMWARE', 't-2', 'allow', 'partner admin, assigned customer'],
  ['u-partner-admin', 'UPDATE_FIRMWARE', 't-3', 'OUT_OF_SCOPE', 'partner admin, unassigned customer'],
  ['u-cust1', 'EXECUTE_THING_COMMAND', 't-1', 'allow', 'own customer, no user authorizations for c-1'],
  ['u-cust1', 'EXECUTE_THING_COMMAND', 't-3', 'OUT_OF_SCOPE', 'another customer'],
  ['u-cust1', 'UPDATE_FIRMWARE', 't-1', 'NOT_GRANTED', 'role cust-op lacks it'],
  ['u-cust1', 'EXECUTE_THING_COMMAND', 't-4', 'GATEWAY_SCOPE', 'own thing, but outside the gateway groups'],
  ['u-cust1', 'READ_HISTORICAL_DATA', 't-2', 'allow', 'customer user'],
  ['u-cust2a', 'READ_THING', 't-3', 'allow', 'user authorization on t-3'],
  ['u-cust2a', 'READ_THING', 't-6', 'OUT_OF_SCOPE', 'c-2 has user authorizations: only t-3 for this user'],
  ['u-cust2b', 'READ_THING', 't-3', 'OUT_OF_SCOPE', 'c-2 has user authorizations, none for this user'],
  ['u-none', 'READ_THING', 't-1', 'NOT_GRANTED', 'no role means the built-in role none'],
  ['u-revoked', 'READ_THING', 't-1', 'REVOKED', 'revoked admin'],
  ['u-cust-admin', 'WRITE_USER_AUTHORIZATION', undefined, 'allow', 'CUSTOMER admin holds CUSTOMER-only permissions'],
  ['u-cust-admin', 'WRITE_CLOUD_STATUS', 't-1', 'USER_TYPE_RESTRICTED', 'CUSTOMER cannot hold WRITE_CLOUD_STATUS, even as admin'],
  ['u-cust-admin', 'IMPORT_CUSTOMERS', undefined, 'USER_TYPE_RESTRICTED', 'ORGANIZATION and PARTNER only'],
  ['u-cust-admin', 'EXECUTE_THING_COMMAND', 't-1', 'allow', 'customer admin, own thing'],
  ['u-cust-admin', 'EXECUTE_THING_COMMAND', 't-5', 'OUT_OF_SCOPE', 'customer admin, other customer'],
  ['u-deleted-role', 'READ_THING', 't-1', 'NOT_GRANTED', 'a deleted role falls back to none'],
  ['k-org', 'EXECUTE_THING_COMMAND', 't-5', 'allow', 'organization API key: whole tenant'],
  ['k-org', 'UPDATE_FIRMWARE', 't-5', 'NOT_GRANTED', 'not in the key\'s own set'],
  ['k-cust', 'READ_THING', 't-3', 'allow', 'READ_ALL_THINGS widens reads to the tenant'],
  ['k-cust', 'EXECUTE_THING_COMMAND', 't-3', 'OUT_OF_SCOPE', 'READ_ALL_THINGS widens reads, nothing else'],
  ['k-cust', 'EXECUTE_THING_COMMAND', 't-1', 'allow', 'customer key, own customer'],
  ['k-cust', 'READ_THING', 't-4', 'GATEWAY_SCOPE', 'widening never crosses the gateway scope'],
  ['k-partner', 'READ_THING', 't-5', 'allow', 'partner key: customers of p-2'],
  ['k-partner', 'READ_THING', 't-1', 'OUT_OF_SCOPE', 'partner key: c-1 is not p-2\'s'],
  ['k-legacy', 'IMPORT_DATA', 't-1', 'allow', 'legacy WRITE_DATA granted as IMPORT_DATA'],
  ['k-legacy', 'WRITE_DATA', 't-1', 'allow', 'asking with the legacy name maps too'],
  ['app-vis', 'READ_THING', 't-5', 'allow', 'application: tenant-wide with its role'],
  ['app-vis', 'EXECUTE_THING_COMMAND', 't-1', 'NOT_GRANTED', 'visualization role has no commands'],
  ['t-1', 'READ_THING', 't-1', 'allow', 'a device reads itself'],
  ['t-1', 'READ_THING', 't-2', 'OUT_OF_SCOPE', 'a device acts only on itself'],
  ['t-1', 'EXECUTE_THING_COMMAND', 't-1', 'NOT_GRANTED', 'devices do not command'],
  ['t-rev', 'READ_THING', 't-rev', 'REVOKED', 'revoked device'],
  ['gw-test', 'READ_THING', 't-1', 'allow', 'the gateway\'s own identity'],
  ['gw-test', 'REGISTER_THING', 't-new', 'NOT_GRANTED', 'IBM standard gateway role does not hold REGISTER_THING'],
];

const privilegedCases: Row[] = [
  ['u-admin', 'REGISTER_THING', 't-new', 'allow', 'privileged gateway, admin registers a new thing'],
  ['u-admin', 'UPDATE_FIRMWARE', 't-4', 'allow', 'privileged gateway serves every thing'],
  ['u-cust1', 'REGISTER_THING', 't-new', 'NOT_GRANTED', 'role lacks REGISTER_THING'],
  ['gw-test', 'REGISTER_THING', 't-new', 'allow', 'privileged gateway role registers devices'],
  ['u-partner', 'UPDATE_FIRMWARE', 't-4', 'allow', 'in the partner\'s scope, served by a privileged gateway'],
  ['u-partner', 'UPDATE_FIRMWARE', 't-3', 'OUT_OF_SCOPE', 'privileged gateway does not widen principal scope'],
];

const noModuleCases: Row[] = [
  ['u-partner', 'READ_HISTORICAL_DATA', 't-1', 'MODULE_INACTIVE', 'back-office users need CFS for historical data'],
  ['u-admin', 'READ_HISTORICAL_DATA', 't-1', 'MODULE_INACTIVE', 'organization is back-office too'],
  ['u-cust1', 'READ_HISTORICAL_DATA', 't-1', 'allow', 'customer users need no module for historical data'],
  ['u-cust1', 'EXECUTE_THING_COMMAND', 't-1', 'MODULE_INACTIVE', 'commands need Connected Field Service'],
  ['u-admin', 'READ_THING', 't-1', 'allow', 'READ_THING needs no module'],
];

const vadsCases: Row[] = [
  ['u-ops', 'EXECUTE_BULK_UPDATE', undefined, 'allow', 'CFS or VADS: VADS alone suffices'],
  ['u-ops', 'WRITE_TASK', 't-1', 'allow', 'VADS active'],
  ['u-ops', 'EXECUTE_THING_COMMAND', 't-1', 'MODULE_INACTIVE', 'CFS inactive'],
];

function runTable(name: string, index: typeof standard, rows: Row[], now = NOW) {
  t.test(name, async (t) => {
    for (const [principal, permission, thing, expected, why] of rows) {
      const d = decide(index, principal, permission, thing, now);
      t.equal(d.allow ? 'allow' : d.reason, expected, `${principal} ${permission} ${thing ?? '-'}: ${why}`);
    }
  });
}

runTable('standard gateway, CFS active', standard, standardCases);
runTable('privileged gateway', privileged, privilegedCases);
runTable('no module active', noModules, noModuleCases);
runTable('only Value-added Digital Services active', vads, vadsCases);

t.test('the table is large and covers every reason decide can give', async (t) => {
  const all = [...standardCases, ...privilegedCases, ...noModuleCases, ...vadsCases];
  t.ok(all.length >= 60, `${all.length} cases`);
  const seen = new Set(all.map((r) => r[3]));
  for (const r of DENY_REASON_CODES) {
    if (r === 'RATE_LIMITED' || r === 'TOPIC_DENIED' || r === 'ACTION_EXPIRED' || r === 'NO_AUTHORITY' || r === 'QUEUE_FULL' || r === 'RESPONSE_TOPIC_DENIED' || r === 'SNAPSHOT_EXPIRED' || r === 'NO_SNAPSHOT') continue; // broker-level (publish or delivery) or tested below
    t.ok(seen.has(r), `table has a ${r} case`);
  }
});

t.test('expired snapshot: the default keeps READ_* and denies writes and commands', async (t) => {
  const readOnly = standard;
  t.equal(decide(readOnly, 'u-admin', 'EXECUTE_THING_COMMAND', 't-1', AFTER_EXPIRY).reason, 'SNAPSHOT_EXPIRED');
  t.equal(decide(readOnly, 'u-admin', 'UPDATE_FIRMWARE', 't-1', AFTER_EXPIRY).reason, 'SNAPSHOT_EXPIRED');
  t.equal(decide(readOnly, 'u-admin', 'READ_THING', 't-1', AFTER_EXPIRY).allow, true);
  t.equal(decide(readOnly, 't-1', 'READ_THING', 't-1', AFTER_EXPIRY).allow, true, 'devices keep reading themselves');
  t.equal(decide(readOnly, 'u-cust1', 'READ_THING', 't-3', AFTER_EXPIRY).reason, 'OUT_OF_SCOPE', 'scope still applies to reads');
  const denyAll = fixtureIndex('decide-policy.yaml', undefined, 'deny-all');
  t.equal(decide(denyAll, 'u-admin', 'READ_THING', 't-1', AFTER_EXPIRY).reason, 'SNAPSHOT_EXPIRED');
  const enforce = fixtureIndex('decide-policy.yaml', undefined, 'enforce');
  t.equal(decide(enforce, 'u-admin', 'EXECUTE_THING_COMMAND', 't-1', AFTER_EXPIRY).allow, true);
  t.equal(decide(readOnly, 'u-admin', 'EXECUTE_THING_COMMAND', 't-1', Date.parse('2030-01-01T00:00:00Z')).reason, 'SNAPSHOT_EXPIRED', 'expiry instant itself is expired');
});

t.test('no snapshot held: everything is denied', async (t) => {
  t.equal(decide(null, 'u-admin', 'READ_THING', 't-1', NOW).reason, 'NO_SNAPSHOT');
  t.equal(decide(undefined, 'anyone', 'ANY', undefined, NOW).reason, 'NO_SNAPSHOT');
});

t.test('defence in depth: a signed grant the user type may not hold is never honoured', async (t) => {
  const payload = fixturePayload('decide-policy.yaml');
  const role = payload.roles!.find((r) => r.name === 'cust-view')!;
  role.permissions = [...role.permissions, 'WRITE_CLOUD_STATUS', 'NOT_A_PERMISSION'];
  const index = buildIndex(payload);
  t.equal(decide(index, 'u-cust2b', 'WRITE_CLOUD_STATUS', 't-3', NOW).reason, 'USER_TYPE_RESTRICTED');
  t.match(index.warnings.join('\n'), /role cust-view: WRITE_CLOUD_STATUS cannot be held by CUSTOMER/);
  t.match(index.warnings.join('\n'), /NOT_A_PERMISSION ignored/);
});

t.test('a principal whose role is missing from the snapshot falls back to none', async (t) => {
  const payload = fixturePayload('decide-policy.yaml');
  payload.roles = payload.roles!.filter((r) => r.name !== 'cust-op');
  const index = buildIndex(payload);
  t.equal(decide(index, 'u-cust1', 'READ_THING', 't-1', NOW).reason, 'NOT_GRANTED');
  t.equal(principalOf(index, 'u-cust1')!.role, 'none');
});

t.test('a repeated thing id: the first is kept, with a warning', async (t) => {
  const payload = fixturePayload('decide-policy.yaml');
  const first = payload.things!.find((x) => x.id === 't-1')!;
  const moved = payload.things!.find((x) => x.id === 't-4')!;
  payload.things!.push({ ...moved, id: 't-1' }, { ...moved, id: 't-1' });
  const index = buildIndex(payload);
  t.equal(index.ids.get('t-1'), payload.things!.indexOf(first), 'the first t-1');
  t.equal(index.thingServed[index.ids.get('t-1')!], 1, 'served as the first t-1 is');
  t.equal(decide(index, 'u-admin', 'UPDATE_FIRMWARE', 't-1', NOW).allow, true, 'decided on the first t-1');
  t.same(
    index.warnings.filter((w) => /appears twice/.test(w)),
    ['thing id t-1 appears twice; the first is kept', 'thing id t-1 appears twice; the first is kept'],
  );
});

t.test('decide returns shared frozen results', async (t) => {
  const a = decide(standard, 'u-admin', 'READ_THING', 't-1', NOW);
  const b = decide(standard, 'u-cust1', 'READ_THING', 't-2', NOW);
  t.equal(a, b, 'one allow object');
  const c = decide(standard, 'nobody', 'READ_THING', 't-1', NOW);
  const d = decide(standard, 'nobody2', 'READ_THING', 't-1', NOW);
  t.equal(c, d, 'one object per reason');
  t.ok(Object.isFrozen(a) && Object.isFrozen(c));
});

t.test('explain lists each rule that led to the decision', async (t) => {
  const allow = explain(standard, 'u-partner', 'EXECUTE_THING_COMMAND', 't-1', NOW);
  t.equal(allow.decision.allow, true);
  t.same(allow.steps.map((s) => s.rule), ['permission', 'principal', 'expiry', 'grant', 'modules', 'gateway scope', 'scope']);
  t.ok(allow.steps.every((s) => s.passed));
  const deny = explain(standard, 'u-partner', 'EXECUTE_THING_COMMAND', 't-3', NOW);
  t.equal(deny.decision.reason, 'OUT_OF_SCOPE');
  const last = deny.steps[deny.steps.length - 1]!;
  t.equal(last.passed, false);
  t.match(last.detail, /customers assigned to partner p-1/);
  // explain and decide agree on every table row
  for (const [p, perm, thing] of standardCases) {
    t.equal(explain(standard, p, perm, thing, NOW).decision, decide(standard, p, perm, thing, NOW), `${p} ${perm} ${thing}`);
  }
});
