// The topic map (SPEC section 3) and the MQTT filter helpers, as tables.
import t from 'tap';
import { permissionId } from '../../src/catalog/index.js';
import {
  checkTopicMapOptions,
  compileTopicMap,
  fanOutTopic,
  filterCoveredBy,
  filterCoveredByAny,
  filtersIntersect,
  isValidTopicFilter,
  isValidTopicName,
  matchesValid,
  someTopicMatches,
  topicMatches,
  type DeliveryRoute,
  type ActionRef,
  type PublishRoute,
  type SubscriptionRoute,
} from '../../src/topics/index.js';

// ---------------------------------------------------------------------------
// names and filters

const LONG_OK = 'a'.repeat(65535);
const LONG_BAD = 'a'.repeat(65536);
const WIDE_BAD = '\u20ac'.repeat(21846); // 3 bytes each in UTF-8: 65538 bytes in 21846 characters

const names: [string, boolean, string][] = [
  ['a', true, 'one level'],
  ['sport/tennis/player1', true, 'three levels'],
  ['/', true, 'two empty levels'],
  ['a//b', true, 'an empty level in the middle'],
  ['/finance', true, 'leading empty level'],
  ['$SYS/broker/uptime', true, '$ names are names'],
  ['caf\u00e9/\ud83d\ude00', true, 'non-ASCII and a surrogate pair'],
  [' ', true, 'a space is a character'],
  [LONG_OK, true, '65535 bytes'],
  ['', false, '[MQTT-4.7.3-1] not empty'],
  ['a/+', false, '[MQTT-4.7.1-1] no + in a name'],
  ['a/#', false, 'no # in a name'],
  ['a+b', false, 'no + even inside a level'],
  ['a\u0000b', false, '[MQTT-4.7.3-2] no U+0000'],
  ['a\ud800', false, 'a lone high surrogate has no UTF-8'],
  ['\udc00a', false, 'a lone low surrogate has no UTF-8'],
  [LONG_BAD, false, '[MQTT-4.7.3-3] 65536 bytes'],
  [WIDE_BAD, false, 'over 65535 bytes of UTF-8 in fewer characters'],
];

const filters: [string, boolean, string][] = [
  ['#', true, 'everything'],
  ['+', true, 'one level'],
  ['sport/#', true, '# last'],
  ['sport/+/player1', true, '+ in the middle'],
  ['+/+', true, 'two wildcards'],
  ['/+', true, 'empty level then +'],
  ['+/', true, '+ then empty level'],
  ['$SYS/#', true, '$ filter'],
  ['a//#', true, 'empty level before #'],
  ['a', true, 'a filter without wildcards'],
  ['', false, 'not empty'],
  ['sport/tennis#', false, '[MQTT-4.7.1-2] # a whole level'],
  ['sport/#/ranking', false, '[MQTT-4.7.1-2] # last'],
  ['#/', false, '# then an (empty) level'],
  ['##', false, 'two # in one level'],
  ['sport+', false, '[MQTT-4.7.1-3] + a whole level'],
  ['sport/+tennis', false, '+ glued to a name'],
  ['++', false, 'two + in one level'],
  ['a/\u0000', false, 'no U+0000'],
  [LONG_BAD, false, 'too long'],
];

t.test('isValidTopicName', async (t) => {
  for (const [name, ok, why] of names) t.equal(isValidTopicName(name), ok, `${JSON.stringify(name.slice(0, 30))}: ${why}`);
});

t.test('isValidTopicFilter', async (t) => {
  for (const [filter, ok, why] of filters) t.equal(isValidTopicFilter(filter), ok, `${JSON.stringify(filter.slice(0, 30))}: ${why}`);
  // every valid name is a valid filter
  for (const [name, ok] of names) if (ok) t.ok(isValidTopicFilter(name), `name ${JSON.stringify(name.slice(0, 30))} is a filter`);
});

