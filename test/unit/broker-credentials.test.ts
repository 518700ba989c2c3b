// Credential checks against the snapshot: constant-time hashes, scrypt with a cache of successes.
import t from 'tap';
import { CredentialChecker, credentialStillValid } from '../../src/broker/credentials.js';
import { RateLimiter } from '../../src/broker/rate-limit.js';
import { buildIndex } from '../../src/decide/policy-index.js';
import { scryptHash, sha256Hash } from '../../src/policy/credentials.js';
import { fixturePayload } from '../helpers/policy.js';

const payload = fixturePayload('decide-policy.yaml');
const pw = scryptHash('s3cret', { logN: 10 });
payload.users!.find((u) => u.id === 'u-cust1')!.passwordHash = pw;
payload.users!.find((u) => u.id === 'u-cust1')!.tokenHashes = [sha256Hash('pat-token')];
const index = buildIndex(payload);

t.test('credential checks', async (t) => {
  const c = new CredentialChecker(10);
  const ok = await c.check(index, 'u-cust1', Buffer.from('s3cret'));
  t.match(ok, { ok: true, credential: pw }, 'password (scrypt)');
  t.equal(c.stats().slowChecks, 1);
  t.match(await c.check(index, 'u-cust1', Buffer.from('s3cret')), { ok: true }, 'again');
  t.equal(c.stats().slowChecks, 1, 'the second check is served from the cache');
  t.equal(c.stats().hits, 1);
  t.match(await c.check(index, 'u-cust1', Buffer.from('pat-token')), { ok: true, credential: sha256Hash('pat-token') }, 'personal access token (sha256)');
  t.match(await c.check(index, 'u-cust1', Buffer.from('wrong')), { ok: false, returnCode: 4, reason: 'BAD_CREDENTIALS' });
  t.equal(c.stats().slowChecks, 2, 'failures are never cached');
  t.match(await c.check(index, 't-1', Buffer.from('tok')), { ok: true }, 'device token');
  t.match(await c.check(index, 'k-org', Buffer.from('tok')), { ok: true }, 'API key secret');
  t.match(await c.check(index, 'nobody', Buffer.from('x')), { ok: false, returnCode: 4, reason: 'UNKNOWN_PRINCIPAL' });
  t.match(await c.check(index, 'u-revoked', Buffer.from('x')), { ok: false, returnCode: 5, reason: 'REVOKED' });
  t.match(await c.check(index, 'gw-test', Buffer.from('x')), { ok: false, returnCode: 4 }, 'the gateway identity has no credentials');
  t.match(await c.check(index, 'u-cust1', undefined), { ok: false, returnCode: 4 }, 'no password');
  t.match(await c.check(index, 'u-admin', Buffer.from('x')), { ok: false }, 'a user without credentials cannot log in');
});

t.test('a cached success is not honoured once the snapshot changes the password', async (t) => {
  const c = new CredentialChecker(10);
  t.match(await c.check(index, 'u-cust1', Buffer.from('s3cret')), { ok: true });
  const next = fixturePayload('decide-policy.yaml', 2);
  next.users!.find((u) => u.id === 'u-cust1')!.passwordHash = scryptHash('other', { logN: 10 });
  const index2 = buildIndex(next);
  t.match(await c.check(index2, 'u-cust1', Buffer.from('s3cret')), { ok: false }, 'the old password no longer works');
  t.equal(credentialStillValid(index2, 'u-cust1', pw), false, 'sessions authenticated with the old hash are dropped');
  t.equal(credentialStillValid(index, 'u-cust1', pw), true);
  t.equal(credentialStillValid(index, 'u-revoked', 'anonymous'), false, 'revoked: dropped');
  t.equal(credentialStillValid(index, 'gone', 'x'), false, 'removed: dropped');
});

t.test('rate limiter', async (t) => {
  const r = new RateLimiter(3, 60_000);
  t.same([1, 2, 3, 4].map(() => r.take('a', 0)), [true, true, true, false], 'burst of 3, then refused');
  t.equal(r.take('b', 0), true, 'per key');
  t.equal(r.take('a', 20_000), true, 'one token back after a third of the window');
  t.equal(r.take('a', 20_001), false);
  const off = new RateLimiter(0, 60_000);
  t.equal(off.enabled, false);
  t.ok(Array.from({ length: 100 }, () => off.take('a', 0)).every(Boolean), 'limit 0 disables');
});
