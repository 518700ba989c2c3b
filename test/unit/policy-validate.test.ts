// Policy validation: each invalid policy is refused with the exact field and reason.
import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import { EwError } from '../../src/errors.js';
import { compilePolicy, loadPolicyText, pointerToPath, validatePolicy } from '../../src/policy/validate.js';
import { ROOT, fixture } from '../helpers/policy.js';
import { join } from 'node:path';

const EXAMPLE = join(ROOT, 'config', 'example-policy.yaml');
const exampleText = readFileSync(EXAMPLE, 'utf8');
const base = () => parseDocument(exampleText).toJS() as Record<string, any>;

function refused(t: Test, raw: unknown, path: string, message: RegExp, label: string) {
  try {
    validatePolicy(raw, 'policy.yaml');
    t.fail(`${label}: accepted`);
  } catch (err) {
    t.ok(err instanceof EwError, `${label}: EwError`);
    const e = err as EwError;
    t.equal(e.code, 'EW_POLICY_INVALID', `${label}: code`);
    const hit = e.issues.find((i) => i.path === path && message.test(i.message));
    t.ok(hit, `${label}: issue at ${path} matching ${message}`, { found: e.issues });
    t.match(e.describe(), 'policy.yaml', `${label}: names the file`);
  }
}


t.test('the example policy and the decide fixture are valid', async (t) => {
  const { policy, warnings } = loadPolicyText(exampleText, EXAMPLE);
  t.equal(policy.gateway.id, 'gw-plant-1');
  t.same(warnings, []);
  const fx = loadPolicyText(readFileSync(fixture('decide-policy.yaml'), 'utf8'), 'decide-policy.yaml');
  t.match(fx.warnings.map((w) => w.message).join('\n'), /gone-role.*falls back to none/);
  t.match(fx.warnings.map((w) => w.message).join('\n'), /legacy permission WRITE_DATA is mapped to IMPORT_DATA/);
});

t.test('the IBM role templates are valid roles', async (t) => {
  const tpl = parseDocument(readFileSync(join(ROOT, 'config', 'templates', 'ibm-roles.yaml'), 'utf8')).toJS() as { roles: unknown[] };
  const p = base();
  p.roles = [...p.roles, ...tpl.roles];
  const { warnings } = validatePolicy(p, 'merged');
  t.same(warnings, [], 'no warnings');
  t.ok(tpl.roles.length >= 9, 'user roles and the six application roles');
});

