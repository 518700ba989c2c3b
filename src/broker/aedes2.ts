// What aedes 2.0.0-beta.1 gets wrong, and how we correct it from outside. package.json pins that exact
// version; test/unit/broker-aedes2.test.ts fails when another one is installed, and every workaround
// here has a regression test (named at each). Findings and evidence: docs/notes/mqtt5-aedes2.md.
//
// The beta is aedes' mqttv5 branch, cut from 1.1.0: it carries MQTT 5, but not the fixes of 1.1.1 to
// 1.2.0. Re-check every workaround against a new 2.x release (one rebased on 1.2 makes most of them
// unnecessary) before moving the pin.
import { createRequire } from 'node:module';
import type { Aedes, Client } from 'aedes';

const require = createRequire(import.meta.url);

/** The aedes version these workarounds are written against (package.json pins it exactly). */
export const AEDES_PINNED = '2.0.0-beta.1';

/** The level a CONNECT of a disabled MQTT 5 is handed to aedes with: one it refuses (CONNACK 0x01). */
export const MQTT5_REFUSED_LEVEL = 6;

/** Server DISCONNECT reason codes (MQTT 5, 3.14.2.1) we send. */
export const DISCONNECT_NOT_AUTHORIZED = 0x87;

interface AedesMaps {
  clients: Record<string, unknown>;
  brokers: Record<string, unknown>;
}

/**
 * GHSA-52qw-whmv-87c5 (fixed in 1.2.0, not in the beta): aedes keys plain `{}` maps by client id and
 * broker id from the wire, so a client id `constructor` finds Object.prototype's and ends the process
 * (`this.clients[client.id].disconnect is not a function`). Null-prototype maps, before any client.
 * Test: test/integration/aedes2-regressions.test.ts "client id constructor".
 */
export function hardenBroker(aedes: Aedes): void {
  const a = aedes as unknown as AedesMaps;
  a.clients = Object.create(null) as Record<string, unknown>;
  a.brokers = Object.create(null) as Record<string, unknown>;
}

/**
 * The same for a client's maps keyed by topic filter and broker id (call right after `handle`). Made
 * with `Object.setPrototypeOf({}, null)`, not `Object.create(null)`: the same null prototype, but V8
 * keeps such an object's properties fast (a hidden class) until one is deleted, where
 * `Object.create(null)` starts in dictionary mode. These two are read on every delivery (the granted
 * QoS walks `subscriptions`, ./delivery.ts qosFor; aedes' duplicate check reads `duplicates`): a
 * `for...in` over one filter took ~110 ns in dictionary mode and ~8 ns with fast properties.
 */
export function hardenClient(client: Client): void {
  Object.assign(client, { subscriptions: Object.setPrototypeOf({}, null) as object, duplicates: Object.setPrototypeOf({}, null) as object });
}

/** Marks a subscription refused before aedes saw it (./subscribe.ts refuses it). */
export const REFUSED_FILTER = Symbol('refusedFilter');

/**
 * The beta dedupes a SUBSCRIBE of several filters through a plain `{}` keyed by filter (subscribe.js
 * `_dedupe`; a single filter skips it): a filter `__proto__` among others sets that object's
 * prototype, and the subscriptions it returns are then its own fields: the agent process ends. Such a
 * filter is renamed before aedes' handler runs (a listener prepended to the parser's 'packet') and
 * marked; authorizeSubscribe refuses it (SUBACK 0x80 / 0x87) under its real name.
 * Test: test/integration/aedes2-regressions.test.ts "prototype".
 */
export function guardPrototypeFilters(parser: { prependListener(event: 'packet', fn: (p: { cmd: string; subscriptions?: { topic: string }[] }) => void): unknown }): void {
  parser.prependListener('packet', (p) => {
    if (p.cmd !== 'subscribe' || p.subscriptions === undefined || p.subscriptions.length < 2) return;
    for (const sub of p.subscriptions) {
      if (sub.topic !== '__proto__') continue;
      sub.topic = '$edgewarden/refused/__proto__';
      (sub as { [REFUSED_FILTER]?: string })[REFUSED_FILTER] = '__proto__';
    }
  });
}

/**
 * [MQTT-3.1.2-6]: a discarded session takes its inbound QoS 2 state with it. aedes 1.2.0 calls
 * persistence.cleanIncoming on a clean CONNECT and when a clean session ends; the beta never does,
 * so a reconnected client's reused packet id would be acknowledged and never delivered (the
 * aedes-persistence < 11 advisory's subject). On 'client' (registered: a taken-over connection is
 * closed by then) when Clean Start, and on 'clientDisconnect' of a clean session.
 * Test: test/integration/aedes2-regressions.test.ts "QoS 2 packet id reused after a clean reconnect".
 */
