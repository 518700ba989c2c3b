// One gateway's turn in `fleet sign` (issue 14), in two steps:
//  - plan (main thread, cheap): its slice, whether it changed since the snapshot issued last, and if so
//    (or when the last one nears its expiry, the signing key changed, or its file is gone) the version
//    of the new one: above the last one;
//  - sign (any thread, the costly part): the payload, the signed snapshot, and what changed for that
//    gateway against the last snapshot (the `snapshot diff` view, counted).
// Pure but for the key and the previous snapshot's file, read when a diff is wanted.
import { createHash, type KeyObject } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { threadId } from 'node:worker_threads';
import { credentialChanges, describeCounts } from '../decide/credential-diff.js';
import { diffSnapshots } from '../decide/diff.js';
import { buildIndex } from '../decide/policy-index.js';
import { compilePolicy, expiryOf } from '../policy/validate.js';
import { sliceForGateway, type FleetGateway, type PreparedTenant } from '../policy/fleet.js';
import type { PolicyFile, SnapshotPayload } from '../policy/schema.js';
import type { TrustedKeys } from '../snapshot/keys.js';
import { signSnapshot, verifySnapshot } from '../snapshot/snapshot.js';
import type { ManifestEntry } from './manifest.js';

/**
 * new: no snapshot before; changed: the slice changed; renewed: same slice, the last one nears its
 * expiry; rekeyed: same slice, another signing key; repaired: same slice, but the last snapshot's
 * file is missing or not the one the manifest names.
 */
export type IssueOutcome = 'new' | 'changed' | 'renewed' | 'rekeyed' | 'repaired' | 'unchanged';
export const ISSUE_OUTCOMES: readonly IssueOutcome[] = ['new', 'changed', 'renewed', 'rekeyed', 'repaired', 'unchanged'];

export interface PlanContext {
  readonly issuedAt: number;
  readonly kid: string;
}

/** What the last run issued for this gateway. */
export interface PreviousIssue {
  readonly entry: ManifestEntry;
  /** Whether DIR still holds that snapshot, byte for byte (its sha256 is the entry's). */
  readonly fileIntact: boolean;
}

export interface Plan {
  readonly gateway: string;
  readonly outcome: IssueOutcome;
  /** sha256 of the slice's content (without version and times). */
  readonly sliceSha256: string;
  readonly things: number;
  readonly principals: number;
  /** What to sign; absent when unchanged. */
  readonly job?: SignJob;
}

/**
 * A slice to sign: everything a signing thread needs, and nothing of the rest of the tenant. The
 * slice goes as its JSON text (the one its hash is taken of): a thread gets a string copied, not an
 * object graph cloned.
 */
export interface SignJob {
  readonly gateway: string;
  readonly sliceJson: string;
  readonly version: number;
  readonly issuedAt: number;
  /** Where the new snapshot goes (written as a temp file, then renamed). */
  readonly file: string;
  /** The last snapshot's file is intact: the diff is taken against it (read before it is replaced). */
  readonly diff: boolean;
}

export interface ChangeSummary {
  readonly principalsAdded: number;
  readonly principalsRemoved: number;
  readonly revoked: number;
  readonly reinstated: number;
  readonly thingsAdded: number;
  readonly thingsRemoved: number;
  /** Permission changes of principals on things. */
  readonly gains: number;
  readonly losses: number;
  /** Principals whose sessions end when the gateway takes the snapshot. */
  readonly sessionsEnd: number;
  readonly credentialChanges: number;
}

export interface Signed {
  readonly gateway: string;
  /** Length of the snapshot written. */
  readonly bytes: number;
  readonly expiresAt: number;
  readonly sha256: string;
  /** Against the last snapshot, when it could be read and verified. */
  readonly changes?: ChangeSummary;
}

/** A slice's JSON text, and its sha256: the content the gateway gets, without version and times. */
export function sliceHash(slice: object): { json: string; sha256: string } {
  const json = JSON.stringify(slice);
  return { json, sha256: createHash('sha256').update(json).digest('hex') };
}

/**
 * The plan for one gateway. The version is the issue time in ms, or one above the last version when
 * that is higher: strictly increasing per gateway with no counter to share, as long as the issuing
 * clock does not go back (fleet sign refuses a clock behind the manifest's newest issue).
 */
