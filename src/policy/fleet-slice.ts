// Each gateway's slice of a tenant policy (issue 14): the policy that gateway needs to decide, and
// nothing more. prepareTenant indexes the tenant once (things by resource group; each principal by
// the customers, locations and things through which it can reach a thing); a slice then costs about
// its own size, not the tenant's: `fleet sign` cuts 10,000 slices of a 100,000-thing tenant.
//
// The slice repeats, over the policy, the few rules of decide() that say whether a principal can be
// allowed anything on a thing (grants, user types, modules, scopes, READ_ALL_THINGS, REGISTER_THING on
// a privileged gateway): this area sits below `decide` and cannot use its index.
// test/unit/fleet-slice.test.ts checks the slice against decide() on the whole tenant, question by question.
//
// One difference from the whole tenant is deliberate: decide() allows a thing-less (tenant-level)
// question on the principal's grants alone, so on the whole tenant every principal with a usable
// permission is allowed one on every gateway; the slice leaves out the principals that can be
// allowed nothing on this gateway's things, so they are UNKNOWN_PRINCIPAL there (see the test).
import { CATALOG, isAssignableTo, permissionByName, requiredModulesFor, resolvePermissionName, type PermissionEntry, type UserType } from '../catalog/index.js';
import type { PolicyFile } from './schema.js';

/** A tenant policy: the policy file without a gateway section. */
export type TenantPolicy = Omit<PolicyFile, 'gateway'>;
/** One row of the fleet file: the `gateway` section of that gateway's policy. */
export type FleetGateway = PolicyFile['gateway'];

/** A device acts on itself only, with these (the same list as decide's DEVICE_PERMISSIONS; a test keeps them equal). */
export const DEVICE_PERMISSIONS = ['READ_THING', 'READ_CLOUD_STATUS'] as const;

type Thing = NonNullable<PolicyFile['things']>[number];
type User = NonNullable<PolicyFile['users']>[number];
type ApiKey = NonNullable<PolicyFile['apiKeys']>[number];
type Application = NonNullable<PolicyFile['applications']>[number];
type UserAuth = NonNullable<PolicyFile['userAuthorizations']>[number];
type OrgAuth = NonNullable<PolicyFile['organizationAuthorizations']>[number];

/** A tenant indexed for slicing; build it once with prepareTenant, slice it many times. */
export interface PreparedTenant {
  readonly kind: 'prepared-tenant';
  readonly tenant: TenantPolicy;
  readonly things: readonly Thing[];
  readonly users: readonly User[];
  readonly apiKeys: readonly ApiKey[];
  readonly applications: readonly Application[];
  /** Thing indices by resource group, ascending. */
  readonly thingsByGroup: ReadonlyMap<string, readonly number[]>;
  /**
   * Principals as numbers: users 0..U-1, then API keys, then applications. Each kept principal is in
   * `everywhere` or in the lists of the customers, locations and things through which it reaches a thing.
   */
  readonly everywhere: readonly number[];
  readonly registerers: readonly number[];
  readonly byCustomer: ReadonlyMap<string, readonly number[]>;
  readonly byLocation: ReadonlyMap<string, readonly number[]>;
  readonly byThing: ReadonlyMap<string, readonly number[]>;
  readonly devicesAct: boolean;
  /** The stand-in for "at least one admin" (revoked, no credentials), when the tenant has an admin. */
  readonly standInAdmin?: User;
  readonly userAuthsByUser: ReadonlyMap<string, readonly number[]>;
  readonly orgAuthsByUser: ReadonlyMap<string, readonly number[]>;
  readonly authorizedCustomers: ReadonlySet<string>;
  readonly partnerIndex: ReadonlyMap<string, number>;
  readonly customerIndex: ReadonlyMap<string, number>;
  readonly locationIndex: ReadonlyMap<string, number>;
}

/** The catalog entry a policy's permission name grants (a legacy name: its successor). */
function entryOf(name: string): PermissionEntry | undefined {
  const r = resolvePermissionName(name);
  const e = r && permissionByName(r.name);
  return e?.successor !== undefined ? permissionByName(e.successor) : e;
}

/**
 * The permissions a principal holds and may use (decide's verdict OK): granted, assignable to its
 * user type (none for a device), and available with the active modules.
 */
function usable(names: Iterable<string>, userType: UserType | undefined, modules: ReadonlySet<string>): Set<PermissionEntry> {
  const out = new Set<PermissionEntry>();
  for (const name of names) {
    const e = entryOf(name);
    if (!e || (userType !== undefined && !isAssignableTo(e, userType))) continue;
    const need = requiredModulesFor(e, userType);
    if (need.length === 0 || need.some((m) => modules.has(m))) out.add(e);
  }
  return out;
}

