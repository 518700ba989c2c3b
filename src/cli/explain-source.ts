// Which snapshot `edgewarden explain` answers from, and with which configuration:
// - `-s FILE`: that file, verified with `-t` keys (default: the bundled demo key), as of --at or now;
// - otherwise the snapshot in force of the agent on the state directory (`-c CONFIG`, `--state-dir`,
//   defaulting like `edgewarden status`): <stateDir>/snapshot/current.cose, else previous.cose (as
//   the agent loads it), verified with the configuration's trusted keys and for its gateway, as of
//   the agent's time floor (or --at).
// Either way the configuration gives the topic map, the topic rules and the expired-snapshot mode.
import { join } from 'node:path';
import { loadConfig, bundledPaths, type AgentConfig } from '../config/load.js';
import { buildIndex, type ExpiredMode, type PolicyIndex } from '../decide/policy-index.js';
import { verifySnapshot, type VerifiedSnapshot } from '../snapshot/snapshot.js';
import { readSnapshotInForce, SNAPSHOT_DIR } from '../store/snapshot-store.js';
import { TimeFloor } from '../store/time-floor.js';
import { loadTrustedKeys } from '../store/keys.js';
import { TrustStore } from '../store/trust-store.js';
import { EwError, isEwError, type ErrorCode } from '../errors.js';
import { packageRoot, readSnapshotFile } from './io.js';
import { parseTime, trustedKeysFrom } from './snapshot.js';

export interface ConfigOptions {
  readonly config?: string;
  readonly stateDir?: string;
}

export interface SourceOptions extends ConfigOptions {
  readonly snapshot?: string;
  readonly trust?: string[];
  readonly at?: string;
  readonly expiredMode?: string;
}

export interface ExplainSource {
  /** The snapshot file that answers. */
  readonly file: string;
  readonly version: number;
  readonly index: PolicyIndex;
  /** The time decided at, ms since the epoch. */
  readonly now: number;
  /** Where `now` comes from: --at, the clock, or the agent's time floor. */
  readonly nowSource: string;
  readonly config: AgentConfig;
  /** Worth telling: e.g. current.cose refused, the answer is from previous.cose (as the agent does). */
  readonly notes: readonly string[];
}

/** The agent's configuration, loaded exactly as `edgewarden status` and `snapshot install` load it. */
export function agentConfig(opts: ConfigOptions): AgentConfig {
  return loadConfig({
    ...(opts.config === undefined ? {} : { path: opts.config }),
    overrides: opts.stateDir === undefined ? {} : { stateDir: opts.stateDir },
    bundled: bundledPaths(packageRoot()),
  }).config;
}

export async function explainSource(opts: SourceOptions): Promise<ExplainSource> {
  const config = agentConfig(opts);
  const mode = opts.expiredMode ?? config.snapshot.expiredMode;
  if (mode !== 'read-only' && mode !== 'deny-all' && mode !== 'enforce') {
    throw new EwError('EW_USAGE', `--expired-mode must be read-only, deny-all or enforce, got ${JSON.stringify(mode)}`);
  }
  const at = opts.at === undefined ? undefined : parseTime(opts.at, '--at');
  const notes: string[] = [];
  let v: VerifiedSnapshot;
  let file: string;
  let now: number;
  let nowSource: string;
  if (opts.snapshot !== undefined) {
    file = opts.snapshot;
    v = verifySnapshot(readSnapshotFile(file), trustedKeysFrom(opts.trust), { where: file });
    now = at ?? Date.now();
    nowSource = at === undefined ? 'the system clock' : '--at';
  } else {
    if (opts.trust !== undefined && opts.trust.length > 0) {
      throw new EwError('EW_USAGE', '-t/--trust goes with -s FILE: the installed snapshot is verified with the keys its agent trusts (trust.keys of its configuration)');
    }
    const found = await installedSnapshot(config);
    v = found.snapshot;
    file = found.file;
    notes.push(...found.notes);
    if (at !== undefined) {
      now = at;
      nowSource = '--at';
    } else {
      // The agent decides on its time floor: the highest of the clock, the persisted floor and the newest issuedAt.
      const floor = await TimeFloor.load(config.stateDir);
      floor.observe(v.payload.issuedAt);
      now = floor.now();
      nowSource = 'the agent\'s time floor';
    }
  }
  const index = buildIndex(v.payload, { expiredMode: mode as ExpiredMode });
  return { file, version: v.payload.version, index, now, nowSource, config, notes };
}

/** The snapshot in force of the agent on config.stateDir; a clear error when there is none. */
async function installedSnapshot(config: AgentConfig): Promise<{ snapshot: VerifiedSnapshot; file: string; notes: string[] }> {
  const dir = join(config.stateDir, SNAPSHOT_DIR);
  const keys = loadTrustedKeys(config.trust.keys);
  if (keys.size === 0) throw new EwError('EW_KEY_READ', 'no trusted snapshot key in the configuration: set trust.keys (the installed snapshot is verified with them)', { where: 'trust.keys' });
  // With the keys the agent learned by endorsement (key rotation), as the agent verifies it at start; read only.
  const trust = await TrustStore.load(config.stateDir, keys, () => undefined, 0);
  const found = await readSnapshotInForce({ stateDir: config.stateDir, trustedKeys: trust.keys(), gatewayId: config.gateway.id, maxBytes: config.snapshot.maxBytes });
  const denied = found.passedOver.find((p) => /EACCES|EPERM/.test(p.error?.message ?? ''));
  if (denied) {
    throw new EwError('EW_STORE_IO', `permission denied reading the installed snapshot: run as the agent's user (edgewarden) or root, or explain from a file with -s FILE`, { where: denied.file, cause: denied.error });
  }
  const passed = found.passedOver.map((p) => `${p.file}: ${p.error === null ? 'missing' : isEwError(p.error) ? `${p.error.code}: ${p.error.message.replace(`${p.file}: `, '')}` : p.error.message}`);
  if (found.snapshot && found.file) {
    const notes = passed.length > 0 ? [`${passed.join('; ')}: answered from ${found.file}, as the agent does`] : [];
    return { snapshot: found.snapshot, file: found.file, notes };
  }
  const refused = found.passedOver.find((p) => p.error !== null)?.error;
  if (!refused) {
    throw new EwError(
      'EW_STORE_IO',
      `no snapshot is installed for the agent on ${config.stateDir} (looked for current.cose and previous.cose in ${dir}): install one with \`edgewarden snapshot install FILE\` (the same -c/--state-dir), or explain from a snapshot file with -s FILE`,
      { where: dir },
    );
  }
  throw new EwError(
    isEwError(refused) ? (refused.code as ErrorCode) : 'EW_STORE_IO',
    `no valid snapshot for the agent on ${config.stateDir}, so it denies everything (NO_SNAPSHOT): ${passed.join('; ')}`,
    { where: dir, cause: refused },
  );
}
