// Indexes built once when a snapshot loads, so that a decision is at most two Map look-ups (the
// principal, the thing) and typed-array reads. Permissions, customers, locations and things are
// interned to small integers.
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

/**
 * How a principal's scope is checked: one small integer switch on the decision path, with its
 * argument (`pScopeArg`) an offset into one of the index's typed-array tables.
 */
export const enum ScopeKind {
  All = 0,
  /** A device: only its own thing (`scopeArg`). */
  Self = 1,
  /** Things of one customer (`scopeArg`). */
  Customer = 2,
  /**
   * Things of the customers flagged in `scopeMask` (a partner's assigned customers); `pScopeArg` is
   * the offset of that mask's row in `scopeMasks`.
   */
  CustomerMask = 3,
  /**
   * The union of `scopeSets` (organization and user authorizations); `pScopeArg` is the offset of
   * its six bounds in `scopeSetBounds`.
   */
  Sets = 4,
  Nothing = 5,
}

export interface ScopeSets {
  readonly customers: ReadonlySet<number>;
  readonly locations: ReadonlySet<number>;
  readonly things: ReadonlySet<number>;
}

/** Why a decision was OK or not, per permission, precomputed for a (grant set, user type) pair. */
export const enum Verdict {
  Ok = 0,
  UserTypeRestricted = 1,
  NotGranted = 2,
  ModuleInactive = 3,
}

export interface PrincipalRecord {
  readonly id: string;
  readonly kind: PrincipalKind;
  /** Index in USER_TYPES, or -1 for devices and the gateway. */
  readonly userType: number;
  readonly entity: string | undefined;
  /** The role for users and applications; the gateway role for the gateway; undefined otherwise. */
  readonly role: string | undefined;
  readonly revoked: boolean;
  /** granted[permissionId] === 1 when the role or the key's own set grants it (shared between holders of one role). */
  readonly granted: Uint8Array;
  /** verdict[permissionId]: a Verdict, shared between principals with the same grant set and user type. */
  readonly verdict: Uint8Array;
  /** READ_ALL_THINGS held and available: reads are widened to the whole tenant. */
  readonly widensReads: boolean;
  readonly scopeKind: ScopeKind;
  readonly scopeArg: number;
  readonly scopeMask: Uint8Array | null;
  readonly scopeSets: ScopeSets | null;
  /** Human-readable origin of the scope, for `explain`. */
  readonly scopeBasis: string;
  // credentials (hashes only)
  readonly passwordHash: string | undefined;
  readonly tokenHashes: readonly string[];
  readonly secretHash: string | undefined;
  readonly certFingerprints: readonly string[];
}

export type ExpiredMode = 'read-only' | 'deny-all' | 'enforce';

/**
 * What a decision, a login and explain read of a snapshot. It holds none of the payload: every
 * string it keeps is its own copy (see own()), so the decoded payload — and the string tables it
 * was decoded from — are garbage once the index is built.
 */
