// A synthetic but realistic tenant for the benchmarks: one organization, partners with assigned
// customers, customers with locations, things spread over customers and resource groups, a
// standard gateway serving some of the groups, roles per user type, users of all three types,
// user and organization authorizations, API keys (one with READ_ALL_THINGS), applications.
// Deterministic: the same options give the same payload, byte for byte.
import type { ModuleId, UserType } from '../src/catalog/index.js';
import type { SnapshotPayload } from '../src/policy/schema.js';

/** mulberry32: small, fast, deterministic; good enough to shape test data. */
export function createRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export type Random = () => number;
export const intBelow = (rnd: Random, n: number): number => Math.floor(rnd() * n);
export const pick = <T>(rnd: Random, list: readonly T[]): T => {
  if (list.length === 0) throw new Error('pick from an empty list');
  return list[intBelow(rnd, list.length)]!;
};

const HEX = '0123456789abcdef';
const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
function chars(rnd: Random, alphabet: string, n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += alphabet[intBelow(rnd, alphabet.length)];
  return s;
}
/** Shaped like the real thing (sha256:<64 hex>); not the hash of anything. */
export const sha256Like = (rnd: Random): string => `sha256:${chars(rnd, HEX, 64)}`;
export const scryptLike = (rnd: Random): string => `scrypt:15:8:1:${chars(rnd, B64URL, 22)}:${chars(rnd, B64URL, 43)}`;

/** Active modules: VALUE_ADDED_DIGITAL_SERVICES is off, so READ_RULE, WRITE_TASK, ... are MODULE_INACTIVE. */
export const ACTIVE_MODULES: ModuleId[] = ['CONNECTED_FIELD_SERVICE', 'SPARE_PARTS_AND_CONSUMABLES'];
export const RESOURCE_GROUPS = ['line-1', 'line-2', 'line-3', 'line-4', 'line-5', 'packaging', 'utilities', 'warehouse'];
/** The standard gateway serves 5 of the 8 groups. */
export const SERVED_GROUPS = ['line-1', 'line-2', 'line-3', 'line-4', 'line-5'];
const THING_KINDS = ['oven', 'mixer', 'chiller', 'press', 'pump', 'compressor', 'boiler', 'robot', 'conveyor', 'filler'];

interface RoleDef {
  readonly name: string;
  readonly userType: UserType;
  readonly description: string;
  readonly permissions: string[];
}

const DEVICE_OPS = ['READ_THING', 'READ_CLOUD_STATUS', 'READ_HISTORICAL_DATA', 'EXECUTE_THING_COMMAND', 'SET_THING_PARAMETER', 'UPDATE_FIRMWARE', 'WRITE_ALERT_STATUS', 'CLEAR_ALERT'];

