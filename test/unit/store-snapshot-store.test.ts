import t from 'tap';
import { createHash, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { generateKeyPair, parsePrivateKey, parsePublicKey } from '../../src/snapshot/keys.js';
import { DEFAULT_MAX_SNAPSHOT_BYTES, signSnapshot } from '../../src/snapshot/snapshot.js';
import type { SnapshotPayload } from '../../src/policy/schema.js';
import { readSnapshotInForce, SnapshotStore, type StoreLogEvent } from '../../src/store/snapshot-store.js';
import { TimeFloor, TIME_FLOOR_FILE } from '../../src/store/time-floor.js';

const T0 = Date.UTC(2026, 0, 1);
const DAY = 24 * 3600 * 1000;
const GW = 'gw-1';

function makeKey(): { kid: string; privateKey: KeyObject; publicKey: KeyObject } {
  const pair = generateKeyPair();
  return { kid: pair.kid, privateKey: parsePrivateKey(pair.privateKeyPem), publicKey: parsePublicKey(pair.publicKeyPem) };
}
const KEY = makeKey();
const FOREIGN = makeKey();
const TRUSTED = new Map([[KEY.kid, KEY.publicKey]]);

function payload(version: number, o: { gateway?: string; issuedAt?: number; expiresAt?: number } = {}): SnapshotPayload {
  const issuedAt = o.issuedAt ?? T0 + version * 1000;
  return {
    formatVersion: 1,
    tenant: 'acme',
    gateway: { id: o.gateway ?? GW, role: 'standard', resourceGroups: ['rg-1'] },
    modules: [],
    organization: { id: 'acme-org' },
    customers: [],
    things: [],
    roles: [],
    users: [{ id: 'alice', userType: 'ORGANIZATION', entity: 'acme-org', role: 'admin' }],
    version,
    issuedAt,
    expiresAt: o.expiresAt ?? issuedAt + 30 * DAY,
  };
}

function signed(version: number, o: Parameters<typeof payload>[1] & { key?: ReturnType<typeof makeKey>; kid?: string } = {}): Buffer {
  const key = o.key ?? KEY;
  return signSnapshot(payload(version, o), key.privateKey, o.kid ?? key.kid);
}

/** Deterministic "random" bytes. */
function noise(n: number, seed: string): Buffer {
  const out: Buffer[] = [];
  for (let i = 0; out.length * 32 < n; i++) out.push(createHash('sha256').update(`${seed}:${i}`).digest());
  return Buffer.concat(out).subarray(0, n);
}

interface Env {
  stateDir: string;
  clock: { now: number };
  logs: StoreLogEvent[];
  open: (o?: { gatewayId?: string; maxBytes?: number }) => Promise<{ store: SnapshotStore; tf: TimeFloor }>;
  files: () => { current: Buffer | undefined; previous: Buffer | undefined };
  currentPath: string;
  previousPath: string;
}

function env(stateDir: string): Env {
  const clock = { now: T0 };
  const logs: StoreLogEvent[] = [];
  const currentPath = join(stateDir, 'snapshot', 'current.cose');
  const previousPath = join(stateDir, 'snapshot', 'previous.cose');
  const read = (p: string): Buffer | undefined => (existsSync(p) ? readFileSync(p) : undefined);
  return {
    stateDir,
    clock,
    logs,
    currentPath,
    previousPath,
    open: async (o = {}) => {
      const tf = await TimeFloor.load(stateDir, () => clock.now, { monotonic: () => 0 }); // the fake clock alone moves time
      const store = await SnapshotStore.open({
        stateDir,
        trustedKeys: TRUSTED,
        gatewayId: o.gatewayId ?? GW,
        timeFloor: tf,
        ...(o.maxBytes === undefined ? {} : { maxBytes: o.maxBytes }),
        log: (e) => logs.push(e),
      });
      return { store, tf };
    },
    files: () => ({ current: read(currentPath), previous: read(previousPath) }),
  };
}

t.test('empty state directory: holds nothing, creates the snapshot directory', async (t) => {
  const e = env(t.testdir());
  const { store } = await e.open();
  t.equal(store.held(), undefined);
  t.equal(store.heldVersion(), 0);
  t.ok(existsSync(join(e.stateDir, 'snapshot')));
  t.match(e.logs, [{ level: 'info', msg: /no stored snapshot/ }]);
  t.notOk(e.logs.some((l) => l.level === 'error'), 'a first start is not an error');
});

t.test('install v1 then v2: previous holds v1, current v2, time floor persisted', async (t) => {
  const e = env(t.testdir());
  const { store, tf } = await e.open();
  const v1 = signed(1);
  const v2 = signed(2);
  const got1 = await store.install(v1, 'test:v1');
  t.equal(got1.payload.version, 1);
  t.equal(store.heldVersion(), 1);
  t.ok(e.files().current?.equals(v1), 'current.cose is v1');
  t.equal(e.files().previous, undefined, 'nothing held before: no previous.cose');

  const got2 = await store.install(v2, 'test:v2');
  t.equal(got2.payload.version, 2);
  t.equal(store.held()?.version, 2);
  t.ok(e.files().current?.equals(v2), 'current.cose is v2');
  t.ok(e.files().previous?.equals(v1), 'previous.cose is v1');
  t.equal(tf.floor, T0 + 2000, 'time floor raised with issuedAt of v2');
  const persisted = JSON.parse(readFileSync(join(e.stateDir, TIME_FLOOR_FILE), 'utf8')) as { floor: number };
  t.equal(persisted.floor, T0 + 2000, 'time floor persisted');

  t.same(readdirSync(join(e.stateDir, 'snapshot')).sort(), ['current.cose', 'previous.cose'], 'no temp files');
  t.same(readdirSync(e.stateDir).sort(), ['snapshot', TIME_FLOOR_FILE], 'no temp files');
  t.match(e.logs.at(-1), { level: 'info', msg: /installed snapshot version 2 from test:v2 \(was 1\)/ });

  // The store keeps no bytes and no payload: only what it needs, and the sha256 of the bytes.
  t.same(Object.keys(store.held()!).sort(), ['expiresAt', 'issuedAt', 'kid', 'sha256', 'version']);
  t.equal(store.held()?.sha256, createHash('sha256').update(v2).digest('hex'));

  const { store: reopened } = await e.open();
  t.equal(reopened.heldVersion(), 2, 'reopen loads v2');
});

t.test('refused installs leave files and the held version unchanged', async (t) => {
  const e = env(t.testdir());
  const { store } = await e.open();
  await store.install(signed(1), 'v1');
  await store.install(signed(2), 'v2');
  const before = e.files();

  const tamperedSig = signed(3);
  tamperedSig[tamperedSig.length - 1]! ^= 0x01;
  const tamperedPayload = signed(3);
  const at = tamperedPayload.indexOf(Buffer.from('acme-org'));
  tamperedPayload[at] = 'b'.charCodeAt(0);

  const cases: Array<[string, Uint8Array, string]> = [
    ['older version', signed(1), 'EW_SNAPSHOT_STALE'],
    ['duplicate', signed(2), 'EW_SNAPSHOT_DUPLICATE'],
    ['other gateway', signed(3, { gateway: 'gw-2' }), 'EW_SNAPSHOT_WRONG_GATEWAY'],
    ['signature flipped', tamperedSig, 'EW_SNAPSHOT_BAD_SIGNATURE'],
    ['payload altered', tamperedPayload, 'EW_SNAPSHOT_BAD_SIGNATURE'],
    ['foreign key', signed(3, { key: FOREIGN }), 'EW_SNAPSHOT_UNKNOWN_KID'],
    ['foreign key claiming the trusted kid', signed(3, { key: FOREIGN, kid: KEY.kid }), 'EW_SNAPSHOT_BAD_SIGNATURE'],
    ['expired', signed(3, { issuedAt: T0 - 10 * DAY, expiresAt: T0 - DAY }), 'EW_SNAPSHOT_EXPIRED'],
    ['garbage', noise(500, 'garbage'), 'EW_SNAPSHOT_MALFORMED'],
    ['empty', new Uint8Array(0), 'EW_SNAPSHOT_MALFORMED'],
  ];
  for (const [name, bytes, code] of cases) {
    await t.rejects(store.install(bytes, `test:${name}`), { code, where: `test:${name}` }, name);
    t.equal(store.heldVersion(), 2, `${name}: held version unchanged`);
    const after = e.files();
    t.ok(after.current?.equals(before.current!), `${name}: current.cose unchanged`);
    t.ok(after.previous?.equals(before.previous!), `${name}: previous.cose unchanged`);
  }
  t.same(readdirSync(join(e.stateDir, 'snapshot')).sort(), ['current.cose', 'previous.cose']);

  const { store: small } = await e.open({ maxBytes: 100 });
  await t.rejects(small.install(signed(3), 'big'), { code: 'EW_SNAPSHOT_TOO_LARGE' }, 'larger than maxBytes');
});

t.test('expired by the time floor when the clock is set back behind the persisted floor', async (t) => {
  const e = env(t.testdir());
  e.clock.now = T0 + 20 * DAY;
  {
    const { store, tf } = await e.open();
    await store.install(signed(1, { issuedAt: T0 + 20 * DAY }), 'v1');
    await tf.persist();
  }
  const before = e.files();

  // Reboot without a real-time clock: the system clock says T0, the floor says T0 + 20 days.
  e.clock.now = T0;
  const { store, tf } = await e.open();
  t.equal(store.heldVersion(), 1);
  t.equal(tf.floor, T0 + 20 * DAY);
  const stale = signed(2, { issuedAt: T0 - DAY, expiresAt: T0 + 10 * DAY });
  await t.rejects(store.install(stale, 'replay'), { code: 'EW_SNAPSHOT_EXPIRED_BY_TIME_FLOOR' });
  t.equal(store.heldVersion(), 1);
  t.ok(e.files().current?.equals(before.current!));
  t.equal(e.files().previous, undefined);

  const fresh = signed(3, { issuedAt: T0 + 21 * DAY, expiresAt: T0 + 40 * DAY });
  await store.install(fresh, 'fresh');
  t.equal(store.heldVersion(), 3, 'a snapshot valid past the floor is accepted');
});

t.test('current.cose truncated: load falls back to previous and says why', async (t) => {
  const e = env(t.testdir());
  const { store } = await e.open();
  const v1 = signed(1);
  await store.install(v1, 'v1');
  await store.install(signed(2), 'v2');
  const cur = readFileSync(e.currentPath);
  writeFileSync(e.currentPath, cur.subarray(0, Math.floor(cur.length / 2)));

  e.logs.length = 0;
  const { store: reopened } = await e.open();
  t.equal(reopened.heldVersion(), 1, 'previous (v1) is in force');
  t.equal(reopened.held()!.sha256, createHash('sha256').update(v1).digest('hex'), 'held is v1');
  t.equal(reopened.takeLoaded()?.payload.version, 1, 'its payload is handed over once');
  t.equal(reopened.takeLoaded(), undefined, 'and not kept');
  t.match(e.logs, [
    { level: 'error', code: 'EW_SNAPSHOT_MALFORMED', file: e.currentPath, msg: /stored snapshot refused: .*current\.cose/ },
    { level: 'warn', file: e.previousPath, msg: /current snapshot refused; fell back to the previous one, version 1/ },
    { level: 'info', msg: /loaded stored snapshot version 1/ },
  ]);

  // The next install keeps the valid previous snapshot, never the torn file.
  await reopened.install(signed(3), 'v3');
  t.ok(e.files().previous?.equals(v1), 'previous.cose is v1 (the held one), not the torn current');
  t.ok(readFileSync(e.currentPath).equals(e.files().current!), 'current.cose is v3');
  t.equal((await e.open()).store.heldVersion(), 3);
});

t.test('current.cose overwritten with random bytes: same fallback', async (t) => {
  const e = env(t.testdir());
  const { store } = await e.open();
  await store.install(signed(1), 'v1');
  await store.install(signed(2), 'v2');
  writeFileSync(e.currentPath, noise(readFileSync(e.currentPath).length, 'random'));
  e.logs.length = 0;
  const { store: reopened } = await e.open();
  t.equal(reopened.heldVersion(), 1);
  const refused = e.logs.find((l) => l.file === e.currentPath && l.level === 'error');
  t.ok(refused, 'the refusal of current.cose is logged');
  t.match(refused?.code, /^EW_SNAPSHOT_(MALFORMED|BAD_ALGORITHM|UNKNOWN_KID|BAD_SIGNATURE|BAD_PAYLOAD)$/);
});

t.test('current.cose missing: falls back to previous', async (t) => {
  const e = env(t.testdir());
  const { store } = await e.open();
  await store.install(signed(1), 'v1');
  await store.install(signed(2), 'v2');
  writeFileSync(e.currentPath, ''); // an empty file is what some filesystems leave
  const { store: a } = await e.open();
  t.equal(a.heldVersion(), 1, 'empty current: previous');
  rmSync(e.currentPath);
  e.logs.length = 0;
  const { store: b } = await e.open();
  t.equal(b.heldVersion(), 1, 'missing current: previous');
  t.match(e.logs, [{ level: 'warn', msg: /current snapshot missing; fell back/ }]);
});

t.test('both files corrupt: holds nothing, no throw, then accepts any valid version', async (t) => {
  const e = env(t.testdir());
  const { store } = await e.open();
  await store.install(signed(5), 'v5');
  await store.install(signed(6), 'v6');
  writeFileSync(e.currentPath, noise(300, 'a'));
  const tornPrevious = readFileSync(e.previousPath).subarray(0, 10);
  writeFileSync(e.previousPath, tornPrevious);
  e.logs.length = 0;
  const { store: reopened } = await e.open();
  t.equal(reopened.held(), undefined);
  t.equal(reopened.heldVersion(), 0);
  t.equal(await reopened.load(), undefined, 'load() again: still nothing');
  t.ok(e.logs.some((l) => l.level === 'error' && l.file === e.currentPath && l.code));
  t.ok(e.logs.some((l) => l.level === 'error' && l.file === e.previousPath && l.code));
  t.ok(e.logs.some((l) => l.level === 'error' && /no valid stored snapshot/.test(l.msg)));
  await reopened.install(signed(2), 'v2');
  t.equal(reopened.heldVersion(), 2);
  t.ok(e.files().previous?.equals(tornPrevious), 'previous.cose left as it was (nothing valid was held)');
});

t.test('an oversized current.cose (50 MB sparse) is refused without reading it', async (t) => {
  const e = env(t.testdir());
  const { store } = await e.open();
  await store.install(signed(1), 'v1');
  await store.install(signed(2), 'v2');
  await truncate(e.currentPath, 50 * 1024 * 1024);
  t.ok(50 * 1024 * 1024 > DEFAULT_MAX_SNAPSHOT_BYTES);
  e.logs.length = 0;
  const started = Date.now();
  const { store: reopened } = await e.open();
  t.ok(Date.now() - started < 2000, 'fast');
  t.equal(reopened.heldVersion(), 1, 'fell back to previous');
  t.match(e.logs, [{ level: 'error', code: 'EW_SNAPSHOT_TOO_LARGE', file: e.currentPath, msg: /52428800 bytes is more than the 33554432 allowed/ }]);
});

t.test('stored snapshots for another gateway are not loaded', async (t) => {
  const e = env(t.testdir());
  const { store } = await e.open();
  await store.install(signed(1), 'v1');
  await store.install(signed(2), 'v2');
  e.logs.length = 0;
  const { store: other } = await e.open({ gatewayId: 'gw-2' });
  t.equal(other.held(), undefined);
  t.equal(e.logs.filter((l) => l.code === 'EW_SNAPSHOT_WRONG_GATEWAY').length, 2);
});

t.test('an expired stored snapshot still loads, with a warning; load raises the time floor', async (t) => {
  const e = env(t.testdir());
  {
    const { store } = await e.open();
    await store.install(signed(1, { issuedAt: T0, expiresAt: T0 + DAY }), 'v1');
  }
  e.clock.now = T0 + 2 * DAY;
  e.logs.length = 0;
  const { store, tf } = await e.open();
  t.equal(store.heldVersion(), 1);
  t.match(e.logs, [{ level: 'warn', code: 'EW_SNAPSHOT_EXPIRED', file: e.currentPath, msg: /expired at .*loaded, and applied as expired/ }]);

  // A lost time-floor.json: loading the snapshot brings the floor up to its issuedAt.
  rmSync(join(e.stateDir, TIME_FLOOR_FILE));
  e.clock.now = 0;
  const again = await e.open();
  t.equal(again.tf.floor, T0, 'floor raised to issuedAt on load');
  t.equal(again.tf.now(), T0, 'effective now is the floor while the clock is behind');
  t.equal(tf.floor, T0, 'the first open had the floor persisted at install time');
});

t.test('concurrent installs are serialized in call order', async (t) => {
  const e = env(t.testdir());
  const { store } = await e.open();
  const v1 = signed(1);
  const v2 = signed(2);
  const v3 = signed(3);
  await store.install(v1, 'v1');
  const [a, b] = await Promise.all([store.install(v2, 'v2'), store.install(v3, 'v3')]);
  t.equal(a.payload.version, 2);
  t.equal(b.payload.version, 3);
  t.ok(e.files().current?.equals(v3));
  t.ok(e.files().previous?.equals(v2), 'previous is v2: the installs did not interleave');

  const results = await Promise.allSettled([store.install(signed(5), 'v5'), store.install(signed(4), 'v4')]);
  t.equal(results[0].status, 'fulfilled');
  t.match(results[1], { status: 'rejected', reason: { code: 'EW_SNAPSHOT_STALE' } });
  t.equal(store.heldVersion(), 5);
  t.same(readdirSync(join(e.stateDir, 'snapshot')).sort(), ['current.cose', 'previous.cose']);
});

t.test('temp files left by a crash are removed on open', async (t) => {
  const e = env(t.testdir({ snapshot: { '.current.cose.tmp-4242-0123456789ab': 'torn' } }));
  const { store } = await e.open();
  t.equal(store.held(), undefined);
  t.same(readdirSync(join(e.stateDir, 'snapshot')), []);
  t.match(e.logs, [{ level: 'info', msg: /removed a temp file/ }]);
});

t.test('a failed write keeps the held snapshot in force and the files consistent', async (t) => {
  const e = env(t.testdir());
  const { store } = await e.open();
  const v1 = signed(1);
  await store.install(v1, 'v1');
  // previous.cose as a non-empty directory: the rename over it fails.
  mkdirSync(e.previousPath);
  writeFileSync(join(e.previousPath, 'x'), 'x');
  await t.rejects(store.install(signed(2), 'v2'), { code: 'EW_STORE_IO', where: e.previousPath });
  t.equal(store.heldVersion(), 1);
  t.ok(readFileSync(e.currentPath).equals(v1), 'current.cose still v1');
  t.same(readdirSync(join(e.stateDir, 'snapshot')).sort(), ['current.cose', 'previous.cose'], 'no temp file');
});

t.test('a failure between the two writes (a power cut after previous.cose) leaves previous.cose valid', async (t) => {
  const e = env(t.testdir());
  const { store } = await e.open();
  await store.install(signed(1), 'v1');
  const v2 = signed(2);
  await store.install(v2, 'v2');
  const v3 = signed(3);
  // Step 2 fails: current.cose is a non-empty directory after step 1 has copied it.
  const cur = readFileSync(e.currentPath);
  t.ok(cur.equals(v2));
  e.logs.length = 0;
  rmSync(e.currentPath);
  mkdirSync(e.currentPath);
  writeFileSync(join(e.currentPath, 'x'), 'x');
  await t.rejects(store.install(v3, 'v3'), { code: 'EW_STORE_IO', where: e.currentPath });
  t.equal(store.heldVersion(), 2, 'v2 still in force');
  t.match(e.logs, [{ level: 'warn', msg: /current\.cose is missing or no longer the snapshot in force \(version 2\): previous\.cose is left as it was/ }], 'a damaged current.cose is not promoted');
  t.ok(readFileSync(e.previousPath).equals(signed(1)), 'previous.cose is still v1, valid');
  e.logs.length = 0;
  const { store: reopened } = await e.open();
  t.equal(reopened.heldVersion(), 1, 'a restart finds the valid v1 in previous.cose');
  t.match(e.logs, [{ level: 'error', code: 'EW_STORE_IO', file: e.currentPath, msg: /not a regular file/ }]);
});

t.test('previous.cose is copied from current.cose on disk, never held in memory', async (t) => {
  const e = env(t.testdir());
  const { store } = await e.open();
  const v1 = signed(1);
  await store.install(v1, 'v1');
  v1.fill(0); // the caller's buffer: not kept
  await store.install(signed(2), 'v2');
  t.ok(readFileSync(e.previousPath).equals(signed(1)), 'previous.cose is v1, copied from disk');
  t.same(readdirSync(join(e.stateDir, 'snapshot')).sort(), ['current.cose', 'previous.cose'], 'no temp files');
});

t.test('a floor that got ahead is healed by a newer snapshot valid by the system clock; a board booted in the past is not fooled', async (t) => {
  const e = env(t.testdir());
  e.clock.now = T0;
  {
    const { store } = await e.open();
    await store.install(signed(1, { issuedAt: T0 - DAY }), 'v1');
  }
  // An older version once wrote a floor ten years ahead (the wall clock was wrong for a moment).
  writeFileSync(join(e.stateDir, 'time-floor.json'), JSON.stringify({ floor: T0 + 3650 * DAY }));
  const { store, tf } = await e.open();
  t.equal(tf.now(), T0 + 3650 * DAY);
  // A replayed older one is still refused; so is one issued before the one held.
  await t.rejects(store.install(signed(2, { issuedAt: T0 - 2 * DAY, expiresAt: T0 + 10 * DAY }), 'older issue'), { code: 'EW_SNAPSHOT_EXPIRED_BY_TIME_FLOOR' });
  // A fresh one from the cloud: issued now, valid by the system clock, newer version.
  await store.install(signed(3, { issuedAt: T0 - 60_000, expiresAt: T0 + 30 * DAY }), 'cloud');
  t.equal(store.heldVersion(), 3, 'accepted');
  t.equal(tf.floor, T0, 'the floor is back to signed time (then the clock, on persist)');
  t.ok(e.logs.some((l) => /time floor .* was ahead of signed time: snapshot version 3/.test(l.msg)), 'logged');
  // A board without a real-time clock, booted in 1970: a newer but expired snapshot does not reset the floor.
  e.clock.now = 1000;
  const booted = await e.open();
  t.equal(booted.tf.floor, T0);
  await t.rejects(booted.store.install(signed(4, { issuedAt: T0 - 30_000, expiresAt: T0 - 1000 }), 'replay'), { code: 'EW_SNAPSHOT_EXPIRED_BY_TIME_FLOOR' }, 'issued after the held one but expired by the floor, and the system clock is in 1970: refused');
  t.equal(booted.tf.floor, T0, 'the floor stays');
});

t.test('readSnapshotInForce (explain) finds what load() finds, read only', async (t) => {
  const e = env(t.testdir());
  const read = () => readSnapshotInForce({ stateDir: e.stateDir, trustedKeys: TRUSTED, gatewayId: GW });
  const none = await read();
  t.equal(none.snapshot, undefined, 'nothing installed');
  t.same(none.passedOver.map((p) => [p.file, p.error]), [[e.currentPath, null], [e.previousPath, null]], 'both files missing');
  t.notOk(existsSync(join(e.stateDir, 'snapshot')), 'nothing is created');

  const { store } = await e.open();
  await store.install(signed(1), 'v1');
  await store.install(signed(2), 'v2');
  const both = await read();
  t.equal(both.snapshot?.payload.version, 2);
  t.equal(both.file, e.currentPath);
  t.same(both.passedOver, []);

  writeFileSync(e.currentPath, noise(300, 'torn'));
  const fallback = await read();
  t.equal(fallback.snapshot?.payload.version, 1, 'previous.cose when current.cose is refused, as load() does');
  t.equal(fallback.file, e.previousPath);
  t.match(fallback.passedOver, [{ file: e.currentPath, error: { code: 'EW_SNAPSHOT_MALFORMED' } }]);
  t.equal((await e.open()).store.heldVersion(), 1, 'and load() agrees');

  const foreign = await readSnapshotInForce({ stateDir: e.stateDir, trustedKeys: TRUSTED, gatewayId: 'gw-other' });
  t.equal(foreign.snapshot, undefined, 'for another gateway: none');
  t.match(foreign.passedOver, [{ file: e.currentPath }, { file: e.previousPath, error: { code: 'EW_SNAPSHOT_WRONG_GATEWAY' } }]);
});
