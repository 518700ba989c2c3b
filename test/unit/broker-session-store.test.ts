// The broker's session store (aedes' persistence interface): queues that keep each action's
// authority, clear exactly the entry asked for, end with a clean session, and never retain actions.
import t from 'tap';
import { SessionStore, entryBytes, type StoredPacket } from '../../src/broker/session-store.js';
import type { Authority } from '../../src/broker/authority.js';
import { drainQueue, queuedPacket } from '../helpers/session-packets.js';

const pkt = (counter: number, topic = 'things/oven-1/commands/c', extra: Partial<StoredPacket> = {}): StoredPacket => queuedPacket('b1', counter, topic, extra);

const authority = (principal: string, expiresAt = Date.now() + 60_000): Authority =>
  Object.freeze({ principal, source: 'local', clientId: principal, requestId: null, permission: 'EXECUTE_THING_COMMAND', authorizedAt: Date.now(), expiresAt });



const isAction = (topic: string) => /^things\/[^/]+\/commands\/[^/]+$/.test(topic);

t.test('a queued action keeps its authority, per client, until it is cleared', async (t) => {
  const held = new Map<number, Authority>();
  const store = new SessionStore({ authorityOf: (_b, c) => (c === undefined ? undefined : held.get(c)) });
  await store.setup({ id: 'b1' });
  const anna = authority('tech-anna');
  held.set(1, anna);
  await store.outgoingEnqueueCombi([{ clientId: 'oven-1' }, { clientId: 'oven-1b' }], pkt(1));
  held.delete(1);
  await store.outgoingEnqueueCombi([{ clientId: 'oven-1' }], pkt(2, 'things/oven-1/telemetry/t'));
  t.equal(store.authorityOf('oven-1', { brokerId: 'b1', brokerCounter: 1 }), anna, 'the action carries its authority');
  t.equal(store.authorityOf('oven-1b', { brokerId: 'b1', brokerCounter: 1 }), anna, 'each queued copy does');
  t.equal(store.authorityOf('oven-1', { brokerId: 'b1', brokerCounter: 2 }), null, 'a telemetry message has none');
  t.equal(store.authorityOf('oven-1', { brokerId: 'b2', brokerCounter: 1 }), undefined, 'another broker\'s packet is not this one');
  await store.outgoingEnqueueCombi([{ clientId: 'oven-1' }, { clientId: 'oven-1' }], pkt(3));
  t.equal(store.queued('oven-1'), 3, 'two matching subscriptions of one client queue the message once');
  t.same((await drainQueue(store, 'oven-1')).map((p) => p.brokerCounter), [1, 2, 3], 'in order');
  t.same(store.stats().actionsQueued, 2, 'authority-carrying entries counted: oven-1 and oven-1b each hold one of message 1');
});

t.test('clearing a never-sent entry removes that entry, not the first unsent one', async (t) => {
  const store = new SessionStore();
  await store.setup({ id: 'b1' });
  for (const c of [1, 2, 3]) await store.outgoingEnqueue({ clientId: 'pump' }, pkt(c));
  const cleared = await store.outgoingClearMessageId({ id: 'pump' }, pkt(2));
  t.equal(cleared?.brokerCounter, 2);
  t.same((await drainQueue(store, 'pump')).map((p) => p.brokerCounter), [1, 3], 'message 2 is gone, 1 and 3 stay');
});

t.test('packet identifiers: assigned when sent, DUP on resume, cleared by PUBACK, PUBREL replaces in place', async (t) => {
  const store = new SessionStore();
  await store.setup({ id: 'b1' });
  for (const c of [1, 2, 3]) await store.outgoingEnqueue({ clientId: 'pump' }, pkt(c, 'things/pump/commands/c', { qos: 2 }));
  await store.outgoingUpdate({ id: 'pump' }, pkt(1, undefined, { messageId: 11 }));
  await store.outgoingUpdate({ id: 'pump' }, pkt(2, undefined, { messageId: 12 }));
  let q = await drainQueue(store, 'pump');
  t.same(q.map((p) => [p.messageId, p.dup]), [[11, true], [12, true], [undefined, false]], 'sent ones come back with DUP 1 [MQTT-3.3.1-1]');
  // Two QoS 2 flows between PUBREC and PUBCOMP: each PUBREL replaces its own PUBLISH.
  await store.outgoingUpdate({ id: 'pump' }, { cmd: 'pubrel', messageId: 12 });
  await store.outgoingUpdate({ id: 'pump' }, { cmd: 'pubrel', messageId: 11 });
  q = await drainQueue(store, 'pump');
  t.same(q.map((p) => [p.cmd, p.messageId]), [['pubrel', 11], ['pubrel', 12], ['publish', undefined]], 'PUBRELs in place of their PUBLISHes [MQTT-4.3.3-1]');
  t.equal(store.stats().actionsQueued, 0, 'a PUBREL carries no authority');
  await store.outgoingClearMessageId({ id: 'pump' }, { cmd: 'pubcomp', messageId: 11 });
  q = await drainQueue(store, 'pump');
  t.same(q.map((p) => p.messageId), [12, undefined], 'PUBCOMP clears exactly its PUBREL');
  t.resolves(store.outgoingUpdate({ id: 'pump' }, { cmd: 'pubrel', messageId: 999 }), 'a PUBREL for nothing stored is not an error');
});

