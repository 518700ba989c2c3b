// Whether a thing is in a principal's scope, from the index's typed arrays only (no record, no Set):
// the decision path and explain's trace both ask here, and snapshot diff for its lists of things.
import { ScopeKind, type PolicyIndex } from './policy-index.js';

/** Whether thing number `t` is in the scope of principal number `n`. */
export function isInScope(index: PolicyIndex, n: number, t: number): boolean {
  switch (index.pScopeKind[n]) {
    case ScopeKind.All:
      return true;
    case ScopeKind.Self:
      return index.pScopeArg[n] === t;
    case ScopeKind.Customer:
      return index.pScopeArg[n] === index.thingCustomer[t];
    case ScopeKind.CustomerMask: {
      // A thing of a customer the snapshot does not list (-1) is in no partner's scope.
      const c = index.thingCustomer[t]!;
      return c >= 0 && index.scopeMasks[index.pScopeArg[n]! + c] === 1;
    }
    case ScopeKind.Sets: {
      const b = index.scopeSetBounds;
      const members = index.scopeSetMembers;
      const at = index.pScopeArg[n]!;
      return (
        hasSorted(members, b[at]!, b[at + 1]!, t) ||
        hasSorted(members, b[at + 2]!, b[at + 3]!, index.thingCustomer[t]!) ||
        hasSorted(members, b[at + 4]!, b[at + 5]!, index.thingLocation[t]!)
      );
    }
    default:
      return false;
  }
}

/** Whether sorted `a[from, to)` holds `v` (binary search). */
function hasSorted(a: Int32Array, from: number, to: number, v: number): boolean {
  let lo = from;
  let hi = to;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const x = a[mid]!;
    if (x === v) return true;
    if (x < v) lo = mid + 1;
    else hi = mid;
  }
  return false;
}