export interface PolicyIndex {
  readonly version: number;
  readonly issuedAt: number;
  /** The snapshot's active modules and the gateway's resource groups (explain's trace). */
  readonly modules: readonly string[];
  readonly resourceGroups: readonly string[];
  readonly gatewayId: string;
  readonly privileged: boolean;
  readonly expiresAt: number;
  readonly expiredMode: ExpiredMode;
  /**
   * Every principal id and thing id to its number. Things (= devices) are 0..thingCount-1, so a
   * thing's number is its device's principal number; other principals follow. One map serves both
   * look-ups of a decision.
   */
  readonly ids: ReadonlyMap<string, number>;
  readonly thingCount: number;
  /** Principal records by number, for authentication, explain and diff; devices' are made on demand: use recordOf. */
  readonly records: readonly (PrincipalRecord | undefined)[];
  readonly deviceGrant: Uint8Array;
  readonly deviceVerdict: Uint8Array;
  // Per principal number, the fields a decision reads, as typed arrays (no pointer chasing):
  readonly pRevoked: Uint8Array;
  /** Offset of the principal's verdict row in `verdictTable`. */
  readonly pVerdictRow: Int32Array;
  readonly verdictTable: Uint8Array;
  readonly pScopeKind: Uint8Array;
  readonly pScopeArg: Int32Array;
  readonly pWidensReads: Uint8Array;
  /**
   * The partners' customer masks, one row of `customerIds.length` bytes each (1: assigned); a
   * CustomerMask principal's `pScopeArg` is its row's offset. Records' `scopeMask` are views of it.
   */
  readonly scopeMasks: Uint8Array;
  /**
   * Per Sets scope, six numbers at [a, a + 6) (a: the principal's `pScopeArg`): start and end in
   * `scopeSetMembers` of its sorted thing numbers, then of its customer numbers, then of its
   * location numbers. Shared by principals with the same sets.
   */
  readonly scopeSetBounds: Int32Array;
  readonly scopeSetMembers: Int32Array;
  readonly thingIds: readonly string[];
  /**
   * Per thing, its device's first token hash as 32 bytes at [32n, 32n + 32) (`thingHasToken` 1), the
   * others (rare) in `thingMoreTokens`: 193,000 hashes as strings in arrays would take ~30 MB more.
   * recordOf gives them back as `sha256:<hex>` strings.
   */
  readonly thingToken: Uint8Array;
  readonly thingHasToken: Uint8Array;
  readonly thingMoreTokens: ReadonlyMap<number, readonly string[]>;
  /** Per thing, for the few that have them: cert fingerprints, and an unknown customer's id. */
  readonly thingCertFingerprints: ReadonlyMap<number, readonly string[]>;
  readonly thingUnknownCustomer: ReadonlyMap<number, string>;
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

/**
 * The string as a string of its own. The CBOR decoder hands out long strings as slices of one
 * string table per payload member; keeping one slice keeps the whole table (every name, hash and id
 * of that member) in memory. V8 slices strings of 13 characters and more; shorter ones are copies.
 */
export function own(s: string): string {
  // Concatenation makes a new string; slicing it flattens it into one new sequential string and
  // refers to that (the cheapest copy V8 offers: ~0.2 µs for a 71-character hash).
  return s.length < 13 ? s : (' ' + s).slice(1);
}

/**
 * own(), as one flat (sequential) string rather than a slice: for the keys of `ids`. Every
 * successful look-up compares the key's characters with the asked id's (another string object: the
 * MQTT parser's), and V8 compares two flat strings inline but a slice only through a runtime call
 * (~20 ns more per look-up: a third of a decision, for ids of 13 characters and more). Joining two
 * pieces builds one new sequential string (~70 ns for a 15-character id); the characters are the
 * same whatever V8 does, only the speed depends on it.
 */
export function ownKey(s: string): string {
  return s.length < 13 ? s : [s.slice(0, 1), s.slice(1)].join('');
}

/** Hex digit values by character code; -1 for anything else (lower case only: the schema's form). */
const HEX = new Int8Array(128).fill(-1);
for (let i = 0; i < 10; i++) HEX[48 + i] = i;
for (let i = 0; i < 6; i++) HEX[97 + i] = 10 + i;

/** `sha256:<64 hex>` as 32 bytes into `out` at `at`; false (out unchanged or partly written) for anything else. */
function hexHashInto(s: string, out: Uint8Array, at: number): boolean {
  if (s.length !== 71 || !s.startsWith('sha256:')) return false;
  for (let k = 0; k < 32; k++) {
    const a = s.charCodeAt(7 + 2 * k);
    const b = s.charCodeAt(8 + 2 * k);
    const hi = a < 128 ? HEX[a]! : -1;
    const lo = b < 128 ? HEX[b]! : -1;
    if ((hi | lo) < 0) return false;
    out[at + k] = (hi << 4) | lo;
  }
  return true;
}

const ownAll = (a: readonly string[] | undefined): readonly string[] | undefined => (a === undefined ? undefined : a.map(own));

/**
 * The index of a verified payload. With `consume`, the payload's `things` (most of a large payload:
 * ~73 MB of heap for 193,000 things) are taken out of it as soon as they are indexed, so that memory
 * can be collected while the rest is built, next to the index still in force: the caller must not
 * use the payload afterwards.
 */
export function buildIndex(payload: SnapshotPayload, opts: { expiredMode?: ExpiredMode; consume?: boolean } = {}): PolicyIndex {
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
  const customerIds = (payload.customers ?? []).map((c) => own(c.id));
  const customerIndex = new Map(customerIds.map((id, i) => [id, i]));
  const locationIds = (payload.locations ?? []).map((l) => own(l.id));
  const locationIndex = new Map(locationIds.map((id, i) => [id, i]));
  let things = payload.things ?? [];
  const thingCount = things.length;
  const thingIds = things.map((t) => ownKey(t.id));
  const thingRevoked = new Uint8Array(thingCount);
  const ids = new Map<string, number>();
  const thingCustomer = new Int32Array(things.length);
  const thingLocation = new Int32Array(things.length);
  const thingServed = new Uint8Array(things.length);
  const privileged = payload.gateway.role === 'privileged';
  const groups = new Set(payload.gateway.resourceGroups);
  // Backwards, one Map operation per thing: of a repeated id, the first is set last and kept.
  for (let i = things.length - 1; i >= 0; i--) ids.set(thingIds[i]!, i);
  if (ids.size !== things.length) {
    const seen = new Set<string>();
    for (const t of things) {
      if (seen.has(t.id)) warnings.push(`thing id ${t.id} appears twice; the first is kept`);
      else seen.add(t.id);
    }
  }
  const thingToken = new Uint8Array(things.length * 32);
  const thingHasToken = new Uint8Array(things.length);
  const thingMoreTokens = new Map<number, readonly string[]>();
  const thingCertFingerprints = new Map<number, readonly string[]>();
  const thingUnknownCustomer = new Map<number, string>();
  for (let i = 0; i < things.length; i++) {
    const t = things[i]!;
    const tokens = t.tokenHashes ?? [];
    // The schema admits sha256:<64 hex> only for tokens; anything else stays a string.
    let k = 0;
    const first = tokens[0];
    if (first !== undefined && hexHashInto(first, thingToken, i * 32)) {
      thingHasToken[i] = 1;
      k = 1;
    }
    if (tokens.length > k) thingMoreTokens.set(i, tokens.slice(k).map(own));
    if (t.certFingerprints !== undefined && t.certFingerprints.length > 0) thingCertFingerprints.set(i, t.certFingerprints.map(own));
    thingCustomer[i] = customerIndex.get(t.customer) ?? -1;
    if (thingCustomer[i] === -1) thingUnknownCustomer.set(i, own(t.customer));
    thingRevoked[i] = t.revoked === true ? 1 : 0;
    thingLocation[i] = t.location === undefined ? -1 : (locationIndex.get(t.location) ?? -1);
    thingServed[i] = privileged || groups.has(t.resourceGroup) ? 1 : 0;
  }

  // Everything the index needs of the things is taken: with `consume`, let them go.
  if (opts.consume === true) (payload as { things?: unknown }).things = undefined;
  things = [];

  const thingNo = (id: string): number => {
    const n = ids.get(id);
    return n !== undefined && n < thingCount ? n : -1;
  };

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

  // --- verdicts: one byte per permission for each (grant set, user type) -------------------------
  const verdicts = new Map<Uint8Array, Map<number, Uint8Array>>();
  const verdictRows: Uint8Array[] = [];
  const verdictRowOf = new Map<Uint8Array, number>();
  const verdictOf = (granted: Uint8Array, userType: number): Uint8Array => {
    let byType = verdicts.get(granted);
    if (!byType) verdicts.set(granted, (byType = new Map()));
    let v = byType.get(userType);
    if (v) return v;
    v = new Uint8Array(PC);
    verdictRowOf.set(v, verdictRows.length);
    verdictRows.push(v);
    for (let pid = 0; pid < PC; pid++) {
      if (userType >= 0 && !assignable[userType * PC + pid]) v[pid] = Verdict.UserTypeRestricted;
      else if (!granted[pid]) v[pid] = Verdict.NotGranted;
      else if (!available[(userType + 1) * PC + pid]) v[pid] = Verdict.ModuleInactive;
    }
    byType.set(userType, v);
    return v;
  };
  const readAllThingsId = idOf('READ_ALL_THINGS');

  // --- scopes ----------------------------------------------------------------------------------
  interface ScopeSpec {
    kind: ScopeKind;
    arg: number;
    mask: Uint8Array | null;
    sets: ScopeSets | null;
    basis: string;
  }
  const ALL: ScopeSpec = { kind: ScopeKind.All, arg: -1, mask: null, sets: null, basis: 'the whole tenant' };
  const nothing = (basis: string): ScopeSpec => ({ kind: ScopeKind.Nothing, arg: -1, mask: null, sets: null, basis });
  // One row per partner in one table, so that a decision reads a byte, not a record's array.
  const partnerMask = new Map<string, { row: number; mask: Uint8Array }>();
  const partners = payload.partners ?? [];
  const cc = customerIds.length;
  const scopeMasks = new Uint8Array(partners.length * cc);
  partners.forEach((p, i) => {
    const mask = scopeMasks.subarray(i * cc, (i + 1) * cc);
    for (const c of p.customers) {
      const ci = customerIndex.get(c);
      if (ci !== undefined) mask[ci] = 1;
    }
    partnerMask.set(p.id, { row: i * cc, mask });
  });
  // Customers with user authorizations, and each user's authorized things.
  const authorizedCustomers = new Set<string>();
  const userThings = new Map<string, Set<number>>();
  for (const a of payload.userAuthorizations ?? []) {
    authorizedCustomers.add(a.customer);
    let set = userThings.get(a.user);
    if (!set) userThings.set(a.user, (set = new Set()));
    for (const t of a.things) {
      const ti = thingNo(t);
      if (ti >= 0 && customerIds[thingCustomer[ti]!] === a.customer) set.add(ti);
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
      const i = thingNo(t);
      if (i >= 0) e.things.add(i);
    }
  }
  const EMPTY_SET: ReadonlySet<number> = new Set();
  const entityScope = (userType: UserType, entity: string, userId: string | undefined): ScopeSpec => {
    if (userType === 'ORGANIZATION') {
      if (entity !== payload.organization.id) return nothing(`unknown organization ${entity}`);
      const a = userId === undefined ? undefined : orgAuth.get(userId);
      if (!a) return ALL;
      return { kind: ScopeKind.Sets, arg: -1, mask: null, sets: a, basis: 'organization authorizations' };
    }
    if (userType === 'PARTNER') {
      const m = partnerMask.get(entity);
      if (!m) return nothing(`unknown partner ${entity}`);
      return { kind: ScopeKind.CustomerMask, arg: m.row, mask: m.mask, sets: null, basis: `customers assigned to partner ${entity}` };
    }
    const ci = customerIndex.get(entity);
    if (ci === undefined) return nothing(`unknown customer ${entity}`);
    if (userId !== undefined && authorizedCustomers.has(entity)) {
      const things = userThings.get(userId) ?? EMPTY_SET;
      return { kind: ScopeKind.Sets, arg: -1, mask: null, sets: { customers: EMPTY_SET, locations: EMPTY_SET, things }, basis: `user authorizations of customer ${entity}` };
    }
    return { kind: ScopeKind.Customer, arg: ci, mask: null, sets: null, basis: `things of customer ${entity}` };
  };

  // --- principals --------------------------------------------------------------------------------
  // Devices are numbered first, as their things; the others follow in the order added.
  // Device records are made on demand (recordOf): 100,000 things need no 100,000 objects at load.
  // Filled by push: `records.length = 100_000` on an empty array makes later pushes slow.
  const records: (PrincipalRecord | undefined)[] = [];
  for (let i = 0; i < thingCount; i++) records.push(undefined);

  const NONE: readonly string[] = Object.freeze([]);
  // One factory, so every record has the same shape.
  const add = (
    n: number,
    id: string,
    kind: PrincipalKind,
    userType: number,
    entity: string | undefined,
    role: string | undefined,
    revoked: boolean,
    granted: Uint8Array,
    scope: ScopeSpec,
    passwordHash: string | undefined,
    tokenHashes: readonly string[] | undefined,
    secretHash: string | undefined,
    certFingerprints: readonly string[] | undefined,
  ): void => {
    const verdict = verdictOf(granted, userType);
    const rec: PrincipalRecord = {
      id: own(id),
      kind,
      userType,
      entity: entity === undefined ? undefined : own(entity),
      role: role === undefined ? undefined : own(role),
      revoked,
      granted,
      verdict,
      widensReads: granted[readAllThingsId] === 1 && verdict[readAllThingsId] === Verdict.Ok,
      scopeKind: scope.kind,
      scopeArg: scope.arg,
      scopeMask: scope.mask,
      scopeSets: scope.sets,
      scopeBasis: own(scope.basis),
      passwordHash: passwordHash === undefined ? undefined : own(passwordHash),
      tokenHashes: ownAll(tokenHashes) ?? NONE,
      secretHash: secretHash === undefined ? undefined : own(secretHash),
      certFingerprints: ownAll(certFingerprints) ?? NONE,
    };
    records[n] = rec;
  };
  /** The number for a new non-device principal, or -1 when its id is taken. */
  const claim = (id: string): number => {
    if (ids.has(id)) {
      warnings.push(`principal id ${id} appears twice; the first is kept`);
      return -1;
    }
    const n = records.length;
    records.push(undefined as unknown as PrincipalRecord);
    ids.set(ownKey(id), n);
    return n;
  };

  const deviceGrant = grantSet(DEVICE_PERMISSIONS, -1, 'devices');
  const deviceVerdict = verdictOf(deviceGrant, -1);
  const gwPerms = GATEWAY_ROLE_PERMISSIONS[payload.gateway.role];
  let n = claim(payload.gateway.id);
  if (n >= 0) add(n, payload.gateway.id, PrincipalKind.Gateway, -1, payload.organization.id, payload.gateway.role, false, grantSet(gwPerms, -1, 'gateway'), ALL, undefined, undefined, undefined, undefined);
  for (const u of payload.users ?? []) {
    const ut = userTypeIndex(u.userType);
    const r = roleGrant(u.role, ut, `user ${u.id}`);
    n = claim(u.id);
    // A person's password as an unsalted fast hash is never accepted (the issuer refuses it; an
    // older snapshot may still have one): the user cannot log in with a password.
    let password = u.passwordHash;
    if (password !== undefined && password.startsWith('sha256:')) {
      warnings.push(`user ${u.id}: a sha256 password hash is not accepted for a person (re-sign with a scrypt hash: edgewarden hash --scrypt); the user cannot log in with a password`);
      password = undefined;
    }
    if (n >= 0) add(n, u.id, PrincipalKind.User, ut, u.entity, r.role, u.revoked === true, r.granted, entityScope(u.userType, u.entity, u.id), password, u.tokenHashes, undefined, undefined);
  }
  for (const k of payload.apiKeys ?? []) {
    const ut = userTypeIndex(k.userType);
    n = claim(k.id);
    if (n >= 0) add(n, k.id, PrincipalKind.ApiKey, ut, k.entity, undefined, k.revoked === true, grantSet(k.permissions, ut, `API key ${k.id}`), entityScope(k.userType, k.entity, undefined), undefined, undefined, k.secretHash, undefined);
  }
  const orgType = userTypeIndex('ORGANIZATION');
  for (const a of payload.applications ?? []) {
    const r = roleGrant(a.role, orgType, `application ${a.id}`);
    n = claim(a.id);
    if (n >= 0) add(n, a.id, PrincipalKind.Application, orgType, payload.organization.id, r.role, a.revoked === true, r.granted, ALL, undefined, undefined, a.secretHash, undefined);
  }
  // --- the decision path's typed arrays ------------------------------------------------------------
  const count = records.length;
  const pRevoked = new Uint8Array(count);
  const pVerdictRow = new Int32Array(count);
  const pScopeKind = new Uint8Array(count);
  const pScopeArg = new Int32Array(count);
  const pWidensReads = new Uint8Array(count);
  const deviceRow = verdictRowOf.get(deviceVerdict)! * PC;
  for (let i = 0; i < thingCount; i++) {
    pRevoked[i] = thingRevoked[i]!;
    pVerdictRow[i] = deviceRow;
    pScopeKind[i] = ScopeKind.Self;
    pScopeArg[i] = i;
  }
  // Sets scopes as sorted runs of numbers in one Int32Array, each distinct ScopeSets once.
  const setBounds: number[] = [];
  const setMembers: number[] = [];
  const setBoundsOf = new Map<ScopeSets, number>();
  const boundsOf = (sets: ScopeSets): number => {
    let at = setBoundsOf.get(sets);
    if (at !== undefined) return at;
    at = setBounds.length;
    for (const members of [sets.things, sets.customers, sets.locations]) {
      setBounds.push(setMembers.length);
      for (const v of [...members].sort((a, b) => a - b)) setMembers.push(v);
      setBounds.push(setMembers.length);
    }
    setBoundsOf.set(sets, at);
    return at;
  };
  for (let i = thingCount; i < count; i++) {
    const r = records[i]!;
    pRevoked[i] = r.revoked ? 1 : 0;
    pVerdictRow[i] = verdictRowOf.get(r.verdict)! * PC;
    pScopeKind[i] = r.scopeKind;
    pScopeArg[i] = r.scopeKind === ScopeKind.Sets ? boundsOf(r.scopeSets!) : r.scopeArg;
    pWidensReads[i] = r.widensReads ? 1 : 0;
  }
  const verdictTable = new Uint8Array(verdictRows.length * PC);
  verdictRows.forEach((row, i) => verdictTable.set(row, i * PC));

  return {
    version: payload.version,
    issuedAt: payload.issuedAt,
    modules: payload.modules.map(own),
    resourceGroups: payload.gateway.resourceGroups.map(own),
    gatewayId: own(payload.gateway.id),
    privileged,
    expiresAt: payload.expiresAt,
    expiredMode: opts.expiredMode ?? 'read-only',
    ids,
    thingCount,
    records,
    pRevoked,
    pVerdictRow,
    verdictTable,
    deviceGrant,
    deviceVerdict,
    pScopeKind,
    pScopeArg,
    pWidensReads,
    scopeMasks,
    scopeSetBounds: Int32Array.from(setBounds),
    scopeSetMembers: Int32Array.from(setMembers),
    thingIds,
    thingToken,
    thingHasToken,
    thingMoreTokens,
    thingCertFingerprints,
    thingUnknownCustomer,
    thingCustomer,
    thingLocation,
    thingServed,
    customerIds,
    locationIds,
    assignable,
    available,
    canonical,
    readAllThingsId,
    registerThingId: idOf('REGISTER_THING'),
    warnings: warnings.map(own),
  };
}

/** The principal record for a principal number; a device's is made on demand. */
export function recordOf(index: PolicyIndex, n: number): PrincipalRecord | undefined {
  if (n >= index.thingCount) return index.records[n];
  if (n < 0) return undefined;
  const c = index.thingCustomer[n]!;
  return {
    id: index.thingIds[n]!,
    kind: PrincipalKind.Device,
    userType: -1,
    entity: c >= 0 ? index.customerIds[c]! : index.thingUnknownCustomer.get(n)!,
    role: undefined,
    revoked: index.pRevoked[n] === 1,
    granted: index.deviceGrant,
    verdict: index.deviceVerdict,
    widensReads: false,
    scopeKind: ScopeKind.Self,
    scopeArg: n,
    scopeMask: null,
    scopeSets: null,
    scopeBasis: 'the device itself',
    passwordHash: undefined,
    tokenHashes: deviceTokenHashes(index, n),
    secretHash: undefined,
    certFingerprints: index.thingCertFingerprints.get(n) ?? [],
  };
}

function deviceTokenHashes(index: PolicyIndex, n: number): readonly string[] {
  const more = index.thingMoreTokens.get(n) ?? [];
  if (index.thingHasToken[n] !== 1) return more;
  return ['sha256:' + Buffer.from(index.thingToken.buffer, index.thingToken.byteOffset + n * 32, 32).toString('hex'), ...more];
}

/** The principal record for an id (user, API key, application, device or gateway). */
export function principalOf(index: PolicyIndex, id: string): PrincipalRecord | undefined {
  const n = index.ids.get(id);
  return n === undefined ? undefined : recordOf(index, n);
}

/** The thing's number, or -1 when the snapshot has no such thing. */
export function thingNumber(index: PolicyIndex, id: string): number {
  const n = index.ids.get(id);
  return n !== undefined && n < index.thingCount ? n : -1;
}

const certIndexes = new WeakMap<PolicyIndex, Map<string, number>>();

/**
 * The device whose client-certificate fingerprint (sha256:<hex> of the DER) this is. The map is
 * built on first use, not at load: most gateways authenticate devices by token.
 */
export function principalByCertFingerprint(index: PolicyIndex, fingerprint: string): PrincipalRecord | undefined {
  let map = certIndexes.get(index);
  if (!map) {
    map = new Map();
    for (const [i, fs] of index.thingCertFingerprints) for (const f of fs) if (!map.has(f)) map.set(f, i);
    certIndexes.set(index, map);
  }
  const n = map.get(fingerprint);
  return n === undefined ? undefined : recordOf(index, n);
}
