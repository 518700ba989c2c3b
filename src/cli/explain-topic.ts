// `edgewarden explain --topic T`: what the broker decides for a PUBLISH on T, or a SUBSCRIBE to the
// filter T, by one principal. The same code as the broker (src/broker/topic-decisions.ts), with the
// agent's topic map and topic rules; the principal's kind and role come from the snapshot, as
// authentication gives them to a session. A principal the broker would not let connect gets the
// reason its CONNECT is refused.
import type { Trace, TraceStep } from '../decide/decide.js';
import { DENY, type Decision } from '../decide/reasons.js';
import { PrincipalKind, PRINCIPAL_KIND_NAMES, recordOf, type PolicyIndex } from '../decide/policy-index.js';
import type { PublishRoute, SubscriptionRoute, TopicMap, TopicRules } from '../topics/index.js';
import { decidePublish, decideSubscription, type TopicSubject } from '../broker/topic-decisions.js';
import { parseShared } from '../broker/shared-subscriptions.js';

export type Direction = 'publish' | 'subscribe';

export interface TopicExplanation {
  readonly direction: Direction;
  readonly topic: string;
  /** The route as JSON: the map's answer for the topic (permission ids left out). */
  readonly route: Record<string, unknown>;
  /** The route in words. */
  readonly routeText: string;
  /** The permission and thing the route needs (subscribe: of its first read), or null. */
  readonly permission: string | null;
  readonly thing: string | null;
  readonly decision: Decision;
  readonly steps: Trace;
}

/** The principal as a session would hold it after a password or token login, or the reason its CONNECT is refused. */
export function subjectOf(index: PolicyIndex, principal: string): { subject: TopicSubject; kind: string } | { refused: Decision; step: TraceStep; kind: string } {
  const n = index.ids.get(principal);
  const p = n === undefined ? undefined : recordOf(index, n);
  if (n === undefined || !p) {
    return { refused: DENY.UNKNOWN_PRINCIPAL, kind: 'unknown', step: { rule: 'connect', passed: false, detail: `${principal} is not in snapshot version ${index.version}: the broker refuses its CONNECT (UNKNOWN_PRINCIPAL)` } };
  }
  const kind = PRINCIPAL_KIND_NAMES[p.kind];
  if (p.revoked) return { refused: DENY.REVOKED, kind, step: { rule: 'connect', passed: false, detail: `${principal} is revoked in snapshot version ${index.version}: the broker refuses its CONNECT (REVOKED)` } };
  if (p.kind === PrincipalKind.Device && index.thingServed[n] !== 1) {
    return { refused: DENY.GATEWAY_SCOPE, kind, step: { rule: 'connect', passed: false, detail: `standard gateway ${index.gatewayId} does not serve the device ${principal}: the broker refuses its CONNECT (GATEWAY_SCOPE)` } };
  }
  const role = p.role ?? null;
  return { subject: { principal, kind: p.kind, who: { anonymous: false, principal, role } }, kind };
}

