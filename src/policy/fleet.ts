// One tenant, many gateways (issue 14, the pure core): a tenant policy (the policy file without its
// `gateway` section), a fleet file listing the gateways, both validated together, and each gateway's
// slice: the policy that gateway needs to decide, holding only the things it serves and the principals
// that can be allowed anything on them (with their credentials). Nothing here does I/O.
//
// The slice repeats, over the policy, the few rules of decide() that say whether a principal can be
// allowed anything on a thing (grants, user types, modules, scopes, READ_ALL_THINGS, REGISTER_THING on
// a privileged gateway): this area sits below `decide` and cannot use its index.
// test/unit/fleet-slice.test.ts checks the slice against decide() on the whole tenant, question by question.
//
// The fleet file (YAML, parsed with the policy file's bounds):
//   formatVersion: 1
//   gateways:
//     - { id: gw-site-a, role: standard, resourceGroups: [site-a] }
//     - { id: gw-hq, role: privileged, resourceGroups: [] }
// Each row is the `gateway` section of that gateway's policy. A gateway id may not be a principal's
// id of the tenant (one namespace); a resource group must be one a thing of the tenant is in.
//
// One difference from the whole tenant is deliberate: decide() allows a thing-less (tenant-level)
// question on the principal's grants alone, so on the whole tenant every principal with a usable
// permission is allowed one on every gateway; the slice leaves out the principals that can be
// allowed nothing on this gateway's things, so they are UNKNOWN_PRINCIPAL there (see the test).
import { EwError, type Issue } from '../errors.js';
import { CATALOG, isAssignableTo, permissionByName, requiredModulesFor, resolvePermissionName, type PermissionEntry, type UserType } from '../catalog/index.js';
import type { PolicyFile } from './schema.js';
import { ID_PATTERN } from './ids.js';
import { typeOf } from './issues.js';
import { parsePolicyYaml, validatePolicy } from './validate.js';

/** A tenant policy: the policy file without a gateway section. */
export type TenantPolicy = Omit<PolicyFile, 'gateway'>;
/** One row of the fleet file: the `gateway` section of that gateway's policy. */
export type FleetGateway = PolicyFile['gateway'];
export interface Fleet {
  readonly formatVersion: 1;
  readonly gateways: readonly FleetGateway[];
}
export interface ValidatedFleet {
  readonly tenant: TenantPolicy;
  readonly fleet: Fleet;
  /** The tenant's likely mistakes (as `snapshot sign` warns them), paths in the tenant file. */
  readonly warnings: readonly Issue[];
}

/** A device acts on itself only, with these (the same list as decide's DEVICE_PERMISSIONS; a test keeps them equal). */
export const DEVICE_PERMISSIONS = ['READ_THING', 'READ_CLOUD_STATUS'] as const;

const ID_RE = new RegExp(ID_PATTERN);
const MAX_ID = 128;
const ROLES = ['standard', 'privileged'] as const;
const FLEET_KEYS = new Set(['formatVersion', 'gateways']);
const ROW_KEYS = new Set(['id', 'role', 'resourceGroups']);

const invalid = (where: string, what: string, issues: Issue[]) =>
  new EwError('EW_POLICY_INVALID', `${what} is invalid (${issues.length} problem${issues.length > 1 ? 's' : ''})`, { where, issues });

/**
 * Validates a parsed tenant policy: everything validatePolicy checks, with no `gateway` section (the
 * gateways are the fleet file's rows). Throws EW_POLICY_INVALID naming the tenant file and each field.
 */
export function validateTenantPolicy(raw: unknown, where: string): { tenant: TenantPolicy; warnings: Issue[] } {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw invalid(where, 'tenant policy', [{ path: '', message: `expected a mapping, got ${typeOf(raw)}` }]);
  }
  if ('gateway' in raw) {
    throw invalid(where, 'tenant policy', [{ path: 'gateway', message: 'a tenant policy has no gateway section: the gateways are the rows of the fleet file' }]);
  }
  // validatePolicy with a stand-in gateway: privileged with no resource group draws no warning, and
  // its id is one no principal of the tenant has (the shared id namespace).
  const gateway: FleetGateway = { id: unusedId(raw as TenantPolicy), role: 'privileged', resourceGroups: [] };
  const { policy, warnings } = validatePolicy({ ...raw, gateway }, where);
  const { gateway: _g, ...tenant } = policy;
  return { tenant, warnings: warnings.filter((w) => !w.path.startsWith('gateway')) };
}

function unusedId(raw: TenantPolicy): string {
  const taken = new Set<unknown>();
  for (const list of [raw.things, raw.users, raw.apiKeys, raw.applications] as unknown[]) {
    if (Array.isArray(list)) for (const e of list) if (e && typeof e === 'object') taken.add((e as { id?: unknown }).id);
  }
  let id = 'tenant-validation-gateway';
  for (let i = 2; taken.has(id); i++) id = `tenant-validation-gateway-${i}`;
  return id;
}

