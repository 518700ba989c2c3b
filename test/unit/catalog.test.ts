// Checks src/catalog against the reference documents themselves: the fixture
// copies of the Servitly permission lists are parsed here by a small parser of
// this test's own (it does not read src/catalog/permissions.json), and every
// name, category, title, user-type rule, module rule and bundle flag must agree.

import t from 'tap';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  CATALOG,
  CATEGORIES,
  MODULES,
  PERMISSION_COUNT,
  USER_TYPES,
  isAssignableTo,
  isModuleIdValid,
  permissionByName,
  permissionId,
  requiredModulesFor,
  resolvePermissionName,
  type ModuleId,
  type PermissionEntry,
  type UserType,
} from '../../src/catalog/index.js';

const fixture = (f: string): string => readFileSync(fileURLToPath(new URL(`../fixtures/seeds/${f}`, import.meta.url)), 'utf8');
const CURRENT = fixture('002_d4c3182b4e0c5b50.txt');
const OLDER = fixture('001_0ccf746dac2fa40c.txt');

const ALL: readonly UserType[] = ['ORGANIZATION', 'PARTNER', 'CUSTOMER'];
const MODULE_BY_TITLE: Record<string, ModuleId> = {
  'Connected Field Service': 'CONNECTED_FIELD_SERVICE',
  'Value-added Digital Services': 'VALUE_ADDED_DIGITAL_SERVICES',
  'Spare Parts & Consumables': 'SPARE_PARTS_AND_CONSUMABLES',
};
const CFS: ModuleId = 'CONNECTED_FIELD_SERVICE';
const VADS: ModuleId = 'VALUE_ADDED_DIGITAL_SERVICES';
const SPC: ModuleId = 'SPARE_PARTS_AND_CONSUMABLES';

const sorted = <T extends string>(a: readonly T[]): T[] => [...a].sort();

// ---------------------------------------------------------------------------
// independent parser of the current list (002)

interface DocEntry {
  name: string;
  category: string;
  title: string;
  description: string;
  userTypes: UserType[];
  modules: ModuleId[];
  backOffice: ModuleId[];
  bundle: boolean;
}

function parseCurrent(text: string): { entries: DocEntry[]; headings: { name: string; note?: string }[] } {
  // normalise: paragraphs separated by exactly one blank line
  const norm = text
    .split(/\n[ \t]*\n+/)
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .join('\n\n');
  const entryRe =
    /(?<=^|\n\n)([^\n]+)\n\n([^\n]+)\n\n(?:This permission can be assigned only to ([A-Z]+(?: and [A-Z]+)*) user types\.\n\n)?API Name: ([A-Z_]+)((?:\n\n(?:The availability of this permission depends on the subscription bundle\.|Required modules: [^\n]+|This permission to be assigned to Back-office users requires the [^\n]+ module\.))*)(?=\n\n|$)/g;
  const entries: DocEntry[] = [];
  const headings: { name: string; note?: string }[] = [];
  let category = '';
  let last = 0;
  let first = true;
  for (const m of norm.matchAll(entryRe)) {
    const gap = norm.slice(last, m.index).split('\n\n').filter((s) => s !== '');
    if (first) {
      // the preamble ends with this sentence; what follows is the first heading
      const at = gap.indexOf('Here is the list of permissions grouped according to the topic they are intended for.');
      if (at < 0) throw new Error('preamble not found');
      gap.splice(0, at + 1);
      first = false;
    }
    if (gap.length > 0) {
      if (gap.length > 2) throw new Error(`unexpected text before ${m[4]}: ${JSON.stringify(gap)}`);
      category = gap[0]!;
      headings.push(gap.length === 2 ? { name: category, note: gap[1]! } : { name: category });
    }
    const tail = m[5] ?? '';
    const mods = /Required modules: ([^\n]+)/.exec(tail);
    const bo = /Back-office users requires the ([^\n]+) module\./.exec(tail);
    const title = (t: string): ModuleId => {
      const id = MODULE_BY_TITLE[t.trim()];
      if (id === undefined) throw new Error(`unknown module title ${t}`);
      return id;
    };
    entries.push({
      name: m[4]!,
      category,
      title: m[1]!,
      description: m[2]!,
      userTypes: m[3] === undefined ? [...ALL] : (m[3].split(' and ') as UserType[]),
      modules: mods ? mods[1]!.split(',').map(title) : [],
      backOffice: bo ? [title(bo[1]!)] : [],
      bundle: tail.includes('depends on the subscription bundle'),
    });
    last = m.index + m[0].length;
  }
  if (norm.slice(last).trim() !== '') throw new Error(`unparsed text at the end: ${norm.slice(last, last + 200)}`);
  return { entries, headings };
}

