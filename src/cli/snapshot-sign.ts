// `edgewarden snapshot sign`: a policy file, validated, to a signed snapshot.
import { writeFileSync, renameSync } from 'node:fs';
import { EwError } from '../errors.js';
import { compilePolicy } from '../policy/validate.js';
import { kidOf } from '../snapshot/keys.js';
import { signSnapshot } from '../snapshot/snapshot.js';
import { parseEndorsement, MAX_ENDORSEMENT_BYTES } from '../snapshot/endorsement.js';
import { readBounded, readPolicyFile, readPrivateKeyFile } from './io.js';
import { iso, type Io } from './output.js';
import { parseTime, parseVersion } from './snapshot.js';
import { signSummary } from './snapshot-summary.js';

/**
 * Validates, signs, writes (atomically: nothing is written on any error) and ends with the summary.
 * Warnings are printed with their field; with `strict` they refuse the policy instead.
 */
export function signCommand(
  policyPath: string,
  opts: { key: string; version: string; out: string; issuedAt?: string; kid?: string; plainCbor?: boolean; strict?: boolean; endorsement?: string },
  io: Io,
): number {
  const version = parseVersion(opts.version);
  const { policy, warnings } = readPolicyFile(policyPath);
  if (opts.strict === true && warnings.length > 0) {
    throw new EwError('EW_POLICY_INVALID', `policy has ${warnings.length === 1 ? 'a warning' : `${warnings.length} warnings`}, and --strict refuses it`, {
      where: policyPath,
      issues: warnings,
    });
  }
  for (const w of warnings) io.err(`warning: ${policyPath}: ${w.path}: ${w.message}`);
  const key = readPrivateKeyFile(opts.key);
  const issuedAt = opts.issuedAt === undefined ? Date.now() : parseTime(opts.issuedAt, '--issued-at');
  const payload = compilePolicy(policy, { version, issuedAt });
  if (payload.expiresAt <= issuedAt) {
    throw new EwError('EW_POLICY_INVALID', `validity: the snapshot would expire (${iso(payload.expiresAt)}) before it is issued (${iso(issuedAt)})`, { where: policyPath });
  }
  const kid = opts.kid ?? kidOf(key);
  const endorsement = opts.endorsement === undefined ? undefined : readEndorsementFor(opts.endorsement, kid, kidOf(key));
  const bytes = signSnapshot(payload, key, kid, { plain: opts.plainCbor === true, ...(endorsement ? { endorsement } : {}) });
  const tmp = `${opts.out}.tmp-${process.pid}`;
  writeFileSync(tmp, bytes);
  renameSync(tmp, opts.out);
  io.err(`signed snapshot version ${version} for gateway ${payload.gateway.id} (${payload.gateway.role}), kid ${kid} -> ${opts.out} (${bytes.length} bytes)`);
  if (opts.endorsement !== undefined) io.err(`  endorsement ${opts.endorsement} carried (gateways trusting its endorser take this key)`);
  for (const line of signSummary(payload)) io.err(line);
  if (warnings.length > 0) io.err(`  warnings    ${warnings.length} (above); snapshot sign --strict refuses a policy with warnings`);
  return 0;
}

/** The endorsement file's bytes, if it endorses the signing key (a usage error otherwise: it would only be refused by every gateway). */
export function readEndorsementFor(file: string, kid: string, thumbprint: string): Uint8Array {
  const bytes = readBounded(file, MAX_ENDORSEMENT_BYTES, 'EW_SNAPSHOT_BAD_ENDORSEMENT', 'EW_STORE_IO');
  const { endorsement: e } = parseEndorsement(bytes, file);
  if (e.kid !== kid || e.kid !== thumbprint) {
    throw new EwError('EW_USAGE', `--endorsement ${file} endorses key "${e.kid}", not the signing key "${kid}" (endorse the new key's public key with the old key: edgewarden key endorse)`);
  }
  return bytes;
}
