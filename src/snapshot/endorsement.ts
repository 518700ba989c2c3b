// Key endorsements: how a gateway comes to trust a new signing key without a configuration change
// (docs/snapshots.md, "Rotating the signing key").
//
// An endorsement is a COSE_Sign1 signed by a key the gateway already trusts (the endorser, kid in
// the protected header as for a snapshot) whose payload is the CBOR map
//
//   { type: "edgewarden-key-endorsement", formatVersion: 1, kid: <new key's RFC 7638 thumbprint>,
//     publicKey: <new key, raw 32 bytes>, issuedAt: ms, ?retiresSigner: ms }
//
// `retiresSigner`: after that time a gateway that took this endorsement no longer trusts the
// endorser itself. A key can retire only itself, never another key.
//
// It rides in the unprotected header of a snapshot signed by the new key, under the text label
// ENDORSEMENT_HEADER: it is self-authenticating (signed by the endorser), so it need not be covered
// by the new key's signature. A snapshot may not extend its own trust on its signer's word alone:
// the endorser must be trusted already (never a key this same snapshot introduces), must not be the
// endorsed key, and must not be retired. Pure: keys and times are passed in.
import { createPublicKey, type KeyObject } from 'node:crypto';
import { Encoder, Decoder } from 'cbor-x';
import { EwError } from '../errors.js';
import { ALG_EDDSA, CoseFormatError, parseCoseSign1, signCoseSign1, verifyCoseSign1, type CoseSign1 } from './cose.js';
import { kidOf, type TrustedKeys } from './keys.js';

/** The unprotected-header label of the endorsement in a snapshot (a text label: RFC 9052 allows tstr labels; no registered one is taken). */
export const ENDORSEMENT_HEADER = 'ew-endorsement';
export const ENDORSEMENT_TYPE = 'edgewarden-key-endorsement';
/** An endorsement is about 200 bytes; anything much larger is not one. */
export const MAX_ENDORSEMENT_BYTES = 4096;

const encoder = new Encoder({ useRecords: false, tagUint8Array: false, pack: false, variableMapSize: true });
const decoder = new Decoder({ useRecords: false, mapsAsObjects: true, int64AsNumber: true } as ConstructorParameters<typeof Decoder>[0]);

export interface Endorsement {
  /** The key that signed the endorsement (protected header kid). */
  readonly endorserKid: string;
  /** The endorsed key's kid (its RFC 7638 thumbprint). */
  readonly kid: string;
  readonly publicKey: KeyObject;
  readonly issuedAt: number;
  /** When the endorser stops being trusted by a gateway that took this endorsement. */
  readonly retiresSigner?: number;
  /** The endorsement's own COSE bytes. */
  readonly bytes: Uint8Array;
}

function bad(message: string, where: string): EwError {
  return new EwError('EW_SNAPSHOT_BAD_ENDORSEMENT', message, { where });
}

/** Signs an endorsement of `endorsed` with `endorser` (whose kid, as gateways know it, is `endorserKid`). */
export function signEndorsement(endorser: KeyObject, endorserKid: string, endorsed: KeyObject, opts: { issuedAt: number; retiresSigner?: number }): Buffer {
  const pub = endorsed.type === 'private' ? createPublicKey(endorsed) : endorsed;
  const x = (pub.export({ format: 'jwk' }) as { x?: string }).x ?? '';
  const payload = {
    type: ENDORSEMENT_TYPE,
    formatVersion: 1,
    kid: kidOf(pub),
    publicKey: Buffer.from(x, 'base64url'),
    issuedAt: opts.issuedAt,
    ...(opts.retiresSigner === undefined ? {} : { retiresSigner: opts.retiresSigner }),
  };
  return signCoseSign1(encoder.encode(payload), endorser, endorserKid);
}

const isTime = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** The envelope and payload of an endorsement, NOT verified. Throws EW_SNAPSHOT_BAD_ENDORSEMENT for anything malformed. */
export function parseEndorsement(bytes: Uint8Array, where = 'endorsement'): { endorsement: Endorsement; msg: CoseSign1 } {
  if (bytes.length > MAX_ENDORSEMENT_BYTES) throw bad(`endorsement: ${bytes.length} bytes is more than the ${MAX_ENDORSEMENT_BYTES} allowed`, where);
  let msg: CoseSign1;
  try {
    msg = parseCoseSign1(bytes);
  } catch (err) {
    if (err instanceof CoseFormatError) throw bad(`endorsement is not a COSE_Sign1: ${err.message}`, where);
    throw err;
  }
  if (msg.alg !== ALG_EDDSA) throw bad(`endorsement: algorithm ${String(msg.alg)} is not EdDSA (-8)`, where);
  if (msg.kid === undefined) throw bad('endorsement: no endorser kid in its protected header', where);
  let p: Record<string, unknown>;
  try {
    p = decoder.decode(Buffer.from(msg.payload.buffer, msg.payload.byteOffset, msg.payload.byteLength)) as Record<string, unknown>;
  } catch (err) {
    throw bad(`endorsement payload is not CBOR (${(err as Error).message})`, where);
  }
  if (typeof p !== 'object' || p === null || p.type !== ENDORSEMENT_TYPE) throw bad(`endorsement payload is not of type "${ENDORSEMENT_TYPE}"`, where);
  if (p.formatVersion !== 1) throw bad(`endorsement formatVersion ${JSON.stringify(p.formatVersion)} is not 1`, where);
  if (typeof p.kid !== 'string' || p.kid.length === 0) throw bad('endorsement payload: kid is not a non-empty text string', where);
  if (!(p.publicKey instanceof Uint8Array) || p.publicKey.length !== 32) throw bad('endorsement payload: publicKey is not 32 bytes (a raw Ed25519 key)', where);
  if (!isTime(p.issuedAt)) throw bad('endorsement payload: issuedAt is not a time in ms', where);
  if (p.retiresSigner !== undefined && !isTime(p.retiresSigner)) throw bad('endorsement payload: retiresSigner is not a time in ms', where);
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(p.publicKey).toString('base64url') }, format: 'jwk' });
  } catch (err) {
    throw bad(`endorsement payload: publicKey is not an Ed25519 key (${(err as Error).message})`, where);
  }
  const endorsement: Endorsement = {
    endorserKid: msg.kid,
    kid: p.kid,
    publicKey,
    issuedAt: p.issuedAt,
    ...(p.retiresSigner === undefined ? {} : { retiresSigner: p.retiresSigner as number }),
    bytes,
  };
  return { endorsement, msg };
}

