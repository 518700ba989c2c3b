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
  t.match(await c.check(index, 'u-revoked', Buffer.from('x')), { ok: false, returnCode: 4, reason: 'BAD_CREDENTIALS' }, 'revoked, told so only with the right password');
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

t.test('guessing is not free: the same work for unknown users, backoff after failures, bounded slow checks', async (t) => {
  const now = { ms: 1_000_000 };
  const c = new CredentialChecker(10, () => now.ms);
  const p2 = fixturePayload('decide-policy.yaml', 3);
  p2.users!.find((u) => u.id === 'u-cust1')!.passwordHash = pw;
  p2.users!.find((u) => u.id === 'u-cust1')!.tokenHashes = [sha256Hash('pat-token')];
  p2.users!.find((u) => u.id === 'u-revoked')!.passwordHash = scryptHash('rev-pass', { logN: 10 });
  p2.users!.find((u) => u.id === 'u-admin')!.passwordHash = scryptHash('adm-pass', { logN: 10 });
  p2.users!.find((u) => u.id === 'u-ops')!.passwordHash = scryptHash('ops-pass', { logN: 10 });
  const idx = buildIndex(p2);
  // Unknown and known-with-a-wrong-password cost one scrypt check each.
  let before = c.stats().slowChecks;
  t.match(await c.check(idx, 'nobody', Buffer.from('x'), '10.0.0.1'), { ok: false, returnCode: 4 });
  t.equal(c.stats().slowChecks - before, 1, 'an unknown username: one slow check');
  before = c.stats().slowChecks;
  t.match(await c.check(idx, 'u-cust1', Buffer.from('x'), '10.0.0.2'), { ok: false, returnCode: 4 });
  t.equal(c.stats().slowChecks - before, 1, 'a known one with a wrong password: one too');
  t.match(await c.check(idx, 'u-revoked', Buffer.from('rev-pass'), '10.0.0.3'), { ok: false, returnCode: 5, reason: 'REVOKED' }, 'revoked: told so with the right password');
  // Backoff per username and address: after 3 failures the next check is refused without work
  // for 1 s, then 2 s, ...; from another address the user is not held up.
  for (let i = 0; i < 3; i++) t.match(await c.check(idx, 'u-cust1', Buffer.from('guess'), '10.1.0.1'), { ok: false, returnCode: 4, reason: 'BAD_CREDENTIALS' });
  t.match(await c.check(idx, 'u-cust1', Buffer.from('guess'), '10.1.0.1'), { reason: 'BAD_CREDENTIALS' }, 'the fourth failure is checked, and starts a wait');
  before = c.stats().slowChecks;
  t.match(await c.check(idx, 'u-cust1', Buffer.from('pat-token'), '10.1.0.1'), { ok: true }, 'a token (sha256, not guessable) is not held up');
  before = c.stats().slowChecks;
  t.match(await c.check(idx, 'u-cust1', Buffer.from('other-guess'), '10.1.0.1'), { ok: false, returnCode: 4, reason: 'BACKOFF' }, 'a password waits, from that address');
  t.equal(c.stats().slowChecks, before, 'without a check');
  t.match(await c.check(idx, 'u-cust1', Buffer.from('s3cret'), '10.9.9.9'), { ok: true }, 'from another address the user gets in');
  now.ms += 1001;
  t.match(await c.check(idx, 'u-cust1', Buffer.from('s3cret'), '10.1.0.1'), { ok: true }, 'after the wait, from the first address too');
  // Backoff per address: one source guessing many usernames gets no more slow checks, but the
  // clients that share its address and present a device token or a password that worked before do.
  for (let i = 0; i < 4; i++) await c.check(idx, `ghost-${i}`, Buffer.from('x'), '192.0.2.7');
  before = c.stats().slowChecks;
  t.match(await c.check(idx, 'ghost-9', Buffer.from('x'), '192.0.2.7'), { reason: 'BACKOFF' }, 'a fifth unknown username: refused without work');
  t.match(await c.check(idx, 't-1', Buffer.from('tok'), '192.0.2.7'), { ok: true }, 'a device token from the same address still works');
  t.match(await c.check(idx, 'u-cust1', Buffer.from('s3cret'), '192.0.2.7'), { ok: true }, 'a password that worked before (cached) too');
  t.match(await c.check(idx, 'u-admin', Buffer.from('adm-pass'), '192.0.2.7'), { reason: 'BACKOFF' }, 'a password never checked before waits');
  t.equal(c.stats().slowChecks, before, 'no slow check for the backed-off address');
  t.equal(c.stats().refusedBackoff, 3, 'refusals counted');
  // The gateway's own programs on loopback are not held up by each other: no address-wide wait there.
  for (let i = 0; i < 6; i++) await c.check(idx, `ghost-l${i}`, Buffer.from('x'), '127.0.0.1');
  t.match(await c.check(idx, 'u-ops', Buffer.from('ops-pass'), '127.0.0.1'), { ok: true }, 'loopback: a first login after another program\'s failures');

});

t.test('at most two slow checks at once; past the queue, refused at once (BUSY)', async (t) => {
  const c = new CredentialChecker(10);
  const results = await Promise.all(Array.from({ length: 60 }, (_, i) => c.check(index, 'u-cust1', Buffer.from(`guess-${i}`), `10.2.${i}.1`)));
  t.equal(c.stats().maxConcurrent, 2, 'two at a time');
  const busy = results.filter((r) => !r.ok && r.reason === 'BUSY').length;
  t.ok(busy >= 60 - 2 - 32, `${busy} refused as busy (server unavailable, CONNACK 0x03)`);
  t.ok(results.every((r) => !r.ok && (r.reason === 'BUSY' ? r.returnCode === 3 : r.returnCode === 4)));
});
