// `fleet sign` (issue 14): a tenant policy and a fleet file in, one signed snapshot per gateway out,
// each holding only that gateway's slice, into a fleet directory (manifest.ts). A gateway whose slice
// did not change gets no new snapshot; each one that did gets a version above its last one.
//
// Order of writing: each new snapshot file (temp file, rename), then the manifest (atomic, fsynced).
// A crash between them leaves files the manifest does not name: `fleet publish` checks each file's
// sha256 against the manifest, so it never publishes one, and the next `fleet sign` sees the file is
// not the manifest's and issues that gateway again (outcome repaired).
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { EwError, type Issue } from '../errors.js';
import { prepareTenant, principalId, type Fleet, type FleetGateway, type TenantPolicy } from '../policy/fleet.js';
import { lockDirectory } from '../store/dir-lock.js';
import { kidOf, type TrustedKeys } from '../snapshot/keys.js';
import { readFleetInputs } from './files.js';
import { planGateway, type ChangeSummary, type IssueOutcome, type Plan, type PreviousIssue } from './issue.js';
import { readManifest, snapshotFileName, writeManifest, type ManifestEntry } from './manifest.js';
import { createSigner } from './signer.js';

/** The fleet directory's lock: the pid of the fleet sign writing it. */
export const LOCK_FILE = 'fleet-sign.lock';

export interface FleetSignOptions {
  readonly tenantPath: string;
  readonly fleetPath: string;
  readonly dir: string;
  readonly key: KeyObject;
  readonly kid?: string;
  /** ms since the epoch; default now. */
  readonly issuedAt?: number;
  /** Public keys earlier snapshots may be signed with (for the diffs), besides the signing key's own. */
  readonly trusted?: TrustedKeys;
  /** Signing threads; 0 signs in this thread. */
  readonly threads: number;
  /** A key endorsement (key endorse) carried in each new snapshot's header: rotation to this key. */
  readonly endorsement?: Uint8Array;
  /** Refuse a tenant with warnings. */
  readonly strict?: boolean;
  /** Called now and then with the gateways done so far. */
  readonly progress?: (done: number, total: number) => void;
}

export interface GatewayReport {
  readonly gateway: string;
  readonly outcome: IssueOutcome;
  readonly version: number;
  readonly bytes: number;
  readonly things: number;
  readonly principals: number;
  readonly changes?: ChangeSummary;
}

export interface FleetSignReport {
  readonly tenant: string;
  readonly kid: string;
  readonly issuedAt: number;
  readonly threads: number;
  readonly gateways: readonly GatewayReport[];
  /** Gateways of the last run no longer in the fleet: their files and manifest entries are removed. */
  readonly removed: readonly string[];
  readonly warnings: readonly Issue[];
  readonly counts: Readonly<Record<IssueOutcome, number>>;
  /**
   * Principals in every slice that serves a thing (organization-wide, or reading every thing with
   * READ_ALL_THINGS): their credentials are on every gateway. `ids`: the first few.
   */
  readonly everywhere: { readonly count: number; readonly ids: readonly string[] };
  /** Where the time went, in ms: reading and validating both files, indexing the tenant, slicing and signing, writing the manifest. */
  readonly timings: { readonly validateMs: number; readonly prepareMs: number; readonly issueMs: number; readonly manifestMs: number };
}

function sha256File(path: string): string | undefined {
  try {
    return createHash('sha256').update(readFileSync(path)).digest('hex');
  } catch {
    return undefined;
  }
}

