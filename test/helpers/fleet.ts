// Fleet directories for the tests of `fleet publish`: the example policy signed (demo key) once per
// gateway id, the files named and listed in the manifest as `fleet sign` writes them.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { constants as osConstants } from 'node:os';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readManifest, snapshotFileName, writeManifest, type ManifestEntry } from '../../src/fleet/manifest.js';
import { verifySnapshot } from '../../src/snapshot/snapshot.js';
import { loadTrustedKeys } from '../../src/store/keys.js';
import { exampleSnapshot, DEMO_PUB } from './agent.js';
import { BIN, type CliResult } from './cli.js';
import { ROOT } from './policy.js';

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

/** The CLI as a child process that runs while the test goes on (cli() blocks until it exits). */
export function cliAsync(args: string[]): { child: ChildProcess; done: Promise<CliResult> } {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<CliResult>((resolve) => child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 + (osConstants.signals[signal] ?? 0) : null), stdout, stderr })));
  return { child, done };
}

/** What a client subscribed to `filter` receives: topic -> newest payload, in arrival order. */
export async function watch(url: string, filter: string | string[], opts: IClientOptions = {}): Promise<{ client: MqttClient; messages: Map<string, Buffer>; granted: number[]; end(): Promise<void> }> {
  const client = mqtt.connect(url, { clientId: `watch-${Math.random().toString(36).slice(2)}`, clean: true, protocolVersion: 5, reconnectPeriod: 0, ...opts });
  const messages = new Map<string, Buffer>();
  client.on('message', (topic, payload) => messages.set(topic, payload));
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  const granted = (await client.subscribeAsync(filter, { qos: 1 })).map((g) => g.qos);
  return { client, messages, granted, end: () => client.endAsync(true) };
}

export const snapshotTopic = (id: string) => `edgewarden/${id}/snapshot`;

/** The fenced block between `<!-- fleet-acl:NAME:begin -->` and `...:end -->` in docs/fleet.md (tests configure mosquitto with exactly it). */
export function docBlock(name: string): string {
  const doc = readFileSync(join(ROOT, 'docs', 'fleet.md'), 'utf8');
  const m = new RegExp(`<!-- fleet-acl:${name}:begin -->\\n\`\`\`\\n([\\s\\S]*?)\`\`\`\\n<!-- fleet-acl:${name}:end -->`).exec(doc);
  if (!m) throw new Error(`docs/fleet.md has no block fleet-acl:${name}`);
  return m[1]!;
}
