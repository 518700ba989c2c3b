// Signed snapshots: COSE_Sign1 structure, and every refusal reason of SPEC section 4.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { Decoder, Encoder, Tag } from 'cbor-x';
import { EwError } from '../../src/errors.js';
import { acceptSnapshot, encodePayload, encodePayloadPlain, signSnapshot, verifySnapshot, type AcceptContext } from '../../src/snapshot/snapshot.js';
import type { SnapshotPayload } from '../../src/policy/schema.js';
import { parseCoseSign1, sigStructure, signCoseSign1, verifyCoseSign1 } from '../../src/snapshot/cose.js';
import { kidOf } from '../../src/snapshot/keys.js';
import { buildIndex, principalOf } from '../../src/decide/policy-index.js';
import { fixturePayload, testKey, ISSUED_AT } from '../helpers/policy.js';
import { refusedWith } from '../helpers/refused.js';

const key = testKey();
const other = testKey();
const trusted = new Map([[key.kid, key.publicKey]]);
const payload = (version = 5, edit?: (p: ReturnType<typeof fixturePayload>) => void) => {
  const p = fixturePayload('decide-policy.yaml', version);
  edit?.(p);
  return p;
};
const EXPIRES = Date.parse('2030-01-01T00:00:00Z');
const ctx = (over: Partial<AcceptContext> = {}): AcceptContext => ({
  trustedKeys: trusted,
  gatewayId: 'gw-test',
  heldVersion: 4,
  now: ISSUED_AT + 1000,
  timeFloor: ISSUED_AT,
  ...over,
});

t.test('Sig_structure written by hand is the CBOR encoding of ["Signature1", protected, h\'\', payload]', async (t) => {
  const enc = new Encoder({ useRecords: false, tagUint8Array: false, mapsAsObjects: false, pack: false, variableMapSize: true });
  for (const protectedLength of [0, 1, 23, 24, 40, 255, 256]) {
    for (const payloadLength of [0, 1, 23, 24, 255, 256, 65535, 65536, 300_000]) {
      const prot = randomBytes(protectedLength);
      const body = randomBytes(payloadLength);
      const expected = enc.encode(['Signature1', prot, Buffer.alloc(0), body]);
      t.ok(sigStructure(prot, body).equals(expected), `protected ${protectedLength} bytes, payload ${payloadLength} bytes`);
    }
  }
});

t.test('verifying inside the envelope gives the same answer and leaves every byte as it was', async (t) => {
  /** The bytes in an ArrayBuffer of their own (not Node's shared pool), with random bytes around them. */
  const own = (bytes: Uint8Array, before = 0, after = 0): Buffer => {
    const whole = Buffer.from(new ArrayBuffer(before + bytes.length + after));
    randomBytes(before + bytes.length + after).copy(whole);
    whole.set(bytes, before);
    return whole.subarray(before, before + bytes.length);
  };
  let checked = 0;
  for (const kid of ['k', 'x'.repeat(20), 'y'.repeat(300)]) {
    for (const payloadLength of [0, 1, 23, 24, 255, 256, 65535, 65536, 300_000]) {
      const body = randomBytes(payloadLength);
      const signed = signCoseSign1(body, key.privateKey, kid);
      // Tagged and untagged (the tag is optional), alone and as a view into a larger buffer.
      for (const [label, envelope] of [
        ['tagged', own(signed)],
        ['untagged', own(signed.subarray(1))],
        ['view into a larger buffer', own(signed, 7, 5)],
      ] as const) {
        const before = Buffer.from(envelope);
        const whole = Buffer.from(envelope.buffer, 0, envelope.buffer.byteLength);
        const wholeBefore = Buffer.from(whole);
        const msg = parseCoseSign1(envelope);
        const ok = verifyCoseSign1(msg, key.publicKey, envelope);
        if (!ok || !envelope.equals(before) || !whole.equals(wholeBefore) || !verifyCoseSign1(msg, key.publicKey)) {
          t.fail(`kid ${kid.length} chars, payload ${payloadLength} bytes, ${label}: ok=${ok}, unchanged=${envelope.equals(before)}`);
        }
        // A flipped payload bit fails in place as in a copy, and is still put back.
        if (payloadLength > 0) {
          const bad = own(envelope);
          const m = parseCoseSign1(bad);
          m.payload[m.payload.length >> 1]! ^= 1;
          const tampered = Buffer.from(bad);
          if (verifyCoseSign1(m, key.publicKey, bad) || verifyCoseSign1(m, key.publicKey) || !bad.equals(tampered)) t.fail(`tampered, payload ${payloadLength} bytes, ${label}`);
        }
        checked++;
      }
    }
  }
  t.equal(checked, 81, 'all layouts verified in place, envelope unchanged');
  // A payload that is not a view into the envelope is verified from a copy.
  const signed = signCoseSign1(randomBytes(100), key.privateKey, key.kid);
  const msg = parseCoseSign1(signed);
  t.ok(verifyCoseSign1({ ...msg, payload: Uint8Array.from(msg.payload) }, key.publicKey, signed), 'payload elsewhere: still verified');
});

