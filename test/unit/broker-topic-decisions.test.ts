// Topic decisions (src/broker/topic-decisions.ts), as tables: publish, subscribe and delivery for
// users, devices and anonymous clients on the example policy, with and without the topic map.
import t from 'tap';
import { join } from 'node:path';
import { compileTopicMap, compileTopicRules } from '../../src/topics/index.js';
import { decideDelivery, decidePublish, decideSubscription, type TopicSubject } from '../../src/broker/topic-decisions.js';
import { PrincipalKind } from '../../src/decide/policy-index.js';
import type { Trace } from '../../src/decide/decide.js';
import { fixtureIndex, ROOT, ISSUED_AT } from '../helpers/policy.js';

const index = fixtureIndex(join(ROOT, 'config', 'example-policy.yaml'));
const NOW = ISSUED_AT + 60_000;
const map = compileTopicMap();
const offMap = compileTopicMap({ enabled: false });
const rules = compileTopicRules([
  { pattern: 'apps/#', who: 'authenticated', access: 'readwrite' },
  { pattern: 'public/#', who: 'anonymous', access: 'read' },
]);

const subject = (principal: string | null, kind: PrincipalKind | -1, role: string | null = null): TopicSubject => ({ principal, kind, who: { anonymous: principal === null, principal, role } });
const ANNA = subject('tech-anna', PrincipalKind.User, 'technician');
const CARL = subject('viewer-carl', PrincipalKind.User, 'viewer');
const BOB = subject('op-bob', PrincipalKind.User, 'operator');
const OVEN = subject('oven-1', PrincipalKind.Device);
const MIXER = subject('mixer-1', PrincipalKind.Device);
const ANON = subject(null, -1);
const GHOST = subject('nobody-here', PrincipalKind.User);

t.test('publish: route, decision, audit action', async (t) => {
  const rows: [string, TopicSubject, string, string | null, string, string | null][] = [
    // who, topic, reason (null = allow), action, thing
    ['anna', ANNA, 'things/oven-1/commands/reboot', null, 'EXECUTE_THING_COMMAND', 'oven-1'],
    ['carl', CARL, 'things/oven-1/commands/reboot', 'NOT_GRANTED', 'EXECUTE_THING_COMMAND', 'oven-1'],
    ['anna, unserved thing', ANNA, 'things/oven-2/commands/reboot', 'GATEWAY_SCOPE', 'EXECUTE_THING_COMMAND', 'oven-2'],
    ['bob, other customer', BOB, 'things/chiller-1/commands/x', 'OUT_OF_SCOPE', 'EXECUTE_THING_COMMAND', 'chiller-1'],
    ['unknown principal', GHOST, 'things/oven-1/commands/reboot', 'UNKNOWN_PRINCIPAL', 'EXECUTE_THING_COMMAND', 'oven-1'],
    ['anonymous action', ANON, 'things/oven-1/commands/reboot', 'UNKNOWN_PRINCIPAL', 'EXECUTE_THING_COMMAND', 'oven-1'],
    ['own telemetry', OVEN, 'things/oven-1/telemetry/temp', null, 'publish', 'oven-1'],
    ['another device\'s telemetry', MIXER, 'things/oven-1/telemetry/temp', 'TOPIC_DENIED', 'publish', 'oven-1'],
    ['a user posing as the device', ANNA, 'things/oven-1/telemetry/temp', 'TOPIC_DENIED', 'publish', 'oven-1'],
    ['agent-only', ANNA, 'things/oven-1/cloud-status', 'TOPIC_DENIED', 'publish', 'oven-1'],
    ['outside, a rule allows', ANNA, 'apps/x', null, 'publish', null],
    ['outside, no rule', ANNA, 'elsewhere/x', 'TOPIC_DENIED', 'publish', null],
    ['$ topic', ANNA, '$SYS/x', 'TOPIC_DENIED', 'publish', null],
    ['bulk', ANNA, 'bulk/reboot', 'NOT_GRANTED', 'EXECUTE_BULK_UPDATE', null],
  ];
  for (const [name, s, topic, reason, action, thing] of rows) {
    const v = decidePublish(map, rules, index, s, topic, false, NOW);
    t.equal(v.decision.reason ?? null, reason, `${name}: ${reason ?? 'allow'}`);
    t.equal(v.decision.allow, reason === null, `${name}: allow is ${reason === null}`);
    t.equal(v.action, action, `${name}: audited as ${action}`);
    t.equal(v.thing, thing, `${name}: thing ${thing}`);
  }
  t.equal(decidePublish(map, rules, null, OVEN, 'things/oven-1/telemetry/temp', false, NOW).decision.reason, 'NO_SNAPSHOT', 'no snapshot: not even own telemetry');
  t.equal(decidePublish(map, rules, index, ANNA, 'things/oven-1/commands/reboot', false, NOW).audited, true, 'a command is audited when allowed');
  t.equal(decidePublish(map, rules, index, ANNA, 'things/oven-1/commands/reboot', true, NOW).forwards, true, 'forwards is passed through');
  t.equal(decidePublish(offMap, rules, index, ANNA, 'things/oven-1/commands/reboot', false, NOW).decision.reason, 'TOPIC_DENIED', 'map disabled: topic rules decide');
});

