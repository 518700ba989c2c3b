// `edgewarden snapshot install FILE`: hands a snapshot to the running agent (control socket); with
// no agent running, installs it into the state directory directly (first provisioning). Either way
// the acceptance rules of SPEC section 4 apply.
import { loadConfig, bundledPaths } from '../config/load.js';
import { chown, mkdir, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { controlInstall, controlSocketPath, socketPathTooLong } from '../agent/control.js';
import { lockStateDir } from '../agent/state-lock.js';
import { SNAPSHOT_DIR, SnapshotStore } from '../store/snapshot-store.js';
import { TIME_FLOOR_FILE, TimeFloor } from '../store/time-floor.js';
import { loadTrustedKeys } from '../store/keys.js';
import { TRUST_FILE, TrustStore } from '../store/trust-store.js';
import { EwError, type ErrorCode } from '../errors.js';
import { packageRoot, readSnapshotFile } from './io.js';
import type { Io } from './output.js';

export async function installCommand(file: string, opts: { config?: string; stateDir?: string }, io: Io): Promise<number> {
  const { config } = loadConfig({
    ...(opts.config === undefined ? {} : { path: opts.config }),
    overrides: opts.stateDir === undefined ? {} : { stateDir: opts.stateDir },
    bundled: bundledPaths(packageRoot()),
  });
  const bytes = readSnapshotFile(file, config.snapshot.maxBytes);
  // No agent can listen on a control socket path that is too long: then the files are written here.
  if (!socketPathTooLong(controlSocketPath(config.stateDir))) {
    try {
      const res = await controlInstall(config.stateDir, bytes, file);
      if (!res.ok) throw new EwError(res.code as ErrorCode, res.message);
      io.out(`installed snapshot version ${String(res.version)} into the running agent (${config.stateDir})`);
      return 0;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ECONNREFUSED') throw err;
    }
  }
  const trustedKeys = loadTrustedKeys(config.trust.keys);
  await mkdir(config.stateDir, { recursive: true, mode: 0o700 });
  // The state directory's lock, as an agent takes it: no agent can start while the files are written.
  const lock = await lockStateDir(config.stateDir);
  try {
    const timeFloor = await TimeFloor.load(config.stateDir);
    const trust = await TrustStore.load(config.stateDir, trustedKeys, (level, msg) => (level === 'info' ? undefined : io.err(`${level}: ${msg}`)), timeFloor.now());
    const store = await SnapshotStore.open({ stateDir: config.stateDir, trust, gatewayId: config.gateway.id, timeFloor, maxBytes: config.snapshot.maxBytes });
    const v = await store.install(bytes, file);
    await giveToStateDirOwner(config.stateDir);
    io.out(`no agent running: installed snapshot version ${v.payload.version} into ${config.stateDir}; it is enforced from the next start`);
    return 0;
  } finally {
    await lock.release();
  }
}

/**
 * Run as root on a state directory the service user owns (the .deb's /var/lib/edgewarden), the
 * files this install wrote would be root's, and the service could not read them: they are given to
 * the directory's owner.
 */
async function giveToStateDirOwner(stateDir: string): Promise<void> {
  if (process.getuid?.() !== 0) return;
  const { uid, gid } = await stat(stateDir);
  if (uid === 0) return;
  const snapshotDir = join(stateDir, SNAPSHOT_DIR);
  const paths = [snapshotDir, ...(await readdir(snapshotDir)).map((n) => join(snapshotDir, n)), join(stateDir, TIME_FLOOR_FILE), join(stateDir, TRUST_FILE)];
  for (const p of paths) await chown(p, uid, gid).catch(() => undefined);
}
