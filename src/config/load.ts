// The agent's configuration: one YAML file (bounded read, bounded aliases, duplicate keys refused),
// deep-merged over the defaults, validated against CONFIG_SCHEMA (Ajv, compiled once) plus the
// checks a schema cannot say (TLS needs cert and key, cron expressions), relative paths resolved
// against the file's directory, then the command-line overrides. Every problem names the key.
import { closeSync, fstatSync, openSync, readdirSync, readFileSync, readSync, realpathSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import type { ErrorObject, ValidateFunction } from 'ajv';
import { isMap, isNode, isScalar, isSeq, parseDocument, type Document } from 'yaml';
import { validate as isValidCron, validateDetailed as cronDetails } from 'node-cron';
import { EwError, type Issue } from '../errors.js';
import { ajvIssues, pointerToPath, MAX_YAML_ALIASES } from '../policy/issues.js';
import type { AgentConfig } from './schema.js';
import { LOG_LEVELS, isLogLevel, type LogLevel } from './log-levels.js';
import { PATTERN_REASONS } from './patterns.js';
import { CONFIG_DEFAULTS, CONFIG_KEY_ORDER, validateConfig } from '../generated/config-validator.js';

export type { AgentConfig, TopicRule, TopicAccess } from './schema.js';

/** Largest configuration file read (bytes). */
export const MAX_CONFIG_BYTES = 1024 * 1024;
export const DEMO_KEY_WARNING = 'trusting the bundled DEMO key: never do this on a real gateway';
/** `source` of a configuration made without a file. */
export const EMBEDDED_SOURCE = '(embedded defaults)';

/** Files shipped in the package, resolved by the caller (the CLI knows where the package is). */
export interface BundledPaths {
  /** config/demo-keys/demo.pub.pem */
  readonly demoPublicKey: string;
  /** config/example-snapshot.cose */
  readonly exampleSnapshot: string;
}

export interface ConfigOverrides {
  /** --port: listeners.tcp.port */
  readonly port?: number;
  /** --state-dir: stateDir (relative to the working directory) */
  readonly stateDir?: string;
  /** --log-level, -v: log.level */
  readonly logLevel?: LogLevel;
}

export interface LoadConfigOptions {
  /** The YAML file; absent = the embedded defaults (bundled demo key and example snapshot). */
  readonly path?: string;
  readonly overrides?: ConfigOverrides;
  readonly bundled: BundledPaths;
}

export interface LoadedConfig {
  readonly config: AgentConfig;
  /** Worth logging at warn level at start (e.g. DEMO_KEY_WARNING). */
  readonly warnings: string[];
  /** The absolute path of the file read, or EMBEDDED_SOURCE. */
  readonly source: string;
}

/** The bundled files below a package root (the directory holding package.json and config/). */
export function bundledPaths(packageRoot: string): BundledPaths {
  return {
    demoPublicKey: join(packageRoot, 'config', 'demo-keys', 'demo.pub.pem'),
    exampleSnapshot: join(packageRoot, 'config', 'example-snapshot.cose'),
  };
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/**
 * The schema's defaults (frozen). trust.keys is empty, so a config file must name its keys;
 * `defaultConfig(bundled)` is what `edgewarden run` uses without a file.
 */
export const DEFAULT_CONFIG: AgentConfig = deepFreeze(CONFIG_DEFAULTS as AgentConfig);

/** The embedded configuration: the defaults, trusting the bundled demo key, bootstrapped from the example snapshot. */
export function defaultConfig(bundled: BundledPaths): AgentConfig {
  const config = structuredClone(DEFAULT_CONFIG) as AgentConfig;
  config.trust.keys = [bundled.demoPublicKey];
  config.snapshot.bootstrap = bundled.exampleSnapshot;
  return config;
}

/** The configuration's validator, compiled from CONFIG_SCHEMA at build time (scripts/gen-validators.mjs). */
const configValidate = (): ValidateFunction => validateConfig as ValidateFunction;

/** Reads, merges, validates and resolves the configuration; throws EwError (EW_CONFIG_*) naming the file and every key at fault. */
export function loadConfig(opts: LoadConfigOptions): LoadedConfig {
  const overrides = checkOverrides(opts.overrides ?? {});
  let merged: unknown;
  let baseDir: string;
  let source: string;
  let where: string;
  if (opts.path === undefined) {
    merged = defaultConfig(opts.bundled);
    baseDir = process.cwd();
    source = EMBEDDED_SOURCE;
    where = EMBEDDED_SOURCE;
  } else {
    where = opts.path;
    source = resolve(opts.path);
    baseDir = dirname(source);
    // A file of comments only is an empty mapping: every key at its default.
    const raw = parseConfigYaml(readConfigText(opts.path), where) ?? {};
    if (!isMapping(raw)) {
      const got = describeType(raw);
      throw new EwError('EW_CONFIG_INVALID', `the configuration must be a mapping of keys, got ${got}`, {
        where,
        issues: [{ path: '', message: `expected a mapping, got ${got}` }],
      });
    }
    merged = mergeOver(DEFAULT_CONFIG, raw);
  }
  if (overrides.port !== undefined) setIn(merged, ['listeners', 'tcp', 'port'], overrides.port);

  const issues = configIssues(merged);
  if (issues.length > 0) {
    throw new EwError('EW_CONFIG_INVALID', `the configuration is invalid (${issues.length} problem${issues.length > 1 ? 's' : ''})`, { where, issues });
  }
  const config = merged as AgentConfig;
  resolvePaths(config, baseDir);
  if (overrides.stateDir !== undefined) config.stateDir = resolve(overrides.stateDir);
  if (overrides.logLevel !== undefined) config.log.level = overrides.logLevel;
  if (config.listeners.tls.requireClientCert) config.listeners.tls.requestClientCert = true;
  return { config, warnings: configWarnings(config, opts.bundled), source };
}

function checkOverrides(o: ConfigOverrides): ConfigOverrides {
  if (o.port !== undefined && !(Number.isInteger(o.port) && o.port >= 0 && o.port <= 65535)) {
    throw new EwError('EW_USAGE', `--port must be an integer from 0 to 65535, got ${String(o.port)}`);
  }
  if (o.stateDir !== undefined && o.stateDir.trim() === '') throw new EwError('EW_USAGE', '--state-dir must not be empty');
  if (o.logLevel !== undefined && !isLogLevel(o.logLevel)) {
    throw new EwError('EW_USAGE', `--log-level must be one of ${LOG_LEVELS.join(', ')}; got ${JSON.stringify(o.logLevel)}`);
  }
  return o;
}

/** The file's text: a regular file of at most MAX_CONFIG_BYTES, in UTF-8. */
function readConfigText(path: string): string {
  const fail = (message: string, cause?: unknown) =>
    new EwError('EW_CONFIG_READ', message, cause === undefined ? { where: path } : { where: path, cause });
  const errno = (err: unknown) => (err as NodeJS.ErrnoException).code ?? (err as Error).message;
  try {
    if (!statSync(path).isFile()) throw fail('cannot read: not a regular file');
  } catch (err) {
    throw err instanceof EwError ? err : fail(`cannot read: ${errno(err)}`, err);
  }
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw fail(`cannot read: ${errno(err)}`, err);
  }
  try {
    const size = fstatSync(fd).size;
    if (size > MAX_CONFIG_BYTES) throw fail(`${size} bytes is more than the ${MAX_CONFIG_BYTES} allowed`);
    // Never more than the bound, even if the file grows while it is read.
    const buf = Buffer.alloc(MAX_CONFIG_BYTES + 1);
    let n = 0;
    for (let r = -1; r !== 0 && n < buf.length; n += r) r = readSync(fd, buf, n, buf.length - n, null);
    if (n > MAX_CONFIG_BYTES) throw fail(`more than the ${MAX_CONFIG_BYTES} bytes allowed`);
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(0, n));
    } catch (err) {
      throw fail('not UTF-8 text', err);
    }
  } catch (err) {
    throw err instanceof EwError ? err : fail(`cannot read: ${errno(err)}`, err);
  } finally {
    closeSync(fd);
  }
}

