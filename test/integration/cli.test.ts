// The command line end to end: keygen -> sign -> verify/inspect/diff/explain, and bad input.
import t from 'tap';
import { chmodSync, mkdirSync, readFileSync, writeFileSync, truncateSync, statSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { cli } from '../helpers/cli.js';
import { ROOT } from '../helpers/policy.js';

const EXAMPLE = join(ROOT, 'config', 'example-policy.yaml');

t.test('keygen, sign, verify, inspect, explain, diff', async (t) => {
  const dir = t.testdir({});
  const kg = cli(['keygen', '-o', dir, '-n', 'cloud']);
  t.equal(kg.code, 0, kg.stderr);
  const kid = /kid (\S+)/.exec(kg.stdout)?.[1];
  t.ok(kid, 'prints the kid');
  t.equal(statSync(join(dir, 'cloud.key.pem')).mode & 0o777, 0o600, 'private key is 0600');
  t.equal(cli(['keygen', '-o', dir, '-n', 'cloud']).code, 2, 'refuses to overwrite a key');
  // --force over a key file someone made world-readable: the new private key is 0600 all the same.
  const other = join(dir, 'forced');
  mkdirSync(other);
  writeFileSync(join(other, 'old.key.pem'), 'old', { mode: 0o644 });
  writeFileSync(join(other, 'old.pub.pem'), 'old');
  chmodSync(join(other, 'old.key.pem'), 0o644);
  t.equal(cli(['keygen', '-o', other, '-n', 'old', '--force']).code, 0);
  t.equal(statSync(join(other, 'old.key.pem')).mode & 0o777, 0o600, '--force leaves the private key 0600');

  const key = join(dir, 'cloud.key.pem');
  const pub = join(dir, 'cloud.pub.pem');
  const v1 = join(dir, 'v1.cose');
  const sign = cli(['snapshot', 'sign', EXAMPLE, '--key', key, '--version', '1', '-o', v1]);
  t.equal(sign.code, 0, sign.stderr);
  t.match(sign.stderr, /signed snapshot version 1 for gateway gw-plant-1/);

  const verify = cli(['snapshot', 'verify', v1, '--trust', pub, '--json']);
  t.equal(verify.code, 0, verify.stderr);
  t.match(JSON.parse(verify.stdout), { valid: true, kid, version: 1, gateway: 'gw-plant-1' });
  const accept = cli(['snapshot', 'verify', v1, '--trust', pub, '--gateway', 'gw-plant-1', '--held-version', '1']);
  t.equal(accept.code, 1, 'same version as held is refused');
  t.match(accept.stderr, /EW_SNAPSHOT_DUPLICATE/);
  const foreign = cli(['snapshot', 'verify', v1]);
  t.equal(foreign.code, 1, 'not trusted by the demo key');
  t.match(foreign.stderr, /EW_SNAPSHOT_UNKNOWN_KID.*v1\.cose/);

  const inspect = cli(['snapshot', 'inspect', v1, '--trust', pub]);
  t.equal(inspect.code, 0, inspect.stderr);
  const view = JSON.parse(inspect.stdout);
  t.equal(view.signature, 'verified');
  t.equal(view.alg, 'EdDSA');
  t.equal(view.expiresAt, '2036-01-01T00:00:00.000Z');
  t.notMatch(inspect.stdout, /anna-pass/, 'no plaintext secrets anywhere');
  t.match(cli(['snapshot', 'inspect', v1]).stdout, /NOT verified: EW_SNAPSHOT_UNKNOWN_KID/);

  const allow = cli(['explain', '-s', v1, '-t', pub, '-p', 'tech-anna', '-P', 'EXECUTE_THING_COMMAND', '--thing', 'oven-1']);
  t.equal(allow.code, 0);
  t.match(allow.stdout, /ALLOW/);
  const deny = cli(['explain', '-s', v1, '-t', pub, '-p', 'op-bob', '-P', 'UPDATE_FIRMWARE', '--thing', 'oven-1', '--json']);
  t.equal(deny.code, 3, 'exit 3 on deny');
  t.match(JSON.parse(deny.stdout), { decision: 'deny', reason: 'NOT_GRANTED' });

  // v2: revoke op-bob, give the technician firmware on the dairy, drop a thing
  const policy = readFileSync(EXAMPLE, 'utf8')
    .replace('  - id: op-bob\n', '  - id: op-bob\n    revoked: true\n')
    .replace('    customers: [c-bakery]        # customers assigned to this partner', '    customers: [c-bakery, c-dairy]');
  const p2 = join(dir, 'policy-v2.yaml');
  writeFileSync(p2, policy);
  const v2 = join(dir, 'v2.cose');
  t.equal(cli(['snapshot', 'sign', p2, '--key', key, '--version', '2', '-o', v2]).code, 0);
  const diff = cli(['snapshot', 'diff', v1, v2, '--trust', pub]);
  t.equal(diff.code, 0, diff.stderr);
  t.match(diff.stdout, /snapshot 1 -> 2/);
  t.match(diff.stdout, /revoked: op-bob/);
  t.match(diff.stdout, /- user op-bob loses EXECUTE_THING_COMMAND on mixer-1, oven-1/);
  t.match(diff.stdout, /\+ user tech-anna gains UPDATE_FIRMWARE on chiller-1, pasteurizer-1/);
  t.match(diff.stdout, /^credential changes: the sessions of 1 principal end when the gateway takes the new snapshot\n! user op-bob revoked: its sessions end \(1 password\)$/m);
  const dj = JSON.parse(cli(['snapshot', 'diff', v1, v2, '--trust', pub, '--json']).stdout);
  t.same(dj.revoked, ['op-bob']);
  t.same(dj.credentials, [{ principal: 'op-bob', kind: 'user', change: 'revoked', dropped: { password: 1 }, added: {} }]);
  t.ok(dj.changes.some((c: { principal: string; change: string }) => c.principal === 'tech-anna' && c.change === 'gains'));

  // --plain-cbor: the same payload as plain CBOR maps; it verifies to the same content.
  const v1plain = join(dir, 'v1-plain.cose');
  const signPlain = cli(['snapshot', 'sign', EXAMPLE, '--key', key, '--version', '1', '-o', v1plain, '--plain-cbor', '--issued-at', view.issuedAt]);
  t.equal(signPlain.code, 0, signPlain.stderr);
  t.ok(!readFileSync(v1plain).includes(Buffer.from([0xd8, 0x33])), 'no packed-string table (tag 51) in the plain form');
  t.ok(readFileSync(v1).includes(Buffer.from([0xd8, 0x33])), 'the default form has one');
  const plainView = JSON.parse(cli(['snapshot', 'inspect', v1plain, '--trust', pub]).stdout);
  t.same(plainView, view, 'inspect shows the same snapshot');
  const same = cli(['snapshot', 'diff', v1, v1plain, '--trust', pub]);
  t.equal(same.code, 0, 'and diff finds them comparable');
  t.match(same.stdout, /^no credential changes: no session ends$/m);
});

t.test('sign: likely mistakes are warnings with their field, --strict refuses them and writes nothing; the summary', async (t) => {
  const demoKey = join(ROOT, 'config', 'demo-keys', 'demo.key.pem');
  const dir = t.testdir({
    'typos.yaml': readFileSync(EXAMPLE, 'utf8')
      .replace('resourceGroups: [line-1]', 'resourceGroups: [line-1, lnie-2]')
      .replace('    role: technician\n', '    role: technican\n')
      .replace('permissions: [READ_THING, READ_CLOUD_STATUS, READ_HISTORICAL_DATA]', 'permissions: [READ_THING, READ_CLOUD_STATUS, READ_HISTORICAL_DATA, PLACE_ORDER]'),
  });
  const typos = join(dir, 'typos.yaml');
  const out = join(dir, 'out.cose');
  const strict = cli(['snapshot', 'sign', typos, '-k', demoKey, '--version', '2', '-o', out, '--strict']);
  t.equal(strict.code, 1, '--strict: exit 1');
  t.match(strict.stderr, /EW_POLICY_INVALID: .*typos\.yaml: policy has 3 warnings, and --strict refuses it/);
  t.match(strict.stderr, /typos\.yaml: gateway\.resourceGroups\[1\]: no thing is in resource group "lnie-2"/);
  t.match(strict.stderr, /typos\.yaml: users\[1\]\.role: role "technican" is not defined/);
  t.match(strict.stderr, /typos\.yaml: roles\[2\]\.permissions\[3\]: PLACE_ORDER needs one of the modules/);
  t.notOk(existsSync(out), '--strict: nothing written');

  const lax = cli(['snapshot', 'sign', typos, '-k', demoKey, '--version', '2', '-o', out]);
  t.equal(lax.code, 0, lax.stderr);
  t.match(lax.stderr, /^warning: .*typos\.yaml: gateway\.resourceGroups\[1\]: no thing is in resource group "lnie-2"/m);
  t.match(lax.stderr, /warnings    3 \(above\); snapshot sign --strict refuses a policy with warnings/);
  t.ok(existsSync(out), 'without --strict the snapshot is written');

  const clean = cli(['snapshot', 'sign', EXAMPLE, '-k', demoKey, '--version', '2', '-o', out, '--strict']);
  t.equal(clean.code, 0, clean.stderr);
  t.notMatch(clean.stderr, /^(warning:|  warnings )/m);
  t.match(clean.stderr, /^signed snapshot version 2 for gateway gw-plant-1 \(standard\), kid \S+ -> .*out\.cose \(\d+ bytes\)$/m);
  t.match(clean.stderr, /^  things      4 served of 5$/m);
  t.match(clean.stderr, /^  principals  4 users, 1 API key, 1 application, 5 devices; 0 revoked$/m);
  t.match(clean.stderr, /^  roles       5 roles: admin: 1 user; technician \(PARTNER\): 1 user;/m);
  t.match(clean.stderr, /^  expires     2036-01-01T00:00:00\.000Z/m);
  t.ok(clean.stderr.trim().split('\n').length <= 24, 'one screen');
});

t.test('--version: edgewarden\'s version and the Node version it runs on', async (t) => {
  const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  for (const flag of ['--version', '-V']) {
    const v = cli([flag]);
    t.equal(v.code, 0);
    t.equal(v.stdout.trim(), `${version} (node ${process.versions.node})`, flag);
  }
});

t.test('catalog', async (t) => {
  const table = cli(['catalog']);
  t.equal(table.code, 0);
  t.match(table.stdout, /EXECUTE_THING_COMMAND\s+Thing Remote Control/);
  const json = JSON.parse(cli(['catalog', '--json']).stdout);
  t.equal(json.permissions.length, 104);
  t.equal(JSON.parse(cli(['catalog', '--json', '--legacy']).stdout).permissions.length, 109);
});

t.test('hash', async (t) => {
  const h = cli(['hash'], { input: 'oven-1-token' });
  t.equal(h.stdout.trim(), 'sha256:38fedf34c2dc2cbcf8e19b1fe54327f7905034eb72d77de5784a9edd403a95a0');
  t.match(cli(['hash', '--scrypt'], { input: 'pw\n' }).stdout, /^scrypt:15:8:1:/);
  t.equal(cli(['hash']).code, 2, 'no secret on stdin is a usage error');
});

t.test('token: the hash of the token it prints, as `hash` makes it', async (t) => {
  const r = cli(['token', '--json']);
  t.equal(r.code, 0, r.stderr);
  const { token, hash } = JSON.parse(r.stdout) as { token: string; hash: string };
  t.match(token, /^[A-Za-z0-9_-]{43}$/);
  t.equal(cli(['hash'], { input: token }).stdout.trim(), hash);
  const text = cli(['token']);
  t.match(text.stdout, /^token  [A-Za-z0-9_-]{43}\n.*\nhash   sha256:[0-9a-f]{64}\n/);
  t.notMatch(text.stdout, token, 'a new token every time');
});

t.test('bad input never crashes the CLI: named file, field and reason, non-zero exit', async (t) => {
  const dir = t.testdir({
    'wrong-type.yaml': readFileSync(EXAMPLE, 'utf8').replace('modules: [CONNECTED_FIELD_SERVICE]', 'modules: 42'),
    'missing-key.yaml': readFileSync(EXAMPLE, 'utf8').replace('tenant: acme-machines\n', ''),
    'bomb.yaml': ['a: &a [x,x,x,x,x,x,x,x,x,x]', ...'bcdefghij'.split('').map((c, i) => `${c}: &${c} [${Array(10).fill('*' + 'abcdefghij'[i]).join(',')}]`)].join('\n'),
    'random.cose': Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 2654435761) & 0xff)),
  });
  const demoKey = join(ROOT, 'config', 'demo-keys', 'demo.key.pem');
  const huge = join(dir, 'huge.yaml');
  writeFileSync(huge, 'tenant: x\n');
  truncateSync(huge, 100 * 1024 * 1024);
  const out = join(dir, 'out.cose');
  const cases: [string, string[], RegExp][] = [
    ['wrong type', ['snapshot', 'sign', join(dir, 'wrong-type.yaml'), '-k', demoKey, '--version', '1', '-o', out], /EW_POLICY_INVALID.*\n.*wrong-type\.yaml: modules: must be array, got number/],
    ['missing key', ['snapshot', 'sign', join(dir, 'missing-key.yaml'), '-k', demoKey, '--version', '1', '-o', out], /missing-key\.yaml: tenant: missing required key/],
    ['YAML bomb', ['snapshot', 'sign', join(dir, 'bomb.yaml'), '-k', demoKey, '--version', '1', '-o', out], /EW_POLICY_YAML: .*bomb\.yaml: YAML aliases expand without bound/],
    ['100 MB file', ['snapshot', 'sign', huge, '-k', demoKey, '--version', '1', '-o', out], /EW_POLICY_TOO_LARGE: .*huge\.yaml: 104857600 bytes is more than the 67108864 allowed/],
    ['missing file', ['snapshot', 'sign', join(dir, 'nope.yaml'), '-k', demoKey, '--version', '1', '-o', out], /EW_POLICY_READ: .*nope\.yaml: cannot read: ENOENT/],
    ['bad version', ['snapshot', 'sign', EXAMPLE, '-k', demoKey, '--version', 'two', '-o', out], /--version must be a positive integer/],
    ['not a key', ['snapshot', 'sign', EXAMPLE, '-k', EXAMPLE, '--version', '1', '-o', out], /EW_KEY_READ: .*example-policy\.yaml/],
    ['random snapshot', ['snapshot', 'verify', join(dir, 'random.cose')], /EW_SNAPSHOT_MALFORMED: .*random\.cose: not a COSE_Sign1 snapshot/],
    ['unknown option', ['catalog', '--frobnicate'], /unknown option/],
    ['bad time', ['explain', '-p', 'x', '-P', 'READ_THING', '--at', 'yesterday'], /--at must be an ISO 8601 time/],
  ];
  for (const [label, args, re] of cases) {
    const r = cli(args);
    t.not(r.code, 0, `${label}: non-zero exit`);
    t.notMatch(r.stderr, /unexpected error|at .*\.js:\d+/, `${label}: no stack trace`);
    t.match(r.stderr, re, label);
  }
  t.notOk(existsSync(out), 'nothing written');
});
