// src/broker/upstream/qlobber-sub.ts: qlobber's deep `qlobber/aedes/qlobber-sub` still resolves and
// keeps subscriptions as our session store expects; QlobberTrue still matches MQTT filters.
import t from 'tap';
import { QlobberSub, QlobberTrue } from '../../src/broker/upstream/qlobber-sub.js';
import { QLOBBER_OPTIONS } from '../../src/broker/session-types.js';
import { upstreamChanged } from '../helpers/bare-aedes.js';

const MODULE = 'qlobber-sub.ts';

t.test('QlobberSub: one entry per (client, filter), replaced by a re-add, removed by (client, filter)', async (t) => {
  t.type(QlobberSub, 'function', upstreamChanged("require('qlobber/aedes/qlobber-sub') no longer gives a constructor", MODULE));
  const trie = new QlobberSub(QLOBBER_OPTIONS);
  trie.add('a/+', { clientId: 'c1', topic: 'a/+', qos: 1 });
  trie.add('a/#', { clientId: 'c1', topic: 'a/#', qos: 2 });
  trie.add('a/+', { clientId: 'c2', topic: 'a/+', qos: 0 });
  trie.add('a/+', { clientId: 'c1', topic: 'a/+', qos: 0, rh: 1, rap: true, nl: false });
  t.equal(trie.subscriptionsCount, 3, upstreamChanged('subscriptionsCount no longer counts (client, filter) pairs', MODULE));
  const byKey = (subs: { clientId: string; topic: string; qos: number }[]) => subs.map((s) => `${s.clientId} ${s.topic} ${s.qos}`).sort();
  t.same(byKey(trie.match('a/b')), ['c1 a/# 2', 'c1 a/+ 0', 'c2 a/+ 0'], upstreamChanged('match() no longer returns one entry per (client, filter) with its latest QoS', MODULE));
  t.match(trie.match('a/b').find((s) => s.clientId === 'c1' && s.topic === 'a/+'), { rh: 1, rap: true, nl: false }, 'the fields added are kept');
  trie.remove('a/+', { clientId: 'c1', topic: 'a/+' });
  t.same(byKey(trie.match('a/b')), ['c1 a/# 2', 'c2 a/+ 0'], upstreamChanged('remove(filter, { clientId, topic }) no longer removes that pair', MODULE));
  t.equal(trie.subscriptionsCount, 2);
});

t.test('QlobberTrue: MQTT wildcards', async (t) => {
  const q = new QlobberTrue(QLOBBER_OPTIONS);
  q.add('things/+/commands/#');
  t.equal(q.test('things/oven-1/commands/reboot'), true, upstreamChanged('QlobberTrue no longer matches + and #', MODULE));
  t.equal(q.test('things/oven-1/telemetry'), false);
});
