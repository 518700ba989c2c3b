// The agent's configuration file as a TypeBox schema (JSON Schema). Every key has a description
// and a default; `DEFAULT_CONFIG` (src/config/load.ts) is made from these defaults, and
// docs/config.md documents every key (test/unit/config.test.ts fails when they drift apart).
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { ID_PATTERN } from '../policy/ids.js';
import { CLOUD_URL_PATTERN, TOPIC_FILTER_PATTERN, WHO_PATTERN } from './patterns.js';
import type { ExpiredMode } from '../decide/policy-index.js';

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

/** Log levels: `log.level`, and `edgewarden run --log-level`. */
export { LOG_LEVELS, isLogLevel, type LogLevel } from './log-levels.js';
import { LOG_LEVELS } from './log-levels.js';

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
            host: Type.String({ default: '127.0.0.1', minLength: 1, description: 'address to bind; plain MQTT carries passwords and tokens in clear: beyond loopback, only with allowNetwork (serve the network with the TLS listener)' }),
            port: Port(1883, 'TCP port'),
            allowNetwork: Bool(false, 'allow a non-loopback host: plain MQTT on the network, passwords and device tokens in clear (logged as a warning at start and in the status)'),
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
        mqtt5: Bool(true, 'serve MQTT 5 as well as MQTT 3.1.1 on every listener; false = refuse MQTT 5 with CONNACK 0x01, as an MQTT 3.1.1 broker does'),
      },
      'where local clients connect',
    ),
    limits: O(
      {
        maxConnections: Int(1000, 1, 1_000_000, 'concurrent client connections; more are refused'),
        maxPacketBytes: Int(1024 * 1024, 16, 268_435_455, 'largest MQTT packet in bytes, fixed header included (MQTT 5 Maximum Packet Size in CONNACK); a larger one closes the connection before it is buffered'),
        connectTimeoutMs: Int(10_000, 100, 600_000, 'a socket that sends no CONNECT within this time is closed'),
        maxSubscriptionsPerClient: Int(100, 1, 100_000, 'subscriptions one client may hold'),
        maxInflightPerClient: Int(100, 1, 65535, 'QoS 2 messages received from one client and awaiting its PUBREL; one more closes the connection'),
        maxInflightOutbound: Int(1000, 1, 65535, 'QoS 1/2 messages sent to one client and not yet acknowledged; more wait in its queue'),
        keepaliveLimitSeconds: Int(0, 0, 65535, 'largest keepalive a client may ask for; 0 = no limit'),
        maxTopicLevels: Int(32, 1, 1024, 'most levels in a topic or topic filter'),
        maxTopicAliases: Int(16, 0, 65535, 'MQTT 5 topic aliases one client may register (Topic Alias Maximum in CONNACK); 0 = none, an alias is then a protocol error (DISCONNECT 0x94)'),
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
    sessions: O(
      {
        persist: Bool(true, 'keep persistent sessions (CleanSession=0), the messages queued for them and retained messages in <stateDir>/sessions across restarts'),
        syncIntervalMs: Int(100, 0, 10_000, 'how long session changes wait to be written and synced together; a SIGKILL or power cut loses at most this much'),
        maxQueuedMessages: Int(1000, 1, 10_000_000, 'QoS 1/2 messages queued for one persistent session (offline, or not yet acknowledged); past it the oldest are dropped'),
        maxQueuedBytes: Int(1024 * 1024, 1024, 1024 * 1024 * 1024, 'bytes queued for one persistent session (payload + topic + 200 per message); past it the oldest are dropped'),
        maxTotalQueuedBytes: Int(64 * 1024 * 1024, 64 * 1024, 4 * 1024 * 1024 * 1024, 'bytes queued for all persistent sessions together; past it new messages are not queued'),
        maxPersistent: Int(10_000, 1, 10_000_000, 'persistent sessions (CleanSession=0) kept; a CONNECT that would make a new one past it is refused (CONNACK 0x03)'),
        expirySeconds: Int(7 * 24 * 3600, 1, 10 * 365 * 24 * 3600, 'a persistent session not connected for this long (counted from its last disconnect, or the agent\'s start) is discarded with its queue'),
      },
      'the broker\'s session state',
    ),
    actions: O(
      {
        ttlSeconds: O(
          {
            command: Int(300, 1, 31_536_000, 'a command (EXECUTE_THING_COMMAND): seconds it may wait for delivery before it is dropped and audited ACTION_EXPIRED'),
            parameter: Int(300, 1, 31_536_000, 'a parameter write (SET_THING_PARAMETER): seconds it may wait for delivery before it is dropped and audited ACTION_EXPIRED'),
            firmware: Int(3600, 1, 31_536_000, 'a firmware update (UPDATE_FIRMWARE): seconds it may wait for delivery before it is dropped and audited ACTION_EXPIRED'),
            metric: Int(300, 1, 31_536_000, 'a metric write (WRITE_METRIC_VALUE): seconds it may wait for delivery before it is dropped and audited ACTION_EXPIRED'),
            alert: Int(3600, 1, 31_536_000, 'an alert acknowledgement or clear (WRITE_ALERT_STATUS, CLEAR_ALERT): seconds it may wait for delivery before it is dropped and audited ACTION_EXPIRED'),
            option: Int(300, 1, 31_536_000, 'a thing option write (WRITE_THING_OPTION): seconds it may wait for delivery before it is dropped and audited ACTION_EXPIRED'),
            activation: Int(300, 1, 31_536_000, 'an activation (WRITE_THING_ACTIVATION): seconds it may wait for delivery before it is dropped and audited ACTION_EXPIRED'),
            registration: Int(300, 1, 31_536_000, 'a registration (REGISTER_THING): seconds it may wait for delivery before it is dropped and audited ACTION_EXPIRED'),
            bulk: Int(900, 1, 31_536_000, 'one thing\'s share of a bulk update (EXECUTE_BULK_UPDATE): seconds it may wait for delivery before it is dropped and audited ACTION_EXPIRED'),
          },
          'how long each kind of action may wait for delivery (an offline device with a persistent session)',
        ),
      },
      'actions (commands, writes, firmware, ...): decided again at each delivery for their sender, never retained, dropped after their time to live',
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
          LOG_LEVELS.map((l) => Type.Literal(l)),
          { default: 'info', description: 'log level' },
        ),
      },
      'logging (JSON lines on standard output)',
    ),
    cloud: O(
      {
        enabled: Bool(false, 'connect to the cloud MQTT broker (the agent enforces its stored snapshot with or without it)'),
        url: Type.String({
          default: 'mqtt://127.0.0.1:1883',
          pattern: CLOUD_URL_PATTERN,
          description: 'the cloud broker: mqtt://host:port (TCP) or mqtts://host:port (TLS); no user or password in it (cloud.username, cloud.passwordFile)',
        }),
        clientId: Type.String({ default: 'edgewarden-{gatewayId}', minLength: 1, maxLength: 128, description: 'MQTT client id at the cloud broker; {gatewayId} is replaced' }),
        prefix: Type.String({
          default: 'edgewarden/{gatewayId}/',
          minLength: 2,
          pattern: '^[^+#\\u0000]*/$',
          description: 'topic prefix of this gateway at the cloud broker, ending in /; {gatewayId} is replaced',
        }),
        username: Type.Unsafe<string | null>({ type: ['string', 'null'], minLength: 1, default: null, description: 'username at the cloud broker; null = none' }),
        passwordFile: PathOrNull('file holding the password for the cloud broker (first line); null = none. Never in this file itself'),
        ca: PathOrNull('CA certificates (PEM) that the cloud broker\'s certificate must chain to (mqtts); null = the system\'s CAs'),
        cert: PathOrNull('client certificate (PEM) presented to the cloud broker (mqtts); null = none'),
        key: PathOrNull('private key (PEM) of the client certificate'),
        keepaliveSeconds: Int(60, 5, 3600, 'MQTT keepalive with the cloud broker, in seconds'),
        connectTimeoutMs: Int(30_000, 1000, 600_000, 'give up a connection attempt after this long'),
        reconnectMinMs: Int(1000, 10, 3_600_000, 'first reconnect delay; doubles on each failure'),
        reconnectMaxMs: Int(300_000, 100, 86_400_000, 'longest reconnect delay; each delay is drawn at random below the current bound (full jitter)'),
        inflight: Int(32, 1, 65535, 'queued messages sent and not yet acknowledged by the cloud broker at once'),
        forward: Type.Array(Type.String({ minLength: 1, maxLength: 65535, pattern: TOPIC_FILTER_PATTERN, description: 'a local MQTT topic filter' }), {
          default: ['things/+/telemetry/#', 'things/+/alerts/#', 'things/+/commands/+/reply'],
          description: 'local topic filters whose (allowed) messages are sent up, under <prefix>up/',
        }),
        queue: O(
          {
            maxBytes: Int(64 * 1024 * 1024, 64 * 1024, 64 * 1024 * 1024 * 1024, 'disk bound of the upward queue in bytes; when full the oldest messages are dropped and counted'),
            syncIntervalMs: Int(20, 0, 10_000, 'how long appends wait to share one fsync; a message is queued once it is on disk'),
          },
          'the store-and-forward queue of upward messages (<stateDir>/outbox)',
        ),
      },
      'the link to the cloud MQTT broker (SPEC section 5)',
    ),
    metrics: O(
      {
        enabled: Bool(false, 'serve metrics in the Prometheus text format at http://<host>:<port>/metrics'),
        host: Type.String({ default: '127.0.0.1', minLength: 1, description: 'address to bind; keep it on loopback (a Prometheus agent on the gateway, or an SSH tunnel)' }),
        port: Port(9464, 'metrics HTTP port'),
      },
      'the Prometheus metrics endpoint',
    ),
    schedule: O(
      {
        timeFloorPersist: Type.String({ default: '*/1 * * * *', minLength: 1, description: 'node-cron expression: when the time floor is written to disk' }),
        snapshotRefresh: Type.String({ default: '17 */6 * * *', minLength: 1, description: 'node-cron expression: when the agent asks the cloud for a fresh snapshot (also on every reconnect)' }),
        expiryCheck: Type.String({ default: '*/1 * * * *', minLength: 1, description: 'node-cron expression: when the snapshot\'s expiry is checked, logged and reported in the status' }),
        auditUpload: Type.String({ default: '*/1 * * * *', minLength: 1, description: 'node-cron expression: when new audit records are queued for the cloud' }),
        queueCompact: Type.String({ default: '*/10 * * * *', minLength: 1, description: 'node-cron expression: when fully sent queue segments are deleted' }),
      },
      'periodic jobs (node-cron; none runs twice at once)',
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
