// Credential hashes: the only form in which a secret appears in a policy or a snapshot.
//
//  sha256:<64 hex>                       machine tokens, API keys, application secrets, certificate
//                                        fingerprints (high-entropy secrets: a fast hash is enough)
//  scrypt:<logN>:<r>:<p>:<salt>:<hash>   human passwords (slow on purpose); salt and hash base64url
//
// Comparison is constant-time (crypto.timingSafeEqual). No I/O here.
import { createHash, randomBytes, scryptSync, timingSafeEqual, scrypt as scryptCb } from 'node:crypto';

const SHA256_RE = /^sha256:[0-9a-f]{64}$/;
const SCRYPT_RE = /^scrypt:(1[0-9]|20):([1-9][0-9]?):([1-9][0-9]?):([A-Za-z0-9_-]{16,64}):([A-Za-z0-9_-]{43,88})$/;

export type HashKind = 'sha256' | 'scrypt';

export function hashKind(value: string): HashKind | undefined {
  if (SHA256_RE.test(value)) return 'sha256';
  if (SCRYPT_RE.test(value)) return 'scrypt';
  return undefined;
}

export function isCredentialHash(value: unknown): value is string {
  return typeof value === 'string' && hashKind(value) !== undefined;
}

export function sha256Hash(secret: string | Uint8Array): string {
  return 'sha256:' + createHash('sha256').update(secret).digest('hex');
}

/** Random bytes in a generated token: 256 bits, beyond any guessing, so a fast unsalted hash is enough. */
export const TOKEN_BYTES = 32;

/** A new high-entropy secret (base64url: 43 characters) and the hash of it that goes into a policy. */
export function generateToken(bytes = TOKEN_BYTES): { token: string; hash: string } {
  const token = randomBytes(bytes).toString('base64url');
  return { token, hash: sha256Hash(token) };
}

/** Default cost: N=2^15, r=8, p=1 (about 32 MiB and ~100 ms on a Pi 4). */
export function scryptHash(password: string, opts: { logN?: number; r?: number; p?: number; salt?: Buffer } = {}): string {
  const logN = opts.logN ?? 15;
  const r = opts.r ?? 8;
  const p = opts.p ?? 1;
  const salt = opts.salt ?? randomBytes(16);
  const key = scryptSync(password, salt, 32, { N: 2 ** logN, r, p, maxmem: 256 * 1024 * 1024 });
  return `scrypt:${logN}:${r}:${p}:${salt.toString('base64url')}:${key.toString('base64url')}`;
}

/** Certificate fingerprint in the snapshot's form, from the DER bytes of a certificate. */
export function certificateFingerprint(der: Uint8Array): string {
  return sha256Hash(der);
}

function parseScrypt(stored: string): { N: number; r: number; p: number; salt: Buffer; key: Buffer } | undefined {
  const m = SCRYPT_RE.exec(stored);
  if (!m) return undefined;
  return {
    N: 2 ** Number(m[1]),
    r: Number(m[2]),
    p: Number(m[3]),
    salt: Buffer.from(m[4] as string, 'base64url'),
    key: Buffer.from(m[5] as string, 'base64url'),
  };
}

/** Checks a presented secret against a stored sha256 hash in constant time. */
export function verifySha256(secret: string | Uint8Array, stored: string): boolean {
  if (!SHA256_RE.test(stored)) return false;
  const want = Buffer.from(stored.slice(7), 'hex');
  const got = createHash('sha256').update(secret).digest();
  return timingSafeEqual(want, got);
}

/** Checks a presented password against a stored scrypt hash, off the event loop. */
export function verifyScrypt(password: string, stored: string): Promise<boolean> {
  const s = parseScrypt(stored);
  if (!s) return Promise.resolve(false);
  return new Promise((resolve) => {
    scryptCb(password, s.salt, s.key.length, { N: s.N, r: s.r, p: s.p, maxmem: 256 * 1024 * 1024 }, (err, key) => {
      resolve(!err && key.length === s.key.length && timingSafeEqual(key, s.key));
    });
  });
}

/** Either kind of hash; scrypt runs on the libuv thread pool. */
export async function verifySecret(secret: string, stored: string): Promise<boolean> {
  const kind = hashKind(stored);
  if (kind === 'sha256') return verifySha256(secret, stored);
  if (kind === 'scrypt') return verifyScrypt(secret, stored);
  return false;
}