/**
 * Validates a parsed fleet file against its (valid) tenant. Every problem is an issue naming the row
 * (`gateways[i]`) and the field: bad or duplicate id, an id a principal of the tenant already has,
 * bad role, a resource group no thing of the tenant is in (an unknown group), a group listed twice,
 * unknown keys. Throws EW_POLICY_INVALID with `where` the fleet file.
 */
export function validateFleet(raw: unknown, where: string, tenant: TenantPolicy, tenantWhere = 'the tenant policy'): Fleet {
  const issues: Issue[] = [];
  const err = (path: string, message: string) => issues.push({ path, message });
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw invalid(where, 'fleet file', [{ path: '', message: `expected a mapping with formatVersion and gateways, got ${typeOf(raw)}` }]);
  }
  const top = raw as Record<string, unknown>;
  for (const k of Object.keys(top)) if (!FLEET_KEYS.has(k)) err(k, 'unknown key');
  if (!('formatVersion' in top)) err('formatVersion', 'missing required key');
  else if (top.formatVersion !== 1) err('formatVersion', `must be 1, got ${describe(top.formatVersion)}`);
  const rows = top.gateways;
  if (!('gateways' in top)) err('gateways', 'missing required key');
  else if (!Array.isArray(rows)) err('gateways', `must be a list of gateways, got ${typeOf(rows)}`);

  // The tenant's resource groups (the groups its things are in) and its principals' ids.
  const groups = new Set<string>();
  for (const t of tenant.things ?? []) groups.add(t.resourceGroup);
  const principals = new Map<string, string>();
  const own = (list: readonly { id: string }[] | undefined, name: string) => list?.forEach((e, i) => principals.set(e.id, `${name}[${i}]`));
  own(tenant.things, 'things');
  own(tenant.users, 'users');
  own(tenant.apiKeys, 'apiKeys');
  own(tenant.applications, 'applications');

  const firstRow = new Map<string, number>();
  (Array.isArray(rows) ? rows : []).forEach((row: unknown, i) => {
    const at = `gateways[${i}]`;
    if (row === null || typeof row !== 'object' || Array.isArray(row)) {
      err(at, `a gateway must be a mapping with id, role and resourceGroups, got ${typeOf(row)}`);
      return;
    }
    const g = row as Record<string, unknown>;
    for (const k of Object.keys(g)) if (!ROW_KEYS.has(k)) err(`${at}.${k}`, 'unknown key');
    // id
    if (!('id' in g)) err(`${at}.id`, 'missing required key');
    else if (!isId(g.id)) err(`${at}.id`, `${describe(g.id)} is not a valid id (letters, digits and . _ : @ -, starting with a letter or digit, at most ${MAX_ID})`);
    else {
      const first = firstRow.get(g.id);
      if (first !== undefined) err(`${at}.id`, `duplicate gateway id "${g.id}" (first at gateways[${first}])`);
      else firstRow.set(g.id, i);
      const owner = principals.get(g.id);
      if (owner !== undefined) err(`${at}.id`, `gateway id "${g.id}" is already ${owner}.id of ${tenantWhere} (principals and gateways share one namespace)`);
    }
    // role
    if (!('role' in g)) err(`${at}.role`, 'missing required key');
    else if (!(ROLES as readonly unknown[]).includes(g.role)) err(`${at}.role`, `must be one of ${ROLES.join(', ')}; got ${describe(g.role)}`);
    // resource groups
    if (!('resourceGroups' in g)) err(`${at}.resourceGroups`, 'missing required key');
    else if (!Array.isArray(g.resourceGroups)) err(`${at}.resourceGroups`, `must be a list of resource groups, got ${typeOf(g.resourceGroups)}`);
    else {
      const seen = new Set<string>();
      g.resourceGroups.forEach((rg: unknown, j) => {
        const path = `${at}.resourceGroups[${j}]`;
        if (!isId(rg)) err(path, `${describe(rg)} is not a valid resource group id`);
        else if (seen.has(rg)) err(path, `duplicate resource group "${rg}"`);
        else if (!groups.has(rg)) err(path, `unknown resource group "${rg}": no thing of ${tenantWhere} is in it`);
        if (typeof rg === 'string') seen.add(rg);
      });
    }
  });
  if (issues.length > 0) throw invalid(where, 'fleet file', issues);
  return top as unknown as Fleet;
}

