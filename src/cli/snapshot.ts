// `edgewarden snapshot sign|verify|inspect|diff`.
import { writeFileSync, renameSync } from 'node:fs';
import { EwError } from '../errors.js';
import { compilePolicy } from '../policy/validate.js';
import { kidOf } from '../snapshot/keys.js';
import { acceptSnapshot, decodeUnverified, signSnapshot, verifySnapshot, type VerifiedSnapshot } from '../snapshot/snapshot.js';
import { buildIndex } from '../decide/policy-index.js';
import { diffSnapshots } from '../decide/diff.js';
import { bundled, loadTrustedKeys, readPolicyFile, readPrivateKeyFile, readSnapshotFile } from './io.js';
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

export function signCommand(
  policyPath: string,
  opts: { key: string; version: string; out: string; issuedAt?: string; kid?: string; plainCbor?: boolean },
  io: Io,
): number {
  const version = parseVersion(opts.version);
  const { policy, warnings } = readPolicyFile(policyPath);
  for (const w of warnings) io.err(`warning: ${policyPath}: ${w.path}: ${w.message}`);
  const key = readPrivateKeyFile(opts.key);
  const issuedAt = opts.issuedAt === undefined ? Date.now() : parseTime(opts.issuedAt, '--issued-at');
  const payload = compilePolicy(policy, { version, issuedAt });
  if (payload.expiresAt <= issuedAt) {
    throw new EwError('EW_POLICY_INVALID', `validity: the snapshot would expire (${iso(payload.expiresAt)}) before it is issued (${iso(issuedAt)})`, { where: policyPath });
  }
  const kid = opts.kid ?? kidOf(key);
  const bytes = signSnapshot(payload, key, kid, { plain: opts.plainCbor === true });
  const tmp = `${opts.out}.tmp-${process.pid}`;
  writeFileSync(tmp, bytes);
  renameSync(tmp, opts.out);
  io.err(
    `signed snapshot version ${version} for gateway ${payload.gateway.id} (${payload.gateway.role}), kid ${kid}: ` +
      `${payload.things?.length ?? 0} things, ${principalCount(payload)} principals, expires ${iso(payload.expiresAt)} -> ${opts.out} (${bytes.length} bytes)`,
  );
  return 0;
}

function principalCount(p: VerifiedSnapshot['payload']): number {
  return (p.users?.length ?? 0) + (p.apiKeys?.length ?? 0) + (p.applications?.length ?? 0) + (p.things?.length ?? 0);
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
  };
  if (opts.json) io.out(JSON.stringify(summary, null, 2));
  else
    io.out(
      `${file}: valid snapshot version ${p.version} for gateway ${p.gateway.id} (${p.gateway.role}), signed by ${v.kid}, ` +
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
    ...payload,
    issuedAt: typeof payload.issuedAt === 'number' ? iso(payload.issuedAt) : payload.issuedAt,
    expiresAt: typeof payload.expiresAt === 'number' ? iso(payload.expiresAt) : payload.expiresAt,
  };
  io.out(JSON.stringify(view, null, 2));
  return 0;
}

export function diffCommand(fileA: string, fileB: string, opts: { trust?: string[]; json?: boolean; limit?: string }, io: Io): number {
  const keys = trustedKeysFrom(opts.trust);
  const a = buildIndex(verifySnapshot(readSnapshotFile(fileA), keys, { where: fileA }).payload);
  const b = buildIndex(verifySnapshot(readSnapshotFile(fileB), keys, { where: fileB }).payload);
  const d = diffSnapshots(a, b);
  if (opts.json) {
    io.out(JSON.stringify({ ...d, from: { ...d.from, expiresAt: iso(d.from.expiresAt) }, to: { ...d.to, expiresAt: iso(d.to.expiresAt) } }, null, 2));
    return 0;
  }
  const limit = opts.limit === undefined ? 10 : Math.max(1, Number(opts.limit) || 10);
  const list = (xs: readonly string[]) => (xs.length <= limit ? xs.join(', ') : `${xs.slice(0, limit).join(', ')} (+${xs.length - limit} more)`);
  io.out(`snapshot ${d.from.version} -> ${d.to.version}; expiry ${iso(d.from.expiresAt)} -> ${iso(d.to.expiresAt)}`);
  if (d.principalsAdded.length) io.out(`principals added: ${list(d.principalsAdded)}`);
  if (d.principalsRemoved.length) io.out(`principals removed: ${list(d.principalsRemoved)}`);
  if (d.revoked.length) io.out(`revoked: ${list(d.revoked)}`);
  if (d.reinstated.length) io.out(`reinstated: ${list(d.reinstated)}`);
  if (d.thingsAdded.length) io.out(`things added: ${list(d.thingsAdded)}`);
  if (d.thingsRemoved.length) io.out(`things removed: ${list(d.thingsRemoved)}`);
  for (const c of d.changes) {
    io.out(`${c.change === 'gains' ? '+' : '-'} ${c.kind} ${c.principal} ${c.change} ${c.permission} on ${c.things.length ? list(c.things) : 'no things'}`);
  }
  if (d.changes.length === 0) io.out('no permission changes');
  return 0;
}