const matches: [filter: string, topic: string, expected: boolean, why: string][] = [
  ['sport/tennis/player1/#', 'sport/tennis/player1', true, '# matches the parent'],
  ['sport/tennis/player1/#', 'sport/tennis/player1/ranking', true, '# one level'],
  ['sport/tennis/player1/#', 'sport/tennis/player1/score/wimbledon', true, '# two levels'],
  ['sport/#', 'sport', true, 'sport/# matches sport'],
  ['sport/#', 'sports', false, 'not a prefix match'],
  ['sport/tennis/+', 'sport/tennis/player1', true, '+ one level'],
  ['sport/tennis/+', 'sport/tennis/player1/ranking', false, '+ only one level'],
  ['sport/+', 'sport', false, 'sport/+ does not match sport'],
  ['sport/+', 'sport/', true, 'sport/+ matches sport/ (an empty level)'],
  ['+/+', '/finance', true, 'empty first level'],
  ['/+', '/finance', true, ''],
  ['+', '/finance', false, 'two levels'],
  ['#', 'a/b/c', true, '# everything'],
  ['#', '/', true, '# empty levels'],
  ['+/monitor/Clients', '$SYS/monitor/Clients', false, '[MQTT-4.7.2-1] + does not take $'],
  ['#', '$SYS', false, '[MQTT-4.7.2-1] # does not take $'],
  ['#', '$SYS/broker/uptime', false, '[MQTT-4.7.2-1]'],
  ['+', '$SYS', false, '[MQTT-4.7.2-1]'],
  ['$SYS/#', '$SYS/broker/uptime', true, 'a $ filter does'],
  ['$SYS/monitor/+', '$SYS/monitor/Clients', true, ''],
  ['a/$b', 'a/$b', true, '$ later in the name is ordinary'],
  ['a/+', 'a/$b', true, '+ takes $ after the first level'],
  ['a/b', 'a/b', true, 'equal'],
  ['a/b', 'a/B', false, 'case-sensitive'],
  ['a/b', 'a/b/', false, 'trailing empty level'],
  ['a/b/', 'a/b/', true, ''],
  ['a/b/#', 'a/b/', true, ''],
  ['a//b', 'a//b', true, ''],
  ['a/+/b', 'a//b', true, '+ takes an empty level'],
  ['ab', 'a', false, 'longer literal'],
  ['a', 'ab', false, 'shorter literal'],
  ['a/+', 'a/+', false, 'an invalid name matches nothing'],
  ['a/#/b', 'a/x/b', false, 'an invalid filter matches nothing'],
  ['', '', false, 'empty'],
];

t.test('topicMatches', async (t) => {
  for (const [filter, topic, expected, why] of matches) {
    t.equal(topicMatches(filter, topic), expected, `${filter} ~ ${topic}: ${why}`);
  }
});

const covered: [filter: string, pattern: string, expected: boolean][] = [
  ['a/b', 'a/b', true],
  ['a/b', 'a/+', true],
  ['a/+', 'a/#', true],
  ['a', 'a/#', true],
  ['a/#', 'a/#', true],
  ['a/#', '#', true],
  ['#', '+/#', true],
  ['+/#', '#', true],
  ['a/#', 'a/+', false],
  ['a/+', 'a/b', false],
  ['a/+/c', 'a/+/+', true],
  ['+/+', '#', true],
  ['$SYS/#', '#', false],
  ['$SYS/x', '+/x', false],
  ['$SYS/x', '$SYS/+', true],
  ['#', '$SYS/#', false],
  ['a/#', 'a/+/#', false],
  ['a/+/#', 'a/#', true],
  ['a', 'a/+', false],
  ['a/b/#', 'a/+/#', true],
  ['a/+', 'a/+/#', true],
  ['x', 'a/#', false],
  ['a/#', 'a/#/b', false],
];

const intersect: [a: string, b: string, expected: boolean][] = [
  ['a/+', '+/b', true],
  ['a/#', 'a', true],
  ['a/+', 'a', false],
  ['#', '$SYS/#', false],
  ['+/x', '$SYS/x', false],
  ['$SYS/#', '$SYS/+', true],
  ['a/b', 'a/c', false],
  ['a/+/c', 'a/b/+', true],
  ['things/+/telemetry/#', 'things/oven-1/#', true],
  ['+/+/commands/+', 'things/+/commands/+/reply', false],
  ['#', '#', true],
  ['a/+/+', 'a/#', true],
  ['a/b/c/d', '+/+/+', false],
  ['/#', '+', false], // the only one-level name /# could match is '' (its parent), not a valid name
  ['/#', '+/+', true],
  ['a/#', 'b/#', false],
  ['a', 'a/#/x', false],
];