/** Parses (bounded YAML, as a policy file) and validates a tenant policy and its fleet file together. */
export function loadFleetText(tenantText: string, tenantWhere: string, fleetText: string, fleetWhere: string): ValidatedFleet {
  const { tenant, warnings } = validateTenantPolicy(parsePolicyYaml(tenantText, tenantWhere), tenantWhere);
  const fleet = validateFleet(parsePolicyYaml(fleetText, fleetWhere), fleetWhere, tenant, tenantWhere);
  return { tenant, fleet, warnings };
}

function isId(v: unknown): v is string {
  return typeof v === 'string' && v.length >= 1 && v.length <= MAX_ID && ID_RE.test(v);
}

function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return typeOf(v);
}

/** The whole tenant as one gateway's policy (what each gateway held before slicing). */
export function policyForGateway(tenant: TenantPolicy, gateway: FleetGateway): PolicyFile {
  return { ...tenant, gateway: copyGateway(gateway) };
}

function copyGateway(g: FleetGateway): FleetGateway {
  return { id: g.id, role: g.role, resourceGroups: [...g.resourceGroups] };
}

// --- what a principal may be allowed ------------------------------------------------------------

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
 * The policy one gateway needs to decide, and nothing more:
 *  - things: those it serves (a standard gateway: those of its resource groups; a privileged one: every thing);
 *  - principals (users, API keys, applications) that can be allowed at least one question on a served
 *    thing — or, on a privileged gateway, REGISTER_THING, which it allows for new things; a served
 *    thing keeps its own credentials only when its device can be allowed anything (not revoked, and a
 *    device permission available);
 *  - the roles those users and applications hold; the customers, locations and partners the things
 *    and principals reference; their user and organization authorizations, narrowed to what is kept
 *    (an entry is kept even when it narrows to nothing: its presence is what limits the user's scope).
 * The EVRYTHNG rule "at least one admin" holds for the slice too: when no admin user is in it, the
 * tenant's first admin user is added as a stand-in, revoked and without credentials (denied all, as it
 * would be).
 * The tenant must be a valid tenant policy (validateTenantPolicy), the gateway a valid fleet row.
 */