// the older list (001): "Category" line, then "PERMISSION | DESCRIPTION |" table rows
function parseOlder(text: string): Map<string, { category: string; description: string; userTypes: UserType[] }> {
  const lines = text.split('\n').map((l) => l.trim());
  const out = new Map<string, { category: string; description: string; userTypes: UserType[] }>();
  let category = '';
  lines.forEach((line, i) => {
    if (lines[i + 1] === 'PERMISSION | DESCRIPTION |') {
      category = line;
      return;
    }
    const row = /^([A-Z][A-Z0-9_]*) \| (.*) \|$/.exec(line);
    if (!row || row[1] === 'PERMISSION') return;
    let description = row[2]!;
    let userTypes: UserType[] = [...ALL];
    const only = / ?Applicable only to the user types of: ([A-Z, ]+)\.$/.exec(description);
    if (only) {
      userTypes = only[1]!.split(',').map((s) => s.trim()) as UserType[];
      description = description.slice(0, only.index);
    }
    out.set(row[1]!, { category, description, userTypes });
  });
  return out;
}

const doc = parseCurrent(CURRENT);
const older = parseOlder(OLDER);
const docNames = new Set(doc.entries.map((e) => e.name));
const olderOnly = [...older.keys()].filter((n) => !docNames.has(n)).sort();
const current = CATALOG.filter((e) => !e.legacy);
const legacy = CATALOG.filter((e) => e.legacy);

// ---------------------------------------------------------------------------

t.test('the fixture parses completely', async (t) => {
  t.equal((CURRENT.match(/API Name:/g) ?? []).length, 104, 'the document has 104 API names');
  t.equal(doc.entries.length, 104, 'the parser found every one of them');
  t.equal(docNames.size, 104, 'no name twice');
  t.ok(older.size > 70, `the older list parses (${older.size} names)`);
});

t.test('every API name of the document is in CATALOG with the same rules', async (t) => {
  for (const d of doc.entries) {
    const e = permissionByName(d.name);
    if (!e) {
      t.fail(`${d.name} missing from CATALOG`);
      continue;
    }
    t.same(
      {
        category: e.category,
        title: e.title,
        description: e.description,
        userTypes: sorted(e.userTypes),
        modules: sorted(e.modules),
        backOfficeModules: sorted(e.backOfficeModules),
        dependsOnBundle: e.dependsOnBundle,
        legacy: e.legacy,
      },
      {
        category: d.category,
        title: d.title,
        description: d.description,
        userTypes: sorted(d.userTypes),
        modules: sorted(d.modules),
        backOfficeModules: sorted(d.backOffice),
        dependsOnBundle: d.bundle,
        legacy: false,
      },
      d.name,
    );
  }
});

t.test('CATALOG has nothing current the document lacks, in document order', async (t) => {
  t.equal(current.length, 104, 'exactly 104 non-legacy entries');
  t.same(
    current.map((e) => e.name).filter((n) => !docNames.has(n)),
    [],
    'no non-legacy name outside the document',
  );
  t.same(
    current.map((e) => e.name),
    doc.entries.map((e) => e.name),
    'document order',
  );
  t.same(
    CATALOG.map((e) => e.legacy),
    [...current.map(() => false), ...legacy.map(() => true)],
    'legacy entries come last',
  );
  t.equal(PERMISSION_COUNT, CATALOG.length);
  t.equal(PERMISSION_COUNT, 104 + olderOnly.length);
});

t.test('categories', async (t) => {
  const docHeadings = doc.headings.map((h) => h.name);
  t.same(
    CATEGORIES.map((c) => c.name).slice(0, docHeadings.length),
    docHeadings,
    'the document headings, in order',
  );
  const thing = CATEGORIES.find((c) => c.name === 'Thing');
  t.equal(thing?.note, doc.headings.find((h) => h.name === 'Thing')?.note, 'the Thing note is kept verbatim');
  t.match(thing?.note, /Back-office user types only if the Connected Field Service module/);
  t.same(
    CATEGORIES.filter((c) => c.note !== undefined).map((c) => c.name),
    ['Thing'],
  );
  for (const e of CATALOG) t.ok(CATEGORIES.some((c) => c.name === e.category), `${e.name}: category ${e.category} listed`);
  // ...but the Thing note is not a rule
  for (const name of ['READ_THING', 'WRITE_THING', 'DELETE_THING', 'IMPORT_DATA', 'WRITE_SIM']) {
    const e = permissionByName(name)!;
    t.same(e.backOfficeModules, [], `${name}: no back-office module`);
    t.same(requiredModulesFor(e, 'ORGANIZATION'), [], `${name}: ORGANIZATION needs no module`);
  }
});

