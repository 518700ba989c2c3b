// Checks the credential a client presents against the hashes in the snapshot.
// sha256 hashes (machine tokens, keys, secrets) compare in constant time; scrypt (human passwords)
// runs on the thread pool, and successful checks are cached (keyed by principal and a SHA-256 of
// the password, valid only while the snapshot still holds the same stored hash), so a reconnect
// storm does not burn the CPU. Failed checks are never cached.
//
// Guessing is not free (issue 10):
// - at most SLOW_CONCURRENCY scrypt checks run at once (the thread pool also serves the disk); up to
//   SLOW_QUEUE wait their turn in order; past that a check is refused at once (BUSY, CONNACK 0x03);
// - after FREE_FAILURES failures, a username from a source address, and a source address whatever
//   the usernames, wait before their next slow check (BACKOFF, CONNACK 0x04 without checking): 1 s,
//   doubling, at most BACKOFF_MAX_MS; a success ends the username's wait. Only slow checks wait: a
//   device token (sha256, too long to guess) or a password that succeeded before (cached) still
//   gets in, so clients that share an address with a guesser (a NAT) keep working while the guesser
//   gets no more scrypt checks. The loopback address has no address-wide wait: the programs on the
//   gateway itself are not held up by each other's failures (each username still waits);
// - an unknown username costs the same scrypt check as a known one with a wrong password, and a
//   revoked principal is told REVOKED only with the right password: the answer and its time say
//   nothing about who exists.
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { hashKind, verifyScrypt, verifySha256 } from '../policy/credentials.js';
import { PrincipalKind, principalOf, type PolicyIndex, type PrincipalRecord } from '../decide/policy-index.js';
import type { DenyReason } from '../decide/reasons.js';

export type AuthResult =
  | { readonly ok: true; readonly principal: PrincipalRecord; readonly credential: string }
  | { readonly ok: false; readonly returnCode: 3 | 4 | 5; readonly reason: DenyReason | 'BAD_CREDENTIALS' | 'BACKOFF' | 'BUSY' };

/** scrypt checks at once (the libuv pool has 4 threads; the outbox and the audit log need some). */
export const SLOW_CONCURRENCY = 2;
/** scrypt checks waiting for a slot; more are refused (BUSY). */
export const SLOW_QUEUE = 32;
/** Failures a username or an address has before it must wait. */
export const FREE_FAILURES = 3;
export const BACKOFF_MAX_MS = 60_000;
/** A scrypt hash with the issuer's default parameters that no password matches: the work for an unknown username. */
const DUMMY_SCRYPT = 'scrypt:15:8:1:wJJ6jtSsMwJnR2lfyco00g:oRxYumXNasziO7j_20UZI_U9FMYUUNAtjkMxkLPTDKU';

interface Failures {
  count: number;
  /** Date.now() before which the next check is refused. */
  until: number;
}

export class CredentialChecker {
  private readonly cache: LRUCache<string, string>;
  /** Recent failures by `u:<username>` and `a:<address>`; bounded (the oldest are forgotten). */
  private readonly failures = new LRUCache<string, Failures>({ max: 20_000 });
  private hits = 0;
  private slowChecks = 0;
  private running = 0;
  private maxRunning = 0;
  private readonly waiting: (() => void)[] = [];
  private readonly refused = { backoff: 0, busy: 0 };

  constructor(maxEntries: number, private readonly clock: () => number = Date.now) {
    this.cache = new LRUCache({ max: Math.max(1, maxEntries) });
  }

  stats(): { cached: number; hits: number; slowChecks: number; maxConcurrent: number; refusedBackoff: number; refusedBusy: number } {
    return { cached: this.cache.size, hits: this.hits, slowChecks: this.slowChecks, maxConcurrent: this.maxRunning, refusedBackoff: this.refused.backoff, refusedBusy: this.refused.busy };
  }

  async check(index: PolicyIndex, username: string, password: Buffer | undefined, remote = 'unknown'): Promise<AuthResult> {
    const now = this.clock();
    const pair = `p:${remote}\n${username}`;
    const address = isLoopback(remote) ? null : `a:${remote}`;
    const slowAllowed = !this.waitingFor(pair, now) && (address === null || !this.waitingFor(address, now));
    const r = await this.verify(index, username, password, slowAllowed);
    if (r.ok) this.failures.delete(pair);
    else if (r.reason !== 'BUSY' && r.reason !== 'BACKOFF') {
      this.failed(pair, now);
      if (address !== null) this.failed(address, now);
    }
    return r;
  }

  private backoff(): AuthResult {
    this.refused.backoff++;
    return { ok: false, returnCode: 4, reason: 'BACKOFF' };
  }

