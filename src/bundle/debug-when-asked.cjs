'use strict';
// The `debug` package as the bundle sees it (scripts/bundle.mjs resolves every `require('debug')` of
// the bundled dependencies here): the real one when the process starts with DEBUG set, as a
// troubleshooter would (`DEBUG=mqttjs* edgewarden run`), else loggers that do nothing.
//
// Why: mqtt-packet 9.0.2 calls debug() about ten times per packet it parses or writes
// (parser.js, writeToStream.js). debug 4's logger is `function debug(...args)`: even disabled, each
// call builds its rest-parameter array before it looks at `enabled`, and reads `enabled` through a
// getter. On the broker's path that was 3.7-5.6 % of the CPU (docs/notes/broker-speed.md). The fix
// upstream would be a check before the call (`if (debug.enabled) debug(...)`, as mqtt-packet does in
// a few places already), or debug testing `enabled` in a wrapper without rest parameters.
function off() {
  function debug() {}
  debug.enabled = false;
  debug.namespace = '';
  debug.log = debug;
  debug.extend = off;
  debug.destroy = function () {};
  return debug;
}
off.enable = function () {};
off.disable = function () {
  return '';
};
off.enabled = function () {
  return false;
};
off.humanize = function (ms) {
  return `${ms}ms`;
};
off.names = [];
off.skips = [];
off.formatters = {};

module.exports = process.env.DEBUG ? require('debug') : off;
