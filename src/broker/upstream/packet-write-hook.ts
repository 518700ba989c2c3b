// Not a workaround of its own: the one wrap of mqtt-packet 9.0.2's `writeToStream` (pinned exactly),
// shared by ./connack-shared-subscriptions.ts and ./puback-quota-code.ts, which need to change a
// packet aedes 2.0.0-beta.1 builds where no hook sees it (a CONNACK's properties, a refused
// publish's PUBACK).
//
// aedes writes every packet with `mqtt.writeToStream(packet, client.conn, opts)` (lib/write.js, `mqtt`
// being mqtt-packet's module object, looked up at each call): the function is replaced on that
// object once, process-wide (MQTT.js, the cloud link, writes through it too: neither rewrite applies
// to its connections, which are never registered). Every packet costs the two rewrites' first
// comparisons.
//
// Internals it touches: `require('mqtt-packet').writeToStream` (replaced). There is one mqtt-packet in
// the tree (test/unit/upstream-packet-number-cache.test.ts). Shape test:
// test/unit/upstream-packet-write-hook.test.ts (a bare aedes: fails when its writes no longer go
// through the module's writeToStream).
//
// Upstream: the two rewrites have simple fixes of their own (see each); with both, this goes.
import { createRequire } from 'node:module';
import { dropSharedUnavailable } from './connack-shared-subscriptions.js';
import { rewriteDeniedAck } from './puback-quota-code.js';

const require = createRequire(import.meta.url);

/** What this reaches of mqtt-packet (the module aedes writes every packet with, write.js). */
interface MqttPacketModule {
  writeToStream(packet: { cmd: string; messageId?: number; reasonCode?: number; properties?: { sharedSubscriptionAvailable?: boolean } }, stream: object, opts?: object): boolean;
}

let hooked = false;

/** Installs the wrap (once; idempotent). Before the first connection is accepted. */
export function hookPacketWrites(): void {
  if (hooked) return;
  hooked = true;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const mqtt = require('mqtt-packet') as MqttPacketModule;
  const write = mqtt.writeToStream;
  mqtt.writeToStream = function writeToStream(packet, stream, opts) {
    if (packet.cmd === 'connack') dropSharedUnavailable(packet, stream);
    else if (packet.reasonCode !== undefined) rewriteDeniedAck(packet, stream);
    return write(packet, stream, opts);
  };
}