t.test('a clean session discards its queue [MQTT-3.1.2-6]; only granted filters are stored', async (t) => {
  const store = new SessionStore({ isGranted: (_c, f) => f !== 'things/oven-2/commands/#' });
  await store.setup({ id: 'b1' });
  await store.addSubscriptions({ id: 'pump' }, [
    { topic: 'things/pump/commands/#', qos: 1 },
    { topic: 'things/oven-2/commands/#', qos: 1 },
  ]);
  t.same((await store.subscriptionsByClient({ id: 'pump' })).map((s) => s.topic), ['things/pump/commands/#'], 'the refused filter is not stored');
  t.same((await store.subscriptionsByTopic('things/oven-2/commands/x')).length, 0, 'and queues nothing');
  await store.outgoingEnqueue({ clientId: 'pump' }, pkt(1));
  await store.cleanSubscriptions({ id: 'pump' });
  t.equal(store.queued('pump'), 0, 'the queue went with the session');
  t.same(await store.subscriptionsByClient({ id: 'pump' }), []);
  t.same(await store.countOffline(), { subsCount: 0, clientsCount: 0 });
});

t.test('actions are never retained; purgeRetained removes old ones', async (t) => {
  const store = new SessionStore({ isActionTopic: isAction });
  await store.setup({ id: 'b1' });
  await store.storeRetained(pkt(1, 'things/pump/commands/start', { retain: true }));
  await store.storeRetained(pkt(2, 'things/pump/telemetry/t', { retain: true }));
  const retained = async (pattern: string) => {
    const out: StoredPacket[] = [];
    for await (const p of store.createRetainedStream(pattern)) out.push(p as StoredPacket);
    return out.map((p) => p.topic);
  };
  t.same(await retained('#'), ['things/pump/telemetry/t'], 'the command was not stored');
  const plain = new SessionStore();
  await plain.storeRetained(pkt(1, 'things/pump/commands/start', { retain: true }));
  await plain.storeRetained(pkt(2, 'things/pump/telemetry/t', { retain: true }));
  t.equal(plain.purgeRetained(isAction), 1, 'one action purged');
  const left: StoredPacket[] = [];
  for await (const p of plain.createRetainedStreamCombi(['things/#'])) left.push(p as StoredPacket);
  t.same(left.map((p) => p.topic), ['things/pump/telemetry/t']);
  await store.storeRetained(pkt(3, 'things/pump/telemetry/t', { payload: Buffer.alloc(0), retain: true }));
  t.same(await retained('#'), [], 'an empty retained payload clears the topic');
});

t.test('dropExpired: unsent expired actions go; a connected client keeps what it was sent', async (t) => {
  const held = new Map<number, Authority>();
  const store = new SessionStore({ authorityOf: (_b, c) => (c === undefined ? undefined : held.get(c)) });
  await store.setup({ id: 'b1' });
  const now = Date.now();
  held.set(1, authority('tech-anna', now - 1)); // expired, never sent
  held.set(2, authority('tech-anna', now - 1)); // expired, sent (in flight)
  held.set(3, authority('tech-anna', now + 60_000)); // alive
  for (const c of [1, 2, 3]) await store.outgoingEnqueue({ clientId: 'pump' }, pkt(c));
  await store.outgoingEnqueue({ clientId: 'pump' }, pkt(4, 'things/pump/telemetry/t')); // no authority: not an action
  await store.outgoingUpdate({ id: 'pump' }, pkt(2, undefined, { messageId: 7 }));
  let dropped = store.dropExpired(now, () => true);
  t.same(dropped.map((d) => d.packet.brokerCounter), [1], 'connected: only the unsent one');
  dropped = store.dropExpired(now, () => false);
  t.same(dropped.map((d) => [d.clientId, d.packet.brokerCounter, d.authority.principal]), [['pump', 2, 'tech-anna']], 'offline: the sent one too');
  t.same((await drainQueue(store, 'pump')).map((p) => p.brokerCounter), [3, 4]);
  t.equal(store.stats().actionsQueued, 1);
  t.same(store.dropExpired(now + 120_000, () => false).length, 1, 'the last one expires later');
  t.equal(store.stats().actionsQueued, 0);
});