/** The endorsement bytes in a snapshot's unprotected header, if any. */
export function endorsementIn(msg: CoseSign1, where = 'snapshot'): Uint8Array | undefined {
  const v = msg.unprotected.get(ENDORSEMENT_HEADER);
  if (v === undefined) return undefined;
  if (!(v instanceof Uint8Array)) throw bad(`unprotected header "${ENDORSEMENT_HEADER}" is not a byte string`, where);
  return v;
}

export interface EndorsementCheck {
  /** The keys trusted already: configured and learned before this snapshot. */
  readonly trustedKeys: TrustedKeys;
  /** The snapshot's kid: the endorsement must be of this key. */
  readonly signerKid?: string;
  /** Retirement times by kid, checked against `now`; without `now` retirement is not checked (a stored snapshot accepted earlier). */
  readonly retired?: ReadonlyMap<string, number>;
  /** The gateway's effective now: max(system clock, time floor). */
  readonly now?: number;
  readonly where?: string;
}

/** Every check of an endorsement, in order; throws EW_SNAPSHOT_BAD_ENDORSEMENT naming the one that failed. */
export function verifyEndorsement(bytes: Uint8Array, c: EndorsementCheck): Endorsement {
  const where = c.where ?? 'endorsement';
  const { endorsement: e, msg } = parseEndorsement(bytes, where);
  if (c.signerKid !== undefined && e.kid !== c.signerKid) throw bad(`endorsement is of key "${e.kid}", but the snapshot is signed by "${c.signerKid}"`, where);
  if (e.endorserKid === e.kid) throw bad(`key "${e.kid}" endorses itself: a snapshot may not extend its own trust on its signer's word alone`, where);
  const thumbprint = kidOf(e.publicKey);
  if (e.kid !== thumbprint) throw bad(`endorsed kid "${e.kid}" is not the RFC 7638 thumbprint of the endorsed public key ("${thumbprint}")`, where);
  const endorserKey = c.trustedKeys.get(e.endorserKid);
  if (!endorserKey) throw bad(`endorser "${e.endorserKid}" is not a trusted key (only a key trusted already, configured or learned earlier, can endorse)`, where);
  // The same key under another kid (a configured kid=file name) would live on after its own retirement.
  if (kidOf(endorserKey) === thumbprint) throw bad(`endorser "${e.endorserKid}" endorses its own public key (as "${e.kid}"): a snapshot may not extend its own trust on its signer's word alone`, where);
  const retiredAt = c.retired?.get(e.endorserKid);
  if (c.now !== undefined && retiredAt !== undefined && retiredAt <= c.now) {
    throw bad(`endorser "${e.endorserKid}" was retired at ${new Date(retiredAt).toISOString()}, before the gateway's time ${new Date(c.now).toISOString()}`, where);
  }
  if (!verifyCoseSign1(msg, endorserKey)) throw bad(`endorsement signature does not match endorser key "${e.endorserKid}"`, where);
  return e;
}

/**
 * The learned keys: of `candidates` (endorsement bytes, as stored), those whose chain verifies from
 * `configured`, to a fixpoint (a key learned may endorse the next). Retirement is not checked: an
 * endorsement taken before its endorser retired stays good. Configured kids are never "learned".
 * `refused` gives, per candidate that does not verify, why.
 */
export function learnedKeys(configured: TrustedKeys, candidates: readonly Uint8Array[]): { learned: Map<string, Endorsement>; refused: { bytes: Uint8Array; reason: string }[] } {
  const learned = new Map<string, Endorsement>();
  const keys = new Map(configured);
  let pending = [...candidates];
  const reasons = new Map<Uint8Array, string>();
  for (let progress = true; progress && pending.length > 0; ) {
    progress = false;
    const next: Uint8Array[] = [];
    for (const bytes of pending) {
      try {
        const e = verifyEndorsement(bytes, { trustedKeys: keys });
        if (!keys.has(e.kid)) {
          keys.set(e.kid, e.publicKey);
          learned.set(e.kid, e);
          progress = true;
        }
      } catch (err) {
        reasons.set(bytes, (err as Error).message);
        next.push(bytes);
      }
    }
    pending = next;
  }
  return { learned, refused: pending.map((bytes) => ({ bytes, reason: reasons.get(bytes) ?? 'not verified' })) };
}
