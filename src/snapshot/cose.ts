// COSE_Sign1 (RFC 9052 section 4.2) with EdDSA over Ed25519 (RFC 9053 section 2.2).
//
//   COSE_Sign1 = #6.18([ protected: bstr .cbor {1: -8, 4: kid}, unprotected: {...}, payload: bstr, signature: bstr ])
//
// The unprotected header is empty unless a key endorsement rides along (src/snapshot/endorsement.ts):
// it is not covered by the signature, and is read only for what authenticates itself.
//   Sig_structure = [ "Signature1", protected, external_aad = h'', payload ]
//
// Keys are passed in; no I/O here.
import { sign as edSign, verify as edVerify, type KeyObject } from 'node:crypto';
import { Encoder, Decoder, Tag } from 'cbor-x';

export const COSE_SIGN1_TAG = 18;
export const HEADER_ALG = 1;
export const HEADER_KID = 4;
export const ALG_EDDSA = -8;

const encoder = new Encoder({ useRecords: false, tagUint8Array: false, mapsAsObjects: false, pack: false, variableMapSize: true });
const mapDecoder = new Decoder({ useRecords: false, mapsAsObjects: false });

export interface CoseSign1 {
  /** The protected header exactly as signed. */
  readonly protectedBytes: Uint8Array;
  readonly alg: number | undefined;
  readonly kid: string | undefined;
  /** The unprotected header (NOT covered by the signature). */
  readonly unprotected: ReadonlyMap<unknown, unknown>;
  readonly payload: Uint8Array;
  readonly signature: Uint8Array;
}

/** Thrown for bytes that are not a well-formed COSE_Sign1; the message says which part. */
export class CoseFormatError extends Error {
  override name = 'CoseFormatError';
}

function toBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

/** CBOR head of a byte string of `length` bytes (major type 2, shortest form, RFC 8949 section 3.1). */
function byteStringHead(length: number): number[] {
  if (length < 24) return [0x40 + length];
  if (length < 0x100) return [0x58, length];
  if (length < 0x10000) return [0x59, length >> 8, length & 0xff];
  if (length <= 0xffffffff) return [0x5a, (length >>> 24) & 0xff, (length >>> 16) & 0xff, (length >>> 8) & 0xff, length & 0xff];
  throw new RangeError('payload too large for a Sig_structure');
}

/** 0x84: array(4); 0x6a "Signature1": text(10). */
const SIG_STRUCTURE_HEAD = Buffer.from([0x84, 0x6a, ...Buffer.from('Signature1', 'ascii')]);

/** Everything of `["Signature1", protected, h'', payload]` in CBOR but the payload's own bytes. */
function sigStructureHead(protectedBytes: Uint8Array, payloadLength: number): Buffer {
  return Buffer.concat([SIG_STRUCTURE_HEAD, Buffer.from(byteStringHead(protectedBytes.length)), protectedBytes, Buffer.from([0x40]), Buffer.from(byteStringHead(payloadLength))]);
}

/**
 * `["Signature1", protected, h'', payload]` in CBOR, written directly: one allocation and one copy
 * of the payload (an encoder grows its buffer and copies a 25 MB payload more than once). The bytes
 * are exactly what cbor-x encodes for that array (a test compares them).
 */
export function sigStructure(protectedBytes: Uint8Array, payload: Uint8Array): Buffer {
  const head = sigStructureHead(protectedBytes, payload.length);
  const out = Buffer.allocUnsafe(head.length + payload.length);
  head.copy(out, 0);
  out.set(payload, head.length);
  return out;
}

/** Signs `payload` with an Ed25519 private key; the kid goes in the protected header, `unprotected` (default empty) beside it. */
export function signCoseSign1(payload: Uint8Array, privateKey: KeyObject, kid: string, unprotected: ReadonlyMap<string | number, unknown> = new Map()): Buffer {
  if (privateKey.asymmetricKeyType !== 'ed25519') throw new Error(`signing key must be Ed25519, got ${String(privateKey.asymmetricKeyType)}`);
  const protectedBytes = encoder.encode(new Map<number, unknown>([[HEADER_ALG, ALG_EDDSA], [HEADER_KID, Buffer.from(kid, 'utf8')]]));
  const signature = edSign(null, sigStructure(protectedBytes, payload), privateKey);
  return encoder.encode(new Tag([protectedBytes, new Map(unprotected), toBuffer(payload), signature], COSE_SIGN1_TAG));
}

