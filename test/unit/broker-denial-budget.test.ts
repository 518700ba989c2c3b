import t from 'tap';
import type { AuditRecord } from '../../src/audit/audit-log.js';
import { DenialBudget } from '../../src/broker/denial-budget.js';

const deny = (topic: string, reason = 'NOT_GRANTED', action = 'EXECUTE_THING_COMMAND'): AuditRecord => ({ principal: 'carl', clientId: 'c1', action, topic, thing: 'oven-1', decision: 'deny', reason, snapshotVersion: 3 });

function setup(perSecond = 3) {
  let now = 1_000_000;
  const written: AuditRecord[] = [];
  const budget = new DenialBudget((r) => written.push(r), perSecond, () => now);
  return { budget, written, advance: (ms: number) => (now += ms) };
}

t.test('within the budget every denial is its own line', async (t) => {
  const { budget, written } = setup();
  const w = DenialBudget.window();
  for (let i = 0; i < 3; i++) budget.record(w, deny(`a/${i}`));
  t.same(written.map((r) => r.topic), ['a/0', 'a/1', 'a/2']);
  budget.stop();
});

t.test('past the budget, denials are tallied per action and reason and written when the second ends', async (t) => {
  const { budget, written, advance } = setup();
  const w = DenialBudget.window();
  for (let i = 0; i < 10; i++) budget.record(w, deny(`a/${i}`));
  budget.record(w, deny('b', 'TOPIC_DENIED', 'publish'));
  t.equal(written.length, 3, 'only the budget is written at once');
  budget.sweep();
  t.equal(written.length, 3, 'not before the second is over');
  advance(1000);
  budget.sweep();
  t.same(written.slice(3), [
    { ...deny('*'), thing: null, count: 7 },
    { ...deny('*', 'TOPIC_DENIED', 'publish'), thing: null, count: 1 },
  ]);
  // A new second: the budget again.
  budget.record(w, deny('c'));
  t.equal(written.at(-1)!.topic, 'c');
  budget.stop();
});

t.test('a client going away writes its tally at once; stop() writes all', async (t) => {
  const { budget, written } = setup(1);
  const a = DenialBudget.window();
  const b = DenialBudget.window();
  for (let i = 0; i < 5; i++) budget.record(a, deny(`a/${i}`));
  for (let i = 0; i < 3; i++) budget.record(b, { ...deny(`b/${i}`), clientId: 'c2' });
  budget.close(a);
  t.same(written.map((r) => [r.clientId, r.topic, r.count ?? 1]), [['c1', 'a/0', 1], ['c2', 'b/0', 1], ['c1', '*', 4]]);
  budget.stop();
  t.same(written.at(-1), { ...deny('*'), clientId: 'c2', thing: null, count: 2 });
  budget.close(a);
  t.equal(written.length, 4, 'nothing twice');
});

t.test('a coalesced record brings its count', async (t) => {
  const { budget, written, advance } = setup(0);
  const w = DenialBudget.window();
  budget.record(w, { ...deny('x'), count: 5 });
  budget.record(w, deny('y'));
  advance(1500);
  budget.sweep();
  t.equal(written[0]!.count, 6);
  budget.stop();
});
