// Key endorsements (key rotation): encode/verify, and every refusal — self-endorsement, untrusted
// endorser, retired endorser, kid/thumbprint mismatch, a chain through a key the same snapshot
// introduces, tampering; retired signers; learned keys verified again from the configured ones.
import t from 'tap';
import { Encoder } from 'cbor-x';

import { acceptSnapshot, signSnapshot, verifySnapshot, type AcceptContext } from '../../src/snapshot/snapshot.js';
import { signCoseSign1 } from '../../src/snapshot/cose.js';
import { ENDORSEMENT_HEADER, learnedKeys, parseEndorsement, signEndorsement, verifyEndorsement } from '../../src/snapshot/endorsement.js';
import { fixturePayload, testKey, ISSUED_AT } from '../helpers/policy.js';
import { refusedWith } from '../helpers/refused.js';

const OLD = testKey();
const NEW = testKey();
const THIRD = testKey();
const configured = new Map([[OLD.kid, OLD.publicKey]]);
const T = ISSUED_AT + 10_000;
const endorse = (by = OLD, of = NEW, retiresSigner: number | undefined = T) =>
  signEndorsement(by.privateKey, by.kid, of.publicKey, { issuedAt: ISSUED_AT, ...(retiresSigner === undefined ? {} : { retiresSigner }) });
const snap = (version: number, key = NEW, endorsement?: Uint8Array) =>
  signSnapshot(fixturePayload('decide-policy.yaml', version), key.privateKey, key.kid, endorsement ? { endorsement } : {});
const ctx = (over: Partial<AcceptContext> = {}): AcceptContext => ({ trustedKeys: configured, gatewayId: 'gw-test', heldVersion: 4, now: ISSUED_AT + 1000, timeFloor: ISSUED_AT, ...over });

t.test('an endorsement round-trips, and a snapshot carrying it is accepted with the endorsed key', async (t) => {
  const bytes = endorse();
  const { endorsement: e } = parseEndorsement(bytes);
  t.match(e, { endorserKid: OLD.kid, kid: NEW.kid, issuedAt: ISSUED_AT, retiresSigner: T });
  t.equal(verifyEndorsement(bytes, { trustedKeys: configured }).kid, NEW.kid);
  const v = acceptSnapshot(snap(5, NEW, bytes), ctx());
  t.equal(v.kid, NEW.kid);
  t.equal(v.endorsement?.endorserKid, OLD.kid, 'the endorsement is returned, to be recorded');
  t.equal(v.endorsement?.retiresSigner, T);
  // The endorsement is not covered by NEW's signature: the same snapshot without it verifies with NEW.
  t.equal(verifySnapshot(snap(5, NEW, bytes), new Map([[NEW.kid, NEW.publicKey]])).kid, NEW.kid);
});

