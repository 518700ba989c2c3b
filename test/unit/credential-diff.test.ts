// snapshot diff's credential section: whose sessions a new snapshot ends, by the agent's own rule.
import t from 'tap';
import { join } from 'node:path';
import { credentialChanges, credentialsOf, describeCounts, type CredentialChange } from '../../src/decide/credential-diff.js';
import { buildIndex, PrincipalKind, principalOf, type PolicyIndex } from '../../src/decide/policy-index.js';
import { credentialStillValid } from '../../src/broker/credentials.js';
import type { SnapshotPayload } from '../../src/policy/schema.js';
import { fixturePayload, ROOT } from '../helpers/policy.js';

const EXAMPLE = join(ROOT, 'config', 'example-policy.yaml');
const sha = (c: string) => 'sha256:' + c.repeat(64);
const FP = sha('f');

const user = (p: SnapshotPayload, id: string) => p.users!.find((u) => u.id === id)!;
const thing = (p: SnapshotPayload, id: string) => p.things!.find((x) => x.id === id)!;

type Edit = (p: SnapshotPayload) => void;
type Case = [label: string, before: Edit | null, after: Edit, expected: Partial<CredentialChange>[]];
const cases: Case[] = [
  ['the same snapshot', null, () => {}, []],
  ['a user revoked', null, (p) => { user(p, 'op-bob').revoked = true; }, [{ principal: 'op-bob', kind: 'user', change: 'revoked', dropped: { password: 1 }, added: {} }]],
  ['an API key removed', null, (p) => { p.apiKeys = []; }, [{ principal: 'key-erp', kind: 'apiKey', change: 'removed', dropped: { secret: 1 }, added: {} }]],
  ['a device token rotated', null, (p) => { thing(p, 'mixer-1').tokenHashes = [sha('a')]; }, [{ principal: 'mixer-1', change: 'changed', dropped: { token: 1 }, added: { token: 1 } }]],
  ['a second token added: no session ends', null, (p) => { thing(p, 'oven-1').tokenHashes!.push(sha('b')); }, [{ principal: 'oven-1', change: 'changed', dropped: {}, added: { token: 1 } }]],
  ['a password changed', null, (p) => { user(p, 'tech-anna').passwordHash = user(p, 'op-bob').passwordHash; }, [{ principal: 'tech-anna', change: 'changed', dropped: { password: 1 }, added: { password: 1 } }]],
  ['a personal access token withdrawn', (p) => { user(p, 'tech-anna').tokenHashes = [sha('c'), sha('d')]; }, (p) => { user(p, 'tech-anna').tokenHashes = [sha('d')]; },
    [{ principal: 'tech-anna', change: 'changed', dropped: { token: 1 }, added: {} }]],
  ['an application secret changed', null, (p) => { p.applications![0]!.secretHash = sha('e'); }, [{ principal: 'dashboard', kind: 'application', change: 'changed', dropped: { secret: 1 }, added: { secret: 1 } }]],
  ['a device certificate withdrawn', (p) => { thing(p, 'oven-1').certFingerprints = [FP]; }, (p) => { thing(p, 'oven-1').certFingerprints = []; },
    [{ principal: 'oven-1', kind: 'device', change: 'changed', dropped: { certificate: 1 }, added: {} }]],
  ['a device moved out of the gateway\'s resource groups', null, (p) => { thing(p, 'chiller-1').resourceGroup = 'line-2'; },
    [{ principal: 'chiller-1', change: 'unserved', dropped: { token: 1 }, added: {} }]],
  ['a privileged gateway made standard: the devices of other groups', (p) => { p.gateway = { ...p.gateway, role: 'privileged' }; }, (p) => { p.gateway = { ...p.gateway, role: 'standard' }; },
    [{ principal: 'oven-2', change: 'unserved', dropped: { token: 1 } }]],
  ['a device the gateway did not serve had no session', null, (p) => { thing(p, 'oven-2').tokenHashes = [sha('1')]; }, []],
  ['a principal revoked before had no session', (p) => { user(p, 'op-bob').revoked = true; }, (p) => { p.users = p.users!.filter((u) => u.id !== 'op-bob'); }, []],
];

const payloads = (before: Edit | null, after: Edit): [SnapshotPayload, SnapshotPayload] => {
  const a = fixturePayload(EXAMPLE, 1);
  before?.(a);
  const b = structuredClone(a);
  b.version = 2;
  after(b);
  return [a, b];
};

t.test('credential changes', async (t) => {
  for (const [label, before, after, expected] of cases) {
    const [a, b] = payloads(before, after);
    const got = credentialChanges(buildIndex(a), buildIndex(b));
    t.equal(got.length, expected.length, `${label}: ${expected.length} change(s)`, { got });
    expected.forEach((e, i) => t.match(got[i], e, `${label}: ${e.principal}`));
  }
});

/** The agent's rule, as dropStaleSessions applies it to a session of `id` on `credential`. */
function agentKeeps(b: PolicyIndex, id: string, kind: PrincipalKind, credential: string): boolean {
  const n = b.ids.get(id);
  const unserved = kind === PrincipalKind.Device && (n === undefined || b.thingServed[n] !== 1);
  return !unserved && credentialStillValid(b, id, credential);
}

t.test('agrees with the agent\'s credentialStillValid for every session snapshot a allows', async (t) => {
  let checked = 0;
  for (const [label, before, after] of cases) {
    const [pa, pb] = payloads(before, after);
    const a = buildIndex(pa);
    const b = buildIndex(pb);
    const changes = new Map(credentialChanges(a, b).map((c) => [c.principal, c]));
    for (const id of a.ids.keys()) {
      const p = principalOf(a, id)!;
      if (p.revoked || p.kind === PrincipalKind.Gateway) continue;
      if (p.kind === PrincipalKind.Device && a.thingServed[a.ids.get(id)!] !== 1) continue;
      const ends: Record<string, number> = {};
      for (const c of credentialsOf(p)) {
        checked++;
        if (!agentKeeps(b, id, p.kind, c.value)) ends[c.type] = (ends[c.type] ?? 0) + 1;
      }
      const c = changes.get(id);
      t.same(c ? { ...c.dropped } : {}, ends, `${label}: ${id}`);
    }
  }
  t.ok(checked > 100, `${checked} credentials checked`);
});

t.test('describeCounts', async (t) => {
  t.equal(describeCounts({}), '');
  t.equal(describeCounts({ token: 2, password: 1 }), '1 password, 2 tokens');
  t.equal(describeCounts({ certificate: 1, secret: 3 }), '3 secrets, 1 certificate');
});
