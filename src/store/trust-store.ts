// The keys a gateway trusts for snapshots: the configured ones (trust.keys) and the ones it learned
// from key endorsements carried by snapshots it accepted, with the retirement times those
// endorsements set (docs/snapshots.md, "Rotating the signing key").
//
//   <stateDir>/trust.json   {"formatVersion": 1,
//                            "learned": [{"kid", "endorsedBy", "at", "endorsement": <base64 COSE>}],
//                            "retired": [{"kid", "at": <ms>, "iso"}]}
//
// Learned keys are kept with their endorsement and verified again from the configured keys at every
// start and reload (a chain: a learned key may endorse the next); one whose chain no longer verifies
// (its root was removed from trust.keys) is not trusted, and is logged. Retirement times only ever
// move earlier: a later endorsement cannot un-retire a key. Written atomically (atomic-file.ts).
// Losing the file loses nothing in force: the snapshot held carries its own endorsement.
import { join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { isEwError } from '../errors.js';
import { learnedKeys, parseEndorsement, type Endorsement } from '../snapshot/endorsement.js';
import type { TrustedKeys } from '../snapshot/keys.js';
import { readFileBounded, writeFileAtomic } from './atomic-file.js';

export const TRUST_FILE = 'trust.json';
const MAX_TRUST_FILE_BYTES = 1024 * 1024;

export type TrustLog = (level: 'info' | 'warn' | 'error', msg: string) => void;

/** What `edgewarden status` shows of the keys. */
export interface TrustSummary {
  readonly configured: readonly string[];
  readonly learned: readonly { kid: string; endorsedBy: string; at: string }[];
  readonly retired: readonly { kid: string; at: string; passed: boolean }[];
}

export class TrustStore {
  readonly path: string;
  private configured: TrustedKeys;
  /** Every endorsement on file, verified or not (a root may come back to trust.keys). */
  private endorsements: Uint8Array[] = [];
  private learned = new Map<string, Endorsement>();
  private keySet: Map<string, KeyObject> = new Map();
  private retiredAt = new Map<string, number>();
  private writing: Promise<void> = Promise.resolve();

  private constructor(stateDir: string, configured: TrustedKeys, private readonly log: TrustLog) {
    this.path = join(stateDir, TRUST_FILE);
    this.configured = configured;
  }

  /** Reads <stateDir>/trust.json (missing: nothing learned). Never throws for its content: problems are logged. `now`: the gateway's effective now, for the warning about retired configured keys. */
  static async load(stateDir: string, configured: TrustedKeys, log: TrustLog, now: number): Promise<TrustStore> {
    const store = new TrustStore(stateDir, configured, log);
    try {
      const bytes = await readFileBounded(store.path, MAX_TRUST_FILE_BYTES);
      if (bytes !== undefined) store.parse(bytes.toString('utf8'));
    } catch (err) {
      log('error', `${store.path}: cannot be read (${isEwError(err) ? err.message : (err as Error).message}); no learned keys or retirements from it`);
    }
    store.derive();
    for (const [kid, at] of store.retiredAt) {
      if (configured.has(kid) && at <= now) {
        const successors = [...store.learned.values()].filter((e) => e.endorserKid === kid).map((e) => e.kid);
        log('warn', `trusted key "${kid}" in trust.keys was retired at ${new Date(at).toISOString()}: it signs nothing acceptable any more; replace it in trust.keys by its successor${successors.length > 0 ? ` ("${successors.join('", "')}")` : ''}`);
      }
    }
    return store;
  }

  private parse(text: string): void {
    let doc: { learned?: unknown; retired?: unknown };
    try {
      doc = JSON.parse(text) as typeof doc;
    } catch {
      this.log('error', `${this.path}: not JSON; no learned keys or retirements from it`);
      return;
    }
    for (const l of Array.isArray(doc.learned) ? doc.learned : []) {
      const b64 = (l as { endorsement?: unknown })?.endorsement;
      if (typeof b64 === 'string') this.endorsements.push(Buffer.from(b64, 'base64'));
    }
    for (const r of Array.isArray(doc.retired) ? doc.retired : []) {
      const { kid, at } = (r ?? {}) as { kid?: unknown; at?: unknown };
      if (typeof kid === 'string' && typeof at === 'number' && Number.isSafeInteger(at)) this.retire(kid, at);
    }
  }

  /** The learned keys from the endorsements on file, verified from the configured keys. */
  private derive(): void {
    const { learned, refused } = learnedKeys(this.configured, this.endorsements);
    for (const r of refused) this.log('warn', `${this.path}: a learned key is not trusted: ${r.reason}`);
    this.learned = learned;
    this.keySet = new Map(this.configured);
    for (const [kid, e] of learned) this.keySet.set(kid, e.publicKey);
  }

  private retire(kid: string, at: number): boolean {
    const cur = this.retiredAt.get(kid);
    if (cur !== undefined && cur <= at) return false;
    this.retiredAt.set(kid, at);
    return true;
  }

  /** The keys trusted already: configured and learned (retired ones included: see retired()). */
  keys(): TrustedKeys {
    return this.keySet;
  }

  /** Retirement times by kid. */
  retired(): ReadonlyMap<string, number> {
    return this.retiredAt;
  }

  /** A configuration reload: the learned keys are verified again from the new configured keys. */
  setConfigured(configured: TrustedKeys): void {
    this.configured = configured;
    this.derive();
  }

  /**
   * Records an endorsement carried by a snapshot the gateway accepted (or loaded): the endorsed key
   * is learned (unless configured) and the endorser's retirement, if any, kept (only ever earlier).
   * Writes trust.json when something changed. Throws EW_STORE_IO when it cannot be written.
   */
  async record(e: Endorsement): Promise<boolean> {
    let changed = false;
    if (!this.configured.has(e.kid) && !this.learned.has(e.kid)) {
      this.endorsements.push(e.bytes);
      this.learned.set(e.kid, e);
      this.keySet.set(e.kid, e.publicKey);
      changed = true;
      this.log('info', `learned snapshot key "${e.kid}", endorsed by "${e.endorserKid}"`);
    }
    if (e.retiresSigner !== undefined && this.retire(e.endorserKid, e.retiresSigner)) {
      changed = true;
      this.log('info', `snapshot key "${e.endorserKid}" retires at ${new Date(e.retiresSigner).toISOString()} (it endorsed "${e.kid}")`);
    }
    if (changed) await this.write();
    return changed;
  }

  private write(): Promise<void> {
    const run = async (): Promise<void> => {
      const doc = {
        formatVersion: 1,
        learned: [...this.learned.values()].map((e) => ({ kid: e.kid, endorsedBy: e.endorserKid, at: new Date(e.issuedAt).toISOString(), endorsement: Buffer.from(e.bytes).toString('base64') })),
        retired: [...this.retiredAt].map(([kid, at]) => ({ kid, at, iso: new Date(at).toISOString() })),
      };
      // Endorsements on file that do not verify now (their root left trust.keys) are kept for later.
      const kept = new Set(doc.learned.map((l) => l.endorsement));
      for (const b of this.endorsements) {
        const b64 = Buffer.from(b).toString('base64');
        if (kept.has(b64)) continue;
        let e: Endorsement | undefined;
        try {
          e = parseEndorsement(b).endorsement;
        } catch {
          continue; // not an endorsement at all: dropped
        }
        doc.learned.push({ kid: e.kid, endorsedBy: e.endorserKid, at: new Date(e.issuedAt).toISOString(), endorsement: b64 });
        kept.add(b64);
      }
      await writeFileAtomic(this.path, JSON.stringify(doc, null, 2) + '\n');
    };
    const p = this.writing.then(run, run);
    this.writing = p.catch(() => undefined);
    return p;
  }

  summary(now: number): TrustSummary {
    return {
      configured: [...this.configured.keys()],
      learned: [...this.learned.values()].map((e) => ({ kid: e.kid, endorsedBy: e.endorserKid, at: new Date(e.issuedAt).toISOString() })),
      retired: [...this.retiredAt].map(([kid, at]) => ({ kid, at: new Date(at).toISOString(), passed: at <= now })),
    };
  }
}
