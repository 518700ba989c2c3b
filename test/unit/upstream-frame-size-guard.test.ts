// src/broker/upstream/frame-size-guard.ts: a bare mqtt-packet parser still buffers whatever a packet
// declares (else the guard's memory bound is upstream's), and aedes still reads through the
// `_parser.parse` the guard wraps (else it is broken).
import t from 'tap';
import mqttPacket from 'mqtt-packet';
import { TOO_LARGE, guardFrameSize } from '../../src/broker/upstream/frame-size-guard.js';
import { parserOf } from '../../src/broker/upstream/client-parser.js';
import { PipeClient, bareAedes, upstreamChanged, waitFor } from '../helpers/bare-aedes.js';

const MODULE = 'frame-size-guard.ts';
/** The start of a PUBLISH declaring 268,435,455 bytes (the largest remaining length), then `n` bytes of it. */
const huge = (n: number): Buffer => Buffer.concat([Buffer.from([0x30, 0xff, 0xff, 0xff, 0x7f]), Buffer.alloc(n, 0x61)]);

t.test('a bare parser buffers a declared 256 MB packet as it arrives, with no error', async (t) => {
  const parser = mqttPacket.parser();
  const errors: string[] = [];
  parser.on('error', (e) => errors.push(e.message));
  let buffered = 0;
  for (let i = 0; i < 16; i++) buffered = parser.parse(i === 0 ? huge(65_536) : Buffer.alloc(65_536, 0x61)) as unknown as number;
  t.same(errors, [], upstreamChanged('mqtt-packet refuses a declared 256 MB packet itself', MODULE));
  t.ok(buffered >= 16 * 65_536, upstreamChanged(`mqtt-packet no longer buffers the declared packet (parse() returned ${buffered} buffered bytes)`, MODULE));
});

t.test('the guard, on a client of a bare aedes, refuses the packet before the parser buffers it', async (t) => {
  const aedes = await bareAedes(t);
  const c = new PipeClient(aedes);
  const parser = parserOf(c.client);
  const refused = waitFor<string>((report) => guardFrameSize(parser, 1024, report));
  await c.connect('big');
  c.write(huge(100));
  const problem = await refused;
  t.match(problem, TOO_LARGE, upstreamChanged('a wrap of client._parser.parse no longer sees what the client sends', MODULE));
  const list = (parser as unknown as { _list: { length: number } })._list;
  t.equal(list.length, 0, 'nothing of it buffered');
  c.end();
});