t.test('every refusal of an endorsement names the check that failed', async (t) => {
  refusedWith(t, () => acceptSnapshot(snap(5), ctx()), 'EW_SNAPSHOT_UNKNOWN_KID', /is not a trusted key/, 'new key, no endorsement');
  const self = signEndorsement(NEW.privateKey, NEW.kid, NEW.publicKey, { issuedAt: ISSUED_AT });
  refusedWith(t, () => acceptSnapshot(snap(5, NEW, self), ctx()), 'EW_SNAPSHOT_BAD_ENDORSEMENT', /endorses itself/, 'self-endorsement');
  // Even when the self-endorsing key is trusted, it cannot endorse itself (checked before trust).
  refusedWith(t, () => verifyEndorsement(self, { trustedKeys: new Map([[NEW.kid, NEW.publicKey]]) }), 'EW_SNAPSHOT_BAD_ENDORSEMENT', /endorses itself/, 'self-endorsement by a trusted key');
  refusedWith(t, () => acceptSnapshot(snap(5, THIRD, endorse(NEW, THIRD)), ctx()), 'EW_SNAPSHOT_BAD_ENDORSEMENT', /endorser ".*" is not a trusted key/, 'untrusted endorser');
  // OLD configured under an explicit kid endorses its own key under its thumbprint: still itself.
  const aliased = signEndorsement(OLD.privateKey, 'old-2026', OLD.publicKey, { issuedAt: ISSUED_AT, retiresSigner: T });
  refusedWith(t, () => acceptSnapshot(snap(5, OLD, aliased), ctx({ trustedKeys: new Map([['old-2026', OLD.publicKey]]) })), 'EW_SNAPSHOT_BAD_ENDORSEMENT', /endorses its own public key/, 'self-endorsement under another kid');
  refusedWith(
    t,
    () => acceptSnapshot(snap(5, NEW, endorse()), ctx({ retired: new Map([[OLD.kid, ISSUED_AT + 500]]) })),
    'EW_SNAPSHOT_BAD_ENDORSEMENT',
    /endorser ".*" was retired at 2026-01-01T00:00:00.500Z/,
    'retired endorser',
  );
  // A retirement in the future does not stop it yet; the time floor counts as now.
  t.equal(acceptSnapshot(snap(5, NEW, endorse()), ctx({ retired: new Map([[OLD.kid, ISSUED_AT + 5000]]) })).kid, NEW.kid, 'retirement not yet reached');
  refusedWith(
    t,
    () => acceptSnapshot(snap(5, NEW, endorse()), ctx({ retired: new Map([[OLD.kid, ISSUED_AT + 5000]]), timeFloor: ISSUED_AT + 6000 })),
    'EW_SNAPSHOT_BAD_ENDORSEMENT',
    /was retired/,
    'retired by the time floor although the clock is behind',
  );
  // The endorsed kid is not the thumbprint of the endorsed key: the payload says NEW's kid, the key is THIRD's.
  const enc = new Encoder({ useRecords: false, tagUint8Array: false, pack: false, variableMapSize: true });
  const x = Buffer.from((THIRD.publicKey.export({ format: 'jwk' }) as { x: string }).x, 'base64url');
  const mismatch = signCoseSign1(enc.encode({ type: 'edgewarden-key-endorsement', formatVersion: 1, kid: NEW.kid, publicKey: x, issuedAt: ISSUED_AT }), OLD.privateKey, OLD.kid);
  refusedWith(t, () => acceptSnapshot(snap(5, NEW, mismatch), ctx()), 'EW_SNAPSHOT_BAD_ENDORSEMENT', /is not the RFC 7638 thumbprint/, 'kid/thumbprint mismatch');
  refusedWith(t, () => acceptSnapshot(snap(5, THIRD, endorse()), ctx()), 'EW_SNAPSHOT_BAD_ENDORSEMENT', /endorsement is of key ".*", but the snapshot is signed by/, 'an endorsement of another key');
  // Chain through a key the same snapshot introduces: THIRD endorsed by NEW, NEW only endorsed by OLD
  // in... nothing the gateway holds. A snapshot carries one endorsement, and its endorser must be trusted already.
  refusedWith(t, () => acceptSnapshot(snap(5, THIRD, endorse(NEW, THIRD)), ctx()), 'EW_SNAPSHOT_BAD_ENDORSEMENT', /endorser ".*" is not a trusted key/, 'chain through a key introduced by the same snapshot');
  // Tampered: one byte of the endorsed public key flipped (kid then mismatches), or of the signature.
  const sigTampered = Buffer.from(endorse());
  sigTampered[sigTampered.length - 1]! ^= 0x01;
  refusedWith(t, () => acceptSnapshot(snap(5, NEW, sigTampered), ctx()), 'EW_SNAPSHOT_BAD_ENDORSEMENT', /signature does not match endorser key/, 'tampered endorsement signature');
  const payloadTampered = Buffer.from(endorse(OLD, NEW, undefined));
  const at = payloadTampered.indexOf(Buffer.from('issuedAt'));
  payloadTampered[at + 9]! ^= 0x01; // a bit of the issue time
  refusedWith(t, () => acceptSnapshot(snap(5, NEW, payloadTampered), ctx()), 'EW_SNAPSHOT_BAD_ENDORSEMENT', /signature does not match|issuedAt/, 'tampered endorsement payload');
  refusedWith(t, () => acceptSnapshot(snap(5, NEW, Buffer.from('junk')), ctx()), 'EW_SNAPSHOT_BAD_ENDORSEMENT', /not a COSE_Sign1/, 'not an endorsement');
  const notBytes = signCoseSign1(Buffer.from(snap(5)), NEW.privateKey, NEW.kid, new Map([[ENDORSEMENT_HEADER, 'text']]));
  refusedWith(t, () => verifySnapshot(notBytes, configured), 'EW_SNAPSHOT_BAD_ENDORSEMENT', /is not a byte string/, 'header of the wrong type');
  // A snapshot (not an endorsement) used as one.
  refusedWith(t, () => acceptSnapshot(snap(5, NEW, snap(3, OLD)), ctx()), 'EW_SNAPSHOT_BAD_ENDORSEMENT', /more than|not of type/, 'a snapshot as an endorsement');
});

