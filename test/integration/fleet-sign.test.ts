// `edgewarden fleet sign` (issue 14), the real command on real files: one signed snapshot per gateway
// holding only its slice; a rerun issues nothing for an unchanged slice; a change re-issues only the
// gateways it touches, with a higher version and a diff summary; a clock set back is refused; a
// gateway that left the fleet is removed; a damaged file is issued again; a stolen gateway's snapshot
// holds no credential of another site.
import t from 'tap';
import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cli } from '../helpers/cli.js';

const H = (n: number) => 'sha256:' + n.toString(16).padStart(64, '0');
const PASSWORD = (n: number) => `scrypt:15:8:1:${'s'.repeat(15)}${n % 10}:${'h'.repeat(42)}${n % 10}`;

const tenant = (bobToken: string) => `
formatVersion: 1
tenant: acme
modules: [CONNECTED_FIELD_SERVICE]
validity: { validFor: 30d }
organization: { id: org, name: ACME }
customers: [{ id: c1, name: Customer One }, { id: c2, name: Customer Two }]
things:
  - { id: t1, name: Oven 1, customer: c1, resourceGroup: site-a, tokenHashes: ['${H(1)}'] }
  - { id: t2, name: Oven 2, customer: c2, resourceGroup: site-b, tokenHashes: ['${H(2)}'] }
  - { id: t3, customer: c1, resourceGroup: site-c, certFingerprints: ['${H(3)}'] }
roles:
  - { name: viewer, userType: CUSTOMER, description: reads, permissions: [READ_THING] }
users:
  - { id: admin, name: Ada Admin, userType: ORGANIZATION, entity: org, role: admin, passwordHash: '${PASSWORD(1)}' }
  - { id: alice, name: Alice Example, userType: CUSTOMER, entity: c1, role: viewer, passwordHash: '${PASSWORD(2)}', tokenHashes: ['${H(11)}'] }
  - { id: bob, name: Bob Example, userType: CUSTOMER, entity: c2, role: viewer, tokenHashes: ['${bobToken}'] }
`;

const FLEET = `
formatVersion: 1
gateways:
  - { id: gw-a, role: standard, resourceGroups: [site-a] }
  - { id: gw-b, role: standard, resourceGroups: [site-b] }
  - { id: gw-c, role: standard, resourceGroups: [site-c] }
`;

const T0 = '2027-01-01T00:00:00Z';
const at = (days: number, hours = 0) => new Date(Date.parse(T0) + days * 86_400_000 + hours * 3_600_000).toISOString();

interface Report {
  counts: Record<string, number>;
  removed: string[];
  gateways: { gateway: string; outcome: string; version: number; bytes: number; things: number; principals: number; changes?: Record<string, number> }[];
}

