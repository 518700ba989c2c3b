// The snapshot in force and its files (SPEC section 4):
//
//   <stateDir>/snapshot/current.cose    the snapshot in force
//   <stateDir>/snapshot/previous.cose   the last valid one before it
//
// Power cuts. Each file is only ever replaced with writeFileAtomic (temp file, fsync, rename,
// fsync of the directory), so each of the two names holds, at every instant, either its whole old
// content or its whole new content. An install does, in this order:
//
//   1. previous.cose := the bytes of the snapshot held in memory (already verified)
//   2. current.cose  := the new bytes (already accepted)
//
// Before step 1 the held snapshot is on disk (it was loaded from current.cose or previous.cose, or
// installed by step 2 of an earlier install). A cut during step 1 leaves current.cose untouched
// and previous.cose either as it was or equal to the held snapshot. After step 1, previous.cose is
// the held (valid) snapshot, so a cut during step 2 leaves previous.cose valid whatever
// current.cose holds (and current.cose is itself either the held or the new snapshot, both valid).
// After step 2 both are valid. So a power cut at any point leaves current.cose or previous.cose
// valid, and load() finds it: current.cose first, previous.cose when current.cose fails.
// (When nothing is held, step 1 is skipped: there is no valid snapshot to lose.)
//
// Memory: the store holds no snapshot bytes and no payload (a 32 MiB snapshot decodes to ~100 MB),
// only what it needs to accept the next one and its sha256. Step 1 copies current.cose on disk, in
// pieces, and only when its sha256 is the held snapshot's, so a corrupt current.cose is never
// promoted to previous.cose (previous.cose then stays as it was, and the copy is skipped with a
// warning). The decoded payload of a load goes to the caller once (takeLoaded), for its index.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { EwError, isEwError } from '../errors.js';
import { acceptSnapshot, DEFAULT_MAX_SNAPSHOT_BYTES, isExpired, verifySnapshot, type VerifiedSnapshot } from '../snapshot/snapshot.js';
import type { TrustedKeys } from '../snapshot/keys.js';
import { createHash } from 'node:crypto';
import { copyFileAtomic, readFileBounded, removeStaleTempFiles, writeFileAtomic } from './atomic-file.js';
import type { TimeFloor } from './time-floor.js';
import type { Endorsement } from '../snapshot/endorsement.js';

/** The trusted keys as the agent keeps them across key rotations (src/store/trust-store.ts's TrustStore). */
export interface KeyTrust {
  /** Configured and learned keys (retired ones included: stored snapshots were accepted before). */
  keys(): TrustedKeys;
  /** Retirement times by kid: checked for snapshots installed from now on. */
  retired(): ReadonlyMap<string, number>;
  /** An endorsement carried by a snapshot accepted or loaded: its key is learned, its retirement kept. */
  record(e: Endorsement): Promise<unknown>;
}

export interface StoreLogEvent {
  readonly level: 'info' | 'warn' | 'error';
  readonly msg: string;
  /** EwError code, when the event is about one. */
  readonly code?: string;
  /** The file the event is about. */
  readonly file?: string;
}

export type StoreLog = (event: StoreLogEvent) => void;

export interface SnapshotStoreOptions {
  readonly stateDir: string;
  /** The trusted keys; ignored when `trust` is given. */
  readonly trustedKeys?: TrustedKeys;
  /** Trusted keys that follow key rotations (learned keys, retirements): the agent's. */
  readonly trust?: KeyTrust;
  /** This gateway's id: a stored snapshot for another gateway is not loaded. */
  readonly gatewayId: string;
  readonly timeFloor: TimeFloor;
  /** Largest snapshot file read or accepted; default DEFAULT_MAX_SNAPSHOT_BYTES. */
  readonly maxBytes?: number;
  readonly log?: StoreLog;
}

/** The snapshot in force, as the store keeps it: no bytes, no payload. */
export interface HeldSnapshot {
  readonly version: number;
  readonly issuedAt: number;
  readonly expiresAt: number;
  readonly kid: string;
  /** Of the COSE bytes, hex: current.cose is copied to previous.cose only when it still has it. */
  readonly sha256: string;
}