/** YAML text to a plain value; syntax errors and duplicate keys are issues, aliases are bounded. */
export function parseConfigYaml(text: string, where: string): unknown {
  if (Buffer.byteLength(text) > MAX_CONFIG_BYTES) {
    throw new EwError('EW_CONFIG_READ', `more than the ${MAX_CONFIG_BYTES} bytes allowed`, { where });
  }
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true, strict: true });
  if (doc.errors.length > 0) {
    const issues = doc.errors.map((err): Issue => {
      const at = err.linePos ? `line ${err.linePos[0].line}, column ${err.linePos[0].col}` : '';
      const key = err.code === 'DUPLICATE_KEY' ? keyPathAt(doc, err.pos[0]) : undefined;
      if (key !== undefined) return { path: key, message: `duplicate key${at ? ` (${at})` : ''}` };
      return { path: at, message: err.message.split('\n')[0] ?? err.code };
    });
    throw new EwError('EW_CONFIG_YAML', 'not valid YAML', { where, issues });
  }
  try {
    return doc.toJS({ maxAliasCount: MAX_YAML_ALIASES });
  } catch (err) {
    throw new EwError('EW_CONFIG_YAML', `YAML aliases expand without bound (more than ${MAX_YAML_ALIASES} alias uses): ${(err as Error).message}`, {
      where,
      cause: err,
    });
  }
}

