// Indexes built once when a snapshot loads, so that a decision is a few Map/Set/typed-array
// look-ups. Permissions, customers, locations and things are interned to small integers.
// Defence in depth: a grant the principal's user type may not hold is never honoured, whatever
// the (signed) snapshot says; such grants are listed in `warnings`.
import {
  CATALOG,
  PERMISSION_COUNT,
  USER_TYPES,
  isAssignableTo,
  permissionByName,
  requiredModulesFor,
  resolvePermissionName,
  type UserType,
} from '../catalog/index.js';
import type { SnapshotPayload } from '../policy/schema.js';

export const enum PrincipalKind {
  User = 0,
  ApiKey = 1,
  Application = 2,
  Device = 3,
  Gateway = 4,
}
export const PRINCIPAL_KIND_NAMES = ['user', 'apiKey', 'application', 'device', 'gateway'] as const;
export type PrincipalKindName = (typeof PRINCIPAL_KIND_NAMES)[number];

/** What a principal may act on. A thing is in scope if any member says so. */
export interface Scope {
  readonly all: boolean;
  readonly customers: ReadonlySet<number> | null;
  readonly locations: ReadonlySet<number> | null;
  readonly things: ReadonlySet<number> | null;
  /** A device's own thing, or -1. */
  readonly self: number;
  /** Human-readable origin of the scope, for `explain`. */
  readonly basis: string;
}

export interface PrincipalCredentials {
  readonly passwordHash: string | undefined;
  readonly tokenHashes: readonly string[];
  readonly secretHash: string | undefined;
  readonly certFingerprints: readonly string[];
}

export interface PrincipalRecord {
  readonly id: string;
  readonly kind: PrincipalKind;
  /** Index in USER_TYPES, or -1 for devices and the gateway. */
  readonly userType: number;
  readonly entity: string | undefined;
  /** The role for users and applications; undefined for API keys, devices, the gateway. */
  readonly role: string | undefined;
  readonly revoked: boolean;
  /** granted[permissionId] === 1 when the role or the key's own set grants it (shared between holders of one role). */
  readonly granted: Uint8Array;
  readonly scope: Scope;
  readonly credentials: PrincipalCredentials;
}

export type ExpiredMode = 'read-only' | 'deny-all' | 'enforce';

export interface PolicyIndex {
  readonly payload: SnapshotPayload;
  readonly version: number;
  readonly gatewayId: string;
  readonly privileged: boolean;
  readonly expiresAt: number;
  readonly expiredMode: ExpiredMode;
  readonly principals: ReadonlyMap<string, PrincipalRecord>;
  readonly byCertFingerprint: ReadonlyMap<string, PrincipalRecord>;
  readonly thingIndex: ReadonlyMap<string, number>;
  readonly thingIds: readonly string[];
  readonly thingCustomer: Int32Array;
  readonly thingLocation: Int32Array;
  /** 1 when this gateway serves the thing (privileged gateway, or the thing's resource group is the gateway's). */
  readonly thingServed: Uint8Array;
  readonly customerIds: readonly string[];
  readonly locationIds: readonly string[];
  /** assignable[userType * PERMISSION_COUNT + permissionId] */
  readonly assignable: Uint8Array;
  /** available[(userType + 1) * PERMISSION_COUNT + permissionId]: modules allow it (row 0: no user type). */
  readonly available: Uint8Array;
  /** canonical[permissionId]: a legacy name's successor id, else itself. */
  readonly canonical: Int16Array;
  readonly readAllThingsId: number;
  readonly registerThingId: number;
  readonly warnings: readonly string[];
}

const PC = PERMISSION_COUNT;

/** Permissions of the gateway's own identity (IBM gateway roles). */
export const GATEWAY_ROLE_PERMISSIONS = {
  standard: ['READ_THING', 'READ_CLOUD_STATUS'],
  privileged: ['READ_THING', 'READ_CLOUD_STATUS', 'REGISTER_THING', 'WRITE_THING', 'WRITE_THING_ACTIVATION', 'WRITE_THING_OPTION'],
} as const;

