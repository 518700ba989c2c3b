import t from 'tap';
import { catalogCommand } from '../../src/cli/catalog.js';
import { CATALOG } from '../../src/catalog/index.js';

function run(opts: { json?: boolean; legacy?: boolean }): string[] {
  const lines: string[] = [];
  catalogCommand(opts, (s) => lines.push(s));
  return lines;
}

/** Splits a table line into cells using the header's column starts. */
function cells(header: string, line: string): Record<string, string> {
  const names = ['NAME', 'CATEGORY', 'USER TYPES', 'MODULES', 'FLAGS'];
  const starts = names.map((n) => header.indexOf(n));
  const out: Record<string, string> = {};
  names.forEach((n, i) => {
    out[n] = line.slice(starts[i], i + 1 < starts.length ? starts[i + 1] : undefined).trim();
  });
  return out;
}

t.test('text table', async (t) => {
  const lines = run({});
  const header = lines[0]!;
  t.match(header, /^NAME +CATEGORY +USER TYPES +MODULES +FLAGS$/);
  const blank = lines.indexOf('');
  t.equal(blank, 105, 'header + 104 rows, then a blank line');
  const rows = lines.slice(1, blank).map((l) => cells(header, l));
  t.same(
    rows.map((r) => r['NAME']),
    CATALOG.filter((p) => !p.legacy).map((p) => p.name),
    'current permissions only, in catalog order',
  );
  t.notOk(lines.some((l) => l.includes('legacy ->')), 'no legacy rows by default');
  t.notOk(lines.some((l) => l !== l.trimEnd()), 'no trailing spaces');
  // aligned: every row's cells start at the header's column starts
  const starts = ['CATEGORY', 'USER TYPES', 'MODULES'].map((n) => header.indexOf(n));
  for (const l of lines.slice(1, blank)) for (const s of starts) t.equal(l[s - 1], ' ', `aligned: ${l.slice(0, 40)}`);

  const byName = new Map(rows.map((r) => [r['NAME'], r]));
  t.same(byName.get('WRITE_CLOUD_STATUS'), { NAME: 'WRITE_CLOUD_STATUS', CATEGORY: 'Thing', 'USER TYPES': 'ORGANIZATION', MODULES: '-', FLAGS: '' });
  t.same(byName.get('READ_THING'), { NAME: 'READ_THING', CATEGORY: 'Thing', 'USER TYPES': 'all', MODULES: '-', FLAGS: '' });
  t.same(byName.get('EXECUTE_BULK_UPDATE'), {
    NAME: 'EXECUTE_BULK_UPDATE',
    CATEGORY: 'Thing Remote Control',
    'USER TYPES': 'all',
    MODULES: 'any of CFS,VADS',
    FLAGS: 'bundle',
  });
  t.same(byName.get('PLACE_ORDER'), {
    NAME: 'PLACE_ORDER',
    CATEGORY: 'Store',
    'USER TYPES': 'PARTNER,CUSTOMER',
    MODULES: 'any of SPC,VADS',
    FLAGS: 'bundle',
  });
  t.equal(byName.get('READ_PAYMENTS')?.['USER TYPES'], 'ORGANIZATION,CUSTOMER');
  t.equal(byName.get('READ_PAYMENTS')?.['MODULES'], 'VADS');
  t.equal(byName.get('WRITE_CONSUMABLE_STOCK')?.['MODULES'], 'SPC');
  t.equal(byName.get('EXECUTE_THING_COMMAND')?.['MODULES'], 'CFS');
  t.equal(byName.get('READ_HISTORICAL_DATA')?.['MODULES'], 'back-office: CFS');

  const footer = lines.slice(blank + 1).join('\n');
  t.match(footer, /^104 permissions\./);
  t.match(footer, /CFS = Connected Field Service, VADS = Value-added Digital Services, SPC = Spare Parts & Consumables/);
});

t.test('text table with legacy', async (t) => {
  const lines = run({ legacy: true });
  const header = lines[0]!;
  const blank = lines.indexOf('');
  t.equal(blank, 110, 'header + 109 rows');
  const rows = lines.slice(1, blank).map((l) => cells(header, l));
  t.same(
    rows.slice(104).map((r) => [r['NAME'], r['FLAGS']]),
    [
      ['CUSTOMER_ACCOUNT_ADMINISTRATOR', 'legacy'],
      ['READ_SERVICE', 'legacy'],
      ['READ_SERVICE_SUBSCRIPTION', 'legacy'],
      ['WRITE_SERVICE_SUBSCRIPTION', 'legacy'],
      ['WRITE_DATA', 'legacy -> IMPORT_DATA'],
    ],
  );
  t.equal(rows[104]?.['USER TYPES'], 'CUSTOMER');
  t.match(lines[blank + 1], /^104 permissions \+ 5 legacy\./);
});

t.test('json', async (t) => {
  const lines = run({ json: true });
  t.equal(lines.length, 1, 'one document');
  const doc = JSON.parse(lines[0]!) as {
    userTypes: string[];
    modules: { id: string; shortName: string; title: string }[];
    permissions: Record<string, unknown>[];
  };
  t.same(doc.userTypes, ['ORGANIZATION', 'PARTNER', 'CUSTOMER']);
  t.same(doc.modules, [
    { id: 'CONNECTED_FIELD_SERVICE', shortName: 'CFS', title: 'Connected Field Service' },
    { id: 'VALUE_ADDED_DIGITAL_SERVICES', shortName: 'VADS', title: 'Value-added Digital Services' },
    { id: 'SPARE_PARTS_AND_CONSUMABLES', shortName: 'SPC', title: 'Spare Parts & Consumables' },
  ]);
  t.equal(doc.permissions.length, 104);
  t.notOk(doc.permissions.some((p) => p['legacy'] === true));
  const get = (n: string) => doc.permissions.find((p) => p['name'] === n);
  t.same(get('READ_PAYMENTS'), {
    name: 'READ_PAYMENTS',
    category: 'Store',
    title: 'Read payment',
    description: CATALOG.find((p) => p.name === 'READ_PAYMENTS')!.description,
    access: 'read',
    assignableToUserTypes: ['ORGANIZATION', 'CUSTOMER'],
    requiredModulesAnyOf: ['VALUE_ADDED_DIGITAL_SERVICES'],
    requiredModulesForBackOfficeUsers: [],
    requiredModulesAnyOfByUserType: { ORGANIZATION: ['VALUE_ADDED_DIGITAL_SERVICES'], CUSTOMER: ['VALUE_ADDED_DIGITAL_SERVICES'] },
    dependsOnSubscriptionBundle: true,
    legacy: false,
  });
  t.same(get('READ_HISTORICAL_DATA')?.['requiredModulesAnyOfByUserType'], {
    ORGANIZATION: ['CONNECTED_FIELD_SERVICE'],
    PARTNER: ['CONNECTED_FIELD_SERVICE'],
    CUSTOMER: [],
  });
  t.equal(get('WRITE_CLOUD_STATUS')?.['access'], 'write');
});

t.test('json with legacy', async (t) => {
  const doc = JSON.parse(run({ json: true, legacy: true })[0]!) as { permissions: Record<string, unknown>[] };
  t.equal(doc.permissions.length, 109);
  const wd = doc.permissions.find((p) => p['name'] === 'WRITE_DATA');
  t.equal(wd?.['legacy'], true);
  t.equal(wd?.['replacedBy'], 'IMPORT_DATA');
  t.notOk('replacedBy' in doc.permissions.find((p) => p['name'] === 'READ_SERVICE')!);
});
