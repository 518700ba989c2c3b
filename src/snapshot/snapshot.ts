// Signed snapshots: the CBOR payload inside a COSE_Sign1, and the acceptance rules of SPEC section 4.
// Pure: bytes, keys and clocks are passed in.
import type { KeyObject } from 'node:crypto';
import { Encoder, Decoder } from 'cbor-x';
import { EwError } from '../errors.js';
import type { SnapshotPayload } from '../policy/schema.js';
import { validatePayload } from '../policy/validate-payload.js';
import { CoseFormatError, ALG_EDDSA, parseCoseSign1, signCoseSign1, verifyCoseSign1 } from './cose.js';
import type { TrustedKeys } from './keys.js';
import { ENDORSEMENT_HEADER, endorsementIn, verifyEndorsement, type Endorsement } from './endorsement.js';

/** Largest snapshot accepted, in bytes: a 100,000-thing snapshot of the benchmark's shape (names, token hashes, some certificates) is about 17 MB (25 MB as plain CBOR maps). */
export const DEFAULT_MAX_SNAPSHOT_BYTES = 32 * 1024 * 1024;

/** Plain CBOR: map keys and scalar members. */
const plainEncoder = new Encoder({ useRecords: false, tagUint8Array: false, pack: false, variableMapSize: true });
/**
 * The payload's lists and objects (things, users, ...): cbor-x's record extension writes each object
 * shape's keys once (tag 57344+ definitions) instead of in every object, and packed strings
 * (draft-ietf-cbor-packed as cbor-x implements it, tag 51 + tag 6 references) write a repeated string
 * (a customer, location or resource group id) once. A 100,000-thing payload is about 31% smaller, and
 * it decodes faster into about 20 MB less heap (the repeated strings are shared).
 */
const memberEncoder = new Encoder({ useRecords: true, tagUint8Array: false, pack: true });
/** Reads plain CBOR maps and the compact members alike: any producer's CBOR map is accepted. */
// int64AsNumber: an integer a standard encoder writes in 8 bytes (Python's cbor2 does for
// millisecond times) is a number, like the same value in 4; one past 2^53 is refused by the schema.
const payloadDecoder = new Decoder({ useRecords: false, mapsAsObjects: true, int64AsNumber: true } as ConstructorParameters<typeof Decoder>[0]);

/** CBOR null. */
const TINY = Buffer.from([0xf6]);

/**
 * cbor-x keeps a DataView of the last buffer it decoded (a module variable) until the next decode:
 * that would keep a 32 MiB snapshot's bytes alive after its install. Decoding one byte replaces it.
 */
function forgetSource(): void {
  try {
    payloadDecoder.decode(TINY);
  } catch {
    // cannot fail on CBOR null; and if it did, only memory would be held longer
  }
}

export interface VerifiedSnapshot {
  readonly payload: SnapshotPayload;
  readonly kid: string;
  readonly bytes: Uint8Array;
  /** Accepted although it expired by the time floor: proof the floor got ahead (acceptSnapshot). */
  readonly resetsTimeFloor?: boolean;
  /**
   * The endorsement it carries, verified: of its signer, by a key trusted already. Present when the
   * signer was trusted only through it, or when it verifies anyway (its retirement still counts).
   */
  readonly endorsement?: Endorsement;
}

/** CBOR head of a map of `n` entries (major type 5, shortest form). */
function mapHead(n: number): Buffer {
  if (n < 24) return Buffer.from([0xa0 + n]);
  if (n < 0x100) return Buffer.from([0xb8, n]);
  return Buffer.from([0xb9, n >> 8, n & 0xff]);
}

/**
 * The signed payload: a CBOR map (SPEC section 4) of the payload's members, each list or object
 * member encoded compactly (see memberEncoder), each scalar plainly. Each member is encoded on its
 * own, so its record definitions and packed-string table sit inside it; decoding the whole map gives
 * back exactly the payload (a test compares them).
 */
export function encodePayload(payload: SnapshotPayload): Buffer {
  // Drop undefined members: they have no place in the signed form.
  const clean = JSON.parse(JSON.stringify(payload)) as Record<string, unknown>;
  const entries = Object.entries(clean);
  const parts: Buffer[] = [mapHead(entries.length)];
  for (const [k, v] of entries) {
    // Copies: an encoder may hand out a view of a buffer it reuses.
    parts.push(Buffer.from(plainEncoder.encode(k)));
    parts.push(Buffer.from(v !== null && typeof v === 'object' ? memberEncoder.encode(v) : plainEncoder.encode(v)));
  }
  return Buffer.concat(parts);
}

/** The payload as plain CBOR maps and arrays only, as a generic CBOR library writes it (tests and the bench compare the two). */
export function encodePayloadPlain(payload: SnapshotPayload): Buffer {
  return Buffer.from(plainEncoder.encode(JSON.parse(JSON.stringify(payload))));
}

/**
 * `endorsement`: the bytes of an endorsement of this key (src/snapshot/endorsement.ts), carried in
 * the unprotected header for gateways that do not trust the key yet. Not checked here (the CLI does).
 */