t.test('filterCoveredBy', async (t) => {
  for (const [f, p, expected] of covered) t.equal(filterCoveredBy(f, p), expected, `${f} covered by ${p}`);
});

t.test('filtersIntersect', async (t) => {
  for (const [a, b, expected] of intersect) {
    t.equal(filtersIntersect(a, b), expected, `${a} and ${b}`);
    t.equal(filtersIntersect(b, a), expected, `${b} and ${a} (symmetric)`);
  }
});

t.test('covered by a union, some topic escapes', async (t) => {
  t.ok(filterCoveredByAny('a/+', ['a/b', 'a/#']), 'a/+ in a/#');
  t.notOk(filterCoveredByAny('a/+', ['a/b', 'a/c']), 'a/x escapes');
  t.ok(filterCoveredByAny('a/#', ['a', 'a/+/#']), 'the parent and every child');
  t.notOk(filterCoveredByAny('a/#', ['a/+/#']), 'the parent a escapes');
  t.ok(filterCoveredByAny('#', ['+/#']), '# is +/#');
  t.notOk(filterCoveredByAny('#', []), 'nothing covers by nothing');
  t.ok(someTopicMatches(['#'], ['test/nosubscribe']), '# minus one topic is not empty');
  t.notOk(someTopicMatches(['test/nosubscribe', '#'], ['test/nosubscribe']), 'the topic itself minus itself is');
  t.ok(someTopicMatches(['+'], ['/+/#', '+/+/#', 'a', 'b']), 'a fresh single level escapes');
  t.notOk(someTopicMatches(['+'], ['+/#']), '+/# matches every one-level name');
  t.notOk(someTopicMatches(['+/#', 'a/#/'], []), 'an invalid filter answers false');
});

// Exhaustive cross-check on a bounded universe: filters of up to 3 levels over {a, $b, '', +, #},
// names of up to 4 levels over {a, $b, '', c}. A witness for such filters, when there is one,
// has at most 4 levels and uses their literals or a fresh one (c), so within this universe the
// set relations must agree exactly with topicMatches.
t.test('relations agree with topicMatches (bounded exhaustive check)', async (t) => {
  const product = (alphabet: string[], n: number): string[][] =>
    n === 0 ? [[]] : product(alphabet, n - 1).flatMap((p) => alphabet.map((x) => [...p, x]));
  const seqs = (alphabet: string[], max: number) => [1, 2, 3, 4].filter((n) => n <= max).flatMap((n) => product(alphabet, n)).map((l) => l.join('/'));
  const fs = seqs(['a', '$b', '', '+', '#'], 3).filter(isValidTopicFilter);
  const ts = seqs(['a', '$b', '', 'c'], 4).filter(isValidTopicName);
  const sets = new Map(fs.map((f) => [f, ts.map((n) => matchesValid(f, n))]));
  let disagreements = 0;
  let checked = 0;
  for (const a of fs) {
    const ma = sets.get(a)!;
    for (const b of fs) {
      const mb = sets.get(b)!;
      const inter = ma.some((x, i) => x && mb[i]);
      const cov = ma.every((x, i) => !x || mb[i]);
      checked++;
      if (filtersIntersect(a, b) !== inter || filterCoveredBy(a, b) !== cov) {
        if (disagreements++ < 5) t.fail(`${a} vs ${b}: intersect ${!inter}, covered ${!cov} expected ${inter}, ${cov}`);
      }
    }
  }
  t.equal(disagreements, 0, `${checked} pairs of ${fs.length} filters over ${ts.length} names agree`);
  // unions: two filters to match, two to avoid, on a deterministic sample
  let seed = 42;
  const pick = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return fs[seed % fs.length]!;
  };
  let unionDisagreements = 0;
  for (let n = 0; n < 3000; n++) {
    const [a, b, c, d] = [pick(), pick(), pick(), pick()];
    const [ma, mb, mc, md] = [a, b, c, d].map((f) => sets.get(f)!);
    const expected = ma!.some((x, i) => x && mb![i] && !mc![i] && !md![i]);
    if (someTopicMatches([a, b], [c, d]) !== expected && unionDisagreements++ < 5) t.fail(`[${a}, ${b}] minus [${c}, ${d}]: expected ${expected}`);
  }
  t.equal(unionDisagreements, 0, '3000 sampled unions agree');
  t.ok(ts.every((n) => topicMatches('#', n) === !n.startsWith('$')), '# matches every name but the $ ones');
});

