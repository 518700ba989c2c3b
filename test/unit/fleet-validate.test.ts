// A tenant policy and its fleet file, validated together (issue 14): each error names the file, the
// row (gateways[i]) and the field. And one slice spelled out.
import t, { type Test } from 'tap';
import { EwError } from '../../src/errors.js';
import { loadFleetText, sliceForGateway, validateFleet, validateTenantPolicy } from '../../src/policy/fleet.js';
import { validatePolicy } from '../../src/policy/validate.js';

const H = (n: number) => 'sha256:' + n.toString(16).padStart(64, '0');
const PASSWORD = `scrypt:15:8:1:${'s'.repeat(16)}:${'h'.repeat(43)}`;

const TENANT = `
formatVersion: 1
tenant: acme
modules: [CONNECTED_FIELD_SERVICE]
validity: { validFor: 30d }
organization: { id: org }
customers: [{ id: c1 }, { id: c2 }]
things:
  - { id: t1, customer: c1, resourceGroup: site-a, tokenHashes: ['${H(1)}'] }
  - { id: t2, customer: c2, resourceGroup: site-b, tokenHashes: ['${H(2)}'] }
roles:
  - { name: viewer, userType: CUSTOMER, permissions: [READ_THING] }
users:
  - { id: admin, userType: ORGANIZATION, entity: org, role: admin, passwordHash: '${PASSWORD}' }
  - { id: alice, userType: CUSTOMER, entity: c1, role: viewer, tokenHashes: ['${H(11)}'] }
  - { id: bob, userType: CUSTOMER, entity: c2, role: viewer, tokenHashes: ['${H(12)}'] }
`;

const FLEET = `
formatVersion: 1
gateways:
  - { id: gw-a, role: standard, resourceGroups: [site-a] }
  - { id: gw-b, role: standard, resourceGroups: [site-b] }
  - { id: gw-hq, role: privileged, resourceGroups: [] }
`;

/** The EwError thrown by fn (fails the test when none is). */
function thrown(t: Test, fn: () => unknown): EwError {
  try {
    fn();
  } catch (err) {
    t.ok(err instanceof EwError, 'an EwError');
    return err as EwError;
  }
  t.fail('expected an error');
  return new EwError('EW_POLICY_INVALID', 'none thrown');
}

const fleetError = (t: Test, fleet: string) => thrown(t, () => loadFleetText(TENANT, 'tenant.yaml', fleet, 'fleet.yaml'));
const row = (r: string) => `formatVersion: 1\ngateways:\n  - { id: gw-a, role: standard, resourceGroups: [site-a] }\n  - ${r}\n`;

t.test('a valid tenant and fleet', async (t) => {
  const { tenant, fleet, warnings } = loadFleetText(TENANT, 'tenant.yaml', FLEET, 'fleet.yaml');
  t.equal('gateway' in tenant, false, 'the tenant has no gateway section');
  t.same(
    fleet.gateways.map((g) => g.id),
    ['gw-a', 'gw-b', 'gw-hq'],
  );
  t.same(warnings, []);
});

