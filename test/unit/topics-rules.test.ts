// Topic rules (mosquitto acl_file style) for the topics outside the map, as tables.
import t from 'tap';
import { checkTopicRules, compileTopicRules, topicMatches, type RuleSubject, type TopicRule } from '../../src/topics/index.js';

const ANON: RuleSubject = { anonymous: true, principal: null, role: null };
const ANNA: RuleSubject = { anonymous: false, principal: 'tech-anna', role: 'technician' };
const BOB: RuleSubject = { anonymous: false, principal: 'bob', role: 'viewer' };
const KEY: RuleSubject = { anonymous: false, principal: 'key-1', role: null };
const WHO = { ANON, ANNA, BOB, KEY } as const;
type WhoName = keyof typeof WHO;

// The conformance configuration (config/conformance.yaml): everything open, one topic denied.
const conformance = compileTopicRules([
  { pattern: '#', who: 'anonymous', access: 'readwrite' },
  { pattern: '#', who: 'authenticated', access: 'readwrite' },
  { pattern: 'test/nosubscribe', who: 'anonymous', access: 'deny' },
  { pattern: 'test/nosubscribe', who: 'authenticated', access: 'deny' },
]);

t.test('conformance rules: test/nosubscribe', async (t) => {
  for (const who of [ANON, ANNA]) {
    const w = who.anonymous ? 'anonymous' : 'authenticated';
    t.notOk(conformance.canSubscribe('test/nosubscribe', who), `${w}: subscribing to test/nosubscribe is refused`);
    t.ok(conformance.canSubscribe('#', who), `${w}: # is granted`);
    t.ok(conformance.canSubscribe('test/+', who), `${w}: test/+ is granted`);
    t.ok(conformance.canSubscribe('test/#', who), `${w}: test/# is granted`);
    t.ok(conformance.canSubscribe('test/nosubscribe/#', who), `${w}: test/nosubscribe/x is not denied`);
    t.notOk(conformance.canReceive('test/nosubscribe', who), `${w}: ...but a message on test/nosubscribe is filtered`);
    t.ok(conformance.canReceive('test/other', who), `${w}: others are delivered`);
    t.ok(conformance.canPublish('TopicA/B', who), `${w}: publish anywhere`);
    t.notOk(conformance.canPublish('test/nosubscribe', who), `${w}: deny is for writing too`);
    t.notOk(conformance.canPublish('$SYS/x', who), `${w}: never a $ topic`);
    t.notOk(conformance.canReceive('$SYS/x', who), `${w}: # does not match $SYS/x`);
    t.notOk(conformance.canSubscribe('$SYS/#', who), `${w}: nor can it be subscribed through #`);
  }
  t.equal(conformance.allowsAnonymous, true);
  t.equal(conformance.size, 4);
});

const rules: TopicRule[] = [
  { pattern: 'factory/#', who: 'authenticated', access: 'read' },
  { pattern: 'factory/line-1/cmd', who: 'role:technician', access: 'write' },
  { pattern: 'factory/secret/#', who: 'authenticated', access: 'deny' },
  { pattern: 'factory/secret/public', who: 'principal:bob', access: 'readwrite' },
  { pattern: 'apps/+/status', who: 'principal:key-1', access: 'readwrite' },
  { pattern: 'apps/key-1/status', who: 'role:technician', access: 'deny' },
  { pattern: 'public/#', who: 'anonymous', access: 'read' },
  { pattern: 'public/inbox', who: 'anonymous', access: 'write' },
  { pattern: '$SYS/broker/#', who: 'role:viewer', access: 'read' },
  { pattern: 'scratch/+', who: 'authenticated', access: 'readwrite' },
  { pattern: 'scratch/locked', who: 'principal:tech-anna', access: 'deny' },
];
const r = compileTopicRules(rules);

type Row = [who: WhoName, topic: string, expected: boolean, why: string];

