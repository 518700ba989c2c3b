// What ../delivery.ts and ../inflight-window.ts reach of an aedes 2.0.0-beta.1 client to deliver
// messages, and the three upstream defects that make them reach it. The code stays in ../delivery.ts
// (the broker's hot path); this module documents the reaches and declares their shape
// (DeliveryClient), and its shape test checks them on a real client.
//
// 1. The granted QoS. [MQTT-3.8.4-6] [MQTT-3.3.5-1]: a message goes to a client at min(its QoS, the
//    highest QoS granted to the client's subscriptions that match it). aedes uses whichever matching
//    subscription it serves first (the others are deduplicated away) and downgrades only by a
//    subscription whose filter IS the topic (client.js deliverQoS: `that.subscriptions[packet.topic]`):
//    a QoS 1 `a/#` received QoS 2 messages, and `a/#` QoS 0 next to `a/+` QoS 2 delivered at QoS 0.
//    Upstream: moscajs/aedes#208 ("Aedes publishes with QoS 2 when the client is subscribed with
//    QoS 1", closed; still so in 2.0.0-beta.1 for wildcard filters). ../delivery.ts wraps the
//    client's `deliver0` and `deliverQoS` (instance properties, looked up when used: aedes'
//    subscription handlers capture them when the client subscribes, after the wrap) and raises the
//    literal subscription's QoS it downgrades by. The upstream fix (subscribe.js addSubs): give each
//    subscription's delivery function its granted QoS and let deliverQoS take
//    `Math.min(packet.qos, sub.qos)` there, instead of the topic-named look-up in client.js.
//
// 2. The outgoing in-flight window (limits.maxInflightOutbound, and an MQTT 5 client's Receive
//    Maximum [MQTT-3.3.4-9]): aedes has none (connect.js: receiveMaximum is "ADVISORY"): a subscriber
//    that never acknowledged was sent every message published to it. ../inflight-window.ts is the
//    window; ../delivery.ts hooks it in at: deliverQoS (the one way a QoS 1/2 message goes to a
//    connected client; it assigns no packet identifier when the packet has one: the window gives
//    it, from the client's own counter `_nextId`, so that identifiers do not collide with those aedes
//    assigns); the client's PUBACK and PUBCOMP, seen by a listener on `_parser`'s 'packet' added
//    after aedes' own (so aedes' handler, which clears the message from the session store
//    synchronously, has run); 'clientReady' (after CONNACK and a resumed session's resends); and
//    `conn`'s 'close'. No upstream issue found (the MQTT 5 work lists Receive Maximum enforcement as
//    a follow-up). No small fix: flow control belongs in deliverQoS and the ack handlers.
//
// 3. The duplicate check: aedes keeps the newest brokerCounter delivered per brokerId
//    (`client.duplicates`, client.js dedupe) and drops anything older, so a message that waited in
//    the window while a newer one went out would be dropped. ../delivery.ts sets the entry just below
//    the packet's counter for the synchronous check in deliverQoS/deliver0, then puts it back.
//    Upstream: moscajs/aedes#955 ("Not all messages are consumed when dedupe is enabled", open). The
//    upstream fix: dedupe by (brokerId, brokerCounter) per delivery, e.g. the packet object already
//    delivered to this client, not by a high-water mark.
//
// Shape test: test/unit/upstream-client-delivery.test.ts (a real client over an in-memory stream:
// fails when these fields or the listener order change, and tells when a bare aedes delivers at the
// granted QoS, bounds what is in flight, or stops dropping an older brokerCounter).
import type { AedesPublishPacket } from 'aedes';

/** The parts of an aedes client ../delivery.ts reaches (not in aedes' type declarations). */
export interface DeliveryClient {
  readonly conn: { once(event: 'close', fn: () => void): unknown };
  readonly subscriptions: Record<string, { qos: number }>;
  /** aedes' duplicate check: the newest brokerCounter delivered to this client, per brokerId. */
  readonly duplicates: Record<string, number>;
  /** The packet identifier aedes' QoSPacket takes next (1 to 65535). */
  _nextId: number;
  readonly _parser: { on(event: 'packet', fn: (p: { cmd: string; messageId?: number }) => void): unknown };
  deliver0(packet: AedesPublishPacket, cb: () => void): void;
  deliverQoS(packet: AedesPublishPacket, cb: () => void): void;
}
