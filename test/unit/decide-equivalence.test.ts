// The decision engine against a reference, question by question: on generated snapshots (every
// scope kind, revoked principals, things of unknown customers, duplicate ids, long and non-ASCII
// ids, both gateway roles) and many random questions (catalog, legacy and unknown permission names,
// unknown principals and things, tenant-level questions, before and after expiry in each expired
// mode), decide(), decideById() and explain() give the same allow/deny and reason as the engine
// before issue 16 (test/helpers/decide-reference.ts), and explain the same steps.
import t from 'tap';
import { CATALOG, MODULES, permissionId, USER_TYPES, type ModuleId, type UserType } from '../../src/catalog/index.js';
import { decide, decideById, explain } from '../../src/decide/decide.js';
import { buildIndex, principalOf, ScopeKind, Verdict, type ExpiredMode, type PolicyIndex } from '../../src/decide/policy-index.js';
import type { Decision } from '../../src/decide/reasons.js';
import type { SnapshotPayload } from '../../src/policy/schema.js';
import { referenceDecide, referenceDecideById, referenceExplain } from '../helpers/decide-reference.js';

const ISSUED_AT = Date.parse('2027-01-01T00:00:00Z');
const EXPIRES_AT = ISSUED_AT + 30 * 86_400_000;

/** mulberry32: a small seeded generator, so a failure names a reproducible seed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

interface Tenant {
  readonly payload: SnapshotPayload;
  readonly principals: readonly string[];
  readonly things: readonly string[];
}

const HASH = 'sha256:' + 'ab'.repeat(32);

/** A random tenant; ids short and long (13+ characters: V8 slices those), some not ASCII. */
function generateTenant(seed: number, privileged: boolean): Tenant {
  const rnd = random(seed);
  const below = (n: number): number => Math.floor(rnd() * n);
  const pick = <T>(a: readonly T[]): T => a[below(a.length)]!;
  const some = <T>(a: readonly T[], p: number): T[] => a.filter(() => rnd() < p);
  const id = (prefix: string, i: number): string => {
    const r = rnd();
    if (r < 0.4) return `${prefix}${i}`;
    if (r < 0.8) return `${prefix}-long-identifier-${i}`;
    return `${prefix}-ünïcødé-${i}-設備`;
  };
  const names = CATALOG.map((e) => e.name);
  const groups = ['g1', 'g2', 'g3'];
  const customers = Array.from({ length: 2 + below(8) }, (_, i) => ({ id: id('c', i) }));
  const locations = customers.flatMap((c, ci) => Array.from({ length: below(3) }, (_, k) => ({ id: id(`l${ci}-`, k), customer: c.id })));
  const partners = Array.from({ length: 1 + below(4) }, (_, i) => ({ id: id('p', i), customers: some(customers, 0.4).map((c) => c.id) }));
  const things: SnapshotPayload['things'] = [];
  const thingCount = 10 + below(40);
  for (let i = 0; i < thingCount; i++) {
    // A few things of customers the snapshot does not list, a few repeated ids.
    const customer = rnd() < 0.05 ? `ghost-customer-${i}` : pick(customers).id;
    const loc = locations.filter((l) => l.customer === customer);
    const thingId = i > 0 && rnd() < 0.03 ? things[below(i)]!.id : id('t', i);
    things.push({
      id: thingId,
      customer,
      resourceGroup: pick(groups),
      ...(loc.length > 0 && rnd() < 0.7 ? { location: pick(loc).id } : {}),
      ...(rnd() < 0.08 ? { revoked: true } : {}),
      ...(rnd() < 0.5 ? { tokenHashes: [HASH] } : {}),
    });
  }
  const roles = USER_TYPES.flatMap((ut) => Array.from({ length: 2 }, (_, k) => ({ name: `role-${ut}-${k}`, userType: ut, permissions: some(names, 0.35) })));
  const roleFor = (ut: UserType): string | undefined => {
    const r = rnd();
    if (r < 0.1) return undefined;
    if (r < 0.2) return 'admin';
    if (r < 0.25) return 'none';
    if (r < 0.28) return 'no-such-role';
    if (r < 0.31) return pick(roles).name; // perhaps of another user type: falls back to none
    return pick(roles.filter((x) => x.userType === ut)).name;
  };
  const org = 'org-1';
  const entityFor = (ut: UserType): string => {
    if (ut === 'ORGANIZATION') return rnd() < 0.95 ? org : 'other-org';
    if (ut === 'PARTNER') return rnd() < 0.9 ? pick(partners).id : 'unknown-partner';
    return rnd() < 0.9 ? pick(customers).id : 'unknown-customer';
  };
  const users = Array.from({ length: 10 + below(30) }, (_, i) => {
    const userType = pick(USER_TYPES);
    const role = roleFor(userType);
    // A repeated id now and then: the first is kept.
    const userId = i > 0 && rnd() < 0.03 ? `u${i - 1}` : rnd() < 0.05 && things.length > 0 ? things[0]!.id : id('u', i);
    return { id: userId, userType, entity: entityFor(userType), ...(role === undefined ? {} : { role }), ...(rnd() < 0.08 ? { revoked: true } : {}) };
  });
  const apiKeys = Array.from({ length: 2 + below(8) }, (_, i) => {
    const userType = pick(USER_TYPES);
    const permissions = rnd() < 0.3 ? ['READ_ALL_THINGS', ...some(names, 0.2)] : some(names, 0.3);
    if (rnd() < 0.1) permissions.push('NOT_A_PERMISSION');
    return { id: id('k', i), userType, entity: entityFor(userType), permissions, secretHash: HASH, ...(rnd() < 0.1 ? { revoked: true } : {}) };
  });
  const orgRoles = roles.filter((r) => r.userType === 'ORGANIZATION').map((r) => r.name);
  const applications = Array.from({ length: 1 + below(5) }, (_, i) => ({
    id: id('app', i),
    role: rnd() < 0.2 ? 'admin' : pick([...orgRoles, 'none']),
    secretHash: HASH,
    ...(rnd() < 0.1 ? { revoked: true } : {}),
  }));
  // Customers with user authorizations: their CUSTOMER users act only on the things authorized to them.
  const userAuthorizations = users
    .filter((u) => u.userType === 'CUSTOMER' && rnd() < 0.4)
    .map((u) => ({ customer: u.entity, user: u.id, things: some(things, 0.2).map((x) => x.id) }));
  const organizationAuthorizations = users
    .filter((u) => u.userType === 'ORGANIZATION' && rnd() < 0.5)
    .map((u) => ({
      user: u.id,
      ...(rnd() < 0.6 ? { customers: [...some(customers, 0.3).map((c) => c.id), ...(rnd() < 0.2 ? ['unknown-c'] : [])] } : {}),
      ...(rnd() < 0.6 ? { locations: some(locations, 0.3).map((l) => l.id) } : {}),
      ...(rnd() < 0.6 ? { things: [...some(things, 0.2).map((x) => x.id), ...(rnd() < 0.2 ? ['unknown-t'] : [])] } : {}),
    }));
  const modules = some(
    MODULES.map((m) => m.id),
    0.5,
  ) as ModuleId[];
  const payload: SnapshotPayload = {
    formatVersion: 1,
    tenant: 'tenant-1',
    gateway: { id: 'gw-1', role: privileged ? 'privileged' : 'standard', resourceGroups: some(groups, 0.6) },
    organization: { id: org, name: 'Org' },
    modules,
    partners,
    customers,
    locations,
    things,
    roles,
    users,
    apiKeys,
    applications,
    userAuthorizations,
    organizationAuthorizations,
    version: 1,
    issuedAt: ISSUED_AT,
    expiresAt: EXPIRES_AT,
  } as SnapshotPayload;
  const principals = ['gw-1', ...things.map((x) => x.id), ...users.map((u) => u.id), ...apiKeys.map((k) => k.id), ...applications.map((a) => a.id)];
  return { payload, principals, things: things.map((x) => x.id) };
}