t.test('READ_HISTORICAL_DATA back-office rule', async (t) => {
  const e = permissionByName('READ_HISTORICAL_DATA')!;
  t.same(e.modules, []);
  t.same(e.backOfficeModules, [CFS]);
  t.equal(e.dependsOnBundle, true);
  t.same(requiredModulesFor(e, 'ORGANIZATION'), [CFS]);
  t.same(requiredModulesFor(e, 'PARTNER'), [CFS]);
  t.same(requiredModulesFor(e, 'CUSTOMER'), []);
  t.same(requiredModulesFor(e, undefined), []);
  t.same(
    CATALOG.filter((p) => p.backOfficeModules.length > 0).map((p) => p.name),
    ['READ_HISTORICAL_DATA'],
    'the only entry with back-office modules',
  );
});

t.test('legacy entries are exactly the names only the older list has', async (t) => {
  t.same(olderOnly, ['CUSTOMER_ACCOUNT_ADMINISTRATOR', 'READ_SERVICE', 'READ_SERVICE_SUBSCRIPTION', 'WRITE_DATA', 'WRITE_SERVICE_SUBSCRIPTION']);
  t.same(sorted(legacy.map((e) => e.name)), olderOnly);
  for (const e of legacy) {
    const o = older.get(e.name)!;
    t.equal(e.category, o.category, `${e.name} category`);
    t.equal(e.description, o.description, `${e.name} description`);
    t.same(sorted(e.userTypes), sorted(o.userTypes), `${e.name} user types`);
    t.same(e.modules, [], `${e.name} modules`);
    t.equal(e.successor, e.name === 'WRITE_DATA' ? 'IMPORT_DATA' : undefined, `${e.name} successor`);
  }
  t.same(permissionByName('CUSTOMER_ACCOUNT_ADMINISTRATOR')?.userTypes, ['CUSTOMER']);
  t.same(
    CATALOG.filter((e) => e.successor !== undefined).map((e) => [e.name, e.successor]),
    [['WRITE_DATA', 'IMPORT_DATA']],
  );
});

t.test('where the lists disagree, the current one stands', async (t) => {
  // 001 says ORGANIZATION, PARTNER; 002 says ORGANIZATION only
  t.same(older.get('WRITE_CLOUD_STATUS')?.userTypes, ['ORGANIZATION', 'PARTNER']);
  t.same(permissionByName('WRITE_CLOUD_STATUS')?.userTypes, ['ORGANIZATION']);
  // 001 says ORGANIZATION; 002 says ORGANIZATION and CUSTOMER
  t.same(permissionByName('READ_PAYMENTS')?.userTypes, ['ORGANIZATION', 'CUSTOMER']);
  // 001 says ORGANIZATION only; 002 has no restriction
  t.same(permissionByName('WRITE_SIM')?.userTypes, ALL);
  t.equal(permissionByName('CLEAR_ALERT')?.category, 'Event');
});

t.test('entries: ids, access, frozen', async (t) => {
  CATALOG.forEach((e, i) => {
    t.equal(e.id, i, `${e.name} id`);
    t.equal(e.access, e.name.startsWith('READ_') ? 'read' : 'write', `${e.name} access`);
    t.ok(Object.isFrozen(e) && Object.isFrozen(e.userTypes) && Object.isFrozen(e.modules), `${e.name} frozen`);
    t.ok(e.userTypes.every((u) => USER_TYPES.includes(u)));
    t.ok([...e.modules, ...e.backOfficeModules].every((m) => isModuleIdValid(m)));
  });
  t.ok(Object.isFrozen(CATALOG));
  t.equal(permissionByName('READ_ALL_THINGS')?.access, 'read');
  t.equal(permissionByName('RECEIVE_THING_ALERT_NOTIFICATIONS')?.access, 'write');
  t.throws(() => {
    (CATALOG as PermissionEntry[]).push(CATALOG[0]!);
  });
});

t.test('modules and user types', async (t) => {
  t.same(USER_TYPES, ['ORGANIZATION', 'PARTNER', 'CUSTOMER']);
  t.same(MODULES, [
    { id: 'CONNECTED_FIELD_SERVICE', title: 'Connected Field Service' },
    { id: 'VALUE_ADDED_DIGITAL_SERVICES', title: 'Value-added Digital Services' },
    { id: 'SPARE_PARTS_AND_CONSUMABLES', title: 'Spare Parts & Consumables' },
  ]);
  t.ok(isModuleIdValid('CONNECTED_FIELD_SERVICE'));
  t.ok(isModuleIdValid('SPARE_PARTS_AND_CONSUMABLES'));
  t.notOk(isModuleIdValid('connected_field_service'));
  t.notOk(isModuleIdValid('Connected Field Service'));
  t.notOk(isModuleIdValid(''));
  t.notOk(isModuleIdValid('toString'));
});