t.test('subscribe: a refusal carries the reason of the first read decide refused', async (t) => {
  const rows: [string, TopicSubject, string, string | null][] = [
    ['carl, authorized thing', CARL, 'things/chiller-1/telemetry/#', null],
    ['carl, thing outside his authorizations', CARL, 'things/oven-1/telemetry/#', 'OUT_OF_SCOPE'],
    ['carl, unserved thing', CARL, 'things/oven-2/telemetry/#', 'GATEWAY_SCOPE'],
    ['carl, unknown thing', CARL, 'things/ghost/telemetry/#', 'UNKNOWN_THING'],
    ['carl, any thing', CARL, 'things/+/telemetry/#', null],
    ['carl, cloud status only', CARL, 'things/oven-1/cloud-status', 'OUT_OF_SCOPE'],
    ['carl, an inbox only', CARL, 'things/chiller-1/commands/+', 'TOPIC_DENIED'],
    ['unknown principal', GHOST, 'things/oven-1/telemetry/#', 'UNKNOWN_PRINCIPAL'],
    ['anonymous', ANON, 'things/oven-1/telemetry/#', 'UNKNOWN_PRINCIPAL'],
    ['anonymous, public rule', ANON, 'public/#', null],
    ['outside, a rule allows', ANNA, 'apps/+', null],
    ['outside, no rule', ANNA, 'elsewhere/#', 'TOPIC_DENIED'],
    ['$ filter', ANNA, '$SYS/#', 'TOPIC_DENIED'],
    ['bulk requests', ANNA, 'bulk/#', 'TOPIC_DENIED'],
    ['device, own commands', OVEN, 'things/oven-1/commands/+', null],
    ['device, own telemetry', OVEN, 'things/oven-1/telemetry/#', null],
    ['device, another thing\'s commands', MIXER, 'things/oven-1/commands/+', 'TOPIC_DENIED'],
    ['device, another thing\'s telemetry', MIXER, 'things/oven-1/telemetry/#', 'TOPIC_DENIED'],
    ['device, everything: a rule lets it read apps/...', MIXER, '#', null],
    ['device, every thing', MIXER, 'things/#', 'TOPIC_DENIED'],
  ];
  for (const [name, s, filter, reason] of rows) {
    const d = decideSubscription(map, rules, index, s, filter, NOW);
    t.equal(d.reason ?? null, reason, `${name} (${filter}): ${reason ?? 'allow'}`);
  }
  t.equal(decideSubscription(map, rules, null, CARL, 'things/chiller-1/telemetry/#', NOW).reason, 'NO_SNAPSHOT', 'no snapshot: NO_SNAPSHOT');
  t.equal(decideSubscription(map, rules, null, OVEN, 'things/oven-1/commands/+', NOW).reason, 'NO_SNAPSHOT', 'no snapshot, device: NO_SNAPSHOT');
  t.equal(decideSubscription(offMap, rules, index, CARL, 'things/chiller-1/telemetry/#', NOW).reason, 'TOPIC_DENIED', 'map disabled: topic rules decide');
  t.equal(decideSubscription(offMap, rules, index, CARL, 'apps/#', NOW).allow, true, 'map disabled: a rule grants');
});

t.test('delivery: each message filtered per subscriber', async (t) => {
  const rows: [string, TopicSubject, string, string | null][] = [
    ['carl, authorized thing', CARL, 'things/chiller-1/telemetry/t', null],
    ['carl, other thing', CARL, 'things/oven-1/telemetry/t', 'OUT_OF_SCOPE'],
    ['device, own telemetry', OVEN, 'things/oven-1/telemetry/t', null],
    ['device, other telemetry', MIXER, 'things/oven-1/telemetry/t', 'TOPIC_DENIED'],
    ['device, own inbox', OVEN, 'things/oven-1/commands/reboot', null],
    ['user, an inbox', ANNA, 'things/oven-1/commands/reboot', 'TOPIC_DENIED'],
    ['bulk request', ANNA, 'bulk/reboot', 'TOPIC_DENIED'],
    ['outside, a rule', ANNA, 'apps/x', null],
    ['$ topic', ANNA, '$SYS/x', 'TOPIC_DENIED'],
  ];
  for (const [name, s, topic, reason] of rows) {
    const d = decideDelivery(rules, index, s, topic, map.routeDelivery(topic), NOW);
    t.equal(d.reason ?? null, reason, `${name} (${topic}): ${reason ?? 'allow'}`);
  }
});

t.test('a trace records the route, then decide\'s steps; the decision is the same without one', async (t) => {
  const steps: Trace = [];
  const d = decideSubscription(map, rules, index, CARL, 'things/oven-1/telemetry/#', NOW, steps);
  t.equal(d, decideSubscription(map, rules, index, CARL, 'things/oven-1/telemetry/#', NOW));
  t.match(steps[0], { rule: 'topic', passed: true, detail: /READ_THING topics of oven-1/ });
  t.match(steps.find((s) => s.rule === 'scope'), { passed: false, detail: /oven-1/ });
  // things/oven-1/telemetry itself (no level after telemetry) is outside the map: the rules are asked last
  t.match(steps.at(-1), { rule: 'topic rules', passed: false });
  const pub: Trace = [];
  const v = decidePublish(map, rules, index, MIXER, 'things/oven-1/telemetry/temp', false, NOW, pub);
  t.equal(v.decision.reason, 'TOPIC_DENIED');
  t.match(pub, [{ rule: 'topic', passed: false, detail: /only the device oven-1 publishes it; mixer-1 is not it/ }]);
});
