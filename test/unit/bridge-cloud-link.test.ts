// The pure parts of the cloud link: the back-off (full jitter, bounded), the down request envelope,
// the prefix template, the replies' properties; and a late refusal's route, with a fake outbox.
import t from 'tap';
import pino from 'pino';
import { backoffBound, CloudLink, expandGatewayId, MAX_REQUEST_BYTES, parseCloudRequest, replyUserProperties } from '../../src/bridge/cloud-link.js';
import type { ReplyRoutes } from '../../src/bridge/reply-routes.js';

t.test('back-off bound doubles from the minimum to the maximum', async (t) => {
  t.same([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map((n) => backoffBound(n, 1000, 300_000)), [1000, 2000, 4000, 8000, 16_000, 32_000, 64_000, 128_000, 256_000, 300_000, 300_000]);
  t.equal(backoffBound(10_000, 1000, 300_000), 300_000, 'no overflow after many failures');
  t.equal(backoffBound(0, 50, 500), 50);
});

t.test('expandGatewayId', async (t) => {
  t.equal(expandGatewayId('edgewarden/{gatewayId}/', 'gw-1'), 'edgewarden/gw-1/');
  t.equal(expandGatewayId('{gatewayId}/{gatewayId}', 'g'), 'g/g');
  t.equal(expandGatewayId('fixed/', 'g'), 'fixed/');
});

type Case = [label: string, body: unknown, expect: Record<string, unknown>];
const cases: Case[] = [
  ['text payload', { principal: 'tech-anna', id: 'r1', payload: 'reboot now' }, { principal: 'tech-anna', id: 'r1', qos: 1 }],
  ['base64 payload, qos 0', { principal: 'p', payloadBase64: Buffer.from([0, 1, 255]).toString('base64'), qos: 0 }, { principal: 'p', id: null, qos: 0 }],
  ['no payload', { principal: 'p' }, { principal: 'p', id: null }],
  ['not JSON', '{nope', { error: 'request is not JSON' }],
  ['an array', [1], { error: 'request must be a JSON object' }],
  ['null', null, { error: 'request must be a JSON object' }],
  ['no principal', { id: 'r2' }, { error: 'principal must be a non-empty string', id: 'r2' }],
  ['principal not a string', { principal: 7 }, { error: 'principal must be a non-empty string' }],
  ['qos 2', { principal: 'p', qos: 2 }, { error: 'qos must be 0 or 1' }],
  ['both payloads', { principal: 'p', payload: 'a', payloadBase64: 'YQ==' }, { error: 'give payload or payloadBase64, not both' }],
  ['payload an object', { principal: 'p', payload: { a: 1 } }, { error: 'payload must be a string (or use payloadBase64)' }],
  ['id too long', { principal: 'p', id: 'x'.repeat(257) }, { error: 'id must be a string of at most 256 characters' }],
];

t.test('down request envelopes', async (t) => {
  for (const [label, body, expect] of cases) {
    const bytes = Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    t.match(parseCloudRequest(bytes), expect, label);
  }
  const text = parseCloudRequest(Buffer.from(JSON.stringify({ principal: 'p', payload: 'héllo' })));
  t.ok('payload' in text && text.payload.equals(Buffer.from('héllo')), 'UTF-8 text payload');
  const bin = parseCloudRequest(Buffer.from(JSON.stringify({ principal: 'p', payloadBase64: Buffer.from([0, 1, 255]).toString('base64') })));
  t.ok('payload' in bin && bin.payload.equals(Buffer.from([0, 1, 255])), 'binary payload');
  t.match(parseCloudRequest(Buffer.alloc(MAX_REQUEST_BYTES + 1, 0x20)), { error: /larger than/ }, 'an oversized request');
  for (let i = 0; i < 500; i++) {
    const junk = Buffer.from(Array.from({ length: (i % 64) + 1 }, () => Math.floor(Math.random() * 256)));
    const r = parseCloudRequest(junk);
    t.ok('error' in r || 'principal' in r, 'random bytes never throw');
  }
});

t.test('reply user properties: the outcome, and the reason when refused; one shared object each', async (t) => {
  t.same(replyUserProperties('delivered', undefined), { 'ew-outcome': 'delivered' });
  t.same(replyUserProperties('denied', 'NOT_GRANTED'), { 'ew-outcome': 'denied', 'ew-reason': 'NOT_GRANTED' });
  t.same(replyUserProperties('expired', 'ACTION_EXPIRED'), { 'ew-outcome': 'expired', 'ew-reason': 'ACTION_EXPIRED' });
  t.equal(replyUserProperties('denied', 'NOT_GRANTED'), replyUserProperties('denied', 'NOT_GRANTED'), 'made once');
  t.ok(Object.isFrozen(replyUserProperties('invalid', undefined)));
});

t.test('a late refusal follows the first reply: its response topic and correlation data; reasonCode 0x87, none for an expiry', async (t) => {
  const appended: { topic: string; body: Record<string, unknown>; properties: unknown }[] = [];
  const outbox = {
    append: (topic: string, payload: string | Buffer, opts: { properties?: unknown }) => {
      appended.push({ topic, body: JSON.parse(payload.toString()) as Record<string, unknown>, properties: opts.properties });
      return Promise.resolve(appended.length);
    },
    stats: () => ({ depth: 0 }),
  };
  const host = { snapshotStatus: () => ({ version: 3, expiresAt: null, expired: false }) };
  const link = new CloudLink({ config: { prefix: 'edgewarden/{gatewayId}/' } as never, gatewayId: 'gw-1', outbox: outbox as never, host: host as never, log: pino({ level: 'silent' }) });
  const routes = (link as unknown as { routes: ReplyRoutes }).routes;
  routes.remember('r1', routes.route('edgewarden/gw-1/replies/tool-7', Buffer.from('c1')));
  await link.reportLateRefusal({ requestId: 'r1', principal: 'tech-anna', topic: 'things/oven-1/commands/reboot', reason: 'REVOKED', stage: 'delivery' });
  await link.reportLateRefusal({ requestId: 'r1', principal: 'tech-anna', topic: 'things/oven-1/commands/reboot', reason: 'ACTION_EXPIRED', stage: 'queue' });
  await link.reportLateRefusal({ requestId: 'r2', principal: 'tech-anna', topic: 'things/oven-1/commands/reboot', reason: 'NOT_GRANTED', stage: 'delivery' });
  t.match(appended[0], { topic: 'replies/tool-7', body: { id: 'r1', outcome: 'denied', reason: 'REVOKED', reasonCode: 0x87, stage: 'delivery' }, properties: { correlationData: Buffer.from('c1'), userProperties: { 'ew-outcome': 'denied', 'ew-reason': 'REVOKED' } } });
  t.match(appended[1], { topic: 'replies/tool-7', body: { outcome: 'expired', reason: 'ACTION_EXPIRED', stage: 'queue' }, properties: { correlationData: Buffer.from('c1'), userProperties: { 'ew-outcome': 'expired', 'ew-reason': 'ACTION_EXPIRED' } } });
  t.notOk('reasonCode' in appended[1]!.body, 'no reasonCode for an expiry');
  t.match(appended[2], { topic: 'replies', body: { id: 'r2', reasonCode: 0x87 } }, 'a request not remembered: P replies');
  t.notOk('correlationData' in (appended[2]!.properties as object));
});