/** The key path (listeners.tcp.port, topics.rules[1].who) of the mapping key starting at `offset`. */
function keyPathAt(doc: Document, offset: number): string | undefined {
  const walk = (node: unknown, prefix: string): string | undefined => {
    if (isMap(node)) {
      for (const pair of node.items) {
        const name = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
        const path = prefix ? `${prefix}.${name}` : name;
        if (isNode(pair.key) && pair.key.range?.[0] === offset) return path;
        const inner = walk(pair.value, path);
        if (inner !== undefined) return inner;
      }
    } else if (isSeq(node)) {
      for (let i = 0; i < node.items.length; i++) {
        const inner = walk(node.items[i], `${prefix}[${i}]`);
        if (inner !== undefined) return inner;
      }
    }
    return undefined;
  };
  return walk(doc.contents, '');
}

function isMapping(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function describeType(v: unknown): string {
  if (v === null || v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return `a ${typeof v}`;
}

/** `over` merged into a copy of `base`: mappings merge key by key; anything else given (lists, scalars, null) replaces. */
function mergeOver(base: unknown, over: unknown): unknown {
  if (!isMapping(base) || !isMapping(over)) return over === undefined ? structuredClone(base) : over;
  const out: Record<string, unknown> = {};
  // defineProperty: a YAML key named __proto__ stays an own (unknown) key, never a prototype.
  const put = (k: string, v: unknown) => Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
  for (const [k, v] of Object.entries(base)) put(k, structuredClone(v));
  for (const [k, v] of Object.entries(over)) put(k, Object.hasOwn(base, k) ? mergeOver(base[k], v) : v);
  return out;
}

function setIn(target: unknown, path: readonly string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    if (!isMapping(node)) return;
    node = node[key];
  }
  if (isMapping(node)) node[path[path.length - 1]!] = value;
}

/** Every problem of a merged configuration value: the schema first, then the cross-key checks. */
export function configIssues(value: unknown): Issue[] {
  const validate = configValidate();
  const issues = validate(value) ? [] : schemaIssues(validate.errors ?? []);
  const reported = new Set(issues.map((i) => i.path));
  for (const issue of checkSemantics(value)) if (!reported.has(issue.path)) issues.push(issue);
  return sortIssues(issues);
}

/** Schema key paths in schema order (topics.rules[] for list items), listed at build time: issues are listed in this order. */
const KEY_ORDER: ReadonlyMap<string, number> = new Map(CONFIG_KEY_ORDER.map((path: string, i: number) => [path, i]));

function sortKey(path: string): number[] {
  const key: number[] = [];
  let generic = '';
  for (const m of path.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) {
    if (m[2] !== undefined) {
      generic += '[]';
      key.push(Number(m[2]));
    } else {
      generic += generic ? `.${m[1]}` : m[1];
      key.push(KEY_ORDER.get(generic) ?? Number.MAX_SAFE_INTEGER);
    }
  }
  return key;
}

function sortIssues(issues: Issue[]): Issue[] {
  const keyed = issues.map((issue) => ({ issue, key: sortKey(issue.path) }));
  keyed.sort((a, b) => {
    for (let i = 0; i < Math.min(a.key.length, b.key.length); i++) if (a.key[i] !== b.key[i]) return a.key[i]! - b.key[i]!;
    return a.key.length - b.key.length;
  });
  return keyed.map((k) => k.issue);
}

function schemaIssues(errors: readonly ErrorObject[]): Issue[] {
  const issues: Issue[] = [];
  const rest: ErrorObject[] = [];
  const anyOfPaths = new Set(errors.filter((e) => e.keyword === 'anyOf').map((e) => e.instancePath));
  for (const e of errors) {
    const path = pointerToPath(e.instancePath);
    const got = describeValue(e.data);
    switch (e.keyword) {
      case 'additionalProperties': {
        const parent = e.parentSchema as { properties?: Record<string, unknown> };
        const unknown = String((e.params as { additionalProperty: string }).additionalProperty);
        const near = closest(unknown, Object.keys(parent.properties ?? {}));
        for (const issue of ajvIssues([e])) issues.push(near ? { path: issue.path, message: `${issue.message}; did you mean ${near}?` } : issue);
        break;
      }
      case 'pattern': {
        const reason = PATTERN_REASONS[String(e.schema)];
        if (reason?.startsWith('must')) issues.push({ path, message: `${reason}; got ${got}` });
        else if (reason) issues.push({ path, message: `${got} ${reason}` });
        else rest.push(e);
        break;
      }
      case 'type':
        if (anyOfPaths.has(e.instancePath)) rest.push(e);
        else issues.push({ path, message: `must be ${readableType(e.schema)}, got ${describeType(e.data).replace(/^a (string|number|boolean)$/, '$1')}` });
        break;
      case 'minItems':
        issues.push({
          path,
          message:
            path === 'trust.keys'
              ? 'must name at least one trusted public key (a file, or a directory of *.pub.pem files)'
              : `must have at least ${String(e.schema)} item${e.schema === 1 ? '' : 's'}`,
        });
        break;
      case 'minLength':
        issues.push({ path, message: e.schema === 1 ? 'must not be empty' : `must be at least ${String(e.schema)} characters long` });
        break;
      case 'minimum':
      case 'maximum':
      case 'maxLength':
        issues.push({ path, message: `${e.message ?? e.keyword}, got ${got}` });
        break;
      default:
        rest.push(e);
    }
  }
  issues.push(...ajvIssues(rest));
  return issues;
}

function readableType(schema: unknown): string {
  const names: Record<string, string> = { object: 'a mapping', array: 'a list', null: 'null' };
  const types = (Array.isArray(schema) ? schema : [schema]).map((t) => names[String(t)] ?? String(t));
  return types.length > 1 ? `${types.slice(0, -1).join(', ')} or ${types[types.length - 1]}` : (types[0] ?? '');
}

function describeValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? v.slice(0, 60) + '…' : v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return describeType(v);
}

