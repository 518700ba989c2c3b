// src/broker/upstream/packet-number-cache.ts: mqtt-packet's `writeToStream.cacheNumbers` setting still
// exists, is on by default (else the setting is moot), and is the one aedes and MQTT.js write with.
import t from 'tap';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { disablePacketNumberCache, packetNumberCacheEnabled } from '../../src/broker/upstream/packet-number-cache.js';
import { upstreamChanged } from '../helpers/bare-aedes.js';

const MODULE = 'packet-number-cache.ts';
const ROOT = join(import.meta.dirname, '..', '..');

t.test('writeToStream.cacheNumbers: a boolean, true by default, and ours to turn off', async (t) => {
  const require = createRequire(import.meta.url);
  const { writeToStream } = require('mqtt-packet') as { writeToStream: { cacheNumbers?: unknown } };
  t.equal(typeof writeToStream.cacheNumbers, 'boolean', upstreamChanged('writeToStream.cacheNumbers is gone', MODULE));
  t.equal(writeToStream.cacheNumbers, true, upstreamChanged('the number cache is no longer on by default (the setting may be moot)', MODULE));
  disablePacketNumberCache();
  t.equal(writeToStream.cacheNumbers, false);
  t.equal(packetNumberCacheEnabled(), false);
});

t.test('aedes and MQTT.js write with the mqtt-packet the setting is made on', async (t) => {
  const ours = createRequire(join(ROOT, 'package.json')).resolve('mqtt-packet');
  for (const dep of ['aedes', 'mqtt']) {
    t.equal(createRequire(join(ROOT, 'node_modules', dep, 'package.json')).resolve('mqtt-packet'), ours, upstreamChanged(`${dep} resolves an mqtt-packet of its own`, MODULE));
  }
});
