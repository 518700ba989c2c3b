// Not a workaround: the exact versions the workarounds in this folder are written against. package.json pins each
// (a dependency, or an `overrides` entry for one we reach only through aedes). Shape test:
// test/unit/upstream-pins.test.ts (fails when package.json or package-lock.json says otherwise,
// another version is installed, aedes resolves another copy, a package reached here is not pinned, or
// a reach into private internals appears outside this folder). Moving a pin means running
// test/unit/upstream-*.test.ts: each fails where a workaround's upstream shape changed, or where the
// upstream defect it works around is gone (docs/upstream.md).
//
// aedes 2.0.0-beta.1 is aedes' mqttv5 branch, cut from 1.1.0: it carries MQTT 5, but not the fixes of
// 1.1.1 to 1.2.0 (docs/notes/mqtt5-aedes2.md). A 2.x release rebased on 1.2 makes several workarounds
// here unnecessary (prototype-safe-maps, clean-session-incoming, inbound-qos2-window, the
// incomingDelPacket rule of persistence-contract).

/** package name -> the exact version in package.json and node_modules. */
export const PINNED = Object.freeze({
  aedes: '2.0.0-beta.1',
  /** aedes' message router; we give aedes our own instance (./mqemitter-flat-drain.ts). */
  mqemitter: '7.1.0',
  /** aedes' and MQTT.js' packet parser and writer (parser and writeToStream internals). */
  'mqtt-packet': '9.0.2',
  /** The subscription trie; `qlobber/aedes/qlobber-sub` is a deep import (./qlobber-sub.ts). */
  qlobber: '8.0.1',
  /** Not used at run time (our store replaces it), but aedes imports it; < 11 has GHSA-p8r9-qf8w-p73r. */
  'aedes-persistence': '11.0.0',
  /** aedes' packet copy, used directly (./broker-fields.ts). */
  'aedes-packet': '4.0.1',
});

/** The aedes version these workarounds are written against. */
export const AEDES_PINNED = PINNED.aedes;