t.test('each fleet error names the file, the row and the field', async (t) => {
  const cases: [what: string, fleet: string, path: string, message: RegExp][] = [
    ['unknown resource group', row('{ id: gw-c, role: standard, resourceGroups: [site-a, site-z] }'), 'gateways[1].resourceGroups[1]', /unknown resource group "site-z": no thing of tenant\.yaml is in it/],
    ['duplicate gateway id', row('{ id: gw-a, role: standard, resourceGroups: [site-b] }'), 'gateways[1].id', /duplicate gateway id "gw-a" \(first at gateways\[0\]\)/],
    ['bad role', row('{ id: gw-c, role: admin, resourceGroups: [site-b] }'), 'gateways[1].role', /must be one of standard, privileged; got "admin"/],
    ['bad id', row('{ id: "gw/c", role: standard, resourceGroups: [site-b] }'), 'gateways[1].id', /"gw\/c" is not a valid id/],
    ['id not a string', row('{ id: 7, role: standard, resourceGroups: [site-b] }'), 'gateways[1].id', /7 is not a valid id/],
    ['id of a principal', row('{ id: alice, role: standard, resourceGroups: [site-b] }'), 'gateways[1].id', /gateway id "alice" is already users\[1\]\.id of tenant\.yaml/],
    ['id of a thing', row('{ id: t2, role: standard, resourceGroups: [site-b] }'), 'gateways[1].id', /already things\[1\]\.id/],
    ['resource group listed twice', row('{ id: gw-c, role: standard, resourceGroups: [site-b, site-b] }'), 'gateways[1].resourceGroups[1]', /duplicate resource group "site-b"/],
    ['bad resource group id', row('{ id: gw-c, role: standard, resourceGroups: ["site b"] }'), 'gateways[1].resourceGroups[0]', /"site b" is not a valid resource group id/],
    ['resource groups not a list', row('{ id: gw-c, role: standard, resourceGroups: site-b }'), 'gateways[1].resourceGroups', /must be a list/],
    ['missing role', row('{ id: gw-c, resourceGroups: [site-b] }'), 'gateways[1].role', /missing required key/],
    ['missing resource groups', row('{ id: gw-c, role: standard }'), 'gateways[1].resourceGroups', /missing required key/],
    ['unknown key in a row', row('{ id: gw-c, role: standard, resourceGroups: [], site: x }'), 'gateways[1].site', /unknown key/],
    ['a row that is not a mapping', row('gw-c'), 'gateways[1]', /must be a mapping/],
    ['gateways not a list', 'formatVersion: 1\ngateways: { id: gw-a }\n', 'gateways', /must be a list/],
    ['no gateways key', 'formatVersion: 1\n', 'gateways', /missing required key/],
    ['bad format version', 'formatVersion: 2\ngateways: []\n', 'formatVersion', /must be 1, got 2/],
    ['unknown top-level key', 'formatVersion: 1\ngateways: []\ntenant: acme\n', 'tenant', /unknown key/],
  ];
  for (const [what, fleet, path, message] of cases) {
    const e = fleetError(t, fleet);
    t.equal(e.code, 'EW_POLICY_INVALID', `${what}: code`);
    t.equal(e.where, 'fleet.yaml', `${what}: names the fleet file`);
    t.equal(e.issues.length, 1, `${what}: one problem`);
    t.match(e.issues[0], { path, message }, `${what}: ${path}`);
    t.match(e.describe(), `fleet.yaml: ${path}: `, `${what}: describe() prints file: row.field: message`);
  }
});

t.test('every problem of the fleet is reported at once', async (t) => {
  const e = fleetError(t, 'formatVersion: 1\ngateways:\n  - { id: gw-a, role: boss, resourceGroups: [nope] }\n  - { id: gw-a, role: standard, resourceGroups: [site-b] }\n');
  t.same(
    e.issues.map((i) => i.path),
    ['gateways[0].role', 'gateways[0].resourceGroups[0]', 'gateways[1].id'],
  );
  t.match(e.message, /fleet\.yaml: fleet file is invalid \(3 problems\)/);
});

t.test('thousands of rows: the bad one is named', async (t) => {
  const rows = Array.from({ length: 5000 }, (_, i) => `  - { id: gw-${i}, role: standard, resourceGroups: [${i % 2 ? 'site-a' : 'site-b'}] }`);
  rows[4321] = '  - { id: gw-4321, role: standard, resourceGroups: [site-q] }';
  const started = performance.now();
  const e = fleetError(t, `formatVersion: 1\ngateways:\n${rows.join('\n')}\n`);
  t.same(e.issues, [{ path: 'gateways[4321].resourceGroups[0]', message: 'unknown resource group "site-q": no thing of tenant.yaml is in it' }]);
  rows[4321] = '  - { id: gw-4321, role: standard, resourceGroups: [site-a] }';
  const { fleet } = loadFleetText(TENANT, 'tenant.yaml', `formatVersion: 1\ngateways:\n${rows.join('\n')}\n`, 'fleet.yaml');
  t.equal(fleet.gateways.length, 5000);
  t.ok(performance.now() - started < 10_000, 'validated in well under 10 s');
});

