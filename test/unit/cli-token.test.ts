// `edgewarden token`: a high-entropy token and its sha256 hash, which the broker's check accepts.
import t from 'tap';
import { tokenCommand } from '../../src/cli/token.js';
import { generateToken, hashKind, sha256Hash, verifySha256 } from '../../src/policy/credentials.js';

function run(opts: { json?: boolean }, generate?: () => { token: string; hash: string }): { out: string[]; err: string[]; code: number } {
  const out: string[] = [];
  const err: string[] = [];
  const code = tokenCommand(opts, { out: (s) => out.push(s), err: (s) => err.push(s) }, generate);
  return { out, err, code };
}

t.test('generateToken: 32 random bytes as base64url, and their sha256 hash', async (t) => {
  const { token, hash } = generateToken();
  t.match(token, /^[A-Za-z0-9_-]{43}$/, '43 base64url characters');
  t.equal(Buffer.from(token, 'base64url').length, 32);
  t.equal(hashKind(hash), 'sha256');
  t.equal(hash, sha256Hash(token));
  t.ok(verifySha256(token, hash), 'the hash verifies the token as a connection password');
  const many = new Set(Array.from({ length: 100 }, () => generateToken().token));
  t.equal(many.size, 100, 'never the same twice');
});

t.test('text: the token for the client, the hash for the policy', async (t) => {
  const r = run({}, () => ({ token: 'TOKEN', hash: 'sha256:HASH' }));
  t.equal(r.code, 0);
  t.same(r.err, []);
  t.match(r.out[0], /^token  TOKEN$/);
  t.match(r.out[1], /to the device.*MQTT password.*only this once/);
  t.match(r.out[2], /^hash   sha256:HASH$/);
  t.match(r.out[3], /into the policy: things\[\]\.tokenHashes/);
  t.equal(r.out.join('\n').split('TOKEN').length - 1, 1, 'the token is printed once');
});

t.test('--json', async (t) => {
  const r = run({ json: true });
  const j = JSON.parse(r.out.join('\n')) as { token: string; hash: string };
  t.same(Object.keys(j), ['token', 'hash']);
  t.equal(j.hash, sha256Hash(j.token));
});
