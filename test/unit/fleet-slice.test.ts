// Property (issue 14): a gateway's slice of the tenant decides as the whole tenant does. Over random
// tenants and fleets (seeded), for each gateway, every (principal, permission, thing) question —
// every principal of the tenant (and one unknown), every permission of the catalog (legacy names
// too), every thing of the tenant, no thing (tenant level) and a thing id the tenant has not — is put
// to decide() on the slice and on the whole tenant with that gateway's section, both through the
// snapshot path (validatePolicy -> compilePolicy -> buildIndex -> decide).
//
// What must hold:
//  1. On a thing of the tenant: allow on the slice <=> allow on the whole tenant, for every principal.
//  2. On no thing or a new thing id: the same decision, reason included, for every principal the slice
//     holds. A principal the slice leaves out is denied UNKNOWN_PRINCIPAL there (REVOKED for the admin
//     stand-in, below); on the whole tenant
//     today's decide() may allow it a thing-less question (its verdict alone allows one), though it
//     can be allowed nothing on any thing this gateway serves. That is the one place the slice
//     decides otherwise, and on purpose: keeping those questions would put every principal with any
//     usable permission (and its credential hashes) in every slice. The test counts those cases.
//  3. Where both deny, the reasons differ only as follows, each because an id is absent from the slice:
//     - UNKNOWN_PRINCIPAL on the slice: the principal is not in it (whatever the whole tenant's reason);
//     - UNKNOWN_THING on the slice where the whole tenant says GATEWAY_SCOPE: the thing is one this
//       (standard) gateway does not serve, so it is not in the slice;
//     - REVOKED on the slice: the principal is the admin stand-in (the EVRYTHNG "at least one admin"
//       rule; revoked, no credential), which the slice holds only for validity.
//  4. The slice is a valid policy (validatePolicy), and holds no credential hash of a principal that is
//     allowed no question on a thing of this gateway (nor REGISTER_THING of a new thing).
import t from 'tap';
import { stringify } from 'yaml';
import { CATALOG, USER_TYPES, isAssignableTo, permissionByName, resolvePermissionName, type UserType } from '../../src/catalog/index.js';
import { DEVICE_PERMISSIONS as DECIDE_DEVICE_PERMISSIONS, buildIndex, type PolicyIndex } from '../../src/decide/policy-index.js';
import { decide } from '../../src/decide/decide.js';
import { compilePolicy, validatePolicy } from '../../src/policy/validate.js';
import { DEVICE_PERMISSIONS, loadFleetText, policyForGateway, sliceForGateway, type FleetGateway, type TenantPolicy } from '../../src/policy/fleet.js';
import type { PolicyFile } from '../../src/policy/schema.js';

const CASES = Number(process.env.FLEET_SLICE_CASES ?? 400);
const SEED = Number(process.env.FLEET_SLICE_SEED ?? 20261202);
const ISSUED_AT = Date.parse('2026-06-01T00:00:00Z');
const NOW = ISSUED_AT + 3_600_000;

/** mulberry32: small, seeded, good enough for test data. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const chance = (p: number) => next() < p;
  const pick = <T>(l: readonly T[]): T => l[int(l.length)]!;
  const some = <T>(l: readonly T[], p: number): T[] => l.filter(() => chance(p));
  return { int, chance, pick, some };
}
type Rng = ReturnType<typeof prng>;

let hashNo = 0;
const sha = () => 'sha256:' + (hashNo++).toString(16).padStart(64, '0');
const scrypt = () => `scrypt:15:8:1:${'s'.repeat(16)}:${(hashNo++).toString(36).padStart(43, 'h')}`;
const MODULES = ['CONNECTED_FIELD_SERVICE', 'VALUE_ADDED_DIGITAL_SERVICES', 'SPARE_PARTS_AND_CONSUMABLES'] as const;
const assignableNames = (ut: UserType) =>
  CATALOG.filter((e) => {
    const r = resolvePermissionName(e.name);
    const s = r && permissionByName(r.name);
    return s !== undefined && isAssignableTo(s, ut);
  }).map((e) => e.name);
const NAMES: Record<UserType, string[]> = { ORGANIZATION: assignableNames('ORGANIZATION'), PARTNER: assignableNames('PARTNER'), CUSTOMER: assignableNames('CUSTOMER') };
/** A permission set: a few names, often one of those that change scope rules. */
function perms(r: Rng, ut: UserType): string[] {
  const out = new Set<string>();
  const n = r.int(5);
  for (let i = 0; i < n; i++) out.add(r.pick(NAMES[ut]));
  for (const special of ['READ_ALL_THINGS', 'REGISTER_THING', 'READ_THING', 'EXECUTE_THING_COMMAND']) {
    if (NAMES[ut].includes(special) && r.chance(0.15)) out.add(special);
  }
  return [...out];
}

