// Runs the tap suite, passes its output through, and ends with the plain summary line
// "N passed, N failed" (and ", N skipped") that CI reads. Exit code: tap's.
import { spawn } from 'node:child_process';
import { join } from 'node:path';

const tapBin = join(process.cwd(), 'node_modules', '.bin', 'tap');
const child = spawn(tapBin, process.argv.slice(2), { stdio: ['inherit', 'pipe', 'inherit'] });
let tail = '';
child.stdout.on('data', (chunk) => {
  process.stdout.write(chunk);
  tail = (tail + chunk.toString('utf8')).slice(-4096);
});
child.on('close', (code, signal) => {
  const m = /# \{ total: (\d+)(?:, pass: (\d+))?(?:, fail: (\d+))?(?:, skip: (\d+))?(?:, todo: (\d+))?/.exec(tail);
  const total = Number(m?.[1] ?? 0);
  const pass = Number(m?.[2] ?? 0);
  const fail = Number(m?.[3] ?? (m ? 0 : 1));
  const skip = Number(m?.[4] ?? 0) + Number(m?.[5] ?? 0);
  console.log(`tests: ${pass} passed, ${fail} failed${skip ? `, ${skip} skipped` : ''}`);
  process.exitCode = code ?? 1;
  if (signal) console.error(`tap ended by ${signal}`);
  if (total === 0) process.exitCode = 1;
});
