// Fleet directories for the tests of `fleet publish`: the example policy signed (demo key) once per
// gateway id, the files named and listed in the manifest as `fleet sign` writes them.
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readManifest, snapshotFileName, writeManifest, type ManifestEntry } from '../../src/fleet/manifest.js';
import { verifySnapshot } from '../../src/snapshot/snapshot.js';
import { loadTrustedKeys } from '../../src/store/keys.js';
import { exampleSnapshot, DEMO_PUB } from './agent.js';

export const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** The manifest entry for snapshot `bytes` of `gatewayId`, as fleet sign would write it. */
export function entryFor(gatewayId: string, bytes: Buffer): ManifestEntry {
  const v = verifySnapshot(bytes, loadTrustedKeys([DEMO_PUB]));
  return {
    version: v.payload.version,
    issuedAt: v.payload.issuedAt,
    expiresAt: v.payload.expiresAt,
    file: snapshotFileName(gatewayId),
    sha256: sha256(bytes),
    sliceSha256: sha256(Buffer.from(gatewayId)),
    kid: v.kid,
    bytes: bytes.length,
  };
}

/** Writes DIR/<id>.cose and adds (or replaces) their manifest entries. Returns the bytes per id. */
export function addSnapshots(dir: string, snapshots: Record<string, Buffer>): void {
  const m = readManifest(dir);
  const gateways: Record<string, ManifestEntry> = { ...m.gateways };
  let lastIssuedAt = m.lastIssuedAt;
  for (const [id, bytes] of Object.entries(snapshots)) {
    writeFileSync(join(dir, snapshotFileName(id)), bytes);
    gateways[id] = entryFor(id, bytes);
    lastIssuedAt = Math.max(lastIssuedAt, gateways[id].issuedAt);
  }
  writeManifest(dir, { formatVersion: 1, lastIssuedAt, gateways });
}

/** The example policy's snapshot for gateway `id`, signed with the demo key. */
export function gatewaySnapshot(id: string, version = 1): Buffer {
  return exampleSnapshot(version, (p) => {
    p.gateway.id = id;
  });
}

export function makeFleet(dir: string, ids: readonly string[], version = 1): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (const id of ids) out[id] = gatewaySnapshot(id, version);
  addSnapshots(dir, out);
  return out;
}