/** A device acts on itself only, with these. */
export const DEVICE_PERMISSIONS = ['READ_THING', 'READ_CLOUD_STATUS'] as const;

function idOf(name: string): number {
  const e = permissionByName(name);
  if (!e) throw new Error(`catalog has no ${name}`);
  return e.id;
}

const userTypeIndex = (t: UserType): number => USER_TYPES.indexOf(t);

export function buildIndex(payload: SnapshotPayload, opts: { expiredMode?: ExpiredMode } = {}): PolicyIndex {
  const warnings: string[] = [];
  const canonical = new Int16Array(PC);
  for (const e of CATALOG) canonical[e.id] = e.successor ? idOf(e.successor) : e.id;

  const assignable = new Uint8Array(USER_TYPES.length * PC);
  USER_TYPES.forEach((t, ti) => {
    for (const e of CATALOG) assignable[ti * PC + e.id] = isAssignableTo(e, t) ? 1 : 0;
  });
  const active = new Set<string>(payload.modules);
  const available = new Uint8Array((USER_TYPES.length + 1) * PC);
  for (let row = 0; row <= USER_TYPES.length; row++) {
    const t = row === 0 ? undefined : USER_TYPES[row - 1];
    for (const e of CATALOG) {
      const need = requiredModulesFor(e, t);
      available[row * PC + e.id] = need.length === 0 || need.some((m) => active.has(m)) ? 1 : 0;
    }
  }

  // --- tenant hierarchy, interned ---------------------------------------------------------------
  const customerIds = (payload.customers ?? []).map((c) => c.id);
  const customerIndex = new Map(customerIds.map((id, i) => [id, i]));
  const locationIds = (payload.locations ?? []).map((l) => l.id);
  const locationIndex = new Map(locationIds.map((id, i) => [id, i]));
  const things = payload.things ?? [];
  const thingIds = things.map((t) => t.id);
  const thingIndex = new Map<string, number>();
  const thingCustomer = new Int32Array(things.length);
  const thingLocation = new Int32Array(things.length);
  const thingServed = new Uint8Array(things.length);
  const privileged = payload.gateway.role === 'privileged';
  const groups = new Set(payload.gateway.resourceGroups);
  for (let i = 0; i < things.length; i++) {
    const t = things[i]!;
    thingIndex.set(t.id, i);
    thingCustomer[i] = customerIndex.get(t.customer) ?? -1;
    thingLocation[i] = t.location === undefined ? -1 : (locationIndex.get(t.location) ?? -1);
    thingServed[i] = privileged || groups.has(t.resourceGroup) ? 1 : 0;
  }

  // --- permission sets ---------------------------------------------------------------------------
  const grantSet = (names: readonly string[], userType: number, holder: string): Uint8Array => {
    const g = new Uint8Array(PC);
    for (const name of names) {
      const r = resolvePermissionName(name);
      const e = r && permissionByName(r.name);
      if (!e) {
        warnings.push(`${holder}: unknown permission ${name} ignored`);
        continue;
      }
      const id = canonical[e.id]!;
      if (userType >= 0 && !assignable[userType * PC + id]) {
        warnings.push(`${holder}: ${e.name} cannot be held by ${USER_TYPES[userType]} principals; grant not honoured`);
        continue;
      }
      g[id] = 1;
    }
    return g;
  };
  const roleGrants = new Map<string, { userType: number; granted: Uint8Array }>();
  const noneGrant = new Uint8Array(PC);
  const adminGrant = USER_TYPES.map((_, ti) => assignable.slice(ti * PC, (ti + 1) * PC));
  for (const r of payload.roles ?? []) {
    const ut = userTypeIndex(r.userType);
    roleGrants.set(r.name, { userType: ut, granted: grantSet(r.permissions, ut, `role ${r.name}`) });
  }
  const roleGrant = (role: string | undefined, userType: number, holder: string): { role: string; granted: Uint8Array } => {
    if (role === undefined || role === 'none') return { role: 'none', granted: noneGrant };
    if (role === 'admin') return { role, granted: adminGrant[userType]! };
    const g = roleGrants.get(role);
    if (!g) {
      warnings.push(`${holder}: role ${role} is not defined; falls back to none`);
      return { role: 'none', granted: noneGrant };
    }
    if (g.userType !== userType) {
      warnings.push(`${holder}: role ${role} is for ${USER_TYPES[g.userType]} users; falls back to none`);
      return { role: 'none', granted: noneGrant };
    }
    return { role, granted: g.granted };
  };

  // --- scopes ----------------------------------------------------------------------------------
  const ALL: Scope = { all: true, customers: null, locations: null, things: null, self: -1, basis: 'the whole tenant' };
  const NOTHING: Scope = { all: false, customers: null, locations: null, things: null, self: -1, basis: 'nothing' };
  const partnerCustomers = new Map<string, Set<number>>();
  for (const p of payload.partners ?? []) {
    const set = new Set<number>();
    for (const c of p.customers) {
      const ci = customerIndex.get(c);
      if (ci !== undefined) set.add(ci);
    }
    partnerCustomers.set(p.id, set);
  }
  // Customers with user authorizations, and each user's authorized things.
  const authorizedCustomers = new Set<string>();
  const userThings = new Map<string, Set<number>>();
  for (const a of payload.userAuthorizations ?? []) {
    authorizedCustomers.add(a.customer);
    let set = userThings.get(a.user);
    if (!set) userThings.set(a.user, (set = new Set()));
    for (const t of a.things) {
      const ti = thingIndex.get(t);
      if (ti !== undefined && thingIds[ti] !== undefined && customerIds[thingCustomer[ti]!] === a.customer) set.add(ti);
    }
  }
  const orgAuth = new Map<string, { customers: Set<number>; locations: Set<number>; things: Set<number> }>();
  for (const a of payload.organizationAuthorizations ?? []) {
    let e = orgAuth.get(a.user);
    if (!e) orgAuth.set(a.user, (e = { customers: new Set(), locations: new Set(), things: new Set() }));
    for (const c of a.customers ?? []) {
      const i = customerIndex.get(c);
      if (i !== undefined) e.customers.add(i);
    }
    for (const l of a.locations ?? []) {
      const i = locationIndex.get(l);
      if (i !== undefined) e.locations.add(i);
    }
    for (const t of a.things ?? []) {
      const i = thingIndex.get(t);
      if (i !== undefined) e.things.add(i);
    }
  }
  const entityScope = (userType: UserType, entity: string, userId: string | undefined): Scope => {
    if (userType === 'ORGANIZATION') {
      if (entity !== payload.organization.id) return { ...NOTHING, basis: `unknown organization ${entity}` };
      const a = userId === undefined ? undefined : orgAuth.get(userId);
      if (!a) return ALL;
      return { all: false, customers: a.customers, locations: a.locations, things: a.things, self: -1, basis: 'organization authorizations' };
    }
    if (userType === 'PARTNER') {
      const set = partnerCustomers.get(entity);
      if (!set) return { ...NOTHING, basis: `unknown partner ${entity}` };
      return { all: false, customers: set, locations: null, things: null, self: -1, basis: `customers assigned to partner ${entity}` };
    }
    const ci = customerIndex.get(entity);
    if (ci === undefined) return { ...NOTHING, basis: `unknown customer ${entity}` };
    if (userId !== undefined && authorizedCustomers.has(entity)) {
      return { all: false, customers: null, locations: null, things: userThings.get(userId) ?? new Set(), self: -1, basis: `user authorizations of customer ${entity}` };
    }
    return { all: false, customers: new Set([ci]), locations: null, things: null, self: -1, basis: `things of customer ${entity}` };
  };

  // --- principals --------------------------------------------------------------------------------
  const principals = new Map<string, PrincipalRecord>();
  const byCertFingerprint = new Map<string, PrincipalRecord>();
  const add = (rec: PrincipalRecord) => {
    if (principals.has(rec.id)) {
      warnings.push(`principal id ${rec.id} appears twice; the first is kept`);
      return;
    }
    principals.set(rec.id, rec);
    for (const f of rec.credentials.certFingerprints) byCertFingerprint.set(f, rec);
  };
  const creds = (c: Partial<PrincipalCredentials>): PrincipalCredentials => ({
    passwordHash: c.passwordHash,
    tokenHashes: c.tokenHashes ?? [],
    secretHash: c.secretHash,
    certFingerprints: c.certFingerprints ?? [],
  });

  const gwPerms = GATEWAY_ROLE_PERMISSIONS[payload.gateway.role];
  add({
    id: payload.gateway.id,
    kind: PrincipalKind.Gateway,
    userType: -1,
    entity: payload.organization.id,
    role: payload.gateway.role,
    revoked: false,
    granted: grantSet(gwPerms, -1, 'gateway'),
    scope: ALL,
    credentials: creds({}),
  });
  for (const u of payload.users ?? []) {
    const ut = userTypeIndex(u.userType);
    const r = roleGrant(u.role, ut, `user ${u.id}`);
    add({
      id: u.id,
      kind: PrincipalKind.User,
      userType: ut,
      entity: u.entity,
      role: r.role,
      revoked: u.revoked === true,
      granted: r.granted,
      scope: entityScope(u.userType, u.entity, u.id),
      credentials: creds({ passwordHash: u.passwordHash, tokenHashes: u.tokenHashes ?? [] }),
    });
  }
  for (const k of payload.apiKeys ?? []) {
    const ut = userTypeIndex(k.userType);
    add({
      id: k.id,
      kind: PrincipalKind.ApiKey,
      userType: ut,
      entity: k.entity,
      role: undefined,
      revoked: k.revoked === true,
      granted: grantSet(k.permissions, ut, `API key ${k.id}`),
      scope: entityScope(k.userType, k.entity, undefined),
      credentials: creds({ secretHash: k.secretHash }),
    });
  }
  const orgType = userTypeIndex('ORGANIZATION');
  for (const a of payload.applications ?? []) {
    const r = roleGrant(a.role, orgType, `application ${a.id}`);
    add({
      id: a.id,
      kind: PrincipalKind.Application,
      userType: orgType,
      entity: payload.organization.id,
      role: r.role,
      revoked: a.revoked === true,
      granted: r.granted,
      scope: ALL,
      credentials: creds({ secretHash: a.secretHash }),
    });
  }
  const deviceGrant = grantSet(DEVICE_PERMISSIONS, -1, 'devices');
  things.forEach((t, i) => {
    add({
      id: t.id,
      kind: PrincipalKind.Device,
      userType: -1,
      entity: t.customer,
      role: undefined,
      revoked: t.revoked === true,
      granted: deviceGrant,
      scope: { all: false, customers: null, locations: null, things: null, self: i, basis: 'the device itself' },
      credentials: creds({ tokenHashes: t.tokenHashes ?? [], certFingerprints: t.certFingerprints ?? [] }),
    });
  });

  return {
    payload,
    version: payload.version,
    gatewayId: payload.gateway.id,
    privileged,
    expiresAt: payload.expiresAt,
    expiredMode: opts.expiredMode ?? 'read-only',
    principals,
    byCertFingerprint,
    thingIndex,
    thingIds,
    thingCustomer,
    thingLocation,
    thingServed,
    customerIds,
    locationIds,
    assignable,
    available,
    canonical,
    readAllThingsId: idOf('READ_ALL_THINGS'),
    registerThingId: idOf('REGISTER_THING'),
    warnings,
  };
}