// ---------------------------------------------------------------------------
// the topic map

const map = compileTopicMap();
const pid = (name: string) => {
  const id = permissionId(name);
  if (id < 0) throw new Error(name);
  return id;
};
const act = (permission: string, thing: string, name: string | null = null): PublishRoute =>
  ({ kind: 'action', permission, permissionId: pid(permission), thing, name }) as PublishRoute;
const bulk = (operation: string): PublishRoute => ({ kind: 'bulk', permission: 'EXECUTE_BULK_UPDATE', permissionId: pid('EXECUTE_BULK_UPDATE'), operation });
const own = (thing: string): PublishRoute => ({ kind: 'device-own', thing });
const agent = (thing: string): PublishRoute => ({ kind: 'agent-only', thing });
const OUT = { kind: 'outside' } as const;
const actionRef = (permission: string) => ({ permission, permissionId: pid(permission) }) as ActionRef;
const read = (thing: string, action: string | null = null): DeliveryRoute => ({ kind: 'read', permission: 'READ_THING', permissionId: pid('READ_THING'), thing, ownerMayReceive: true, action: action === null ? null : actionRef(action) });
const cloud = (thing: string): DeliveryRoute => ({ kind: 'read', permission: 'READ_CLOUD_STATUS', permissionId: pid('READ_CLOUD_STATUS'), thing, ownerMayReceive: false, action: null });
const inbox = (thing: string, action: string | null = 'EXECUTE_BULK_UPDATE'): DeliveryRoute => ({ kind: 'inbox', thing, action: action === null ? null : actionRef(action) });
const NOBODY = { kind: 'nobody' } as const;