t.test('sign then accept', async (t) => {
  const bytes = signSnapshot(payload(), key.privateKey, key.kid);
  const v = acceptSnapshot(bytes, ctx());
  t.equal(v.kid, key.kid);
  t.equal(v.payload.version, 5);
  t.equal(v.payload.gateway.id, 'gw-test');
  t.equal(v.payload.expiresAt, EXPIRES);
  t.same(v.payload.things!.map((x) => x.id), ['t-1', 't-2', 't-3', 't-4', 't-5', 't-6', 't-rev']);
});

t.test('string lengths in the payload are counted in characters, not UTF-16 code units', async (t) => {
  // 256 astral characters (512 code units) is within a name's maxLength of 256; 257 is not.
  const named = (n: number) => signSnapshot(payload(5, (p) => (p.things![0]!.name = '\u{1F525}'.repeat(n))), key.privateKey, key.kid);
  t.equal(verifySnapshot(named(256), trusted).payload.things![0]!.name!.length, 512, '256 characters accepted');
  refusedWith(t, () => verifySnapshot(named(257), trusted), 'EW_SNAPSHOT_BAD_PAYLOAD', /not a valid snapshot/, '257 characters refused');
});

t.test('the envelope is RFC 9052 COSE_Sign1 with EdDSA and the kid in the protected header', async (t) => {
  const bytes = signSnapshot(payload(), key.privateKey, key.kid);
  t.equal(bytes[0], 0xd2, 'CBOR tag 18');
  const dec = new Decoder({ mapsAsObjects: false, useRecords: false });
  const outer = dec.decode(bytes) as Tag;
  t.equal(outer.tag, 18);
  const [prot, unprot, body, sig] = outer.value as [Uint8Array, Map<number, unknown>, Uint8Array, Uint8Array];
  const header = dec.decode(Buffer.from(prot)) as Map<number, unknown>;
  t.equal(header.get(1), -8, 'alg EdDSA');
  t.equal(Buffer.from(header.get(4) as Uint8Array).toString(), key.kid, 'kid');
  t.equal(unprot.size, 0, 'empty unprotected header');
  t.equal(sig.length, 64, 'Ed25519 signature');
  const inner = new Decoder({ useRecords: false, mapsAsObjects: true }).decode(Buffer.from(body)) as { version: number };
  t.equal(inner.version, 5, 'payload is a CBOR map');
  t.equal(kidOf(key.privateKey), key.kid, 'kid is the RFC 7638 thumbprint');
});

t.test('the payload is a CBOR map whose lists are written compactly; plain CBOR maps are read the same', async (t) => {
  const p = payload();
  const compact = encodePayload(p);
  const plain = encodePayloadPlain(p);
  t.equal(compact[0]! >> 5, 5, 'the payload is a CBOR map (major type 5)');
  t.equal(plain[0]! >> 5, 5, 'so is the plain form');
  const dec = new Decoder({ useRecords: false, mapsAsObjects: true });
  const expected = JSON.parse(JSON.stringify(p)) as unknown;
  t.same(dec.decode(compact), expected, 'compact decodes to the payload');
  t.same(dec.decode(plain), expected, 'plain decodes to the payload');
  t.ok(compact.includes(Buffer.from([0xd8, 0x33])), 'packed strings (tag 51) are used');
  // A snapshot signed by another CBOR library (plain maps) is accepted like one of ours.
  const viaPlain = acceptSnapshot(signSnapshot(p, key.privateKey, key.kid, { plain: true }), ctx());
  const viaCompact = acceptSnapshot(signSnapshot(p, key.privateKey, key.kid), ctx());
  t.same(viaPlain.payload, viaCompact.payload, 'both forms verify to the same payload');
  t.ok(signSnapshot(p, key.privateKey, key.kid).length < signSnapshot(p, key.privateKey, key.kid, { plain: true }).length, 'compact is smaller');
});

