// Why a connection was refused: the reason codes the broker audits and logs for a refused CONNECT,
// besides the decision codes of src/decide/reasons.ts that also apply to a connection (NO_SNAPSHOT,
// UNKNOWN_PRINCIPAL, REVOKED, GATEWAY_SCOPE). docs/reasons.md documents each; a test checks both
// that the document lists exactly these and that the broker emits no other.
export const CONNECTION_REFUSAL_REASONS = [
  'BAD_CREDENTIALS',
  'BACKOFF',
  'BUSY',
  'ANONYMOUS_REFUSED',
  'UNKNOWN_CERTIFICATE',
  'CLIENT_ID_TAKEN',
  'EMPTY_CLIENT_ID_WITH_PERSISTENT_SESSION',
  'SESSION_LIMIT',
  'KEEPALIVE_LIMIT',
  'UNSUPPORTED_PROTOCOL_LEVEL',
  'PROTOCOL_ERROR',
  'CONNECT_TIMEOUT',
  'CONNECTION_LIMIT',
  'TLS_HANDSHAKE_FAILED',
  'CERTIFICATE_REQUIRED',
] as const;

export type ConnectionRefusalReason = (typeof CONNECTION_REFUSAL_REASONS)[number];