t.test('fleet sign: slices, versions, change, clock, removal, repair', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ew-fleet-sign-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, 'fleet');
  const keyDir = join(dir, 'keys');
  t.equal(cli(['keygen', '-o', keyDir, '-n', 'cloud']).code, 0);
  const key = join(keyDir, 'cloud.key.pem');
  const pub = join(keyDir, 'cloud.pub.pem');
  const tenantFile = join(dir, 'tenant.yaml');
  const fleetFile = join(dir, 'fleet.yaml');
  writeFileSync(tenantFile, tenant(H(12)));
  writeFileSync(fleetFile, FLEET);
  const sign = (issuedAt: string, ...more: string[]) => cli(['fleet', 'sign', tenantFile, fleetFile, '-k', key, '-o', out, '--issued-at', issuedAt, ...more]);
  const signJson = (issuedAt: string): Report => {
    const r = sign(issuedAt, '--json');
    t.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as Report;
  };
  const manifest = () => JSON.parse(readFileSync(join(out, 'fleet-manifest.json'), 'utf8')) as { lastIssuedAt: number; gateways: Record<string, { version: number; sha256: string }> };
  const fileSha = (gw: string) => createHash('sha256').update(readFileSync(join(out, `${gw}.cose`))).digest('hex');

  // --- first run: every gateway new, each snapshot acceptable by its gateway only -------------------
  const first = sign(T0);
  t.equal(first.code, 0, first.stderr);
  t.match(first.stdout, /gw-a {2}new {2}version 1798761600000 {2}1 things, 2 principals, \d+ bytes: first snapshot/);
  t.match(first.stdout, /issued 3 \(3 new\), unchanged 0, removed 0 -> /);
  t.match(first.stdout, /every gateway holds the credentials of 1 principal that reach every thing \(organization-wide, or READ_ALL_THINGS\): admin; /);
  for (const gw of ['gw-a', 'gw-b', 'gw-c']) {
    const v = cli(['snapshot', 'verify', join(out, `${gw}.cose`), '-t', pub, '--gateway', gw, '--now', at(1)]);
    t.equal(v.code, 0, `${gw}: ${v.stderr}`);
    t.match(v.stdout, `acceptable by gateway ${gw}`);
  }
  const wrong = cli(['snapshot', 'verify', join(out, 'gw-a.cose'), '-t', pub, '--gateway', 'gw-b', '--now', at(1)]);
  t.match(wrong.stderr, /EW_SNAPSHOT_WRONG_GATEWAY/);
  const m1 = manifest();
  t.equal(m1.gateways['gw-a']!.version, Date.parse(T0), 'the version is the issue time in ms');
  t.equal(m1.gateways['gw-a']!.sha256, fileSha('gw-a'), 'the manifest names each file by its sha256');

  // --- a stolen gateway's snapshot: only its site, no other site's credentials, no display names -------
  const a = readFileSync(join(out, 'gw-a.cose')).toString('latin1');
  for (const other of [H(2), H(3), H(12)]) t.notOk(a.includes(other), `gw-a's snapshot does not hold ${other.slice(0, 16)}...`);
  t.ok(a.includes(H(1)) && a.includes(H(11)), 'it holds its own device\'s and user\'s credentials');
  for (const name of ['Alice Example', 'Bob Example', 'Oven 1', 'Customer One', 'reads']) t.notOk(a.includes(name), `no display name or description: ${name}`);
  const inspect = JSON.parse(cli(['snapshot', 'inspect', join(out, 'gw-a.cose'), '-t', pub]).stdout) as { users: { id: string; revoked?: boolean; passwordHash?: string }[]; things: { id: string }[] };
  t.same(inspect.things.map((x) => x.id), ['t1']);
  t.same(inspect.users.map((u) => u.id).sort(), ['admin', 'alice']);

  // --- rerun a day later: nothing changed, nothing issued, files untouched ------------------------
  const before = fileSha('gw-b');
  const rerun = signJson(at(1));
  t.same(rerun.counts, { new: 0, changed: 0, renewed: 0, rekeyed: 0, repaired: 0, unchanged: 3 });
  t.equal(fileSha('gw-b'), before);
  t.same(manifest(), m1, 'the manifest is unchanged');

  // --- bob's token changes: only site-b's gateway is issued again ---------------------------------
  writeFileSync(tenantFile, tenant(H(13)));
  const change = sign(at(2));
  t.equal(change.code, 0, change.stderr);
  t.match(change.stdout, /gw-b {2}changed {2}version 1798934400000 .*: 1 credential change \(sessions of 1 principal end\)/);
  t.match(change.stdout, /issued 1 \(1 changed\), unchanged 2, removed 0/);
  t.notMatch(change.stdout, /gw-a {2}|gw-c {2}/, 'the other gateways are not listed');
  t.ok(manifest().gateways['gw-b']!.version > m1.gateways['gw-b']!.version, 'gw-b\'s version increases');
  t.equal(manifest().gateways['gw-a']!.version, m1.gateways['gw-a']!.version, 'gw-a keeps its version');

  // --- a clock set back is refused, and nothing is written -----------------------------------------
  const m2 = readFileSync(join(out, 'fleet-manifest.json'), 'utf8');
  writeFileSync(tenantFile, tenant(H(14)));
  const back = sign(at(1));
  t.equal(back.code, 1);
  t.match(back.stderr, /EW_CLOCK_BEHIND: .*fleet-manifest\.json: the issue time 2027-01-02T00:00:00\.000Z is before 2027-01-03T00:00:00\.000Z/);
  t.equal(readFileSync(join(out, 'fleet-manifest.json'), 'utf8'), m2, 'the manifest is untouched');
  writeFileSync(tenantFile, tenant(H(13)));

  // --- renewal: less than half of the validity left ------------------------------------------------
  const renew = signJson(at(17));
  t.same(renew.gateways.map((g) => g.outcome), ['renewed', 'unchanged', 'renewed'], 'gw-a and gw-c (issued at day 0) renew at day 17; gw-b (day 2) not yet');

  // --- a damaged file is issued again; a gateway that left the fleet is removed ---------------------
  writeFileSync(join(out, 'gw-b.cose'), 'torn');
  writeFileSync(fleetFile, FLEET.replace(/ {2}- \{ id: gw-c.*\n/, ''));
  const repair = signJson(at(18));
  t.same(repair.gateways.map((g) => [g.gateway, g.outcome]), [['gw-a', 'unchanged'], ['gw-b', 'repaired']]);
  t.same(repair.removed, ['gw-c']);
  t.notOk(existsSync(join(out, 'gw-c.cose')), 'gw-c\'s file is removed');
  t.same(Object.keys(manifest().gateways).sort(), ['gw-a', 'gw-b']);
  t.equal(cli(['snapshot', 'verify', join(out, 'gw-b.cose'), '-t', pub, '--gateway', 'gw-b', '--now', at(18, 1)]).code, 0);
});

