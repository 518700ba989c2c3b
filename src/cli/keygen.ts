// `edgewarden keygen`: an Ed25519 key pair for signing snapshots.
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EwError } from '../errors.js';
import { generateKeyPair } from '../snapshot/keys.js';
import type { Io } from './output.js';

export function keygenCommand(opts: { out: string; name: string; force?: boolean }, io: Io): number {
  const priv = join(opts.out, `${opts.name}.key.pem`);
  const pub = join(opts.out, `${opts.name}.pub.pem`);
  for (const f of [priv, pub]) {
    if (existsSync(f) && !opts.force) throw new EwError('EW_USAGE', 'exists; refusing to overwrite a key (use --force)', { where: f });
  }
  mkdirSync(opts.out, { recursive: true });
  const pair = generateKeyPair();
  writeFileSync(priv, pair.privateKeyPem, { mode: 0o600 });
  writeFileSync(pub, pair.publicKeyPem, { mode: 0o644 });
  // `mode` applies only to a file created now: one overwritten with --force keeps its old mode.
  chmodSync(priv, 0o600);
  chmodSync(pub, 0o644);
  io.out(`kid ${pair.kid}`);
  io.out(`private key: ${priv} (keep it secret: it signs snapshots)`);
  io.out(`public key:  ${pub} (give it to gateways as a trusted key)`);
  return 0;
}
