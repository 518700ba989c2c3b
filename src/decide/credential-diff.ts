// Which sessions a new snapshot ends, and whose credentials it changes: for each principal that could
// hold a session under snapshot a, the credentials of a that no longer let it stay connected under b.
//
// The rule is the agent's, applied when it takes a new snapshot (dropStaleSessions in
// src/broker/broker.ts, with credentialStillValid of src/broker/credentials.ts, which this layer may
// not import): a session stays while its principal is in the new snapshot and not revoked, still holds
// the credential the session authenticated with (the same password, token or secret hash, or
// certificate fingerprint), and, for a device, is still served by the gateway.
// test/unit/credential-diff.test.ts checks this module against credentialStillValid.
// Pure; hashes are compared, never shown.
import { PRINCIPAL_KIND_NAMES, PrincipalKind, principalOf, type PolicyIndex, type PrincipalRecord } from './policy-index.js';

export type CredentialType = 'password' | 'token' | 'secret' | 'certificate';

export type CredentialCounts = Readonly<Partial<Record<CredentialType, number>>>;

export interface CredentialChange {
  readonly principal: string;
  /** The principal's kind in snapshot a (user, API key, application, device). */
  readonly kind: string;
  /**
   * removed: not in b; revoked: revoked in b; unserved: a device the gateway no longer serves;
   * changed: in b, with credentials added or taken away.
   */
  readonly change: 'removed' | 'revoked' | 'unserved' | 'changed';
  /** Credentials of a that no longer authenticate in b, by type: the sessions on them are ended. */
  readonly dropped: CredentialCounts;
  /** Credentials of b that a did not have (for a principal in both). */
  readonly added: CredentialCounts;
}

interface Credential {
  readonly type: CredentialType;
  /** As a session records it: the stored hash, or `cert:<fingerprint>`. */
  readonly value: string;
}

/** A principal's credentials, each as the session that used it records it. */
export function credentialsOf(p: PrincipalRecord): Credential[] {
  const out: Credential[] = [];
  if (p.passwordHash !== undefined) out.push({ type: 'password', value: p.passwordHash });
  for (const h of p.tokenHashes) out.push({ type: 'token', value: h });
  if (p.secretHash !== undefined) out.push({ type: 'secret', value: p.secretHash });
  for (const f of p.certFingerprints) out.push({ type: 'certificate', value: `cert:${f}` });
  return out;
}

/** Whether the principal's own record still accepts `credential` (credentialStillValid's rule). */
export function credentialStaysValid(index: PolicyIndex, principalId: string, credential: string): boolean {
  const p = principalOf(index, principalId);
  if (!p || p.revoked) return false;
  if (credential.startsWith('cert:')) return p.certFingerprints.includes(credential.slice(5));
  if (credential === 'anonymous') return true;
  return credentialsOf(p).some((c) => c.type !== 'certificate' && c.value === credential);
}

function isServedDevice(index: PolicyIndex, id: string): boolean {
  const n = index.ids.get(id);
  return n !== undefined && n < index.thingCount && index.thingServed[n] === 1;
}

function count(list: readonly Credential[]): CredentialCounts {
  const out: Partial<Record<CredentialType, number>> = {};
  for (const c of list) out[c.type] = (out[c.type] ?? 0) + 1;
  return out;
}

/** Sorted by principal id. */
export function credentialChanges(a: PolicyIndex, b: PolicyIndex): CredentialChange[] {
  const out: CredentialChange[] = [];
  for (const id of [...a.ids.keys()].sort()) {
    const pa = principalOf(a, id);
    // No session under a: revoked, the gateway itself, or a device a did not serve.
    if (!pa || pa.revoked || pa.kind === PrincipalKind.Gateway) continue;
    const isDevice = pa.kind === PrincipalKind.Device;
    if (isDevice && !isServedDevice(a, id)) continue;
    const kind = PRINCIPAL_KIND_NAMES[pa.kind];
    const had = credentialsOf(pa);
    const pb = principalOf(b, id);
    if (!pb || pb.revoked || (isDevice && !isServedDevice(b, id))) {
      const change = !pb ? 'removed' : pb.revoked ? 'revoked' : 'unserved';
      out.push({ principal: id, kind, change, dropped: count(had), added: {} });
      continue;
    }
    const dropped = had.filter((c) => !credentialStaysValid(b, id, c.value));
    const before = new Set(had.map((c) => c.value));
    const added = credentialsOf(pb).filter((c) => !before.has(c.value));
    if (dropped.length > 0 || added.length > 0) out.push({ principal: id, kind, change: 'changed', dropped: count(dropped), added: count(added) });
  }
  return out;
}

const NOUNS: Record<CredentialType, [string, string]> = {
  password: ['password', 'passwords'],
  token: ['token', 'tokens'],
  secret: ['secret', 'secrets'],
  certificate: ['certificate', 'certificates'],
};

/** "1 password, 2 tokens"; empty when there are none. */
export function describeCounts(c: CredentialCounts): string {
  return (Object.keys(NOUNS) as CredentialType[])
    .filter((t) => (c[t] ?? 0) > 0)
    .map((t) => `${c[t]} ${NOUNS[t][c[t] === 1 ? 0 : 1]}`)
    .join(', ');
}
