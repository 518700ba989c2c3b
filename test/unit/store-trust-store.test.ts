// Learned keys and retirements on disk (<stateDir>/trust.json), with the snapshot store: what an
// endorsed snapshot teaches survives a restart, is verified again from the configured keys, is
// rebuilt from the snapshot in force when trust.json is lost, and a retirement is never undone.
import t from 'tap';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { signSnapshot } from '../../src/snapshot/snapshot.js';
import { signEndorsement } from '../../src/snapshot/endorsement.js';
import { SnapshotStore } from '../../src/store/snapshot-store.js';
import { TimeFloor } from '../../src/store/time-floor.js';
import { TrustStore, TRUST_FILE } from '../../src/store/trust-store.js';
import { fixturePayload, testKey } from '../helpers/policy.js';

const OLD = testKey();
const NEW = testKey();
const configured = new Map([[OLD.kid, OLD.publicKey]]);

function payload(version: number, issuedAt: number) {
  const p = fixturePayload('decide-policy.yaml', version, issuedAt);
  p.expiresAt = issuedAt + 30 * 86_400_000;
  return p;
}

async function open(stateDir: string, now: number, keys = configured) {
  const logs: string[] = [];
  const tf = await TimeFloor.load(stateDir, () => now);
  const trust = await TrustStore.load(stateDir, keys, (level, msg) => logs.push(`${level}: ${msg}`), tf.now());
  const store = await SnapshotStore.open({ stateDir, trust, gatewayId: 'gw-test', timeFloor: tf });
  return { trust, store, logs };
}

t.test('an endorsed snapshot teaches a key and a retirement; both survive a restart; the old key is refused after it', async (t) => {
  const dir = t.testdir({});
  const T0 = Date.now();
  const T = T0 + 60_000;
  const endorsement = signEndorsement(OLD.privateKey, OLD.kid, NEW.publicKey, { issuedAt: T0, retiresSigner: T });
  let a = await open(dir, T0);
  await a.store.install(signSnapshot(payload(1, T0 - 1000), OLD.privateKey, OLD.kid), 'v1');
  t.notOk(existsSync(join(dir, TRUST_FILE)), 'nothing learned yet: no trust.json');
  await a.store.install(signSnapshot(payload(2, T0), NEW.privateKey, NEW.kid, { endorsement }), 'v2');
  const file = JSON.parse(readFileSync(join(dir, TRUST_FILE), 'utf8')) as { learned: { kid: string; endorsedBy: string }[]; retired: { kid: string; at: number }[] };
  t.match(file.learned, [{ kid: NEW.kid, endorsedBy: OLD.kid }]);
  t.match(file.retired, [{ kid: OLD.kid, at: T }]);

  // Restart before T: NEW learned, the old key still signs.
  a = await open(dir, T0 + 1000);
  t.equal(a.store.heldVersion(), 2);
  t.match(a.trust.summary(T0 + 1000), { configured: [OLD.kid], learned: [{ kid: NEW.kid, endorsedBy: OLD.kid }], retired: [{ kid: OLD.kid, passed: false }] });
  t.equal((await a.store.install(signSnapshot(payload(3, T0 + 1000), OLD.privateKey, OLD.kid), 'v3')).kid, OLD.kid, 'old key before T');
  t.equal((await a.store.install(signSnapshot(payload(4, T0 + 1000), NEW.privateKey, NEW.kid), 'v4')).kid, NEW.kid, 'new key, learned: no endorsement needed');

  // After T: the old key is refused; the snapshot in force stays; a warning names the retired configured key.
  a = await open(dir, T + 1000);
  t.equal(a.store.heldVersion(), 4);
  t.match(a.logs.join('\n'), new RegExp(`warn: trusted key "${OLD.kid}" in trust.keys was retired at .*replace it in trust.keys by its successor \\("${NEW.kid}"\\)`));
  await t.rejects(a.store.install(signSnapshot(payload(5, T + 1000), OLD.privateKey, OLD.kid), 'v5'), { code: 'EW_SNAPSHOT_KEY_RETIRED' });
  t.equal(a.store.heldVersion(), 4, 'still in force');
  // A later endorsement from OLD with a later retirement (or none) cannot move it back.
  t.equal(await a.trust.record({ endorserKid: OLD.kid, kid: NEW.kid, publicKey: NEW.publicKey, issuedAt: T0, retiresSigner: T + 10 * 86_400_000, bytes: endorsement }), false);
  t.equal(a.trust.retired().get(OLD.kid), T, 'the earlier retirement stays');

  // current.cose (v4, NEW) torn: the previous one (v3, signed by OLD before it retired) still loads.
  writeFileSync(join(dir, 'snapshot', 'current.cose'), 'torn');
  a = await open(dir, T + 2000);
  t.equal(a.store.heldVersion(), 3, 'a stored snapshot of a key retired since is not lost');
  t.equal((await a.store.install(signSnapshot(payload(5, T + 2000), NEW.privateKey, NEW.kid), 'v5')).kid, NEW.kid);
});

t.test('trust.json lost: the snapshot in force carries its endorsement, and teaches the key and the retirement again', async (t) => {
  const dir = t.testdir({});
  const T0 = Date.now();
  const endorsement = signEndorsement(OLD.privateKey, OLD.kid, NEW.publicKey, { issuedAt: T0, retiresSigner: T0 + 1000 });
  let a = await open(dir, T0);
  await a.store.install(signSnapshot(payload(2, T0), NEW.privateKey, NEW.kid, { endorsement }), 'v2');
  rmSync(join(dir, TRUST_FILE));
  a = await open(dir, T0 + 5000);
  t.equal(a.store.heldVersion(), 2, 'the NEW-signed snapshot in force still loads (its endorsement rides in its header)');
  t.equal(a.trust.retired().get(OLD.kid), T0 + 1000, 'the retirement is known again');
  t.ok(a.trust.keys().has(NEW.kid), 'NEW is learned again');
  t.ok(existsSync(join(dir, TRUST_FILE)), 'and trust.json rewritten');
});

t.test('learned keys are verified again from the configured keys: without the root, NEW is not trusted; garbage is logged', async (t) => {
  const dir = t.testdir({});
  const T0 = Date.now();
  const endorsement = signEndorsement(OLD.privateKey, OLD.kid, NEW.publicKey, { issuedAt: T0 });
  const a = await open(dir, T0);
  await a.store.install(signSnapshot(payload(2, T0), NEW.privateKey, NEW.kid, { endorsement }), 'v2');
  a.trust.setConfigured(new Map([[testKey().kid, testKey().publicKey]]));
  t.notOk(a.trust.keys().has(NEW.kid), 'reload without OLD: NEW (learned through OLD) is no longer trusted');
  a.trust.setConfigured(configured);
  t.ok(a.trust.keys().has(NEW.kid), 'OLD back: NEW again');
  writeFileSync(join(dir, TRUST_FILE), '{not json');
  const b = await open(dir, T0, new Map([[NEW.kid, NEW.publicKey]]));
  t.match(b.logs.join('\n'), /trust.json: not JSON/);
  t.equal(b.store.heldVersion(), 2, 'a gateway that configured NEW itself loads it');
});