function randomTenant(r: Rng): TenantPolicy {
  const customers = Array.from({ length: 1 + r.int(4) }, (_, i) => ({ id: `c${i}` }));
  const cids = customers.map((c) => c.id);
  const partners = Array.from({ length: r.int(3) }, (_, i) => ({ id: `p${i}`, customers: r.some(cids, 0.4) }));
  const locations = cids.flatMap((c) => Array.from({ length: r.int(3) }, (_, i) => ({ id: `${c}-l${i}`, customer: c })));
  const groups = ['rg0', 'rg1', 'rg2', 'rg3'].slice(0, 1 + r.int(4));
  const things = Array.from({ length: r.int(10) }, (_, i) => {
    const customer = r.pick(cids);
    const locs = locations.filter((l) => l.customer === customer);
    return {
      id: `t${i}`,
      customer,
      ...(locs.length > 0 && r.chance(0.8) ? { location: r.pick(locs).id } : {}),
      resourceGroup: r.pick(groups),
      ...(r.chance(0.8) ? { tokenHashes: [sha(), ...(r.chance(0.2) ? [sha()] : [])] } : {}),
      ...(r.chance(0.2) ? { certFingerprints: [sha()] } : {}),
      ...(r.chance(0.1) ? { revoked: true } : {}),
    };
  });
  const tids = things.map((t) => t.id);
  const roles = Array.from({ length: r.int(5) }, (_, i) => {
    const userType = r.pick(USER_TYPES);
    return { name: `role${i}`, userType, permissions: perms(r, userType) };
  });
  const entityOf = (ut: UserType): string | undefined =>
    ut === 'ORGANIZATION' ? 'org' : ut === 'PARTNER' ? (partners.length ? r.pick(partners).id : undefined) : r.pick(cids);
  const users: NonNullable<TenantPolicy['users']> = [];
  const nUsers = 1 + r.int(7);
  for (let i = 0; i < nUsers; i++) {
    let userType = r.pick(USER_TYPES);
    let entity = entityOf(userType);
    if (entity === undefined) [userType, entity] = ['CUSTOMER', r.pick(cids)];
    const ofType = roles.filter((x) => x.userType === userType).map((x) => x.name);
    const roll = r.int(10);
    const role = roll < 3 ? 'admin' : roll < 4 ? undefined : roll < 5 ? 'none' : roll < 6 ? 'deleted-role' : ofType.length ? r.pick(ofType) : 'admin';
    users.push({
      id: `u${i}`,
      userType,
      entity,
      ...(role === undefined ? {} : { role }),
      ...(r.chance(0.8) ? { passwordHash: scrypt() } : {}),
      ...(r.chance(0.3) ? { tokenHashes: [sha()] } : {}),
      ...(r.chance(0.1) ? { revoked: true } : {}),
    });
  }
  if (!users.some((u) => u.role === 'admin')) users[r.int(users.length)]!.role = 'admin';
  const apiKeys = Array.from({ length: r.int(4) }, (_, i) => {
    let userType = r.pick(USER_TYPES);
    let entity = entityOf(userType);
    if (entity === undefined) [userType, entity] = ['CUSTOMER', r.pick(cids)];
    return { id: `k${i}`, userType, entity, permissions: perms(r, userType), secretHash: sha(), ...(r.chance(0.1) ? { revoked: true } : {}) };
  });
  const orgRoles = roles.filter((x) => x.userType === 'ORGANIZATION').map((x) => x.name);
  const applications = Array.from({ length: r.int(3) }, (_, i) => ({
    id: `a${i}`,
    role: r.pick(['admin', 'none', 'deleted-role', ...orgRoles, ...orgRoles]),
    secretHash: sha(),
    ...(r.chance(0.1) ? { revoked: true } : {}),
  }));
  const userAuthorizations: NonNullable<TenantPolicy['userAuthorizations']> = [];
  for (const c of cids) {
    if (!r.chance(0.4)) continue;
    const own = users.filter((u) => u.userType === 'CUSTOMER' && u.entity === c);
    const cThings = things.filter((x) => x.customer === c).map((x) => x.id);
    for (const u of r.some(own, 0.6)) userAuthorizations.push({ customer: c, user: u.id, things: r.some(cThings, 0.5) });
    if (own.length > 0 && !userAuthorizations.some((a) => a.customer === c)) userAuthorizations.push({ customer: c, user: own[0]!.id, things: [] });
  }
  const organizationAuthorizations = users
    .filter((u) => u.userType === 'ORGANIZATION' && r.chance(0.5))
    .map((u) => {
      // One kind of list alone (each must work by itself), or a mix of them.
      const mode = r.int(4);
      return {
        user: u.id,
        ...(mode === 0 || (mode === 3 && r.chance(0.6)) ? { customers: r.some(cids, 0.3) } : {}),
        ...(mode === 1 || (mode === 3 && r.chance(0.4)) ? { locations: r.some(locations.map((l) => l.id), 0.4) } : {}),
        ...(mode === 2 || (mode === 3 && r.chance(0.5)) ? { things: r.some(tids, 0.3) } : {}),
      };
    });
  return {
    formatVersion: 1,
    tenant: 'acme',
    modules: r.some(MODULES, 0.5),
    validity: { validFor: '30d' },
    organization: { id: 'org' },
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
  };
}

