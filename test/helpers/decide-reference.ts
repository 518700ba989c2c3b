// The reference for test/unit/decide-equivalence.test.ts: the decision engine as it was before
// issue 16 made it faster (src/decide/decide.ts at a4d170e), kept as it was apart from its exports'
// names. It reads the index as that engine did: the catalog's permission Map, one function with
// optional trace for decisions and explain, scopes from the principal records (scopeMask,
// scopeSets' Sets), not from the typed-array tables the engine now reads. Not used by src/.
import { CATALOG, permissionId, requiredModulesFor, USER_TYPES } from '../../src/catalog/index.js';
import { ALLOW, DENY, type Decision } from '../../src/decide/reasons.js';
import { PrincipalKind, PRINCIPAL_KIND_NAMES, ScopeKind, Verdict, recordOf, thingNumber, type PolicyIndex, type PrincipalRecord } from '../../src/decide/policy-index.js';

export interface TraceStep {
  readonly rule: string;
  readonly passed: boolean;
  readonly detail: string;
}
export type Trace = TraceStep[];

/**
 * `now` is the effective time (the time floor: the highest of the system clock, the newest
 * issuedAt seen and the last persisted time), in ms since the epoch.
 */
export function referenceDecide(
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
  return referenceDecideById(index, principalId, pid, thing, now, trace);
}

/**
 * The same decision with the permission already resolved to its canonical catalog id
 * (`index.canonical[permissionId(name)]`), for callers that resolve names once (the topic map).
 */