export function signSnapshot(payload: SnapshotPayload, privateKey: KeyObject, kid: string, opts: { plain?: boolean; endorsement?: Uint8Array } = {}): Buffer {
  const unprotected = new Map<string, unknown>(opts.endorsement === undefined ? [] : [[ENDORSEMENT_HEADER, Buffer.from(opts.endorsement)]]);
  return signCoseSign1(opts.plain === true ? encodePayloadPlain(payload) : encodePayload(payload), privateKey, kid, unprotected);
}

export interface TrustOptions {
  /** Retirement times by kid (key rotation): a key retired by `now` signs nothing acceptable, endorses nothing. */
  readonly retired?: ReadonlyMap<string, number>;
  /** The gateway's effective now for retirement; without it retirement is not checked (a stored snapshot, accepted earlier). */
  readonly now?: number;
}

/**
 * Signature and payload checks only: the bytes are a COSE_Sign1 signed by a trusted key, and the
 * payload is a well-formed snapshot payload. `where` names the source in errors.
 */
export function verifySnapshot(bytes: Uint8Array, trustedKeys: TrustedKeys, opts: { where?: string; maxBytes?: number } & TrustOptions = {}): VerifiedSnapshot {
  const where = opts.where ?? 'snapshot';
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_SNAPSHOT_BYTES;
  if (bytes.length > maxBytes) {
    throw new EwError('EW_SNAPSHOT_TOO_LARGE', `${bytes.length} bytes is more than the ${maxBytes} allowed`, { where });
  }
  if (bytes.length === 0) throw new EwError('EW_SNAPSHOT_MALFORMED', 'empty (0 bytes)', { where });
  let msg;
  try {
    msg = parseCoseSign1(bytes);
  } catch (err) {
    if (err instanceof CoseFormatError) throw new EwError('EW_SNAPSHOT_MALFORMED', `not a COSE_Sign1 snapshot: ${err.message}`, { where, cause: err });
    throw err;
  }
  if (msg.alg !== ALG_EDDSA) {
    throw new EwError('EW_SNAPSHOT_BAD_ALGORITHM', `algorithm ${String(msg.alg)} in the protected header is not EdDSA (-8)`, { where });
  }
  if (msg.kid === undefined) throw new EwError('EW_SNAPSHOT_UNKNOWN_KID', 'no kid in the protected header', { where });
  const retiredAt = opts.retired?.get(msg.kid);
  if (opts.now !== undefined && retiredAt !== undefined && retiredAt <= opts.now) {
    throw new EwError('EW_SNAPSHOT_KEY_RETIRED', `key "${msg.kid}" was retired at ${iso(retiredAt)} (it endorsed its successor), before the gateway's time ${iso(opts.now)}`, { where });
  }
  const endorsementBytes = endorsementIn(msg, where);
  let key = trustedKeys.get(msg.kid);
  let endorsement: Endorsement | undefined;
  const check = { trustedKeys, signerKid: msg.kid, where, ...(opts.retired ? { retired: opts.retired } : {}), ...(opts.now === undefined ? {} : { now: opts.now }) };
  if (key) {
    // Trusted anyway: the endorsement is not needed, but a valid one still retires its endorser.
    if (endorsementBytes) {
      try {
        endorsement = verifyEndorsement(endorsementBytes, check);
      } catch {
        endorsement = undefined;
      }
    }
  } else if (endorsementBytes) {
    endorsement = verifyEndorsement(endorsementBytes, check);
    key = endorsement.publicKey;
  } else {
    throw new EwError('EW_SNAPSHOT_UNKNOWN_KID', `kid "${msg.kid}" is not a trusted key`, { where });
  }
  if (!verifyCoseSign1(msg, key, bytes)) {
    throw new EwError('EW_SNAPSHOT_BAD_SIGNATURE', `signature does not match key "${msg.kid}"`, { where });
  }
  let payload: unknown;
  try {
    payload = payloadDecoder.decode(Buffer.from(msg.payload.buffer, msg.payload.byteOffset, msg.payload.byteLength));
  } catch (err) {
    throw new EwError('EW_SNAPSHOT_BAD_PAYLOAD', `payload is not CBOR (${(err as Error).message})`, { where, cause: err });
  } finally {
    forgetSource();
  }
  const issues = validatePayload(payload);
  if (issues.length > 0) {
    const first = issues[0]!;
    const named = `${first.path || '(the payload)'}: ${first.message}`;
    throw new EwError('EW_SNAPSHOT_BAD_PAYLOAD', `payload is not a valid snapshot (${issues.length} problem${issues.length > 1 ? 's' : ''}; ${named}${issues.length > 1 ? ', ...' : ''})`, {
      where,
      issues: issues.slice(0, 20),
    });
  }
  const p = payload as SnapshotPayload;
  if (p.issuedAt >= p.expiresAt) {
    throw new EwError('EW_SNAPSHOT_BAD_PAYLOAD', `issuedAt ${iso(p.issuedAt)} is not before expiresAt ${iso(p.expiresAt)}`, { where });
  }
  return { payload: p, kid: msg.kid, bytes, ...(endorsement ? { endorsement } : {}) };
}

