// aedes' authorizeForward: each delivered message, filtered per subscriber by scope (cached per client
// and policy epoch); an action is also decided again for its sender at each delivery (./actions.ts),
// a message queued for an offline session goes out at the QoS its subscription was granted, and an
// MQTT 5 client is not sent a message larger than its Maximum Packet Size (./flow-control.ts).
import type { AedesPublishPacket, Client } from 'aedes';
import { LRUCache } from 'lru-cache';
import type { ActionRef, DeliveryRoute } from '../topics/index.js';
import { versionOf } from './upstream/client-fields.js';
import type { PolicyView } from './broker.js';
import type { BrokerContext } from './context.js';
import { exceedsClientMaximum } from './flow-control.js';
import { logLimitOnce, refreshCaches, type Session } from './session.js';
import { decideDelivery } from './topic-decisions.js';

/** The route of a topic the topic rules decide (outside the map, `$` topics, the map disabled). */
export const RULES_ROUTE: DeliveryRoute = Object.freeze({ kind: 'outside' as const });

export function authorizeForward(ctx: BrokerContext, client: Client, packet: AedesPublishPacket): boolean {
  const session = ctx.sessions.get(client);
  if (!session) return false;
  const view = ctx.policy();
  refreshCaches(session, view.epoch);
  const topic = packet.topic;
  const route = cachedRoute(ctx, session, topic, view);
  // An action is decided again, for its sender, at every delivery (not cached: it depends on the message).
  const action = route !== false && (route.kind === 'read' || route.kind === 'inbox') && route.action !== null;
  let ok = route !== false && (!action || ctx.actions.deliverable(client, packet, (route as { thing: string }).thing, (route as { action: ActionRef }).action, view));
  // MQTT 5 Message Expiry Interval, on the time floor (an action's is its authority's, checked just above).
  const expiry = (packet as { messageExpiry?: number }).messageExpiry;
  if (ok && expiry !== undefined && !withRemainingExpiry(client, packet, expiry - view.now(), action)) {
    ok = false;
    ctx.counters.messagesExpired++;
  } else if (!ok) ctx.counters.deliveriesFiltered++;
  else {
    if (packet.qos > 0 && packet !== ctx.delivery.routedPacket) {
      // A message queued for an offline session was stored at its published QoS: send it at the
      // granted one ([MQTT-3.8.4-6]; live deliveries were already routed by ./delivery.ts).
      const granted = ctx.delivery.qosFor(client, topic);
      if (granted !== undefined && granted < packet.qos) packet.qos = Math.max(1, granted) as 1 | 2;
    }
    // [MQTT-3.1.2-24/25] Larger than the MQTT 5 client's Maximum Packet Size: dropped for this client
    // as if delivered (refused here, aedes and the in-flight window take it off its queue and window).
    if (exceedsClientMaximum(client, packet)) {
      ok = false;
      ctx.counters.deliveriesTooLarge++;
      logLimitOnce(ctx.log, client, session, 'maximumPacketSize', { max: (client as { maximumPacketSize?: number }).maximumPacketSize }, 'messages larger than the client\'s Maximum Packet Size are not sent to it (dropped)');
    } else ctx.counters.deliveries++;
  }
  ctx.delivery.forwarded(packet, ok);
  return ok;
}

/**
 * [MQTT-3.3.2-5] A message whose expiry has passed is not sent (false); [MQTT-3.3.2-6] one that is
 * goes to an MQTT 5 receiver with the interval that remains (a new properties object: aedes shares
 * it between every receiver's copy). MQTT 3.1.1 receivers get no properties (mqtt-packet writes none).
 * An action allowed an instant ago by its authority's clock is not dropped silently here.
 */
function withRemainingExpiry(client: Client, packet: AedesPublishPacket, remainingMs: number, action: boolean): boolean {
  if (remainingMs <= 0 && !action) return false;
  if (versionOf(client) === 5) {
    const p = packet as { properties?: Record<string, unknown> };
    p.properties = { ...p.properties, messageExpiryInterval: Math.max(1, Math.ceil(remainingMs / 1000)) };
  }
  return true;
}

/**
 * Whether the client's scope lets it receive the message: authorizeForward's check without its
 * effects (counters, an action's decision, which is its sender's and the same for every receiver).
 * A shared subscription picks a member with it (./shared-subscriptions.ts).
 */
export function mayReceive(ctx: BrokerContext, client: Client, packet: AedesPublishPacket): boolean {
  const session = ctx.sessions.get(client);
  if (!session) return false;
  const view = ctx.policy();
  refreshCaches(session, view.epoch);
  return cachedRoute(ctx, session, packet.topic, view) !== false;
}

/** The delivery route of the topic for this session, cached per client and policy epoch (refreshCaches first). */
function cachedRoute(ctx: BrokerContext, session: Session, topic: string, view: PolicyView): DeliveryRoute | false {
  if (topic === session.lastForwardTopic) return session.lastForward;
  let route = session.forwardCache?.get(topic);
  if (route === undefined) {
    route = forwardRoute(ctx, session, topic, view);
    session.forwardCache ??= new LRUCache({ max: ctx.config.cache.decisionsPerClient });
    session.forwardCache.set(topic, route);
  }
  session.lastForwardTopic = topic;
  session.lastForward = route;
  return route;
}

/** Whether this session may receive messages on the topic (an MQTT 5 response topic, ./publish.ts). */
export function mayRead(ctx: BrokerContext, session: Session, topic: string, view: PolicyView): boolean {
  return forwardRoute(ctx, session, topic, view) !== false;
}

/** The delivery route when this session may receive the topic (scope, inbox, rules), else false. */
function forwardRoute(ctx: BrokerContext, session: Session, topic: string, view: PolicyView): DeliveryRoute | false {
  const r = topic.startsWith('$') ? RULES_ROUTE : ctx.deliveryRoute(topic);
  return decideDelivery(ctx.rules, view.index, session, topic, r, view.now()).allow ? r : false;
}