export function referenceDecideById(index: PolicyIndex, principalId: string, pid: number, thing: string | undefined, now: number, trace?: Trace): Decision {
  const n = index.ids.get(principalId);
  if (n === undefined) {
    if (trace) trace.push({ rule: 'principal', passed: false, detail: `${principalId} is not in snapshot version ${index.version}` });
    return DENY.UNKNOWN_PRINCIPAL;
  }
  // Only explain reads the record; decisions read the typed arrays.
  const p = trace ? recordOf(index, n) : undefined;
  if (p) trace!.push({ rule: 'principal', passed: true, detail: describePrincipal(p) });
  if (index.pRevoked[n] === 1) {
    if (p) trace!.push({ rule: 'revocation', passed: false, detail: `${p.id} is revoked in snapshot version ${index.version}` });
    return DENY.REVOKED;
  }

  if (now >= index.expiresAt && index.expiredMode !== 'enforce') {
    const isRead = CATALOG[pid]!.access === 'read';
    if (index.expiredMode === 'deny-all' || !isRead) {
      if (trace) trace.push({ rule: 'expiry', passed: false, detail: `snapshot expired at ${new Date(index.expiresAt).toISOString()}; expired mode ${index.expiredMode} denies ${isRead ? 'reads' : 'writes and commands'}` });
      return DENY.SNAPSHOT_EXPIRED;
    }
    if (trace) trace.push({ rule: 'expiry', passed: true, detail: 'snapshot expired, but expired mode read-only keeps READ_* flowing' });
  } else if (trace) trace.push({ rule: 'expiry', passed: true, detail: `snapshot valid until ${new Date(index.expiresAt).toISOString()}` });

  const verdict = index.verdictTable[index.pVerdictRow[n]! + pid];
  if (verdict !== Verdict.Ok) {
    if (verdict === Verdict.UserTypeRestricted) {
      if (p) trace!.push({ rule: 'user type', passed: false, detail: `${CATALOG[pid]!.name} can be assigned only to ${CATALOG[pid]!.userTypes.join(' and ')} user types; ${p.id} is ${USER_TYPES[p.userType]}` });
      return DENY.USER_TYPE_RESTRICTED;
    }
    if (verdict === Verdict.NotGranted) {
      if (p) trace!.push({ rule: 'grant', passed: false, detail: `${grantSource(p)} does not grant ${CATALOG[pid]!.name}` });
      return DENY.NOT_GRANTED;
    }
    if (p) {
      const trace_ = trace!;
      trace_.push({ rule: 'grant', passed: true, detail: `${grantSource(p)} grants ${CATALOG[pid]!.name}` });
      trace_.push({ rule: 'modules', passed: false, detail: `${CATALOG[pid]!.name} needs ${modulesNeeded(pid, p.userType)}; active: ${index.modules.join(', ') || 'none'}` });
    }
    return DENY.MODULE_INACTIVE;
  }
  if (trace && p) {
    trace.push({ rule: 'grant', passed: true, detail: `${grantSource(p)} grants ${CATALOG[pid]!.name}` });
    trace.push({ rule: 'modules', passed: true, detail: `available with active modules ${index.modules.join(', ') || '(none needed)'}` });
  }

  if (pid === index.registerThingId) {
    if (!index.privileged) {
      if (trace) trace.push({ rule: 'gateway role', passed: false, detail: 'REGISTER_THING needs a privileged gateway; this one is standard' });
      return DENY.GATEWAY_SCOPE;
    }
    if (thing === undefined || thingNumber(index, thing) < 0) {
      if (trace) trace.push({ rule: 'gateway role', passed: true, detail: 'privileged gateway may register new things' });
      return ALLOW;
    }
  }
  if (thing === undefined) {
    if (trace) trace.push({ rule: 'scope', passed: true, detail: 'no thing named: tenant-level action' });
    return ALLOW;
  }
  const t = index.ids.get(thing);
  if (t === undefined || t >= index.thingCount) {
    if (trace) trace.push({ rule: 'thing', passed: false, detail: `${thing} is not in snapshot version ${index.version}` });
    return DENY.UNKNOWN_THING;
  }
  if (index.thingServed[t] === 0) {
    if (trace) trace.push({ rule: 'gateway scope', passed: false, detail: `standard gateway ${index.gatewayId} serves resource groups ${index.resourceGroups.join(', ') || '(none)'}; ${thing} is outside them` });
    return DENY.GATEWAY_SCOPE;
  }
  if (trace) trace.push({ rule: 'gateway scope', passed: true, detail: index.privileged ? 'privileged gateway serves every thing' : `${thing} is in one of the gateway's resource groups` });

  if (isInScope(index, n, t)) {
    if (p) trace!.push({ rule: 'scope', passed: true, detail: `${thing} is within ${p.scopeBasis}` });
    return ALLOW;
  }
  // READ_ALL_THINGS widens read scope to the whole tenant, nothing else.
  if (index.pWidensReads[n] === 1 && CATALOG[pid]!.access === 'read') {
    if (p) trace!.push({ rule: 'scope', passed: true, detail: `${thing} is outside ${p.scopeBasis}, but READ_ALL_THINGS widens reads to the whole tenant` });
    return ALLOW;
  }
  if (p) trace!.push({ rule: 'scope', passed: false, detail: `${thing} (customer ${index.customerIds[index.thingCustomer[t]!] ?? '?'}) is outside ${p.scopeBasis}` });
  return DENY.OUT_OF_SCOPE;
}

/** Whether thing number `t` is in the scope of principal number `n`. */
function isInScope(index: PolicyIndex, n: number, t: number): boolean {
  switch (index.pScopeKind[n]) {
    case ScopeKind.All:
      return true;
    case ScopeKind.Self:
      return index.pScopeArg[n] === t;
    case ScopeKind.Customer:
      return index.pScopeArg[n] === index.thingCustomer[t];
    case ScopeKind.CustomerMask:
      return index.records[n]!.scopeMask![index.thingCustomer[t]!] === 1;
    case ScopeKind.Sets: {
      const s = index.records[n]!.scopeSets!;
      return s.things.has(t) || s.customers.has(index.thingCustomer[t]!) || s.locations.has(index.thingLocation[t]!);
    }
    default:
      return false;
  }
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
export function referenceExplain(index: PolicyIndex | null, principalId: string, permission: string, thing: string | undefined, now: number): { decision: Decision; steps: Trace } {
  const steps: Trace = [];
  const decision = referenceDecide(index, principalId, permission, thing, now, steps);
  return { decision, steps };
}
