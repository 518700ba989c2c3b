// A client's connection ends in an error (aedes' clientError and connectionError): what it was, said
// once per connection. Before a CONNECT was accepted it is a refusal (the protocol level, the CONNECT
// never coming, bytes that are not MQTT); after, it is why the client was disconnected (keepalive, a
// limit, a protocol violation — some of which are audited — or the connection lost).
import type { Client } from 'aedes';
import type { Logger } from 'pino';
import type { AuditRecord } from '../audit/audit-log.js';
import type { ConnectionEvents } from './connections.js';
import { EMPTY_ID, LEVEL, SENT, remoteOf, type ClientMarks, type Session } from './session.js';
import { PROPERTY_NOT_UTF8, TOPIC_NOT_UTF8 } from './upstream/utf8-topic-validation.js';
import { PROPERTY_INVALID } from './upstream/mqtt5-property-validation.js';
import { isInboundWindowExceeded } from './upstream/inbound-qos2-window.js';
import { CONNACK_IDENTIFIER_REJECTED, CONNACK_UNSUPPORTED_LEVEL, isConnectTimeout, isKeepaliveTimeout, isQueueLimit, isWildcardInPublish, type AedesClientError } from './upstream/client-error-texts.js';
import { PUBLISH_DENIED } from './publish.js';
import { MALFORMED_SHARE } from './shared-subscriptions.js';

export interface ClientErrorDeps {
  readonly log: Logger;
  readonly events: ConnectionEvents;
  audit(r: AuditRecord): void;
  snapshotVersion(): number | null;
  session(client: Client): Session | undefined;
  /** limits.maxInflightPerClient */
  readonly maxInflight: number;
}

const reported = new WeakSet<Client>();

/** aedes' texts and codes told apart here: ./upstream/client-error-texts.ts. */
export function onClientError(d: ClientErrorDeps, client: Client, err: AedesClientError): void {
  // A denied MQTT 5 publish, answered PUBACK/PUBREC 0x87 (./publish.ts): logged there, and not an ending.
  if ((err as { [PUBLISH_DENIED]?: boolean })[PUBLISH_DENIED] === true) return;
  if (reported.has(client)) return;
  reported.add(client);
  const errorCode = err.errorCode;
  // aedes 2.0.0-beta.1 refuses [MQTT-3.1.3-8] itself (CONNACK 0x02, connect.js) before authenticate runs:
  // the refusal is ours to log and audit. Test: test/integration/connection-events.test.ts.
  if (errorCode === CONNACK_IDENTIFIER_REJECTED && (client as ClientMarks)[EMPTY_ID] === true && d.session(client) === undefined) {
    d.events.refuse(client, 'EMPTY_CLIENT_ID_WITH_PERSISTENT_SESSION', (client as ClientMarks)[SENT]?.username ?? null, 2);
    return;
  }
  if (errorCode !== undefined && errorCode >= 2) return; // a CONNACK refusal of authenticate: refused and logged there
  if (errorCode === CONNACK_UNSUPPORTED_LEVEL) {
    // [MQTT-3.1.2-2]: aedes answered CONNACK 0x01 (unacceptable protocol level) and closes (./upstream/protocol-level-connack.ts).
    d.events.refuse(client, 'UNSUPPORTED_PROTOCOL_LEVEL', null, 1);
    return;
  }
  const connected = (client as { connected?: boolean }).connected === true || d.session(client) !== undefined;
  if (!connected) {
    if (err.code !== undefined) {
      d.log.debug({ remote: remoteOf(client), err: err.message }, 'connection lost before CONNECT');
      return;
    }
    if (isConnectTimeout(err)) d.events.refuse(client, 'CONNECT_TIMEOUT', null);
    else d.events.refuse(client, 'PROTOCOL_ERROR', null, undefined, { err: err.message.slice(0, 200) });
    return;
  }
  const session = d.session(client);
  const principal = session?.principal ?? null;
  const protocolViolation = (action: string, msg: string) => {
    d.audit({ principal, clientId: client.id, action, decision: 'deny', reason: 'TOPIC_DENIED', snapshotVersion: d.snapshotVersion(), remote: remoteOf(client) });
    d.events.ending(client, 'protocol error', { err: msg });
    d.log.info({ principal, clientId: client.id, action }, `connection closed: ${msg} (protocol violation)`);
  };
  if (isWildcardInPublish(err)) {
    // [MQTT-3.3.2-2] [MQTT-4.8.0-1]: a wildcard in a PUBLISH topic is a protocol violation, and the
    // connection is closed; unlike a publish the policy denies, which is dropped and answered.
    protocolViolation('publish', 'a wildcard in a PUBLISH topic');
    return;
  }
  if (err.message.startsWith(TOPIC_NOT_UTF8)) {
    // [MQTT-1.5.3-1] [MQTT-1.5.3-2]: a topic that is not well-formed UTF-8, or holds U+0000 (./upstream/utf8-topic-validation.ts).
    protocolViolation(err.cmd ?? 'publish', 'a topic that is not well-formed UTF-8 or holds U+0000');
    return;
  }
  if (err.message.startsWith(PROPERTY_NOT_UTF8)) {
    // [MQTT-1.5.4-1] [MQTT-1.5.4-2]: an MQTT 5 property string (user property, content type, response
    // topic, reason string, ...) that is not well-formed UTF-8, or holds U+0000 (./upstream/utf8-topic-validation.ts).
    // Audited like a bad topic (the same protocol violation, reason code TOPIC_DENIED); said as what it is.
    protocolViolation(err.cmd ?? 'publish', 'a property string that is not well-formed UTF-8 or holds U+0000');
    return;
  }
  if (err.message.startsWith(PROPERTY_INVALID)) {
    // An MQTT 5 property given twice, or one the packet may not carry (./upstream/mqtt5-property-validation.ts): a malformed packet.
    d.events.ending(client, 'protocol error', { err: err.message.slice(0, 200) });
    d.log.info({ principal, clientId: client.id, err: err.message.slice(0, 200) }, 'connection closed: an invalid MQTT 5 property (protocol violation)');
    return;
  }
  if (err.message === MALFORMED_SHARE) {
    // [MQTT-4.8.2-1] [MQTT-4.8.2-2] [MQTT-3.8.3-4]: a Protocol Error; the connection is closed (./shared-subscriptions.ts).
    protocolViolation('subscribe', 'a malformed shared subscription');
    return;
  }
  if (isKeepaliveTimeout(err)) {
    d.events.ending(client, 'keepalive');
    return;
  }
  if (isInboundWindowExceeded(err)) {
    d.events.ending(client, 'limit', { limit: 'limits.maxInflightPerClient' });
    d.log.warn({ principal, clientId: client.id, max: d.maxInflight }, 'connection closed: too many QoS 2 messages awaiting PUBREL (limits.maxInflightPerClient)');
    return;
  }
  if (isQueueLimit(err)) {
    d.events.ending(client, 'limit', { limit: 'aedes queue' });
    return;
  }
  if (err.code !== undefined) {
    d.events.ending(client, 'connection lost', { err: err.code });
    return;
  }
  d.events.ending(client, 'protocol error', { err: err.message.slice(0, 200) });
  d.log.debug({ clientId: client.id, protocolLevel: (client as ClientMarks)[LEVEL], err: err.message }, 'client error');
}