const publish: Row[] = [
  ['ANNA', 'factory/line-1/cmd', true, 'role:technician may write'],
  ['BOB', 'factory/line-1/cmd', false, 'viewer has no write rule'],
  ['ANNA', 'factory/line-1/data', false, 'read-only for authenticated'],
  ['KEY', 'apps/key-1/status', true, 'principal:key-1 readwrite'],
  ['KEY', 'apps/other/status', true, '+ level'],
  ['KEY', 'apps/key-1/status/x', false, '+ is one level'],
  ['ANNA', 'apps/key-1/status', false, 'no allow, and a deny'],
  ['BOB', 'factory/secret/public', false, 'deny for authenticated beats principal:bob readwrite'],
  ['ANON', 'public/inbox', true, 'anonymous write'],
  ['ANON', 'public/news', false, 'anonymous read-only there'],
  ['ANNA', 'public/inbox', false, 'anonymous rules are not for authenticated clients'],
  ['ANON', 'scratch/x', false, 'authenticated rules are not for anonymous clients'],
  ['BOB', 'scratch/x', true, 'authenticated readwrite'],
  ['ANNA', 'scratch/locked', false, 'a principal deny beats authenticated readwrite'],
  ['BOB', 'scratch/locked', true, 'the deny is only for tech-anna'],
  ['BOB', 'nothing/here', false, 'no rule: denied by default'],
  ['BOB', 'scratch/+', false, 'never a wildcard topic'],
  ['BOB', '$SYS/broker/x', false, 'never a $ topic'],
  ['BOB', '', false, 'never an empty topic'],
];

const receive: Row[] = [
  ['ANNA', 'factory/line-1/data', true, 'authenticated read'],
  ['ANNA', 'factory', true, 'factory/# matches factory'],
  ['ANON', 'factory/line-1/data', false, 'not for anonymous'],
  ['ANNA', 'factory/line-1/cmd', true, 'read via factory/#'],
  ['ANNA', 'factory/secret/x', false, 'deny'],
  ['BOB', 'factory/secret/public', false, 'deny wins over principal:bob'],
  ['KEY', 'apps/x/status', true, 'readwrite is read'],
  ['ANNA', 'apps/x/status', false, 'no read rule'],
  ['ANON', 'public/news', true, 'anonymous read'],
  ['ANON', 'public/inbox', true, 'anonymous read via public/#'],
  ['BOB', '$SYS/broker/uptime', true, 'role:viewer, a $ pattern'],
  ['ANNA', '$SYS/broker/uptime', false, 'not a viewer'],
  ['BOB', '$SYS/other', false, 'outside the $ pattern'],
  ['BOB', 'nothing/here', false, 'no rule'],
  ['BOB', 'factory/#', false, 'not a topic name'],
];

const subscribe: Row[] = [
  ['ANNA', 'factory/#', true, 'all of it but secret'],
  ['ANNA', 'factory/+', true, ''],
  ['ANNA', 'factory/secret/#', false, 'all of it denied'],
  ['ANNA', 'factory/secret/+', false, 'covered by the deny'],
  ['ANNA', 'factory/+/public', true, 'factory/line/public is readable'],
  ['BOB', 'factory/secret/public', false, 'denied for authenticated, whatever bob has'],
  ['ANNA', '#', true, 'intersects factory/#'],
  ['ANNA', 'apps/+/status', false, 'apps/+/status is only key-1\'s'],
  ['ANNA', '+/+/status', true, 'factory/x/status via factory/#'],
  ['KEY', '+/+/status', true, 'key-1 reads apps/x/status'],
  ['KEY', 'apps/#', true, ''],
  ['ANON', '#', true, 'public/#'],
  ['ANON', 'factory/#', false, 'no anonymous read there'],
  ['ANON', 'public/inbox', true, 'read via public/#'],
  ['BOB', '$SYS/#', true, 'role:viewer reads $SYS/broker/#'],
  ['BOB', '$SYS/broker/+', true, ''],
  ['BOB', '$SYS/other/#', false, 'no overlap'],
  ['BOB', '#', true, 'via factory/# (# never reaches $SYS)'],
  ['KEY', 'scratch/#', true, 'scratch/+ authenticated'],
  ['ANNA', 'scratch/locked', false, 'denied to anna'],
  ['ANNA', 'scratch/+', true, 'other scratch topics'],
  ['BOB', 'nothing/#', false, 'no rule'],
  ['BOB', 'factory/#/x', false, 'an invalid filter'],
];

t.test('canPublish', async (t) => {
  for (const [who, topic, expected, why] of publish) t.equal(r.canPublish(topic, WHO[who]), expected, `${who} publish ${topic}: ${why}`);
});
t.test('canReceive', async (t) => {
  for (const [who, topic, expected, why] of receive) t.equal(r.canReceive(topic, WHO[who]), expected, `${who} receive ${topic}: ${why}`);
});
t.test('canSubscribe', async (t) => {
  for (const [who, filter, expected, why] of subscribe) t.equal(r.canSubscribe(filter, WHO[who]), expected, `${who} subscribe ${filter}: ${why}`);
});