/** A flat copy with the same characters, as the MQTT parser hands ids over (never the index's own string). */
const copy = (s: string): string => Buffer.from(s, 'utf8').toString('utf8');
/** Half the time a slice of a longer string (V8 slices strings of 13 characters and more). */
const sliced = (s: string, rnd: () => number): string => (rnd() < 0.5 ? copy(s) : `##${s}##`.slice(2, 2 + s.length));

const UNKNOWN_NAMES = ['', 'X', 'read_thing', 'READ_THING ', ' READ_THING', 'READ_THINGS', 'READ_THIN', 'READ_THING\u0000', 'A'.repeat(60), '\ud800', 'ÉXECUTE_THING_COMMAND'];

interface Question {
  principal: string;
  permission: string;
  thing: string | undefined;
}

function question(tenant: Tenant, index: PolicyIndex, rnd: () => number): Question {
  const pick = <T>(a: readonly T[]): T => a[Math.floor(rnd() * a.length)]!;
  const r = rnd();
  const principal = r < 0.05 ? `ghost-${Math.floor(rnd() * 100)}` : r < 0.07 ? 'gw-1' : sliced(pick(tenant.principals), rnd);
  // Half the time a permission the principal holds (so that most questions reach the scope rules).
  const held = principalOf(index, principal)?.verdict;
  const heldNames = held === undefined ? [] : CATALOG.filter((e) => held[e.id] === Verdict.Ok).map((e) => e.name);
  const q = rnd();
  const permission =
    q < 0.04
      ? pick(UNKNOWN_NAMES)
      : q < 0.06
        ? 'WRITE_DATA'
        : q < 0.5 && heldNames.length > 0
          ? pick(heldNames)
          : q < 0.7
            ? pick(['READ_THING', 'READ_CLOUD_STATUS', 'EXECUTE_THING_COMMAND', 'REGISTER_THING', 'READ_HISTORICAL_DATA'])
            : pick(CATALOG).name;
  const w = rnd();
  let thing: string | undefined;
  if (w < 0.12) thing = undefined;
  else if (w < 0.3) thing = principal; // a device on itself, or a non-thing principal named as thing
  else if (w < 0.35) thing = `gone-${Math.floor(rnd() * 100)}`;
  else if (w < 0.4) thing = sliced(pick(tenant.principals), rnd);
  else thing = sliced(pick(tenant.things), rnd);
  return { principal, permission: q < 0.5 ? permission : copy(permission), thing };
}

