// File reading for the command line: bounded reads, key files, the bundled example files.
import { readFileSync, statSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EwError, type ErrorCode } from '../errors.js';
import { DEFAULT_MAX_SNAPSHOT_BYTES } from '../snapshot/snapshot.js';
import { loadPolicyText, MAX_POLICY_BYTES, type ValidatedPolicy } from '../policy/validate.js';

// Defined only in the single-file executable (scripts/package.mjs, esbuild `define`): the version,
// since there is no package.json beside the executable.
declare const __EDGEWARDEN_SEA__: { readonly version: string } | undefined;
export const SEA_BUILD = typeof __EDGEWARDEN_SEA__ === 'undefined' ? undefined : __EDGEWARDEN_SEA__;

/**
 * The package's root directory (where package.json and config/ are). In the single-file
 * executable, the executable's own (real) directory: config/ ships beside it (docs/packaging.md).
 */
export function packageRoot(): string {
  if (SEA_BUILD) return dirname(process.execPath);
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'config'))) return dir;
    dir = dirname(dir);
  }
  return process.cwd();
}

/** edgewarden's version: package.json's, or the one built into the single-file executable. */
export function packageVersion(): string {
  if (SEA_BUILD) return SEA_BUILD.version;
  try {
    return (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return '0.0.0';
  }
}

export const bundled = {
  policy: () => join(packageRoot(), 'config', 'example-policy.yaml'),
  snapshot: () => join(packageRoot(), 'config', 'example-snapshot.cose'),
  demoPublicKey: () => join(packageRoot(), 'config', 'demo-keys', 'demo.pub.pem'),
  demoPrivateKey: () => join(packageRoot(), 'config', 'demo-keys', 'demo.key.pem'),
};

export { readBounded } from '../store/read-bounded.js';
import { readBounded } from '../store/read-bounded.js';

export function readPolicyFile(path: string): ValidatedPolicy {
  const bytes = readBounded(path, MAX_POLICY_BYTES, 'EW_POLICY_TOO_LARGE', 'EW_POLICY_READ');
  return loadPolicyText(bytes.toString('utf8'), path);
}

export function readSnapshotFile(path: string, maxBytes = DEFAULT_MAX_SNAPSHOT_BYTES): Buffer {
  return readBounded(path, maxBytes, 'EW_SNAPSHOT_TOO_LARGE', 'EW_STORE_IO');
}

export { readPrivateKeyFile, readPublicKeyFile, loadTrustedKeys } from '../store/keys.js';
