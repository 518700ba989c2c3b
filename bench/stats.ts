// Small pure statistics shared by the bench's sections (unit-tested in test/unit/bench-vs-bare.test.ts).

/** The median; NaN for an empty list. An even count gives the mean of the two middle values. */
export const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length === 0 ? NaN : s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** `a ÷ b`; NaN when either is not a finite number or b is 0 (a ratio of nothing says nothing). */
export const ratio = (a: number, b: number): number => (Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? a / b : NaN);