/** The known key nearest to a misspelt one (edit distance, case-insensitive), if any is near enough. */
function closest(word: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const k of known) {
    const d = editDistance(word.toLowerCase(), k.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [k, d];
  }
  return bestDistance <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}

/** What one key cannot say alone. Runs on unvalidated values too, so every problem is reported at once. */
/** 127.x.x.x, ::1 and localhost: reachable from this machine only. */
export function isLoopbackHost(host: string): boolean {
  return /^(127\.\d+\.\d+\.\d+|::1|localhost|::ffff:127\.\d+\.\d+\.\d+)$/i.test(host);
}

function checkSemantics(value: unknown): Issue[] {
  const issues: Issue[] = [];
  const get = (...path: string[]): unknown => path.reduce<unknown>((v, k) => (isMapping(v) ? v[k] : undefined), value);
  const plain = get('listeners', 'tcp');
  if (isMapping(plain) && plain.enabled !== false && typeof plain.host === 'string' && !isLoopbackHost(plain.host) && plain.allowNetwork !== true) {
    issues.push({
      path: 'listeners.tcp.host',
      message: `${plain.host} would serve plain MQTT beyond this machine: passwords and device tokens would cross the network in clear. Serve the network with listeners.tls, or set listeners.tcp.allowNetwork: true to accept that`,
    });
  }
  const tls = get('listeners', 'tls');
  if (isMapping(tls) && tls.enabled === true) {
    for (const key of ['cert', 'key'] as const) {
      if (tls[key] === null) issues.push({ path: `listeners.tls.${key}`, message: 'required when listeners.tls.enabled is true' });
    }
    const tcp = get('listeners', 'tcp');
    const anyHost = (h: unknown) => h === '0.0.0.0' || h === '::';
    if (isMapping(tcp) && tcp.enabled === true && typeof tls.port === 'number' && tls.port !== 0 && tcp.port === tls.port) {
      if (tcp.host === tls.host || anyHost(tcp.host) || anyHost(tls.host)) {
        issues.push({ path: 'listeners.tls.port', message: `${tls.port} is also listeners.tcp.port` });
      }
    }
  }
  const schedule = get('schedule');
  for (const [job, cron] of Object.entries(isMapping(schedule) ? schedule : {})) {
    if (typeof cron === 'string' && cron !== '' && !isValidCron(cron)) {
      const why = cronDetails(cron).errors.map((e) => e.message).join('; ');
      issues.push({ path: `schedule.${job}`, message: `${JSON.stringify(cron)} is not a valid cron expression${why ? ` (${why})` : ''}` });
    }
  }
  const cloud = get('cloud');
  if (isMapping(cloud)) {
    if ((cloud.cert === null) !== (cloud.key === null)) {
      issues.push({ path: cloud.cert === null ? 'cloud.cert' : 'cloud.key', message: 'cloud.cert and cloud.key go together' });
    }
    const tlsOnly = (['ca', 'cert'] as const).find((k) => typeof cloud[k] === 'string');
    if (tlsOnly && typeof cloud.url === 'string' && cloud.url.startsWith('mqtt://')) {
      issues.push({ path: `cloud.${tlsOnly}`, message: 'needs an mqtts:// cloud.url (TLS)' });
    }
    if (typeof cloud.reconnectMinMs === 'number' && typeof cloud.reconnectMaxMs === 'number' && cloud.reconnectMinMs > cloud.reconnectMaxMs) {
      issues.push({ path: 'cloud.reconnectMaxMs', message: `${cloud.reconnectMaxMs} is less than cloud.reconnectMinMs (${cloud.reconnectMinMs})` });
    }
  }
  const rules = get('topics', 'rules');
  const maxLevels = get('limits', 'maxTopicLevels');
  if (Array.isArray(rules) && typeof maxLevels === 'number') {
    rules.forEach((rule: unknown, i) => {
      if (!isMapping(rule) || typeof rule.pattern !== 'string') return;
      const levels = rule.pattern.split('/').length;
      if (levels > maxLevels) {
        issues.push({ path: `topics.rules[${i}].pattern`, message: `has ${levels} levels, more than limits.maxTopicLevels (${maxLevels}): it can never match` });
      }
    });
  }
  return issues;
}

