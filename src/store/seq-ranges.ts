// Sets of sequence numbers kept as sorted, disjoint, inclusive ranges [from, to]: the outbox's gaps
// (seqs no record has) and the seqs it counted as lost to damage. Ranges, not sets of numbers: one
// damaged segment can take tens of thousands of seqs. The lists stay short (one range per damaged
// stretch), so a linear walk is enough.

export type SeqRange = [from: number, to: number];

/** Adds [from, to], merged with the ranges it overlaps or touches. */
export function addRange(ranges: SeqRange[], from: number, to: number): void {
  if (to < from) return;
  let i = 0;
  while (i < ranges.length && ranges[i]![1] < from - 1) i++;
  let j = i;
  for (; j < ranges.length && ranges[j]![0] <= to + 1; j++) {
    from = Math.min(from, ranges[j]![0]);
    to = Math.max(to, ranges[j]![1]);
  }
  ranges.splice(i, j - i, [from, to]);
}

/** How many seqs of [from, to] the ranges hold. */
export function countIn(ranges: readonly SeqRange[], from: number, to: number): number {
  let n = 0;
  for (const [a, b] of ranges) {
    const overlap = Math.min(b, to) - Math.max(a, from) + 1;
    if (overlap > 0) n += overlap;
  }
  return n;
}

export function holds(ranges: readonly SeqRange[], seq: number): boolean {
  for (const [a, b] of ranges) if (seq >= a && seq <= b) return true;
  return false;
}

/** Removes every seq <= floor. */
export function dropThrough(ranges: SeqRange[], floor: number): void {
  let k = 0;
  while (k < ranges.length && ranges[k]![1] <= floor) k++;
  ranges.splice(0, k);
  if (ranges.length > 0 && ranges[0]![0] <= floor) ranges[0] = [floor + 1, ranges[0]![1]];
}