/** Custom roles. Some grant permissions that need the inactive VALUE_ADDED_DIGITAL_SERVICES module. */
export const ROLES: readonly RoleDef[] = [
  { name: 'org-operations', userType: 'ORGANIZATION', description: 'back-office operations', permissions: [...DEVICE_OPS, 'WRITE_THING', 'WRITE_CLOUD_STATUS', 'READ_CUSTOMER', 'READ_LOCATION', 'READ_ALL_CUSTOMERS', 'READ_WORK_ORDER', 'WRITE_WORK_ORDER', 'READ_RULE', 'WRITE_RULE', 'READ_AUDIT'] },
  { name: 'org-support', userType: 'ORGANIZATION', description: 'support desk', permissions: ['READ_THING', 'READ_CLOUD_STATUS', 'READ_HISTORICAL_DATA', 'READ_CUSTOMER', 'READ_LOCATION', 'READ_TICKET', 'WRITE_TICKET', 'WRITE_ALERT_STATUS', 'CLEAR_ALERT', 'READ_TASK'] },
  { name: 'org-viewer', userType: 'ORGANIZATION', description: 'read only', permissions: ['READ_THING', 'READ_CLOUD_STATUS', 'READ_HISTORICAL_DATA', 'READ_CUSTOMER', 'READ_LOCATION', 'READ_ALL_CUSTOMERS'] },
  { name: 'ibm-app-visualization', userType: 'ORGANIZATION', description: 'IBM application role Visualization', permissions: ['READ_THING', 'READ_CLOUD_STATUS', 'READ_HISTORICAL_DATA', 'READ_CUSTOMER', 'READ_LOCATION'] },
  { name: 'ibm-app-operations', userType: 'ORGANIZATION', description: 'IBM application role Operations', permissions: [...DEVICE_OPS, 'WRITE_THING', 'WRITE_THING_OPTION'] },
  { name: 'ibm-app-backend-trusted', userType: 'ORGANIZATION', description: 'IBM application role Backend Trusted', permissions: [...DEVICE_OPS, 'WRITE_THING', 'WRITE_THING_ACTIVATION', 'WRITE_THING_OPTION', 'REGISTER_THING', 'DELETE_THING', 'WRITE_CLOUD_STATUS'] },
  { name: 'technician', userType: 'PARTNER', description: 'field-service technician of a partner', permissions: [...DEVICE_OPS, 'READ_CUSTOMER', 'READ_LOCATION', 'READ_WORK_ORDER', 'WORK_ORDER_EXECUTOR', 'READ_TASK', 'WRITE_TASK'] },
  { name: 'partner-manager', userType: 'PARTNER', description: 'service manager of a partner', permissions: ['READ_THING', 'READ_CLOUD_STATUS', 'READ_HISTORICAL_DATA', 'READ_CUSTOMER', 'WRITE_CUSTOMER', 'READ_LOCATION', 'WRITE_LOCATION', 'READ_WORK_ORDER', 'WORK_ORDER_MANAGER', 'WRITE_WORK_ORDER', 'READ_SPARE_PART', 'WRITE_ORDER', 'READ_RULE'] },
  { name: 'partner-viewer', userType: 'PARTNER', description: 'read only', permissions: ['READ_THING', 'READ_CLOUD_STATUS', 'READ_CUSTOMER', 'READ_LOCATION'] },
  { name: 'operator', userType: 'CUSTOMER', description: 'machine operator at a customer plant', permissions: ['READ_THING', 'READ_CLOUD_STATUS', 'EXECUTE_THING_COMMAND', 'SET_THING_PARAMETER', 'WRITE_ALERT_STATUS', 'READ_RULE', 'WRITE_WORK_SESSION'] },
  { name: 'viewer', userType: 'CUSTOMER', description: 'read only', permissions: ['READ_THING', 'READ_CLOUD_STATUS', 'READ_HISTORICAL_DATA', 'READ_LOCATION'] },
  { name: 'customer-manager', userType: 'CUSTOMER', description: 'plant manager', permissions: ['READ_THING', 'READ_CLOUD_STATUS', 'READ_HISTORICAL_DATA', 'READ_CUSTOMER', 'READ_LOCATION', 'WRITE_LOCATION', 'READ_USER_AUTHORIZATION', 'WRITE_USER_AUTHORIZATION', 'PLACE_ORDER', 'READ_SPARE_PART', 'WRITE_RULE', 'READ_RULE'] },
];
export const ROLE_BY_NAME: ReadonlyMap<string, RoleDef> = new Map(ROLES.map((r) => [r.name, r]));

export interface TenantOptions {
  readonly things: number;
  /** Principals other than the devices (users + API keys + applications). */
  readonly principals: number;
  readonly seed: number;
  readonly issuedAt: number;
}

/** What the question generator needs to know about the tenant, beyond the payload. */
export interface TenantModel {
  readonly payload: SnapshotPayload;
  readonly customerThings: readonly (readonly number[])[];
  readonly partnerCustomers: readonly (readonly number[])[];
  readonly thingServed: readonly boolean[];
  readonly thingCustomer: readonly number[];
  /** Non-revoked users by user type; each entry is an index into payload.users. */
  readonly usersByType: Readonly<Record<UserType, readonly number[]>>;
  /** Customers (indices) that have user authorizations. */
  readonly authorizedCustomers: ReadonlySet<number>;
  readonly revokedPrincipals: readonly string[];
  readonly readAllThingsKey: string;
}

const APP_ROLES = [
  ['visualization', 'ibm-app-visualization'],
  ['operations', 'ibm-app-operations'],
  ['backend-trusted', 'ibm-app-backend-trusted'],
] as const;

/** `n` applications, modelled on IBM's application roles in turn, each with its secret's hash. */
export function makeApplications(rnd: Random, n: number): NonNullable<SnapshotPayload['applications']> {
  return Array.from({ length: n }, (_, i) => {
    const [ibmRole, role] = APP_ROLES[i % APP_ROLES.length]!;
    return { id: `app-${ibmRole}-${i}`, name: `${ibmRole} application ${i}`, ibmRole, role, secretHash: sha256Like(rnd) };
  });
}

