// Docs and code must not drift apart: every error and reason code documented, nothing documented
// that does not exist, and docs/policy.schema.json is the validator's schema.
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ERROR_CODES } from '../../src/errors.js';
import { DENY_REASON_CODES } from '../../src/decide/reasons.js';
import { CONNECTION_REFUSAL_REASONS } from '../../src/broker/connection-reasons.js';
import { POLICY_FILE_SCHEMA } from '../../src/policy/schema.js';
import { ROOT } from '../helpers/policy.js';
import { brokenLinks } from '../helpers/readme-steps.js';

const codesIn = (file: string, prefix: RegExp) =>
  [...readFileSync(join(ROOT, file), 'utf8').matchAll(/^\| `([A-Z_]+)` \|/gm)].map((m) => m[1]!).filter((c) => prefix.test(c));

t.test('docs/errors.md documents exactly the declared error codes', async (t) => {
  t.same(codesIn('docs/errors.md', /^EW_/).sort(), Object.keys(ERROR_CODES).sort());
});

t.test('docs/reasons.md documents exactly the reason codes: decisions and refused connections', async (t) => {
  t.same(codesIn('docs/reasons.md', /./).sort(), [...DENY_REASON_CODES, ...CONNECTION_REFUSAL_REASONS].sort());
});

t.test('the agent emits no reason that docs/reasons.md lacks', async (t) => {
  // Every reason the source writes as a literal: `reason: 'X'`, refuse(n, 'X'), refuse(client, 'X'),
  // refused(client, 'X'), and a refusal before MQTT: refuseSocket({ source }, 'X') / refused({ source }, 'X').
  const known = new Set<string>([...DENY_REASON_CODES, ...CONNECTION_REFUSAL_REASONS]);
  const emitted = new Map<string, string>();
  const walk = (dir: string): string[] => readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
  for (const file of walk(join(ROOT, 'src'))) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/(?:reason: |refuse\(\d, |refuse\(client, |refused\(client, |\}, )'([A-Z][A-Z_]+)'/g)) emitted.set(m[1]!, file);
  }
  t.ok(emitted.size >= 20, `${emitted.size} reasons found in the source`);
  for (const [reason, file] of emitted) t.ok(known.has(reason), `${reason} (${file.slice(ROOT.length + 1)}) is documented`);
});

t.test('README links docs/reasons.md, which lists every reason code (the test above)', async (t) => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  t.match(readme, '](docs/reasons.md)');
});

t.test('every relative link in README.md, docs/*.md and bench/README.md resolves in the repository', async (t) => {
  const docs = readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`);
  t.same(brokenLinks(ROOT, ['README.md', 'bench/README.md', ...docs]), []);
});

t.test('docs/policy.schema.json is the schema the validator uses (regenerate: edgewarden policy schema)', async (t) => {
  const committed = JSON.parse(readFileSync(join(ROOT, 'docs', 'policy.schema.json'), 'utf8'));
  t.same(committed, JSON.parse(JSON.stringify(POLICY_FILE_SCHEMA)));
});
