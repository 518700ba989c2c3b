// File reading for the command line: bounded reads, key files, the bundled example files.
import { readFileSync, statSync, existsSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { KeyObject } from 'node:crypto';
import { EwError, type ErrorCode } from '../errors.js';
import { kidOf, parsePrivateKey, parsePublicKey } from '../snapshot/keys.js';
import { DEFAULT_MAX_SNAPSHOT_BYTES } from '../snapshot/snapshot.js';
import { loadPolicyText, MAX_POLICY_BYTES, type ValidatedPolicy } from '../policy/validate.js';

/** The package's root directory (where package.json and config/ are). */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'config'))) return dir;
    dir = dirname(dir);
  }
  return process.cwd();
}

export const bundled = {
  policy: () => join(packageRoot(), 'config', 'example-policy.yaml'),
  snapshot: () => join(packageRoot(), 'config', 'example-snapshot.cose'),
  demoPublicKey: () => join(packageRoot(), 'config', 'demo-keys', 'demo.pub.pem'),
  demoPrivateKey: () => join(packageRoot(), 'config', 'demo-keys', 'demo.key.pem'),
};

/** Reads a file after checking its size; never reads more than `max` bytes. */
export function readBounded(path: string, max: number, tooLarge: ErrorCode, readCode: ErrorCode): Buffer {
  let size: number;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new Error('not a regular file');
    size = st.size;
  } catch (err) {
    throw new EwError(readCode, `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { where: path, cause: err });
  }
  if (size > max) throw new EwError(tooLarge, `${size} bytes is more than the ${max} allowed`, { where: path });
  try {
    return readFileSync(path);
  } catch (err) {
    throw new EwError(readCode, `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { where: path, cause: err });
  }
}

export function readPolicyFile(path: string): ValidatedPolicy {
  const bytes = readBounded(path, MAX_POLICY_BYTES, 'EW_POLICY_TOO_LARGE', 'EW_POLICY_READ');
  return loadPolicyText(bytes.toString('utf8'), path);
}

export function readSnapshotFile(path: string, maxBytes = DEFAULT_MAX_SNAPSHOT_BYTES): Buffer {
  return readBounded(path, maxBytes, 'EW_SNAPSHOT_TOO_LARGE', 'EW_STORE_IO');
}

export function readPrivateKeyFile(path: string): KeyObject {
  const pem = readBounded(path, 64 * 1024, 'EW_KEY_READ', 'EW_KEY_READ').toString('utf8');
  try {
    return parsePrivateKey(pem);
  } catch (err) {
    throw new EwError('EW_KEY_READ', `not an Ed25519 private key (${(err as Error).message})`, { where: path, cause: err });
  }
}

export function readPublicKeyFile(path: string): KeyObject {
  const pem = readBounded(path, 64 * 1024, 'EW_KEY_READ', 'EW_KEY_READ').toString('utf8');
  try {
    return parsePublicKey(pem);
  } catch (err) {
    throw new EwError('EW_KEY_READ', `not an Ed25519 public key (${(err as Error).message})`, { where: path, cause: err });
  }
}

/**
 * Trusted keys from files or directories of .pem files. Each key's kid is its RFC 7638 thumbprint;
 * `kid=path` names a key explicitly.
 */
export function loadTrustedKeys(specs: readonly string[]): Map<string, KeyObject> {
  const keys = new Map<string, KeyObject>();
  for (const spec of specs) {
    const eq = spec.indexOf('=');
    const explicitKid = eq > 0 && !existsSync(spec) ? spec.slice(0, eq) : undefined;
    const path = resolve(explicitKid === undefined ? spec : spec.slice(eq + 1));
    let files = [path];
    try {
      if (statSync(path).isDirectory()) files = readdirSync(path).filter((f) => f.endsWith('.pub.pem') || f.endsWith('.pub')).map((f) => join(path, f));
    } catch {
      /* readPublicKeyFile reports it */
    }
    for (const f of files) {
      const key = readPublicKeyFile(f);
      keys.set(explicitKid ?? kidOf(key), key);
    }
  }
  return keys;
}
