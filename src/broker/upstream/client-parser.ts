// aedes' per-connection mqtt-packet Parser, `client._parser` (aedes 2.0.0-beta.1 lib/client.js: made in
// the Client constructor; not in aedes' type declarations), and the parts of an mqtt-packet 9.0.2
// Parser (parser.js) the workarounds beside this file wrap. Not a workaround itself: the one typed
// way in, so that a change of shape shows here and in its shape test.
//
//   parse(buf)            aedes calls `client._parser.parse(buf)` for each chunk read (nextBatch),
//                         looking it up at each call: ./frame-size-guard.ts wraps it
//   _parseString, _pos, _list, _parseProperties, _emitError, packet
//                         ./utf8-topic-validation.ts, ./mqtt5-property-validation.ts,
//                         ./protocol-level-connack.ts wrap or read them
//   'packet' listeners    aedes' own (`enqueue`, which hands each packet to its handler) is added in
//                         the constructor: a listener prepended runs before it
//                         (./prototype-safe-maps.ts, ./shared-subscription-rename.ts), one added
//                         after runs after it (../delivery.ts, the in-flight window's acks)
//
// Shape test: test/unit/upstream-client-parser.test.ts.
import type { Client } from 'aedes';

/** What the workarounds reach of an mqtt-packet Parser (not in its type declarations). */
export interface ParserInternals {
  packet: { cmd?: string; clientId?: string };
  _pos: number;
  _list: { slice(start: number, end: number): Buffer };
  _parseString(): string | null;
  _parseProperties(): Record<string, unknown> | false;
  _emitError(err: Error): void;
}

/** A packet as the parser emits it, as the 'packet' listeners here read it. */
export interface WirePacket {
  cmd: string;
  messageId?: number;
  subscriptions?: { topic: string; nl?: boolean }[];
  unsubscriptions?: string[];
}

/** The parser of one connection: its internals and its events. */
export type ClientParser = ParserInternals & {
  parse(buf: Buffer): unknown;
  on(event: 'packet', fn: (p: WirePacket) => void): unknown;
  prependListener(event: 'packet', fn: (p: WirePacket) => void): unknown;
};

/** The client's parser (aedes' `client._parser`). */
export function parserOf(client: Client): ClientParser {
  return (client as unknown as { _parser: ClientParser })._parser;
}