export interface AcceptContext {
  readonly trustedKeys: TrustedKeys;
  /** This gateway's id. */
  readonly gatewayId: string;
  /** Version of the snapshot in force; 0 when there is none. */
  readonly heldVersion: number;
  /** System clock, ms since the epoch. */
  readonly now: number;
  /** The persisted time floor (newest issuedAt seen, last time persisted), ms since the epoch. */
  readonly timeFloor: number;
  /** issuedAt of the snapshot held (0: none): a newer one may heal a floor that got ahead. */
  readonly heldIssuedAt?: number;
  /** Retirement times by kid (key rotation), checked against effectiveNow(now, timeFloor). */
  readonly retired?: ReadonlyMap<string, number>;
  readonly maxBytes?: number;
  readonly where?: string;
}

/** How far a snapshot's issuedAt may be ahead of the system clock (the issuer's clock and ours differ a little). */
const CLOCK_SKEW_MS = 60 * 60 * 1000;

/** The time floor: the highest of the system clock and the persisted floor. */
export function effectiveNow(now: number, timeFloor: number): number {
  return now > timeFloor ? now : timeFloor;
}

/** SPEC section 4: trusted key, this gateway, higher version, not expired against the time floor. */
export function acceptSnapshot(bytes: Uint8Array, ctx: AcceptContext): VerifiedSnapshot {
  const where = ctx.where ?? 'snapshot';
  const verified = verifySnapshot(bytes, ctx.trustedKeys, {
    where,
    ...(ctx.maxBytes === undefined ? {} : { maxBytes: ctx.maxBytes }),
    ...(ctx.retired === undefined ? {} : { retired: ctx.retired }),
    now: effectiveNow(ctx.now, ctx.timeFloor),
  });
  const p = verified.payload;
  if (p.gateway.id !== ctx.gatewayId) {
    throw new EwError('EW_SNAPSHOT_WRONG_GATEWAY', `snapshot is for gateway "${p.gateway.id}", this is "${ctx.gatewayId}"`, { where });
  }
  if (p.version === ctx.heldVersion) {
    throw new EwError('EW_SNAPSHOT_DUPLICATE', `version ${p.version} is the version already held`, { where });
  }
  if (p.version < ctx.heldVersion) {
    throw new EwError('EW_SNAPSHOT_STALE', `version ${p.version} is older than the held version ${ctx.heldVersion}`, { where });
  }
  if (p.expiresAt <= ctx.now) {
    throw new EwError('EW_SNAPSHOT_EXPIRED', `expired at ${iso(p.expiresAt)}, system clock is ${iso(ctx.now)}`, { where });
  }
  // A floor that got ahead (a clock once far ahead) is healed by a newer snapshot, issued after the
  // one held and valid by the system clock (src/store/time-floor.ts): the caller resets the floor.
  if (p.expiresAt <= ctx.timeFloor && ctx.heldIssuedAt !== undefined && p.issuedAt >= ctx.heldIssuedAt && p.issuedAt <= ctx.now + CLOCK_SKEW_MS) {
    return { ...verified, resetsTimeFloor: true };
  }
  if (p.expiresAt <= ctx.timeFloor) {
    throw new EwError(
      'EW_SNAPSHOT_EXPIRED_BY_TIME_FLOOR',
      `expired at ${iso(p.expiresAt)}, before the time floor ${iso(ctx.timeFloor)} (the system clock ${iso(ctx.now)} is behind it)`,
      { where },
    );
  }
  return verified;
}

function iso(ms: number): string {
  return Number.isFinite(ms) ? new Date(ms).toISOString() : String(ms);
}

export function isExpired(payload: Pick<SnapshotPayload, 'expiresAt'>, now: number, timeFloor: number): boolean {
  return payload.expiresAt <= effectiveNow(now, timeFloor);
}

/** Envelope and payload WITHOUT checking the signature: for `snapshot inspect` only, never for enforcement. */
export function decodeUnverified(bytes: Uint8Array): { kid: string | undefined; alg: number | undefined; payload: unknown } {
  let msg;
  try {
    msg = parseCoseSign1(bytes);
  } catch (err) {
    if (err instanceof CoseFormatError) throw new EwError('EW_SNAPSHOT_MALFORMED', `not a COSE_Sign1 snapshot: ${err.message}`, { cause: err });
    throw err;
  }
  let payload: unknown;
  try {
    payload = payloadDecoder.decode(Buffer.from(msg.payload.buffer, msg.payload.byteOffset, msg.payload.byteLength));
  } catch (err) {
    throw new EwError('EW_SNAPSHOT_BAD_PAYLOAD', `payload is not CBOR (${(err as Error).message})`, { cause: err });
  }
  return { kid: msg.kid, alg: msg.alg, payload };
}
