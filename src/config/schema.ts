// The agent's configuration file as a TypeBox schema (JSON Schema). Every key has a description
// and a default; `DEFAULT_CONFIG` (src/config/load.ts) is made from these defaults, and
// docs/config.md documents every key (test/unit/config.test.ts fails when they drift apart).
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { ID_PATTERN } from '../policy/schema.js';
import type { ExpiredMode } from '../decide/policy-index.js';

/** An MQTT topic filter: `+` and `#` only as whole levels, `#` only as the last level [MQTT-4.7.1-2, 4.7.1-3]. */
export const TOPIC_FILTER_PATTERN = '^(?:(?:\\+|[^+#/\\u0000]*)/)*(?:\\+|#|[^+#/\\u0000]*)$';
const ID_BODY = ID_PATTERN.slice(1, -1);
/** Who a topic rule applies to. */
export const WHO_PATTERN = `^(?:anonymous|authenticated|principal:${ID_BODY}|role:${ID_BODY})$`;

/** Readable reasons for the schema's patterns (Ajv would say "must match pattern ..."). */
export const PATTERN_REASONS: Readonly<Record<string, string>> = {
  [TOPIC_FILTER_PATTERN]: 'is not a valid MQTT topic filter (+ and # only as whole levels, # only as the last level)',
  [WHO_PATTERN]: 'must be anonymous, authenticated, principal:<id> or role:<name>',
  [ID_PATTERN]: 'is not a valid id (letters, digits and . _ : @ -, starting with a letter or digit)',
};

const O = <T extends Record<string, TSchema>>(props: T, description: string) =>
  Type.Object(props, { additionalProperties: false, description });
const Int = (def: number, minimum: number, maximum: number, description: string) =>
  Type.Integer({ default: def, minimum, maximum, description });
const Bool = (def: boolean, description: string) => Type.Boolean({ default: def, description });
const Path = (def: string, description: string) => Type.String({ default: def, minLength: 1, description });
/** A file path or null (`~`, or nothing after the colon, in YAML). */
const PathOrNull = (description: string) =>
  Type.Unsafe<string | null>({ type: ['string', 'null'], minLength: 1, default: null, description });
const Port = (def: number, description: string) => Int(def, 0, 65535, `${description}; 0 = any free port (tests)`);


export const TopicRuleSchema = O(
  {
    pattern: Type.String({
      minLength: 1,
      maxLength: 65535,
      pattern: TOPIC_FILTER_PATTERN,
      description: 'MQTT topic filter the rule covers; + and # as in a subscription',
    }),
    who: Type.String({
      pattern: WHO_PATTERN,
      description: 'anonymous (no username), authenticated (any principal), principal:<id> or role:<name>',
    }),
    access: Type.Union(
      [Type.Literal('read'), Type.Literal('write'), Type.Literal('readwrite'), Type.Literal('deny')],
      { description: 'read (subscribe), write (publish), readwrite, or deny (overrides allows)' },
    ),
  },
  'a topic rule for local applications, in the manner of mosquitto\'s acl_file',
);