t.test('compact encoding round-trips many object shapes, repeated and odd strings, and every scalar', async (t) => {
  // Thousands of distinct key sets (more than cbor-x has record ids for at once), keys that are not
  // identifiers, unicode, empty strings, numbers of every size, booleans and null.
  const shapes = Array.from({ length: 9000 }, (_, i) => {
    const o: Record<string, unknown> = { id: `t-${i}`, customer: `c-${i % 7}` };
    for (let b = 0; b < 14; b++) if (i & (1 << b)) o[`k${b}`] = b % 3 === 0 ? `v-${b}` : b % 3 === 1 ? i * 1000 + b : [`c-${i % 7}`, ''];
    return o;
  });
  const odd: Record<string, unknown>[] = [{ 'not an identifier': 1, 'constructor': 'x', '__proto__x': 2, 'ü': '\u{1F525}' }, { '': '', 'a-b': null, n: -1, f: 1.5, big: 2 ** 40, neg: -(2 ** 40), yes: true, no: false }];
  const value = { things: shapes, odd, list: [[1, [2, [3]]], 'x', 'x', 'x'], n: 3, s: 'top' } as unknown as SnapshotPayload;
  const dec = new Decoder({ useRecords: false, mapsAsObjects: true });
  t.same(dec.decode(encodePayload(value)), JSON.parse(JSON.stringify(value)), 'decodes to the same value');
  t.equal((dec.decode(encodePayload(value)) as { things: unknown[] }).things.length, 9000);
});

