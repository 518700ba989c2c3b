// In the bundle (dist/edgewarden.cjs), the same file is the signing threads' script: started as a
// worker with the sign worker's data, it runs that and nothing else (src/fleet/signer.ts).
import { isMainThread, workerData } from 'node:worker_threads';

if (!isMainThread && (workerData as { edgewardenSignWorker?: unknown } | null)?.edgewardenSignWorker === true) {
  void import('./sign-worker.js').then((m) => m.runSignWorker());
}
