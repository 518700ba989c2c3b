// Where a cloud request's reply goes (src/bridge/reply-routes.ts): its MQTT 5 response topic when
// the gateway may write it (P replies and below), P replies otherwise with one warning per topic;
// the route is remembered by request id for a late refusal.
import t from 'tap';
import pino from 'pino';
import { DEFAULT_ROUTE, ReplyRoutes, replyTopicFor } from '../../src/bridge/reply-routes.js';

const P = 'edgewarden/gw-1/';

function routes(): { r: ReplyRoutes; warnings: string[] } {
  const warnings: string[] = [];
  const log = pino({ level: 'warn' }, { write: (line: string) => warnings.push(line) });
  return { r: new ReplyRoutes(P, log), warnings };
}

t.test('only P replies and below are taken', async (t) => {
  t.same(replyTopicFor(P, `${P}replies`), { topic: 'replies' });
  t.same(replyTopicFor(P, `${P}replies/tool-7`), { topic: 'replies/tool-7' });
  t.same(replyTopicFor(P, `${P}replies/a/b/c`), { topic: 'replies/a/b/c' });
  for (const bad of ['elsewhere/replies', 'edgewarden/gw-2/replies', `${P}status`, `${P}snapshot`, `${P}down/things/oven-1/commands/reboot`, `${P}up/things/x/telemetry/t`, `${P}audit`, `${P}repliesX`, `${P}replies/`, `${P}replies/+`, `${P}replies/#`, `${P}replies/a\u0000`, `${P}replies/${'x'.repeat(1100)}`, '']) {
    t.ok('why' in replyTopicFor(P, bad), `refused: ${JSON.stringify(bad.slice(0, 60))}`);
  }
});

t.test('the route of a request, remembered for its late refusal', async (t) => {
  const { r, warnings } = routes();
  t.equal(r.route(undefined, undefined), DEFAULT_ROUTE, 'no properties: P replies, nothing allocated');
  r.remember('a', DEFAULT_ROUTE);
  t.equal(r.late('a'), DEFAULT_ROUTE);
  const corr = Buffer.from('c1');
  const ra = r.route(`${P}replies/tool-7`, corr);
  t.same(ra, { topic: 'replies/tool-7', correlationData: corr });
  t.not(ra.correlationData, corr, 'the correlation data is copied');
  r.remember('a', ra);
  t.same(r.late('a'), ra, 'a late refusal goes the same way');
  const rb = r.route(`${P}replies/tool-8`, undefined);
  t.same(rb, { topic: 'replies/tool-8' });
  r.remember('b', rb);
  r.forget('b');
  t.equal(r.late('b'), DEFAULT_ROUTE, 'forgotten');
  const rc = r.route(undefined, corr);
  t.same(rc, { topic: 'replies', correlationData: corr }, 'correlation data alone: P replies');
  r.remember('c', rc);
  t.same(r.late('c'), { topic: 'replies', correlationData: corr });
  t.equal(r.late('unknown'), DEFAULT_ROUTE);
  r.remember(null, rc);
  t.equal(r.late(null), DEFAULT_ROUTE, 'a request without an id: its late refusal goes to P replies');
  r.remember('a', r.route(undefined, undefined));
  t.equal(r.late('a'), DEFAULT_ROUTE, 'an id used again without properties forgets the old route');
  t.same(warnings, []);
});

t.test('a refused response topic: P replies, the correlation data kept, one warning per topic', async (t) => {
  const { r, warnings } = routes();
  t.same(r.route('elsewhere/x', Buffer.from('k')), { topic: 'replies', correlationData: Buffer.from('k') });
  t.equal(r.route('elsewhere/x', undefined), DEFAULT_ROUTE);
  r.route(`${P}status`, undefined);
  t.equal(warnings.length, 2, 'once per topic');
  t.match(warnings[0], /not under the gateway's prefix/);
  t.match(warnings[1], /replies only on/);
});

t.test('the remembered routes are bounded', async (t) => {
  const { r } = routes();
  for (let i = 0; i < 10_000; i++) r.remember(`id-${i}`, r.route(`${P}replies/t`, Buffer.alloc(1000)));
  t.equal(r.late('id-0'), DEFAULT_ROUTE, 'the oldest are forgotten');
  t.same(r.late('id-9999').topic, 'replies/t', 'the newest are kept');
});
