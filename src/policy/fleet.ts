// One tenant, many gateways (issue 14, the pure core): a tenant policy (the policy file without its
// `gateway` section) and a fleet file listing the gateways, validated together. Each gateway's slice
// is cut in fleet-slice.ts. Nothing here does I/O.
//
// The fleet file (YAML, parsed with the policy file's bounds):
//   formatVersion: 1
//   gateways:
//     - { id: gw-site-a, role: standard, resourceGroups: [site-a] }
//     - { id: gw-hq, role: privileged, resourceGroups: [] }
// Each row is the `gateway` section of that gateway's policy. A gateway id may not be a principal's
// id of the tenant (one namespace); a resource group must be one a thing of the tenant is in.

import { EwError, type Issue } from '../errors.js';
import type { PolicyFile } from './schema.js';
import { ID_PATTERN } from './ids.js';
import { typeOf } from './issues.js';
import { parsePolicyYaml, validatePolicy } from './validate.js';
import type { FleetGateway, TenantPolicy } from './fleet-slice.js';

export { DEVICE_PERMISSIONS, prepareTenant, principalId, sliceForGateway, type FleetGateway, type PreparedTenant, type TenantPolicy } from './fleet-slice.js';

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
