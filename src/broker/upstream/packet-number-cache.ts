// Not a defect: a memory setting of mqtt-packet 9.0.2 (pinned exactly), the packet writer of aedes
// (lib/write.js) and of MQTT.js (the cloud link). By default it writes 16-bit numbers (message ids,
// topic and field lengths) from a cache of 65,536 two-byte Buffers that it makes when the first packet
// is written: 6.7 MB of heap (65,536 Buffer objects) from the first device's CONNACK on, a tenth of
// the budget of a small gateway (issue 13; bench/README.md "Where the memory goes"). Without the cache
// it allocates each number's 2-byte Buffer from Node's pool as it writes it: one or two small
// allocations per packet, next to the dozens aedes makes per message. Measured: writing a QoS 1
// PUBLISH takes about 250 ns more (1.67 -> 1.92 us, median of 6 alternating rounds of 200,000), 2-3%
// of the agent's 9-17 us of CPU per delivery; the broker section's figures moved within their noise.
//
// The setting is mqtt-packet's own (`writeToStream.cacheNumbers`, mqttjs/mqtt-packet#29), but
// process-wide and not passed through aedes: it is set on the module object, which works only while
// there is one mqtt-packet in the tree (aedes and MQTT.js share it).
//
// Internals it touches: `require('mqtt-packet').writeToStream.cacheNumbers`. Shape test:
// test/unit/upstream-packet-number-cache.test.ts (fails when the setting is gone, when its default
// changes, or when aedes or MQTT.js get an mqtt-packet of their own). Behaviour:
// test/unit/broker-packet-numbers.test.ts.
//
// Upstream: nothing to fix; an aedes option passing it through would spare the module-level setting.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { writeToStream } = require('mqtt-packet') as { writeToStream: { cacheNumbers: boolean } };

/** Turns mqtt-packet's number cache off, for every writer in this process; idempotent. */
export function disablePacketNumberCache(): void {
  writeToStream.cacheNumbers = false;
}

/** Whether mqtt-packet writes numbers from its cache (false once the broker has been made). */
export function packetNumberCacheEnabled(): boolean {
  return writeToStream.cacheNumbers;
}