/** File paths from the configuration, made absolute against the file's directory. */
function resolvePaths(c: AgentConfig, baseDir: string): void {
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  c.trust.keys = c.trust.keys.map(abs);
  c.stateDir = abs(c.stateDir);
  if (c.snapshot.bootstrap !== null) c.snapshot.bootstrap = abs(c.snapshot.bootstrap);
  const tls = c.listeners.tls;
  if (tls.cert !== null) tls.cert = abs(tls.cert);
  if (tls.key !== null) tls.key = abs(tls.key);
  if (tls.ca !== null) tls.ca = abs(tls.ca);
  const cloud = c.cloud;
  for (const k of ['passwordFile', 'ca', 'cert', 'key'] as const) {
    const v = cloud[k];
    if (v !== null) cloud[k] = abs(v);
  }
}

function configWarnings(c: AgentConfig, bundled: BundledPaths): string[] {
  const warnings: string[] = [];
  if (trustsDemoKey(c.trust.keys, bundled.demoPublicKey)) warnings.push(DEMO_KEY_WARNING);
  if (!c.listeners.tcp.enabled && !c.listeners.tls.enabled) warnings.push('no listener is enabled: no local client can connect');
  if (c.listeners.tcp.enabled && !isLoopbackHost(c.listeners.tcp.host)) {
    warnings.push(`listeners.tcp serves plain MQTT on ${c.listeners.tcp.host}:${c.listeners.tcp.port} (allowNetwork): passwords and device tokens cross the network in clear; serve the network with listeners.tls`);
  }
  if (c.metrics.enabled && !isLoopbackHost(c.metrics.host)) {
    warnings.push(`metrics.host ${c.metrics.host} is not a loopback address: anyone who reaches it can read the metrics`);
  }
  if (!c.topics.thingMap) {
    warnings.push("topics.thingMap is false: the snapshot's permissions are not enforced on MQTT topics, only topics.rules apply (conformance mode)");
  }
  return warnings;
}

const MAX_KEY_FILE_BYTES = 64 * 1024;

/** Whether any trusted key file (or *.pub.pem in a trusted directory) is the bundled demo key, by path or by content. */
function trustsDemoKey(keys: readonly string[], demoPublicKey: string): boolean {
  const real = (p: string) => {
    try {
      return realpathSync(p);
    } catch {
      return resolve(p);
    }
  };
  const text = (p: string) => {
    try {
      return statSync(p).size <= MAX_KEY_FILE_BYTES ? readFileSync(p, 'utf8').trim() : undefined;
    } catch {
      return undefined;
    }
  };
  const demoPath = real(demoPublicKey);
  const demoText = text(demoPublicKey);
  for (const spec of keys) {
    let files = [spec];
    try {
      if (statSync(spec).isDirectory()) files = readdirSync(spec).filter((f) => f.endsWith('.pub.pem') || f.endsWith('.pub')).map((f) => join(spec, f));
    } catch {
      /* missing: the key loader reports it */
    }
    for (const f of files) {
      if (real(f) === demoPath) return true;
      if (demoText !== undefined && text(f) === demoText) return true;
    }
  }
  return false;
}
