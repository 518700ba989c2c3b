// Shared test helpers: fixture policies to payloads, indexes and signed snapshots.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadPolicyText, compilePolicy } from '../../src/policy/validate.js';
import type { SnapshotPayload } from '../../src/policy/schema.js';
import { buildIndex, type ExpiredMode, type PolicyIndex } from '../../src/decide/policy-index.js';
import { generateKeyPair, parsePrivateKey, parsePublicKey } from '../../src/snapshot/keys.js';
import type { KeyObject } from 'node:crypto';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const fixture = (name: string) => join(ROOT, 'test', 'fixtures', name);
export const ISSUED_AT = Date.parse('2026-01-01T00:00:00Z');

export function fixturePayload(name: string, version = 1, issuedAt = ISSUED_AT): SnapshotPayload {
  const path = name.startsWith('/') ? name : fixture(name);
  const { policy } = loadPolicyText(readFileSync(path, 'utf8'), path);
  return compilePolicy(policy, { version, issuedAt });
}

export function fixtureIndex(name: string, edit?: (p: SnapshotPayload) => void, expiredMode?: ExpiredMode): PolicyIndex {
  const payload = fixturePayload(name);
  edit?.(payload);
  return buildIndex(payload, expiredMode ? { expiredMode } : {});
}

export interface TestKey {
  kid: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
}

export function testKey(): TestKey {
  const pair = generateKeyPair();
  return { kid: pair.kid, privateKey: parsePrivateKey(pair.privateKeyPem), publicKey: parsePublicKey(pair.publicKeyPem) };
}
