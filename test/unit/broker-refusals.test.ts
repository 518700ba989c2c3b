// Refused connections coalesced per source and reason; attacker-supplied fields cut short.
import t from 'tap';
import { FIELD_CHARS, RefusalCoalescer, truncateField } from '../../src/broker/refusals.js';

t.test('the first refusal per source and reason is recorded, the rest counted until the interval ends', async (t) => {
  const c = new RefusalCoalescer(3);
  t.equal(c.first('10.0.0.7', 'BAD_CREDENTIALS'), true);
  for (let i = 0; i < 1000; i++) t.equal(c.first('10.0.0.7', 'BAD_CREDENTIALS'), false);
  t.equal(c.first('10.0.0.7', 'ANONYMOUS_REFUSED'), true, 'another reason is another record');
  t.equal(c.first('10.0.0.8', 'BAD_CREDENTIALS'), true, 'another source too');
  t.equal(c.first('10.0.0.9', 'BAD_CREDENTIALS'), false, 'past the sources told apart: counted under *');
  t.equal(c.first('10.0.0.10', 'BAD_CREDENTIALS'), false);
  t.same(c.flush(), [
    { remote: '10.0.0.7', reason: 'BAD_CREDENTIALS', count: 1000 },
    { remote: '*', reason: 'BAD_CREDENTIALS', count: 2 },
  ]);
  t.equal(c.first('10.0.0.7', 'BAD_CREDENTIALS'), true, 'a new interval records the first again');
  t.same(c.flush(), [], 'nothing only counted');
});

t.test('attacker-supplied fields are cut short', async (t) => {
  t.equal(truncateField('x'.repeat(250))!.length, FIELD_CHARS);
  t.equal(truncateField('pump-7'), 'pump-7');
  t.equal(truncateField(undefined), null);
});

t.test('perKey: the first N of a key pass in each interval, the rest are counted', async (t) => {
  const c = new RefusalCoalescer(8, 3);
  const passed = Array.from({ length: 20 }, () => c.first('pump-7', 'connect')).filter(Boolean).length;
  t.equal(passed, 3, 'three pass');
  t.same(c.flush(), [{ remote: 'pump-7', reason: 'connect', count: 17 }], 'seventeen counted');
  t.equal(c.first('pump-7', 'connect'), true, 'a new interval passes again');
});
