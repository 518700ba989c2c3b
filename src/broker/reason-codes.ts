// The MQTT 5 reason code a refusal of ours answers with (docs/reasons.md, "MQTT 5 reason codes"):
// one mapping for the local broker's PUBACK/PUBREC and for the cloud link's replies, so a cloud
// request is told the same code a local MQTT 5 client of that principal would get. Pure, no imports.

/** 0x00 Success: the message was taken. */
export const MQTT5_SUCCESS = 0x00;
/** 0x87 Not authorized: every policy refusal. */
export const MQTT5_NOT_AUTHORIZED = 0x87;
/**
 * 0x97 Quota exceeded: a rate-limit refusal. (0x96 Message rate too high is a DISCONNECT code only;
 * PUBACK and PUBREC have 0x97 for an implementation-specific quota.)
 */
export const MQTT5_QUOTA_EXCEEDED = 0x97;
/** 0x99 Payload format invalid: a malformed cloud request envelope. */
export const MQTT5_PAYLOAD_FORMAT_INVALID = 0x99;

/**
 * The MQTT 5 reason code for a publish refused with `reason` (a code of src/decide/reasons.ts):
 * 0x97 for RATE_LIMITED, 0x87 for any other, an unknown one included (deny by default).
 */
export function mqtt5CodeFor(reason: string): number {
  return reason === 'RATE_LIMITED' ? MQTT5_QUOTA_EXCEEDED : MQTT5_NOT_AUTHORIZED;
}
