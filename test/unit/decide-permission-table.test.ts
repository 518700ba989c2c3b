// decide()'s permission table (src/decide/permission-table.ts) answers as the catalog's Map: the id
// of every catalog name, however the string was made, and -1 for anything else.
import t from 'tap';
import { CATALOG, permissionId } from '../../src/catalog/index.js';
import { PERMISSION_IS_READ, permissionIdOf, permissionTableProbes } from '../../src/decide/permission-table.js';

/** The same characters as a different string object: flat, sliced, concatenated. */
const forms = (s: string): string[] => [s, Buffer.from(s, 'utf8').toString('utf8'), `__${s}__`.slice(2, 2 + s.length), s.slice(0, 3) + s.slice(3)];

t.test('every catalog name, legacy ones included, in any string form', async (t) => {
  let checked = 0;
  for (const e of CATALOG) {
    for (const f of forms(e.name)) {
      if (permissionIdOf(f) !== e.id) t.fail(`${e.name}: ${permissionIdOf(f)}, expected ${e.id}`);
      checked++;
    }
  }
  t.equal(checked, CATALOG.length * 4, `${CATALOG.length} names, 4 forms each`);
  t.equal(permissionIdOf('WRITE_DATA'), permissionId('WRITE_DATA'), 'the legacy name has its own id (decide maps it to its successor through index.canonical)');
});

t.test('anything else is -1, as the catalog says', async (t) => {
  const others = ['', 'X', 'read_thing', 'READ_THING ', ' READ_THING', 'READ_THINGS', 'READ_THIN', 'READ_THING\u0000', 'A'.repeat(200), '\ud800', '\udfff\ud800', 'ÉXECUTE_THING_COMMAND', 'READ_THİNG'];
  // Near misses of every name: one character changed, one dropped, one added, the case changed.
  for (const e of CATALOG) {
    const n = e.name;
    others.push(n.slice(1), n.slice(0, -1), n + '_', '_' + n, n.toLowerCase(), n.slice(0, -1) + String.fromCharCode(n.charCodeAt(n.length - 1) + 1));
    others.push(n.slice(0, n.length >> 1) + 'X' + n.slice((n.length >> 1) + 1));
  }
  let unknown = 0;
  for (const s of others) {
    const expected = permissionId(s);
    if (permissionIdOf(s) !== expected) t.fail(`${JSON.stringify(s)}: ${permissionIdOf(s)}, expected ${expected}`);
    if (expected < 0) unknown++;
  }
  t.ok(unknown > CATALOG.length * 5, `${others.length} other strings (${unknown} not in the catalog) answered as the catalog`);
});

t.test('the table is well spread (a bad spread would be slow, not wrong) and PERMISSION_IS_READ is the catalog access', async (t) => {
  const probes = permissionTableProbes();
  t.ok(probes <= CATALOG.length * 1.25, `${probes} comparisons for ${CATALOG.length} names`);
  for (const e of CATALOG) if (PERMISSION_IS_READ[e.id] !== (e.access === 'read' ? 1 : 0)) t.fail(`${e.name}: PERMISSION_IS_READ ${PERMISSION_IS_READ[e.id]}`);
  t.equal(PERMISSION_IS_READ.length, CATALOG.length);
});