export const CONFIG_SCHEMA = Type.Object(
  {
    gateway: O(
      { id: Type.String({ default: 'gw-plant-1', minLength: 1, maxLength: 128, pattern: ID_PATTERN, description: 'this gateway\'s id; snapshots for another gateway are refused' }) },
      'this gateway',
    ),
    trust: O(
      {
        keys: Type.Array(Type.String({ minLength: 1, description: 'a public key file (PEM), or a directory of *.pub.pem files' }), {
          default: [],
          minItems: 1,
          description:
            'trusted snapshot-signing public keys: files, or directories of *.pub.pem files; relative paths are relative to the config file\'s directory. ' +
            'Required in a config file; without one, the bundled demo key',
        }),
      },
      'whose signatures make a snapshot acceptable',
    ),
    stateDir: Path('/var/lib/edgewarden', 'state directory: snapshot, time floor, audit log, inbox, control socket'),
    snapshot: O(
      {
        bootstrap: PathOrNull('snapshot file installed when the state directory holds none (first provisioning); null = none'),
        inbox: Bool(true, 'take snapshots dropped as *.cose files into <stateDir>/inbox'),
        maxBytes: Int(32 * 1024 * 1024, 1024, 1024 * 1024 * 1024, 'largest snapshot accepted, in bytes'),
        expiredMode: Type.Union([Type.Literal('read-only'), Type.Literal('deny-all'), Type.Literal('enforce')], {
          default: 'read-only',
          description:
            'when the snapshot has expired: read-only (devices\' own telemetry and READ_* flow, writes and commands denied), deny-all, or enforce (as if valid)',
        }),
      },
      'snapshot installation and expiry',
    ),
    listeners: O(
      {
        tcp: O(
          {
            enabled: Bool(true, 'listen for plain MQTT over TCP'),
            host: Type.String({ default: '127.0.0.1', minLength: 1, description: 'address to bind' }),
            port: Port(1883, 'TCP port'),
          },
          'plain MQTT listener',
        ),
        tls: O(
          {
            enabled: Bool(false, 'listen for MQTT over TLS; needs cert and key'),
            host: Type.String({ default: '0.0.0.0', minLength: 1, description: 'address to bind' }),
            port: Port(8883, 'TLS port'),
            cert: PathOrNull('server certificate chain (PEM file)'),
            key: PathOrNull('server private key (PEM file)'),
            ca: PathOrNull('CA certificates (PEM file) for client certificates; null = the client certificate is matched by its fingerprint only'),
            requestClientCert: Bool(false, 'ask clients for a certificate (matched against the snapshot\'s certFingerprints)'),
            requireClientCert: Bool(false, 'refuse clients without a certificate; implies requestClientCert'),
          },
          'MQTT over TLS listener',
        ),
      },
      'where local clients connect',
    ),
    limits: O(
      {
        maxConnections: Int(1000, 1, 1_000_000, 'concurrent client connections; more are refused'),
        maxPacketBytes: Int(1024 * 1024, 16, 268_435_455, 'largest MQTT packet (by its remaining length); a larger one closes the connection before it is buffered'),
        connectTimeoutMs: Int(10_000, 100, 600_000, 'a socket that sends no CONNECT within this time is closed'),
        maxSubscriptionsPerClient: Int(100, 1, 100_000, 'subscriptions one client may hold'),
        maxInflightPerClient: Int(100, 1, 65535, 'QoS 1/2 messages in flight per client'),
        keepaliveLimitSeconds: Int(0, 0, 65535, 'largest keepalive a client may ask for; 0 = no limit'),
        maxTopicLevels: Int(32, 1, 1024, 'most levels in a topic or topic filter'),
      },
      'resource bounds per broker and per client',
    ),
    rateLimits: O(
      {
        commandsPerMinute: Int(60, 0, 1_000_000, 'EXECUTE_THING_COMMAND and SET_THING_PARAMETER per principal per minute; 0 = no limit'),
        firmwareUpdatesPerHour: Int(10, 0, 1_000_000, 'UPDATE_FIRMWARE per principal per hour; 0 = no limit'),
      },
      'per-principal token buckets',
    ),
    topics: O(
      {
        thingMap: Bool(true, 'the thing topic map of SPEC section 3; false = only the rules apply (conformance mode)'),
        rules: Type.Array(TopicRuleSchema, { default: [], description: 'topic rules for local applications; lists replace the default' }),
      },
      'which topics clients may use',
    ),
    audit: O(
      {
        maxBytes: Int(10 * 1024 * 1024, 64 * 1024, 1024 * 1024 * 1024, 'audit log size bound in bytes; the oldest records go first'),
        flushIntervalMs: Int(1000, 1, 3_600_000, 'how often buffered audit records are written and synced'),
      },
      'the decision audit log',
    ),
    cache: O(
      {
        decisionsPerClient: Int(256, 0, 1_000_000, 'decisions cached per client connection; 0 = no cache'),
        credentials: Int(10_000, 0, 10_000_000, 'successful credential checks cached (slow hashes); 0 = no cache'),
      },
      'caches',
    ),
    log: O(
      {
        level: Type.Union(
          [
            Type.Literal('fatal'),
            Type.Literal('error'),
            Type.Literal('warn'),
            Type.Literal('info'),
            Type.Literal('debug'),
            Type.Literal('trace'),
            Type.Literal('silent'),
          ],
          { default: 'info', description: 'log level' },
        ),
      },
      'logging (JSON lines on standard output)',
    ),
    schedule: O(
      { timeFloorPersist: Type.String({ default: '*/1 * * * *', minLength: 1, description: 'node-cron expression: when the time floor is written to disk' }) },
      'periodic jobs',
    ),
  },
  {
    additionalProperties: false,
    $id: 'https://edgewarden.dev/schema/config.json',
    title: 'edgewarden agent configuration',
    description: 'The configuration file of `edgewarden run -c <file>`; every key is optional and has a default.',
  },
);

/** The configuration with every default filled in: consumers never see undefined. */
export type AgentConfig = Static<typeof CONFIG_SCHEMA>;
export type TopicRule = Static<typeof TopicRuleSchema>;
export type TopicAccess = TopicRule['access'];

// The decision engine and the configuration agree on the expired modes (a compile error otherwise).
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const expiredModesAgree: Same<ExpiredMode, AgentConfig['snapshot']['expiredMode']> = true;
void expiredModesAgree;
