// [MQTT-1.5.3-1]: "The character data in a UTF-8 encoded string MUST be well-formed UTF-8 [...]. If a
// Server or Client receives a Control Packet containing ill-formed UTF-8 it MUST close the Network
// Connection." [MQTT-1.5.3-2]: a UTF-8 encoded string MUST NOT include U+0000; a receiver MAY close
// the connection (we do).
//
// A workaround for mqtt-packet 9: its parser decodes every string with Buffer#toString('utf8'),
// which replaces each ill-formed sequence with U+FFFD, so that neither aedes nor the broker's hooks
// can tell that the bytes were ill-formed: aedes 1.2 delivered `t/\xc3\x28` as `t/\uFFFD(`, and a
// topic with U+0000 as it came. This wraps the parser's _parseString (per connection) for the
// packets that carry topics — PUBLISH (the topic name), SUBSCRIBE and UNSUBSCRIBE (the filters) —
// and reports a parse error for a topic that is ill-formed or holds U+0000: aedes closes the
// connection as for any malformed packet, and the broker audits it (`TOPIC_DENIED`) like a wildcard
// in a PUBLISH topic. The raw bytes are checked only when the decoded string holds U+FFFD (a
// well-formed topic may hold U+FFFD itself, encoded as EF BF BD), so a valid topic costs two scans
// of its decoded string.
//
// CONNECT's strings (client id, will topic, username) are not checked here.
//
// MQTT 5 properties go through the same _parseString (mqtt-packet's _parseProperties), in every
// packet that has them, CONNECT included: a property string (a user property, content type,
// response topic, reason string, ...) that is ill-formed or holds U+0000 is a parse error too, with
// its own message (PROPERTY_NOT_UTF8), so that it is not taken for a bad topic. And mqtt-packet turns
// a property given twice into an array that aedes and our hooks do not expect (a Response Topic
// twice reached authorizePublish as an array; a Payload Format Indicator twice was delivered, and
// the agent could not write it): a property other than User Property given more than once, a
// Subscription Identifier of 0 in a SUBSCRIBE, or one in a client's PUBLISH [MQTT-3.3.4-6] are
// parse errors (PROPERTY_INVALID), "a Protocol Error" in MQTT 5 (3.3.2.3, 3.8.2.1): the connection
// is closed.
// test/unit/broker-topic-utf8.test.ts fails when mqtt-packet's parser changes shape.
import { isUtf8 } from 'node:buffer';

/** The message of the parse error; the broker recognizes it (logClientError). */
export const TOPIC_NOT_UTF8 = 'topic is not well-formed UTF-8 or contains U+0000';

/** The message of the parse error for an MQTT 5 property string; the broker recognizes it (logClientError). */
export const PROPERTY_NOT_UTF8 = 'a property string is not well-formed UTF-8 or contains U+0000';

/** The message of the parse error for an MQTT 5 property given twice, or a value the packet may not carry. */
export const PROPERTY_INVALID = 'an MQTT 5 property is invalid';

/** Packets whose strings outside properties are all topic names or topic filters. */
const TOPIC_PACKETS = new Set(['publish', 'subscribe', 'unsubscribe']);

/** What this reaches of an mqtt-packet Parser (not in its type declarations). */
export interface ParserInternals {
  packet: { cmd?: string; clientId?: string };
  _pos: number;
  _list: { slice(start: number, end: number): Buffer };
  _parseString(): string | null;
  _parseProperties(): Record<string, unknown> | false;
  _emitError(err: Error): void;
}

/** Whether a topic decoded by mqtt-packet came from bytes that are not well-formed UTF-8, or holds U+0000. */
export function isBadTopic(decoded: string, raw: () => Uint8Array): boolean {
  if (decoded.includes('\u0000')) return true;
  return decoded.includes('\uFFFD') && !isUtf8(raw());
}

/** Makes `parser` report TOPIC_NOT_UTF8 / PROPERTY_NOT_UTF8 / PROPERTY_INVALID (a parse error: the connection is closed). */
export function guardTopicUtf8(parser: ParserInternals): void {
  const parseString = parser._parseString;
  const parseProperties = parser._parseProperties;
  let inProperties = false;
  parser._parseString = function guardedParseString(this: ParserInternals): string | null {
    const start = this._pos; // at the string's 2-byte length
    const s = parseString.call(this);
    if (s === null || (!inProperties && !TOPIC_PACKETS.has(this.packet.cmd ?? ''))) return s;
    if (isBadTopic(s, () => this._list.slice(start + 2, this._pos))) {
      // An error ends the parse of this packet: it is never emitted, and aedes closes the connection.
      const what = inProperties ? PROPERTY_NOT_UTF8 : TOPIC_NOT_UTF8;
      this._emitError(Object.assign(new Error(`${what} (${(this.packet.cmd ?? 'connect').toUpperCase()})`), { cmd: this.packet.cmd }));
    }
    return s;
  };
  parser._parseProperties = function guardedParseProperties(this: ParserInternals): Record<string, unknown> | false {
    inProperties = true;
    let props: Record<string, unknown> | false;
    try {
      props = parseProperties.call(this);
    } finally {
      inProperties = false;
    }
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
