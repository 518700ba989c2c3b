// src/broker/upstream/utf8-topic-validation.ts: a bare mqtt-packet parser still accepts ill-formed
// UTF-8 and U+0000 in topics and MQTT 5 property strings (else the workaround can go), and still
// decodes them through the internals the workaround wraps (else it is broken).
import t from 'tap';
import mqttPacket from 'mqtt-packet';
import { TOPIC_NOT_UTF8, PROPERTY_NOT_UTF8, guardTopicUtf8 } from '../../src/broker/upstream/utf8-topic-validation.js';
import type { ParserInternals } from '../../src/broker/upstream/client-parser.js';
import { parsePackets } from '../helpers/parse-packets.js';
import { upstreamChanged } from '../helpers/bare-aedes.js';

const MODULE = 'utf8-topic-validation.ts';
const str = (b: Buffer): Buffer => Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
const frame = (first: number, body: Buffer): Buffer => Buffer.concat([Buffer.from([first, body.length]), body]);
/** QoS 0 PUBLISH of `topic` (3.1.1), or with a content type `ct` (MQTT 5). */
const publish = (topic: Buffer, ct?: Buffer): Buffer =>
  ct === undefined ? frame(0x30, Buffer.concat([str(topic), Buffer.from('p')])) : frame(0x30, Buffer.concat([str(topic), Buffer.from([ct.length + 3, 0x03]), str(ct), Buffer.from('p')]));

function parse(bytes: Buffer, version: 4 | 5, guarded: boolean) {
  return parsePackets<{ topic?: string; properties?: { contentType?: string } }>(bytes, version, guarded ? guardTopicUtf8 : undefined);
}

const ILL_FORMED = Buffer.from([0x74, 0x2f, 0xc3, 0x28]); // t/ + a two-byte lead without its continuation
const WITH_NUL = Buffer.from('t/a\u0000b');

t.test('the parser internals the guard wraps', async (t) => {
  const parser = mqttPacket.parser() as unknown as ParserInternals & Record<string, unknown>;
  for (const name of ['_parseString', '_parseProperties', '_emitError']) t.type(parser[name], 'function', upstreamChanged(`the parser has no ${name}()`, MODULE));
  // _parseString reads from _pos (the 2-byte length) and leaves _pos after the string.
  const p = parser as unknown as { _list: { append(b: Buffer): void; slice(a: number, b: number): Buffer }; _pos: number; packet: { cmd?: string } };
  p._list.append(str(Buffer.from('abc')));
  p._pos = 0;
  p.packet = { cmd: 'publish' };
  t.equal(parser._parseString(), 'abc', upstreamChanged('_parseString() no longer returns the string at _pos', MODULE));
  t.equal(p._pos, 5, upstreamChanged('_parseString() no longer leaves _pos after the string (the guard slices the raw bytes by it)', MODULE));
  t.same(p._list.slice(2, 5), Buffer.from('abc'), upstreamChanged('_list.slice(start, end) no longer gives the raw bytes', MODULE));
});

t.test('a bare parser still accepts an ill-formed or NUL topic (the workaround is still needed)', async (t) => {
  const ill = parse(publish(ILL_FORMED), 4, false);
  t.same({ errors: ill.errors, topic: ill.packets[0]?.topic }, { errors: [], topic: 't/\uFFFD(' }, upstreamChanged('mqtt-packet refuses (or decodes otherwise) an ill-formed UTF-8 topic itself', MODULE));
  const nul = parse(publish(WITH_NUL), 4, false);
  t.same({ errors: nul.errors, topic: nul.packets[0]?.topic }, { errors: [], topic: 't/a\u0000b' }, upstreamChanged('mqtt-packet refuses a topic with U+0000 itself', MODULE));
  const prop = parse(publish(Buffer.from('t'), ILL_FORMED), 5, false);
  t.same({ errors: prop.errors, ct: prop.packets[0]?.properties?.contentType }, { errors: [], ct: 't/\uFFFD(' }, upstreamChanged('mqtt-packet refuses an ill-formed MQTT 5 property string itself', MODULE));
});

t.test('with the guard, the same bytes are parse errors (the wrap takes effect on this parser)', async (t) => {
  t.same(parse(publish(ILL_FORMED), 4, true), { packets: [], errors: [`${TOPIC_NOT_UTF8} (PUBLISH)`] });
  t.same(parse(publish(WITH_NUL), 4, true), { packets: [], errors: [`${TOPIC_NOT_UTF8} (PUBLISH)`] });
  t.same(parse(publish(Buffer.from('t'), ILL_FORMED), 5, true), { packets: [], errors: [`${PROPERTY_NOT_UTF8} (PUBLISH)`] });
  t.equal(parse(publish(Buffer.from('t/\uFFFD')), 4, true).packets.length, 1, 'a well-formed U+FFFD is a topic like any');
});
