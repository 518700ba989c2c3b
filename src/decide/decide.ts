// decide(index, principal, permission, thing?, now) -> allow | deny(reason).
// Pure and allocation-free: Map/Set/typed-array look-ups and shared frozen results. The optional
// trace (used by `explain`) records each rule; the hot path passes none.
import { CATALOG, permissionId, requiredModulesFor, USER_TYPES } from '../catalog/index.js';
import { ALLOW, DENY, type Decision } from './reasons.js';
import { PrincipalKind, PRINCIPAL_KIND_NAMES, type PolicyIndex, type PrincipalRecord } from './policy-index.js';

export interface TraceStep {
  readonly rule: string;
  readonly passed: boolean;
  readonly detail: string;
}
export type Trace = TraceStep[];

const PC = CATALOG.length;

/**
 * `now` is the effective time (the time floor: the highest of the system clock, the newest
 * issuedAt seen and the last persisted time), in ms since the epoch.
 */
export function decide(
  index: PolicyIndex | null | undefined,
  principalId: string,
  permission: string,
  thing: string | undefined,
  now: number,
  trace?: Trace,
): Decision {
  if (!index) {
    if (trace) trace.push({ rule: 'snapshot', passed: false, detail: 'no valid snapshot is held' });
    return DENY.NO_SNAPSHOT;
  }
  const rawId = permissionId(permission);
  if (rawId < 0) {
    if (trace) trace.push({ rule: 'permission', passed: false, detail: `${permission} is not in the catalog` });
    return DENY.UNKNOWN_PERMISSION;
  }
  const pid = index.canonical[rawId]!;
  if (trace) trace.push({ rule: 'permission', passed: true, detail: pid === rawId ? `${permission} is in the catalog` : `legacy ${permission} maps to ${CATALOG[pid]!.name}` });

  const p = index.principals.get(principalId);
  if (p === undefined) {
    if (trace) trace.push({ rule: 'principal', passed: false, detail: `${principalId} is not in snapshot version ${index.version}` });
    return DENY.UNKNOWN_PRINCIPAL;
  }
  if (trace) trace.push({ rule: 'principal', passed: true, detail: describePrincipal(p) });
  if (p.revoked) {
    if (trace) trace.push({ rule: 'revocation', passed: false, detail: `${p.id} is revoked in snapshot version ${index.version}` });
    return DENY.REVOKED;
  }

  if (now >= index.expiresAt && index.expiredMode !== 'enforce') {
    const isRead = CATALOG[pid]!.access === 'read';
    if (index.expiredMode === 'deny-all' || !isRead) {
      if (trace) trace.push({ rule: 'expiry', passed: false, detail: `snapshot expired at ${new Date(index.expiresAt).toISOString()}; expired mode ${index.expiredMode} denies ${isRead ? 'reads' : 'writes and commands'}` });
      return DENY.SNAPSHOT_EXPIRED;
    }
    if (trace) trace.push({ rule: 'expiry', passed: true, detail: `snapshot expired, but expired mode read-only keeps READ_* flowing` });
  } else if (trace) trace.push({ rule: 'expiry', passed: true, detail: `snapshot valid until ${new Date(index.expiresAt).toISOString()}` });

  const ut = p.userType;
  if (ut >= 0 && index.assignable[ut * PC + pid] === 0) {
    if (trace) trace.push({ rule: 'user type', passed: false, detail: `${CATALOG[pid]!.name} can be assigned only to ${CATALOG[pid]!.userTypes.join(' and ')} user types; ${p.id} is ${USER_TYPES[ut]}` });
    return DENY.USER_TYPE_RESTRICTED;
  }
  if (p.granted[pid] === 0) {
    if (trace) trace.push({ rule: 'grant', passed: false, detail: `${grantSource(p)} does not grant ${CATALOG[pid]!.name}` });
    return DENY.NOT_GRANTED;
  }
  if (trace) trace.push({ rule: 'grant', passed: true, detail: `${grantSource(p)} grants ${CATALOG[pid]!.name}` });
  if (index.available[(ut + 1) * PC + pid] === 0) {
    if (trace) trace.push({ rule: 'modules', passed: false, detail: `${CATALOG[pid]!.name} needs one of ${modulesNeeded(pid, ut)}; active: ${index.payload.modules.join(', ') || 'none'}` });
    return DENY.MODULE_INACTIVE;
  }
  if (trace) trace.push({ rule: 'modules', passed: true, detail: `available with active modules ${index.payload.modules.join(', ') || '(none needed)'}` });

  if (pid === index.registerThingId) {
    if (!index.privileged) {
      if (trace) trace.push({ rule: 'gateway role', passed: false, detail: 'REGISTER_THING needs a privileged gateway; this one is standard' });
      return DENY.GATEWAY_SCOPE;
    }
    if (thing === undefined || !index.thingIndex.has(thing)) {
      if (trace) trace.push({ rule: 'gateway role', passed: true, detail: 'privileged gateway may register new things' });
      return ALLOW;
    }
  }
  if (thing === undefined) {
    if (trace) trace.push({ rule: 'scope', passed: true, detail: 'no thing named: tenant-level action' });
    return ALLOW;
  }
  const t = index.thingIndex.get(thing);
  if (t === undefined) {
    if (trace) trace.push({ rule: 'thing', passed: false, detail: `${thing} is not in snapshot version ${index.version}` });
    return DENY.UNKNOWN_THING;
  }
  if (index.thingServed[t] === 0) {
    if (trace) trace.push({ rule: 'gateway scope', passed: false, detail: `standard gateway ${index.gatewayId} serves resource groups ${index.payload.gateway.resourceGroups.join(', ') || '(none)'}; ${thing} is outside them` });
    return DENY.GATEWAY_SCOPE;
  }
  if (trace) trace.push({ rule: 'gateway scope', passed: true, detail: index.privileged ? 'privileged gateway serves every thing' : `${thing} is in one of the gateway's resource groups` });

  if (isInScope(index, p, t)) {
    if (trace) trace.push({ rule: 'scope', passed: true, detail: `${thing} is within ${p.scope.basis}` });
    return ALLOW;
  }
  // READ_ALL_THINGS widens read scope to the whole tenant, nothing else.
  const ra = index.readAllThingsId;
  if (CATALOG[pid]!.access === 'read' && p.granted[ra] === 1 && index.available[(ut + 1) * PC + ra] === 1) {
    if (trace) trace.push({ rule: 'scope', passed: true, detail: `${thing} is outside ${p.scope.basis}, but READ_ALL_THINGS widens reads to the whole tenant` });
    return ALLOW;
  }
  if (trace) trace.push({ rule: 'scope', passed: false, detail: `${thing} (customer ${index.customerIds[index.thingCustomer[t]!] ?? '?'}) is outside ${p.scope.basis}` });
  return DENY.OUT_OF_SCOPE;
}