t.test('inbound QoS 2 and wills', async (t) => {
  const store = new SessionStore();
  await store.setup({ id: 'b1' });
  await store.incomingStorePacket({ id: 'c' }, pkt(1, 'a/b', { qos: 2, messageId: 5 }));
  t.equal((await store.incomingGetPacket({ id: 'c' }, { cmd: 'pubrel', messageId: 5 })).messageId, 5);
  await store.incomingDelPacket({ id: 'c' }, { cmd: 'pubrel', messageId: 5 });
  await t.rejects(store.incomingGetPacket({ id: 'c' }, { cmd: 'pubrel', messageId: 5 }), /no such packet/);
  // A second delete (two PUBRELs for one packet) resolves: aedes 2.0.0-beta.1 does not catch it (src/broker/upstream/persistence-contract.ts).
  await t.resolves(store.incomingDelPacket({ id: 'c' }, { cmd: 'pubrel', messageId: 5 }));
  // The inbound window (limits.maxInflightPerClient): one more packet awaiting PUBREL is refused at once.
  const bounded = new SessionStore({ maxIncomingPerClient: 2 });
  await bounded.setup({ id: 'b1' });
  await bounded.incomingStorePacket({ id: 'w' }, pkt(1, 'a/b', { qos: 2, messageId: 1 }));
  await bounded.incomingStorePacket({ id: 'w' }, pkt(2, 'a/b', { qos: 2, messageId: 2 }));
  await bounded.incomingStorePacket({ id: 'w' }, pkt(3, 'a/b', { qos: 2, messageId: 2 }));
  await t.rejects(bounded.incomingStorePacket({ id: 'w' }, pkt(4, 'a/b', { qos: 2, messageId: 3 })), /maxInflightInbound exceeded/, 'the third distinct packet id is refused (a resent one is not)');
  await bounded.cleanIncoming({ id: 'w' });
  await t.resolves(bounded.incomingStorePacket({ id: 'w' }, pkt(5, 'a/b', { qos: 2, messageId: 3 })), 'after cleanIncoming there is room again');
  const will = { cmd: 'publish', topic: 'w', payload: Buffer.from('x'), qos: 0 as const };
  await store.putWill({ id: 'c' }, will);
  t.equal((await store.getWill({ id: 'c' }))?.brokerId, 'b1');
  const fromDead: StoredPacket[] = [];
  for await (const w of store.streamWill({ b1: Date.now() })) fromDead.push(w as StoredPacket);
  t.same(fromDead, [], 'a live broker\'s wills are not streamed');
  t.equal((await store.delWill({ id: 'c' }))?.topic, 'w');
  t.equal(store.stats().wills, 0);
});

