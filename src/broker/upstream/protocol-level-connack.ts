// [MQTT-3.1.2-2]: "The Server MUST respond to the CONNECT Packet with a CONNACK return code 0x01
// (unacceptable protocol level) and then disconnect the Client if the Protocol Level is not supported
// by the Server."
//
// aedes 2.0.0-beta.1 does so for the levels that reach it: it serves 3 (MQTT 3.1), 4 (3.1.1) and 5
// (MQTT 5; with listeners.mqtt5 false, ./mqtt5-refusal-gate.ts hands a level-5 CONNECT on as level
// 6), and answers the others with CONNACK 0x01 in 3.1.1's format (connect.js init). But what
// mqtt-packet 9.0.2 (pinned exactly) does wrong: its parser refuses every level other than 3, 4 and
// 5 itself ('Invalid protocol version', parser.js _parseConnect), before aedes sees the CONNECT, and
// aedes then closes the connection without a CONNACK. Upstream: mqttjs/mqtt-packet#110 ("stop
// validating protocol level in this package", closed without a change: its author had taken level 5
// for refused).
//
// The workaround lets such a CONNECT through to aedes as far as the parser read it (protocol name
// and level; the rest of a packet of an unknown version is not parsed), so that aedes' own check
// answers it with CONNACK 0x01 and closes the connection, exactly as for level 5. And a second defect,
// aedes 2.0.0-beta.1's: its init() reads `clientId.length` for every level below 5 before refusing
// the level, and such a CONNECT has no client id: an uncaught TypeError ended the agent process
// (test/integration/aedes2-regressions.test.ts "level 0"); the client id is set to ''.
//
// Internals it touches (mqtt-packet parser.js): `_emitError` (wrapped: the error ends _parseConnect,
// and the parser emits the packet read so far), `packet.cmd`, `packet.clientId`,
// `packet.bridgeMode` (the level's top bit, taken off by the parser) (./client-parser.ts).
// Shape test: test/unit/upstream-protocol-level-connack.test.ts (fails when a bare parser stops
// refusing such levels — then this can go — or aedes stops answering them 0x01). Behaviour:
// test/unit/broker-protocol-level.test.ts.
//
// The upstream fixes: mqtt-packet parser.js _parseConnect, instead of the error, stop parsing and
// emit the CONNECT with its protocolVersion (the server's to refuse, as [MQTT-3.1.2-2] says):
//   if (![3, 4, 5].includes(packet.protocolVersion)) { packet.clientId = ''; return packet }  // emitted as read so far
// and aedes connect.js init: `(clientId ?? '').length`.
import type { ParserInternals } from './client-parser.js';

/** mqtt-packet's error for a protocol level other than 3, 4 and 5. */
export const INVALID_LEVEL = 'Invalid protocol version';

/** The level a CONNECT asked for, as the client sent it (mqtt-packet takes 128 off for its "bridge mode" bit). */
export function sentLevel(packet: { protocolVersion?: number; bridgeMode?: boolean }): number | undefined {
  if (packet.protocolVersion === undefined) return undefined;
  return packet.bridgeMode ? packet.protocolVersion + 128 : packet.protocolVersion;
}

/** Makes `parser` hand on a CONNECT of an unsupported level (aedes answers it) instead of failing. */
export function passUnsupportedLevel(parser: ParserInternals): void {
  const emitError = parser._emitError;
  parser._emitError = function passLevel(this: ParserInternals, err: Error): void {
    // Not an error: _parseConnect returns, and the parser emits the packet read so far.
    if (err.message === INVALID_LEVEL && this.packet.cmd === 'connect') {
      // aedes 2.0.0-beta.1: its init() reads clientId.length for every level below 5, and
      // the CONNECT handed on here has no client id (not parsed): an uncaught TypeError, the agent exits.
      (this.packet as { clientId?: string }).clientId ??= '';
      return;
    }
    emitError.call(this, err);
  };
}