t.test('fleet sign: the same snapshots from signing threads as from the main thread', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ew-fleet-threads-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  t.equal(cli(['keygen', '-o', dir, '-n', 'k']).code, 0);
  writeFileSync(join(dir, 'tenant.yaml'), tenant(H(12)));
  // CSV: 60 gateways over the three sites (many rows, so both threads get work).
  let csv = '# the fleet\nid,role,resourceGroups\n';
  for (let i = 0; i < 60; i++) csv += `gw-${i},standard,${['site-a', 'site-b', 'site-c'][i % 3]}\n`;
  csv += 'gw-hq,privileged,\n';
  writeFileSync(join(dir, 'fleet.csv'), csv);
  const run = (threads: string, out: string) => cli(['fleet', 'sign', join(dir, 'tenant.yaml'), join(dir, 'fleet.csv'), '-k', join(dir, 'k.key.pem'), '-o', join(dir, out), '--issued-at', T0, '--threads', threads, '--limit', '0']);
  const r0 = run('0', 'main');
  const r2 = run('2', 'threads');
  t.equal(r0.code, 0, r0.stderr);
  t.equal(r2.code, 0, r2.stderr);
  t.match(r0.stdout, /signed in one thread/);
  t.match(r2.stdout, /2 signing threads/);
  t.match(r2.stdout, /issued 61 \(61 new\)/);
  const entries = (out: string) => JSON.parse(readFileSync(join(dir, out, 'fleet-manifest.json'), 'utf8')).gateways as Record<string, { sha256: string }>;
  t.same(entries('threads'), entries('main'), 'byte-identical snapshots (Ed25519 signatures are deterministic)');
  const hq = JSON.parse(cli(['snapshot', 'inspect', join(dir, 'threads', 'gw-hq.cose'), '-t', join(dir, 'k.pub.pem')]).stdout) as { things: unknown[]; gateway: { role: string } };
  t.equal(hq.things.length, 3, 'the privileged gateway serves every thing');
  t.equal(hq.gateway.role, 'privileged');
});

t.test('fleet sign: a CSV error names the line, the row and the field; nothing is written', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ew-fleet-csv-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  t.equal(cli(['keygen', '-o', dir, '-n', 'k']).code, 0);
  writeFileSync(join(dir, 'tenant.yaml'), tenant(H(12)));
  writeFileSync(join(dir, 'fleet.csv'), 'id,role,resourceGroups\ngw-a,standard,site-a\n\ngw-a,standard,site-b;site-z\n');
  const r = cli(['fleet', 'sign', join(dir, 'tenant.yaml'), join(dir, 'fleet.csv'), '-k', join(dir, 'k.key.pem'), '-o', join(dir, 'out')]);
  t.equal(r.code, 1);
  t.match(r.stderr, /EW_POLICY_INVALID: .*fleet\.csv: fleet file is invalid \(2 problems\)/);
  t.match(r.stderr, /fleet\.csv: line 4 \(gateways\[1\]\)\.id: duplicate gateway id "gw-a" \(first at gateways\[0\]\)/);
  t.match(r.stderr, /fleet\.csv: line 4 \(gateways\[1\]\)\.resourceGroups\[1\]: unknown resource group "site-z"/);
  t.notOk(existsSync(join(dir, 'out', 'fleet-manifest.json')), 'no manifest written');

  writeFileSync(join(dir, 'fleet.csv'), 'id,kind,resourceGroups\ngw-a,standard,site-a\n');
  const h = cli(['fleet', 'sign', join(dir, 'tenant.yaml'), join(dir, 'fleet.csv'), '-k', join(dir, 'k.key.pem'), '-o', join(dir, 'out')]);
  t.match(h.stderr, /line 1: the header has no role column/);
  t.match(h.stderr, /line 1: unknown column "kind"/);

  writeFileSync(join(dir, 'tenant.yaml'), tenant(H(12)) + 'gateway: { id: gw-x, role: standard, resourceGroups: [] }\n');
  const g = cli(['fleet', 'sign', join(dir, 'tenant.yaml'), join(dir, 'fleet.csv'), '-k', join(dir, 'k.key.pem'), '-o', join(dir, 'out')]);
  t.match(g.stderr, /tenant\.yaml: gateway: a tenant policy has no gateway section/);
  const u = cli(['fleet', 'sign', join(dir, 'tenant.yaml'), join(dir, 'fleet.csv'), '-k', join(dir, 'k.key.pem'), '-o', join(dir, 'out'), '--threads', 'x']);
  t.equal(u.code, 2, 'a bad --threads is a usage error');
});

