// Likely mistakes in a valid policy: warnings with the field path (snapshot sign --strict refuses
// them). The gateway does not refuse a snapshot for any of them but an undefined role.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseDocument } from 'yaml';
import type { Issue } from '../../src/errors.js';
import { checkLikelyMistakes } from '../../src/policy/likely-mistakes.js';
import type { PolicyBody } from '../../src/policy/schema.js';
import { compilePolicy, validatePolicy } from '../../src/policy/validate.js';
import { signSnapshot, verifySnapshot } from '../../src/snapshot/snapshot.js';
import { ROOT, testKey } from '../helpers/policy.js';

const exampleText = readFileSync(join(ROOT, 'config', 'example-policy.yaml'), 'utf8');
const base = () => parseDocument(exampleText).toJS() as Record<string, any>;
const warningsOf = (p: unknown) => validatePolicy(p, 'policy.yaml').warnings.map((w) => `${w.path}: ${w.message}`);

type Case = [label: string, edit: (p: Record<string, any>) => void, expected: RegExp[]];
const cases: Case[] = [
  ['the example policy', () => {}, []],
  ['a typo in the gateway\'s resource groups', (p) => { p.gateway.resourceGroups = ['line-1', 'lin-2']; },
    [/^gateway\.resourceGroups\[1\]: no thing is in resource group "lin-2" \(the things are in line-1, line-2\): the gateway serves nothing through it$/]],
  ['the only resource group mistyped', (p) => { p.gateway.resourceGroups = ['line1']; },
    [/^gateway\.resourceGroups\[0\]: no thing is in resource group "line1"/]],
  ['a privileged gateway serves every thing anyway, but the group is still named', (p) => { p.gateway = { ...p.gateway, role: 'privileged', resourceGroups: ['line-9'] }; },
    [/^gateway\.resourceGroups\[0\]: no thing is in resource group "line-9" \(the things are in line-1, line-2\)$/]],
  ['a standard gateway with no resource group', (p) => { p.gateway.resourceGroups = []; },
    [/^gateway\.resourceGroups: a standard gateway serves only the things of its resource groups, and it has none: it serves none of the 5 things$/]],
  ['no things at all', (p) => { p.things = []; p.userAuthorizations = []; },
    [/^gateway\.resourceGroups\[0\]: no thing is in resource group "line-1" \(the policy has no things\)/]],
  ['a user\'s role that is not defined (a typo)', (p) => { p.users[1].role = 'technican'; },
    [/^users\[1\]\.role: role "technican" is not defined: user "tech-anna" falls back to none/]],
  ['an application\'s role that is not defined', (p) => { p.applications[0].role = 'ibm-app-visualisation'; },
    [/^applications\[0\]\.role: role "ibm-app-visualisation" is not defined: application "dashboard" falls back to none/]],
  ['a role granting a permission of an inactive module', (p) => { p.roles[0].permissions.push('WRITE_TASK'); },
    [/^roles\[0\]\.permissions\[8\]: WRITE_TASK needs module VALUE_ADDED_DIGITAL_SERVICES, which is not in modules: role "technician" is denied it \(MODULE_INACTIVE\)$/]],
  ['a permission that any one of two inactive modules would make available', (p) => { p.roles[2].permissions.push('PLACE_ORDER'); },
    [/^roles\[2\]\.permissions\[3\]: PLACE_ORDER needs one of the modules SPARE_PARTS_AND_CONSUMABLES or VALUE_ADDED_DIGITAL_SERVICES, none of which is in modules: role "viewer"/]],
  ['an API key with a permission of an inactive module', (p) => { p.apiKeys[0].permissions.push('PLACE_ORDER'); },
    [/^apiKeys\[0\]\.permissions\[2\]: PLACE_ORDER needs one of the modules .*: API key "key-erp" is denied it/]],
  ['a back-office role reading history without Connected Field Service', (p) => { p.modules = ['VALUE_ADDED_DIGITAL_SERVICES']; },
    [/^roles\[0\]\.permissions\[2\]: READ_HISTORICAL_DATA needs module CONNECTED_FIELD_SERVICE.*role "technician"/,
      /^roles\[0\]\.permissions\[\d\]: UPDATE_FIRMWARE needs/,
      /^roles\[3\]\.permissions\[2\]: READ_HISTORICAL_DATA needs module CONNECTED_FIELD_SERVICE.*role "ibm-app-visualization"/]],
];

t.test('each likely mistake is one warning at its field', async (t) => {
  for (const [label, edit, expected] of cases) {
    const p = base();
    edit(p);
    const got = warningsOf(p);
    for (const re of expected) t.ok(got.some((w) => re.test(w)), `${label}: ${re}`, { got });
    if (label.startsWith('a back-office')) {
      // CUSTOMER users read history without any module: the viewer role is not warned about.
      t.notOk(got.some((w) => w.includes('role "viewer"') && w.includes('READ_HISTORICAL_DATA')), `${label}: not for CUSTOMER roles`);
    } else t.equal(got.length, expected.length, `${label}: nothing else`, { got });
  }
});

t.test('a permission its user type may not hold is an error, not also a module warning', async (t) => {
  const p = base();
  p.roles[1].permissions.push('WRITE_PAYMENTS'); // ORGANIZATION only, and VALUE_ADDED_DIGITAL_SERVICES; operator is CUSTOMER
  t.throws(() => validatePolicy(p, 'policy.yaml'), { code: 'EW_POLICY_INVALID' });
  const warnings: Issue[] = [];
  checkLikelyMistakes(p as PolicyBody, warnings);
  t.same(warnings, []);
});

t.test('the gateway accepts what is only a warning (all but an undefined role)', async (t) => {
  const key = testKey();
  const p = base();
  p.gateway.resourceGroups = ['line-1', 'lin-2'];
  p.roles[0].permissions.push('WRITE_TASK');
  const { policy, warnings } = validatePolicy(p, 'policy.yaml');
  t.equal(warnings.length, 2);
  const payload = compilePolicy(policy, { version: 1, issuedAt: Date.parse('2026-01-01T00:00:00Z') });
  t.doesNotThrow(() => verifySnapshot(signSnapshot(payload, key.privateKey, key.kid), new Map([[key.kid, key.publicKey]])));
});
