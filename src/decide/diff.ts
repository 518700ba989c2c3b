// Which principal gains or loses which permission on which things between two snapshots.
// Pure; built from the same indexes and the same rules as `decide`.
import { CATALOG, PERMISSION_COUNT } from '../catalog/index.js';
import { isInScope } from './scope.js';
import { PRINCIPAL_KIND_NAMES, Verdict, principalOf, type PolicyIndex, type PrincipalRecord } from './policy-index.js';

export interface PermissionChange {
  readonly principal: string;
  readonly kind: string;
  readonly change: 'gains' | 'loses';
  readonly permission: string;
  /** Thing ids, or null when the permission is tenant-level (no thing involved). */
  readonly things: readonly string[];
}

export interface SnapshotDiff {
  readonly from: { version: number; expiresAt: number };
  readonly to: { version: number; expiresAt: number };
  readonly principalsAdded: readonly string[];
  readonly principalsRemoved: readonly string[];
  readonly revoked: readonly string[];
  readonly reinstated: readonly string[];
  readonly thingsAdded: readonly string[];
  readonly thingsRemoved: readonly string[];
  readonly changes: readonly PermissionChange[];
}

/** The permissions a principal effectively holds: granted, assignable and available. */
function effective(index: PolicyIndex, p: PrincipalRecord | undefined): Set<number> {
  const out = new Set<number>();
  if (!p || p.revoked) return out;
  for (let pid = 0; pid < PERMISSION_COUNT; pid++) {
    if (index.canonical[pid] === pid && p.verdict[pid] === Verdict.Ok) out.add(pid);
  }
  return out;
}

/** Things the principal may act on for a read (widened) or a write. */
function thingsInScope(index: PolicyIndex, p: PrincipalRecord | undefined, read: boolean): Set<string> {
  const n = p ? index.ids.get(p.id) : undefined;
  const out = new Set<string>();
  if (!p || p.revoked || n === undefined) return out;
  const widened = read && p.widensReads;
  for (let t = 0; t < index.thingIds.length; t++) {
    if (index.thingServed[t] !== 1) continue;
    if (widened || isInScope(index, n, t)) out.add(index.thingIds[t]!);
  }
  return out;
}

export function diffSnapshots(a: PolicyIndex, b: PolicyIndex): SnapshotDiff {
  const ids = new Set<string>([...a.ids.keys(), ...b.ids.keys()]);
  const changes: PermissionChange[] = [];
  const principalsAdded: string[] = [];
  const principalsRemoved: string[] = [];
  const revoked: string[] = [];
  const reinstated: string[] = [];
  for (const id of [...ids].sort()) {
    const pa = principalOf(a, id);
    const pb = principalOf(b, id);
    if (!pa) principalsAdded.push(id);
    if (!pb) principalsRemoved.push(id);
    if (pa && pb && !pa.revoked && pb.revoked) revoked.push(id);
    if (pa && pb && pa.revoked && !pb.revoked) reinstated.push(id);
    const kind = PRINCIPAL_KIND_NAMES[(pb ?? pa)!.kind];
    const permsA = effective(a, pa);
    const permsB = effective(b, pb);
    const scope = new Map<string, Set<string>>();
    const things = (idx: PolicyIndex, p: PrincipalRecord | undefined, read: boolean, tag: string) => {
      const key = `${tag}:${read}`;
      let s = scope.get(key);
      if (!s) scope.set(key, (s = thingsInScope(idx, p, read)));
      return s;
    };
    for (let pid = 0; pid < PERMISSION_COUNT; pid++) {
      const inA = permsA.has(pid);
      const inB = permsB.has(pid);
      if (!inA && !inB) continue;
      const read = CATALOG[pid]!.access === 'read';
      const ta = inA ? things(a, pa, read, 'a') : new Set<string>();
      const tb = inB ? things(b, pb, read, 'b') : new Set<string>();
      const name = CATALOG[pid]!.name;
      if (inB && !inA) changes.push({ principal: id, kind, change: 'gains', permission: name, things: [...tb].sort() });
      else if (inA && !inB) changes.push({ principal: id, kind, change: 'loses', permission: name, things: [...ta].sort() });
      else {
        const gained = [...tb].filter((t) => !ta.has(t)).sort();
        const lost = [...ta].filter((t) => !tb.has(t)).sort();
        if (gained.length) changes.push({ principal: id, kind, change: 'gains', permission: name, things: gained });
        if (lost.length) changes.push({ principal: id, kind, change: 'loses', permission: name, things: lost });
      }
    }
  }
  const thingsA = new Set(a.thingIds);
  const thingsB = new Set(b.thingIds);
  return {
    from: { version: a.version, expiresAt: a.expiresAt },
    to: { version: b.version, expiresAt: b.expiresAt },
    principalsAdded,
    principalsRemoved,
    revoked,
    reinstated,
    thingsAdded: b.thingIds.filter((t) => !thingsA.has(t)),
    thingsRemoved: a.thingIds.filter((t) => !thingsB.has(t)),
    changes,
  };
}