/** [topic, what publishing it is, what delivering it is, why] */
const routes: [string, PublishRoute, DeliveryRoute, string][] = [
  ['things/oven-1/commands/start', act('EXECUTE_THING_COMMAND', 'oven-1', 'start'), inbox('oven-1', 'EXECUTE_THING_COMMAND'), 'run a command'],
  ['things/oven-1/parameters/temp/set', act('SET_THING_PARAMETER', 'oven-1', 'temp'), inbox('oven-1', 'SET_THING_PARAMETER'), 'set a parameter'],
  ['things/oven-1/firmware/update', act('UPDATE_FIRMWARE', 'oven-1'), inbox('oven-1', 'UPDATE_FIRMWARE'), 'update firmware'],
  ['things/oven-1/metrics/hours/set', act('WRITE_METRIC_VALUE', 'oven-1', 'hours'), inbox('oven-1', 'WRITE_METRIC_VALUE'), 'set a metric value'],
  ['things/oven-1/alerts/a-17/ack', act('WRITE_ALERT_STATUS', 'oven-1', 'a-17'), read('oven-1', 'WRITE_ALERT_STATUS'), 'acknowledge an event'],
  ['things/oven-1/alerts/a-17/clear', act('CLEAR_ALERT', 'oven-1', 'a-17'), read('oven-1', 'CLEAR_ALERT'), 'clear an event'],
  ['things/oven-1/options/mode/set', act('WRITE_THING_OPTION', 'oven-1', 'mode'), inbox('oven-1', 'WRITE_THING_OPTION'), 'set a thing option'],
  ['things/oven-1/activate', act('WRITE_THING_ACTIVATION', 'oven-1'), inbox('oven-1', 'WRITE_THING_ACTIVATION'), 'activate a thing'],
  ['things/new-9/register', act('REGISTER_THING', 'new-9'), inbox('new-9', 'REGISTER_THING'), 'register a new thing'],
  ['bulk/reboot', bulk('reboot'), NOBODY, 'bulk update: fanned out, the request itself reaches nobody'],
  ['bulk/', bulk(''), NOBODY, 'an empty operation is a level'],
  ['things/oven-1/bulk/reboot', agent('oven-1'), inbox('oven-1'), 'the fan-out topic: agent-only, inbox of the thing'],
  ['things/oven-1/telemetry/temp', own('oven-1'), read('oven-1'), 'telemetry, one level'],
  ['things/oven-1/telemetry/zone/2/temp', own('oven-1'), read('oven-1'), 'telemetry, several levels'],
  ['things/oven-1/telemetry/', own('oven-1'), read('oven-1'), 'telemetry, one empty level'],
  ['things/oven-1/alerts/a-17', own('oven-1'), read('oven-1'), 'an event'],
  ['things/oven-1/alerts/a-17/raised', own('oven-1'), read('oven-1'), 'an event sub-topic'],
  ['things/oven-1/alerts/a-17/ack/x', own('oven-1'), read('oven-1'), 'deeper than ack: an event sub-topic'],
  ['things/oven-1/commands/start/reply', own('oven-1'), read('oven-1'), 'a command reply'],
  ['things/oven-1/cloud-status', agent('oven-1'), cloud('oven-1'), 'cloud status'],
  ['things//commands/x', act('EXECUTE_THING_COMMAND', '', 'x'), inbox('', 'EXECUTE_THING_COMMAND'), 'an empty thing level is still the map (decide: UNKNOWN_THING)'],
  ['things/$x/commands/x', act('EXECUTE_THING_COMMAND', '$x', 'x'), inbox('$x', 'EXECUTE_THING_COMMAND'), '$ after the first level is an ordinary character'],
  ['things/oven-1/telemetry', OUT, OUT, 'telemetry needs one more level'],
  ['things/oven-1/alerts', OUT, OUT, 'alerts needs one more level'],
  ['things/oven-1/commands', OUT, OUT, 'no command name'],
  ['things/oven-1/commands/start/reply/x', OUT, OUT, 'deeper than a reply'],
  ['things/oven-1/commands/start/other', OUT, OUT, 'not a reply'],
  ['things/oven-1/parameters/temp', OUT, OUT, 'no /set'],
  ['things/oven-1/parameters/temp/set/x', OUT, OUT, 'deeper than set'],
  ['things/oven-1/firmware', OUT, OUT, ''],
  ['things/oven-1/firmware/rollback', OUT, OUT, ''],
  ['things/oven-1/activate/now', OUT, OUT, ''],
  ['things/oven-1/cloud-status/x', OUT, OUT, ''],
  ['things/oven-1/bulk/reboot/x', OUT, OUT, ''],
  ['things/oven-1/bulk', OUT, OUT, ''],
  ['things/oven-1', OUT, OUT, 'the thing alone'],
  ['things', OUT, OUT, 'the root alone'],
  ['things/', OUT, OUT, ''],
  ['bulk', OUT, OUT, 'the bulk root alone'],
  ['bulk/reboot/now', OUT, OUT, 'one operation level only'],
  ['Things/oven-1/commands/start', OUT, OUT, 'case-sensitive'],
  ['/things/oven-1/commands/start', OUT, OUT, 'leading slash'],
  ['factory/line-1/status', OUT, OUT, 'an application topic'],
  ['$SYS/broker/uptime', OUT, OUT, '$ topic'],
  ['things/+/commands/start', OUT, OUT, '+ in a publish topic'],
  ['things/oven-1/telemetry/#', OUT, OUT, '# in a publish topic'],
  ['', OUT, OUT, 'empty'],
];

t.test('routePublish and routeDelivery: every row of the map', async (t) => {
  for (const [topic, publish, delivery, why] of routes) {
    t.same(map.routePublish(topic), publish, `publish ${topic}: ${why}`);
    t.same(map.routeDelivery(topic), delivery, `deliver ${topic}: ${why}`);
    t.equal(map.routePublish(topic).kind === 'outside', map.routeDelivery(topic).kind === 'outside', `${topic}: publish and delivery agree on in/outside`);
  }
  t.ok(Object.isFrozen(map.routePublish('things/a/commands/b')), 'routes are frozen (the broker caches them)');
  t.ok(Object.isFrozen(map.routeSubscription('#').reads), 'subscription routes too');
});