type Case = [label: string, edit: (p: Record<string, any>) => void, path: string, message: RegExp];
const cases: Case[] = [
  ['CUSTOMER role granting WRITE_CLOUD_STATUS', (p) => p.roles[1].permissions.push('WRITE_CLOUD_STATUS'), 'roles[1].permissions[5]', /WRITE_CLOUD_STATUS can be assigned only to ORGANIZATION user types; role "operator" is CUSTOMER/],
  ['PARTNER role granting a CUSTOMER-only permission', (p) => p.roles[0].permissions.push('WRITE_USER_AUTHORIZATION'), 'roles[0].permissions[8]', /only to CUSTOMER user types/],
  ['API key with a permission its entity type may not hold', (p) => p.apiKeys[0].permissions.push('IMPORT_CUSTOMERS'), 'apiKeys[0].permissions[2]', /IMPORT_CUSTOMERS can be assigned only to ORGANIZATION and PARTNER/],
  ['unknown permission', (p) => p.roles[0].permissions.push('LAUNCH_ROCKETS'), 'roles[0].permissions[8]', /unknown permission "LAUNCH_ROCKETS"/],
  ['user with two roles (roles list)', (p) => { delete p.users[1].role; p.users[1].roles = ['technician', 'admin']; }, 'users[1].roles', /exactly one role/],
  ['user with two roles (role list)', (p) => { p.users[1].role = ['technician', 'admin']; }, 'users[1].role', /exactly one role .* list of 2/],
  ['no admin', (p) => { p.users[0].role = 'none'; }, 'users', /at least one user must hold the built-in admin role/],
  ['thing in an unknown customer', (p) => { p.things[0].customer = 'c-nowhere'; }, 'things[0].customer', /unknown customer "c-nowhere"/],
  ['duplicate thing id', (p) => { p.things[1].id = 'oven-1'; }, 'things[1].id', /duplicate thing id "oven-1" \(first at things\[0\]\)/],
  ['principal id used twice across kinds', (p) => { p.apiKeys[0].id = 'tech-anna'; }, 'apiKeys[0].id', /duplicate principal id "tech-anna"/],
  ['plaintext password', (p) => { p.users[1].passwordHash = 'anna-pass'; }, 'users[1].passwordHash', /not a credential hash .* plaintext/],
  ['user password as sha256 (unsalted, fast)', (p) => { p.users[1].passwordHash = 'sha256:' + 'ab'.repeat(32); }, 'users[1].passwordHash', /is a sha256 hash: a user's password must be a salted slow hash \(scrypt:\.\.\.\) — make one with `edgewarden hash --scrypt`/],
  ['plaintext device token', (p) => { p.things[0].tokenHashes = ['oven-1-token']; }, 'things[0].tokenHashes[0]', /plaintext/],
  ['plaintext API key secret', (p) => { p.apiKeys[0].secretHash = 'erp-key-secret'; }, 'apiKeys[0].secretHash', /plaintext/],
  ['scrypt hash used for a machine token', (p) => { p.apiKeys[0].secretHash = p.users[0].passwordHash; }, 'apiKeys[0].secretHash', /not a credential hash/],
  ['wrong type: modules as a string', (p) => { p.modules = 'CONNECTED_FIELD_SERVICE'; }, 'modules', /must be array, got string/],
  ['wrong type: resource groups as a number', (p) => { p.gateway.resourceGroups = 7; }, 'gateway.resourceGroups', /must be array, got number/],
  ['missing key', (p) => { delete p.tenant; }, 'tenant', /missing required key/],
  ['unknown key (typo)', (p) => { p.tennant = 'x'; }, 'tennant', /unknown key/],
  ['unknown key in a thing', (p) => { p.things[0].token = 'oven-1-token'; }, 'things[0].token', /unknown key/],
  ['bad gateway role', (p) => { p.gateway.role = 'super'; }, 'gateway.role', /must be one of standard, privileged; got "super"/],
  ['bad user type', (p) => { p.users[2].userType = 'GUEST'; }, 'users[2].userType', /must be one of ORGANIZATION, PARTNER, CUSTOMER/],
  ['bad module', (p) => { p.modules = ['CFS']; }, 'modules[0]', /must be one of CONNECTED_FIELD_SERVICE/],
  ['id with a slash (would break topics)', (p) => { p.things[0].id = 'oven/1'; }, 'things[0].id', /not a valid id/],
  ['redefining a built-in role', (p) => { p.roles[0].name = 'admin'; }, 'roles[0].name', /built-in role/],
  ['role for another user type', (p) => { p.users[2].role = 'technician'; }, 'users[2].role', /role "technician" is for PARTNER users; user "op-bob" is CUSTOMER/],
  ['application with a CUSTOMER role', (p) => { p.applications[0].role = 'viewer'; }, 'applications[0].role', /need an ORGANIZATION role/],
  ['user of an unknown partner', (p) => { p.users[1].entity = 'p-ghost'; }, 'users[1].entity', /unknown partner "p-ghost"/],
  ['location of another customer', (p) => { p.things[3].location = 'l-bakery-north'; }, 'things[3].location', /belongs to customer "c-bakery", not "c-dairy"/],
  ['partner assigned an unknown customer', (p) => { p.partners[0].customers.push('c-ghost'); }, 'partners[0].customers[1]', /unknown customer "c-ghost"/],
  ['user authorization for another customer\'s user', (p) => { p.userAuthorizations[0].user = 'op-bob'; }, 'userAuthorizations[0].user', /not a CUSTOMER user of customer "c-dairy"/],
  ['user authorization on another customer\'s thing', (p) => { p.userAuthorizations[0].things.push('oven-1'); }, 'userAuthorizations[0].things[1]', /belongs to customer "c-bakery"/],
  ['organization authorization for a partner user', (p) => { p.organizationAuthorizations = [{ user: 'tech-anna', customers: ['c-dairy'] }]; }, 'organizationAuthorizations[0].user', /not an ORGANIZATION user/],
  ['both expiresAt and validFor', (p) => { p.validity.validFor = '30d'; }, 'validity', /exactly one of expiresAt or validFor/],
  ['neither expiresAt nor validFor', (p) => { p.validity = {}; }, 'validity', /exactly one/],
  ['expiry without a zone', (p) => { p.validity.expiresAt = '2030-01-01T00:00:00'; }, 'validity.expiresAt', /with a zone/],
  ['bad validFor', (p) => { delete p.validity.expiresAt; p.validity.validFor = '30 days'; }, 'validity.validFor', /does not match/],
  ['format version', (p) => { p.formatVersion = 2; }, 'formatVersion', /must be 1, got number/],
  ['duplicate resource group', (p) => { p.gateway.resourceGroups.push('line-1'); }, 'gateway.resourceGroups[1]', /duplicate resource group/],
];

t.test('invalid policies name the field and the reason', async (t) => {
  for (const [label, edit, path, message] of cases) {
    const p = base();
    edit(p);
    refused(t, p, path, message, label);
  }
});

t.test('sha256 is accepted for generated tokens and secrets, not for user passwords', async (t) => {
  const sha = 'sha256:' + 'cd'.repeat(32);
  const p = base();
  p.users[1].tokenHashes = [sha];
  p.things[0].tokenHashes = [sha];
  p.apiKeys[0].secretHash = sha;
  p.applications[0].secretHash = sha;
  t.doesNotThrow(() => validatePolicy(p, 'policy.yaml'), 'personal access tokens, device tokens, API key and application secrets');
  p.users[0].passwordHash = sha;
  t.throws(() => validatePolicy(p, 'policy.yaml'), { code: 'EW_POLICY_INVALID' }, 'a user password');
});

t.test('a plaintext secret never appears in the error', async (t) => {
  const p = base();
  p.users[1].passwordHash = 'Sup3r-Secret-Value';
  try {
    validatePolicy(p, 'policy.yaml');
    t.fail('accepted');
  } catch (err) {
    t.notMatch((err as EwError).describe(), /Sup3r-Secret-Value/);
  }
});

t.test('every problem is reported at once', async (t) => {
  const p = base();
  p.apiKeys[0].entity = 'nope';
  p.users[1].passwordHash = 'plain';
  p.roles[1].permissions.push('WRITE_CLOUD_STATUS');
  try {
    validatePolicy(p, 'policy.yaml');
    t.fail('accepted');
  } catch (err) {
    t.equal((err as EwError).issues.length, 3);
  }
});

t.test('YAML problems', async (t) => {
  const bomb = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
  for (let i = 0; i < 9; i++) bomb.push(`${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(9).fill('*' + String.fromCharCode(97 + i)).join(',')}]`);
  const cases: [string, string, RegExp][] = [
    ['billion laughs', bomb.join('\n'), /aliases expand without bound/],
    ['syntax error', 'tenant: [unclosed', /not valid YAML/],
    ['duplicate key', 'tenant: a\ntenant: b\n', /not valid YAML/],
    ['tab indentation', 'gateway:\n\tid: x\n', /not valid YAML/],
  ];
  for (const [label, text, re] of cases) {
    try {
      loadPolicyText(text, 'bad.yaml');
      t.fail(`${label}: accepted`);
    } catch (err) {
      t.equal((err as EwError).code, 'EW_POLICY_YAML', label);
      t.match((err as EwError).describe(), re, label);
      t.match((err as EwError).describe(), /bad\.yaml/, `${label}: names the file`);
    }
  }
  const syntax = (() => { try { loadPolicyText('a: 1\nb: [x\n', 'f.yaml'); } catch (e) { return e as EwError; } })();
  t.match(syntax?.issues[0]?.path, /^line \d+, column \d+$/, 'syntax errors give line and column');
});

t.test('a policy that is not a mapping', async (t) => {
  for (const text of ['- a\n- b\n', 'just a string', '42', '']) {
    try {
      loadPolicyText(text, 'x.yaml');
      t.fail(`accepted ${JSON.stringify(text)}`);
    } catch (err) {
      t.equal((err as EwError).code, 'EW_POLICY_INVALID', JSON.stringify(text));
      t.match((err as EwError).message, /must be a mapping/);
    }
  }
});

t.test('compiling: legacy names mapped, deleted roles fall back to none, validity resolved', async (t) => {
  const p = base();
  p.apiKeys[0].permissions.push('WRITE_DATA');
  p.users[2].role = 'retired-role';
  delete p.validity.expiresAt;
  p.validity.validFor = '30d';
  const { policy, warnings } = validatePolicy(p, 'p.yaml');
  t.match(warnings.map((w) => `${w.path}: ${w.message}`).join('\n'), /users\[2\]\.role: role "retired-role" is not defined/);
  const payload = compilePolicy(policy, { version: 7, issuedAt: 1_000 });
  t.same(payload.apiKeys![0]!.permissions, ['READ_THING', 'READ_HISTORICAL_DATA', 'IMPORT_DATA']);
  t.equal(payload.users![2]!.role, 'none');
  t.equal(payload.expiresAt, 1_000 + 30 * 86_400_000);
  t.equal(payload.version, 7);
  t.notOk('validity' in payload);
});

t.test('pointerToPath', async (t) => {
  t.equal(pointerToPath('/users/3/role'), 'users[3].role');
  t.equal(pointerToPath(''), '');
  t.equal(pointerToPath('/a~1b/0'), 'a/b[0]');
});