t.test('every refusal has its own error', async (t) => {
  const good = signSnapshot(payload(), key.privateKey, key.kid);
  const flip = (b: Buffer, at: number) => {
    const c = Buffer.from(b);
    c[at] = c[at]! ^ 0x01;
    return c;
  };
  refusedWith(t, () => acceptSnapshot(flip(good, good.length - 5), ctx()), 'EW_SNAPSHOT_BAD_SIGNATURE', /signature does not match key/, 'bad signature');
  const msg = parseCoseSign1(good);
  const payloadAt = good.indexOf(Buffer.from(msg.payload).subarray(0, 32)) + 40;
  refusedWith(t, () => acceptSnapshot(flip(good, payloadAt), ctx()), 'EW_SNAPSHOT_BAD_SIGNATURE', /signature/, 'tampered payload');
  refusedWith(t, () => acceptSnapshot(signSnapshot(payload(), other.privateKey, other.kid), ctx()), 'EW_SNAPSHOT_UNKNOWN_KID', /is not a trusted key/, 'unknown kid');
  refusedWith(t, () => acceptSnapshot(signSnapshot(payload(), other.privateKey, key.kid), ctx()), 'EW_SNAPSHOT_BAD_SIGNATURE', /signature/, 'foreign key claiming a trusted kid');
  refusedWith(t, () => acceptSnapshot(good, ctx({ gatewayId: 'gw-elsewhere' })), 'EW_SNAPSHOT_WRONG_GATEWAY', /for gateway "gw-test", this is "gw-elsewhere"/, 'other gateway');
  refusedWith(t, () => acceptSnapshot(good, ctx({ heldVersion: 9 })), 'EW_SNAPSHOT_STALE', /version 5 is older than the held version 9/, 'older version');
  refusedWith(t, () => acceptSnapshot(good, ctx({ heldVersion: 5 })), 'EW_SNAPSHOT_DUPLICATE', /already held/, 'same version');
  refusedWith(t, () => acceptSnapshot(good, ctx({ now: EXPIRES + 1 })), 'EW_SNAPSHOT_EXPIRED', /expired at 2030-01-01/, 'expired');
  refusedWith(
    t,
    () => acceptSnapshot(good, ctx({ now: Date.parse('2020-01-01T00:00:00Z'), timeFloor: EXPIRES + 86_400_000 })),
    'EW_SNAPSHOT_EXPIRED_BY_TIME_FLOOR',
    /before the time floor .* system clock 2020-01-01.* is behind it/,
    'clock set back behind the time floor',
  );
  refusedWith(t, () => acceptSnapshot(good.subarray(0, good.length - 10), ctx()), 'EW_SNAPSHOT_MALFORMED', /not a COSE_Sign1 snapshot/, 'truncated bytes');
  refusedWith(t, () => acceptSnapshot(good.subarray(0, 3), ctx()), 'EW_SNAPSHOT_MALFORMED', /COSE_Sign1/, 'truncated to 3 bytes');
  refusedWith(t, () => acceptSnapshot(Buffer.alloc(0), ctx()), 'EW_SNAPSHOT_MALFORMED', /empty/, 'empty');
  refusedWith(t, () => acceptSnapshot(Buffer.alloc(50 * 1024 * 1024, 0x5a), ctx()), 'EW_SNAPSHOT_TOO_LARGE', /52428800 bytes is more than the 33554432 allowed/, '50 MB blob');
  const enc = new Encoder({ useRecords: false, tagUint8Array: false, mapsAsObjects: false });
  refusedWith(t, () => acceptSnapshot(enc.encode(new Tag([1, 2, 3, 4], 18)), ctx()), 'EW_SNAPSHOT_MALFORMED', /protected header is not a byte string/, 'wrong element types');
  refusedWith(t, () => acceptSnapshot(enc.encode(new Tag([], 98)), ctx()), 'EW_SNAPSHOT_MALFORMED', /tag 98 is not COSE_Sign1/, 'COSE_Sign (multi-signer) tag');
  const es256Header = enc.encode(new Map<number, unknown>([[1, -7], [4, Buffer.from(key.kid)]]));
  const fakeAlg = enc.encode(new Tag([es256Header, new Map(), Buffer.from([0xa0]), Buffer.alloc(64)], 18));
  refusedWith(t, () => acceptSnapshot(fakeAlg, ctx()), 'EW_SNAPSHOT_BAD_ALGORITHM', /algorithm -7/, 'another algorithm');
  const unprotectedKid = enc.encode(new Tag([enc.encode(new Map([[1, -8]])), new Map([[4, Buffer.from(key.kid)]]), Buffer.from([0xa0]), Buffer.alloc(64)], 18));
  refusedWith(t, () => acceptSnapshot(unprotectedKid, ctx()), 'EW_SNAPSHOT_UNKNOWN_KID', /no kid in the protected header/, 'kid only in the unprotected header');
  const notAPayload = signCoseSign1(enc.encode({ hello: 'world' }), key.privateKey, key.kid);
  refusedWith(t, () => acceptSnapshot(notAPayload, ctx()), 'EW_SNAPSHOT_BAD_PAYLOAD', /not a valid snapshot/, 'signed but not a snapshot payload');
  const backwards = signSnapshot(payload(5, (p) => { p.issuedAt = EXPIRES + 1; }), key.privateKey, key.kid);
  refusedWith(t, () => verifySnapshot(backwards, trusted), 'EW_SNAPSHOT_BAD_PAYLOAD', /is not before expiresAt/, 'issuedAt after expiresAt');
});

t.test('random and mutated bytes never throw anything but an EwError', async (t) => {
  const good = signSnapshot(payload(), key.privateKey, key.kid);
  let refused = 0;
  for (let i = 0; i < 300; i++) {
    const bytes = i % 2 === 0 ? randomBytes(1 + (i % 97) * 13) : Buffer.from(good);
    if (i % 2 === 1) for (let k = 0; k < 1 + (i % 5); k++) bytes[(i * 7919 + k * 104729) % bytes.length] = i & 0xff;
    try {
      acceptSnapshot(bytes, ctx());
    } catch (err) {
      if (!(err instanceof EwError)) t.fail(`non-EwError for case ${i}: ${String(err)}`);
      refused++;
    }
  }
  t.equal(refused, 300, 'all 300 refused with an EwError');
});

t.test('snapshot payload is checked structurally after the signature', async (t) => {
  const p = payload() as unknown as Record<string, unknown>;
  p.extra = 1;
  const bytes = signSnapshot(p as never, key.privateKey, key.kid);
  try {
    verifySnapshot(bytes, trusted);
    t.fail('accepted');
  } catch (err) {
    t.equal((err as EwError).code, 'EW_SNAPSHOT_BAD_PAYLOAD');
    t.match((err as EwError).issues, [{ path: 'extra', message: 'unknown key' }]);
  }
});

