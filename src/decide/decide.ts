// decide(index, principal, permission, thing?, now) -> allow | deny(reason).
// Pure and allocation-free: at most two Map look-ups (the principal, the thing), typed-array reads
// and shared frozen results. The permission name is found without a Map (./permission-table.ts),
// scopes are read from the index's typed-array tables (./scope.ts). With a trace (explain), the
// same rules run in ./decide-trace.ts, which records each; this file holds the untraced path the
// broker and the bench run, kept free of the trace's branches and of the principal records.
import { ALLOW, DENY, type Decision } from './reasons.js';
import { Verdict, type PolicyIndex } from './policy-index.js';
import { decideByIdTraced, decideTraced, type Trace } from './decide-trace.js';
import { PERMISSION_IS_READ, permissionIdOf } from './permission-table.js';
import { isInScope } from './scope.js';

export type { Trace, TraceStep } from './decide-trace.js';
export { isInScope } from './scope.js';

// The results, bound once (module constants, not property loads per decision).
const NO_SNAPSHOT = DENY.NO_SNAPSHOT;
const UNKNOWN_PERMISSION = DENY.UNKNOWN_PERMISSION;
const UNKNOWN_PRINCIPAL = DENY.UNKNOWN_PRINCIPAL;
const REVOKED = DENY.REVOKED;
const SNAPSHOT_EXPIRED = DENY.SNAPSHOT_EXPIRED;
const USER_TYPE_RESTRICTED = DENY.USER_TYPE_RESTRICTED;
const NOT_GRANTED = DENY.NOT_GRANTED;
const MODULE_INACTIVE = DENY.MODULE_INACTIVE;
const UNKNOWN_THING = DENY.UNKNOWN_THING;
const GATEWAY_SCOPE = DENY.GATEWAY_SCOPE;
const OUT_OF_SCOPE = DENY.OUT_OF_SCOPE;

/**
 * `now` is the effective time (the time floor: the highest of the system clock, the newest
 * issuedAt seen and the last persisted time), in ms since the epoch. With `trace`, each rule is
 * recorded (explain); the decision is the same.
 */
export function decide(
  index: PolicyIndex | null | undefined,
  principalId: string,
  permission: string,
  thing: string | undefined,
  now: number,
  trace?: Trace,
): Decision {
  if (trace !== undefined) return decideTraced(index, principalId, permission, thing, now, trace);
  if (!index) return NO_SNAPSHOT;
  const rawId = permissionIdOf(permission);
  if (rawId < 0) return UNKNOWN_PERMISSION;
  return decideUntraced(index, principalId, index.canonical[rawId]!, thing, now);
}

/**
 * The same decision with the permission already resolved to its canonical catalog id
 * (`index.canonical[permissionId(name)]`), for callers that resolve names once (the topic map).
 */
export function decideById(index: PolicyIndex, principalId: string, pid: number, thing: string | undefined, now: number, trace?: Trace): Decision {
  if (trace !== undefined) return decideByIdTraced(index, principalId, pid, thing, now, trace);
  return decideUntraced(index, principalId, pid, thing, now);
}

/** The rules, in decide-trace.ts' order, without a trace. */
function decideUntraced(index: PolicyIndex, principalId: string, pid: number, thing: string | undefined, now: number): Decision {
  const ids = index.ids;
  const n = ids.get(principalId);
  if (n === undefined) return UNKNOWN_PRINCIPAL;
  if (index.pRevoked[n] === 1) return REVOKED;
  if (now >= index.expiresAt && index.expiredMode !== 'enforce' && (index.expiredMode === 'deny-all' || PERMISSION_IS_READ[pid] === 0)) return SNAPSHOT_EXPIRED;

  const verdict = index.verdictTable[index.pVerdictRow[n]! + pid];
  if (verdict !== Verdict.Ok) {
    if (verdict === Verdict.UserTypeRestricted) return USER_TYPE_RESTRICTED;
    if (verdict === Verdict.NotGranted) return NOT_GRANTED;
    return MODULE_INACTIVE;
  }

  if (pid === index.registerThingId) {
    if (!index.privileged) return GATEWAY_SCOPE;
    if (thing === undefined) return ALLOW;
    const r = ids.get(thing);
    if (r === undefined || r >= index.thingCount) return ALLOW;
  }
  if (thing === undefined) return ALLOW;
  const t = ids.get(thing);
  if (t === undefined || t >= index.thingCount) return UNKNOWN_THING;
  if (index.thingServed[t] === 0) return GATEWAY_SCOPE;

  if (isInScope(index, n, t)) return ALLOW;
  // READ_ALL_THINGS widens read scope to the whole tenant, nothing else.
  if (index.pWidensReads[n] === 1 && PERMISSION_IS_READ[pid] === 1) return ALLOW;
  return OUT_OF_SCOPE;
}

/** The decision and every rule that led to it. */
export function explain(index: PolicyIndex | null, principalId: string, permission: string, thing: string | undefined, now: number): { decision: Decision; steps: Trace } {
  const steps: Trace = [];
  const decision = decideTraced(index, principalId, permission, thing, now, steps);
  return { decision, steps };
}