function heldOf(v: VerifiedSnapshot): HeldSnapshot {
  return { version: v.payload.version, issuedAt: v.payload.issuedAt, expiresAt: v.payload.expiresAt, kid: v.kid, sha256: createHash('sha256').update(v.bytes).digest('hex') };
}

export const SNAPSHOT_DIR = 'snapshot';
export const CURRENT_FILE = 'current.cose';
export const PREVIOUS_FILE = 'previous.cose';

export class SnapshotStore {
  readonly dir: string;
  readonly currentPath: string;
  readonly previousPath: string;
  private opts: SnapshotStoreOptions;
  private readonly maxBytes: number;
  private readonly log: StoreLog;
  private snapshot: HeldSnapshot | undefined;
  /** The last load's snapshot, until takeLoaded(). */
  private loaded: VerifiedSnapshot | undefined;
  /** Installs and loads run one at a time, in call order. */
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(opts: SnapshotStoreOptions) {
    this.opts = opts;
    this.dir = join(opts.stateDir, SNAPSHOT_DIR);
    this.currentPath = join(this.dir, CURRENT_FILE);
    this.previousPath = join(this.dir, PREVIOUS_FILE);
    this.maxBytes = opts.maxBytes ?? DEFAULT_MAX_SNAPSHOT_BYTES;
    this.log = opts.log ?? (() => undefined);
  }

  /** Snapshots installed from now on are checked against these keys (configuration reload; without `trust`). */
  setTrustedKeys(trustedKeys: TrustedKeys): void {
    this.opts = { ...this.opts, trustedKeys };
  }

  private trustedKeys(): TrustedKeys {
    return this.opts.trust?.keys() ?? this.opts.trustedKeys ?? new Map();
  }

  /** Records the endorsement a snapshot carried; a failure to write it is logged, the snapshot stays (it carries it). */
  private async recordEndorsement(v: VerifiedSnapshot, file: string): Promise<void> {
    if (!v.endorsement || !this.opts.trust) return;
    try {
      await this.opts.trust.record(v.endorsement);
    } catch (err) {
      this.logError('error', err, file, 'cannot record the learned key');
    }
  }

