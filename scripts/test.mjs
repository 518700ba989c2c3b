// Runs the tap suite, passes its output through, and ends with
//   - every failed test, with the file and subtests it sits in and the first lines of its diagnostics
//     (CI keeps only the tail of the output, so a failure has to be readable there), and
//   - the plain summary line "tests: N passed, N failed" (and ", N skipped") that CI reads.
// Exit code: tap's.
import { spawn } from 'node:child_process';
import { join } from 'node:path';

const tapBin = join(process.cwd(), 'node_modules', '.bin', 'tap');
const child = spawn(tapBin, process.argv.slice(2), { stdio: ['inherit', 'pipe', 'inherit'] });

let tail = '';
let partial = '';
/** Subtest names by indentation depth (4 spaces a level), for the line being read. */
const path = [];
/** Failed tests: { where, lines } — where is "file > subtest > … > assertion". */
const failures = [];
let diag = null; // the failure whose YAML diagnostics are being read, and their indentation
const DIAG_LINES = 24;

function readLine(line) {
  const indent = /^ */.exec(line)[0].length;
  const text = line.slice(indent);
  if (diag) {
    if (text === '---' && diag.lines.length === 0) return;
    if (text === '...' || (indent < diag.indent && text !== '')) diag = null;
    else {
      if (diag.failure.lines.length < DIAG_LINES) diag.failure.lines.push(line.slice(diag.indent));
      return;
    }
  }
  const level = indent / 4;
  const sub = /^# Subtest: (.*)$/.exec(text);
  if (sub) {
    path.length = level;
    path[level] = sub[1];
    return;
  }
  const notOk = /^not ok \d+ - (.*?)(?: # time=.*)?$/.exec(text);
  if (notOk) {
    const where = [...path.slice(0, level), notOk[1]].filter(Boolean);
    // A failed subtest repeats as "not ok" at every level above it; report the innermost only.
    const inner = failures.find((f) => f.where.length > where.length && where.every((w, i) => f.where[i] === w));
    if (!inner) {
      const failure = { where, lines: [] };
      failures.push(failure);
      diag = { failure, indent: indent + 2, lines: failure.lines };
    }
  }
}

child.stdout.on('data', (chunk) => {
  const s = chunk.toString('utf8');
  process.stdout.write(s);
  tail = (tail + s).slice(-4096);
  const lines = (partial + s).split('\n');
  partial = lines.pop() ?? '';
  for (const line of lines) readLine(line);
});

child.on('close', (code, signal) => {
  if (partial) readLine(partial);
  const m = /# \{ total: (\d+)(?:, pass: (\d+))?(?:, fail: (\d+))?(?:, skip: (\d+))?(?:, todo: (\d+))?/.exec(tail);
  const total = Number(m?.[1] ?? 0);
  const pass = Number(m?.[2] ?? 0);
  const fail = Number(m?.[3] ?? (m ? 0 : 1));
  const skip = Number(m?.[4] ?? 0) + Number(m?.[5] ?? 0);
  if (failures.length > 0) {
    console.log(`\nfailed (${failures.length}):`);
    for (const f of failures) {
      console.log(`  ✗ ${f.where.join(' > ')}`);
      for (const l of f.lines) console.log(`      ${l}`);
    }
    console.log('');
  }
  console.log(`tests: ${pass} passed, ${fail} failed${skip ? `, ${skip} skipped` : ''}`);
  process.exitCode = code ?? 1;
  if (signal) console.error(`tap ended by ${signal}`);
  if (total === 0) process.exitCode = 1;
});