  private waitingFor(key: string, now: number): boolean {
    const f = this.failures.get(key);
    return f !== undefined && now < f.until;
  }

  private failed(key: string, now: number): void {
    const f = this.failures.get(key) ?? { count: 0, until: 0 };
    f.count++;
    if (f.count > FREE_FAILURES) f.until = now + Math.min(BACKOFF_MAX_MS, 1000 * 2 ** Math.min(f.count - FREE_FAILURES - 1, 20));
    this.failures.set(key, f);
  }

  /** Runs one scrypt check in a bounded slot; false (BUSY) when too many wait already. */
  private async slow(secret: string, stored: string): Promise<boolean | 'busy'> {
    if (this.running >= SLOW_CONCURRENCY) {
      if (this.waiting.length >= SLOW_QUEUE) return 'busy';
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
    this.running++;
    if (this.running > this.maxRunning) this.maxRunning = this.running;
    this.slowChecks++;
    try {
      return await verifyScrypt(secret, stored);
    } finally {
      this.running--;
      this.waiting.shift()?.();
    }
  }

  private busy(): AuthResult {
    this.refused.busy++;
    return { ok: false, returnCode: 3, reason: 'BUSY' };
  }

  private async verify(index: PolicyIndex, username: string, password: Buffer | undefined, slowAllowed: boolean): Promise<AuthResult> {
    if (!password || password.length === 0 || password.length > 4096) return { ok: false, returnCode: 4, reason: 'BAD_CREDENTIALS' };
    const p = principalOf(index, username);
    if (!p || p.kind === PrincipalKind.Gateway) {
      // The same work as a known user with a wrong password.
      if (!slowAllowed) return this.backoff();
      if ((await this.slow(password.toString('utf8'), DUMMY_SCRYPT)) === 'busy') return this.busy();
      return { ok: false, returnCode: 4, reason: 'UNKNOWN_PRINCIPAL' };
    }
    const r = await this.verifyKnown(p, password, slowAllowed);
    // A revoked principal is told so only by someone who holds its credential.
    if (r.ok && p.revoked) return { ok: false, returnCode: 5, reason: 'REVOKED' };
    return r;
  }

  private async verifyKnown(p: PrincipalRecord, password: Buffer, slowAllowed: boolean): Promise<AuthResult> {
    const secret = password.toString('utf8');
    const candidates = storedHashes(p);
    // Fast hashes first: no cache needed, constant time.
    for (const h of candidates) {
      if (hashKind(h) === 'sha256' && verifySha256(secret, h)) return { ok: true, principal: p, credential: h };
    }
    const scrypts = candidates.filter((h) => hashKind(h) === 'scrypt');
    if (scrypts.length === 0) {
      // No password to try: the same work all the same (a user without one, a device with a wrong token).
      if (!slowAllowed) return this.backoff();
      if ((await this.slow(secret, DUMMY_SCRYPT)) === 'busy') return this.busy();
      return { ok: false, returnCode: 4, reason: 'BAD_CREDENTIALS' };
    }
    const key = `${p.id}\n${createHash('sha256').update(password).digest('base64')}`;
    const cached = this.cache.get(key);
    if (cached !== undefined && scrypts.includes(cached)) {
      this.hits++;
      return { ok: true, principal: p, credential: cached };
    }
    if (!slowAllowed) return this.backoff();
    for (const h of scrypts) {
      const match = await this.slow(secret, h);
      if (match === 'busy') return this.busy();
      if (match) {
        this.cache.set(key, h);
        return { ok: true, principal: p, credential: h };
      }
    }
    return { ok: false, returnCode: 4, reason: 'BAD_CREDENTIALS' };
  }

  clear(): void {
    this.cache.clear();
  }
}

function isLoopback(address: string): boolean {
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}

/** Every stored credential hash of a principal. */
export function storedHashes(p: PrincipalRecord): string[] {
  const out: string[] = [];
  if (p.passwordHash !== undefined) out.push(p.passwordHash);
  for (const t of p.tokenHashes) out.push(t);
  if (p.secretHash !== undefined) out.push(p.secretHash);
  return out;
}

/** Whether a session authenticated with `credential` may stay connected under a new snapshot. */
export function credentialStillValid(index: PolicyIndex, principalId: string, credential: string): boolean {
  const p = principalOf(index, principalId);
  if (!p || p.revoked) return false;
  if (credential.startsWith('cert:')) return p.certFingerprints.includes(credential.slice(5));
  if (credential === 'anonymous') return true;
  return storedHashes(p).includes(credential);
}
