// `edgewarden snapshot verify|inspect`, and what the snapshot commands share (sign and diff have
// their own files).
import { EwError } from '../errors.js';
import { acceptSnapshot, decodeUnverified, verifySnapshot } from '../snapshot/snapshot.js';
import { parseCoseSign1 } from '../snapshot/cose.js';
import { endorsementIn, parseEndorsement } from '../snapshot/endorsement.js';
import { bundled, loadTrustedKeys, readSnapshotFile } from './io.js';
import { iso, type Io } from './output.js';

export function parseVersion(v: string): number {
  if (!/^[1-9][0-9]{0,15}$/.test(v) || !Number.isSafeInteger(Number(v))) {
    throw new EwError('EW_USAGE', `--version must be a positive integer, got ${JSON.stringify(v)}`);
  }
  return Number(v);
}

export function parseTime(v: string, flag: string): number {
  const ms = Date.parse(v);
  if (!/(Z|[+-][0-9]{2}:?[0-9]{2})$/.test(v) || Number.isNaN(ms)) {
    throw new EwError('EW_USAGE', `${flag} must be an ISO 8601 time with a zone (2027-01-31T00:00:00Z), got ${JSON.stringify(v)}`);
  }
  return ms;
}

export function trustedKeysFrom(trust: readonly string[] | undefined): ReturnType<typeof loadTrustedKeys> {
  return loadTrustedKeys(trust && trust.length > 0 ? trust : [bundled.demoPublicKey()]);
}

export function verifyCommand(
  file: string,
  opts: { trust?: string[]; gateway?: string; heldVersion?: string; now?: string; timeFloor?: string; json?: boolean },
  io: Io,
): number {
  const keys = trustedKeysFrom(opts.trust);
  const bytes = readSnapshotFile(file);
  const v =
    opts.gateway === undefined
      ? verifySnapshot(bytes, keys, { where: file })
      : acceptSnapshot(bytes, {
          trustedKeys: keys,
          gatewayId: opts.gateway,
          heldVersion: opts.heldVersion === undefined ? 0 : Number(opts.heldVersion),
          now: opts.now === undefined ? Date.now() : parseTime(opts.now, '--now'),
          timeFloor: opts.timeFloor === undefined ? 0 : parseTime(opts.timeFloor, '--time-floor'),
          where: file,
        });
  const p = v.payload;
  const summary = {
    file,
    valid: true,
    kid: v.kid,
    version: p.version,
    gateway: p.gateway.id,
    gatewayRole: p.gateway.role,
    issuedAt: iso(p.issuedAt),
    expiresAt: iso(p.expiresAt),
    expired: p.expiresAt <= Date.now(),
    endorsedBy: v.endorsement?.endorserKid ?? null,
  };
  if (opts.json) io.out(JSON.stringify(summary, null, 2));
  else
    io.out(
      `${file}: valid snapshot version ${p.version} for gateway ${p.gateway.id} (${p.gateway.role}), signed by ${v.kid}${v.endorsement ? ` (endorsed by ${v.endorsement.endorserKid})` : ''}, ` +
        `issued ${summary.issuedAt}, expires ${summary.expiresAt}${summary.expired ? ' (EXPIRED)' : ''}` +
        (opts.gateway === undefined ? '' : `; acceptable by gateway ${opts.gateway}`),
    );
  return 0;
}

export function inspectCommand(file: string, opts: { trust?: string[] }, io: Io): number {
  const bytes = readSnapshotFile(file);
  const raw = decodeUnverified(bytes);
  let signature: string;
  try {
    verifySnapshot(bytes, trustedKeysFrom(opts.trust), { where: file });
    signature = 'verified';
  } catch (err) {
    signature = err instanceof EwError ? `NOT verified: ${err.code}` : 'NOT verified';
  }
  const payload = raw.payload as Record<string, unknown>;
  const view = {
    kid: raw.kid,
    alg: raw.alg === -8 ? 'EdDSA' : raw.alg,
    signature,
    ...endorsementView(bytes),
    ...payload,
    issuedAt: typeof payload.issuedAt === 'number' ? iso(payload.issuedAt) : payload.issuedAt,
    expiresAt: typeof payload.expiresAt === 'number' ? iso(payload.expiresAt) : payload.expiresAt,
  };
  io.out(JSON.stringify(view, null, 2));
  return 0;
}

/** The key endorsement a snapshot carries (key rotation), as inspect shows it: not verified here (the signature line says whether the snapshot verifies, through it or not). */
function endorsementView(bytes: Uint8Array): { endorsement?: unknown } {
  try {
    const e = endorsementIn(parseCoseSign1(bytes));
    if (!e) return {};
    const { endorsement } = parseEndorsement(e);
    return {
      endorsement: {
        of: endorsement.kid,
        by: endorsement.endorserKid,
        issuedAt: iso(endorsement.issuedAt),
        retiresSigner: endorsement.retiresSigner === undefined ? null : iso(endorsement.retiresSigner),
      },
    };
  } catch (err) {
    return { endorsement: `malformed: ${(err as Error).message}` };
  }
}
