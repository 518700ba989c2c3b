// `edgewarden key endorse`: the old signing key vouches for the new one (key rotation,
// docs/snapshots.md "Rotating the signing key"). The endorsement rides in snapshots signed by the
// new key (`snapshot sign --endorsement`), so gateways that trust only the old key take them.
import { writeFileSync, renameSync } from 'node:fs';
import { EwError } from '../errors.js';
import { signEndorsement } from '../snapshot/endorsement.js';
import { kidOf } from '../snapshot/keys.js';
import { readPrivateKeyFile, readPublicKeyFile } from './io.js';
import { iso, type Io } from './output.js';
import { parseTime } from './snapshot.js';

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 };

/** `30d`, `12h`, `90m`, `45s`, `2w`: a duration in ms. */
export function parseDuration(v: string, flag: string): number {
  const m = /^([1-9][0-9]{0,6})([smhdw])$/.exec(v);
  if (!m) throw new EwError('EW_USAGE', `${flag} must be a duration such as 30d, 12h, 90m, 45s or 2w, got ${JSON.stringify(v)}`);
  return Number(m[1]) * UNIT_MS[m[2]!]!;
}

export interface EndorseOptions {
  key: string;
  new: string;
  out: string;
  kid?: string;
  retireAfter?: string;
  retireIn?: string;
  issuedAt?: string;
}

export function endorseCommand(opts: EndorseOptions, io: Io): number {
  if (opts.retireAfter !== undefined && opts.retireIn !== undefined) throw new EwError('EW_USAGE', '--retire-after and --retire-in: give one, not both');
  const issuedAt = opts.issuedAt === undefined ? Date.now() : parseTime(opts.issuedAt, '--issued-at');
  const retiresSigner =
    opts.retireAfter !== undefined ? parseTime(opts.retireAfter, '--retire-after') : opts.retireIn !== undefined ? issuedAt + parseDuration(opts.retireIn, '--retire-in') : undefined;
  const oldKey = readPrivateKeyFile(opts.key);
  const newKey = readPublicKeyFile(opts.new);
  const oldKid = opts.kid ?? kidOf(oldKey);
  const newKid = kidOf(newKey);
  if (oldKid === newKid) throw new EwError('EW_USAGE', `--key and --new are the same key ("${newKid}"): a key cannot endorse itself`);
  if (retiresSigner !== undefined && retiresSigner <= issuedAt) throw new EwError('EW_USAGE', `the retire time ${iso(retiresSigner)} is not after the issue time ${iso(issuedAt)}`);
  const bytes = signEndorsement(oldKey, oldKid, newKey, { issuedAt, ...(retiresSigner === undefined ? {} : { retiresSigner }) });
  const tmp = `${opts.out}.tmp-${process.pid}`;
  writeFileSync(tmp, bytes);
  renameSync(tmp, opts.out);
  io.err(`endorsement of key ${newKid} by key ${oldKid} -> ${opts.out} (${bytes.length} bytes)`);
  io.err(retiresSigner === undefined ? `  ${oldKid} is not retired by it` : `  ${oldKid} retires at ${iso(retiresSigner)} on each gateway that takes a snapshot carrying it`);
  io.err(`  embed it: edgewarden snapshot sign POLICY -k NEW.key.pem --endorsement ${opts.out} ...`);
  return 0;
}