/**
 * registers: REGISTER_THING (a privileged gateway allows it for a new thing, whatever it serves);
 * onThings: any other permission (on things); widensReads: READ_ALL_THINGS with a read permission,
 * which widens reads to every thing of the tenant.
 */
function reachOf(perms: ReadonlySet<PermissionEntry>): { registers: boolean; onThings: boolean; widensReads: boolean } {
  let registers = false;
  let onThings = false;
  let reads = false;
  let widens = false;
  for (const e of perms) {
    if (e.name === 'REGISTER_THING') {
      registers = true;
      continue;
    }
    onThings = true;
    if (e.access === 'read') reads = true;
    if (e.name === 'READ_ALL_THINGS') widens = true;
  }
  return { registers, onThings, widensReads: widens && reads };
}

function push<K>(m: Map<K, number[]>, k: K, v: number): void {
  const l = m.get(k);
  if (l === undefined) m.set(k, [v]);
  else if (l[l.length - 1] !== v) l.push(v);
}

function indexBy<T>(list: readonly T[], key: (e: T) => string): Map<string, number[]> {
  const m = new Map<string, number[]>();
  list.forEach((e, i) => push(m, key(e), i));
  return m;
}

/** Indexes a valid tenant policy (validateTenantPolicy) for slicing. */
export function prepareTenant(tenant: TenantPolicy): PreparedTenant {
  const things = tenant.things ?? [];
  const users = tenant.users ?? [];
  const apiKeys = tenant.apiKeys ?? [];
  const applications = tenant.applications ?? [];
  const modules = new Set<string>(tenant.modules);
  const org = tenant.organization.id;

  const thingsByGroup = indexBy(things, (t) => t.resourceGroup);
  const thingCustomer = new Map(things.map((t) => [t.id, t.customer]));
  const partnerCustomers = new Map((tenant.partners ?? []).map((p) => [p.id, p.customers]));
  const customerIds = new Set((tenant.customers ?? []).map((c) => c.id));
  const userAuthList = tenant.userAuthorizations ?? [];
  const orgAuthList = tenant.organizationAuthorizations ?? [];
  const authorizedCustomers = new Set(userAuthList.map((a) => a.customer));
  const userAuthsByUser = indexBy(userAuthList, (a) => a.user);
  const orgAuthsByUser = indexBy(orgAuthList, (a) => a.user);

  const roles = new Map((tenant.roles ?? []).map((r) => [r.name, r]));
  const roleCache = new Map<string, Set<PermissionEntry>>();
  const roleUsable = (role: string | undefined, userType: UserType): Set<PermissionEntry> => {
    if (role === undefined || role === 'none') return new Set();
    const key = `${userType} ${role}`;
    let set = roleCache.get(key);
    if (set) return set;
    const r = roles.get(role);
    if (role === 'admin') set = usable(CATALOG.map((e) => e.name), userType, modules);
    // A role that is not defined (deleted) falls back to none; one of another user type too.
    else if (!r || r.userType !== userType) set = new Set();
    else set = usable(r.permissions, userType, modules);
    roleCache.set(key, set);
    return set;
  };

  const everywhere: number[] = [];
  const registerers: number[] = [];
  const byCustomer = new Map<string, number[]>();
  const byLocation = new Map<string, number[]>();
  const byThing = new Map<string, number[]>();

  /** Files principal `n` under what it reaches (the rules of reachesServed: the scope of decide). */
  const file = (n: number, perms: ReadonlySet<PermissionEntry>, userType: UserType, entity: string, userId: string | undefined): void => {
    const r = reachOf(perms);
    if (r.registers) registerers.push(n);
    if (!r.onThings) return;
    if (r.widensReads) return void everywhere.push(n);
    if (userType === 'ORGANIZATION') {
      if (entity !== org) return;
      const auths = userId === undefined ? undefined : orgAuthsByUser.get(userId);
      if (auths === undefined) return void everywhere.push(n);
      for (const ai of auths) {
        const a = orgAuthList[ai]!;
        for (const c of a.customers ?? []) push(byCustomer, c, n);
        for (const l of a.locations ?? []) push(byLocation, l, n);
        for (const t of a.things ?? []) push(byThing, t, n);
      }
      return;
    }
    if (userType === 'PARTNER') {
      for (const c of partnerCustomers.get(entity) ?? []) push(byCustomer, c, n);
      return;
    }
    if (!customerIds.has(entity)) return;
    if (userId !== undefined && authorizedCustomers.has(entity)) {
      for (const ai of userAuthsByUser.get(userId) ?? []) {
        const a = userAuthList[ai]!;
        for (const t of a.things) if (thingCustomer.get(t) === a.customer) push(byThing, t, n);
      }
      return;
    }
    push(byCustomer, entity, n);
  };

  users.forEach((u, i) => {
    if (u.revoked !== true) file(i, roleUsable(u.role, u.userType), u.userType, u.entity, u.id);
  });
  const K0 = users.length;
  apiKeys.forEach((k, i) => {
    if (k.revoked !== true) file(K0 + i, usable(k.permissions, k.userType, modules), k.userType, k.entity, undefined);
  });
  const A0 = K0 + apiKeys.length;
  applications.forEach((a, i) => {
    if (a.revoked !== true) file(A0 + i, roleUsable(a.role, 'ORGANIZATION'), 'ORGANIZATION', org, undefined);
  });

  const admin = users.find((u) => u.role === 'admin' && u.userType === 'ORGANIZATION') ?? users.find((u) => u.role === 'admin');
  return {
    kind: 'prepared-tenant',
    tenant,
    things,
    users,
    apiKeys,
    applications,
    thingsByGroup,
    everywhere,
    registerers,
    byCustomer,
    byLocation,
    byThing,
    devicesAct: usable(DEVICE_PERMISSIONS, undefined, modules).size > 0,
    ...(admin ? { standInAdmin: { id: admin.id, userType: admin.userType, entity: admin.entity, role: 'admin', revoked: true } } : {}),
    userAuthsByUser,
    orgAuthsByUser,
    authorizedCustomers,
    partnerIndex: new Map((tenant.partners ?? []).map((p, i) => [p.id, i])),
    customerIndex: new Map((tenant.customers ?? []).map((c, i) => [c.id, i])),
    locationIndex: new Map((tenant.locations ?? []).map((l, i) => [l.id, i])),
  };
}