export function sliceForGateway(tenant: TenantPolicy, gateway: FleetGateway): PolicyFile {
  const privileged = gateway.role === 'privileged';
  const groups = new Set(gateway.resourceGroups);
  const modules = new Set<string>(tenant.modules);
  const served = (tenant.things ?? []).filter((t) => privileged || groups.has(t.resourceGroup));

  const servedIds = new Set(served.map((t) => t.id));
  const servedCustomers = new Set(served.map((t) => t.customer));
  const servedLocations = new Set<string>();
  for (const t of served) if (t.location !== undefined) servedLocations.add(t.location);

  // --- scopes, as buildIndex makes them ---------------------------------------------------------
  const partnerCustomers = new Map((tenant.partners ?? []).map((p) => [p.id, p.customers]));
  const customerIds = new Set((tenant.customers ?? []).map((c) => c.id));
  const authorizedCustomers = new Set((tenant.userAuthorizations ?? []).map((a) => a.customer));
  const userAuths = groupBy(tenant.userAuthorizations ?? [], (a) => a.user);
  const orgAuths = groupBy(tenant.organizationAuthorizations ?? [], (a) => a.user);
  const thingCustomer = new Map((tenant.things ?? []).map((t) => [t.id, t.customer]));

  /** Whether the principal's scope holds at least one served thing. */
  const reachesServed = (userType: UserType, entity: string, userId: string | undefined): boolean => {
    if (served.length === 0) return false;
    if (userType === 'ORGANIZATION') {
      if (entity !== tenant.organization.id) return false;
      const auths = userId === undefined ? undefined : orgAuths.get(userId);
      if (!auths) return true;
      return auths.some(
        (a) =>
          (a.customers ?? []).some((c) => servedCustomers.has(c)) ||
          (a.locations ?? []).some((l) => servedLocations.has(l)) ||
          (a.things ?? []).some((t) => servedIds.has(t)),
      );
    }
    if (userType === 'PARTNER') return (partnerCustomers.get(entity) ?? []).some((c) => servedCustomers.has(c));
    if (!customerIds.has(entity)) return false;
    if (userId !== undefined && authorizedCustomers.has(entity)) {
      return (userAuths.get(userId) ?? []).some((a) => a.things.some((t) => servedIds.has(t) && thingCustomer.get(t) === a.customer));
    }
    return servedCustomers.has(entity);
  };

  /** Whether a principal with these usable permissions and this scope can be allowed anything on this gateway. */
  const canAct = (perms: Set<PermissionEntry>, userType: UserType, entity: string, userId: string | undefined): boolean => {
    let onThings = false;
    let reads = false;
    let widens = false;
    for (const e of perms) {
      // REGISTER_THING: a privileged gateway allows it for a new thing (no scope); a standard one never.
      if (e.name === 'REGISTER_THING') {
        if (privileged) return true;
        continue;
      }
      onThings = true;
      if (e.access === 'read') reads = true;
      if (e.name === 'READ_ALL_THINGS') widens = true;
    }
    if (!onThings || served.length === 0) return false;
    // READ_ALL_THINGS widens reads to every thing of the tenant, so to every served thing.
    if (widens && reads) return true;
    return reachesServed(userType, entity, userId);
  };

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

  const users = (tenant.users ?? []).filter((u) => u.revoked !== true && canAct(roleUsable(u.role, u.userType), u.userType, u.entity, u.id));
  const apiKeys = (tenant.apiKeys ?? []).filter((k) => k.revoked !== true && canAct(usable(k.permissions, k.userType, modules), k.userType, k.entity, undefined));
  const applications = (tenant.applications ?? []).filter(
    (a) => a.revoked !== true && canAct(roleUsable(a.role, 'ORGANIZATION'), 'ORGANIZATION', tenant.organization.id, undefined),
  );
  const devicesAct = usable(DEVICE_PERMISSIONS, undefined, modules).size > 0;

  // EVRYTHNG: at least one admin. A stand-in that can do nothing: revoked, no credentials.
  if (!users.some((u) => u.role === 'admin')) {
    const all = tenant.users ?? [];
    const admin = all.find((u) => u.role === 'admin' && u.userType === 'ORGANIZATION') ?? all.find((u) => u.role === 'admin');
    if (admin) users.push({ id: admin.id, userType: admin.userType, entity: admin.entity, role: 'admin', revoked: true });
  }

  // --- what the kept things and principals reference ----------------------------------------------
  const keptCustomers = new Set(servedCustomers);
  const keptPartners = new Set<string>();
  for (const p of [...users, ...apiKeys]) {
    if (p.userType === 'CUSTOMER') keptCustomers.add(p.entity);
    else if (p.userType === 'PARTNER') keptPartners.add(p.entity);
  }
  const keptUsers = new Set(users.map((u) => u.id));
  const keptRoles = new Set<string>([...users.map((u) => u.role ?? 'none'), ...applications.map((a) => a.role)]);

  const userAuthorizations: NonNullable<PolicyFile['userAuthorizations']> = [];
  for (const a of tenant.userAuthorizations ?? []) {
    if (keptUsers.has(a.user)) userAuthorizations.push({ customer: a.customer, user: a.user, things: a.things.filter((t) => servedIds.has(t)) });
  }
  // A kept CUSTOMER user of a customer with user authorizations keeps that customer "authorized",
  // even with no entry of its own (it then acts on no thing, as in the whole tenant).
  for (const u of users) {
    if (u.userType === 'CUSTOMER' && authorizedCustomers.has(u.entity) && !userAuths.has(u.id)) {
      userAuthorizations.push({ customer: u.entity, user: u.id, things: [] });
    }
  }
  const organizationAuthorizations: NonNullable<PolicyFile['organizationAuthorizations']> = [];
  for (const a of tenant.organizationAuthorizations ?? []) {
    if (!keptUsers.has(a.user)) continue;
    organizationAuthorizations.push({
      user: a.user,
      ...(a.customers ? { customers: a.customers.filter((c) => keptCustomers.has(c)) } : {}),
      ...(a.locations ? { locations: a.locations.filter((l) => servedLocations.has(l)) } : {}),
      ...(a.things ? { things: a.things.filter((t) => servedIds.has(t)) } : {}),
    });
  }

  const out: PolicyFile = {
    formatVersion: tenant.formatVersion,
    tenant: tenant.tenant,
    gateway: copyGateway(gateway),
    modules: [...tenant.modules],
    validity: { ...tenant.validity },
    organization: { ...tenant.organization },
    partners: (tenant.partners ?? []).filter((p) => keptPartners.has(p.id)).map((p) => ({ ...p, customers: p.customers.filter((c) => keptCustomers.has(c)) })),
    customers: (tenant.customers ?? []).filter((c) => keptCustomers.has(c.id)),
    locations: (tenant.locations ?? []).filter((l) => servedLocations.has(l.id)),
    things: served.map((t) => (t.revoked !== true && devicesAct ? t : withoutCredentials(t))),
    roles: (tenant.roles ?? []).filter((r) => keptRoles.has(r.name)),
    users,
    apiKeys,
    applications,
    userAuthorizations,
    organizationAuthorizations,
  };
  return out;
}

function withoutCredentials<T extends { tokenHashes?: string[]; certFingerprints?: string[] }>(t: T): T {
  const { tokenHashes: _t, certFingerprints: _c, ...rest } = t;
  return rest as T;
}

function groupBy<T>(list: readonly T[], key: (e: T) => string): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const e of list) {
    const k = key(e);
    const l = m.get(k);
    if (l) l.push(e);
    else m.set(k, [e]);
  }
  return m;
}
