// src/broker/upstream/connack-shared-subscriptions.ts: a bare aedes still says
// `sharedSubscriptionAvailable: false` to an MQTT 5 client (else the workaround can go), and the
// hook still removes it for a connection registered with it (else it is broken).
import t from 'tap';
import { advertiseSharedSubscriptions } from '../../src/broker/upstream/connack-shared-subscriptions.js';
import { hookPacketWrites } from '../../src/broker/upstream/packet-write-hook.js';
import { PipeClient, bareAedes, upstreamChanged } from '../helpers/bare-aedes.js';

const MODULE = 'connack-shared-subscriptions.ts';

t.test('CONNACK: aedes says unavailable; through the hook, a registered connection is told nothing (available)', async (t) => {
  const aedes = await bareAedes(t);
  hookPacketWrites();
  const props = async (id: string, registered: boolean) => {
    const c = new PipeClient(aedes, 5, registered ? advertiseSharedSubscriptions : undefined);
    const connack = await c.connect(id);
    c.end();
    t.equal(connack.reasonCode, 0, `${id}: CONNACK 0`);
    return (connack.properties ?? {}) as Record<string, unknown>;
  };
  t.equal((await props('plain', false))['sharedSubscriptionAvailable'], false, upstreamChanged('aedes no longer says sharedSubscriptionAvailable: false (shared subscriptions may be its own now)', MODULE));
  t.notOk('sharedSubscriptionAvailable' in (await props('registered', true)), upstreamChanged('the CONNACK of a registered connection still says unavailable: the hook no longer sees it', MODULE));
  t.equal((await props('plain-again', false))['sharedSubscriptionAvailable'], false, 'other connections keep what aedes says');
});