export function isInScope(index: PolicyIndex, p: PrincipalRecord, t: number): boolean {
  const s = p.scope;
  if (s.all || s.self === t) return true;
  if (s.customers !== null && s.customers.has(index.thingCustomer[t]!)) return true;
  if (s.locations !== null && s.locations.has(index.thingLocation[t]!)) return true;
  return s.things !== null && s.things.has(t);
}

function describePrincipal(p: PrincipalRecord): string {
  const kind = PRINCIPAL_KIND_NAMES[p.kind];
  const ut = p.userType >= 0 ? ` ${USER_TYPES[p.userType]}` : '';
  const entity = p.entity && p.kind !== PrincipalKind.Device ? ` of ${p.entity}` : '';
  const role = p.role ? `, role ${p.role}` : '';
  return `${p.id} is a${ut} ${kind}${entity}${role}`;
}

function grantSource(p: PrincipalRecord): string {
  switch (p.kind) {
    case PrincipalKind.ApiKey:
      return `the permission set of API key ${p.id}`;
    case PrincipalKind.Device:
      return 'the device permission set';
    case PrincipalKind.Gateway:
      return `gateway role ${p.role}`;
    default:
      return `role ${p.role}`;
  }
}

function modulesNeeded(pid: number, ut: number): string {
  return requiredModulesFor(CATALOG[pid]!, ut >= 0 ? USER_TYPES[ut] : undefined).join(' or ');
}

/** The decision and every rule that led to it. */
export function explain(index: PolicyIndex | null, principalId: string, permission: string, thing: string | undefined, now: number): { decision: Decision; steps: Trace } {
  const steps: Trace = [];
  const decision = decide(index, principalId, permission, thing, now, steps);
  return { decision, steps };
}