t.test('a retired key signs nothing acceptable; a later endorsement cannot bring it back', async (t) => {
  const retired = new Map([[OLD.kid, ISSUED_AT + 500]]);
  refusedWith(t, () => acceptSnapshot(snap(5, OLD), ctx({ retired })), 'EW_SNAPSHOT_KEY_RETIRED', /key ".*" was retired at/, 'old key after its retirement');
  t.equal(acceptSnapshot(snap(5, OLD), ctx({ retired: new Map([[OLD.kid, ISSUED_AT + 5000]]) })).kid, OLD.kid, 'old key before its retirement');
  // NEW (trusted) endorses OLD back: OLD stays retired.
  const both = new Map([...configured, [NEW.kid, NEW.publicKey]]);
  refusedWith(t, () => acceptSnapshot(snap(5, OLD, endorse(NEW, OLD, undefined)), ctx({ trustedKeys: both, retired })), 'EW_SNAPSHOT_KEY_RETIRED', /was retired/, 'un-retire by endorsement');
  // Stored snapshots (verifySnapshot without now) are not refused for retirement: they were accepted before.
  t.equal(verifySnapshot(snap(5, OLD), configured, { retired }).kid, OLD.kid, 'a stored snapshot of a retired key still loads');
});

t.test('a trusted signer carrying a valid endorsement: returned (its retirement counts); an invalid one is ignored', async (t) => {
  const both = new Map([...configured, [NEW.kid, NEW.publicKey]]);
  t.equal(acceptSnapshot(snap(5, NEW, endorse()), ctx({ trustedKeys: both })).endorsement?.retiresSigner, T);
  t.equal(acceptSnapshot(snap(5, NEW, endorse(THIRD, NEW)), ctx({ trustedKeys: both })).endorsement, undefined, 'an untrusted endorser is ignored for a trusted signer');
});

t.test('learned keys: verified again from the configured keys, through a chain, to a fixpoint', async (t) => {
  const oldToNew = endorse();
  const newToThird = endorse(NEW, THIRD);
  // Given out of order: the chain still resolves.
  const r = learnedKeys(configured, [newToThird, oldToNew]);
  t.same([...r.learned.keys()].sort(), [NEW.kid, THIRD.kid].sort());
  t.same(r.refused, []);
  // Without the root (OLD removed from trust.keys), nothing is learned.
  const none = learnedKeys(new Map([[THIRD.kid, THIRD.publicKey]]), [oldToNew]);
  t.equal(none.learned.size, 0);
  t.match(none.refused[0]?.reason, /endorser ".*" is not a trusted key/);
  // A self-endorsement on file is never learned.
  t.equal(learnedKeys(configured, [signEndorsement(NEW.privateKey, NEW.kid, NEW.publicKey, { issuedAt: 1 })]).learned.size, 0);
});
