// src/broker/upstream/shared-subscription-rename.ts: a bare aedes still answers an MQTT 5 `$share`
// filter SUBACK 0x9E before authorizeSubscribe (else its own shared subscriptions may replace ours), and
// the rename before its handler still reaches it (else the workaround is broken).
import t from 'tap';
import { guardSharedFilters } from '../../src/broker/upstream/shared-subscription-rename.js';
import { parserOf } from '../../src/broker/upstream/client-parser.js';
import { SHARE_MARKER } from '../../src/broker/shared-subscriptions.js';
import { PipeClient, bareAedes, upstreamChanged } from '../helpers/bare-aedes.js';

const MODULE = 'shared-subscription-rename.ts';

t.test('a bare aedes refuses `$share` from an MQTT 5 client (0x9E) and takes it literally from 3.1.1, before our hook', async (t) => {
  const aedes = await bareAedes(t);
  const asked: string[] = [];
  aedes.authorizeSubscribe = (_client, sub, cb) => {
    asked.push(sub.topic);
    cb(null, sub);
  };
  const v5 = new PipeClient(aedes, 5);
  await v5.connect('v5');
  v5.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$share/g/a/b', qos: 1 }] });
  t.same((await v5.next((p) => p.cmd === 'suback'))?.granted, [0x9e], upstreamChanged('aedes no longer answers an MQTT 5 $share filter 0x9E (shared subscriptions of its own?)', MODULE));
  t.same(asked, [], upstreamChanged('aedes now asks authorizeSubscribe about a $share filter', MODULE));
  const v4 = new PipeClient(aedes, 4);
  await v4.connect('v4');
  v4.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$share/g/a/b', qos: 1 }] });
  await v4.next((p) => p.cmd === 'suback');
  t.same(asked, ['$share/g/a/b'], upstreamChanged('aedes no longer takes a 3.1.1 $share filter as a literal one', MODULE));
  v5.end();
  v4.end();
});

t.test('renamed before the handler: aedes holds the marker, asks about it, and grants it', async (t) => {
  const aedes = await bareAedes(t);
  const asked: string[] = [];
  aedes.authorizeSubscribe = (_client, sub, cb) => {
    asked.push(sub.topic);
    cb(null, sub);
  };
  const c = new PipeClient(aedes, 5);
  guardSharedFilters(parserOf(c.client), () => t.fail('not malformed'));
  await c.connect('member');
  c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$share/g/a/b', qos: 1 }] });
  t.same((await c.next((p) => p.cmd === 'suback'))?.granted, [1]);
  t.same(asked, [`${SHARE_MARKER}g/a/b`]);
  t.ok((c.client as unknown as { subscriptions: Record<string, unknown> }).subscriptions[`${SHARE_MARKER}g/a/b`], 'aedes holds the marker');
  c.send({ cmd: 'unsubscribe', messageId: 2, unsubscriptions: ['$share/g/a/b'] });
  await c.next((p) => p.cmd === 'unsuback');
  t.notOk((c.client as unknown as { subscriptions: Record<string, unknown> }).subscriptions[`${SHARE_MARKER}g/a/b`], 'and lets go of it on UNSUBSCRIBE');
  c.end();
});
