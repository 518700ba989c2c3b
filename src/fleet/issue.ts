// One gateway's turn in `fleet sign` (issue 14): its slice, whether it changed since the snapshot
// issued last, and if so (or when the last one nears its expiry, or the signing key changed) a new
// signed snapshot with a version above the last one, and what changed for that gateway. Pure but for
// the signing key: the caller reads and writes the files, and may run this in several threads.
import { createHash, type KeyObject } from 'node:crypto';
import { credentialChanges, describeCounts, type CredentialChange } from '../decide/credential-diff.js';
import { diffSnapshots } from '../decide/diff.js';
import { buildIndex } from '../decide/policy-index.js';
import { compilePolicy } from '../policy/validate.js';
import { sliceForGateway, type FleetGateway, type PreparedTenant } from '../policy/fleet.js';
import type { SnapshotPayload } from '../policy/schema.js';
import { signSnapshot } from '../snapshot/snapshot.js';
import type { ManifestEntry } from './manifest.js';
import { snapshotFileName } from './manifest.js';

/** new: no snapshot before; changed: the slice changed; renewed: same slice, the last one nears its expiry; rekeyed: same slice, another signing key. */
export type IssueOutcome = 'new' | 'changed' | 'renewed' | 'rekeyed' | 'unchanged';

export interface IssueContext {
  readonly issuedAt: number;
  readonly key: KeyObject;
  readonly kid: string;
}

/** What the last run issued for this gateway: its manifest entry, and that snapshot's payload when it could be read and verified. */
export interface PreviousIssue {
  readonly entry: ManifestEntry;
  readonly payload?: SnapshotPayload;
}

export interface ChangeSummary {
  readonly principalsAdded: number;
  readonly principalsRemoved: number;
  readonly revoked: number;
  readonly reinstated: number;
  readonly thingsAdded: number;
  readonly thingsRemoved: number;
  /** Permission changes (gains, losses) of principals on things. */
  readonly gains: number;
  readonly losses: number;
  /** Principals whose sessions end when the gateway takes the snapshot. */
  readonly sessionsEnd: number;
  readonly credentialChanges: number;
}

export interface IssueResult {
  readonly gateway: string;
  readonly outcome: IssueOutcome;
  /** The manifest entry after this run (the previous one when unchanged). */
  readonly entry: ManifestEntry;
  /** The new snapshot's bytes; absent when unchanged. */
  readonly bytes?: Buffer;
  /** Against the previous snapshot, when it could be read (changed, renewed, rekeyed). */
  readonly changes?: ChangeSummary;
  readonly things: number;
  readonly principals: number;
}

/** sha256 of a slice's content: the policy the gateway gets, without version and times. */
export function sliceHash(slice: object): string {
  return createHash('sha256').update(JSON.stringify(slice)).digest('hex');
}

/**
 * Issues (or not) one gateway's snapshot. The version is the issue time in ms, or one above the
 * last version when that is higher: strictly increasing per gateway with no counter to share, as
 * long as the issuing clock does not go back (fleet sign refuses a clock behind the manifest).
 */
export function issueGateway(prepared: PreparedTenant, gateway: FleetGateway, previous: PreviousIssue | undefined, ctx: IssueContext): IssueResult {
  const slice = sliceForGateway(prepared, gateway);
  const hash = sliceHash(slice);
  const counts = { things: slice.things?.length ?? 0, principals: (slice.users?.length ?? 0) + (slice.apiKeys?.length ?? 0) + (slice.applications?.length ?? 0) };
  const prev = previous?.entry;
  const version = prev === undefined ? ctx.issuedAt : Math.max(ctx.issuedAt, prev.version + 1);
  const payload = compilePolicy(slice, { version, issuedAt: ctx.issuedAt });
  let outcome: IssueOutcome;
  if (prev === undefined) outcome = 'new';
  else if (prev.sliceSha256 !== hash) outcome = 'changed';
  else if (prev.kid !== ctx.kid) outcome = 'rekeyed';
  // Renewed once less than half of the validity a new snapshot would get is left.
  else if (prev.expiresAt - ctx.issuedAt < (payload.expiresAt - ctx.issuedAt) / 2) outcome = 'renewed';
  else return { gateway: gateway.id, outcome: 'unchanged', entry: prev, ...counts };

  const bytes = signSnapshot(payload, ctx.key, ctx.kid);
  const entry: ManifestEntry = {
    version,
    issuedAt: ctx.issuedAt,
    expiresAt: payload.expiresAt,
    file: snapshotFileName(gateway.id),
    sha256: createHash('sha256').update(bytes).digest('hex'),
    sliceSha256: hash,
    kid: ctx.kid,
    bytes: bytes.length,
  };
  const changes = previous?.payload === undefined ? undefined : summarizeChanges(previous.payload, payload);
  return { gateway: gateway.id, outcome, entry, bytes, ...(changes ? { changes } : {}), ...counts };
}

/** The `snapshot diff` view between two payloads, counted. */
export function summarizeChanges(from: SnapshotPayload, to: SnapshotPayload): ChangeSummary {
  const a = buildIndex(from);
  const b = buildIndex(to);
  const d = diffSnapshots(a, b);
  const credentials: CredentialChange[] = credentialChanges(a, b);
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

/** One line: "+2 principals, -1 principal, 3 permission gains, 1 loss, sessions of 1 principal end". */
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