t.test('the fleet file is parsed as a policy file is: duplicate keys and bad YAML are errors with a line', async (t) => {
  const e = fleetError(t, 'formatVersion: 1\ngateways:\n  - { id: gw-a, id: gw-b, role: standard, resourceGroups: [] }\n');
  t.equal(e.code, 'EW_POLICY_YAML');
  t.equal(e.where, 'fleet.yaml');
  t.match(e.issues, [{ path: /^line 3, column/ }]);
});

t.test('tenant errors name the tenant file and the field', async (t) => {
  const withGateway = thrown(t, () => loadFleetText(TENANT + 'gateway: { id: gw, role: standard, resourceGroups: [] }\n', 'tenant.yaml', FLEET, 'fleet.yaml'));
  t.equal(withGateway.where, 'tenant.yaml');
  t.match(withGateway.issues, [{ path: 'gateway', message: /a tenant policy has no gateway section/ }]);

  const bad = thrown(t, () => loadFleetText(TENANT.replace('customer: c2, resourceGroup', 'customer: c9, resourceGroup'), 'tenant.yaml', FLEET, 'fleet.yaml'));
  t.equal(bad.code, 'EW_POLICY_INVALID');
  t.equal(bad.where, 'tenant.yaml');
  t.match(bad.issues, [{ path: 'things[1].customer', message: /unknown customer "c9"/ }]);

  const notMapping = thrown(t, () => validateTenantPolicy([1], 'tenant.yaml'));
  t.match(notMapping.issues, [{ path: '', message: /expected a mapping, got a list/ }]);
});

t.test('a stand-in gateway id never collides with a principal of the tenant', async (t) => {
  const tenant = TENANT.replace('- { id: bob,', '- { id: tenant-validation-gateway,');
  t.doesNotThrow(() => loadFleetText(tenant, 'tenant.yaml', FLEET, 'fleet.yaml'));
});

t.test('a slice, spelled out', async (t) => {
  const { tenant, fleet } = loadFleetText(TENANT, 'tenant.yaml', FLEET, 'fleet.yaml');
  const [gwA, , gwHq] = fleet.gateways;
  const a = sliceForGateway(tenant, gwA!);
  t.same(a.gateway, { id: 'gw-a', role: 'standard', resourceGroups: ['site-a'] });
  t.same(
    a.things!.map((x) => x.id),
    ['t1'],
    'only the things of its resource groups',
  );
  t.same(
    a.users!.map((u) => u.id),
    ['admin', 'alice'],
    'the organization admin and the site-a customer user; bob (site-b) is left out',
  );
  t.same(
    a.customers!.map((c) => c.id),
    ['c1'],
  );
  t.notMatch(JSON.stringify(a), H(12), "bob's token hash is not in gw-a's slice");
  t.notMatch(JSON.stringify(a), H(2), "t2's token hash is not in gw-a's slice");
  t.doesNotThrow(() => validatePolicy(a, 'slice of gw-a'), 'the slice is a valid policy');

  const hq = sliceForGateway(tenant, gwHq!);
  t.same(
    hq.things!.map((x) => x.id),
    ['t1', 't2'],
    'a privileged gateway serves every thing',
  );
  t.same(
    hq.users!.map((u) => u.id),
    ['admin', 'alice', 'bob'],
  );

  // A gateway serving nothing: only the gateway itself, and the admin as a revoked, credential-less stand-in.
  const none = sliceForGateway(tenant, { id: 'gw-none', role: 'standard', resourceGroups: [] });
  t.same(none.things, []);
  t.same(none.users, [{ id: 'admin', userType: 'ORGANIZATION', entity: 'org', role: 'admin', revoked: true }]);
  t.doesNotThrow(() => validatePolicy(none, 'slice of gw-none'));
});

t.test('validateFleet takes a parsed value too', async (t) => {
  const { tenant } = validateTenantPolicy(
    { formatVersion: 1, tenant: 'x', modules: [], validity: { validFor: '1d' }, organization: { id: 'org' }, users: [{ id: 'u', userType: 'ORGANIZATION', entity: 'org', role: 'admin' }] },
    'tenant.yaml',
  );
  const e = thrown(t, () => validateFleet(null, 'fleet.yaml', tenant));
  t.match(e.issues, [{ path: '', message: /expected a mapping/ }]);
  t.same(validateFleet({ formatVersion: 1, gateways: [] }, 'fleet.yaml', tenant).gateways, []);
});
