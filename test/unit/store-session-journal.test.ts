// The session journal and the session store on top of it: what was queued, subscribed, owned and
// retained is read back after a close, a crash (torn tail), a compaction cut short and a damaged file.
import t from 'tap';
import { appendFileSync, readFileSync, statSync, truncateSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { SessionJournal, SESSION_JOURNAL_FILE, SESSION_STATE_FILE } from '../../src/store/session-journal.js';
import { SessionStore, type StoredPacket } from '../../src/broker/session-store.js';
import type { Authority } from '../../src/broker/authority.js';
import type { EwError } from '../../src/errors.js';
import { drainQueue, queuedPacket } from '../helpers/session-packets.js';

const pkt = (counter: number, topic: string, extra: Partial<StoredPacket> = {}): StoredPacket => queuedPacket('old-broker', counter, topic, extra);

const problems = (): { list: EwError[]; onProblem: (e: EwError) => void } => {
  const list: EwError[] = [];
  return { list, onProblem: (e) => list.push(e) };
};

t.test('journal: changes read back in order; a torn tail is cut off and reported', async (t) => {
  const dir = t.testdir({});
  const p = problems();
  const a = await SessionJournal.open({ dir, syncIntervalMs: 5, onProblem: p.onProblem });
  t.equal(a.state, null);
  t.same(a.changes, []);
  for (let i = 0; i < 5; i++) a.journal.append(['x', `c${i}`, Buffer.from([i])]);
  await a.journal.flush();
  await a.journal.close();
  const size = statSync(join(dir, SESSION_JOURNAL_FILE)).size;
  truncateSync(join(dir, SESSION_JOURNAL_FILE), size - 3); // a power cut in the middle of the last record
  const b = await SessionJournal.open({ dir, syncIntervalMs: 5, onProblem: p.onProblem });
  t.same(
    b.changes.map((c) => (c as unknown[])[1]),
    ['c0', 'c1', 'c2', 'c3'],
    'the four whole records',
  );
  t.match(p.list.map((e) => e.message), [/bytes after the last whole record/], 'the cut is reported');
  b.journal.append(['x', 'c9']);
  await b.journal.close();
  const c = await SessionJournal.open({ dir, syncIntervalMs: 5 });
  t.same(c.changes.map((x) => (x as unknown[])[1]), ['c0', 'c1', 'c2', 'c3', 'c9'], 'appending goes on after the cut');
  await c.journal.close();
  // A flipped byte inside a record: the CRC stops the replay there.
  const bytes = readFileSync(join(dir, SESSION_JOURNAL_FILE));
  bytes[bytes.length - 2]! ^= 0xff;
  writeFileSync(join(dir, SESSION_JOURNAL_FILE), bytes);
  const d = await SessionJournal.open({ dir, syncIntervalMs: 5 });
  t.equal(d.changes.length, 4, 'the damaged last record is not replayed');
  await d.journal.close();
});

t.test('journal: compaction writes the state and a fresh journal; a stale journal is ignored', async (t) => {
  const dir = t.testdir({});
  const a = await SessionJournal.open({ dir, syncIntervalMs: 5, compactBytes: 64 });
  a.journal.append(['before', 1]);
  await a.journal.flush();
  const oldJournal = readFileSync(join(dir, SESSION_JOURNAL_FILE));
  t.ok(a.journal.wantsCompaction === false || a.journal.wantsCompaction === true);
  await a.journal.compact({ everything: 'so far' });
  a.journal.append(['after', 2]);
  await a.journal.close();
  const b = await SessionJournal.open({ dir, syncIntervalMs: 5 });
  t.same(b.state, { everything: 'so far' });
  t.same(b.changes, [['after', 2]], 'only what came after the compaction');
  await b.journal.close();
  // A compaction cut short after the state was written: the old journal (older generation) is not replayed on top.
  writeFileSync(join(dir, SESSION_JOURNAL_FILE), oldJournal);
  const c = await SessionJournal.open({ dir, syncIntervalMs: 5 });
  t.same(c.state, { everything: 'so far' });
  t.same(c.changes, [], 'the stale journal\'s changes are in the state already');
  await c.journal.close();
});

t.test('journal: a damaged state is set aside and the sessions start empty', async (t) => {
  const dir = t.testdir({});
  const a = await SessionJournal.open({ dir, syncIntervalMs: 5 });
  await a.journal.compact({ some: 'state' });
  a.journal.append(['later']);
  await a.journal.close();
  writeFileSync(join(dir, SESSION_STATE_FILE), Buffer.from('garbage, not CBOR of ours'));
  const p = problems();
  const b = await SessionJournal.open({ dir, syncIntervalMs: 5, onProblem: p.onProblem });
  t.equal(b.state, null);
  t.same(b.changes, [], 'nor is its journal replayed on an empty state');
  t.ok(existsSync(join(dir, `${SESSION_STATE_FILE}.damaged`)), 'set aside');
  t.match(p.list[0]?.message, /damaged/);
  await b.journal.close();
  appendFileSync(join(dir, SESSION_JOURNAL_FILE), Buffer.alloc(0));
});

const anna: Authority = Object.freeze({ principal: 'tech-anna', source: 'local', clientId: 'anna', requestId: null, permission: 'EXECUTE_THING_COMMAND', authorizedAt: 1000, expiresAt: 9e15 });


for (const closeCleanly of [true, false]) {
  t.test(`session store: everything is read back after ${closeCleanly ? 'a close' : 'a crash (journal only)'}`, async (t) => {
    const dir = t.testdir({});
    const held = new Map<number, Authority>([[1, anna]]);
    const opts = { syncIntervalMs: 5, dir };
    const a = await SessionStore.load({ journal: opts, authorityOf: (_b, c) => (c === undefined ? undefined : held.get(c)) });
    await a.setup({ id: 'old-broker' });
    a.setOwner('oven-1', 'oven-1');
    a.setOwner('app', null);
    await a.addSubscriptions({ id: 'oven-1' }, [{ topic: 'things/oven-1/commands/#', qos: 1 }, { topic: 'x/y', qos: 0 }]);
    await a.outgoingEnqueue({ clientId: 'oven-1' }, pkt(1, 'things/oven-1/commands/c'));
    await a.outgoingEnqueue({ clientId: 'oven-1' }, pkt(2, 'things/oven-1/commands/d'));
    await a.outgoingEnqueue({ clientId: 'oven-1' }, pkt(3, 'things/oven-1/commands/e', { qos: 2 }));
    await a.outgoingUpdate({ id: 'oven-1' }, pkt(1, 'things/oven-1/commands/c', { messageId: 41 }));
    await a.outgoingUpdate({ id: 'oven-1' }, pkt(3, 'things/oven-1/commands/e', { messageId: 43 }));
    await a.outgoingUpdate({ id: 'oven-1' }, { cmd: 'pubrel', messageId: 43 });
    await a.outgoingClearMessageId({ id: 'oven-1' }, pkt(2, 'things/oven-1/commands/d'));
    await a.storeRetained(pkt(9, 'things/oven-1/telemetry/state', { retain: true }));
    if (closeCleanly) await a.close();
    else await (a as unknown as { journal: SessionJournal }).journal.flush();

    const b = await SessionStore.load({ journal: opts });
    await b.setup({ id: 'new-broker' });
    t.equal(b.ownerOf('oven-1'), 'oven-1');
    t.equal(b.ownerOf('app'), null, 'an anonymous owner');
    t.equal(b.ownerOf('nobody'), undefined);
    t.same((await b.subscriptionsByClient({ id: 'oven-1' })).map((s) => [s.topic, s.qos]), [['things/oven-1/commands/#', 1], ['x/y', 0]]);
    t.same((await b.subscriptionsByTopic('things/oven-1/commands/z')).map((s) => s.clientId), ['oven-1'], 'QoS > 0 subscriptions match again');
    const q = await drainQueue(b, 'oven-1');
    t.same(q.map((p) => [p.cmd, p.brokerCounter, p.messageId, p.dup]), [['publish', 1, 41, true], ['pubrel', undefined, 43, undefined]], 'the sent one (DUP), the PUBREL; the cleared one is gone');
    t.ok(Buffer.isBuffer(q[0]!.payload) && q[0]!.payload.toString() === 'p1', 'payloads are Buffers again');
    t.same(b.authorityOf('oven-1', { brokerId: 'old-broker', brokerCounter: 1 }), anna, 'the queued action\'s authority came back with it');
    t.equal(b.stats().actionsQueued, 1);
    await b.outgoingClearMessageId({ id: 'oven-1' }, { cmd: 'puback', messageId: 41 });
    t.equal(b.queued('oven-1'), 1, 'packet identifiers are indexed again');
    const retained: StoredPacket[] = [];
    for await (const p of b.createRetainedStream('things/#')) retained.push(p as StoredPacket);
    t.same(retained.map((p) => p.topic), ['things/oven-1/telemetry/state']);
    b.discardSession('oven-1');
    await b.close();
    const c = await SessionStore.load({ journal: opts });
    t.equal(c.ownerOf('oven-1'), undefined, 'a discarded session stays discarded');
    t.equal(c.queued('oven-1'), 0);
    t.same(await c.subscriptionsByClient({ id: 'oven-1' }), []);
    await c.close();
  });
}

t.test('session store: the journal is compacted as it grows, and stays readable', async (t) => {
  const dir = t.testdir({});
  const opts = { syncIntervalMs: 1, dir, compactBytes: 4096 };
  const a = await SessionStore.load({ journal: opts });
  await a.setup({ id: 'b' });
  for (let i = 1; i <= 2000; i++) {
    await a.outgoingEnqueue({ clientId: 'c' }, pkt(i, 't/x'));
    await a.outgoingUpdate({ id: 'c' }, pkt(i, 't/x', { messageId: (i % 60000) + 1 }));
    await a.outgoingClearMessageId({ id: 'c' }, { cmd: 'puback', messageId: (i % 60000) + 1 });
  }
  // The changes made while a compaction runs wait for it; the next change after it compacts again.
  await (a as unknown as { journal: SessionJournal }).journal.flush();
  await a.outgoingEnqueue({ clientId: 'c' }, pkt(5000, 't/last'));
  await (a as unknown as { journal: SessionJournal }).journal.flush();
  t.ok(statSync(join(dir, SESSION_JOURNAL_FILE)).size < 64 * 1024, `journal ${statSync(join(dir, SESSION_JOURNAL_FILE)).size} bytes after 6,000 changes`);
  const b = await SessionStore.load({ journal: opts });
  t.same((await drainQueue(b, 'c')).map((p) => p.topic), ['t/last']);
  await b.close();
  await a.close().catch(() => undefined);
});

t.test('session store: a message queued for many sessions is journaled once and read back for each', async (t) => {
  const dir = t.testdir({});
  const opts = { syncIntervalMs: 1, dir };
  const held = new Map<number, Authority>([[7, anna]]);
  const a = await SessionStore.load({ journal: opts, authorityOf: (_b, c) => (c === undefined ? undefined : held.get(c)) });
  const big = Buffer.alloc(50_000, 0x62);
  const readers = Array.from({ length: 20 }, (_, i) => ({ clientId: `reader-${i}` }));
  await a.outgoingEnqueueCombi(readers, pkt(7, 'things/oven-1/commands/c', { payload: big }));
  await a.outgoingUpdate({ id: 'reader-3' }, pkt(7, 'things/oven-1/commands/c', { messageId: 99 }));
  await (a as unknown as { journal: SessionJournal }).journal.flush();
  const journalSize = statSync(join(dir, SESSION_JOURNAL_FILE)).size;
  t.ok(journalSize < 2 * big.length, `journal ${journalSize} bytes for a 50,000-byte payload queued 20 times`);
  for (const how of ['replayed', 'restored'] as const) {
    if (how === 'restored') await a.close();
    const b = await SessionStore.load({ journal: opts });
    for (const r of readers) {
      const q = await drainQueue(b, r.clientId);
      t.equal(q.length, 1, `${how}: ${r.clientId} has it`);
      t.equal(q[0]!.payload!.length, big.length);
    }
    t.equal((await drainQueue(b, 'reader-3'))[0]!.messageId, 99, `${how}: its own packet identifier`);
    t.equal((await drainQueue(b, 'reader-4'))[0]!.messageId, undefined);
    t.same(b.authorityOf('reader-9', { brokerId: 'old-broker', brokerCounter: 7 }), anna);
    if (how === 'restored') {
      await (b as unknown as { journal: SessionJournal }).journal.close();
      t.ok(statSync(join(dir, SESSION_STATE_FILE)).size < 2 * big.length, 'the state holds the payload once too');
    } else await (b as unknown as { journal: SessionJournal }).journal.close();
  }
});

// Record format 2 (MQTT 5, issue 15): message properties, message expiry, subscription identifiers and
// MQTT 5 session expiry are read back; format 1 records (written before) still load.
const props = { responseTopic: 'things/oven-1/commands/reboot/reply', correlationData: Buffer.from('corr-7'), userProperties: { tool: 'fieldkit', tags: ['a', 'b'] }, contentType: 'text/plain', payloadFormatIndicator: true, messageExpiryInterval: 60 };

for (const closeCleanly of [true, false]) {
  t.test(`session store, format 2: MQTT 5 properties, message expiry, subscription identifiers, session expiry read back after ${closeCleanly ? 'a close' : 'a crash'}`, async (t) => {
    const dir = t.testdir({});
    let now = 1_000_000;
    const opts = { syncIntervalMs: 5, dir };
    const a = await SessionStore.load({ journal: opts, now: () => now });
    await a.setup({ id: 'old-broker' });
    a.setOwner('oven-1', 'oven-1');
    a.setOwner('v5-short', 'oven-1');
    await a.addSubscriptions({ id: 'oven-1' }, [{ topic: 'things/oven-1/commands/#', qos: 1, subscriptionIdentifier: 7 } as never]);
    // aedes' packet: a topic alias and a subscription identifier are not the message's.
    await a.outgoingEnqueue({ clientId: 'oven-1' }, pkt(1, 'things/oven-1/telemetry/t', { properties: { ...props, topicAlias: 3, subscriptionIdentifier: 9 }, messageExpiry: now + 60_000 }));
    await a.storeRetained(pkt(2, 'things/oven-1/telemetry/state', { retain: true, properties: { userProperties: { k: 'v' }, messageExpiryInterval: 30 }, messageExpiry: now + 30_000 }));
    a.disconnected('v5-short', now, 5);
    if (closeCleanly) await a.close();
    else await (a as unknown as { journal: SessionJournal }).journal.flush();

    now += 2_000; // the restart took 2 s
    const b = await SessionStore.load({ journal: opts, now: () => now });
    await b.setup({ id: 'new-broker' });
    const [q] = await drainQueue(b, 'oven-1');
    t.same(q?.properties, props, 'the queued message keeps its properties, without topic alias and subscription identifier');
    t.ok(Buffer.isBuffer(q?.properties?.correlationData), 'correlation data is a Buffer again');
    t.equal(q?.messageExpiry, 1_000_000 + 60_000, 'and its expiry');
    t.same(await b.subscriptionsByClient({ id: 'oven-1' }), [{ topic: 'things/oven-1/commands/#', qos: 1, rh: undefined, rap: undefined, nl: undefined, subscriptionIdentifier: 7 }], 'the subscription identifier');
    const retained: StoredPacket[] = [];
    for await (const p of b.createRetainedStream('things/oven-1/telemetry/#')) retained.push(p as StoredPacket);
    t.same(retained.map((p) => [p.properties, p.messageExpiry]), [[{ userProperties: { k: 'v' }, messageExpiryInterval: 28 }, undefined]], 'a retained message: its properties, the remaining interval');
    t.equal(b.nextSessionExpiry, 1_000_000 + 5_000, 'the MQTT 5 session\'s deadline counts from its disconnect, not from the restart');
    t.same(b.expireSessions(now, 3600_000, () => false), [], 'not yet');
    now += 3_000;
    t.same(b.expireSessions(now, 3600_000, () => false), ['v5-short'], 'ended 5 s after its disconnect');
    t.equal(b.ownerOf('oven-1'), 'oven-1', 'the 3.1.1-style session stays (sessions.expirySeconds, from the start)');
    await b.close();
  });
}

t.test('session store: format 1 records (before MQTT 5) still load', async (t) => {
  const dir = t.testdir({});
  // Exactly what the previous version wrote: 7-element 's', packets without properties, no 'd'.
  const { journal } = await SessionJournal.open({ dir, syncIntervalMs: 0 });
  journal.append(['o', 'oven-1', 'oven-1']);
  journal.append(['s', 'oven-1', 'things/oven-1/commands/#', 1, 0, false, false]);
  journal.append(['e', 'oven-1', 'old/1', { cmd: 'publish', brokerId: 'old', brokerCounter: 1, topic: 'things/oven-1/commands/reboot', payload: Buffer.from('go'), qos: 1, retain: false, dup: false }, anna]);
  journal.append(['r', 'things/oven-1/telemetry/state', { cmd: 'publish', topic: 'things/oven-1/telemetry/state', payload: Buffer.from('running'), qos: 0, retain: true, dup: false }]);
  await journal.close();
  const b = await SessionStore.load({ journal: { dir, syncIntervalMs: 0 } });
  t.same((await b.subscriptionsByClient({ id: 'oven-1' })).map((s) => [s.topic, s.qos, s.subscriptionIdentifier]), [['things/oven-1/commands/#', 1, undefined]]);
  const [q] = await drainQueue(b, 'oven-1');
  t.equal(String(q?.payload), 'go');
  t.equal(q?.properties, undefined, 'no properties');
  t.equal(q?.messageExpiry, undefined, 'no expiry');
  t.same(b.authorityOf('oven-1', { brokerId: 'old', brokerCounter: 1 }), anna, 'the authority');
  t.equal(b.nextSessionExpiry, Infinity, 'no MQTT 5 session deadline');
  await b.close();
  // And a state compacted by the new version loads again (format field present).
  const c = await SessionStore.load({ journal: { dir, syncIntervalMs: 0 } });
  t.equal((await drainQueue(c, 'oven-1')).length, 1);
  await c.close();
});

t.test('session store: queued messages past their MQTT 5 expiry are dropped, not before', async (t) => {
  let now = 5_000;
  const store = new SessionStore({ now: () => now });
  await store.setup({ id: 'b' });
  await store.outgoingEnqueue({ clientId: 'dev' }, pkt(1, 'things/oven-1/telemetry/a', { properties: { messageExpiryInterval: 2 }, messageExpiry: now + 2_000 }));
  await store.outgoingEnqueue({ clientId: 'dev' }, pkt(2, 'things/oven-1/telemetry/b', { properties: { messageExpiryInterval: 60 }, messageExpiry: now + 60_000 }));
  await store.outgoingEnqueue({ clientId: 'dev' }, pkt(3, 'things/oven-1/telemetry/c'));
  t.same(store.dropExpired(now + 1_999, () => false), []);
  t.equal(store.queued('dev'), 3, 'nothing before its time');
  now += 2_000;
  t.same(store.dropExpired(now, () => false), [], 'no action: nothing to audit');
  t.same((await drainQueue(store, 'dev')).map((p) => p.brokerCounter), [2, 3], 'the expired one is gone');
  t.equal(store.stats().expiredMessages, 1, 'counted');
  await store.storeRetained(pkt(4, 'things/oven-1/telemetry/r', { retain: true, properties: { messageExpiryInterval: 2 }, messageExpiry: now + 2_000 }));
  now += 2_000;
  const retained: unknown[] = [];
  for await (const p of store.createRetainedStreamCombi(['things/#'])) retained.push(p);
  t.same(retained, [], 'an expired retained message is not handed out');
  t.equal(store.stats().retained, 0, 'and is removed');
});

for (const closeCleanly of [true, false]) {
  t.test(`MQTT 5 message properties of retained and queued messages are kept and read back after ${closeCleanly ? 'a close' : 'a crash'}; a publisher's topic alias and a subscription identifier are not`, async (t) => {
    const dir = t.testdir({});
    const opts = { syncIntervalMs: 5, dir };
    const props = { userProperties: { a: '2', c: ['3', '4'] }, contentType: 'text/plain', payloadFormatIndicator: true, responseTopic: 'r/t', correlationData: Buffer.from([1, 2, 3]), topicAlias: 3, subscriptionIdentifier: 9 };
    const a = await SessionStore.load({ journal: opts });
    await a.setup({ id: 'old-broker' });
    a.setOwner('app', null);
    await a.outgoingEnqueue({ clientId: 'app' }, pkt(1, 'x/queued', { properties: props }));
    await a.storeRetained(pkt(2, 'x/retained', { retain: true, properties: props }));
    if (closeCleanly) await a.close();
    else await (a as unknown as { journal: SessionJournal }).journal.flush();
    const b = await SessionStore.load({ journal: opts });
    await b.setup({ id: 'new-broker' });
    const retained: StoredPacket[] = [];
    for await (const p of b.createRetainedStream('x/#')) retained.push(p as StoredPacket);
    const [queued] = await drainQueue(b, 'app');
    for (const [what, p] of [['retained', retained[0]], ['queued', queued]] as const) {
      const got = p?.properties as Record<string, unknown> | undefined;
      t.same({ ...got, correlationData: undefined }, { userProperties: { a: '2', c: ['3', '4'] }, contentType: 'text/plain', payloadFormatIndicator: true, responseTopic: 'r/t', correlationData: undefined }, `${what}: the message's own properties, without topic alias or subscription identifier`);
      t.ok(Buffer.isBuffer(got?.['correlationData']) && (got?.['correlationData'] as Buffer).equals(Buffer.from([1, 2, 3])), `${what}: correlation data a Buffer again`);
    }
    await b.close();
  });
}
