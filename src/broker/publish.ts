// aedes' authorizePublish: a client's PUBLISH, decided. The topic's verdict (route, decision, audited)
// is cached per client and policy epoch; rate limits apply to allowed commands and firmware updates;
// a denied publish is dropped, audited and answered like any other [MQTT-3.3.5-2]; an allowed action
// gets its authority (./actions.ts); a message bound for the cloud is acknowledged once it is
// durable in the outbox (QoS 1). A will is decided here when it fires, for its owner.
import type { Client, PublishPacket } from 'aedes';
import { LRUCache } from 'lru-cache';
import { permissionId } from '../catalog/index.js';
import { DENY } from '../decide/reasons.js';
import { matchesValid } from '../topics/index.js';
import type { PolicyView } from './broker.js';
import type { BrokerContext } from './context.js';
import { DROP, REQUEST_ID, logDeny, refreshCaches, type Marked, type PublishVerdict, type Session } from './session.js';
import { decidePublish } from './topic-decisions.js';
import { isWill } from './upstream/delayed-will-marker.js';
import { setDeniedAckCode } from './upstream/puback-quota-code.js';
import { versionOf } from './upstream/client-fields.js';
import { MQTT5_NOT_AUTHORIZED, mqtt5CodeFor } from './reason-codes.js';
import { mayRead } from './forward.js';

/** Marks the error of a denied MQTT 5 publish: aedes emits it as clientError, but the client stays connected. */
export const PUBLISH_DENIED = Symbol('publishDenied');

/** One error per reason, made once: aedes only reads its message (the PUBACK's reason string). */
const DENIED_ERRORS = new Map<string, Error>();
function deniedError(reason: string): Error {
  let err = DENIED_ERRORS.get(reason);
  if (err === undefined) {
    err = Object.assign(new Error(reason), { [PUBLISH_DENIED]: true });
    DENIED_ERRORS.set(reason, err);
  }
  return err;
}

const COMMAND_PERMISSIONS = new Set([permissionId('EXECUTE_THING_COMMAND'), permissionId('SET_THING_PARAMETER')]);
const FIRMWARE_PERMISSION = permissionId('UPDATE_FIRMWARE');