export function generateTenant(o: TenantOptions): TenantModel {
  const rnd = createRandom(o.seed);
  const scale = o.things / 10_000;
  const nCustomers = Math.max(5, Math.round(500 * scale));
  const nPartners = Math.max(2, Math.round(20 * scale));
  const nApplications = Math.max(3, Math.round(10 * scale));
  const nApiKeys = Math.max(5, Math.round(50 * scale));
  const nUsers = Math.max(10, o.principals - nApplications - nApiKeys);
  const orgId = 'acme';

  // --- hierarchy ---------------------------------------------------------------------------
  const customers = Array.from({ length: nCustomers }, (_, i) => ({ id: `c-${i}`, name: `Customer ${i}` }));
  const locations: { id: string; name: string; customer: string }[] = [];
  const customerLocations: number[][] = customers.map(() => []);
  customers.forEach((c, ci) => {
    const n = 1 + intBelow(rnd, 3);
    for (let k = 0; k < n; k++) {
      customerLocations[ci]!.push(locations.length);
      locations.push({ id: `${c.id}-l${k}`, name: `Site ${k} of ${c.name}`, customer: c.id });
    }
  });
  // Each partner is assigned a few customers (some customers have no partner, a few have two).
  const partnerCustomers: number[][] = [];
  const partners = Array.from({ length: nPartners }, (_, i) => {
    const assigned = new Set<number>();
    const n = 4 + intBelow(rnd, 12);
    while (assigned.size < n) assigned.add(intBelow(rnd, nCustomers));
    const list = [...assigned].sort((a, b) => a - b);
    partnerCustomers.push(list);
    return { id: `p-${i}`, name: `Service partner ${i}`, customers: list.map((ci) => customers[ci]!.id) };
  });

  // --- things (devices) ----------------------------------------------------------------------
  const customerThings: number[][] = customers.map(() => []);
  const thingServed: boolean[] = [];
  const thingCustomer: number[] = [];
  const served = new Set(SERVED_GROUPS);
  const revokedPrincipals: string[] = [];
  const things = Array.from({ length: o.things }, (_, i) => {
    const ci = intBelow(rnd, nCustomers);
    const locs = customerLocations[ci]!;
    const group = pick(rnd, RESOURCE_GROUPS);
    const id = `${THING_KINDS[i % THING_KINDS.length]}-${i}`;
    const revoked = rnd() < 0.005;
    if (revoked) revokedPrincipals.push(id);
    customerThings[ci]!.push(i);
    thingServed.push(served.has(group));
    thingCustomer.push(ci);
    return {
      id,
      name: `${THING_KINDS[i % THING_KINDS.length]} #${i}`,
      customer: customers[ci]!.id,
      ...(rnd() < 0.9 ? { location: locations[pick(rnd, locs)]!.id } : {}),
      resourceGroup: group,
      tokenHashes: [sha256Like(rnd)],
      ...(rnd() < 0.3 ? { certFingerprints: [sha256Like(rnd)] } : {}),
      ...(revoked ? { revoked: true } : {}),
    };
  });

  // --- users ----------------------------------------------------------------------------------
  const usersByType: Record<UserType, number[]> = { ORGANIZATION: [], PARTNER: [], CUSTOMER: [] };
  const users: NonNullable<SnapshotPayload['users']> = [];
  const customerUsers: number[][] = customers.map(() => []);
  const nOrgUsers = Math.max(3, Math.round(nUsers * 0.025));
  const nPartnerUsers = Math.max(2, Math.round(nUsers * 0.15));
  for (let i = 0; i < nUsers; i++) {
    let userType: UserType;
    let entity: string;
    let role: string | undefined;
    const r = rnd();
    if (i < nOrgUsers) {
      userType = 'ORGANIZATION';
      entity = orgId;
      role = i < 3 ? 'admin' : r < 0.4 ? 'org-operations' : r < 0.7 ? 'org-support' : 'org-viewer';
    } else if (i < nOrgUsers + nPartnerUsers) {
      userType = 'PARTNER';
      entity = partners[i % nPartners]!.id;
      role = r < 0.05 ? 'admin' : r < 0.6 ? 'technician' : r < 0.8 ? 'partner-manager' : 'partner-viewer';
    } else {
      userType = 'CUSTOMER';
      const ci = i % nCustomers;
      entity = customers[ci]!.id;
      customerUsers[ci]!.push(users.length);
      role = r < 0.05 ? 'admin' : r < 0.45 ? 'operator' : r < 0.85 ? 'viewer' : r < 0.95 ? 'customer-manager' : undefined;
    }
    const id = `${userType === 'ORGANIZATION' ? 'org' : userType === 'PARTNER' ? 'ptn' : 'cus'}-user-${i}`;
    const revoked = i >= 3 && rnd() < 0.02;
    if (revoked) revokedPrincipals.push(id);
    else usersByType[userType].push(users.length);
    users.push({
      id,
      name: `User ${i}`,
      userType,
      entity,
      ...(role === undefined ? {} : { role }),
      passwordHash: scryptLike(rnd),
      ...(rnd() < 0.2 ? { tokenHashes: [sha256Like(rnd)] } : {}),
      ...(revoked ? { revoked: true } : {}),
    });
  }

  // --- authorizations -------------------------------------------------------------------------
  // 10% of the customers use user authorizations: each of their users sees about half of the things.
  const userAuthorizations: NonNullable<SnapshotPayload['userAuthorizations']> = [];
  const authorizedCustomers = new Set<number>();
  customers.forEach((c, ci) => {
    if (rnd() >= 0.1 || customerUsers[ci]!.length === 0) return;
    authorizedCustomers.add(ci);
    for (const ui of customerUsers[ci]!) {
      const things = customerThings[ci]!.filter(() => rnd() < 0.5).map((ti) => `${THING_KINDS[ti % THING_KINDS.length]}-${ti}`);
      userAuthorizations.push({ customer: c.id, user: users[ui]!.id, things });
    }
  });
  // A fifth of the non-admin ORGANIZATION users are narrowed to a few customers, locations and things.
  const organizationAuthorizations: NonNullable<SnapshotPayload['organizationAuthorizations']> = [];
  for (let i = 3; i < nOrgUsers; i++) {
    if (rnd() >= 0.2) continue;
    organizationAuthorizations.push({
      user: users[i]!.id,
      customers: Array.from({ length: 3 + intBelow(rnd, 10) }, () => customers[intBelow(rnd, nCustomers)]!.id),
      locations: Array.from({ length: intBelow(rnd, 5) }, () => locations[intBelow(rnd, locations.length)]!.id),
      things: Array.from({ length: intBelow(rnd, 10) }, () => things[intBelow(rnd, o.things)]!.id),
    });
  }

  // --- API keys and applications ----------------------------------------------------------------
  const apiKeys: NonNullable<SnapshotPayload['apiKeys']> = [];
  const readAllThingsKey = 'key-analytics';
  apiKeys.push({
    id: readAllThingsKey,
    name: 'analytics export (tenant-wide reads)',
    userType: 'PARTNER',
    entity: partners[0]!.id,
    permissions: ['READ_THING', 'READ_CLOUD_STATUS', 'READ_HISTORICAL_DATA', 'READ_ALL_THINGS'],
    secretHash: sha256Like(rnd),
  });
  for (let i = 1; i < nApiKeys; i++) {
    const r = rnd();
    const revoked = rnd() < 0.05;
    const id = `key-${i}`;
    if (revoked) revokedPrincipals.push(id);
    const [userType, entity, permissions]: [UserType, string, string[]] =
      r < 0.1
        ? ['ORGANIZATION', orgId, ['READ_THING', 'READ_CLOUD_STATUS', 'READ_HISTORICAL_DATA', 'READ_CUSTOMER', 'EXPORT_DATA']]
        : r < 0.3
          ? ['PARTNER', partners[intBelow(rnd, nPartners)]!.id, ['READ_THING', 'READ_CLOUD_STATUS', 'READ_WORK_ORDER', 'WRITE_WORK_ORDER']]
          : ['CUSTOMER', customers[intBelow(rnd, nCustomers)]!.id, ['READ_THING', 'READ_HISTORICAL_DATA', 'EXPORT_DATA', 'READ_RULE']];
    apiKeys.push({ id, name: `integration ${i}`, userType, entity, permissions, secretHash: sha256Like(rnd), ...(revoked ? { revoked: true } : {}) });
  }
  const applications = makeApplications(rnd, nApplications);

  const payload: SnapshotPayload = {
    formatVersion: 1,
    tenant: 'acme-machines',
    gateway: { id: 'gw-plant-1', role: 'standard', resourceGroups: [...SERVED_GROUPS] },
    modules: [...ACTIVE_MODULES],
    organization: { id: orgId, name: 'ACME Machines' },
    partners,
    customers,
    locations,
    things,
    roles: ROLES.map((r) => ({ name: r.name, userType: r.userType, description: r.description, permissions: [...r.permissions] })),
    users,
    apiKeys,
    applications,
    userAuthorizations,
    organizationAuthorizations,
    version: 42,
    issuedAt: o.issuedAt,
    expiresAt: o.issuedAt + 365 * 24 * 3600 * 1000,
  };
  return { payload, customerThings, partnerCustomers, thingServed, thingCustomer, usersByType, authorizedCustomers, revokedPrincipals, readAllThingsKey };
}
