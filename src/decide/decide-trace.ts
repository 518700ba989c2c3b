// decide() and decideById() with a trace: each rule the decision passes or fails is recorded, for
// `explain` and `explain --topic`. The same rules, in the same order, as the untraced path in
// ./decide.ts, which the broker runs and which is kept free of the trace's branches;
// test/unit/decide-equivalence.test.ts checks that the two (and a reference) agree on every
// reason over many generated questions.
import { CATALOG, permissionId, requiredModulesFor, USER_TYPES } from '../catalog/index.js';
import { ALLOW, DENY, type Decision } from './reasons.js';
import { PrincipalKind, PRINCIPAL_KIND_NAMES, Verdict, recordOf, thingNumber, type PolicyIndex, type PrincipalRecord } from './policy-index.js';
import { isInScope } from './scope.js';

export interface TraceStep {
  readonly rule: string;
  readonly passed: boolean;
  readonly detail: string;
}
export type Trace = TraceStep[];

/** decide with every rule recorded in `trace`. */
export function decideTraced(index: PolicyIndex | null | undefined, principalId: string, permission: string, thing: string | undefined, now: number, trace: Trace): Decision {
  if (!index) {
    trace.push({ rule: 'snapshot', passed: false, detail: 'no valid snapshot is held' });
    return DENY.NO_SNAPSHOT;
  }
  const rawId = permissionId(permission);
  if (rawId < 0) {
    trace.push({ rule: 'permission', passed: false, detail: `${permission} is not in the catalog` });
    return DENY.UNKNOWN_PERMISSION;
  }
  const pid = index.canonical[rawId]!;
  trace.push({ rule: 'permission', passed: true, detail: pid === rawId ? `${permission} is in the catalog` : `legacy ${permission} maps to ${CATALOG[pid]!.name}` });
  return decideByIdTraced(index, principalId, pid, thing, now, trace);
}

/** decideById with every rule recorded in `trace`. */
export function decideByIdTraced(index: PolicyIndex, principalId: string, pid: number, thing: string | undefined, now: number, trace: Trace): Decision {
  const n = index.ids.get(principalId);
  if (n === undefined) {
    trace.push({ rule: 'principal', passed: false, detail: `${principalId} is not in snapshot version ${index.version}` });
    return DENY.UNKNOWN_PRINCIPAL;
  }
  // Only explain reads the record; decisions read the typed arrays.
  const p = recordOf(index, n);
  if (p) trace.push({ rule: 'principal', passed: true, detail: describePrincipal(p) });
  if (index.pRevoked[n] === 1) {
    if (p) trace.push({ rule: 'revocation', passed: false, detail: `${p.id} is revoked in snapshot version ${index.version}` });
    return DENY.REVOKED;
  }

  if (now >= index.expiresAt && index.expiredMode !== 'enforce') {
    const isRead = CATALOG[pid]!.access === 'read';
    if (index.expiredMode === 'deny-all' || !isRead) {
      trace.push({ rule: 'expiry', passed: false, detail: `snapshot expired at ${new Date(index.expiresAt).toISOString()}; expired mode ${index.expiredMode} denies ${isRead ? 'reads' : 'writes and commands'}` });
      return DENY.SNAPSHOT_EXPIRED;
    }
    trace.push({ rule: 'expiry', passed: true, detail: 'snapshot expired, but expired mode read-only keeps READ_* flowing' });
  } else trace.push({ rule: 'expiry', passed: true, detail: `snapshot valid until ${new Date(index.expiresAt).toISOString()}` });

  const verdict = index.verdictTable[index.pVerdictRow[n]! + pid];
  if (verdict !== Verdict.Ok) {
    if (verdict === Verdict.UserTypeRestricted) {
      if (p) trace.push({ rule: 'user type', passed: false, detail: `${CATALOG[pid]!.name} can be assigned only to ${CATALOG[pid]!.userTypes.join(' and ')} user types; ${p.id} is ${USER_TYPES[p.userType]}` });
      return DENY.USER_TYPE_RESTRICTED;
    }
    if (verdict === Verdict.NotGranted) {
      if (p) trace.push({ rule: 'grant', passed: false, detail: `${grantSource(p)} does not grant ${CATALOG[pid]!.name}` });
      return DENY.NOT_GRANTED;
    }
    if (p) {
      trace.push({ rule: 'grant', passed: true, detail: `${grantSource(p)} grants ${CATALOG[pid]!.name}` });
      trace.push({ rule: 'modules', passed: false, detail: `${CATALOG[pid]!.name} needs ${modulesNeeded(pid, p.userType)}; active: ${index.modules.join(', ') || 'none'}` });
    }
    return DENY.MODULE_INACTIVE;
  }
  if (p) {
    trace.push({ rule: 'grant', passed: true, detail: `${grantSource(p)} grants ${CATALOG[pid]!.name}` });
    trace.push({ rule: 'modules', passed: true, detail: `available with active modules ${index.modules.join(', ') || '(none needed)'}` });
  }

  if (pid === index.registerThingId) {
    if (!index.privileged) {
      trace.push({ rule: 'gateway role', passed: false, detail: 'REGISTER_THING needs a privileged gateway; this one is standard' });
      return DENY.GATEWAY_SCOPE;
    }
    if (thing === undefined || thingNumber(index, thing) < 0) {
      trace.push({ rule: 'gateway role', passed: true, detail: 'privileged gateway may register new things' });
      return ALLOW;
    }
  }
  if (thing === undefined) {
    trace.push({ rule: 'scope', passed: true, detail: 'no thing named: tenant-level action' });
    return ALLOW;
  }
  const t = index.ids.get(thing);
  if (t === undefined || t >= index.thingCount) {
    trace.push({ rule: 'thing', passed: false, detail: `${thing} is not in snapshot version ${index.version}` });
    return DENY.UNKNOWN_THING;
  }
  if (index.thingServed[t] === 0) {
    trace.push({ rule: 'gateway scope', passed: false, detail: `standard gateway ${index.gatewayId} serves resource groups ${index.resourceGroups.join(', ') || '(none)'}; ${thing} is outside them` });
    return DENY.GATEWAY_SCOPE;
  }
  trace.push({ rule: 'gateway scope', passed: true, detail: index.privileged ? 'privileged gateway serves every thing' : `${thing} is in one of the gateway's resource groups` });

  if (isInScope(index, n, t)) {
    if (p) trace.push({ rule: 'scope', passed: true, detail: `${thing} is within ${p.scopeBasis}` });
    return ALLOW;
  }
  // READ_ALL_THINGS widens read scope to the whole tenant, nothing else.
  if (index.pWidensReads[n] === 1 && CATALOG[pid]!.access === 'read') {
    if (p) trace.push({ rule: 'scope', passed: true, detail: `${thing} is outside ${p.scopeBasis}, but READ_ALL_THINGS widens reads to the whole tenant` });
    return ALLOW;
  }
  if (p) trace.push({ rule: 'scope', passed: false, detail: `${thing} (customer ${index.customerIds[index.thingCustomer[t]!] ?? '?'}) is outside ${p.scopeBasis}` });
  return DENY.OUT_OF_SCOPE;
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
