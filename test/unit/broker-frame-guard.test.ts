// FrameGuard follows MQTT frame boundaries (fixed header byte, remaining length as a variable byte
// integer of 1-4 bytes [MQTT-2.2.3], body) across arbitrary chunking, and reports a packet over the
// size limit, or a 5-byte length, as soon as the header is complete: before any body is buffered.
import t from 'tap';
import mqttPacket from 'mqtt-packet';
import { FrameGuard } from '../../src/broker/upstream/frame-size-guard.js';
import { remainingLength } from '../helpers/mqtt-bytes.js';

const gen = (p: Record<string, unknown>): Buffer => mqttPacket.generate(p as unknown as mqttPacket.Packet, { protocolVersion: 4 });

/** Fixed header + remaining length (minimal encoding) + body of `bodyLen` bytes filled with `fill`. */
function frame(first: number, bodyLen: number, fill = 0xff): Buffer {
  return Buffer.concat([Buffer.from([first]), varint(bodyLen), Buffer.alloc(bodyLen, fill)]);
}

const varint = (n: number): Buffer => Buffer.from(remainingLength(n));

/** Feeds `chunks` in order; returns the index of the chunk that got an error (or -1) and the message. */
function feed(guard: FrameGuard, chunks: Buffer[]): { at: number; problem: string | null } {
  for (let i = 0; i < chunks.length; i++) {
    const problem = guard.check(chunks[i]!);
    if (problem !== null) return { at: i, problem };
  }
  return { at: -1, problem: null };
}

const bytewise = (b: Buffer): Buffer[] => [...b].map((x) => Buffer.from([x]));

// Valid packets whose bodies are full of bytes that would read as huge lengths (0xff) or as packet
// headers if the guard lost its place in the stream.
const connect = gen({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'oven-1', keepalive: 30, username: 'oven-1', password: Buffer.from('oven-1-token') });
const publish0 = gen({ cmd: 'publish', topic: 'things/oven-1/telemetry/t', payload: Buffer.alloc(300, 0xff), qos: 0, retain: false, dup: false });
const publish1 = gen({ cmd: 'publish', topic: 'things/oven-1/telemetry/t', payload: Buffer.from([0x10, 0xff, 0xff, 0xff, 0x7f]), qos: 1, messageId: 0xffff, retain: false, dup: false });
const subscribe = gen({ cmd: 'subscribe', messageId: 7, subscriptions: [{ topic: 'things/oven-1/commands/#', qos: 1 }] });
const pingreq = gen({ cmd: 'pingreq' });
const pubrel = gen({ cmd: 'pubrel', messageId: 9 });
const disconnect = gen({ cmd: 'disconnect' });
const validStream = Buffer.concat([connect, publish0, subscribe, pingreq, publish1, pubrel, publish0, disconnect]);

t.test('valid packets pass in one chunk, several per chunk, and split at every byte', async (t) => {
  t.equal(new FrameGuard(1024).check(validStream), null, 'all packets in one chunk');
  t.equal(feed(new FrameGuard(1024), bytewise(validStream)).problem, null, 'one byte per chunk');
  for (let cut = 1; cut < validStream.length; cut++) {
    const r = feed(new FrameGuard(1024), [validStream.subarray(0, cut), validStream.subarray(cut)]);
    if (r.problem !== null) {
      t.fail(`split at byte ${cut}: ${r.problem}`);
      return;
    }
  }
  t.pass(`split in two at each of the ${validStream.length - 1} positions`);
  const threeWay: number[] = [];
  for (let cut = 1; cut < validStream.length - 3; cut++) {
    const r = feed(new FrameGuard(1024), [validStream.subarray(0, cut), validStream.subarray(cut, cut + 3), validStream.subarray(cut + 3)]);
    if (r.problem !== null) threeWay.push(cut);
  }
  t.same(threeWay, [], 'split in three (a 3-byte middle chunk) at every position');
});

t.test('an oversized packet after valid ones is reported exactly when its length is complete, however the stream is split', async (t) => {
  const limit = 400;
  const oversized = Buffer.concat([Buffer.from([0x30]), varint(limit)]); // 1 + 2 + 400 > 400
  const stream = Buffer.concat([validStream.subarray(0, validStream.length - disconnect.length), oversized, Buffer.alloc(50, 0x41)]);
  const lastHeaderByte = stream.length - 50 - 1;
  const r = feed(new FrameGuard(limit), bytewise(stream));
  t.equal(r.at, lastHeaderByte, 'byte by byte: the error comes at the last remaining-length byte, not before, not after');
  t.match(r.problem, /larger than the 400 allowed/);
  let wrong = 0;
  for (let cut = 1; cut < stream.length; cut++) {
    const g = new FrameGuard(limit);
    const first = g.check(stream.subarray(0, cut));
    const expectFirst = cut > lastHeaderByte;
    const second = first === null ? g.check(stream.subarray(cut)) : null;
    if (expectFirst ? first === null : first !== null || second === null) wrong++;
  }
  t.equal(wrong, 0, 'split in two at every position: reported in the chunk holding the end of the header');
});

