// Key files: the signing key (cloud side) and the trusted public keys (gateway side).
import { readFileSync, statSync, existsSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { EwError, type ErrorCode } from '../errors.js';
import { kidOf, parsePrivateKey, parsePublicKey } from '../snapshot/keys.js';

function readKeyText(path: string): string {
  let size: number;
  try {
    size = statSync(path).size;
  } catch (err) {
    throw new EwError('EW_KEY_READ', `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { where: path, cause: err });
  }
  if (size > 64 * 1024) throw new EwError('EW_KEY_READ', `${size} bytes is too large for a key file`, { where: path });
  return readFileSync(path, 'utf8');
}

function parseKey(path: string, parse: (pem: string) => KeyObject, what: string, code: ErrorCode = 'EW_KEY_READ'): KeyObject {
  const pem = readKeyText(path);
  try {
    return parse(pem);
  } catch (err) {
    throw new EwError(code, `not an Ed25519 ${what} key (${(err as Error).message})`, { where: path, cause: err });
  }
}

export function readPrivateKeyFile(path: string): KeyObject {
  return parseKey(path, parsePrivateKey, 'private');
}

export function readPublicKeyFile(path: string): KeyObject {
  return parseKey(path, parsePublicKey, 'public');
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
