// The agent's configuration: defaults, the shipped files, overrides, paths, and a table of invalid
// configurations each refused with the exact key and reason; docs/config.md documents every key.
import t, { type Test } from 'tap';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { stringify } from 'yaml';
import { EwError } from '../../src/errors.js';
import { CONFIG_SCHEMA } from '../../src/config/schema.js';
import {
  bundledPaths,
  configIssues,
  defaultConfig,
  DEFAULT_CONFIG,
  DEMO_KEY_WARNING,
  EMBEDDED_SOURCE,
  loadConfig,
  MAX_CONFIG_BYTES,
  type AgentConfig,
} from '../../src/config/load.js';
import { ROOT } from '../helpers/policy.js';

const bundled = bundledPaths(ROOT);

/** Writes `text` as config.yaml in a fresh directory and returns its path. */
const testDirs = new WeakMap<Test, { dir: string; n: number }>();
function configFile(t: Test, text: string | Buffer, name = 'config.yaml'): string {
  let slot = testDirs.get(t);
  if (!slot) testDirs.set(t, (slot = { dir: t.testdir({}), n: 0 }));
  const dir = join(slot.dir, `c${slot.n++}`);
  mkdirSync(dir);
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

function refusal(t: Test, fn: () => unknown, label: string): EwError | undefined {
  try {
    fn();
    t.fail(`${label}: accepted`);
  } catch (err) {
    if (err instanceof EwError) return err;
    t.fail(`${label}: threw ${String(err)}`);
  }
  return undefined;
}

t.test('DEFAULT_CONFIG holds the documented defaults, frozen', async (t) => {
  const expected: AgentConfig = {
    gateway: { id: 'gw-plant-1' },
    trust: { keys: [] },
    stateDir: '/var/lib/edgewarden',
    snapshot: { bootstrap: null, inbox: true, maxBytes: 33554432, expiredMode: 'read-only' },
    listeners: {
      tcp: { enabled: true, host: '127.0.0.1', port: 1883, allowNetwork: false },
      tls: { enabled: false, host: '0.0.0.0', port: 8883, cert: null, key: null, ca: null, requestClientCert: false, requireClientCert: false },
      mqtt5: true,
    },
    limits: {
      maxConnections: 1000,
      maxPacketBytes: 1048576,
      connectTimeoutMs: 10000,
      maxSubscriptionsPerClient: 100,
      maxInflightPerClient: 100,
      maxInflightOutbound: 1000,
      keepaliveLimitSeconds: 0,
      maxTopicLevels: 32,
      maxTopicAliases: 16,
    },
    sessions: { persist: true, syncIntervalMs: 100, maxQueuedMessages: 1000, maxQueuedBytes: 1048576, maxTotalQueuedBytes: 67108864, maxPersistent: 10000, expirySeconds: 604800 },
    actions: { ttlSeconds: { command: 300, parameter: 300, firmware: 3600, metric: 300, alert: 3600, option: 300, activation: 300, registration: 300, bulk: 900 } },
    rateLimits: { commandsPerMinute: 60, firmwareUpdatesPerHour: 10 },
    topics: { thingMap: true, rules: [] },
    audit: { maxBytes: 10485760, flushIntervalMs: 1000 },
    cache: { decisionsPerClient: 256, credentials: 10000 },
    log: { level: 'info' },
    cloud: {
      enabled: false,
      url: 'mqtt://127.0.0.1:1883',
      clientId: 'edgewarden-{gatewayId}',
      prefix: 'edgewarden/{gatewayId}/',
      username: null,
      passwordFile: null,
      ca: null,
      cert: null,
      key: null,
      keepaliveSeconds: 60,
      connectTimeoutMs: 30000,
      reconnectMinMs: 1000,
      reconnectMaxMs: 300000,
      inflight: 32,
      forward: ['things/+/telemetry/#', 'things/+/alerts/#', 'things/+/commands/+/reply'],
      queue: { maxBytes: 67108864, syncIntervalMs: 20 },
    },
    metrics: { enabled: false, host: '127.0.0.1', port: 9464 },
    schedule: { timeFloorPersist: '*/1 * * * *', snapshotRefresh: '17 */6 * * *', expiryCheck: '*/1 * * * *', auditUpload: '*/1 * * * *', queueCompact: '*/10 * * * *' },
  };
  t.same(DEFAULT_CONFIG, expected);
  t.ok(Object.isFrozen(DEFAULT_CONFIG.listeners.tcp), 'deeply frozen');
  t.ok(Object.isFrozen(DEFAULT_CONFIG.topics.rules), 'lists frozen too');
});

t.test('without a file: the embedded defaults, trusting the bundled demo key', async (t) => {
  const { config, warnings, source } = loadConfig({ bundled });
  t.equal(source, EMBEDDED_SOURCE);
  t.same(config, defaultConfig(bundled));
  t.same(config.trust.keys, [bundled.demoPublicKey]);
  t.equal(config.snapshot.bootstrap, bundled.exampleSnapshot);
  t.same(warnings, [DEMO_KEY_WARNING]);
  t.same(configIssues(config), [], 'valid');
  config.limits.maxConnections = 1;
  t.equal(DEFAULT_CONFIG.limits.maxConnections, 1000, 'a loaded config is a copy');
  t.match(bundled.demoPublicKey, /config\/demo-keys\/demo\.pub\.pem$/);
  t.match(bundled.exampleSnapshot, /config\/example-snapshot\.cose$/);
});

t.test('config/edgewarden.yaml is the documented defaults, every key commented', async (t) => {
  const path = join(ROOT, 'config', 'edgewarden.yaml');
  const { config, warnings, source } = loadConfig({ path, bundled });
  t.equal(source, path);
  const expected = structuredClone(DEFAULT_CONFIG) as AgentConfig;
  expected.trust = { keys: ['/etc/edgewarden/keys'] };
  t.same(config, expected, 'the defaults, trusting /etc/edgewarden/keys: plain MQTT on loopback only');
  t.same(warnings, []);
  // Every key is written out (not left to the defaults) and has a comment on its line or just above.
  const lines = readFileSync(path, 'utf8').split('\n');
  lines.forEach((line, i) => {
    if (!/^\s*[A-Za-z]+:/.test(line)) return;
    const commented = line.includes('#') || /^\s*#/.test(lines[i - 1] ?? '') || /:\s*$/.test(line);
    t.ok(commented, `line ${i + 1} "${line.trim()}" has a comment`);
  });
  for (const key of schemaKeys().filter((k) => !k.includes('[]'))) {
    const leaf = key.split('.').pop()!;
    t.ok(lines.some((l) => l.trimStart().startsWith(`${leaf}:`)), `${key} is written out`);
  }
});

t.test('config/conformance.yaml: an open broker on the bundled demo key and example snapshot', async (t) => {
  const path = join(ROOT, 'config', 'conformance.yaml');
  const { config, warnings } = loadConfig({ path, bundled });
  t.equal(config.topics.thingMap, false);
  t.same(config.topics.rules, [
    { pattern: '#', who: 'anonymous', access: 'readwrite' },
    { pattern: '#', who: 'authenticated', access: 'readwrite' },
    { pattern: 'test/nosubscribe', who: 'anonymous', access: 'deny' },
    { pattern: 'test/nosubscribe', who: 'authenticated', access: 'deny' },
  ]);
  t.same(config.listeners.tcp, { enabled: true, host: '127.0.0.1', port: 1883, allowNetwork: false });
  t.same(config.rateLimits, { commandsPerMinute: 0, firmwareUpdatesPerHour: 0 });
  t.same(config.trust.keys, [bundled.demoPublicKey], 'relative to the file');
  t.equal(config.snapshot.bootstrap, bundled.exampleSnapshot);
  t.equal(config.limits.maxConnections, 1000, 'unlisted keys keep their defaults');
  t.ok(warnings.includes(DEMO_KEY_WARNING));
  t.ok(warnings.some((w) => /thingMap is false/.test(w)));
  t.match(readFileSync(path, 'utf8'), /NOTHING IS ENFORCED/);
});

t.test('overrides win over the file', async (t) => {
  const path = configFile(t, 'trust: {keys: [k.pub.pem]}\nlisteners: {tcp: {port: 1999}}\nstateDir: state\n');
  const plain = loadConfig({ path, bundled }).config;
  t.equal(plain.listeners.tcp.port, 1999);
  const { config } = loadConfig({ path, bundled, overrides: { port: 0, stateDir: 'elsewhere' } });
  t.equal(config.listeners.tcp.port, 0);
  t.equal(config.stateDir, join(process.cwd(), 'elsewhere'), '--state-dir is relative to the working directory');
  t.equal(config.listeners.tcp.host, '127.0.0.1', 'the rest of the listener keeps its defaults');
  const embedded = loadConfig({ bundled, overrides: { port: 11883, stateDir: '/tmp/x' } }).config;
  t.equal(embedded.listeners.tcp.port, 11883);
  t.equal(embedded.stateDir, '/tmp/x');
  for (const port of [65536, -1, 1.5, Number.NaN]) {
    const e = refusal(t, () => loadConfig({ bundled, overrides: { port } }), `--port ${port}`);
    t.equal(e?.code, 'EW_USAGE');
    t.match(e?.message, /--port must be an integer from 0 to 65535/);
  }
  t.equal(refusal(t, () => loadConfig({ bundled, overrides: { stateDir: ' ' } }), 'empty --state-dir')?.code, 'EW_USAGE');
  // A bad port in the file is overridden, not reported.
  const bad = configFile(t, 'trust: {keys: [k.pub.pem]}\nlisteners: {tcp: {port: 99999}}\n');
  t.equal(loadConfig({ path: bad, bundled, overrides: { port: 1 } }).config.listeners.tcp.port, 1);
});

t.test('relative paths are relative to the config file; absolute ones stay', async (t) => {
  const dir = t.testdir({ etc: { 'config.yaml': stringify({
    trust: { keys: ['keys/cloud.pub.pem', '/opt/keys'] },
    stateDir: '../state',
    snapshot: { bootstrap: 'first.cose' },
    listeners: { tls: { enabled: true, cert: 'tls/server.crt', key: '/secure/server.key', ca: 'tls/ca.pem' } },
  }) } });
  const { config } = loadConfig({ path: join(dir, 'etc', 'config.yaml'), bundled });
  t.same(config.trust.keys, [join(dir, 'etc', 'keys', 'cloud.pub.pem'), '/opt/keys']);
  t.equal(config.stateDir, join(dir, 'state'));
  t.equal(config.snapshot.bootstrap, join(dir, 'etc', 'first.cose'));
  t.equal(config.listeners.tls.cert, join(dir, 'etc', 'tls', 'server.crt'));
  t.equal(config.listeners.tls.key, '/secure/server.key');
  t.equal(config.listeners.tls.ca, join(dir, 'etc', 'tls', 'ca.pem'));
  t.equal(config.listeners.tls.port, 8883, 'merged with the defaults');
});

t.test('merging: mappings merge, lists and scalars replace', async (t) => {
  const path = configFile(t, stringify({
    trust: { keys: ['a.pub.pem'] },
    topics: { rules: [{ pattern: 'apps/+/status', who: 'role:operator', access: 'read' }] },
    listeners: { tls: { enabled: true, cert: 'c.pem', key: 'k.pem', requireClientCert: true } },
    limits: { maxConnections: 5 },
  }));
  const { config } = loadConfig({ path, bundled });
  t.same(config.topics.rules, [{ pattern: 'apps/+/status', who: 'role:operator', access: 'read' }]);
  t.equal(config.topics.thingMap, true);
  t.equal(config.limits.maxConnections, 5);
  t.equal(config.limits.maxPacketBytes, 1048576);
  t.equal(config.listeners.tls.requestClientCert, true, 'requireClientCert implies requestClientCert');
  t.equal(config.listeners.tcp.enabled, true);
});

t.test('demo key warning: by path, by directory, by a copy; not for another key', async (t) => {
  const dir = dirname(configFile(t, '', 'unused.yaml'));
  mkdirSync(join(dir, 'keys'));
  mkdirSync(join(dir, 'other'));
  writeFileSync(join(dir, 'other', 'cloud.pub.pem'), '-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAoooooooooooooooooooooooooooooooooooooooooo=\n-----END PUBLIC KEY-----\n');
  copyFileSync(bundled.demoPublicKey, join(dir, 'keys', 'copy.pub.pem'));
  const cases: Array<[string, string[], boolean]> = [
    ['the bundled file', [bundled.demoPublicKey], true],
    ['the bundled directory', [join(ROOT, 'config', 'demo-keys')], true],
    ['a copy in a trusted directory', [join(dir, 'keys')], true],
    ['another key', [join(dir, 'other')], false],
    ['a missing path', [join(dir, 'missing.pub.pem')], false],
  ];
  for (const [label, keys, warns] of cases) {
    const path = configFile(t, stringify({ trust: { keys } }));
    t.equal(loadConfig({ path, bundled }).warnings.includes(DEMO_KEY_WARNING), warns, label);
  }
});

t.test('other warnings', async (t) => {
  const path = configFile(t, stringify({ trust: { keys: ['k.pub.pem'] }, listeners: { tcp: { enabled: false } } }));
  t.same(loadConfig({ path, bundled }).warnings, ['no listener is enabled: no local client can connect']);
});

// Invalid configurations: each edit of a valid one is refused with an issue at `path` matching `message`.
type Case = [label: string, config: Record<string, unknown>, path: string, message: RegExp];
const K = { trust: { keys: ['keys/cloud.pub.pem'] } };
const rule = (r: Record<string, unknown>) => ({ ...K, topics: { rules: [{ pattern: 'a/b', who: 'anonymous', access: 'read' }, { pattern: 'c', who: 'authenticated', access: 'write' }, r] } });
const cases: Case[] = [
  ['wrong type', { ...K, limits: { maxConnections: 'many' } }, 'limits.maxConnections', /^must be integer, got string$/],
  ['a fraction where an integer goes', { ...K, limits: { maxPacketBytes: 1.5 } }, 'limits.maxPacketBytes', /^must be integer, got number$/],
  ['a list where a mapping goes', { ...K, limits: [1] }, 'limits', /^must be a mapping, got a list$/],
  ['null where a mapping goes', { ...K, listeners: null }, 'listeners', /^must be a mapping, got nothing$/],
  ['a string where a boolean goes', { ...K, snapshot: { inbox: 'yes' } }, 'snapshot.inbox', /^must be boolean, got string$/],
  ['unknown top-level key, with a suggestion', { ...K, listners: { tcp: { port: 1 } } }, 'listners', /^unknown key; did you mean listeners\?$/],
  ['unknown top-level key, case', { ...K, StateDir: '/x' }, 'StateDir', /^unknown key; did you mean stateDir\?$/],
  ['unknown top-level key, nothing near', { ...K, frobnicate: 1 }, 'frobnicate', /^unknown key$/],
  ['unknown nested key, with a suggestion', { ...K, listeners: { tcp: { prot: 1884 } } }, 'listeners.tcp.prot', /^unknown key; did you mean port\?$/],
  ['unknown key in a rule', rule({ pattern: 'x', who: 'anonymous', acess: 'read', access: 'read' }), 'topics.rules[2].acess', /^unknown key; did you mean access\?$/],
  ['__proto__ key', { ...K, ['__proto__']: { polluted: true } }, '__proto__', /^unknown key/],
  ['port too large', { ...K, listeners: { tcp: { port: 70000 } } }, 'listeners.tcp.port', /^must be <= 65535, got 70000$/],
  ['negative port', { ...K, listeners: { tls: { port: -1 } } }, 'listeners.tls.port', /^must be >= 0, got -1$/],
  ['port as a string', { ...K, listeners: { tcp: { port: '1883' } } }, 'listeners.tcp.port', /^must be integer, got string$/],
  ['bad who', rule({ pattern: 'x', who: 'everyone', access: 'read' }), 'topics.rules[2].who', /^must be anonymous, authenticated, principal:<id> or role:<name>; got "everyone"$/],
  ['who with an empty principal', rule({ pattern: 'x', who: 'principal:', access: 'read' }), 'topics.rules[2].who', /^must be anonymous/],
  ['bad pattern a/#/b', rule({ pattern: 'a/#/b', who: 'anonymous', access: 'read' }), 'topics.rules[2].pattern', /^"a\/#\/b" is not a valid MQTT topic filter \(\+ and # only as whole levels, # only as the last level\)$/],
  ['bad pattern a+/b', rule({ pattern: 'a+/b', who: 'anonymous', access: 'read' }), 'topics.rules[2].pattern', /is not a valid MQTT topic filter/],
  ['bad pattern a/b#', rule({ pattern: 'a/b#', who: 'anonymous', access: 'read' }), 'topics.rules[2].pattern', /is not a valid MQTT topic filter/],
  ['empty pattern', rule({ pattern: '', who: 'anonymous', access: 'read' }), 'topics.rules[2].pattern', /^must not be empty$/],
  ['pattern deeper than maxTopicLevels', { ...rule({ pattern: 'a/b/c/d', who: 'anonymous', access: 'read' }), limits: { maxTopicLevels: 3 } }, 'topics.rules[2].pattern', /has 4 levels, more than limits.maxTopicLevels \(3\)/],
  ['bad access', rule({ pattern: 'x', who: 'anonymous', access: 'all' }), 'topics.rules[2].access', /^must be one of read, write, readwrite, deny; got "all"$/],
  ['rule without access', rule({ pattern: 'x', who: 'anonymous' }), 'topics.rules[2].access', /^missing required key$/],
  ['TLS without cert', { ...K, listeners: { tls: { enabled: true, key: 'k.pem' } } }, 'listeners.tls.cert', /^required when listeners.tls.enabled is true$/],
  ['TLS without key', { ...K, listeners: { tls: { enabled: true, cert: 'c.pem' } } }, 'listeners.tls.key', /^required when listeners.tls.enabled is true$/],
  ['TLS on the TCP port', { ...K, listeners: { tls: { enabled: true, cert: 'c', key: 'k', port: 1883 } } }, 'listeners.tls.port', /1883 is also listeners.tcp.port/],
  ['cert is a number', { ...K, listeners: { tls: { cert: 5 } } }, 'listeners.tls.cert', /^must be string or null, got number$/],
  ['bad cron', { ...K, schedule: { timeFloorPersist: '61 * * * *' } }, 'schedule.timeFloorPersist', /^"61 \* \* \* \*" is not a valid cron expression \(61 is a invalid expression for minute\)$/],
  ['cron with too few fields', { ...K, schedule: { timeFloorPersist: 'hourly' } }, 'schedule.timeFloorPersist', /not a valid cron expression \(expected 5 or 6 fields/],
  ['bad cron in another job', { ...K, schedule: { auditUpload: '* * * * * * *' } }, 'schedule.auditUpload', /not a valid cron expression/],
  ['cloud url scheme', { ...K, cloud: { url: 'http://cloud.example:1883' } }, 'cloud.url', /must match|mqtt/],
  ['cloud prefix without a trailing slash', { ...K, cloud: { prefix: 'edgewarden/{gatewayId}' } }, 'cloud.prefix', /./],
  ['cloud prefix with a wildcard', { ...K, cloud: { prefix: 'edgewarden/+/' } }, 'cloud.prefix', /./],
  ['cloud cert without key', { ...K, cloud: { url: 'mqtts://cloud.example:8883', cert: 'c.pem' } }, 'cloud.key', /cloud.cert and cloud.key go together/],
  ['cloud ca over plain TCP', { ...K, cloud: { ca: 'ca.pem' } }, 'cloud.ca', /needs an mqtts:\/\/ cloud.url/],
  ['cloud reconnect bounds reversed', { ...K, cloud: { reconnectMinMs: 5000, reconnectMaxMs: 1000 } }, 'cloud.reconnectMaxMs', /less than cloud.reconnectMinMs/],
  ['cloud password in the file', { ...K, cloud: { password: 'secret' } }, 'cloud.password', /unknown key/],
  ['cloud forward filter', { ...K, cloud: { forward: ['things/#/x'] } }, 'cloud.forward[0]', /not a valid MQTT topic filter/],
  ['bad expiredMode', { ...K, snapshot: { expiredMode: 'lenient' } }, 'snapshot.expiredMode', /^must be one of read-only, deny-all, enforce; got "lenient"$/],
  ['bad log level', { ...K, log: { level: 'verbose' } }, 'log.level', /^must be one of fatal, error, warn, info, debug, trace, silent; got "verbose"$/],
  ['no trusted key in a file', {}, 'trust.keys', /^must name at least one trusted public key/],
  ['empty trusted key list', { trust: { keys: [] } }, 'trust.keys', /^must name at least one trusted public key/],
  ['empty key path', { trust: { keys: [''] } }, 'trust.keys[0]', /^must not be empty$/],
  ['bad gateway id', { ...K, gateway: { id: 'gw 1' } }, 'gateway.id', /^"gw 1" is not a valid id/],
  ['limit below its minimum', { ...K, limits: { maxConnections: 0 } }, 'limits.maxConnections', /^must be >= 1, got 0$/],
  ['negative rate limit', { ...K, rateLimits: { commandsPerMinute: -5 } }, 'rateLimits.commandsPerMinute', /^must be >= 0, got -5$/],
  ['a password in the cloud URL', { ...K, cloud: { url: 'mqtts://gw:s3cret@cloud.example.com:8883' } }, 'cloud.url', /no user or password in it/],
];

t.test('invalid configurations name the key and the reason', async (t) => {
  for (const [label, config, path, message] of cases) {
    const file = configFile(t, stringify(config));
    const e = refusal(t, () => loadConfig({ path: file, bundled }), label);
    if (!e) continue;
    t.equal(e.code, 'EW_CONFIG_INVALID', `${label}: code`);
    t.equal(e.where, file, `${label}: where`);
    const hit = e.issues.find((i) => i.path === path && message.test(i.message));
    t.ok(hit, `${label}: issue at ${path} matching ${message}`, { found: e.issues });
    t.match(e.message, file, `${label}: the message names the file`);
    t.match(e.describe(), `${file}: ${path}: `, `${label}: describe() names file and key`);
  }
});

t.test('every problem is reported at once, in the order of the schema', async (t) => {
  const file = configFile(t, stringify({
    ...K,
    listners: {},
    schedule: { timeFloorPersist: 'never' },
    log: { level: 'loud' },
    topics: { rules: [{ pattern: 'x', who: 'anonymous', access: 'read' }, { pattern: 'a/#/b', who: 'nobody', access: 'read' }] },
    limits: { maxConnections: 'x' },
  }));
  const e = refusal(t, () => loadConfig({ path: file, bundled }), 'five problems');
  t.same(e?.issues.map((i) => i.path), ['limits.maxConnections', 'topics.rules[1].pattern', 'topics.rules[1].who', 'log.level', 'schedule.timeFloorPersist', 'listners']);
  t.match(e?.message, /\(6 problems\)/);
});

type FileCase = [label: string, text: string | Buffer, code: string, path: string | RegExp, message: RegExp];
const bomb = ['a: &a ["x","x","x","x","x","x","x","x","x"]', ...Array.from({ length: 8 }, (_, i) => {
  const p = String.fromCharCode(97 + i);
  const n = String.fromCharCode(98 + i);
  return `${n}: &${n} [*${p},*${p},*${p},*${p},*${p},*${p},*${p},*${p},*${p}]`;
})].join('\n');
const fileCases: FileCase[] = [
  ['YAML bomb (billion laughs)', bomb, 'EW_CONFIG_YAML', '', /aliases expand without bound/],
  ['not a mapping (a list)', '- a\n- b\n', 'EW_CONFIG_INVALID', '', /^expected a mapping, got a list$/],
  ['not a mapping (a scalar)', '42\n', 'EW_CONFIG_INVALID', '', /^expected a mapping, got a number$/],
  ['duplicate key', 'trust: {keys: [k]}\nlisteners:\n  tcp:\n    port: 1\n    port: 2\n', 'EW_CONFIG_YAML', 'listeners.tcp.port', /^duplicate key \(line 5, column 5\)$/],
  ['duplicate top-level key', 'trust: {keys: [k]}\nlog: {level: info}\nlog: {level: debug}\n', 'EW_CONFIG_YAML', 'log', /^duplicate key \(line 3, column 1\)$/],
  ['YAML syntax error', 'trust: {keys: [k]\nlimits: 1\n', 'EW_CONFIG_YAML', /^line \d+, column \d+$/, /./],
  ['file too large', `# ${'x'.repeat(MAX_CONFIG_BYTES)}\n`, 'EW_CONFIG_READ', '', /bytes is more than the 1048576 allowed/],
  ['not UTF-8', Buffer.from([0x6c, 0x6f, 0x67, 0x3a, 0x20, 0xff, 0xfe, 0x0a]), 'EW_CONFIG_READ', '', /not UTF-8/],
];

t.test('unreadable, oversized and malformed files', async (t) => {
  for (const [label, text, code, path, message] of fileCases) {
    const file = configFile(t, text);
    const e = refusal(t, () => loadConfig({ path: file, bundled }), label);
    if (!e) continue;
    t.equal(e.code, code, `${label}: code`);
    t.match(e.message, file, `${label}: the message names the file`);
    if (e.issues.length > 0) {
      const hit = e.issues.find((i) => (typeof path === 'string' ? i.path === path : path.test(i.path)) && message.test(i.message));
      t.ok(hit, `${label}: issue at ${String(path)} matching ${message}`, { found: e.issues });
    } else {
      t.match(e.message, message, `${label}: message`);
    }
  }
  const dir = t.testdir({ sub: {} });
  const missing = refusal(t, () => loadConfig({ path: join(dir, 'nope.yaml'), bundled }), 'missing file');
  t.equal(missing?.code, 'EW_CONFIG_READ');
  t.match(missing?.message, `${join(dir, 'nope.yaml')}: cannot read: ENOENT`);
  const directory = refusal(t, () => loadConfig({ path: join(dir, 'sub'), bundled }), 'a directory');
  t.equal(directory?.code, 'EW_CONFIG_READ');
  t.match(directory?.message, /not a regular file/);
});

t.test('an empty file is all defaults (and so lacks trust.keys)', async (t) => {
  const e = refusal(t, () => loadConfig({ path: configFile(t, '# nothing yet\n'), bundled }), 'empty');
  t.same(e?.issues.map((i) => i.path), ['trust.keys']);
});

/** Every key path of the schema: gateway, gateway.id, ..., topics.rules[].pattern. */
function schemaKeys(schema: unknown = CONFIG_SCHEMA, prefix = ''): string[] {
  const s = schema as { properties?: Record<string, unknown>; items?: unknown };
  if (s.properties) {
    return Object.entries(s.properties).flatMap(([k, v]) => {
      const path = prefix ? `${prefix}.${k}` : k;
      return [path, ...schemaKeys(v, path)];
    });
  }
  if (s.items) return schemaKeys(s.items, `${prefix}[]`);
  return [];
}

t.test('every key of the schema has a description, and a default unless it is in a list item', async (t) => {
  const walk = (schema: unknown, path: string, inItem: boolean) => {
    const s = schema as { properties?: Record<string, unknown>; items?: unknown; description?: string; default?: unknown };
    if (path) t.ok(s.description, `${path} has a description`);
    if (s.properties) for (const [k, v] of Object.entries(s.properties)) walk(v, path ? `${path}.${k}` : k, inItem);
    else if (!inItem) t.ok('default' in s, `${path} has a default`);
    if (s.items) walk(s.items, `${path}[]`, true);
  };
  walk(CONFIG_SCHEMA, '', false);
});

t.test('docs/config.md documents exactly the schema keys', async (t) => {
  const doc = readFileSync(join(ROOT, 'docs', 'config.md'), 'utf8');
  const documented = [...doc.matchAll(/^\| `([^`]+)` \|/gm)].map((m) => m[1]!);
  const keys = schemaKeys();
  t.ok(keys.length > 40, `${keys.length} keys`);
  t.same([...documented].sort(), [...keys].sort());
  // The default column agrees with the schema for every scalar default.
  const rows = new Map([...doc.matchAll(/^\| `([^`]+)` \| [^|]*(?:\\\|[^|]*)* \| ([^|]*) \|/gm)].map((m) => [m[1]!, m[2]!]));
  const leaf = (path: string) => path.split('.').reduce<unknown>((v, k) => (v as Record<string, unknown>)[k], DEFAULT_CONFIG);
  for (const key of keys.filter((k) => !k.includes('[]') && k !== 'trust.keys')) {
    const value = leaf(key);
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) continue;
    t.match(rows.get(key) ?? '', `\`${Array.isArray(value) ? `[${value.join(', ')}]` : String(value)}\``, `${key}: documented default`);
  }
});


t.test('plain MQTT beyond loopback needs listeners.tcp.allowNetwork, and is then a warning', async (t) => {
  const dir = t.testdir();
  const write = (text: string) => {
    const path = join(dir, `c-${Math.random().toString(36).slice(2)}.yaml`);
    writeFileSync(path, `trust:\n  keys: [${join(ROOT, 'config', 'demo-keys', 'demo.pub.pem')}]\n${text}`);
    return path;
  };
  for (const host of ['0.0.0.0', '::', '192.168.1.10']) {
    const path = write(`listeners:\n  tcp:\n    host: "${host}"\n`);
    t.throws(() => loadConfig({ path, bundled }), { code: 'EW_CONFIG_INVALID', issues: [{ path: 'listeners.tcp.host', message: /would serve plain MQTT beyond this machine.*listeners\.tls.*allowNetwork: true/ }] }, `${host} is refused`);
  }
  for (const host of ['127.0.0.1', '127.0.0.53', '::1', 'localhost']) {
    t.doesNotThrow(() => loadConfig({ path: write(`listeners:\n  tcp:\n    host: "${host}"\n`), bundled }), `${host} is loopback`);
  }
  const { warnings } = loadConfig({ path: write('listeners:\n  tcp:\n    host: 0.0.0.0\n    allowNetwork: true\n'), bundled });
  t.match(warnings, [DEMO_KEY_WARNING, /listeners\.tcp serves plain MQTT on 0\.0\.0\.0:1883 \(allowNetwork\): passwords and device tokens cross the network in clear/]);
  t.doesNotThrow(() => loadConfig({ path: write('listeners:\n  tcp:\n    enabled: false\n    host: 0.0.0.0\n'), bundled }), 'a disabled listener is not checked');
});