export async function signFleet(o: FleetSignOptions): Promise<FleetSignReport> {
  const t0 = performance.now();
  const { tenant, fleet, warnings } = readFleetInputs(o.tenantPath, o.fleetPath);
  const t1 = performance.now();
  if (o.strict === true && warnings.length > 0) {
    throw new EwError('EW_POLICY_INVALID', `tenant policy has ${warnings.length === 1 ? 'a warning' : `${warnings.length} warnings`}, and --strict refuses it`, {
      where: o.tenantPath,
      issues: warnings,
    });
  }
  try {
    mkdirSync(o.dir, { recursive: true });
  } catch (err) {
    throw new EwError('EW_STORE_IO', `cannot create the fleet directory: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { where: o.dir, cause: err });
  }
  // One fleet sign per directory: two would interleave their files and manifests.
  const lock = await lockDirectory(o.dir, LOCK_FILE, (pid) => `another fleet sign (pid ${pid}) is writing this fleet directory; wait for it to end`);
  try {
    return await signLocked(o, tenant, fleet, warnings, t0, t1);
  } finally {
    await lock.release();
  }
}

async function signLocked(o: FleetSignOptions, tenant: TenantPolicy, fleet: Fleet, warnings: readonly Issue[], t0: number, t1: number): Promise<FleetSignReport> {
  const manifest = readManifest(o.dir);
  const issuedAt = o.issuedAt ?? Date.now();
  if (issuedAt < manifest.lastIssuedAt) {
    throw new EwError(
      'EW_CLOCK_BEHIND',
      `the issue time ${new Date(issuedAt).toISOString()} is before ${new Date(manifest.lastIssuedAt).toISOString()}, when this directory's newest snapshot was issued: ` +
        'is the clock set back? Versions would not increase. Fix the clock (or give --issued-at a later time)',
      { where: join(o.dir, 'fleet-manifest.json') },
    );
  }
  const kid = o.kid ?? kidOf(o.key);
  const trusted = new Map(o.trusted ?? []);
  trusted.set(kid, createPublicKey(o.key));

  const prepared = prepareTenant(tenant);
  const t2 = performance.now();
  const signer = createSigner({ threads: o.threads, key: o.key, kid, trusted, ...(o.endorsement === undefined ? {} : { endorsement: o.endorsement }) });
  const entries: Record<string, ManifestEntry> = {};
  const reports: GatewayReport[] = [];
  const counts: Record<IssueOutcome, number> = { new: 0, changed: 0, renewed: 0, rekeyed: 0, repaired: 0, unchanged: 0 };
  const inflight = new Set<Promise<void>>();
  let failure: unknown;
  let done = 0;
  const total = fleet.gateways.length;

  const finish = (plan: Plan, entry: ManifestEntry, changes?: ChangeSummary) => {
    entries[plan.gateway] = entry;
    counts[plan.outcome]++;
    reports.push({ gateway: plan.gateway, outcome: plan.outcome, version: entry.version, bytes: entry.bytes, things: plan.things, principals: plan.principals, ...(changes ? { changes } : {}) });
    done++;
    if (o.progress && (done % 100 === 0 || done === total)) o.progress(done, total);
  };

  try {
    for (const gw of fleet.gateways as FleetGateway[]) {
      if (failure !== undefined) break;
      const file = join(o.dir, snapshotFileName(gw.id));
      const prevEntry = manifest.gateways[gw.id];
      const previous: PreviousIssue | undefined = prevEntry === undefined ? undefined : { entry: prevEntry, fileIntact: sha256File(file) === prevEntry.sha256 };
      const plan = planGateway(prepared, gw, previous, { issuedAt, kid }, file);
      if (plan.job === undefined) {
        finish(plan, prevEntry!);
        continue;
      }
      const job = plan.job;
      const p = signer
        .sign(job)
        .then((signed) => {
          finish(
            plan,
            { version: job.version, issuedAt, expiresAt: signed.expiresAt, file: snapshotFileName(gw.id), sha256: signed.sha256, sliceSha256: plan.sliceSha256, kid, bytes: signed.bytes },
            signed.changes,
          );
        })
        .catch((err: unknown) => {
          failure ??= new EwError('EW_STORE_IO', `gateway ${gw.id}: ${(err as Error).message}`, { where: file, cause: err });
        })
        .finally(() => inflight.delete(p));
      inflight.add(p);
      if (inflight.size >= signer.capacity) await Promise.race(inflight);
    }
    await Promise.all(inflight);
  } finally {
    await signer.close();
  }

  const t3 = performance.now();
  // The gateways that left the fleet: no snapshot is issued for them any more.
  const inFleet = new Set(fleet.gateways.map((g) => g.id));
  const removed = Object.keys(manifest.gateways).filter((id) => !inFleet.has(id));
  // Keep what was signed before a failure: those files are on disk, and the manifest must name them.
  for (const id of Object.keys(manifest.gateways)) if (inFleet.has(id) && entries[id] === undefined) entries[id] = manifest.gateways[id]!;
  const issuedAny = reports.some((r) => r.outcome !== 'unchanged');
  writeManifest(o.dir, { formatVersion: 1, lastIssuedAt: issuedAny ? Math.max(manifest.lastIssuedAt, issuedAt) : manifest.lastIssuedAt, gateways: entries });
  for (const id of removed) {
    const f = join(o.dir, snapshotFileName(id));
    if (existsSync(f)) unlinkSync(f);
  }
  const t4 = performance.now();
  if (failure !== undefined) throw failure;
  const order = new Map(fleet.gateways.map((g, i) => [g.id, i]));
  reports.sort((a, b) => order.get(a.gateway)! - order.get(b.gateway)!);
  const ms = (a: number, b: number) => Math.round(b - a);
  const timings = { validateMs: ms(t0, t1), prepareMs: ms(t1, t2), issueMs: ms(t2, t3), manifestMs: ms(t3, t4) };
  const everywhere = { count: prepared.everywhere.length, ids: prepared.everywhere.slice(0, 5).map((n) => principalId(prepared, n)) };
  return { tenant: tenant.tenant, kid, issuedAt, threads: signer.threads, gateways: reports, removed, warnings, counts, everywhere, timings };
}
