// What an MQTT topic means for one client: topic -> route (topic map, topic rules) -> (permission,
// thing) -> decision, for a publish, a subscription and a delivery. Pure: the topic map, the topic
// rules, the policy index, the client (who it is) and the time are passed in; no I/O, no clock, no
// cache. The broker calls it on a cache miss (it keeps one answer per topic and client, see
// ./broker.ts) and `edgewarden explain --topic` calls it to answer exactly as the broker does.
//
// With a `trace`, each step is recorded (the route, then decide's own steps); the broker passes none
// and nothing beyond the answer is allocated.
//
// Reasons, beyond decide's:
// - TOPIC_DENIED: a topic outside the map (or `$`, or the map disabled) that the topic rules refuse;
//   a device's own topics (telemetry, events, command replies) published or read by anyone but that
//   device; a topic only the agent publishes (cloud status, bulk fan-out); an inbox (commands, ...)
//   read by anyone but its device; a bulk request read by anyone.
// - A refused subscription whose filter matches map topics some permission reads (READ_THING,
//   READ_CLOUD_STATUS) carries the reason `decide` gave for the first of those reads (READ_THING
//   before READ_CLOUD_STATUS): NOT_GRANTED, OUT_OF_SCOPE, ... A device reading another thing's
//   topics is TOPIC_DENIED, as its publishing them is.
import type { Trace } from '../decide/decide.js';
import { decideById } from '../decide/decide.js';
import { ALLOW, DENY, type Decision } from '../decide/reasons.js';
import { PrincipalKind, type PolicyIndex } from '../decide/policy-index.js';
import type { DeliveryRoute, RuleSubject, SubscriptionRoute, TopicMap, TopicRules } from '../topics/index.js';
import type { PublishVerdict } from './session.js';

/** Who the client is, as the broker's session holds it (a Session is one). */
export interface TopicSubject {
  /** Principal id; null for an anonymous client. */
  readonly principal: string | null;
  /** Its kind, or -1 for an anonymous client. */
  readonly kind: PrincipalKind | -1;
  /** What topic rules are checked for. */
  readonly who: RuleSubject;
}

/** Allowed publishes of these actions are audited (SPEC section 6); every deny is audited. */
export const AUDITED_ALLOWS: ReadonlySet<string> = new Set(['EXECUTE_THING_COMMAND', 'SET_THING_PARAMETER', 'UPDATE_FIRMWARE', 'REGISTER_THING', 'EXECUTE_BULK_UPDATE']);

/** decide for the client: NO_SNAPSHOT without an index, UNKNOWN_PRINCIPAL for an anonymous client. */
export function decideForSubject(index: PolicyIndex | null, s: TopicSubject, pid: number, thing: string | undefined, now: number, trace?: Trace): Decision {
  if (!index) {
    trace?.push({ rule: 'snapshot', passed: false, detail: 'no valid snapshot is held' });
    return DENY.NO_SNAPSHOT;
  }
  if (s.principal === null) {
    trace?.push({ rule: 'principal', passed: false, detail: 'an anonymous client holds no permission' });
    return DENY.UNKNOWN_PRINCIPAL;
  }
  return decideById(index, s.principal, index.canonical[pid]!, thing, now, trace);
}

/**
 * A PUBLISH on `topic`: its route, the decision, and what the audit records. `forwards`: the topic
 * matches the cloud link's forward filters (the broker's to know). Rate limits are the broker's.
 */