const same = (a: Decision, b: Decision): boolean => a.allow === b.allow && a.reason === b.reason;
const show = (d: Decision): string => (d.allow ? 'ALLOW' : d.reason);

t.test('decide, decideById and explain answer as the reference on generated snapshots', async (t) => {
  const MODES: ExpiredMode[] = ['read-only', 'deny-all', 'enforce'];
  const TIMES = [ISSUED_AT + 1000, EXPIRES_AT - 1, EXPIRES_AT, EXPIRES_AT + 86_400_000];
  let asked = 0;
  let mismatches = 0;
  const outcomes = new Map<string, number>();
  const kinds = new Set<number>();
  for (let seed = 1; seed <= 24; seed++) {
    const tenant = generateTenant(seed, seed % 3 === 0);
    const indexes = MODES.map((m) => buildIndex(structuredClone(tenant.payload), { expiredMode: m }));
    for (let n = 0; n < indexes[0]!.records.length; n++) kinds.add(indexes[0]!.pScopeKind[n]!);
    const rnd = random(seed * 7919);
    for (let k = 0; k < 4000; k++) {
      const index: PolicyIndex = indexes[k % MODES.length]!;
      const q = question(tenant, index, rnd);
      const now = TIMES[Math.floor(rnd() * TIMES.length)]!;
      const expected = referenceDecide(index, q.principal, q.permission, q.thing, now);
      const got = decide(index, q.principal, q.permission, q.thing, now);
      const explained = explain(index, q.principal, q.permission, q.thing, now);
      const rawId = permissionId(q.permission);
      const byId = rawId < 0 ? expected : decideById(index, q.principal, index.canonical[rawId]!, q.thing, now);
      const byIdExpected = rawId < 0 ? expected : referenceDecideById(index, q.principal, index.canonical[rawId]!, q.thing, now);
      asked++;
      const key = show(expected);
      outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
      const pn = index.ids.get(q.principal);
      if (pn !== undefined && (key === 'ALLOW' || key === 'OUT_OF_SCOPE') && q.thing !== undefined) {
        const byKind = `${key} kind ${index.pScopeKind[pn]}`;
        outcomes.set(byKind, (outcomes.get(byKind) ?? 0) + 1);
      }
      if (!same(got, expected) || !same(explained.decision, expected) || !same(byId, byIdExpected)) {
        if (mismatches++ < 10) {
          t.fail(`seed ${seed}: ${JSON.stringify(q)} at ${now} (${index.expiredMode}): decide ${show(got)}, explain ${show(explained.decision)}, byId ${show(byId)}; reference ${key}`);
        }
        continue;
      }
      // explain says the same thing, step by step.
      if (k % 4 === 0) {
        const ref = referenceExplain(index, q.principal, q.permission, q.thing, now);
        if (JSON.stringify(ref.steps) !== JSON.stringify(explained.steps)) {
          if (mismatches++ < 10) t.fail(`seed ${seed}: ${JSON.stringify(q)}: explain's steps differ:\n${JSON.stringify(explained.steps)}\n${JSON.stringify(ref.steps)}`);
        }
      }
      // The shared frozen results: nothing allocated per decision.
      if (got !== decide(index, q.principal, q.permission, q.thing, now)) t.fail('a decision is not one of the shared results');
    }
  }
  t.equal(mismatches, 0, `${asked} questions, none answered differently`);
  // The questions reach every outcome and the snapshots every scope kind: the comparison covers them.
  for (const reason of ['ALLOW', 'UNKNOWN_PERMISSION', 'UNKNOWN_PRINCIPAL', 'REVOKED', 'SNAPSHOT_EXPIRED', 'USER_TYPE_RESTRICTED', 'NOT_GRANTED', 'MODULE_INACTIVE', 'UNKNOWN_THING', 'GATEWAY_SCOPE', 'OUT_OF_SCOPE']) {
    t.ok((outcomes.get(reason) ?? 0) >= 20, `${reason}: ${outcomes.get(reason) ?? 0} questions`);
  }
  for (const kind of [ScopeKind.All, ScopeKind.Self, ScopeKind.Customer, ScopeKind.CustomerMask, ScopeKind.Sets, ScopeKind.Nothing]) t.ok(kinds.has(kind), `scope kind ${kind} occurs`);
  // Each scope kind is asked about things in scope and out of it (All: in only; Nothing: out only).
  for (const kind of [ScopeKind.All, ScopeKind.Self, ScopeKind.Customer, ScopeKind.CustomerMask, ScopeKind.Sets]) {
    t.ok((outcomes.get(`ALLOW kind ${kind}`) ?? 0) >= 20, `scope kind ${kind}: ${outcomes.get(`ALLOW kind ${kind}`) ?? 0} allowed on a thing`);
  }
  for (const kind of [ScopeKind.Self, ScopeKind.Customer, ScopeKind.CustomerMask, ScopeKind.Sets, ScopeKind.Nothing]) {
    t.ok((outcomes.get(`OUT_OF_SCOPE kind ${kind}`) ?? 0) >= 20, `scope kind ${kind}: ${outcomes.get(`OUT_OF_SCOPE kind ${kind}`) ?? 0} out of scope`);
  }
});

t.test('without a snapshot: NO_SNAPSHOT, as the reference', async (t) => {
  for (const d of [decide(null, 'u', 'READ_THING', undefined, 0), decide(undefined, 'u', 'NOPE', 't', 0), explain(null, 'u', 'READ_THING', 't', 0).decision]) {
    t.ok(same(d, referenceDecide(null, 'u', 'READ_THING', undefined, 0)), show(d));
  }
  t.same(explain(null, 'u', 'READ_THING', 't', 0).steps, referenceExplain(null, 'u', 'READ_THING', 't', 0).steps);
});
