// MQTT 5 properties queued with outbox records (flag bit 2, src/store/outbox-properties.ts): kept
// across a restart, absent from records queued without them, and segments written before they
// existed (test/fixtures/outbox/format1-replies, written by the outbox of commit c5213be) load and
// read unchanged.
import t from 'tap';
import { cpSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Outbox, type OutboxOptions } from '../../src/store/outbox.js';
import { SqliteOutbox } from '../../src/store/outbox-sqlite.js';
import { propertiesBytes, readProperties, writeProperties } from '../../src/store/outbox-properties.js';
import { recordCrc } from '../../src/store/outbox-segment.js';
import { ROOT } from '../helpers/policy.js';

const open = async (dir: string, extra: Partial<OutboxOptions> = {}) => {
  const problems: string[] = [];
  const ob = await Outbox.open({ dir, maxBytes: 1 << 20, onProblem: (m) => problems.push(m), ...extra });
  return { ob, problems };
};

t.test('properties encode and decode; malformed ones are refused', async (t) => {
  const p = { correlationData: Buffer.from([0, 1, 2, 255]), userProperties: { 'ew-outcome': 'denied', 'ew-reason': 'NOT_GRANTED', 'é': 'ü' } };
  const n = propertiesBytes(p);
  const buf = Buffer.alloc(n);
  t.equal(writeProperties(buf, 0, p), n, 'writes exactly propertiesBytes');
  t.same(readProperties(buf), p);
  t.equal(propertiesBytes(undefined), 0);
  t.equal(propertiesBytes({}), 0);
  t.same(readProperties(Buffer.alloc(0)), {});
  t.equal(readProperties(buf.subarray(0, n - 1)), undefined, 'cut short');
  t.equal(readProperties(Buffer.from([0x01, 0, 0])), undefined, 'an unknown property');
});

t.test('records keep their properties across a restart; others have none', async (t) => {
  const dir = t.testdir();
  const { ob } = await open(dir);
  const corr = Buffer.from('corr-\u0000-7', 'latin1');
  await ob.append('replies/tool-7', '{"outcome":"denied"}', { qos: 1, properties: { correlationData: corr, userProperties: { 'ew-outcome': 'denied', 'ew-reason': 'NOT_GRANTED' } } });
  await ob.append('up/things/oven-1/telemetry/temp', '21', { qos: 1 });
  await ob.append('replies', '{"outcome":"delivered"}', { qos: 1, properties: { userProperties: { 'ew-outcome': 'delivered' } } });
  await ob.append('replies', 'empty', { qos: 1, properties: {} });
  const check = (recs: ReturnType<Outbox['peek']>, when: string) => {
    t.equal(recs.length, 4, when);
    t.match(recs[0], { seq: 1, topic: 'replies/tool-7', qos: 1, retain: false, properties: { userProperties: { 'ew-outcome': 'denied', 'ew-reason': 'NOT_GRANTED' } } }, when);
    t.same(recs[0]!.properties!.correlationData, corr, `${when}: the correlation data, byte for byte`);
    t.equal(recs[0]!.payload.toString(), '{"outcome":"denied"}', `${when}: the payload follows the properties`);
    t.notOk('properties' in recs[1]!, `${when}: a record queued without properties has none`);
    t.equal(recs[1]!.payload.toString(), '21');
    t.same(recs[2]!.properties, { userProperties: { 'ew-outcome': 'delivered' } }, when);
    t.notOk('properties' in recs[3]!, `${when}: empty properties take no room`);
  };
  check(ob.peek(10), 'before the restart');
  await ob.close();
  const again = await open(dir);
  check(again.ob.peek(10), 'after the restart');
  t.same(again.problems, []);
  await again.ob.close();
});

t.test('an outbox written before properties existed loads and reads unchanged', async (t) => {
  const dir = join(t.testdir(), 'outbox');
  cpSync(join(ROOT, 'test', 'fixtures', 'outbox', 'format1-replies'), dir, { recursive: true });
  const { ob, problems } = await open(dir);
  t.same(problems, []);
  const recs = ob.peek(10);
  t.same(recs.map((r) => [r.seq, r.topic, r.qos, 'properties' in r]), [[1, 'replies', 1, false], [2, 'up/things/oven-1/telemetry/temp', 1, false]]);
  t.match(JSON.parse(recs[0]!.payload.toString()), { id: 'old-1', outcome: 'denied', reason: 'NOT_GRANTED' });
  t.equal(recs[0]!.enqueuedAt, Date.parse('2026-12-01T12:00:00.000Z'));
  // New records with properties go after them in the same segment.
  t.equal(await ob.append('replies/x', 'new', { qos: 1, properties: { correlationData: Buffer.from('c') } }), 3);
  t.same(ob.peek(10, 2)[0]!.properties, { correlationData: Buffer.from('c') });
  await ob.close();
});

t.test('a record whose properties run past its body is damage: skipped and counted at open', async (t) => {
  const dir = t.testdir();
  const { ob } = await open(dir);
  await ob.append('a', 'first', { qos: 1 });
  await ob.append('b', 'xx', { qos: 1 }); // 25 + 1 + 2 = 28 bytes, at 8 + 31
  await ob.append('c', 'third', { qos: 1 });
  await ob.close();
  const seg = join(dir, readdirSync(dir).find((f) => f.endsWith('.seg'))!);
  const bytes = readFileSync(seg);
  const off = 8 + 31;
  t.equal(bytes.readUInt32BE(off + 12), 2, 'the second record is where it should be');
  // Flag bit 2 on it, CRC made valid: its "properties length" is the payload's 0x7878 bytes.
  bytes[off + 16] = bytes[off + 16]! | 4;
  bytes.writeUInt32BE(recordCrc(bytes.subarray(off, off + 28)), off + 4);
  writeFileSync(seg, bytes);
  const again = await open(dir);
  t.same(again.ob.peek(10).map((r) => r.payload.toString()), ['first', 'third']);
  t.equal(again.ob.stats().dropped, 1, 'counted as lost');
  t.ok(again.problems.length > 0, 'and reported');
  await again.ob.close();
});

t.test('properties too large are refused, nothing queued; the SQLite outbox refuses properties', async (t) => {
  const { ob } = await open(t.testdir());
  await t.rejects(ob.append('replies', 'x', { properties: { correlationData: Buffer.alloc(70_000) } }), { code: 'EW_OUTBOX_RECORD_TOO_LARGE' });
  await t.rejects(ob.append('replies', 'x', { properties: { userProperties: { a: 'b'.repeat(40_000), c: 'd'.repeat(40_000) } } }), { code: 'EW_OUTBOX_RECORD_TOO_LARGE' });
  t.equal(ob.stats().depth, 0);
  t.equal(await ob.append('replies', 'x', { properties: { correlationData: Buffer.alloc(60_000) } }), 1, 'a large one within the bounds');
  await ob.close();
  const sq = await SqliteOutbox.open({ dir: t.testdir(), maxBytes: 1 << 20 });
  await t.rejects(sq.append('replies', 'x', { properties: { correlationData: Buffer.from('c') } }), RangeError);
  t.equal(await sq.append('replies', 'x'), 1);
  await sq.close();
});
