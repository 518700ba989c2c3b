// hardenClient (src/broker/upstream/prototype-safe-maps.ts): a client's `subscriptions` and `duplicates` are keyed by
// strings from the wire, so they have no prototype (GHSA-52qw-whmv-87c5); and they keep V8's fast
// properties, because both are read on every delivery (checked in a child node with
// --allow-natives-syntax, on the same function, built).
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Client } from 'aedes';
import { hardenClient } from '../../src/broker/upstream/prototype-safe-maps.js';

const ROOT = join(import.meta.dirname, '..', '..');

t.test('no prototype: wire names are own keys, nothing is inherited', async (t) => {
  const c = {} as { subscriptions: Record<string, unknown>; duplicates: Record<string, unknown> };
  hardenClient(c as unknown as Client);
  for (const m of [c.subscriptions, c.duplicates]) {
    t.equal(Object.getPrototypeOf(m), null);
    t.equal(m['constructor'], undefined, 'constructor is not inherited');
    m['__proto__'] = { qos: 1 };
    t.equal(Object.getPrototypeOf(m), null, 'a "__proto__" key does not set the prototype');
    t.same(Object.keys(m), ['__proto__'], 'it is an own key');
  }
});

t.test('fast properties (not dictionary mode) with a few filters', async (t) => {
  const mod = pathToFileURL(join(ROOT, 'dist', 'src', 'broker', 'upstream', 'prototype-safe-maps.js')).href;
  const script = `
    const { hardenClient } = await import(${JSON.stringify(mod)});
    const c = {};
    hardenClient(c);
    c.subscriptions['things/+/telemetry/#'] = { qos: 1 };
    c.subscriptions['things/oven-1/commands/+'] = { qos: 2 };
    c.duplicates['8b0e-broker-id'] = 41;
    console.log(JSON.stringify([%HasFastProperties(c.subscriptions), %HasFastProperties(c.duplicates)]));
  `;
  const out = execFileSync(process.execPath, ['--allow-natives-syntax', '--input-type=module', '-e', script], { encoding: 'utf8' });
  t.same(JSON.parse(out.trim()), [true, true], 'both keep fast properties');
});