export function authorizePublish(ctx: BrokerContext, client: Client | null, packet: PublishPacket & Marked, cb: (err?: Error | null) => void): void {
  ctx.counters.publishesIn++;
  // [MQTT-3.3.1-3]: an incoming PUBLISH's DUP flag is not propagated (aedes copies it to every delivery).
  packet.dup = false;
  const session = client ? ctx.sessions.get(client) : undefined;
  if (!client || !session) return cb(new Error('publish without an authenticated session'));
  const view = ctx.policy();
  refreshCaches(session, view.epoch);
  const topic = packet.topic;
  let verdict: PublishVerdict | undefined;
  if (topic === session.lastPublishTopic) verdict = session.lastPublishVerdict!;
  else {
    verdict = session.publishCache?.get(topic);
    if (verdict === undefined) {
      verdict = publishVerdict(ctx, session, topic, view);
      if (verdict.route.kind !== 'bulk') {
        session.publishCache ??= new LRUCache({ max: ctx.config.cache.decisionsPerClient });
        session.publishCache.set(topic, verdict);
      }
    }
    if (verdict.route.kind !== 'bulk') {
      session.lastPublishTopic = topic;
      session.lastPublishVerdict = verdict;
    }
  }
  let decision = verdict.decision;
  const route = verdict.route;
  // MQTT 5 request/response: whoever publishes a request with a response topic must be able to read
  // that topic, or the reply would go where the requester cannot see it (or somewhere it could not
  // subscribe to itself). The reply is then authorized like any publish of the responder.
  const responseTopic = packet.properties?.responseTopic;
  if (decision.allow && responseTopic !== undefined && !mayRead(ctx, session, responseTopic, view)) decision = DENY.RESPONSE_TOPIC_DENIED;
  if (decision.allow && route.kind === 'action') {
    if (COMMAND_PERMISSIONS.has(route.permissionId) && !ctx.commandLimiter.take(session.principal!, Date.now())) decision = DENY.RATE_LIMITED;
    else if (route.permissionId === FIRMWARE_PERMISSION && !ctx.firmwareLimiter.take(session.principal!, Date.now())) decision = DENY.RATE_LIMITED;
  }
  if (decision.allow && route.kind === 'bulk') {
    ctx.fanOutBulk(client, session, route.operation, packet, view);
    packet[DROP] = true;
    return cb(null);
  }
  // A will is decided here when it fires (aedes authorizes it on the owner's close, or after its MQTT 5
  // Will Delay Interval: ./upstream/delayed-will-marker.ts), for its owner.
  const will = isWill(client, packet);
  const source = session.credential === 'cloud' ? 'cloud' : undefined;
  if (!decision.allow) {
    ctx.counters.publishesDenied++;
    packet[DROP] = true;
    ctx.denials.record(session.denials, { principal: session.principal, clientId: client.id, action: verdict.action, topic, thing: verdict.thing, decision: 'deny', reason: decision.reason, snapshotVersion: view.index?.version ?? null, ...(will ? { will } : {}) });
    logDeny(ctx.log, client, session, topic, verdict.action, decision.reason);
    // MQTT 5: an error makes aedes answer a QoS 1/2 publish with PUBACK/PUBREC 0x87 Not authorized (0x97
    // Quota exceeded for a rate limit), the error's message (our reason code: no topic, principal or policy data) as
    // reason string, and keep the client connected. 3.1.1 has no way to say it (aedes would close the
    // connection): the publish is acknowledged and dropped [MQTT-3.3.5-2]. A will has nobody to tell.
    if (versionOf(client) === 5 && !will) {
      // 0x87 is aedes' code; a rate limit gets 0x97 Quota exceeded (./reason-codes.ts, ./upstream/puback-quota-code.ts).
      const code = mqtt5CodeFor(decision.reason);
      if (code !== MQTT5_NOT_AUTHORIZED && packet.qos > 0 && packet.messageId !== undefined) setDeniedAckCode(client.conn, packet.messageId, code);
      return cb(deniedError(decision.reason));
    }
    return cb(null);
  }
  let retainIgnored = false;
  if (route.kind === 'action') {
    retainIgnored = ctx.actions.authorize(packet, session.principal!, client.id, route, source ?? 'local', packet[REQUEST_ID] ?? null);
  }
  // [SPEC 5] A QoS 1 message bound for the cloud is acknowledged only once it is durable in the
  // outbox: aedes writes the PUBACK after this callback. (QoS 2 waits too: aedes sends PUBREC once
  // the forward subscription's handler has queued it; see the agent. A request from the cloud is
  // not sent back up here.)
  if (verdict.forwards && packet.qos < 2 && session.credential !== 'cloud' && ctx.forwarding !== null) {
    const queued = ctx.forwarding.enqueue(topic, packet.payload as Buffer, packet.qos > 0 ? 1 : 0, packet.retain);
    if (packet.qos === 1) {
      auditAllowed(ctx, client, session, verdict, topic, view, retainIgnored, will);
      queued.then(
        () => cb(null),
        (err: Error) => {
          ctx.log.error({ topic, err: err.message }, 'upward message not queued');
          cb(null);
        },
      );
      return;
    }
    queued.catch((err: Error) => ctx.log.error({ topic, err: err.message }, 'upward message not queued'));
  }
  auditAllowed(ctx, client, session, verdict, topic, view, retainIgnored, will);
  cb(null);
}

function auditAllowed(ctx: BrokerContext, client: Client, session: Session, verdict: PublishVerdict, topic: string, view: PolicyView, retainIgnored: boolean, will: boolean): void {
  if (verdict.audited || retainIgnored || (will && verdict.route.kind === 'action')) {
    ctx.audit.record({
      principal: session.principal,
      clientId: client.id,
      action: verdict.action,
      topic,
      thing: verdict.thing,
      decision: 'allow',
      snapshotVersion: view.index?.version ?? null,
      ...(retainIgnored ? { retainIgnored } : {}),
      ...(will ? { will } : {}),
    });
  }
}

function publishVerdict(ctx: BrokerContext, session: Session, topic: string, view: PolicyView): PublishVerdict {
  const forwards = ctx.forwarding !== null && ctx.forwarding.filters.some((f) => matchesValid(f, topic));
  return decidePublish(ctx.topicMap, ctx.rules, view.index, session, topic, forwards, view.now());
}