function randomFleet(r: Rng, tenant: TenantPolicy): FleetGateway[] {
  const groups = [...new Set((tenant.things ?? []).map((x) => x.resourceGroup))];
  return Array.from({ length: 1 + r.int(4) }, (_, i) => ({
    id: `gw${i}`,
    role: r.chance(0.25) ? ('privileged' as const) : ('standard' as const),
    resourceGroups: r.some(groups, 0.4),
  }));
}

const indexOf = (policy: PolicyFile): PolicyIndex => buildIndex(compilePolicy(validatePolicy(policy, 'policy').policy, { version: 1, issuedAt: ISSUED_AT }));

/** Every credential hash a policy holds, with its principal. */
function credentials(p: PolicyFile): Map<string, string> {
  const out = new Map<string, string>();
  for (const x of p.things ?? []) for (const h of [...(x.tokenHashes ?? []), ...(x.certFingerprints ?? [])]) out.set(h, x.id);
  for (const u of p.users ?? []) for (const h of [...(u.passwordHash ? [u.passwordHash] : []), ...(u.tokenHashes ?? [])]) out.set(h, u.id);
  for (const k of p.apiKeys ?? []) out.set(k.secretHash, k.id);
  for (const a of p.applications ?? []) out.set(a.secretHash, a.id);
  return out;
}

t.test('the device permission set is decide\'s', async (t) => {
  t.same([...DEVICE_PERMISSIONS], [...DECIDE_DEVICE_PERMISSIONS]);
});