t.test('a granted subscription receives some topic, a refused one none (on sample topics)', async (t) => {
  const samples = [...publish, ...receive].map((row) => row[1]).concat(['factory/line-1', 'factory/x/status', 'factory/line/public', 'apps/q/status', 'scratch/q', 'public/a/b']);
  for (const [who, filter, expected] of subscribe) {
    if (!expected) continue;
    // for each grant, one of the tables' topics is a topic it matches that the client may receive
    const witness = samples.some((topic) => r.canReceive(topic, WHO[who]) && topicMatches(filter, topic));
    t.ok(witness, `${who} ${filter}: a sample topic it may receive`);
  }
});

t.test('no rules: everything is refused, anonymous too', async (t) => {
  const none = compileTopicRules([]);
  t.equal(none.allowsAnonymous, false);
  t.equal(none.size, 0);
  for (const who of [ANON, ANNA]) {
    t.notOk(none.canPublish('a', who));
    t.notOk(none.canReceive('a', who));
    t.notOk(none.canSubscribe('#', who));
  }
  t.equal(compileTopicRules().size, 0, 'rules default to none');
});

t.test('allowsAnonymous: only an allow rule for anonymous', async (t) => {
  t.equal(compileTopicRules([{ pattern: '#', who: 'anonymous', access: 'deny' }]).allowsAnonymous, false, 'a deny rule lets nobody in');
  t.equal(compileTopicRules([{ pattern: 'a', who: 'anonymous', access: 'read' }]).allowsAnonymous, true);
  t.equal(compileTopicRules([{ pattern: 'a', who: 'authenticated', access: 'readwrite' }]).allowsAnonymous, false);
});

t.test('who matching', async (t) => {
  const w = compileTopicRules([
    { pattern: 'p', who: 'principal:tech-anna', access: 'write' },
    { pattern: 'r', who: 'role:technician', access: 'write' },
    { pattern: 'a', who: 'authenticated', access: 'write' },
    { pattern: 'n', who: 'anonymous', access: 'write' },
  ]);
  const rows: [RuleSubject, string, boolean, string][] = [
    [ANNA, 'p', true, 'principal exact'],
    [{ ...ANNA, principal: 'Tech-Anna' }, 'p', false, 'principal ids are case-sensitive'],
    [ANNA, 'r', true, 'role'],
    [BOB, 'r', false, 'other role'],
    [KEY, 'r', false, 'no role'],
    [KEY, 'a', true, 'any principal is authenticated'],
    [ANON, 'a', false, 'anonymous is not authenticated'],
    [ANON, 'n', true, 'anonymous'],
    [ANNA, 'n', false, 'authenticated is not anonymous'],
    [{ anonymous: true, principal: null, role: 'technician' }, 'r', false, 'anonymous never matches a role rule'],
  ];
  for (const [who, topic, expected, why] of rows) t.equal(w.canPublish(topic, who), expected, `${JSON.stringify(who)} ${topic}: ${why}`);
});

t.test('invalid rules are refused, naming the rule', async (t) => {
  const bad: [unknown[], string][] = [
    [[{ pattern: 'a/#/b', who: 'anonymous', access: 'read' }], '[0].pattern'],
    [[{ pattern: '', who: 'anonymous', access: 'read' }], '[0].pattern'],
    [[{ pattern: 'a', who: 'everyone', access: 'read' }], '[0].who'],
    [[{ pattern: 'a', who: 'principal:', access: 'read' }], '[0].who'],
    [[{ pattern: 'a', who: 'principal:a b', access: 'read' }], '[0].who'],
    [[{ pattern: 'a', who: 'group:x', access: 'read' }], '[0].who'],
    [[{ pattern: 'a', who: 'anonymous', access: 'read' }, { pattern: 'a', who: 'role:x', access: 'all' }], '[1].access'],
    [[null], '[0]'],
  ];
  for (const [list, path] of bad) {
    t.equal(checkTopicRules(list as TopicRule[])[0]?.path, path, `${JSON.stringify(list)}: ${path}`);
    t.throws(() => compileTopicRules(list as TopicRule[]), TypeError, `compile refuses ${path}`);
  }
  t.same(checkTopicRules(rules), [], 'the table rules are valid');
});