const ascending = (a: number, b: number) => a - b;

/** The id of principal number `n` of a prepared tenant (users, then API keys, then applications). */
export function principalId(p: PreparedTenant, n: number): string {
  const K0 = p.users.length;
  const A0 = K0 + p.apiKeys.length;
  return n < K0 ? p.users[n]!.id : n < A0 ? p.apiKeys[n - K0]!.id : p.applications[n - A0]!.id;
}

/** The entries of `list` at the positions of `keys` (looked up in `index`), in the list's order. */
function inOrder<T>(list: readonly T[] | undefined, index: ReadonlyMap<string, number>, keys: Iterable<string>): T[] {
  const at: number[] = [];
  for (const k of keys) {
    const i = index.get(k);
    if (i !== undefined) at.push(i);
  }
  return at.sort(ascending).map((i) => list![i]!);
}

/**
 * The policy one gateway needs to decide, and nothing more:
 *  - things: those it serves (a standard gateway: those of its resource groups; a privileged one: every thing);
 *  - principals (users, API keys, applications) that can be allowed at least one question on a served
 *    thing — or, on a privileged gateway, REGISTER_THING, which it allows for new things; a served
 *    thing keeps its own credentials only when its device can be allowed anything (not revoked, and a
 *    device permission available);
 *  - the roles those users and applications hold; the customers, locations and partners the things
 *    and principals reference; their user and organization authorizations, narrowed to what is kept
 *    (an entry is kept even when it narrows to nothing: its presence is what limits the user's scope);
 *  - no display names (but the organization's) and no role descriptions: see unnamed().
 * The EVRYTHNG rule "at least one admin" holds for the slice too: when no admin user is in it, the
 * tenant's first admin user is added as a stand-in, revoked and without credentials (denied all, as it
 * would be).
 * The tenant must be a valid tenant policy (validateTenantPolicy), the gateway a valid fleet row.
 * Pass a PreparedTenant when slicing the same tenant more than once.
 */