t.test('fleet sign: rotating the signing key re-issues every gateway, with the endorsement, acceptable on the old key alone', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ew-fleet-rotate-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  t.equal(cli(['keygen', '-o', dir, '-n', 'old']).code, 0);
  t.equal(cli(['keygen', '-o', dir, '-n', 'new']).code, 0);
  writeFileSync(join(dir, 'tenant.yaml'), tenant(H(12)));
  writeFileSync(join(dir, 'fleet.yaml'), FLEET);
  const out = join(dir, 'fleet');
  const sign = (keyName: string, issuedAt: string, ...more: string[]) =>
    cli(['fleet', 'sign', join(dir, 'tenant.yaml'), join(dir, 'fleet.yaml'), '-k', join(dir, `${keyName}.key.pem`), '-o', out, '--issued-at', issuedAt, '--json', ...more]);
  t.equal(sign('old', T0).code, 0);
  const e = cli(['key', 'endorse', '-k', join(dir, 'old.key.pem'), '--new', join(dir, 'new.pub.pem'), '--retire-in', '30d', '-o', join(dir, 'new.endorsement.cose')]);
  t.equal(e.code, 0, e.stderr);
  const wrongKey = sign('old', at(1), '--endorsement', join(dir, 'new.endorsement.cose'));
  t.equal(wrongKey.code, 2, 'an endorsement of another key than the signing key is a usage error');
  const r = sign('new', at(1), '--endorsement', join(dir, 'new.endorsement.cose'), '-t', join(dir, 'old.pub.pem'));
  t.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout) as Report;
  t.same(report.gateways.map((g) => g.outcome), ['rekeyed', 'rekeyed', 'rekeyed']);
  t.same(report.gateways[0]!.changes, { principalsAdded: 0, principalsRemoved: 0, revoked: 0, reinstated: 0, thingsAdded: 0, thingsRemoved: 0, gains: 0, losses: 0, sessionsEnd: 0, credentialChanges: 0 }, 'diffed against the old-key snapshot: no change');
  const v = cli(['snapshot', 'verify', join(out, 'gw-a.cose'), '-t', join(dir, 'old.pub.pem'), '--gateway', 'gw-a', '--now', at(1, 1)]);
  t.equal(v.code, 0, `a gateway trusting only the old key accepts it: ${v.stderr}`);
  t.match(v.stdout, /endorsed by/);
  t.same(JSON.parse(sign('new', at(2), '--endorsement', join(dir, 'new.endorsement.cose')).stdout).counts.unchanged, 3, 'then unchanged again');
});

t.test('fleet sign: one at a time per fleet directory; a lock left by a process that is gone is taken over', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ew-fleet-lock-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  t.equal(cli(['keygen', '-o', dir, '-n', 'k']).code, 0);
  writeFileSync(join(dir, 'tenant.yaml'), tenant(H(12)));
  writeFileSync(join(dir, 'fleet.yaml'), FLEET);
  const out = join(dir, 'fleet');
  const sign = () => cli(['fleet', 'sign', join(dir, 'tenant.yaml'), join(dir, 'fleet.yaml'), '-k', join(dir, 'k.key.pem'), '-o', out, '--issued-at', T0]);
  // A live edgewarden process holds the lock (its command line names edgewarden, as a fleet sign's does).
  const holder = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)', 'edgewarden-fleet-sign-stand-in'], { stdio: 'ignore' });
  t.teardown(() => holder.kill('SIGKILL'));
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'fleet-sign.lock'), `${holder.pid}\n`);
  const locked = sign();
  t.equal(locked.code, 1);
  t.match(locked.stderr, new RegExp(`EW_STATE_LOCKED: .*fleet-sign\\.lock: another fleet sign \\(pid ${holder.pid}\\) is writing this fleet directory`));
  t.notOk(existsSync(join(out, 'fleet-manifest.json')), 'nothing written');
  await new Promise<void>((resolve) => {
    holder.once('exit', () => resolve());
    holder.kill('SIGKILL');
  });
  const after = sign();
  t.equal(after.code, 0, `the stale lock is taken over: ${after.stderr}`);
  t.notOk(existsSync(join(out, 'fleet-sign.lock')), 'the lock is released at the end');
});