export function decidePublish(map: TopicMap, rules: TopicRules, index: PolicyIndex | null, s: TopicSubject, topic: string, forwards: boolean, now: number, trace?: Trace): PublishVerdict {
  const route = map.routePublish(topic);
  const verdict = (decision: Decision, action: string, thing: string | null): PublishVerdict => ({ route, decision, action, thing, audited: AUDITED_ALLOWS.has(action), forwards });
  switch (route.kind) {
    case 'action':
      trace?.push({ rule: 'topic', passed: true, detail: `${topic} is an action: ${route.permission} on ${route.thing}` });
      return verdict(decideForSubject(index, s, route.permissionId, route.thing, now, trace), route.permission, route.thing);
    case 'bulk':
      trace?.push({ rule: 'topic', passed: true, detail: `${topic} is a bulk request (operation ${route.operation}): ${route.permission}, then fanned out to each thing in scope` });
      return verdict(decideForSubject(index, s, route.permissionId, undefined, now, trace), route.permission, null);
    case 'device-own': {
      // A device publishes its own telemetry, events and command replies — nothing else.
      const own = s.kind === PrincipalKind.Device && s.principal === route.thing;
      let decision: Decision;
      if (!own) decision = DENY.TOPIC_DENIED;
      else if (!index) decision = DENY.NO_SNAPSHOT;
      else decision = index.pRevoked[index.ids.get(route.thing) ?? -1] !== 0 ? DENY.REVOKED : ALLOW;
      if (trace) {
        const detail = `${topic} is ${route.thing}'s own topic: only the device ${route.thing} publishes it`;
        trace.push({ rule: 'topic', passed: own, detail: own ? detail : `${detail}; ${describeSubject(s)} is not it` });
        if (own && !index) trace.push({ rule: 'snapshot', passed: false, detail: 'no valid snapshot is held' });
        else if (own) trace.push({ rule: 'revocation', passed: decision.allow, detail: decision.allow ? `${route.thing} is not revoked` : `${route.thing} is revoked in snapshot version ${index!.version}` });
      }
      return verdict(decision, 'publish', route.thing);
    }
    case 'agent-only':
      trace?.push({ rule: 'topic', passed: false, detail: `${topic} is published by the agent only (cloud status, bulk fan-out): no client publishes it` });
      return verdict(DENY.TOPIC_DENIED, 'publish', route.thing);
    default: {
      const ok = !topic.startsWith('$') && rules.canPublish(topic, s.who);
      trace?.push({ rule: 'topic rules', passed: ok, detail: `${outsideWhy(map, topic)}: ${ok ? 'a topic rule lets' : 'no topic rule lets'} ${describeSubject(s)} publish it${topic.startsWith('$') ? ' ($ topics are never published by clients)' : ''}` });
      return verdict(ok ? ALLOW : DENY.TOPIC_DENIED, 'publish', null);
    }
  }
}

/**
 * A SUBSCRIBE to `filter`: allowed when it can match a topic the client may receive (a read it may
 * hold, for that thing or, with a wildcard thing, for some thing; its own topics and inbox for a
 * device; a topic outside the map a topic rule lets it read). Else the reason: see the top of this file.
 */