t.test('permissionId / permissionByName', async (t) => {
  t.equal(permissionId('DELETE_CUSTOMER'), 0);
  t.equal(permissionId('READ_NOTE'), 103);
  t.equal(permissionId('WRITE_DATA'), CATALOG.findIndex((e) => e.name === 'WRITE_DATA'));
  t.ok(permissionId('WRITE_DATA') >= 104);
  for (const e of CATALOG) t.equal(CATALOG[permissionId(e.name)], e);
  for (const bad of ['', 'read_thing', 'READ_THING ', 'NOPE', '__proto__', 'constructor', 'toString']) {
    t.equal(permissionId(bad), -1, JSON.stringify(bad));
    t.equal(permissionByName(bad), undefined, JSON.stringify(bad));
  }
});

t.test('resolvePermissionName', async (t) => {
  t.same(resolvePermissionName('IMPORT_DATA'), { name: 'IMPORT_DATA', legacy: false });
  t.same(resolvePermissionName('WRITE_DATA'), { name: 'IMPORT_DATA', legacy: false, mappedFrom: 'WRITE_DATA' });
  for (const n of ['CUSTOMER_ACCOUNT_ADMINISTRATOR', 'READ_SERVICE', 'READ_SERVICE_SUBSCRIPTION', 'WRITE_SERVICE_SUBSCRIPTION']) {
    t.same(resolvePermissionName(n), { name: n, legacy: true }, n);
    t.equal(resolvePermissionName(n)?.mappedFrom, undefined);
  }
  for (const e of current) t.same(resolvePermissionName(e.name), { name: e.name, legacy: false }, e.name);
  t.equal(resolvePermissionName('WRITE_datA'), undefined);
  t.equal(resolvePermissionName('UNKNOWN'), undefined);
  t.equal(resolvePermissionName('hasOwnProperty'), undefined);
});

t.test('isAssignableTo table', async (t) => {
  const table: [string, UserType[]][] = [
    ['WRITE_CLOUD_STATUS', ['ORGANIZATION']],
    ['PLACE_ORDER', ['PARTNER', 'CUSTOMER']],
    ['READ_PAYMENTS', ['ORGANIZATION', 'CUSTOMER']],
    ['WRITE_PAYMENTS', ['ORGANIZATION']],
    ['IMPORT_CUSTOMERS', ['ORGANIZATION', 'PARTNER']],
    ['READ_USER_AUTHORIZATION', ['CUSTOMER']],
    ['RECEIVE_THING_WORK_SESSION_NOTIFICATIONS', ['CUSTOMER']],
    ['READ_NOTE', ['ORGANIZATION']],
    ['READ_HISTORICAL_DATA', [...ALL]],
    ['READ_THING', [...ALL]],
    ['WRITE_SIM', [...ALL]],
    ['CUSTOMER_ACCOUNT_ADMINISTRATOR', ['CUSTOMER']],
    ['WRITE_DATA', [...ALL]],
  ];
  for (const [name, allowed] of table) {
    const e = permissionByName(name)!;
    for (const u of ALL) t.equal(isAssignableTo(e, u), allowed.includes(u), `${name} / ${u}`);
  }
});

t.test('requiredModulesFor table', async (t) => {
  const table: [string, UserType | undefined, ModuleId[]][] = [
    ['EXECUTE_BULK_UPDATE', 'ORGANIZATION', [CFS, VADS]],
    ['EXECUTE_BULK_UPDATE', 'CUSTOMER', [CFS, VADS]],
    ['EXECUTE_BULK_UPDATE', undefined, [CFS, VADS]],
    ['EXECUTE_THING_COMMAND', 'PARTNER', [CFS]],
    ['READ_RULE', 'CUSTOMER', [VADS]],
    ['PLACE_ORDER', 'CUSTOMER', [SPC, VADS]],
    ['WRITE_CONSUMABLE_STOCK', 'ORGANIZATION', [SPC]],
    ['READ_PAYMENTS', 'ORGANIZATION', [VADS]],
    ['READ_HISTORICAL_DATA', 'ORGANIZATION', [CFS]],
    ['READ_HISTORICAL_DATA', 'CUSTOMER', []],
    ['READ_THING', 'ORGANIZATION', []],
    ['WRITE_CLOUD_STATUS', 'ORGANIZATION', []],
    ['ACCOUNT_ADMINISTRATOR', undefined, []],
    ['WRITE_DATA', 'PARTNER', []],
  ];
  for (const [name, u, want] of table) {
    t.same(sorted(requiredModulesFor(permissionByName(name)!, u)), sorted(want), `${name} / ${u ?? '(none)'}`);
  }
  const modular = current.filter((e) => e.modules.length > 0).length;
  t.equal(modular, 42, 'entries with a module rule');
  t.equal(current.filter((e) => e.dependsOnBundle).length, 43, 'entries that depend on the bundle');
  t.same(
    current.filter((e) => e.dependsOnBundle !== (e.modules.length > 0 || e.backOfficeModules.length > 0)).map((e) => e.name),
    [],
    'a bundle flag goes with a module rule',
  );
});
