// listeners.mqtt5 false: an MQTT 5 CONNECT is refused as by an MQTT 3.1.1 broker — CONNACK 0x01
// (unacceptable protocol level) in 3.1.1's format [MQTT-3.1.2-2] — logged and audited as
// UNSUPPORTED_PROTOCOL_LEVEL. aedes 2.0.0-beta.1 has no option to serve MQTT 3.1.1 only, and our
// authenticate cannot answer it: aedes maps an authenticate return code outside 2..5 to 5 (connect.js),
// whose MQTT 5 form is 0x87, not 0x84 Unsupported Protocol Version. No upstream issue found.
//
// The workaround: preConnect (../broker.ts) rewrites the CONNECT's protocolVersion 5 to 6
// (MQTT5_REFUSED_LEVEL) between preConnect and aedes' init, which refuses a level it does not serve
// with CONNACK 0x01 in 3.1.1's format and closes the connection, exactly as for any other level.
//
// Internals it touches: the CONNECT packet aedes hands preConnect is the one its init() reads next
// (connect.js handleConnect -> negate -> init). Shape test: test/unit/upstream-mqtt5-refusal-gate.test.ts
// (fails when a rewritten level no longer gets CONNACK 0x01).
//
// The upstream fix (aedes connect.js init), simple: an option `protocolVersions` (default [3, 4, 5]),
//   if (!client.broker.protocolVersions.includes(packet.protocolVersion)) returnCode = 1
// answered in 3.1.1's format for a level-5 CONNECT when 5 is not served.

/** The level a CONNECT of a disabled MQTT 5 is handed to aedes with: one it refuses (CONNACK 0x01). */
export const MQTT5_REFUSED_LEVEL = 6;

/** For preConnect: a level-5 CONNECT is refused by aedes (CONNACK 0x01), as by a 3.1.1 broker. */
export function refuseMqtt5(packet: { protocolVersion?: number }): void {
  if (packet.protocolVersion === 5) packet.protocolVersion = MQTT5_REFUSED_LEVEL;
}
