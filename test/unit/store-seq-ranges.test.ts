import t from 'tap';
import { addRange, countIn, dropThrough, holds, type SeqRange } from '../../src/store/seq-ranges.js';

const built = (...adds: SeqRange[]): SeqRange[] => {
  const r: SeqRange[] = [];
  for (const [a, b] of adds) addRange(r, a, b);
  return r;
};

t.test('addRange keeps the ranges sorted, disjoint and merged', async (t) => {
  const cases: Array<[string, SeqRange[], SeqRange[]]> = [
    ['one', [[5, 7]], [[5, 7]]],
    ['an empty range is nothing', [[7, 5]], []],
    ['apart stay apart, sorted', [[20, 30], [5, 7]], [[5, 7], [20, 30]]],
    ['touching merge', [[5, 7], [8, 9]], [[5, 9]]],
    ['overlapping merge', [[5, 7], [6, 12]], [[5, 12]]],
    ['inside is absorbed', [[3, 12], [5, 5]], [[3, 12]]],
    ['one range spans several', [[5, 5], [7, 7], [20, 21], [3, 10]], [[3, 10], [20, 21]]],
  ];
  for (const [name, adds, want] of cases) t.same(built(...adds), want, name);
});

t.test('countIn, holds, dropThrough', async (t) => {
  const r = built([5, 5], [7, 9], [20, 29]);
  t.equal(countIn(r, 1, 100), 14);
  t.equal(countIn(r, 6, 8), 2);
  t.equal(countIn(r, 10, 19), 0);
  t.equal(countIn(r, 25, 40), 5);
  t.ok(holds(r, 8));
  t.notOk(holds(r, 6));
  dropThrough(r, 8);
  t.same(r, [[9, 9], [20, 29]], 'below the floor gone, the range across it clipped');
  dropThrough(r, 100);
  t.same(r, []);
});
