// aedes' authorizeSubscribe: a SUBSCRIBE filter is granted when it can match anything this client may
// receive (./topic-decisions.ts), within limits.maxSubscriptionsPerClient; else SUBACK 0x80, and the
// refusal is audited with the decision's reason (OUT_OF_SCOPE, NOT_GRANTED, ...; TOPIC_DENIED
// outside the topic map). A shared subscription (`$share/G/F`, held by aedes under its marker,
// ./shared-subscriptions.ts) is decided and audited on its filter F, counted like any filter, and
// makes the client a member of its group; so does a restored persistent session's marker.
import type { Client, Subscription } from 'aedes';
import type { BrokerContext } from './context.js';
import { logDeny, logLimitOnce } from './session.js';
import { decideSubscription } from './topic-decisions.js';
import { DENY } from '../decide/reasons.js';
import { REFUSED_FILTER } from './upstream/prototype-safe-maps.js';
import { SHARED, parseMarker, type SharedFilter } from './shared-subscriptions.js';

export function authorizeSubscribe(ctx: BrokerContext, client: Client, sub: Subscription): Subscription | null {
  const session = ctx.sessions.get(client);
  if (!session) return null;
  const refused = (sub as { [REFUSED_FILTER]?: string })[REFUSED_FILTER];
  // From the wire, renamed (SHARED); else a restored session's marker (the wire's are refused before).
  const shared: SharedFilter | null = refused !== undefined ? null : ((sub as { [SHARED]?: SharedFilter })[SHARED] ?? parseMarker(sub.topic));
  const held = refused ?? sub.topic; // what aedes holds: the limit counts it, a persistent session stores it
  if (!session.subscriptions.has(held) && session.subscriptions.size >= ctx.config.limits.maxSubscriptionsPerClient) {
    logLimitOnce(ctx.log, client, session, 'subscriptions', { max: ctx.config.limits.maxSubscriptionsPerClient }, 'subscription limit reached: further subscriptions are refused');
    return null;
  }
  const filter = shared !== null ? shared.filter : held;
  const view = ctx.policy();
  const decision = refused !== undefined ? DENY.TOPIC_DENIED : decideSubscription(ctx.topicMap, ctx.rules, view.index, session, filter, view.now());
  if (!decision.allow) {
    ctx.denials.record(session.denials, { principal: session.principal, clientId: client.id, action: 'subscribe', topic: filter, thing: null, decision: 'deny', reason: decision.reason, snapshotVersion: view.index?.version ?? null });
    logDeny(ctx.log, client, session, filter, 'subscribe', decision.reason);
    return null;
  }
  session.subscriptions.add(held);
  session.grantedQos.set(held, sub.qos);
  if (shared !== null) ctx.shared.join(client, shared, sub as Subscription & { rap?: boolean; subscriptionIdentifier?: number });
  return sub;
}