t.test('queue bounds: a full session drops its oldest; all queues full refuse the newest', async (t) => {
  const events: { clientId: string; bound: string; counter: number | undefined; action: boolean }[] = [];
  const held = new Map<number, Authority>([[2, authority('tech-anna')]]);
  const store = new SessionStore({
    limits: { maxMessages: 3, maxBytes: 1_000_000, maxTotalBytes: 10 * (entryBytes(pkt(1)) + 1) },
    authorityOf: (_b, c) => (c === undefined ? undefined : held.get(c)),
    onQueueLimit: (e) => events.push({ clientId: e.clientId, bound: e.bound, counter: e.packet.brokerCounter, action: e.authority !== null }),
  });
  await store.setup({ id: 'b1' });
  for (const c of [1, 2, 3, 4, 5]) await store.outgoingEnqueue({ clientId: 'pump' }, pkt(c));
  t.same((await drainQueue(store, 'pump')).map((p) => p.brokerCounter), [3, 4, 5], 'the newest three stay');
  t.same(events, [
    { clientId: 'pump', bound: 'session', counter: 1, action: false },
    { clientId: 'pump', bound: 'session', counter: 2, action: true },
  ], 'the two oldest were dropped, reported (one an action)');
  t.equal(store.stats().actionsQueued, 0);
  for (const c of [6, 7, 8]) await store.outgoingEnqueue({ clientId: 'valve' }, pkt(c));
  for (const c of [9, 10, 11, 12]) await store.outgoingEnqueue({ clientId: 'fan' }, pkt(c));
  t.equal(store.stats().queued, 9);
  t.same(events.slice(2).map((e) => [e.clientId, e.bound, e.counter]), [['fan', 'session', 9]]);
  for (const c of [13, 14]) await store.outgoingEnqueue({ clientId: 'fan' }, pkt(c));
  await store.outgoingEnqueue({ clientId: 'new' }, pkt(15));
  await store.outgoingEnqueue({ clientId: 'new' }, pkt(16));
  t.same(events.slice(3).map((e) => [e.clientId, e.bound, e.counter]), [['fan', 'session', 10], ['fan', 'session', 11], ['new', 'total', 16]], 'past the total bound the newest message is not queued');
  t.ok(store.stats().queuedBytes <= 10 * (entryBytes(pkt(1)) + 1));
  t.same(store.limitCounters, { droppedOldest: 5, refusedTotal: 1, expiredSessions: 0, expiredMessages: 0 });
  await store.outgoingClearMessageId({ id: 'fan' }, pkt(12));
  await store.cleanSubscriptions({ id: 'valve' });
  let left = 0;
  for (const id of ['pump', 'fan', 'new', 'valve']) for (const p of await drainQueue(store, id)) left += entryBytes(p);
  t.equal(store.stats().queuedBytes, left, 'bytes given back as entries go');
  t.equal(store.stats().queued, 6);
});

t.test('queue bounds in bytes: the oldest go; a message larger than a session may hold is not queued', async (t) => {
  const events: string[] = [];
  const store = new SessionStore({ limits: { maxMessages: 1000, maxBytes: 3 * entryBytes(pkt(1)), maxTotalBytes: 1e9 }, onQueueLimit: (e) => events.push(`${e.bound}:${e.packet.brokerCounter}`) });
  for (const c of [1, 2, 3, 4]) await store.outgoingEnqueue({ clientId: 'pump' }, pkt(c));
  t.same((await drainQueue(store, 'pump')).map((p) => p.brokerCounter), [2, 3, 4]);
  await store.outgoingEnqueue({ clientId: 'pump' }, pkt(5, undefined, { payload: Buffer.alloc(10_000) }));
  t.same(events, ['session:1', 'total:5']);
});

t.test('a live delivery the bounds will not track again (queue copy gone, all queues full) is sent untracked, not an error', async (t) => {
  const store = new SessionStore({ limits: { maxMessages: 1000, maxBytes: 1_000_000, maxTotalBytes: 3 * entryBytes(pkt(1)) }, onQueueLimit: () => undefined });
  await store.setup({ id: 'b1' });
  for (const c of [1, 2, 3]) await store.outgoingEnqueue({ clientId: 'other' }, pkt(c));
  // aedes' deliverQoS calls outgoingUpdate with the packet identifier before writing; the queue
  // copy was refused (all queues full). A rejection here made aedes close the client.
  await t.resolves(store.outgoingUpdate({ id: 'pump' }, { ...pkt(4), messageId: 7 }), 'no queue at all for the client');
  await store.outgoingClearMessageId({ id: 'other' }, pkt(1));
  await store.outgoingEnqueue({ clientId: 'pump' }, pkt(5));
  await t.resolves(store.outgoingUpdate({ id: 'pump' }, { ...pkt(6), messageId: 8 }), 'a queue without that message');
  t.same((await drainQueue(store, 'pump')).map((p) => [p.brokerCounter, p.messageId]), [[5, undefined]], 'only what was queued');
});

