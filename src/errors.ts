// Every error edgewarden raises is declared here once, with a stable code.
// A denial is not an error: `decide` returns a reason code (see src/decide/reasons.ts).
// docs/errors.md documents each code; test/unit/errors.test.ts fails when they drift apart.

export const ERROR_CODES = {
  // policy files
  EW_POLICY_READ: 'the policy file cannot be read',
  EW_POLICY_TOO_LARGE: 'the policy file is larger than the allowed maximum',
  EW_POLICY_YAML: 'the policy file is not valid YAML (or expands aliases without bound)',
  EW_POLICY_INVALID: 'the policy does not satisfy the schema, the catalog or the invariants',
  // snapshots (acceptance, SPEC section 4)
  EW_SNAPSHOT_TOO_LARGE: 'the snapshot is larger than the allowed maximum',
  EW_SNAPSHOT_MALFORMED: 'the bytes are not a COSE_Sign1 structure',
  EW_SNAPSHOT_BAD_ALGORITHM: 'the protected header names an algorithm other than EdDSA',
  EW_SNAPSHOT_UNKNOWN_KID: 'no trusted key has the kid of the protected header',
  EW_SNAPSHOT_BAD_SIGNATURE: 'the signature does not verify with the trusted key',
  EW_SNAPSHOT_BAD_PAYLOAD: 'the signed payload is not a valid snapshot payload',
  EW_SNAPSHOT_WRONG_GATEWAY: 'the snapshot is for another gateway',
  EW_SNAPSHOT_DUPLICATE: 'the snapshot has the version already held (ignored)',
  EW_SNAPSHOT_STALE: 'the snapshot is older than the one held',
  EW_SNAPSHOT_EXPIRED: 'the snapshot expired before the system clock',
  EW_SNAPSHOT_EXPIRED_BY_TIME_FLOOR: 'the snapshot expired before the time floor (the system clock is behind it)',
  EW_SNAPSHOT_BAD_ENDORSEMENT: 'the key endorsement carried by the snapshot (or given to the command) is refused; the message says which check failed',
  EW_SNAPSHOT_KEY_RETIRED: 'the snapshot is signed by a key that retired itself (key rotation) before the gateway\'s time',
  // the agent's configuration file
  EW_CONFIG_READ: 'the configuration file cannot be read, is not UTF-8, or is larger than 1 MiB',
  EW_CONFIG_YAML: 'the configuration file is not valid YAML (duplicate keys, or aliases that expand without bound)',
  EW_CONFIG_INVALID: 'the configuration does not satisfy the schema; each issue names the key',
  // keys and files
  EW_CLOCK_BEHIND: 'fleet sign: the issue time is before the newest snapshot issued from the fleet directory (a clock set back)',
  EW_KEY_READ: 'a key file cannot be read or is not an Ed25519 key',
  EW_STORE_IO: 'a state file cannot be read or written',
  EW_STATE_LOCKED: 'another edgewarden process owns the directory: an agent its state directory, or fleet sign its fleet directory',
  // listeners
  EW_LISTEN: 'a listener cannot be opened: the address is in use, a port below 1024 needs privileges, or the address is not on this machine',
  EW_OUTBOX_RECORD_TOO_LARGE: 'a message for the cloud is larger than the outbox accepts (refused, not queued)',
  // the cloud broker
  EW_CLOUD_CONNECT: 'the cloud MQTT broker cannot be reached, refused the connection, or did not acknowledge in time',
  // command line
  EW_USAGE: 'the command line is wrong',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/** One problem found in an input, located by a path (e.g. `users[3].role`). */
export interface Issue {
  readonly path: string;
  readonly message: string;
}

export class EwError extends Error {
  readonly code: ErrorCode;
  /** The file or source the error is about, when there is one. */
  readonly where: string | undefined;
  readonly issues: readonly Issue[];

  constructor(code: ErrorCode, message: string, opts: { where?: string; issues?: readonly Issue[]; cause?: unknown } = {}) {
    super(opts.where ? `${opts.where}: ${message}` : message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'EwError';
    this.code = code;
    this.where = opts.where;
    this.issues = opts.issues ?? [];
  }

  /** Message plus one line per issue, for a terminal. */
  describe(): string {
    if (this.issues.length === 0) return `${this.code}: ${this.message}`;
    const lines = this.issues.map((i) => `  ${this.where ? this.where + ': ' : ''}${i.path || '(root)'}: ${i.message}`);
    return `${this.code}: ${this.message}\n${lines.join('\n')}`;
  }
}

export function isEwError(e: unknown): e is EwError {
  return e instanceof EwError;
}

const LISTEN_HINTS: Record<string, string> = {
  EADDRINUSE: 'the address is in use: another program (another MQTT broker?) listens there; stop it or choose another port',
  EACCES: 'permission denied: a port below 1024 needs root or CAP_NET_BIND_SERVICE (the systemd unit grants none: use a port above 1023)',
  EADDRNOTAVAIL: 'the address is not one of this machine\'s',
};

/** A failed listen(), as one line that says what and where (`what`: tcp, tls, metrics, control socket). */
export function listenError(err: unknown, what: string, where: string): EwError {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  const hint = LISTEN_HINTS[code] ?? (err as Error).message ?? String(err);
  return new EwError('EW_LISTEN', `cannot listen (${what}): ${hint}${code in LISTEN_HINTS ? ` (${code})` : ''}`, { where, cause: err });
}
