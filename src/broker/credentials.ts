// Checks the credential a client presents against the hashes in the snapshot.
// sha256 hashes (machine tokens, keys, secrets) compare in constant time; scrypt (human passwords)
// runs on the thread pool, and successful checks are cached (keyed by principal and a SHA-256 of
// the password, valid only while the snapshot still holds the same stored hash), so a reconnect
// storm does not burn the CPU. Failed checks are never cached.
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { hashKind, verifyScrypt, verifySha256 } from '../policy/credentials.js';
import { PrincipalKind, principalOf, type PolicyIndex, type PrincipalRecord } from '../decide/policy-index.js';
import type { DenyReason } from '../decide/reasons.js';

export type AuthResult =
  | { readonly ok: true; readonly principal: PrincipalRecord; readonly credential: string }
  | { readonly ok: false; readonly returnCode: 4 | 5; readonly reason: DenyReason | 'BAD_CREDENTIALS' };

export class CredentialChecker {
  private readonly cache: LRUCache<string, string>;
  private hits = 0;
  private slowChecks = 0;

  constructor(maxEntries: number) {
    this.cache = new LRUCache({ max: Math.max(1, maxEntries) });
  }

  stats(): { cached: number; hits: number; slowChecks: number } {
    return { cached: this.cache.size, hits: this.hits, slowChecks: this.slowChecks };
  }

  async check(index: PolicyIndex, username: string, password: Buffer | undefined): Promise<AuthResult> {
    const p = principalOf(index, username);
    if (!p || p.kind === PrincipalKind.Gateway) return { ok: false, returnCode: 4, reason: 'UNKNOWN_PRINCIPAL' };
    if (p.revoked) return { ok: false, returnCode: 5, reason: 'REVOKED' };
    if (!password || password.length === 0 || password.length > 4096) return { ok: false, returnCode: 4, reason: 'BAD_CREDENTIALS' };
    const secret = password.toString('utf8');
    const candidates = storedHashes(p);
    // Fast hashes first: no cache needed, constant time.
    for (const h of candidates) {
      if (hashKind(h) === 'sha256' && verifySha256(secret, h)) return { ok: true, principal: p, credential: h };
    }
    const scrypts = candidates.filter((h) => hashKind(h) === 'scrypt');
    if (scrypts.length === 0) return { ok: false, returnCode: 4, reason: 'BAD_CREDENTIALS' };
    const key = `${p.id}\n${createHash('sha256').update(password).digest('base64')}`;
    const cached = this.cache.get(key);
    if (cached !== undefined && scrypts.includes(cached)) {
      this.hits++;
      return { ok: true, principal: p, credential: cached };
    }
    for (const h of scrypts) {
      this.slowChecks++;
      if (await verifyScrypt(secret, h)) {
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