export function planGateway(prepared: PreparedTenant, gateway: FleetGateway, previous: PreviousIssue | undefined, ctx: PlanContext, file: string): Plan {
  const slice = sliceForGateway(prepared, gateway);
  const { json, sha256: hash } = sliceHash(slice);
  const counts = { things: slice.things?.length ?? 0, principals: (slice.users?.length ?? 0) + (slice.apiKeys?.length ?? 0) + (slice.applications?.length ?? 0) };
  const prev = previous?.entry;
  let outcome: IssueOutcome;
  if (prev === undefined) outcome = 'new';
  else if (prev.sliceSha256 !== hash) outcome = 'changed';
  else if (prev.kid !== ctx.kid) outcome = 'rekeyed';
  else if (previous?.fileIntact !== true) outcome = 'repaired';
  // Renewed once less than half of the validity a new snapshot would get is left.
  else if (prev.expiresAt - ctx.issuedAt < (expiryOf(slice, ctx.issuedAt) - ctx.issuedAt) / 2) outcome = 'renewed';
  else return { gateway: gateway.id, outcome: 'unchanged', sliceSha256: hash, ...counts };
  const version = prev === undefined ? ctx.issuedAt : Math.max(ctx.issuedAt, prev.version + 1);
  const job: SignJob = { gateway: gateway.id, sliceJson: json, version, issuedAt: ctx.issuedAt, file, diff: previous?.fileIntact === true };
  return { gateway: gateway.id, outcome, sliceSha256: hash, ...counts, job };
}

export interface SignContext {
  readonly key: KeyObject;
  readonly kid: string;
  /** Keys the last snapshots may be signed with (for the diff). */
  readonly trusted: TrustedKeys;
  /** Passed to signSnapshot (e.g. a key endorsement). */
  readonly signOptions?: Parameters<typeof signSnapshot>[3];
}

/**
 * Signs one planned slice, counts what changed against the last snapshot, and writes the new one
 * (a temp file renamed over the last: a reader sees the old file or the new one).
 */
export function signJob(job: SignJob, ctx: SignContext): Signed {
  const payload = compilePolicy(JSON.parse(job.sliceJson) as PolicyFile, { version: job.version, issuedAt: job.issuedAt });
  const bytes = signSnapshot(payload, ctx.key, ctx.kid, ctx.signOptions);
  const before = job.diff ? readPrevious(job.file, ctx.trusted) : undefined;
  const tmp = `${job.file}.tmp-${process.pid}-${threadId}`;
  writeFileSync(tmp, bytes, { mode: 0o644 });
  renameSync(tmp, job.file);
  return {
    gateway: job.gateway,
    bytes: bytes.length,
    expiresAt: payload.expiresAt,
    sha256: createHash('sha256').update(bytes).digest('hex'),
    ...(before === undefined ? {} : { changes: summarizeChanges(before, payload) }),
  };
}

function readPrevious(file: string, trusted: TrustedKeys): SnapshotPayload | undefined {
  try {
    return verifySnapshot(readFileSync(file), trusted, { where: file }).payload;
  } catch {
    return undefined; // no diff: the summary says so
  }
}

/** The `snapshot diff` view between two payloads, counted. */
export function summarizeChanges(from: SnapshotPayload, to: SnapshotPayload): ChangeSummary {
  const a = buildIndex(from);
  const b = buildIndex(to);
  const d = diffSnapshots(a, b);
  const credentials = credentialChanges(a, b);
  return {
    principalsAdded: d.principalsAdded.length,
    principalsRemoved: d.principalsRemoved.length,
    revoked: d.revoked.length,
    reinstated: d.reinstated.length,
    thingsAdded: d.thingsAdded.length,
    thingsRemoved: d.thingsRemoved.length,
    gains: d.changes.filter((c) => c.change === 'gains').length,
    losses: d.changes.filter((c) => c.change === 'loses').length,
    sessionsEnd: credentials.filter((c) => c.change !== 'changed' || describeCounts(c.dropped) !== '').length,
    credentialChanges: credentials.length,
  };
}

/** One line: "+2 principals, 1 revoked, 3 permission gains, 1 credential change (sessions of 1 principal end)". */
export function describeChanges(c: ChangeSummary): string {
  const parts: string[] = [];
  const n = (k: number, one: string, many = `${one}s`) => `${k} ${k === 1 ? one : many}`;
  if (c.principalsAdded) parts.push(`+${n(c.principalsAdded, 'principal')}`);
  if (c.principalsRemoved) parts.push(`-${n(c.principalsRemoved, 'principal')}`);
  if (c.revoked) parts.push(`${c.revoked} revoked`);
  if (c.reinstated) parts.push(`${c.reinstated} reinstated`);
  if (c.thingsAdded) parts.push(`+${n(c.thingsAdded, 'thing')}`);
  if (c.thingsRemoved) parts.push(`-${n(c.thingsRemoved, 'thing')}`);
  if (c.gains) parts.push(n(c.gains, 'permission gain'));
  if (c.losses) parts.push(n(c.losses, 'permission loss', 'permission losses'));
  if (c.credentialChanges) parts.push(`${n(c.credentialChanges, 'credential change')} (sessions of ${n(c.sessionsEnd, 'principal')} end)`);
  return parts.length === 0 ? 'no permission or credential change' : parts.join(', ');
}

export type { ManifestEntry };