export function decideSubscription(map: TopicMap, rules: TopicRules, index: PolicyIndex | null, s: TopicSubject, filter: string, now: number, trace?: Trace): Decision {
  if (filter.startsWith('$')) {
    const ok = rules.canSubscribe(filter, s.who);
    trace?.push({ rule: 'topic rules', passed: ok, detail: `${filter} is a $ filter, outside the map: ${ok ? 'a topic rule lets' : 'no topic rule lets'} ${describeSubject(s)} read it` });
    return ok ? ALLOW : DENY.TOPIC_DENIED;
  }
  const r = map.routeSubscription(filter);
  trace?.push({ rule: 'topic', passed: true, detail: describeSubscriptionRoute(filter, r) });
  let denied: Decision | null = null;
  if (s.kind === PrincipalKind.Device) {
    for (const read of r.reads) {
      const own = index !== null && read.ownerMayReceive && read.thing === s.principal;
      trace?.push({ rule: 'own topics', passed: own, detail: own ? `${s.principal} reads its own ${read.permission} topics` : `a device reads only its own topics (${read.permission}${read.thing === null ? ' of any thing' : ` of ${read.thing}`})` });
      if (own) return ALLOW;
      denied ??= index === null ? DENY.NO_SNAPSHOT : DENY.TOPIC_DENIED;
    }
    for (const inbox of r.inbox) {
      const own = index !== null && inbox.thing === s.principal;
      trace?.push({ rule: 'inbox', passed: own, detail: own ? `${s.principal} reads its own inbox` : `a device reads only its own inbox (${inbox.thing === null ? 'any thing\'s' : `${inbox.thing}'s`} here)` });
      if (own) return ALLOW;
      denied ??= index === null ? DENY.NO_SNAPSHOT : DENY.TOPIC_DENIED;
    }
  } else {
    for (const read of r.reads) {
      trace?.push({ rule: 'read', passed: true, detail: `the filter's topics of ${read.thing === null ? 'any thing (wildcard thing level)' : read.thing} need ${read.permission}` });
      const d = decideForSubject(index, s, read.permissionId, read.thing ?? undefined, now, trace);
      if (d.allow) return ALLOW;
      denied ??= d;
    }
    if (r.inbox.length > 0) trace?.push({ rule: 'inbox', passed: false, detail: 'commands, parameter sets, firmware and other actions are delivered to their device only' });
  }
  if (r.outside) {
    const ok = rules.canSubscribe(filter, s.who);
    trace?.push({ rule: 'topic rules', passed: ok, detail: `${filter} can match topics outside the map${map.enabled ? '' : ' (the topic map is disabled)'}: ${ok ? 'a topic rule lets' : 'no topic rule lets'} ${describeSubject(s)} read one` });
    if (ok) return ALLOW;
  }
  return denied ?? DENY.TOPIC_DENIED;
}

/**
 * A message on `topic`, whose delivery route is `route` (the broker caches routes per topic), to
 * one subscriber. An action is also decided again for its sender at each delivery: the broker's
 * (./actions.ts), not here.
 */
export function decideDelivery(rules: TopicRules, index: PolicyIndex | null, s: TopicSubject, topic: string, route: DeliveryRoute, now: number, trace?: Trace): Decision {
  if (topic.startsWith('$') || route.kind === 'outside') {
    const ok = rules.canReceive(topic, s.who);
    trace?.push({ rule: 'topic rules', passed: ok, detail: `${topic} is outside the map: ${ok ? 'a topic rule lets' : 'no topic rule lets'} ${describeSubject(s)} read it` });
    return ok ? ALLOW : DENY.TOPIC_DENIED;
  }
  switch (route.kind) {
    case 'read': {
      if (s.kind === PrincipalKind.Device) {
        const own = route.ownerMayReceive && s.principal === route.thing;
        trace?.push({ rule: 'own topics', passed: own, detail: own ? `${route.thing} reads its own topics` : `a device reads only its own topics; ${topic} is ${route.thing}'s ${route.permission}` });
        return own ? ALLOW : DENY.TOPIC_DENIED;
      }
      trace?.push({ rule: 'topic', passed: true, detail: `${topic} is read with ${route.permission} on ${route.thing}` });
      return decideForSubject(index, s, route.permissionId, route.thing, now, trace);
    }
    case 'inbox': {
      const own = s.kind === PrincipalKind.Device && s.principal === route.thing;
      trace?.push({ rule: 'inbox', passed: own, detail: `${topic} is ${route.thing}'s inbox: delivered to the device ${route.thing} only` });
      return own ? ALLOW : DENY.TOPIC_DENIED;
    }
    default:
      trace?.push({ rule: 'topic', passed: false, detail: `${topic} is a bulk request: delivered to nobody (its fan-out reaches each thing's inbox)` });
      return DENY.TOPIC_DENIED;
  }
}

function describeSubject(s: TopicSubject): string {
  return s.principal === null ? 'an anonymous client' : s.principal;
}

function outsideWhy(map: TopicMap, topic: string): string {
  if (!map.enabled) return `${topic}: the topic map is disabled (topics.thingMap false), topic rules decide`;
  if (topic.startsWith('$')) return `${topic} is a $ topic, outside the map`;
  return `${topic} is outside the topic map`;
}

function describeSubscriptionRoute(filter: string, r: SubscriptionRoute): string {
  const parts: string[] = [];
  for (const read of r.reads) parts.push(`${read.permission} topics${read.thing === null ? ' of any thing' : ` of ${read.thing}`}`);
  for (const inbox of r.inbox) parts.push(`the inbox${inbox.thing === null ? ' of any thing' : ` of ${inbox.thing}`}`);
  if (r.outside) parts.push('topics outside the map');
  return parts.length === 0 ? `${filter} matches no topic a client may receive` : `${filter} can match ${parts.join(', ')}`;
}
