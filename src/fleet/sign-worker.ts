// A signing thread of `fleet sign`: receives planned slices (SignJob), answers signed snapshots.
// It holds the signing key and the keys the last snapshots may be signed with, nothing of the tenant.
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';
import { signJob, type SignJob } from './issue.js';

export interface SignWorkerData {
  readonly edgewardenSignWorker: true;
  readonly keyPem: string;
  readonly kid: string;
  /** [kid, public key PEM] */
  readonly trusted: readonly (readonly [string, string])[];
  /** A key endorsement carried in each snapshot's header. */
  readonly endorsement?: Uint8Array;
}

export interface SignRequest {
  readonly id: number;
  readonly job: SignJob;
}

export function runSignWorker(): void {
  const data = workerData as SignWorkerData;
  const ctx = {
    key: createPrivateKey(data.keyPem),
    kid: data.kid,
    trusted: new Map<string, KeyObject>(data.trusted.map(([kid, pem]) => [kid, createPublicKey(pem)])),
    ...(data.endorsement === undefined ? {} : { signOptions: { endorsement: data.endorsement } }),
  };
  parentPort!.on('message', (m: SignRequest) => {
    try {
      parentPort!.postMessage({ id: m.id, signed: signJob(m.job, ctx) });
    } catch (err) {
      parentPort!.postMessage({ id: m.id, error: (err as Error).message });
    }
  });
}
