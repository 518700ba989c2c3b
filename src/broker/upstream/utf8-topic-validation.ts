// [MQTT-1.5.3-1]: "The character data in a UTF-8 encoded string MUST be well-formed UTF-8 [...]. If a
// Server or Client receives a Control Packet containing ill-formed UTF-8 it MUST close the Network
// Connection." [MQTT-1.5.3-2]: a UTF-8 encoded string MUST NOT include U+0000; a receiver MAY close
// the connection (we do). MQTT 5: [MQTT-1.5.4-1], [MQTT-1.5.4-2], for property strings too.
//
// What mqtt-packet 9.0.2 (pinned exactly) does wrong: its parser decodes every string with
// Buffer#toString('utf8') (parser.js _parseString), which replaces each ill-formed sequence with
// U+FFFD, so that neither aedes nor the broker's hooks can tell that the bytes were ill-formed:
// aedes 1.2 delivered `t/\xc3\x28` as `t/\uFFFD(`, and a topic with U+0000 as it came.
// Upstream: mqttjs/mqtt-packet#59 (open, "Handling of invalid utf-8 code points according to
// [mqtt-v3.1.1-plus-errata01]").
//
// The workaround wraps the parser's _parseString (per connection) for the packets that carry
// topics — PUBLISH (the topic name), SUBSCRIBE and UNSUBSCRIBE (the filters) — and for every MQTT 5
// property string (mqtt-packet's _parseProperties reads them with _parseString, in every packet,
// CONNECT included), and reports a parse error for a string that is ill-formed or holds U+0000:
// aedes closes the connection as for any malformed packet, and the broker audits it
// (`TOPIC_DENIED`, ../client-errors.ts) like a wildcard in a PUBLISH topic. A property string gets
// its own message (PROPERTY_NOT_UTF8), so that it is not taken for a bad topic. The raw bytes are
// checked only when the decoded string holds U+FFFD (a well-formed topic may hold U+FFFD itself,
// encoded as EF BF BD), so a valid topic costs two scans of its decoded string. CONNECT's strings
// (client id, will topic, username) are not checked here.
//
// Internals it touches (mqtt-packet parser.js): `_parseString`, `_parseProperties` (wrapped, to know
// that a string is a property's), `_pos` (before and after a string), `_list.slice`, `_emitError`,
// `packet.cmd` (./client-parser.ts). Shape test: test/unit/upstream-utf8-topic-validation.test.ts
// (fails when those change shape, and when a bare parser starts refusing such strings itself: then
// this can go). Behaviour: test/unit/broker-topic-utf8.test.ts.
//
// The upstream fix (mqtt-packet parser.js _parseString), a few lines:
//   const bytes = this._list.slice(this._pos, end)
//   if (!isUtf8(bytes) || bytes.includes(0)) return this._emitError(new Error('Malformed UTF-8 string'))
//   const result = bytes.toString('utf8')
// (`isUtf8` from node:buffer, or `new TextDecoder('utf-8', { fatal: true })` in browsers).
import { isUtf8 } from 'node:buffer';
import type { ParserInternals } from './client-parser.js';

/** The message of the parse error; the broker recognizes it (logClientError). */
export const TOPIC_NOT_UTF8 = 'topic is not well-formed UTF-8 or contains U+0000';

/** The message of the parse error for an MQTT 5 property string; the broker recognizes it (logClientError). */
export const PROPERTY_NOT_UTF8 = 'a property string is not well-formed UTF-8 or contains U+0000';

/** Packets whose strings outside properties are all topic names or topic filters. */
const TOPIC_PACKETS = new Set(['publish', 'subscribe', 'unsubscribe']);

/** Whether a topic decoded by mqtt-packet came from bytes that are not well-formed UTF-8, or holds U+0000. */
export function isBadTopic(decoded: string, raw: () => Uint8Array): boolean {
  if (decoded.includes('\u0000')) return true;
  return decoded.includes('\uFFFD') && !isUtf8(raw());
}

/** Makes `parser` report TOPIC_NOT_UTF8 / PROPERTY_NOT_UTF8 (a parse error: the connection is closed). */
export function guardTopicUtf8(parser: ParserInternals): void {
  const parseString = parser._parseString;
  const parseProperties = parser._parseProperties;
  let inProperties = false;
  parser._parseString = function guardedParseString(this: ParserInternals): string | null {
    const start = this._pos; // at the string's 2-byte length
    const s = parseString.call(this);
    // Not a string: nothing read (null), or an error of the parser's own already emitted.
    if (typeof s !== 'string' || (!inProperties && !TOPIC_PACKETS.has(this.packet.cmd ?? ''))) return s;
    if (isBadTopic(s, () => this._list.slice(start + 2, this._pos))) {
      // An error ends the parse of this packet: it is never emitted, and aedes closes the connection.
      const what = inProperties ? PROPERTY_NOT_UTF8 : TOPIC_NOT_UTF8;
      this._emitError(Object.assign(new Error(`${what} (${(this.packet.cmd ?? 'connect').toUpperCase()})`), { cmd: this.packet.cmd }));
    }
    return s;
  };
  parser._parseProperties = function propertiesFlagged(this: ParserInternals): Record<string, unknown> | false {
    inProperties = true;
    try {
      return parseProperties.call(this);
    } finally {
      inProperties = false;
    }
  };
}