  /**
   * Creates <stateDir>/snapshot if needed, removes temp files a crash left there, and loads the
   * stored snapshot (see load()). Throws EW_STORE_IO only when the directory cannot be made.
   */
  static async open(opts: SnapshotStoreOptions): Promise<SnapshotStore> {
    const store = new SnapshotStore(opts);
    try {
      await mkdir(store.dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw new EwError('EW_STORE_IO', `cannot create the snapshot directory: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, {
        where: store.dir,
        cause: err,
      });
    }
    try {
      for (const p of await removeStaleTempFiles(store.dir)) {
        store.log({ level: 'info', msg: 'removed a temp file left by an interrupted write', file: p });
      }
    } catch (err) {
      store.logError('warn', err, store.dir, 'cannot clean up temp files');
    }
    await store.load();
    return store;
  }

  /** The snapshot in force, if any. */
  held(): HeldSnapshot | undefined {
    return this.snapshot;
  }

  /** The snapshot the last load() found, decoded, once (the store keeps none of it). */
  takeLoaded(): VerifiedSnapshot | undefined {
    const v = this.loaded;
    this.loaded = undefined;
    return v;
  }

  /** Version of the snapshot in force; 0 when none. */
  heldVersion(): number {
    return this.snapshot?.version ?? 0;
  }

  /**
   * Loads and re-verifies the stored snapshot: current.cose, else previous.cose, else nothing.
   * Checks signature, payload and gateway id; not the version rule (nothing is held yet) and not
   * expiry (an expired snapshot still loads; the decision engine applies it as expired). Never
   * throws for the files' content: each refusal is logged with its code and path. Raises the time
   * floor with the loaded issuedAt. open() calls it; calling it again replaces the held snapshot
   * with what is on disk (nothing, if neither file verifies).
   */
  load(): Promise<VerifiedSnapshot | undefined> {
    return this.serialized(() => this.loadNow());
  }

  /**
   * Accepts `bytes` (SPEC section 4, against the held version and the time floor) and makes it the
   * snapshot in force. `source` names where it came from in errors and logs. A refusal throws the
   * EwError and changes nothing, on disk or in memory. A failed write throws EW_STORE_IO and keeps
   * the held snapshot in force (the files stay consistent: see the top of this file).
   */
  install(bytes: Uint8Array, source: string): Promise<VerifiedSnapshot> {
    return this.serialized(() => this.installNow(bytes, source));
  }

  private serialized<T>(task: () => Promise<T>): Promise<T> {
    const run = this.queue.then(task, task);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async loadNow(): Promise<VerifiedSnapshot | undefined> {
    const current = await this.readStored(this.currentPath);
    let loaded = current.snapshot;
    let file = this.currentPath;
    if (!loaded) {
      const previous = await this.readStored(this.previousPath);
      loaded = previous.snapshot;
      file = this.previousPath;
      if (loaded) {
        this.log({
          level: 'warn',
          msg: `current snapshot ${current.missing ? 'missing' : 'refused'}; fell back to the previous one, version ${loaded.payload.version}`,
          file,
        });
      } else if (current.missing && previous.missing) {
        this.log({ level: 'info', msg: 'no stored snapshot (first start?); none is held', file: this.dir });
      } else {
        this.log({ level: 'error', msg: 'no valid stored snapshot; none is held', file: this.dir });
      }
    }
    this.snapshot = loaded ? heldOf(loaded) : undefined;
    this.loaded = loaded;
    if (!loaded) return undefined;
    const tf = this.opts.timeFloor;
    tf.observe(loaded.payload.issuedAt);
    if (isExpired(loaded.payload, tf.clock(), tf.floor)) {
      this.log({
        level: 'warn',
        msg: `stored snapshot version ${loaded.payload.version} expired at ${new Date(loaded.payload.expiresAt).toISOString()}; loaded, and applied as expired`,
        code: 'EW_SNAPSHOT_EXPIRED',
        file,
      });
    }
    this.log({ level: 'info', msg: `loaded stored snapshot version ${loaded.payload.version}`, file });
    await this.recordEndorsement(loaded, file);
    return loaded;
  }

  /** One stored file, verified for this gateway; no snapshot (and logged) when missing or refused. */
  private async readStored(path: string): Promise<{ snapshot?: VerifiedSnapshot; missing: boolean }> {
    try {
      const verified = await verifyStoredFile(path, this.trustedKeys(), this.opts.gatewayId, this.maxBytes);
      return verified === undefined ? { missing: true } : { snapshot: verified, missing: false };
    } catch (err) {
      this.logError('error', err, path, 'stored snapshot refused');
      return { missing: false };
    }
  }

  private async installNow(bytes: Uint8Array, source: string): Promise<VerifiedSnapshot> {
    // No copy of the caller's bytes: they are written before this resolves and not kept after.
    const tf = this.opts.timeFloor;
    const verified = acceptSnapshot(bytes, {
      trustedKeys: this.trustedKeys(),
      ...(this.opts.trust ? { retired: this.opts.trust.retired() } : {}),
      gatewayId: this.opts.gatewayId,
      heldVersion: this.heldVersion(),
      now: tf.clock(),
      timeFloor: tf.floor,
      heldIssuedAt: this.snapshot?.issuedAt ?? 0,
      maxBytes: this.maxBytes,
      where: source,
    });
    const held = this.snapshot;
    // Order matters for power cuts: see the top of this file.
    if (held && !(await copyFileAtomic(this.currentPath, this.previousPath, held.sha256))) {
      this.log({ level: 'warn', msg: `${CURRENT_FILE} is missing or no longer the snapshot in force (version ${held.version}): ${PREVIOUS_FILE} is left as it was`, file: this.currentPath });
    }
    await writeFileAtomic(this.currentPath, bytes);
    this.snapshot = heldOf(verified);
    // After the write: a retirement only ever comes with the snapshot that replaces the retired key's.
    await this.recordEndorsement(verified, this.currentPath);
    this.loaded = undefined;
    if (verified.resetsTimeFloor) {
      this.log({
        level: 'warn',
        msg: `the time floor ${new Date(tf.floor).toISOString()} was ahead of signed time: snapshot version ${verified.payload.version}, issued ${new Date(verified.payload.issuedAt).toISOString()} and valid by the system clock, brings it back`,
        file: tf.path,
      });
      tf.reset(verified.payload.issuedAt);
    }
    tf.observe(verified.payload.issuedAt);
    try {
      await tf.persist();
    } catch (err) {
      // The snapshot is installed; a floor not yet on disk is persisted again later.
      this.logError('error', err, tf.path, 'cannot persist the time floor');
    }
    this.log({
      level: 'info',
      msg: `installed snapshot version ${verified.payload.version} from ${source}` + (held ? ` (was ${held.version})` : ''),
      file: this.currentPath,
    });
    return verified;
  }

  private logError(level: 'warn' | 'error', err: unknown, file: string, what: string): void {
    if (isEwError(err)) this.log({ level, msg: `${what}: ${err.message}`, code: err.code, file });
    else this.log({ level, msg: `${what}: ${(err as Error).message ?? String(err)}`, file });
  }
}

/** One stored snapshot file, verified for this gateway; undefined when it does not exist. Throws the EwError of a refusal. */
async function verifyStoredFile(path: string, trustedKeys: TrustedKeys, gatewayId: string, maxBytes: number): Promise<VerifiedSnapshot | undefined> {
  const bytes = await readFileBounded(path, maxBytes, { tooLargeCode: 'EW_SNAPSHOT_TOO_LARGE' });
  if (bytes === undefined) return undefined;
  const verified = verifySnapshot(bytes, trustedKeys, { where: path, maxBytes });
  const gw = verified.payload.gateway.id;
  if (gw !== gatewayId) throw new EwError('EW_SNAPSHOT_WRONG_GATEWAY', `snapshot is for gateway "${gw}", this is "${gatewayId}"`, { where: path });
  return verified;
}

/** What readSnapshotInForce found: the snapshot and its file, or none, and why each file was passed over. */
export interface StoredSnapshotFound {
  readonly snapshot: VerifiedSnapshot | undefined;
  /** The file it was read from (current.cose, or previous.cose when current.cose is missing or refused). */
  readonly file: string | undefined;
  /** The files passed over: missing, or refused (with the error). */
  readonly passedOver: readonly { readonly file: string; readonly error: Error | null }[];
}

/**
 * The snapshot an agent on `stateDir` holds, as SnapshotStore.load() finds it (current.cose, else
 * previous.cose, each verified with the trusted keys and for this gateway), read only: nothing is
 * created, cleaned up or logged (`edgewarden explain`). An unreadable file counts as refused.
 */
export async function readSnapshotInForce(opts: { stateDir: string; trustedKeys: TrustedKeys; gatewayId: string; maxBytes?: number }): Promise<StoredSnapshotFound> {
  const dir = join(opts.stateDir, SNAPSHOT_DIR);
  const passedOver: { file: string; error: Error | null }[] = [];
  for (const file of [join(dir, CURRENT_FILE), join(dir, PREVIOUS_FILE)]) {
    try {
      const snapshot = await verifyStoredFile(file, opts.trustedKeys, opts.gatewayId, opts.maxBytes ?? DEFAULT_MAX_SNAPSHOT_BYTES);
      if (snapshot) return { snapshot, file, passedOver };
      passedOver.push({ file, error: null });
    } catch (err) {
      passedOver.push({ file, error: err as Error });
    }
  }
  return { snapshot: undefined, file: undefined, passedOver };
}
