// The summary `snapshot sign` ends with: gateway, things served, principals by kind, roles, expiry.
import t from 'tap';
import { signSummary } from '../../src/cli/snapshot-summary.js';
import { fixturePayload } from '../helpers/policy.js';
import { join } from 'node:path';
import { ROOT } from '../helpers/policy.js';

const example = () => fixturePayload(join(ROOT, 'config', 'example-policy.yaml'), 2, Date.parse('2035-12-01T00:00:00Z'));

t.test('the example policy', async (t) => {
  t.same(signSummary(example()), [
    '  gateway     gw-plant-1 (standard), resource groups line-1',
    '  things      4 served of 5',
    '  principals  4 users, 1 API key, 1 application, 5 devices; 0 revoked',
    '  roles       5 roles: admin: 1 user; technician (PARTNER): 1 user; operator (CUSTOMER): 1 user; viewer (CUSTOMER): 1 user; ibm-app-visualization (ORGANIZATION): 1 application',
    '  modules     CONNECTED_FIELD_SERVICE',
    '  expires     2036-01-01T00:00:00.000Z (31 days after issue at 2035-12-01T00:00:00.000Z)',
  ]);
});

t.test('a privileged gateway serves every thing; revoked principals, unused roles, none', async (t) => {
  const p = example();
  p.gateway = { ...p.gateway, role: 'privileged' };
  p.users![2]!.role = 'none';
  p.users![3]!.revoked = true;
  p.things![0]!.revoked = true;
  p.expiresAt = p.issuedAt + 3 * 3_600_000;
  const s = signSummary(p).join('\n');
  t.match(s, /gateway     gw-plant-1 \(privileged\), serves every thing/);
  t.match(s, /things      5 served of 5/);
  t.match(s, /; 2 revoked/);
  t.match(s, /none: 1 user; .*operator \(CUSTOMER\): held by nobody/);
  t.match(s, /expires     .*\(3 hours after issue/);
});

t.test('one screen whatever the policy: at most 8 roles by name', async (t) => {
  const p = example();
  for (let i = 0; i < 40; i++) p.roles!.push({ name: `r${i}`, userType: 'CUSTOMER', permissions: [] });
  const lines = signSummary(p);
  t.equal(lines.length, 6);
  t.match(lines[3], /^  roles       45 roles: admin: 1 user; .*; r2 \(CUSTOMER\): held by nobody; \+37 more$/);
});