export function explainTopic(
  map: TopicMap,
  rules: TopicRules,
  index: PolicyIndex,
  who: { subject: TopicSubject } | { refused: Decision; step: TraceStep },
  topic: string,
  direction: Direction,
  now: number,
): TopicExplanation {
  const steps: Trace = [];
  if (direction === 'publish') {
    const route = map.routePublish(topic);
    const { permission, thing } = publishNeeds(route);
    if (/[+#]/.test(topic)) steps.push({ rule: 'topic', passed: false, detail: 'a + or # in a PUBLISH topic is a protocol violation: the broker closes the connection (TOPIC_DENIED)' });
    let decision: Decision;
    if ('refused' in who) {
      steps.push(who.step);
      decision = who.refused;
    } else decision = decidePublish(map, rules, index, who.subject, topic, false, now, steps).decision;
    return { direction, topic, route: publishRouteJson(route, map), routeText: publishRouteText(route, map), permission, thing, decision, steps };
  }
  // `$share/{ShareName}/{filter}` is decided on its filter (src/broker/shared-subscriptions.ts).
  const shared = parseShared(topic);
  if (shared === 'malformed') steps.push({ rule: 'shared subscription', passed: false, detail: 'a malformed $share filter (empty ShareName, + or # in it, or no filter after it) is a protocol error: the broker closes the connection' });
  else if (shared !== null) steps.push({ rule: 'shared subscription', passed: true, detail: `$share/${shared.share}: decided on its filter ${shared.filter}; each message then goes to one member of the group, one that may receive it` });
  const filter = shared !== null && shared !== 'malformed' ? shared.filter : topic;
  const route = map.routeSubscription(filter);
  const first = route.reads[0];
  const permission = first?.permission ?? null;
  const thing = first ? first.thing : (route.inbox[0]?.thing ?? null);
  let decision: Decision;
  if ('refused' in who) {
    steps.push(who.step);
    decision = who.refused;
  } else decision = shared === 'malformed' ? DENY.TOPIC_DENIED : decideSubscription(map, rules, index, who.subject, filter, now, steps);
  return { direction, topic, route: subscriptionRouteJson(route, map, filter), routeText: subscriptionRouteText(route, map, filter), permission, thing, decision, steps };
}

function publishNeeds(route: PublishRoute): { permission: string | null; thing: string | null } {
  switch (route.kind) {
    case 'action':
      return { permission: route.permission, thing: route.thing };
    case 'bulk':
      return { permission: route.permission, thing: null };
    case 'device-own':
    case 'agent-only':
      return { permission: null, thing: route.thing };
    default:
      return { permission: null, thing: null };
  }
}

function publishRouteJson(route: PublishRoute, map: TopicMap): Record<string, unknown> {
  const { permissionId: _id, ...rest } = route as PublishRoute & { permissionId?: number };
  return { ...rest, topicMap: map.enabled };
}

function publishRouteText(route: PublishRoute, map: TopicMap): string {
  switch (route.kind) {
    case 'action':
      return `action: ${route.permission} on ${route.thing}${route.name === null ? '' : ` (${route.name})`}`;
    case 'bulk':
      return `bulk request (operation ${route.operation}): ${route.permission}, fanned out to each thing in scope`;
    case 'device-own':
      return `device-own: a topic of ${route.thing}'s own, published by the device ${route.thing} only`;
    case 'agent-only':
      return `agent-only: published by the agent only, for ${route.thing}`;
    default:
      return map.enabled ? 'outside the topic map: the topic rules decide' : 'the topic map is disabled (topics.thingMap false): the topic rules decide';
  }
}

function subscriptionRouteJson(route: SubscriptionRoute, map: TopicMap, filter: string): Record<string, unknown> {
  return {
    kind: filter.startsWith('$') ? 'outside' : 'subscription',
    reads: route.reads.map((r) => ({ permission: r.permission, thing: r.thing, ownerMayReceive: r.ownerMayReceive })),
    inbox: route.inbox.map((i) => ({ thing: i.thing })),
    outside: filter.startsWith('$') || route.outside,
    topicMap: map.enabled,
  };
}

function subscriptionRouteText(route: SubscriptionRoute, map: TopicMap, filter: string): string {
  if (filter.startsWith('$')) return 'a $ filter, outside the topic map: the topic rules decide';
  const parts: string[] = [];
  for (const r of route.reads) parts.push(`read: ${r.permission} on ${r.thing ?? 'any thing'}`);
  for (const i of route.inbox) parts.push(`inbox of ${i.thing ?? 'any thing'} (its device only)`);
  if (route.outside) parts.push(map.enabled ? 'topics outside the map (topic rules)' : 'the topic map is disabled: the topic rules decide');
  return parts.length === 0 ? 'matches no topic a client may receive' : parts.join('; ');
}
