// Where `fleet sign` signs: in signing threads (worker_threads running the bundle itself, see
// worker-entry.ts), one per core by default, or in this thread. A thread holds the signing key and
// only the slices it is given; each has a few jobs in flight, so memory stays bounded.
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { KeyObject } from 'node:crypto';
import type { TrustedKeys } from '../snapshot/keys.js';
import { signJob, type SignJob, type Signed } from './issue.js';
import type { SignRequest, SignWorkerData } from './sign-worker.js';

export interface Signer {
  /** Signing threads (0: this thread). */
  readonly threads: number;
  /** How many sign() calls may be outstanding at once; a caller keeps to it (memory stays bounded). */
  readonly capacity: number;
  sign(job: SignJob): Promise<Signed>;
  close(): Promise<void>;
}

// Defined only in the single-file executable (scripts/package.mjs).
declare const __EDGEWARDEN_SEA__: unknown;

/** The script a signing thread runs: the bundle, when this runs from it (not in the single-file executable, which has no file to start a thread from). */
export function workerScript(): string | undefined {
  if (typeof __EDGEWARDEN_SEA__ !== 'undefined') return undefined;
  const self = fileURLToPath(import.meta.url);
  return self.endsWith('.cjs') ? self : undefined;
}

export function defaultThreads(): number {
  return availableParallelism();
}

const IN_FLIGHT_PER_THREAD = 4;

export function createSigner(opts: { threads: number; key: KeyObject; kid: string; trusted: TrustedKeys; endorsement?: Uint8Array }): Signer {
  const script = workerScript();
  if (opts.threads < 1 || script === undefined) {
    const ctx = { key: opts.key, kid: opts.kid, trusted: opts.trusted, ...(opts.endorsement === undefined ? {} : { signOptions: { endorsement: opts.endorsement } }) };
    return { threads: 0, capacity: 1, sign: async (job) => signJob(job, ctx), close: async () => undefined };
  }
  const data: SignWorkerData = {
    edgewardenSignWorker: true,
    keyPem: opts.key.export({ type: 'pkcs8', format: 'pem' }).toString(),
    kid: opts.kid,
    trusted: [...opts.trusted].map(([kid, k]) => [kid, k.export({ type: 'spki', format: 'pem' }).toString()] as const),
    ...(opts.endorsement === undefined ? {} : { endorsement: opts.endorsement }),
  };
  interface Pending {
    resolve(s: Signed): void;
    reject(e: Error): void;
  }
  const threads = Array.from({ length: opts.threads }, () => {
    const worker = new Worker(script, { workerData: data });
    const pending = new Map<number, Pending>();
    const fail = (err: Error) => {
      for (const p of pending.values()) p.reject(err);
      pending.clear();
    };
    worker.on('message', (m: { id: number; signed?: Signed; error?: string }) => {
      const p = pending.get(m.id);
      if (!p) return;
      pending.delete(m.id);
      if (m.signed) p.resolve(m.signed);
      else p.reject(new Error(m.error ?? 'signing failed'));
      wake();
    });
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`signing thread exited (${code})`)));
    return { worker, pending };
  });
  let nextId = 1;
  const waiting: (() => void)[] = [];
  const wake = () => waiting.shift()?.();
  const free = () => threads.reduce((best, t) => (t.pending.size < best.pending.size ? t : best));

  return {
    threads: threads.length,
    capacity: threads.length * IN_FLIGHT_PER_THREAD,
    async sign(job) {
      let t = free();
      while (t.pending.size >= IN_FLIGHT_PER_THREAD) {
        await new Promise<void>((r) => waiting.push(r));
        t = free();
      }
      const id = nextId++;
      return new Promise<Signed>((resolve, reject) => {
        t.pending.set(id, { resolve, reject });
        t.worker.postMessage({ id, job } satisfies SignRequest);
      });
    },
    async close() {
      await Promise.all(threads.map((t) => t.worker.terminate()));
    },
  };
}