function isBytes(v: unknown): v is Uint8Array {
  return v instanceof Uint8Array;
}

/** Parses the envelope (not the payload). Throws CoseFormatError on anything malformed. */
export function parseCoseSign1(bytes: Uint8Array): CoseSign1 {
  let outer: unknown;
  try {
    outer = mapDecoder.decode(toBuffer(bytes));
  } catch (err) {
    throw new CoseFormatError(`not CBOR (${(err as Error).message})`);
  }
  // The tag is optional when the context says COSE_Sign1 (RFC 9052 section 2); we accept both.
  const body = outer instanceof Tag ? (outer.tag === COSE_SIGN1_TAG ? outer.value : undefined) : outer;
  if (outer instanceof Tag && outer.tag !== COSE_SIGN1_TAG) throw new CoseFormatError(`CBOR tag ${outer.tag} is not COSE_Sign1 (18)`);
  if (!Array.isArray(body) || body.length !== 4) throw new CoseFormatError('not a COSE_Sign1 array of 4 elements');
  const [protectedBytes, unprotected, payload, signature] = body as unknown[];
  if (!isBytes(protectedBytes)) throw new CoseFormatError('protected header is not a byte string');
  if (!(unprotected instanceof Map)) throw new CoseFormatError('unprotected header is not a map');
  if (!isBytes(payload)) throw new CoseFormatError('payload is missing or detached');
  if (!isBytes(signature)) throw new CoseFormatError('signature is not a byte string');
  let header: unknown;
  try {
    header = protectedBytes.length === 0 ? new Map() : mapDecoder.decode(toBuffer(protectedBytes));
  } catch (err) {
    throw new CoseFormatError(`protected header is not CBOR (${(err as Error).message})`);
  }
  if (!(header instanceof Map)) throw new CoseFormatError('protected header is not a map');
  const alg = header.get(HEADER_ALG);
  // SPEC section 4: the kid is in the protected header; an unprotected kid is not honoured.
  const kidRaw = header.get(HEADER_KID);
  return {
    protectedBytes,
    alg: typeof alg === 'number' ? alg : undefined,
    kid: isBytes(kidRaw) ? Buffer.from(kidRaw).toString('utf8') : typeof kidRaw === 'string' ? kidRaw : undefined,
    unprotected,
    payload,
    signature,
  };
}

/**
 * True when the signature verifies with this Ed25519 public key.
 *
 * With `envelope`, the bytes `msg` was parsed from (its payload a view into them), the Sig_structure
 * is assembled inside those bytes instead of in a new buffer: the payload moves right by the few
 * bytes the Sig_structure's head is longer than the envelope's (into the signature's place), the
 * head is written in front of it, the signature is checked, and every byte is put back (finally).
 * A snapshot of 17-25 MB then needs no second copy of itself in memory (nor the page faults of a
 * fresh one). On return the envelope is as it was; nothing else can read it meanwhile (this is
 * synchronous). Without `envelope`, or when the payload is not a view into it, the Sig_structure
 * is built in a new buffer.
 */
export function verifyCoseSign1(msg: CoseSign1, publicKey: KeyObject, envelope?: Uint8Array): boolean {
  if (msg.signature.length !== 64) return false;
  // A copy: the signature may lie where the payload moves.
  const signature = Buffer.from(msg.signature);
  const payload = msg.payload;
  const L = payload.length;
  const head = sigStructureHead(msg.protectedBytes, L);
  const K = head.length;
  const pOff = envelope !== undefined && payload.buffer === envelope.buffer ? payload.byteOffset - envelope.byteOffset : -1;
  const d = Math.max(0, K - pOff); // how far the payload moves right
  if (envelope === undefined || pOff < 0 || pOff + L + d > envelope.length) {
    return edVerify(null, sigStructure(msg.protectedBytes, payload), publicKey, signature);
  }
  const b = toBuffer(envelope);
  const start = pOff + d - K;
  const front = Buffer.from(b.subarray(start, pOff)); // what the head overwrites
  const tail = Buffer.from(b.subarray(pOff + L, pOff + L + d)); // what the moved payload overwrites
  try {
    if (d > 0) b.copyWithin(pOff + d, pOff, pOff + L);
    head.copy(b, start);
    return edVerify(null, b.subarray(start, start + K + L), publicKey, signature);
  } finally {
    if (d > 0) b.copyWithin(pOff, pOff + d, pOff + d + L);
    front.copy(b, start);
    tail.copy(b, pOff + L);
  }
}
