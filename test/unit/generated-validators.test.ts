// src/generated/ is what scripts/gen-validators.mjs writes from the TypeBox schemas: the validators
// the agent and the CLI run (Ajv standalone code, compiled at build time, issue 13). A schema changed
// without `npm run gen` fails here, naming the file.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../helpers/policy.js';
import { CONFIG_SCHEMA } from '../../src/config/schema.js';
import { POLICY_FILE_SCHEMA } from '../../src/policy/schema.js';
import { CONFIG_DEFAULTS, validateConfig } from '../../src/generated/config-validator.js';
import { POLICY_FILE_SCHEMA_JSON } from '../../src/generated/policy-schema.js';

t.test('the committed validators are what the generator writes from the schemas (else: npm run gen)', async (t) => {
  const { generate } = (await import(join(ROOT, 'scripts', 'gen-validators.mjs'))) as { generate: () => Promise<Record<string, string>> };
  const files = await generate();
  t.same(Object.keys(files).sort(), ['config-validator.ts', 'payload-fast-validator.ts', 'payload-validator.ts', 'policy-schema.ts', 'policy-validator.ts']);
  for (const [name, text] of Object.entries(files)) {
    t.equal(readFileSync(join(ROOT, 'src', 'generated', name), 'utf8') === text, true, `src/generated/${name} is up to date (npm run gen)`);
  }
});

t.test('the generated modules carry the schemas they were made from', async (t) => {
  t.same(POLICY_FILE_SCHEMA_JSON, JSON.parse(JSON.stringify(POLICY_FILE_SCHEMA)));
  t.equal(CONFIG_DEFAULTS.listeners.tcp.host, '127.0.0.1', 'the defaults come from the schema');
  t.equal((CONFIG_SCHEMA.properties.listeners.properties.tcp.properties.host as { default: string }).default, '127.0.0.1');
  const withKey = { ...CONFIG_DEFAULTS, trust: { keys: ['keys/cloud.pub.pem'] } };
  t.equal(validateConfig(withKey), true, 'the defaults and a trusted key are a valid configuration');
  t.equal(validateConfig({ ...withKey, nope: 1 }), false);
  t.match((validateConfig as unknown as { errors: unknown }).errors, [{ keyword: 'additionalProperties', params: { additionalProperty: 'nope' } }]);
});

t.test('a property named like a documentation keyword is still validated (roles[].description)', async (t) => {
  const { parsePolicyYaml, validatePolicy } = await import('../../src/policy/validate.js');
  const policy = parsePolicyYaml(readFileSync(join(ROOT, 'config', 'example-policy.yaml'), 'utf8'), 'example-policy.yaml') as { roles: Array<{ description?: string }> };
  t.ok(policy.roles.length > 0, 'the example policy has roles');
  policy.roles[0]!.description = 'x'.repeat(1025);
  t.throws(() => validatePolicy(policy, 'example-policy.yaml'), { code: 'EW_POLICY_INVALID', issues: [{ path: 'roles[0].description' }] });
  policy.roles[0]!.description = 'technicians of the partner';
  t.doesNotThrow(() => validatePolicy(policy, 'example-policy.yaml'));
});