t.test('remaining length encodings of 1 to 4 bytes', async (t) => {
  const cases: [number, number][] = [
    [0, 1],
    [127, 1],
    [128, 2],
    [16_383, 2],
    [16_384, 3],
    [2_097_151, 3],
    [2_097_152, 4],
  ];
  for (const [len, bytes] of cases) {
    t.equal(varint(len).length, bytes, `${len} takes ${bytes} byte(s)`);
    const p = frame(0x30, len, 0xff);
    const total = p.length;
    t.equal(new FrameGuard(total).check(Buffer.concat([p, pingreq])), null, `${len}: packet of ${total} bytes at a limit of ${total}, then PINGREQ`);
    // Split mid-length and mid-body: the guard must land on the PINGREQ after the body.
    const g = new FrameGuard(total);
    const chunks = [p.subarray(0, 2), p.subarray(2, Math.min(p.length, 2 + bytes + 1)), p.subarray(Math.min(p.length, 2 + bytes + 1)), pingreq, frame(0x30, 200)];
    const r = feed(g, chunks);
    if (total < 203) t.equal(r.at, 4, `${len}: after it, a packet over the limit is still recognised`);
    else t.equal(r.at, -1, `${len}: after it, packets within the limit pass`);
    t.match(new FrameGuard(total - 1).check(p.subarray(0, 1 + bytes)), /larger than/, `${len}: one byte over the limit, refused from the header alone`);
  }
  // The largest 4-byte length, 268,435,455 (256 MB), body never supplied.
  const huge = Buffer.from([0x30, 0xff, 0xff, 0xff, 0x7f]);
  t.equal(new FrameGuard(268_435_455 + 5).check(huge), null, 'the largest length is accepted at a limit that fits it');
  t.match(new FrameGuard(268_435_455).check(huge), /packet of 268435460 bytes is larger than the 268435455 allowed/);
  // A non-minimal encoding (0 in two bytes) is still one frame of two length bytes.
  t.equal(new FrameGuard(16).check(Buffer.from([0xc0, 0x80, 0x00, 0xc0, 0x00])), null, 'non-minimal zero length, then PINGREQ');
  t.match(new FrameGuard(16).check(Buffer.from([0xc0, 0x80, 0x00, 0x30, 0x7f])), /larger than/, 'and it does not desynchronise the guard');
});

t.test('exactly at the limit and one over', async (t) => {
  for (const limit of [16, 127 + 2, 128 + 3, 1024, 65_536]) {
    // A PUBLISH of exactly `limit` bytes: header byte + length bytes + body.
    let body = limit - 2;
    while (1 + varint(body).length + body > limit) body--;
    const atLimit = frame(0x30, body);
    t.equal(atLimit.length, limit, `packet of ${limit} bytes built`);
    t.equal(new FrameGuard(limit).check(atLimit), null, `${limit}: exactly at the limit passes`);
    t.equal(feed(new FrameGuard(limit), bytewise(atLimit)).problem, null, `${limit}: exactly at the limit, byte by byte`);
    const over = frame(0x30, body + 1);
    t.match(new FrameGuard(limit).check(over), new RegExp(`packet of ${over.length} bytes is larger than the ${limit} allowed`), `${limit}: one over is refused`);
    const r = feed(new FrameGuard(limit), bytewise(over));
    t.equal(r.at, varint(body + 1).length, `${limit}: one over, byte by byte: refused at its last length byte`);
  }
});

t.test('a 5-byte remaining length is malformed', async (t) => {
  const five = Buffer.from([0x30, 0x80, 0x80, 0x80, 0x80, 0x01]);
  t.match(new FrameGuard(1 << 28).check(five), /malformed remaining length/);
  const r = feed(new FrameGuard(1 << 28), bytewise(five));
  t.equal(r.at, 4, 'refused at the fourth length byte with its continuation bit set');
  t.equal(new FrameGuard(1 << 28).check(five.subarray(0, 4)), null, 'three continued bytes are not yet an error');
  const afterValid = Buffer.concat([pingreq, publish0, five]);
  t.match(new FrameGuard(1 << 28).check(afterValid), /malformed/, 'also after valid packets in the same chunk');
});

t.test('256 MB announced: refused from the five header bytes, whatever follows', async (t) => {
  const header = Buffer.from([0x10, 0xff, 0xff, 0xff, 0x7f]); // CONNECT, remaining length 268,435,455
  const g = new FrameGuard(1024 * 1024);
  t.equal(g.check(header.subarray(0, 4)), null, 'header incomplete: nothing yet');
  t.match(g.check(Buffer.concat([header.subarray(4), Buffer.alloc(4096, 0x41)])), /larger than the 1048576 allowed/);
  t.match(new FrameGuard(1024 * 1024).check(Buffer.concat([connect, header])), /larger than/, 'after a valid CONNECT in the same chunk');
});

t.test('random chunkings of a random valid stream never raise a false alarm', async (t) => {
  let seed = 0x5eed;
  const rnd = (n: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  const packets: Buffer[] = [];
  for (let i = 0; i < 300; i++) packets.push(frame([0x30, 0x32, 0x82, 0x62, 0xc0, 0xe0][rnd(6)]!, [0, 1, 127, 128, 300, 16_384, 20_000][rnd(7)]!, rnd(256)));
  const stream = Buffer.concat(packets);
  const limit = Math.max(...packets.map((p) => p.length));
  for (let round = 0; round < 20; round++) {
    const g = new FrameGuard(limit);
    let pos = 0;
    let problem: string | null = null;
    while (pos < stream.length && problem === null) {
      const len = 1 + rnd(round % 2 ? 7 : 70_000);
      problem = g.check(stream.subarray(pos, pos + len));
      pos += len;
    }
    t.equal(problem, null, `round ${round}`);
    t.match(g.check(frame(0x30, limit)), /larger than/, `round ${round}: the guard ends on a frame boundary`);
  }
});