const sub = (reads: [perm: 'READ_THING' | 'READ_CLOUD_STATUS', thing: string | null][], inboxThing: string | null | undefined, outside: boolean): SubscriptionRoute => ({
  reads: reads.map(([permission, thing]) => ({ permission, permissionId: pid(permission), thing, ownerMayReceive: permission === 'READ_THING' })),
  inbox: inboxThing === undefined ? [] : [{ thing: inboxThing }],
  outside,
});

const subscriptions: [string, SubscriptionRoute, string][] = [
  ['things/+/telemetry/#', sub([['READ_THING', null]], undefined, true), 'every thing\'s telemetry (and things/t/telemetry itself, outside)'],
  ['things/+/telemetry/+/#', sub([['READ_THING', null]], undefined, false), 'exactly the telemetry topics'],
  ['things/oven-1/telemetry/temp', sub([['READ_THING', 'oven-1']], undefined, false), 'one telemetry topic'],
  ['things/oven-1/#', sub([['READ_THING', 'oven-1'], ['READ_CLOUD_STATUS', 'oven-1']], 'oven-1', true), 'everything of one thing'],
  ['#', sub([['READ_THING', null], ['READ_CLOUD_STATUS', null]], null, true), 'everything'],
  ['+/#', sub([['READ_THING', null], ['READ_CLOUD_STATUS', null]], null, true), 'everything but $'],
  ['things/#', sub([['READ_THING', null], ['READ_CLOUD_STATUS', null]], null, true), 'the whole thing tree'],
  ['+/+/commands/+', sub([], null, true), 'every thing\'s commands (and other roots\')'],
  ['things/+/commands/+', sub([], null, false), 'exactly the commands'],
  ['things/oven-1/commands/#', sub([['READ_THING', 'oven-1']], 'oven-1', true), 'commands (inbox), replies (read), things/oven-1/commands (outside)'],
  ['things/oven-1/commands/+', sub([], 'oven-1', false), 'a device\'s own commands'],
  ['things/oven-1/commands/+/reply', sub([['READ_THING', 'oven-1']], undefined, false), 'command replies'],
  ['things/oven-1/alerts/#', sub([['READ_THING', 'oven-1']], undefined, true), 'events incl. ack/clear (and things/oven-1/alerts, outside)'],
  ['things/oven-1/cloud-status', sub([['READ_CLOUD_STATUS', 'oven-1']], undefined, false), 'cloud status'],
  ['things/+/cloud-status', sub([['READ_CLOUD_STATUS', null]], undefined, false), 'every cloud status'],
  ['things/+/+', sub([['READ_CLOUD_STATUS', null]], null, true), 'activate/register (inbox), cloud-status, others'],
  ['+/oven-1/#', sub([['READ_THING', 'oven-1'], ['READ_CLOUD_STATUS', 'oven-1']], 'oven-1', true), 'root level wildcard, literal thing'],
  ['things/oven-1/bulk/+', sub([], 'oven-1', false), 'fan-out topics'],
  ['bulk/#', sub([], undefined, true), 'bulk requests reach nobody; bulk itself is outside'],
  ['bulk/+', sub([], undefined, false), 'only bulk requests: matches nothing receivable'],
  ['things/oven-1', sub([], undefined, true), 'the thing level alone is outside the map'],
  ['factory/#', sub([], undefined, true), 'an application tree'],
  ['$SYS/#', sub([], undefined, true), '$ filters are outside the map'],
  ['things/oven-1/telemetry', sub([], undefined, true), 'outside the map'],
];

t.test('routeSubscription', async (t) => {
  for (const [filter, expected, why] of subscriptions) t.same(map.routeSubscription(filter), expected, `${filter}: ${why}`);
  t.same(map.routeSubscription('things/#/x'), sub([], undefined, false), 'an invalid filter matches nothing');
  t.same(map.routeSubscription(''), sub([], undefined, false), 'an empty filter matches nothing');
});

