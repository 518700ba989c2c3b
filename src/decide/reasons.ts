// The fixed, documented set of deny reasons (SPEC section 2). docs/reasons.md documents each one
// and test/unit/reasons.test.ts fails when the two drift apart.

export const DENY_REASONS = {
  NO_SNAPSHOT: 'no valid snapshot is held: nothing is allowed',
  SNAPSHOT_EXPIRED: 'the snapshot in force has expired (against the time floor) and the expired policy denies this action',
  UNKNOWN_PRINCIPAL: 'the principal is not in the snapshot',
  REVOKED: 'the principal is in the snapshot but revoked',
  UNKNOWN_PERMISSION: 'the permission is not in the catalog',
  USER_TYPE_RESTRICTED: 'the permission cannot be held by the principal\'s user type, whatever its role grants',
  NOT_GRANTED: 'neither the principal\'s role nor its own permission set grants the permission',
  MODULE_INACTIVE: 'none of the subscription modules the permission needs is active',
  UNKNOWN_THING: 'the thing is not in the snapshot',
  GATEWAY_SCOPE: 'this gateway does not serve the thing (standard gateway outside its resource groups), or the action needs a privileged gateway',
  OUT_OF_SCOPE: 'the thing is outside the principal\'s scope (customer, partner assignment, authorizations, own thing)',
  RATE_LIMITED: 'the principal exceeded its rate limit for this action',
  TOPIC_DENIED: 'the MQTT topic is outside the topic map and no topic rule allows it (or one refuses it), or it is another thing\'s own topic or inbox',
  ACTION_EXPIRED: 'the action was not delivered within its time to live (actions.ttlSeconds) or its MQTT 5 message expiry interval, whichever is shorter',
  QUEUE_FULL: 'the action waited in a session queue that reached its bound (sessions.maxQueuedMessages, maxQueuedBytes, maxTotalQueuedBytes) and was dropped',
  RESPONSE_TOPIC_DENIED: 'the publish names an MQTT 5 response topic its sender may not read: the reply would go where the requester cannot see it',
  NO_AUTHORITY: 'the action message carries no record of who authorized it (stored by another program or version): it is treated as unauthorized',
} as const;

export type DenyReason = keyof typeof DENY_REASONS;
export const DENY_REASON_CODES = Object.freeze(Object.keys(DENY_REASONS) as DenyReason[]);

export type Decision = { readonly allow: true; readonly reason?: undefined } | { readonly allow: false; readonly reason: DenyReason };

/** The one allow result: decisions return shared, frozen results and allocate nothing. */
export const ALLOW: Decision = Object.freeze({ allow: true as const });

/** One frozen deny result per reason. */
export const DENY: { readonly [R in DenyReason]: Decision } = Object.freeze(
  Object.fromEntries(DENY_REASON_CODES.map((r) => [r, Object.freeze({ allow: false as const, reason: r })])) as {
    [R in DenyReason]: Decision;
  },
);