t.test('integers a standard encoder writes in 8 bytes (as Python\'s cbor2 writes times) are read as numbers', async (t) => {
  const p = payload();
  // The times and the version as 64-bit CBOR integers (major type 0, additional info 27).
  const doc = JSON.parse(JSON.stringify(p)) as Record<string, unknown>;
  doc['issuedAt'] = BigInt(p.issuedAt);
  doc['expiresAt'] = BigInt(p.expiresAt);
  doc['version'] = BigInt(p.version);
  const bytes = Buffer.from(new Encoder({ useRecords: false, tagUint8Array: false, pack: false, variableMapSize: true }).encode(doc));
  const at = bytes.indexOf(Buffer.from([0x1b, ...Buffer.from(BigInt.asUintN(64, BigInt(p.expiresAt)).toString(16).padStart(16, '0'), 'hex')]));
  t.ok(at > 0, 'expiresAt is encoded in 8 bytes');
  const v = verifySnapshot(signCoseSign1(bytes, key.privateKey, key.kid), trusted);
  t.equal(v.payload.expiresAt, p.expiresAt);
  t.equal(v.payload.issuedAt, p.issuedAt);
  t.equal(v.payload.version, p.version);
  t.equal(typeof v.payload.version, 'number');
  // Past 2^53 it is no longer an exact integer: refused, and the message names the field.
  doc['expiresAt'] = 2n ** 60n;
  try {
    verifySnapshot(signCoseSign1(Buffer.from(new Encoder({ useRecords: false, tagUint8Array: false, pack: false, variableMapSize: true }).encode(doc)), key.privateKey, key.kid), trusted);
    t.fail('accepted');
  } catch (err) {
    t.equal((err as EwError).code, 'EW_SNAPSHOT_BAD_PAYLOAD');
    t.match((err as EwError).message, /1 problem; expiresAt: must be <= 9007199254740991/, 'the refusal names the field');
  }
});

t.test('the gateway re-checks the issuer\'s invariants: duplicate ids, undefined roles', async (t) => {
  const refusal = (edit: (p: SnapshotPayload) => void): EwError => {
    const p = payload();
    edit(p);
    try {
      verifySnapshot(signSnapshot(p, key.privateKey, key.kid), trusted);
    } catch (err) {
      return err as EwError;
    }
    throw new Error('accepted');
  };
  const dup = refusal((p) => p.things!.push({ ...p.things![0]! }));
  t.equal(dup.code, 'EW_SNAPSHOT_BAD_PAYLOAD');
  t.match(dup.message, /things\[\d+\]\.id: duplicate thing id "t-1"/);
  const ghost = refusal((p) => {
    p.users![0]!.role = 'ghost-role';
  });
  t.match(ghost.message, /users\[0\]\.role: role "ghost-role" is not defined/);
  const noAdmin = refusal((p) => {
    for (const u of p.users!) if (u.role === 'admin') u.role = 'none';
  });
  t.match(noAdmin.message, /users: at least one user must hold the built-in admin role/);
});

t.test('a user\'s unsalted password in a signed snapshot: taken, but the password never accepted (the issuer refuses it)', async (t) => {
  // A signer that skips the policy check, or a snapshot signed before the rule: the gateway does not
  // refuse the whole snapshot (everyone would be denied), it never accepts that password.
  const p = payload(5, (p) => {
    p.users![1]!.passwordHash = 'sha256:' + 'ab'.repeat(32);
  });
  const v = verifySnapshot(signSnapshot(p, key.privateKey, key.kid), trusted);
  const index = buildIndex(v.payload);
  const id = p.users![1]!.id;
  t.equal(principalOf(index, id)?.passwordHash, undefined, 'no password for that user');
  t.match(index.warnings, [new RegExp(`user ${id}: a sha256 password hash is not accepted for a person`)]);
  // (The issuer's refusal: test/unit/policy-validate.test.ts.)
});

t.test('sha256 stays accepted by the gateway for generated tokens and secrets', async (t) => {
  const sha = 'sha256:' + 'cd'.repeat(32);
  const p = payload(5, (p) => {
    p.users![1]!.tokenHashes = [sha];
    p.things![1]!.tokenHashes = [sha];
    p.apiKeys![0]!.secretHash = sha;
    p.applications![0]!.secretHash = sha;
  });
  t.doesNotThrow(() => verifySnapshot(signSnapshot(p, key.privateKey, key.kid), trusted));
});