t.test(`a gateway's slice decides as the whole tenant (${CASES} random tenants, seed ${SEED})`, async (t) => {
  const r = prng(SEED);
  const permissions = CATALOG.map((e) => e.name);
  const stats = { gateways: 0, privileged: 0, questions: 0, allows: 0, thinglessCut: 0, principalsKept: 0, principalsTotal: 0, thingsKept: 0, thingsTotal: 0, standIns: 0 };
  const failures: string[] = [];
  const fail = (m: string) => {
    if (failures.length < 20) failures.push(m);
  };
  for (let c = 0; c < CASES; c++) {
    const tenantRaw = randomTenant(r);
    const fleetRaw = { formatVersion: 1, gateways: randomFleet(r, tenantRaw) };
    // Through the files' path: YAML text, validated together.
    const { tenant, fleet } = loadFleetText(stringify(tenantRaw), 'tenant.yaml', stringify(fleetRaw), 'fleet.yaml');
    const principals = [...(tenant.things ?? []), ...(tenant.users ?? []), ...(tenant.apiKeys ?? []), ...(tenant.applications ?? [])].map((x) => x.id);
    const things: (string | undefined)[] = [...(tenant.things ?? []).map((x) => x.id), undefined, 'new-thing'];
    for (const gw of fleet.gateways) {
      const where = `case ${c} gateway ${gw.id} (${gw.role} [${gw.resourceGroups.join(',')}])`;
      stats.gateways++;
      if (gw.role === 'privileged') stats.privileged++;
      const slicePolicy = sliceForGateway(tenant, gw);
      let sliceIndex: PolicyIndex;
      try {
        sliceIndex = indexOf(slicePolicy);
      } catch (err) {
        fail(`${where}: the slice is not a valid policy: ${(err as { describe?: () => string }).describe?.() ?? String(err)}`);
        continue;
      }
      const whole = indexOf(policyForGateway(tenant, gw));
      const inSlice = new Set([...sliceIndex.ids.keys()]);
      const standIns = new Set((slicePolicy.users ?? []).filter((u) => u.revoked === true && !(tenant.users ?? []).find((x) => x.id === u.id)?.revoked).map((u) => u.id));
      stats.standIns += standIns.size;
      stats.principalsTotal += principals.length - (tenant.things ?? []).length;
      stats.principalsKept += (slicePolicy.users ?? []).length + (slicePolicy.apiKeys ?? []).length + (slicePolicy.applications ?? []).length - standIns.size;
      stats.thingsTotal += (tenant.things ?? []).length;
      stats.thingsKept += (slicePolicy.things ?? []).length;
      /** Principals allowed at least one question on a thing of this gateway, or to register a new thing. */
      const actors = new Set<string>();
      for (const p of [...principals, gw.id, 'nobody']) {
        for (const perm of permissions) {
          for (const thing of things) {
            stats.questions++;
            const a = decide(whole, p, perm, thing, NOW);
            const b = decide(sliceIndex, p, perm, thing, NOW);
            if (a.allow) stats.allows++;
            const onThing = thing !== undefined && thing !== 'new-thing';
            if (a.allow && (onThing || perm === 'REGISTER_THING')) actors.add(p);
            const q = `${where}: ${p} ${perm} ${thing ?? '(no thing)'}: whole ${a.allow ? 'allow' : a.reason}, slice ${b.allow ? 'allow' : b.reason}`;
            if (a.allow === b.allow && (a.allow || a.reason === b.reason)) continue;
            // Left out: not in the slice (UNKNOWN_PRINCIPAL), or only as the admin stand-in (REVOKED).
            const leftOut = standIns.has(p) ? 'REVOKED' : inSlice.has(p) ? undefined : 'UNKNOWN_PRINCIPAL';
            if (leftOut !== undefined && !b.allow && b.reason === leftOut) {
              // Rule 2: a thing-less (or new-thing) question of a principal left out; rule 3 otherwise.
              if (a.allow) {
                if (onThing) fail(`${q} (a principal left out is allowed on a thing)`);
                else stats.thinglessCut++;
              }
              continue;
            }
            if (a.allow || b.allow) fail(q);
            else if (b.reason === 'UNKNOWN_THING' && a.reason === 'GATEWAY_SCOPE' && thing !== undefined && !inSlice.has(thing)) continue;
            else fail(`${q} (a reason difference not explained by an absent id)`);
          }
        }
      }
      // Rule 4: no credential of a principal allowed nothing here.
      for (const [hash, owner] of credentials(slicePolicy)) {
        if (!actors.has(owner)) fail(`${where}: the slice holds a credential hash of ${owner}, which is allowed nothing on this gateway's things`);
      }
      // And the slice keeps every principal that is allowed something here (else rule 1 fails too).
      for (const p of actors) if (!inSlice.has(p)) fail(`${where}: ${p} is allowed on this gateway but not in the slice`);
    }
  }
  t.same(failures, [], 'no question is decided otherwise than the rules above allow');
  t.ok(stats.questions > 1_000_000, `${stats.questions} questions compared`);
  t.ok(stats.privileged > 10 && stats.gateways - stats.privileged > 10, `${stats.gateways} gateways, ${stats.privileged} privileged`);
  t.ok(stats.allows > 10_000, `${stats.allows} whole-tenant allows`);
  t.ok(stats.principalsKept < stats.principalsTotal, `slices keep ${stats.principalsKept} of ${stats.principalsTotal} principals, ${stats.thingsKept} of ${stats.thingsTotal} things`);
  t.ok(stats.thinglessCut > 0, `${stats.thinglessCut} thing-less questions allowed on the whole tenant to principals left out of the slice (rule 2)`);
  t.ok(stats.standIns > 0, `${stats.standIns} admin stand-ins`);
});
