// Permission name -> catalog id for decide(), without a Map look-up, and the per-permission facts
// the decision path reads, as typed arrays indexed by id.
//
// A name is hashed from its length and four of its characters (no loop over the string) into an
// open-addressed table of the catalog's names, then confirmed with `===`: an unknown name (any
// string at all) ends on an empty slot or fails every comparison, so the answer is exactly
// `permissionId(name)`. test/unit/decide-permission-table.test.ts checks that over the catalog and
// over strings that are not in it. Built once, when the module loads.
import { CATALOG, PERMISSION_COUNT } from '../catalog/index.js';

const BITS = 10;
const SIZE = 1 << BITS;

/** The catalog's names by slot (undefined: empty), and their ids. */
if (CATALOG.length * 2 > SIZE) throw new Error(`permission table: ${CATALOG.length} names need more than ${SIZE} slots`);
const NAMES: (string | undefined)[] = [];
for (let i = 0; i < SIZE; i++) NAMES.push(undefined);
const IDS = new Int16Array(SIZE).fill(-1);

function hashWith(s: string, n: number, multiplier: number): number {
  // n >= 1: every position read is inside the string.
  const mix = n ^ (s.charCodeAt(n - 1) << 7) ^ (s.charCodeAt(n >> 1) << 14) ^ (s.charCodeAt((n * 3) >> 2) << 21) ^ (s.charCodeAt(n >> 2) << 3);
  return Math.imul(mix, multiplier) >>> (32 - BITS);
}

/**
 * The multiplier (of a few fixed odd candidates) that spreads the catalog's names best: the fewest
 * probes in all. Deterministic; any multiplier gives right answers, this one only fewer comparisons.
 */
function chooseMultiplier(): number {
  let best = 0x9e3779b1;
  let bestProbes = Infinity;
  for (let k = 0; k < 64; k++) {
    const m = (Math.imul(k + 1, 0x9e3779b1) ^ 0x85ebca6b) | 1;
    const used = new Uint8Array(SIZE);
    let probes = 0;
    for (const e of CATALOG) {
      let slot = hashWith(e.name, e.name.length, m);
      probes++;
      while (used[slot] === 1) {
        slot = (slot + 1) & (SIZE - 1);
        probes++;
      }
      used[slot] = 1;
    }
    if (probes < bestProbes) {
      bestProbes = probes;
      best = m;
    }
  }
  return best;
}

/**
 * The same string, as V8 keeps property names (one copy per content, "internalized"). String
 * literals, such as the topic map's and the callers' permission names, are internalized too, so a
 * hit compares two pointers rather than two strings' characters (~15 ns less per decision). An
 * engine that did not do this would still compare equal strings as equal: only the speed differs.
 */
function internalized(s: string): string {
  return Object.keys({ [s]: 0 })[0]!;
}

const MULTIPLIER = chooseMultiplier();
let maxLength = 0;
for (const e of CATALOG) {
  let slot = hashWith(e.name, e.name.length, MULTIPLIER);
  while (NAMES[slot] !== undefined) slot = (slot + 1) & (SIZE - 1);
  NAMES[slot] = internalized(e.name);
  IDS[slot] = e.id;
  maxLength = Math.max(maxLength, e.name.length);
}
const MAX_LENGTH = maxLength;

/** The catalog id of a permission name, exact and case-sensitive; -1 if unknown. Same answer as catalog's permissionId. */
export function permissionIdOf(name: string): number {
  const n = name.length;
  if (n === 0 || n > MAX_LENGTH) return -1;
  let slot = hashWith(name, n, MULTIPLIER);
  for (;;) {
    const candidate = NAMES[slot];
    if (candidate === undefined) return -1;
    if (candidate === name) return IDS[slot]!;
    slot = (slot + 1) & (SIZE - 1);
  }
}

/** PERMISSION_IS_READ[id] === 1 when the permission's access is 'read'. */
export const PERMISSION_IS_READ: Uint8Array = new Uint8Array(PERMISSION_COUNT);
for (const e of CATALOG) PERMISSION_IS_READ[e.id] = e.access === 'read' ? 1 : 0;

/** How many comparisons the names take in all (for the test: a bad spread is slow, not wrong). */
export function permissionTableProbes(): number {
  let probes = 0;
  for (const e of CATALOG) {
    let slot = hashWith(e.name, e.name.length, MULTIPLIER);
    probes++;
    while (NAMES[slot] !== e.name) {
      slot = (slot + 1) & (SIZE - 1);
      probes++;
    }
  }
  return probes;
}