export function sliceForGateway(source: TenantPolicy | PreparedTenant, gateway: FleetGateway): PolicyFile {
  const p = 'kind' in source && source.kind === 'prepared-tenant' ? source : prepareTenant(source as TenantPolicy);
  const tenant = p.tenant;
  const privileged = gateway.role === 'privileged';

  // --- the things served, in the tenant's order ---------------------------------------------------
  let servedAt: number[];
  if (privileged) servedAt = p.things.map((_, i) => i);
  else {
    servedAt = [];
    for (const g of new Set(gateway.resourceGroups)) for (const i of p.thingsByGroup.get(g) ?? []) servedAt.push(i);
    servedAt.sort(ascending);
  }
  const served = servedAt.map((i) => p.things[i]!);
  const servedIds = new Set<string>();
  const servedCustomers = new Set<string>();
  const servedLocations = new Set<string>();
  for (const t of served) {
    servedIds.add(t.id);
    servedCustomers.add(t.customer);
    if (t.location !== undefined) servedLocations.add(t.location);
  }

  // --- the principals that can be allowed anything here ------------------------------------------
  const kept = new Set<number>();
  if (privileged) for (const n of p.registerers) kept.add(n);
  if (served.length > 0) {
    for (const n of p.everywhere) kept.add(n);
    const add = (m: ReadonlyMap<string, readonly number[]>, keys: Iterable<string>) => {
      for (const k of keys) for (const n of m.get(k) ?? []) kept.add(n);
    };
    add(p.byCustomer, servedCustomers);
    add(p.byLocation, servedLocations);
    add(p.byThing, servedIds);
  }
  const K0 = p.users.length;
  const A0 = K0 + p.apiKeys.length;
  const users: User[] = [];
  const apiKeys: ApiKey[] = [];
  const applications: Application[] = [];
  for (const n of [...kept].sort(ascending)) {
    if (n < K0) users.push(unnamed(p.users[n]!));
    else if (n < A0) apiKeys.push(unnamed(p.apiKeys[n - K0]!));
    else applications.push(unnamed(p.applications[n - A0]!));
  }
  // EVRYTHNG: at least one admin. A stand-in that can do nothing: revoked, no credentials.
  if (p.standInAdmin && !users.some((u) => u.role === 'admin')) users.push({ ...p.standInAdmin });

  // --- what the kept things and principals reference ----------------------------------------------
  const keptCustomers = new Set(servedCustomers);
  const keptPartners = new Set<string>();
  for (const x of [...users, ...apiKeys]) {
    if (x.userType === 'CUSTOMER') keptCustomers.add(x.entity);
    else if (x.userType === 'PARTNER') keptPartners.add(x.entity);
  }
  const keptRoles = new Set<string>([...users.map((u) => u.role ?? 'none'), ...applications.map((a) => a.role)]);

  const uaAt: number[] = [];
  const oaAt: number[] = [];
  for (const u of users) {
    for (const i of p.userAuthsByUser.get(u.id) ?? []) uaAt.push(i);
    for (const i of p.orgAuthsByUser.get(u.id) ?? []) oaAt.push(i);
  }
  const userAuthorizations: UserAuth[] = [];
  for (const i of uaAt.sort(ascending)) {
    const a = tenant.userAuthorizations![i]!;
    userAuthorizations.push({ customer: a.customer, user: a.user, things: a.things.filter((t) => servedIds.has(t)) });
  }
  // A kept CUSTOMER user of a customer with user authorizations keeps that customer "authorized",
  // even with no entry of its own (it then acts on no thing, as in the whole tenant).
  for (const u of users) {
    if (u.userType === 'CUSTOMER' && p.authorizedCustomers.has(u.entity) && !p.userAuthsByUser.has(u.id)) {
      userAuthorizations.push({ customer: u.entity, user: u.id, things: [] });
    }
  }
  const organizationAuthorizations: OrgAuth[] = [];
  for (const i of oaAt.sort(ascending)) {
    const a = tenant.organizationAuthorizations![i]!;
    organizationAuthorizations.push({
      user: a.user,
      ...(a.customers ? { customers: a.customers.filter((c) => keptCustomers.has(c)) } : {}),
      ...(a.locations ? { locations: a.locations.filter((l) => servedLocations.has(l)) } : {}),
      ...(a.things ? { things: a.things.filter((t) => servedIds.has(t)) } : {}),
    });
  }

  return {
    formatVersion: tenant.formatVersion,
    tenant: tenant.tenant,
    gateway: { id: gateway.id, role: gateway.role, resourceGroups: [...gateway.resourceGroups] },
    modules: [...tenant.modules],
    validity: { ...tenant.validity },
    organization: { ...tenant.organization },
    partners: inOrder(tenant.partners, p.partnerIndex, keptPartners).map((x) => ({ id: x.id, customers: x.customers.filter((c) => keptCustomers.has(c)) })),
    customers: inOrder(tenant.customers, p.customerIndex, keptCustomers).map(unnamed),
    locations: inOrder(tenant.locations, p.locationIndex, servedLocations).map(unnamed),
    things: served.map((t) => unnamed(t.revoked !== true && p.devicesAct ? t : withoutCredentials(t))),
    roles: (tenant.roles ?? []).filter((r) => keptRoles.has(r.name)).map(({ description: _d, ...r }) => r),
    users,
    apiKeys,
    applications,
    userAuthorizations,
    organizationAuthorizations,
  };
}

/**
 * Without its display name: a gateway decides on ids, and its audit, logs and explain show ids. The
 * names (of people, among others) stay in the cloud and off a gateway that may be stolen.
 */
function unnamed<T extends { name?: string }>(e: T): T {
  if (e.name === undefined) return e;
  const { name: _n, ...rest } = e;
  return rest as T;
}

function withoutCredentials<T extends { tokenHashes?: string[]; certFingerprints?: string[] }>(t: T): T {
  const { tokenHashes: _t, certFingerprints: _c, ...rest } = t;
  return rest as T;
}
