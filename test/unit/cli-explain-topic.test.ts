// `explain --topic` (src/cli/explain-topic.ts): the principal as a login makes it, or the reason its
// CONNECT is refused; the route in words and as JSON; the decision is the broker's.
import t from 'tap';
import { join } from 'node:path';
import { explainTopic, subjectOf } from '../../src/cli/explain-topic.js';
import { compileTopicMap, compileTopicRules } from '../../src/topics/index.js';
import { decidePublish } from '../../src/broker/topic-decisions.js';
import { fixtureIndex, ROOT, ISSUED_AT } from '../helpers/policy.js';

const EXAMPLE = join(ROOT, 'config', 'example-policy.yaml');
const index = fixtureIndex(EXAMPLE, (p) => {
  const bob = p.users!.find((u) => u.id === 'op-bob')!;
  (bob as { revoked?: boolean }).revoked = true;
});
const NOW = ISSUED_AT + 60_000;
const map = compileTopicMap();
const rules = compileTopicRules([{ pattern: 'apps/#', who: 'role:technician', access: 'readwrite' }]);

t.test('who: as a login makes the session, or why the CONNECT is refused', async (t) => {
  t.match(subjectOf(index, 'tech-anna'), { kind: 'user', subject: { principal: 'tech-anna', who: { anonymous: false, principal: 'tech-anna', role: 'technician' } } });
  t.match(subjectOf(index, 'oven-1'), { kind: 'device', subject: { principal: 'oven-1', who: { role: null } } });
  t.match(subjectOf(index, 'ghost'), { kind: 'unknown', refused: { reason: 'UNKNOWN_PRINCIPAL' }, step: { rule: 'connect', passed: false } });
  t.match(subjectOf(index, 'op-bob'), { kind: 'user', refused: { reason: 'REVOKED' } });
  t.match(subjectOf(index, 'oven-2'), { kind: 'device', refused: { reason: 'GATEWAY_SCOPE' }, step: { detail: /does not serve the device oven-2/ } });
});

t.test('publish: the route, what it needs, and the broker\'s decision', async (t) => {
  const anna = subjectOf(index, 'tech-anna');
  const e = explainTopic(map, rules, index, anna, 'things/oven-1/firmware/update', 'publish', NOW);
  t.match(e, { permission: 'UPDATE_FIRMWARE', thing: 'oven-1', route: { kind: 'action', permission: 'UPDATE_FIRMWARE', thing: 'oven-1', topicMap: true }, decision: { allow: true } });
  t.notOk('permissionId' in e.route, 'no internal ids in the JSON');
  t.equal(e.routeText, 'action: UPDATE_FIRMWARE on oven-1');
  if ('subject' in anna) t.equal(e.decision, decidePublish(map, rules, index, anna.subject, 'things/oven-1/firmware/update', false, NOW).decision, 'the broker\'s decision');
  t.match(explainTopic(map, rules, index, anna, 'apps/x', 'publish', NOW), { routeText: /outside the topic map/, permission: null, decision: { allow: true } });
  t.match(explainTopic(map, rules, index, subjectOf(index, 'ghost'), 'apps/x', 'publish', NOW), { decision: { reason: 'UNKNOWN_PRINCIPAL' } });
  const wild = explainTopic(map, rules, index, anna, 'things/+/commands/x', 'publish', NOW);
  t.match(wild, { decision: { reason: 'TOPIC_DENIED' }, steps: [{ rule: 'topic', detail: /protocol violation/ }] });
  t.match(explainTopic(compileTopicMap({ enabled: false }), rules, index, anna, 'things/oven-1/firmware/update', 'publish', NOW), { routeText: /topic map is disabled/, decision: { reason: 'TOPIC_DENIED' } });
});

t.test('subscribe: reads, inbox, outside; the reason of the first refused read', async (t) => {
  const carl = subjectOf(index, 'viewer-carl');
  const e = explainTopic(map, rules, index, carl, 'things/oven-1/#', 'subscribe', NOW);
  t.match(e, { permission: 'READ_THING', thing: 'oven-1', route: { kind: 'subscription', reads: [{ permission: 'READ_THING', thing: 'oven-1' }, { permission: 'READ_CLOUD_STATUS' }], inbox: [{ thing: 'oven-1' }], outside: true }, decision: { reason: 'OUT_OF_SCOPE' } });
  t.equal(e.routeText, 'read: READ_THING on oven-1; read: READ_CLOUD_STATUS on oven-1; inbox of oven-1 (its device only); topics outside the map (topic rules)');
  t.match(explainTopic(map, rules, index, subjectOf(index, 'oven-1'), 'things/oven-1/commands/+', 'subscribe', NOW), { permission: null, thing: 'oven-1', decision: { allow: true } });
  t.match(explainTopic(map, rules, index, carl, '$SYS/#', 'subscribe', NOW), { route: { kind: 'outside' }, decision: { reason: 'TOPIC_DENIED' } });
});