t.test('for the in-flight window: what is unsent, marking sent, resuming with only what was sent, the bytes of waits elsewhere', async (t) => {
  const store = new SessionStore({ resumeSentOnly: true, limits: { maxMessages: 100, maxBytes: 1e6, maxTotalBytes: 5 * entryBytes(pkt(1)) } });
  await store.setup({ id: 'b1' });
  for (const c of [1, 2, 3]) await store.outgoingEnqueue({ clientId: 'dash' }, pkt(c));
  t.same([store.queueState('dash', pkt(1)), store.queueState('dash', pkt(9)), store.queueState('other', pkt(1))], ['unsent', 'absent', 'absent']);
  store.markSent('dash', pkt(1), 11);
  store.markSent('dash', pkt(2), 12);
  t.equal(store.queueState('dash', pkt(1)), 'sent');
  t.same([...store.unsent('dash')].map((p) => p.brokerCounter), [3], 'unsent: only 3');
  t.same(store.sentIds('dash').sort(), [11, 12]);
  await store.outgoingUpdate({ id: 'dash' }, { cmd: 'pubrel', messageId: 12 });
  t.same(store.sentIds('dash').sort(), [11, 12], 'a PUBREL awaiting PUBCOMP is still sent');
  t.same((await drainQueue(store, 'dash')).map((p) => [p.cmd, p.messageId, p.dup]), [['publish', 11, true], ['pubrel', 12, undefined]], 'resumeSentOnly: a resumed session gets back only what was sent before');
  // Sending while iterating: each marked as it goes, one cleared (refused at delivery) on the way.
  for (const c of [4, 5]) await store.outgoingEnqueue({ clientId: 'dash' }, pkt(c));
  let id = 20;
  for (const p of store.unsent('dash')) {
    store.markSent('dash', p, ++id);
    if (p.brokerCounter === 4) await store.outgoingClearMessageId({ id: 'dash' }, { ...p, messageId: id });
  }
  t.same([...store.unsent('dash')], [], 'all sent');
  t.equal(store.queueState('dash', pkt(4)), 'absent', 'the refused one is gone');
  // Bytes reserved for waits elsewhere count against the bound of all queues together.
  t.notOk(store.reserve(2 * entryBytes(pkt(1))), 'four queued: two more would pass the bound');
  t.ok(store.reserve(entryBytes(pkt(1))), 'one fits');
  t.equal(store.stats().waitingBytes, entryBytes(pkt(1)));
  await store.outgoingEnqueue({ clientId: 'dash' }, pkt(6));
  t.equal(store.queueState('dash', pkt(6)), 'absent', 'the queues are full with it');
  store.release(entryBytes(pkt(1)));
  await store.outgoingEnqueue({ clientId: 'dash' }, pkt(7));
  t.equal(store.queueState('dash', pkt(7)), 'unsent', 'released, there is room again');
});

t.test('abandoned persistent sessions expire; connected ones do not', async (t) => {
  const store = new SessionStore();
  store.setOwner('gone', 'oven-1');
  store.setOwner('here', 'mixer-1');
  await store.addSubscriptions({ id: 'gone' }, [{ topic: 'things/oven-1/commands/#', qos: 1 }]);
  await store.outgoingEnqueue({ clientId: 'gone' }, pkt(1));
  const t0 = 1_000_000;
  t.same(store.expireSessions(t0, 60_000, () => false), [], 'first seen now');
  store.disconnected('gone', t0);
  t.same(store.expireSessions(t0 + 59_999, 60_000, (id) => id === 'here'), []);
  t.same(store.expireSessions(t0 + 60_000, 60_000, (id) => id === 'here'), ['gone']);
  t.equal(store.ownerOf('gone'), undefined);
  t.equal(store.queued('gone'), 0);
  t.same(await store.subscriptionsByClient({ id: 'gone' }), []);
  t.equal(store.ownerOf('here'), 'mixer-1', 'a connected session stays');
  t.equal(store.sessionCount, 1);
  t.equal(store.stats().expiredSessions, 1);
});

t.test('MQTT 5 properties count against the queue bounds (a near-empty payload with large user properties)', async (t) => {
  const big = 'x'.repeat(4000);
  const props = { userProperties: { k: big, l: [big, big] }, responseTopic: 'r/t', correlationData: Buffer.alloc(100) };
  t.equal(entryBytes(pkt(1, 't', { properties: props })) - entryBytes(pkt(1, 't')), 1 + 4000 + 1 + 8000 + 3 + 100, 'keys, values, response topic, correlation data');
  t.equal(entryBytes(pkt(1, 't', { properties: { ...props, messageExpiryInterval: 5, subscriptionIdentifier: 3 } })), entryBytes(pkt(1, 't', { properties: props })), 'numbers (rewritten on the way out) do not change it');
  const store = new SessionStore({ limits: { maxMessages: 100, maxBytes: 20_000, maxTotalBytes: 1e9 } });
  await store.setup({ id: 'b1' });
  for (const c of [1, 2, 3]) await store.outgoingEnqueue({ clientId: 'dev' }, pkt(c, 'things/oven-1/telemetry/t', { properties: props }));
  t.equal(store.queued('dev'), 1, 'the session bound counts the properties: only the newest fits');
  t.equal(store.stats().queuedBytes, entryBytes(pkt(3, 'things/oven-1/telemetry/t', { properties: props })));
});
