// MQTT 5 PUBACK/PUBREC reason codes (3.4.2.1, 3.5.2.1): 0x97 Quota exceeded for a publish refused by
// a rate limit (../reason-codes.ts; 0x96 is a DISCONNECT code only). What aedes 2.0.0-beta.1 does:
// it answers every publish our authorizePublish refuses (with an error) with 0x87 Not authorized
// (publish.js authorizePublish: `ack.reasonCode = ReasonCodes.NOT_AUTHORIZED`), whatever the
// error says; the error's message becomes the reason string. Upstream: moscajs/aedes#822 ("Reason
// code on all ACKs", open; its first part, moscajs/aedes#1100, gave PUBACK/PUBREC 0x87 and the reason
// string, with no way for the hook to choose the code).
//
// The workaround: ../publish.ts, refusing an MQTT 5 QoS 1/2 publish for a reason MQTT 5 has a better
// code for, sets that code here for the acknowledgement aedes is about to write on this connection
// (per connection and packet identifier); ./packet-write-hook.ts calls rewriteDeniedAck for every
// packet written, which puts the code into that PUBACK/PUBREC 0x87.
//
// Internals it touches: what aedes writes (through mqtt-packet's writeToStream, ./packet-write-hook.ts),
// and that aedes writes the 0x87 acknowledgement on `client.conn` with the packet identifier of the
// PUBLISH. Shape test: test/unit/upstream-puback-quota-code.test.ts (a bare aedes: fails when the
// hook no longer sees aedes' PUBACK, and tells when aedes honours a code given with the error: then
// ../publish.ts can pass it that way). Behaviour: test/integration/mqtt5.test.ts "rate".
//
// The upstream fix (aedes publish.js authorizePublish), one line:
//   ack.reasonCode = err.reasonCode >= 0x80 ? err.reasonCode : ReasonCodes.NOT_AUTHORIZED

/** aedes' PUBACK/PUBREC code for a publish our hook refused (publish.js authorizePublish). */
const NOT_AUTHORIZED = 0x87;
/** Another code for the acknowledgement of a refused publish, per connection and packet id. */
const ackCodes = new WeakMap<object, Map<number, number>>();

/** The acknowledgement aedes writes next for `messageId` on `conn` (a refusal: 0x87) gets `code` instead. */
export function setDeniedAckCode(conn: object, messageId: number, code: number): void {
  let codes = ackCodes.get(conn);
  if (codes === undefined) ackCodes.set(conn, (codes = new Map()));
  codes.set(messageId, code);
}

/** For the packet-write hook: a PUBACK/PUBREC 0x87 gets the code setDeniedAckCode chose, if any. */
export function rewriteDeniedAck(packet: { cmd: string; messageId?: number; reasonCode?: number }, stream: object): void {
  if (packet.reasonCode === NOT_AUTHORIZED && (packet.cmd === 'puback' || packet.cmd === 'pubrec')) {
    const codes = ackCodes.get(stream);
    const code = codes?.get(packet.messageId!);
    if (code !== undefined) {
      codes!.delete(packet.messageId!);
      packet.reasonCode = code;
    }
  }
}
