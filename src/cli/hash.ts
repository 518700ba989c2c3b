// `edgewarden hash`: the credential hash of a secret read from stdin, for a policy file.
import { readFileSync } from 'node:fs';
import { EwError } from '../errors.js';
import { scryptHash, sha256Hash } from '../policy/credentials.js';
import type { Io } from './output.js';

export function hashCommand(opts: { scrypt?: boolean }, io: Io, readStdin: () => string = () => readFileSync(0, 'utf8')): number {
  const secret = readStdin().replace(/\r?\n$/, '');
  if (secret.length === 0) throw new EwError('EW_USAGE', 'no secret on standard input (e.g. printf %s "$SECRET" | edgewarden hash)');
  io.out(opts.scrypt ? scryptHash(secret) : sha256Hash(secret));
  return 0;
}
