// `edgewarden snapshot diff`: which principal gains or loses which permission on which things, and
// whose credentials change (which sessions the new snapshot ends).
import { credentialChanges, describeCounts, type CredentialChange } from '../decide/credential-diff.js';
import { buildIndex } from '../decide/policy-index.js';
import { diffSnapshots } from '../decide/diff.js';
import { verifySnapshot } from '../snapshot/snapshot.js';
import { readSnapshotFile } from './io.js';
import { iso, type Io } from './output.js';
import { trustedKeysFrom } from './snapshot.js';

/** Credential lines shown before "+N more" (--json lists every one). */
const CREDENTIAL_LINES = 50;

export function diffCommand(fileA: string, fileB: string, opts: { trust?: string[]; json?: boolean; limit?: string }, io: Io): number {
  const keys = trustedKeysFrom(opts.trust);
  const a = buildIndex(verifySnapshot(readSnapshotFile(fileA), keys, { where: fileA }).payload);
  const b = buildIndex(verifySnapshot(readSnapshotFile(fileB), keys, { where: fileB }).payload);
  const d = diffSnapshots(a, b);
  const credentials = credentialChanges(a, b);
  if (opts.json) {
    io.out(JSON.stringify({ ...d, from: { ...d.from, expiresAt: iso(d.from.expiresAt) }, to: { ...d.to, expiresAt: iso(d.to.expiresAt) }, credentials }, null, 2));
    return 0;
  }
  const limit = opts.limit === undefined ? 10 : Math.max(1, Number(opts.limit) || 10);
  const list = (xs: readonly string[]) => (xs.length <= limit ? xs.join(', ') : `${xs.slice(0, limit).join(', ')} (+${xs.length - limit} more)`);
  io.out(`snapshot ${d.from.version} -> ${d.to.version}; expiry ${iso(d.from.expiresAt)} -> ${iso(d.to.expiresAt)}`);
  if (d.principalsAdded.length) io.out(`principals added: ${list(d.principalsAdded)}`);
  if (d.principalsRemoved.length) io.out(`principals removed: ${list(d.principalsRemoved)}`);
  if (d.revoked.length) io.out(`revoked: ${list(d.revoked)}`);
  if (d.reinstated.length) io.out(`reinstated: ${list(d.reinstated)}`);
  if (d.thingsAdded.length) io.out(`things added: ${list(d.thingsAdded)}`);
  if (d.thingsRemoved.length) io.out(`things removed: ${list(d.thingsRemoved)}`);
  for (const line of credentialLines(credentials)) io.out(line);
  for (const c of d.changes) {
    io.out(`${c.change === 'gains' ? '+' : '-'} ${c.kind} ${c.principal} ${c.change} ${c.permission} on ${c.things.length ? list(c.things) : 'no things'}`);
  }
  if (d.changes.length === 0) io.out('no permission changes');
  return 0;
}

function credentialLine(c: CredentialChange): string {
  const who = `${c.kind} ${c.principal}`;
  const held = describeCounts(c.dropped);
  switch (c.change) {
    case 'removed':
      return `! ${who} removed: its sessions end${held ? ` (${held})` : ''}`;
    case 'revoked':
      return `! ${who} revoked: its sessions end${held ? ` (${held})` : ''}`;
    case 'unserved':
      return `! ${who} no longer served by this gateway: its sessions end`;
    case 'changed': {
      const added = describeCounts(c.added);
      const parts = [held ? `sessions on ${held} end` : 'no session ends', ...(added ? [`added ${added}`] : [])];
      return `${held ? '!' : '~'} ${who} credentials changed: ${parts.join('; ')}`;
    }
  }
}

/** The credential section: whose sessions end (`!`), whose credentials only grow (`~`). */
export function credentialLines(changes: readonly CredentialChange[]): string[] {
  if (changes.length === 0) return ['no credential changes: no session ends'];
  const ending = changes.filter((c) => c.change !== 'changed' || describeCounts(c.dropped) !== '').length;
  const lines = [`credential changes: the sessions of ${ending} principal${ending === 1 ? '' : 's'} end when the gateway takes the new snapshot`];
  for (const c of changes.slice(0, CREDENTIAL_LINES)) lines.push(credentialLine(c));
  if (changes.length > CREDENTIAL_LINES) lines.push(`(+${changes.length - CREDENTIAL_LINES} more credential changes; --json lists all)`);
  return lines;
}
