// MQTT 5: "It is a Protocol Error to include [a property other than User Property] more than once"
// (e.g. 3.3.2.3.2 to 3.3.2.3.9 for PUBLISH); a Subscription Identifier of 0 is a Protocol Error
// (3.8.2.1.2) and "A PUBLISH packet sent from a Client to a Server MUST NOT contain a Subscription
// Identifier" [MQTT-3.3.4-6].
//
// What mqtt-packet 9.0.2 (pinned exactly) does wrong: its parser (parser.js _parseProperties) turns a
// property given twice into an array of its values, which neither aedes nor our hooks expect: a
// Response Topic twice reached authorizePublish as an array (`TypeError: topic.startsWith`, the agent
// process ended), a Payload Format Indicator twice was delivered and the agent could not write it.
// And it range-checks nothing: a Subscription Identifier 0 or one in a client's PUBLISH is parsed
// like any. aedes 2.0.0-beta.1 checks the identifier's range in SUBSCRIBE only, not the others.
// Upstream: moscajs/aedes#1131 (open, "MQTT 5.0: reject duplicated CONNECT properties with 0x82";
// it notes that detecting duplicates properly likely needs an mqtt-packet change, since a repeated
// property whose first value is falsy is overwritten, not made an array). No mqtt-packet issue found.
//
// The workaround wraps the parser's _parseProperties (per connection, after
// ./utf8-topic-validation.ts did, so it sees the strings checked) and reports a parse error
// (PROPERTY_INVALID): aedes closes the connection ("a Protocol Error" in MQTT 5), and the broker
// logs it as a protocol violation (../client-errors.ts).
//
// Internals it touches (mqtt-packet parser.js): `_parseProperties`, `_emitError`, `packet.cmd`
// (./client-parser.ts). Shape test: test/unit/upstream-mqtt5-property-validation.test.ts (fails when
// they change, and when a bare parser stops making arrays of repeated properties).
//
// The upstream fix (mqtt-packet parser.js _parseProperties), a few lines: keep a set of the
// identifiers seen in this properties block, and
//   if (seen.has(type) && name !== 'userProperties' && name !== 'subscriptionIdentifier') {
//     return this._emitError(new Error(`Protocol Error: property ${name} more than once`))
//   }
// (a server-to-client PUBLISH may carry several Subscription Identifiers: that check is the
// server's, as here).
import type { ParserInternals } from './client-parser.js';

/** The message of the parse error for an MQTT 5 property given twice, or a value the packet may not carry. */
export const PROPERTY_INVALID = 'an MQTT 5 property is invalid';

/** Makes `parser` report PROPERTY_INVALID (a parse error: the connection is closed). */
export function guardPropertyValues(parser: ParserInternals): void {
  const parseProperties = parser._parseProperties;
  parser._parseProperties = function guardedParseProperties(this: ParserInternals): Record<string, unknown> | false {
    const props = parseProperties.call(this);
    if (props === false) return props;
    const problem = invalidProperty(this.packet.cmd, props);
    if (problem !== null) this._emitError(Object.assign(new Error(`${PROPERTY_INVALID}: ${problem} (${(this.packet.cmd ?? 'connect').toUpperCase()})`), { cmd: this.packet.cmd }));
    return props;
  };
}

/** What is wrong with a packet's parsed properties (mqtt-packet's names), or null. */
export function invalidProperty(cmd: string | undefined, props: Record<string, unknown>): string | null {
  for (const name in props) {
    if (name !== 'userProperties' && Array.isArray(props[name])) return `${name} more than once`;
  }
  const id = props['subscriptionIdentifier'];
  if (id !== undefined) {
    if (cmd === 'publish') return 'subscriptionIdentifier in a PUBLISH from a client';
    if (id === 0) return 'subscriptionIdentifier 0';
  }
  return null;
}
