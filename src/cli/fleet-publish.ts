// `edgewarden fleet publish DIR --broker mqtt://broker:1883` (issue 14, the cloud side at fleet
// scale): puts each gateway's snapshot from a fleet directory (src/fleet/manifest.ts) that the broker
// does not hold yet on the gateway's retained `<prefix>snapshot` topic, QoS 1, over one connection.
//
//   - "unchanged": DIR/fleet-published.json records, for this broker (its URL without credentials),
//     the manifest's sha256 for that gateway: nothing to do;
//   - each other one is read, its sha256 checked against the manifest, verified (trusted keys,
//     payload, gateway id = the manifest's key), then published; a broken one fails alone;
//   - at most --concurrency publishes in flight, --retries more attempts with exponential back-off
//     (src/fleet/publish-schedule.ts), MQTT.js reconnecting after a loss;
//   - fleet-published.json is rewritten (atomically) as acknowledgements arrive, at most every
//     200 ms, at the end and on SIGINT/SIGTERM: a rerun publishes only what is missing.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { EwError } from '../errors.js';
import { verifySnapshot } from '../snapshot/snapshot.js';
import { expandGatewayId } from '../bridge/cloud-link.js';
import { MANIFEST_FILE, readManifest, readPublished, writePublished, type ManifestEntry, type PublishedEntry } from '../fleet/manifest.js';
import { defaultBackoffMs, runJobs } from '../fleet/publish-schedule.js';
import { BrokerSession } from '../fleet/publisher.js';
import { readSnapshotFile } from './io.js';
import { trustedKeysFrom } from './snapshot.js';
import type { Io } from './output.js';

export interface FleetPublishOptions {
  broker: string;
  trust?: string[];
  prefix?: string;
  gateway?: string[];
  username?: string;
  passwordFile?: string;
  ca?: string;
  cert?: string;
  key?: string;
  timeout?: string;
  concurrency?: string;
  retries?: string;
  json?: boolean;
}

/** Where the progress bar goes: a terminal (stderr), or nowhere. */
export interface ProgressSink {
  write(s: string): unknown;
}

export interface FleetPublishEnv {
  /** Default: stderr when it is a terminal. */
  readonly progress?: ProgressSink | undefined;
  /** Flush the state and exit on SIGINT/SIGTERM (default true). */
  readonly handleSignals?: boolean;
}

export interface FleetPublishSummary {
  published: number;
  unchanged: number;
  failed: number;
  failures: { gateway: string; reason: string }[];
}

/** The broker's key in fleet-published.json: scheme, host and port, without credentials or path. */
export function brokerKey(url: string): { key: string; username?: string; password?: string } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new EwError('EW_USAGE', '--broker must be mqtt://host:port or mqtts://host:port');
  }
  if ((u.protocol !== 'mqtt:' && u.protocol !== 'mqtts:') || u.hostname === '' || (u.pathname !== '' && u.pathname !== '/') || u.search !== '' || u.hash !== '') {
    throw new EwError('EW_USAGE', `--broker must be mqtt://host:port or mqtts://host:port, got ${JSON.stringify(`${u.protocol}//${u.host}${u.pathname}`)}`);
  }
  const port = u.port || (u.protocol === 'mqtts:' ? '8883' : '1883');
  return {
    key: `${u.protocol}//${u.hostname}:${port}`,
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
  };
}

function positiveInt(value: string | undefined, dflt: number, flag: string, min: number, max: number): number {
  if (value === undefined) return dflt;
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < min || n > max) throw new EwError('EW_USAGE', `${flag} must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`);
  return n;
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** `[#####.....] 412/1000 published 400 unchanged 10 failed 2` */
export function progressLine(s: { published: number; unchanged: number; failed: number }, total: number, width = 20): string {
  const done = s.published + s.unchanged + s.failed;
  const filled = total === 0 ? width : Math.floor((done / total) * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} published ${s.published} unchanged ${s.unchanged} failed ${s.failed}`;
}

/** Username, password (the first line of --password-file, or the URL's), TLS files: read before anything else is done. */
function readCredentials(opts: FleetPublishOptions, broker: ReturnType<typeof brokerKey>): { username?: string; password?: string; ca?: Buffer; cert?: Buffer; key?: Buffer } {
  const read = (flag: string, file: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new EwError('EW_USAGE', `${flag} ${file}: cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  };
  const password = opts.passwordFile !== undefined ? (read('--password-file', opts.passwordFile).toString('utf8').split(/\r?\n/)[0] ?? '') : broker.password;
  const username = opts.username ?? broker.username;
  return {
    ...(username !== undefined ? { username } : {}),
    ...(password !== undefined ? { password } : {}),
    ...(opts.ca !== undefined ? { ca: read('--ca', opts.ca) } : {}),
    ...(opts.cert !== undefined ? { cert: read('--cert', opts.cert) } : {}),
    ...(opts.key !== undefined ? { key: read('--key', opts.key) } : {}),
  };
}

