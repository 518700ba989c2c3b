// The refusal → MQTT 5 reason code mapping shared by the local broker and the cloud link's replies.
import t from 'tap';
import { MQTT5_NOT_AUTHORIZED, MQTT5_PAYLOAD_FORMAT_INVALID, MQTT5_QUOTA_EXCEEDED, MQTT5_SUCCESS, mqtt5CodeFor } from '../../src/broker/reason-codes.js';
import { DENY_REASON_CODES } from '../../src/decide/reasons.js';

t.test('the codes are the MQTT 5 ones', async (t) => {
  t.equal(MQTT5_SUCCESS, 0);
  t.equal(MQTT5_NOT_AUTHORIZED, 135);
  t.equal(MQTT5_QUOTA_EXCEEDED, 151);
  t.equal(MQTT5_PAYLOAD_FORMAT_INVALID, 153);
});

t.test('every deny reason maps to Not authorized, except the rate limit', async (t) => {
  for (const reason of DENY_REASON_CODES) t.equal(mqtt5CodeFor(reason), reason === 'RATE_LIMITED' ? 0x97 : 0x87, reason);
  for (const reason of ['NOT_GRANTED', 'OUT_OF_SCOPE', 'TOPIC_DENIED', 'REVOKED', 'GATEWAY_SCOPE', 'SNAPSHOT_EXPIRED']) t.equal(mqtt5CodeFor(reason), 0x87, reason);
  t.equal(mqtt5CodeFor('RATE_LIMITED'), 0x97);
});

t.test('an unknown reason is a refusal too: Not authorized', async (t) => {
  t.equal(mqtt5CodeFor(''), 0x87);
  t.equal(mqtt5CodeFor('SOMETHING_NEW'), 0x87);
  t.equal(mqtt5CodeFor('rate_limited'), 0x87, 'codes are case-sensitive');
});