t.test('routeSubscription agrees with routeDelivery on concrete topics', async (t) => {
  for (const [topic, , delivery] of routes) {
    if (!isValidTopicName(topic)) continue;
    const s = map.routeSubscription(topic);
    const thing = delivery.kind === 'read' || delivery.kind === 'inbox' ? delivery.thing : null;
    t.same(
      s,
      sub(delivery.kind === 'read' ? [[delivery.permission, thing]] : [], delivery.kind === 'inbox' ? thing : undefined, delivery.kind === 'outside'),
      `${topic} as a filter`,
    );
  }
});

t.test('disabled map (conformance mode): everything is outside', async (t) => {
  const off = compileTopicMap({ enabled: false });
  t.equal(off.enabled, false);
  for (const [topic] of routes) {
    t.same(off.routePublish(topic), OUT, `publish ${topic}`);
    t.same(off.routeDelivery(topic), OUT, `deliver ${topic}`);
  }
  for (const f of ['#', 'things/+/telemetry/#', 'things/oven-1/commands/+', '$SYS/#']) t.same(off.routeSubscription(f), sub([], undefined, true), `subscribe ${f}`);
  t.same(off.routeSubscription('a/#/b'), sub([], undefined, false), 'an invalid filter still matches nothing');
});

t.test('configurable roots', async (t) => {
  const m = compileTopicMap({ root: 'acme/devices', bulkRoot: 'acme/bulk' });
  t.same(m.routePublish('acme/devices/oven-1/commands/start'), act('EXECUTE_THING_COMMAND', 'oven-1', 'start'));
  t.same(m.routePublish('acme/bulk/reboot'), bulk('reboot'));
  t.same(m.routePublish('things/oven-1/commands/start'), OUT, 'the default root is no longer the map');
  t.same(m.routeSubscription('acme/#'), sub([['READ_THING', null], ['READ_CLOUD_STATUS', null]], null, true));
  t.same(m.routeSubscription('acme/+/oven-1/telemetry/+'), sub([['READ_THING', 'oven-1']], undefined, true), 'matches acme/bulk/oven-1/telemetry/x too');
  t.equal(m.fanOutTopic('oven-1', 'reboot'), 'acme/devices/oven-1/bulk/reboot');
  t.same(m.routeDelivery(m.fanOutTopic('oven-1', 'reboot')), inbox('oven-1'), 'the fan-out topic routes back to the inbox');
  t.equal(m.filters.length, 15, 'fourteen thing topics and the bulk topic');
  t.ok(m.filters.includes('acme/devices/+/telemetry/+/#'));

  const bad: [Parameters<typeof compileTopicMap>[0], string][] = [
    [{ root: '' }, 'root'],
    [{ root: 'things/+' }, 'root'],
    [{ root: '$things' }, 'root'],
    [{ root: 'things/' }, 'root'],
    [{ root: '/things' }, 'root'],
    [{ bulkRoot: 'a//b' }, 'bulkRoot'],
    [{ root: 'x', bulkRoot: 'x' }, 'bulkRoot'],
    [{ root: 'x', bulkRoot: 'x/bulk' }, 'bulkRoot'],
    [{ root: 'x/things', bulkRoot: 'x' }, 'bulkRoot'],
  ];
  for (const [opts, path] of bad) {
    t.equal(checkTopicMapOptions(opts)[0]?.path, path, `${JSON.stringify(opts)}: ${path}`);
    t.throws(() => compileTopicMap(opts), TypeError, `${JSON.stringify(opts)} is refused`);
  }
  t.same(checkTopicMapOptions({ root: 'x/things', bulkRoot: 'x/bulk' }), [], 'siblings under one prefix are fine');
});

t.test('fanOutTopic', async (t) => {
  t.equal(fanOutTopic('oven-1', 'reboot'), 'things/oven-1/bulk/reboot');
  t.equal(map.fanOutTopic('oven-1', 'reboot'), 'things/oven-1/bulk/reboot');
  t.equal(fanOutTopic('oven-1', 'reboot', 'edge'), 'edge/oven-1/bulk/reboot');
  for (const op of ['reboot', '', 'a.b']) t.same(map.routeDelivery(fanOutTopic('t-1', op)), inbox('t-1'), `fan-out of ${JSON.stringify(op)} is t-1's inbox`);
  t.same(map.routeDelivery(fanOutTopic('a/b', 'x')), OUT, 'a thing with / makes no inbox topic');
});
