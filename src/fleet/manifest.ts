// The fleet directory (issue 14): what `fleet sign` writes and `fleet publish` reads.
//
//   DIR/<gatewayId>.cose        the newest signed snapshot of each gateway
//   DIR/fleet-manifest.json     what was issued: per gateway its version, times, the snapshot's
//                               sha256 and the hash of the slice's content (to see "unchanged")
//   DIR/fleet-published.json    what `fleet publish` has put on each broker (to resume a rerun)
//
// Both JSON files are written atomically (temp file, fsync, rename): a crash leaves the old or the
// new file, never a torn one. Reads are strict: a wrong shape is an error naming the file and field.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { EwError } from '../errors.js';
import { writeFileAtomicSync } from '../store/atomic-file.js';

export const MANIFEST_FILE = 'fleet-manifest.json';
export const PUBLISHED_FILE = 'fleet-published.json';

export interface ManifestEntry {
  /** The snapshot's version: strictly increasing per gateway (see fleet sign). */
  readonly version: number;
  /** ms since the epoch. */
  readonly issuedAt: number;
  readonly expiresAt: number;
  /** File name of the snapshot inside DIR. */
  readonly file: string;
  /** sha256 (hex) of the snapshot file's bytes. */
  readonly sha256: string;
  /** sha256 (hex) of the slice's content without version and times: equal means unchanged. */
  readonly sliceSha256: string;
  /** kid of the signing key. */
  readonly kid: string;
  readonly bytes: number;
}

export interface FleetManifest {
  readonly formatVersion: 1;
  /** The newest issuedAt of any snapshot issued from this directory (the clock-back guard). */
  readonly lastIssuedAt: number;
  readonly gateways: Readonly<Record<string, ManifestEntry>>;
}

export interface PublishedEntry {
  readonly version: number;
  readonly sha256: string;
  /** ms since the epoch. */
  readonly publishedAt: number;
}

/** Per broker URL (without credentials), per gateway: what that broker holds retained. */
export interface PublishedState {
  readonly formatVersion: 1;
  readonly brokers: Readonly<Record<string, Readonly<Record<string, PublishedEntry>>>>;
}

export function snapshotFileName(gatewayId: string): string {
  return `${gatewayId}.cose`;
}

function readJson(path: string): unknown | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new EwError('EW_STORE_IO', `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { where: path, cause: err });
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new EwError('EW_STORE_IO', `not JSON (${(err as Error).message})`, { where: path, cause: err });
  }
}

const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isHex = (v: unknown): v is string => typeof v === 'string' && /^[0-9a-f]{64}$/.test(v);

function bad(path: string, field: string, what: string): EwError {
  return new EwError('EW_STORE_IO', `${field}: ${what}`, { where: path });
}

/** The manifest of DIR, or an empty one when DIR has none yet. */
export function readManifest(dir: string): FleetManifest {
  const path = join(dir, MANIFEST_FILE);
  const raw = readJson(path);
  if (raw === undefined) return { formatVersion: 1, lastIssuedAt: 0, gateways: {} };
  if (!isObj(raw) || raw.formatVersion !== 1) throw bad(path, 'formatVersion', 'must be 1');
  if (!isNum(raw.lastIssuedAt)) throw bad(path, 'lastIssuedAt', 'must be a time in ms');
  if (!isObj(raw.gateways)) throw bad(path, 'gateways', 'must be an object');
  for (const [id, e] of Object.entries(raw.gateways)) {
    const at = `gateways.${id}`;
    if (!isObj(e)) throw bad(path, at, 'must be an object');
    for (const k of ['version', 'issuedAt', 'expiresAt', 'bytes'] as const) if (!isNum(e[k])) throw bad(path, `${at}.${k}`, 'must be a non-negative integer');
    for (const k of ['sha256', 'sliceSha256'] as const) if (!isHex(e[k])) throw bad(path, `${at}.${k}`, 'must be a sha256 in hex');
    if (e.file !== snapshotFileName(id)) throw bad(path, `${at}.file`, `must be ${JSON.stringify(snapshotFileName(id))}`);
    if (typeof e.kid !== 'string' || e.kid === '') throw bad(path, `${at}.kid`, 'must be a key id');
  }
  return raw as unknown as FleetManifest;
}

export function writeManifest(dir: string, manifest: FleetManifest): void {
  writeFileAtomicSync(join(dir, MANIFEST_FILE), `${JSON.stringify(manifest, null, 1)}\n`, { mode: 0o644 });
}

export function readPublished(dir: string): PublishedState {
  const path = join(dir, PUBLISHED_FILE);
  const raw = readJson(path);
  if (raw === undefined) return { formatVersion: 1, brokers: {} };
  if (!isObj(raw) || raw.formatVersion !== 1) throw bad(path, 'formatVersion', 'must be 1');
  if (!isObj(raw.brokers)) throw bad(path, 'brokers', 'must be an object');
  for (const [url, gws] of Object.entries(raw.brokers)) {
    if (!isObj(gws)) throw bad(path, `brokers.${url}`, 'must be an object');
    for (const [id, e] of Object.entries(gws)) {
      const at = `brokers.${url}.${id}`;
      if (!isObj(e) || !isNum(e.version) || !isHex(e.sha256) || !isNum(e.publishedAt)) throw bad(path, at, 'must be {version, sha256, publishedAt}');
    }
  }
  return raw as unknown as PublishedState;
}

export function writePublished(dir: string, state: PublishedState): void {
  writeFileAtomicSync(join(dir, PUBLISHED_FILE), `${JSON.stringify(state, null, 1)}\n`, { mode: 0o644 });
}