interface Job {
  readonly gatewayId: string;
  readonly entry: ManifestEntry;
}

export async function fleetPublishCommand(dir: string, opts: FleetPublishOptions, io: Io, env: FleetPublishEnv = {}): Promise<number> {
  // The command line first: a usage error changes nothing and connects nowhere.
  const broker = brokerKey(opts.broker);
  const timeoutS = opts.timeout === undefined ? 15 : Number(opts.timeout);
  if (!Number.isFinite(timeoutS) || timeoutS <= 0) throw new EwError('EW_USAGE', `--timeout must be a number of seconds, got ${JSON.stringify(opts.timeout)}`);
  const concurrency = positiveInt(opts.concurrency, 32, '--concurrency', 1, 65_535);
  const retries = positiveInt(opts.retries, 3, '--retries', 0, 100);
  const prefixTemplate = opts.prefix ?? 'edgewarden/{gatewayId}/';
  if (!prefixTemplate.endsWith('/')) throw new EwError('EW_USAGE', `--prefix must end in /, got ${JSON.stringify(prefixTemplate)}`);
  if (!existsSync(join(dir, MANIFEST_FILE))) throw new EwError('EW_USAGE', `no ${MANIFEST_FILE} in ${dir}: make the fleet directory with \`edgewarden fleet sign\``);
  if (/[+#\u0000]/.test(prefixTemplate)) throw new EwError('EW_USAGE', `--prefix must hold no + or #, got ${JSON.stringify(prefixTemplate)}`);
  const credentials = readCredentials(opts, broker);
  const keys = trustedKeysFrom(opts.trust);
  const manifest = readManifest(dir);
  const published = readPublished(dir);
  const held: Record<string, PublishedEntry> = { ...(published.brokers[broker.key] ?? {}) };

  let ids = Object.keys(manifest.gateways).sort();
  if (opts.gateway !== undefined && opts.gateway.length > 0) {
    const unknown = opts.gateway.filter((g) => !(g in manifest.gateways));
    if (unknown.length > 0) throw new EwError('EW_USAGE', `--gateway ${unknown.join(', ')}: not in ${join(dir, MANIFEST_FILE)}`);
    const wanted = new Set(opts.gateway);
    ids = ids.filter((g) => wanted.has(g));
  }
  const summary: FleetPublishSummary = { published: 0, unchanged: 0, failed: 0, failures: [] };
  const jobs: Job[] = [];
  for (const gatewayId of ids) {
    const entry = manifest.gateways[gatewayId]!;
    if (held[gatewayId]?.sha256 === entry.sha256) summary.unchanged++;
    else jobs.push({ gatewayId, entry });
  }

  // fleet-published.json: what was acknowledged, merged into the file as it is on disk at each
  // write (another run for another broker may have written it meanwhile).
  const acked: Record<string, PublishedEntry> = {};
  let dirty = false;
  const flush = () => {
    if (!dirty) return;
    dirty = false;
    const now = readPublished(dir);
    writePublished(dir, { formatVersion: 1, brokers: { ...now.brokers, [broker.key]: { ...(now.brokers[broker.key] ?? {}), ...acked } } });
  };
  const flushTimer = setInterval(() => {
    try {
      flush();
    } catch (err) {
      io.err(`edgewarden: ${err instanceof EwError ? err.describe() : (err as Error).message}`);
    }
  }, 200);

  const progress = 'progress' in env ? env.progress : process.stderr.isTTY ? process.stderr : undefined;
  let lastDrawn = 0;
  const draw = (force = false) => {
    if (!progress) return;
    const now = Date.now();
    if (!force && now - lastDrawn < 100) return;
    lastDrawn = now;
    progress.write(`\r${progressLine(summary, ids.length)}\x1b[K`);
  };
  const clearProgress = () => progress?.write('\r\x1b[K');
  draw(true);

  /** Reads, checks against the manifest and verifies one snapshot: what to publish where. */
  const prepareSnapshot = (gatewayId: string, entry: ManifestEntry): { topic: string; bytes: Buffer } => {
    const file = join(dir, entry.file);
    const bytes = readSnapshotFile(file);
    const actual = sha256(bytes);
    if (actual !== entry.sha256) throw new Error(`${file}: sha256 ${actual} does not match the manifest's ${entry.sha256} (changed after fleet sign?)`);
    const v = verifySnapshot(bytes, keys, { where: file });
    if (v.payload.gateway.id !== gatewayId) throw new EwError('EW_SNAPSHOT_WRONG_GATEWAY', `the snapshot is for gateway ${v.payload.gateway.id}, the manifest lists it for ${gatewayId}`, { where: file });
    const prefix = expandGatewayId(prefixTemplate, gatewayId);
    if (/[+#\u0000]/.test(prefix)) throw new EwError('EW_USAGE', `the topic prefix ${JSON.stringify(prefix)} holds + or #`);
    return { topic: `${prefix}snapshot`, bytes };
  };

  let session: BrokerSession | undefined;
  let abandonReason: string | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    abandonReason = `interrupted (${signal})`;
    flush();
    clearProgress();
    io.err(`edgewarden: fleet publish interrupted by ${signal}: published ${summary.published}, unchanged ${summary.unchanged}, failed ${summary.failed}; ${join(dir, 'fleet-published.json')} records what ${broker.key} acknowledged, a rerun publishes the rest`);
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  const handleSignals = env.handleSignals ?? true;
  if (handleSignals) {
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  }

  try {
    if (jobs.length > 0) {
      // Connected at the first snapshot that passes its checks: none may.
      const connection = (): BrokerSession =>
        (session ??= new BrokerSession(broker.key, {
          ackTimeoutMs: timeoutS * 1000,
          clientId: `edgewarden-fleet-publish-${process.pid}-${Date.now().toString(36)}`,
          ...credentials,
        }));
      await runJobs(jobs, {
        concurrency,
        retries,
        backoffMs: defaultBackoffMs,
        abandoned: () => abandonReason ?? (session?.refused === undefined ? undefined : `not attempted: ${session.refused}`),
        prepare: ({ gatewayId, entry }) => {
          try {
            return prepareSnapshot(gatewayId, entry);
          } catch (err) {
            throw err instanceof EwError ? new Error(err.describe()) : err;
          }
        },
        send: (_job, p) => connection().publishRetained(p.topic, p.bytes),
        settled: ({ gatewayId, entry }, outcome) => {
          if (outcome.ok) {
            summary.published++;
            acked[gatewayId] = { version: entry.version, sha256: entry.sha256, publishedAt: Date.now() };
            dirty = true;
          } else {
            summary.failed++;
            summary.failures.push({ gateway: gatewayId, reason: outcome.reason });
            // A snapshot that exhausted its attempts for want of a connection: the broker is gone;
            // the rest fail at once instead of each waiting out its own attempts.
            if (outcome.attempts > 0 && session && !session.connected) abandonReason ??= `not attempted: ${session.notConnectedReason()}`;
          }
          draw();
        },
      });
    }
  } finally {
    clearInterval(flushTimer);
    if (handleSignals) {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
    flush();
    await session?.end();
    if (progress) {
      draw(true);
      progress.write('\n');
    }
  }

  summary.failures.sort((a, b) => (a.gateway < b.gateway ? -1 : a.gateway > b.gateway ? 1 : 0));
  if (opts.json) {
    io.out(JSON.stringify(summary));
  } else {
    for (const f of summary.failures) io.err(`edgewarden: fleet publish: gateway ${f.gateway} failed: ${f.reason}`);
    io.out(`published ${summary.published}, unchanged ${summary.unchanged}, failed ${summary.failed}`);
  }
  return summary.failed > 0 ? 1 : 0;
}