export function cleanIncomingOnCleanSessions(aedes: Aedes, store: { cleanIncoming(client: Client): Promise<void> }): void {
  aedes.on('client', (client) => {
    if ((client as { _cleanStart?: boolean })._cleanStart === true) void store.cleanIncoming(client);
  });
  aedes.on('clientDisconnect', (client) => {
    if (client.clean) void store.cleanIncoming(client);
  });
}

/** Marks a packet aedes publishes as a client's will (./publish.ts decides it for its owner, as a will). */
export const WILL = Symbol('edgewarden.will');

/**
 * MQTT 5 Will Delay Interval: aedes clears `client.will` when the connection ends and publishes the
 * will later (scheduleWill, then publishWill), so `client.will === packet` no longer tells
 * authorizePublish that it is deciding a will: a delayed will was decided and audited as an ordinary
 * publish of a client that has gone (and, over MQTT 5, answered with an error nobody reads). Every will
 * aedes fires goes through its publishWill: marked there. It is still decided for its owner (the
 * client's session) against the snapshot in force when it fires.
 * Test: test/integration/mqtt5-enforcement.test.ts "delayed will".
 */
export function markWills(aedes: Aedes): void {
  const a = aedes as unknown as { publishWill(client: Client, will: object): void };
  const publishWill = a.publishWill;
  a.publishWill = function markedPublishWill(this: unknown, client: Client, will: object): void {
    (will as { [WILL]?: boolean })[WILL] = true;
    publishWill.call(this, client, will);
  };
}

/** The MQTT version a connected client speaks: 5, or 3/4 (MQTT 3.1 / 3.1.1). */
export function versionOf(client: Client | null): number {
  return (client as { version?: number } | null)?.version ?? 4;
}

/** What this reaches of mqtt-packet (the module aedes writes every packet with, write.js). */
interface MqttPacketModule {
  writeToStream(packet: { cmd: string; messageId?: number; reasonCode?: number; properties?: { sharedSubscriptionAvailable?: boolean } }, stream: object, opts?: object): boolean;
}

/** aedes' PUBACK/PUBREC code for a publish our hook refused (publish.js authorizePublish). */
const NOT_AUTHORIZED = 0x87;
/** Another code for the acknowledgement of a refused publish, per connection and packet id. */
const ackCodes = new WeakMap<object, Map<number, number>>();

/**
 * aedes answers every publish our hook refuses with PUBACK/PUBREC 0x87; for a refusal MQTT 5 has a
 * better code for (0x97 Quota exceeded for a rate limit, ./reason-codes.ts) the code is set here, for the
 * acknowledgement aedes is about to write on this connection (rewritten in the wrapper below).
 * Test: test/integration/mqtt5.test.ts "rate".
 */
export function setDeniedAckCode(conn: object, messageId: number, code: number): void {
  let codes = ackCodes.get(conn);
  if (codes === undefined) ackCodes.set(conn, (codes = new Map()));
  codes.set(messageId, code);
}

/** The connections of our listeners: their CONNACK advertises shared subscriptions. */
const sharedAvailable = new WeakSet<object>();
let connackPatched = false;

/**
 * The beta's CONNACK to an MQTT 5 client always says `sharedSubscriptionAvailable: false`
 * (connect.js connackProperties, a fresh object per CONNACK that no hook sees); the agent implements
 * shared subscriptions itself (./shared-subscriptions.ts). aedes writes every packet with
 * `mqtt.writeToStream(packet, client.conn, ...)` (write.js), looking the function up on mqtt-packet's
 * module object at each call: that function is wrapped once — for a CONNACK to a connection of ours
 * (registered here at accept) the property is dropped (absent means available, 3.2.2.3.13); a
 * PUBACK/PUBREC 0x87 gets the code setDeniedAckCode chose, if any; every other packet costs two
 * comparisons.
 * Test: test/unit/broker-aedes2.test.ts "CONNACK" (a bare aedes) and
 * test/integration/shared-subscriptions.test.ts.
 */
export function advertiseSharedSubscriptions(conn: object): void {
  sharedAvailable.add(conn);
  if (connackPatched) return;
  connackPatched = true;
  // There is one mqtt-packet in the tree (test/unit/broker-packet-numbers.test.ts): aedes'.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const mqtt = require('mqtt-packet') as MqttPacketModule;
  const write = mqtt.writeToStream;
  mqtt.writeToStream = function writeToStream(packet, stream, opts) {
    if (packet.cmd === 'connack' && packet.properties?.sharedSubscriptionAvailable === false && sharedAvailable.has(stream)) {
      delete packet.properties.sharedSubscriptionAvailable;
    } else if (packet.reasonCode === NOT_AUTHORIZED && (packet.cmd === 'puback' || packet.cmd === 'pubrec')) {
      const codes = ackCodes.get(stream);
      const code = codes?.get(packet.messageId!);
      if (code !== undefined) {
        codes!.delete(packet.messageId!);
        packet.reasonCode = code;
      }
    }
    return write(packet, stream, opts);
  };
}
