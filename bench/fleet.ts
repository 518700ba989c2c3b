// The fleet section of the bench (issue 14): `edgewarden fleet sign`, the real command, on a tenant of
// 100,000 things and 120,000 principals (bench/fleet-tenant.ts), written as JSON, over two fleets:
// 1,000 gateways of 100 things (YAML) and 10,000 gateways of 10 things (CSV). For each: the time to
// read, validate, slice and sign all (with a signing thread per core), the run's peak memory (its
// own maxRSS, threads included), and the size of one gateway's snapshot; then a rerun, which issues
// nothing (every slice unchanged); and for the 10,000, side by side, the same run on one thread.
// Goals (this 2-core machine): all 10,000 in <= 60 s, <= 1 GB peak, a 100-thing slice <= 64 KB.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { generateKeyPair } from '../src/snapshot/keys.js';
import { BIN, packageNodeFlags } from './agent-process.js';
import { generateFleet, generateFleetTenant } from './fleet-tenant.js';

export type FleetFigures = Record<string, number>;

const GOAL_SECONDS = 60;
const GOAL_PEAK_MB = 1024;
const GOAL_SLICE_BYTES = 64 * 1024;
const ISSUED_AT = '2027-01-01T00:00:00Z';
const RERUN_AT = '2027-01-01T01:00:00Z';

interface RunReport {
  seconds: number;
  peakRssMB: number;
  threads: number;
  counts: Record<string, number>;
  timings: { validateMs: number; prepareMs: number; issueMs: number; manifestMs: number };
  gateways: { bytes: number; things: number; principals: number }[];
}

function signRun(dir: string, fleetFile: string, out: string, issuedAt: string, threads?: number): RunReport {
  const args = [...packageNodeFlags(), BIN, 'fleet', 'sign', join(dir, 'tenant.json'), fleetFile, '-k', join(dir, 'cloud.key.pem'), '-o', out, '--issued-at', issuedAt, '--json'];
  if (threads !== undefined) args.push('--threads', String(threads));
  const stdout = execFileSync(process.execPath, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 256 << 20 });
  return JSON.parse(stdout) as RunReport;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const int = (n: number): string => Math.round(n).toLocaleString('en-US');
const kb = (n: number): string => (n / 1024).toFixed(1);

export async function fleetSection(o: { progress: (line: string) => void }): Promise<{ figures: FleetFigures; lines: string[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'ew-bench-fleet-'));
  try {
    o.progress('fleet: generating the tenant (100,000 things, 120,000 principals)');
    const { tenant } = generateFleetTenant({ things: 100_000, principals: 120_000, thingsPerSite: 10, seed: 14 });
    writeFileSync(join(dir, 'tenant.json'), JSON.stringify(tenant));
    const keys = generateKeyPair();
    writeFileSync(join(dir, 'cloud.key.pem'), keys.privateKeyPem, { mode: 0o600 });
    const big = generateFleet(1_000, 10);
    writeFileSync(join(dir, 'fleet-1000.yaml'), stringify(big));
    const small = generateFleet(10_000, 1);
    writeFileSync(join(dir, 'fleet-10000.csv'), `id,role,resourceGroups\n${small.gateways.map((g) => `${g.id},${g.role},${g.resourceGroups.join(' ')}`).join('\n')}\n`);

    const figures: FleetFigures = {};
    const lines = ['fleet sign: a tenant of 100,000 things and 120,000 principals (JSON), sliced and signed per gateway (bench/fleet.ts)'];
    const cases = [
      { key: 'fleet1000x100', label: '1,000 gateways of 100 things', file: join(dir, 'fleet-1000.yaml') },
      { key: 'fleet10000x10', label: '10,000 gateways of 10 things', file: join(dir, 'fleet-10000.csv') },
    ];
    for (const c of cases) {
      o.progress(`fleet: ${c.label}`);
      const r = signRun(dir, c.file, join(dir, `out-${c.key}`), ISSUED_AT);
      o.progress(`fleet: ${c.label}, rerun`);
      const again = signRun(dir, c.file, join(dir, `out-${c.key}`), RERUN_AT);
      const sizes = r.gateways.map((g) => g.bytes);
      figures[`${c.key}Seconds`] = r.seconds;
      figures[`${c.key}PeakRssMB`] = r.peakRssMB;
      figures[`${c.key}Threads`] = r.threads;
      figures[`${c.key}ValidateMs`] = r.timings.validateMs;
      figures[`${c.key}SliceSignMs`] = r.timings.issueMs;
      figures[`${c.key}SnapshotMedianBytes`] = median(sizes);
      figures[`${c.key}SnapshotMaxBytes`] = Math.max(...sizes);
      figures[`${c.key}MedianPrincipals`] = median(r.gateways.map((g) => g.principals));
      figures[`${c.key}RerunSeconds`] = again.seconds;
      figures[`${c.key}RerunIssued`] = r.gateways.length - (again.counts.unchanged ?? 0);
      lines.push(
        `  ${c.label}: ${r.seconds.toFixed(1)} s (read+validate ${(r.timings.validateMs / 1000).toFixed(1)} s, index ${(r.timings.prepareMs / 1000).toFixed(1)} s, slice+sign ${(r.timings.issueMs / 1000).toFixed(1)} s on ${r.threads} threads), peak ${int(r.peakRssMB)} MB; ` +
          `a snapshot: median ${kb(median(sizes))} KB, largest ${kb(Math.max(...sizes))} KB (median ${median(r.gateways.map((g) => g.principals))} principals); ` +
          `rerun with nothing changed: ${again.seconds.toFixed(1)} s, ${figures[`${c.key}RerunIssued`]} issued`,
      );
    }
    o.progress('fleet: 10,000 gateways on one thread (the baseline)');
    const one = signRun(dir, cases[1]!.file, join(dir, 'out-one-thread'), ISSUED_AT, 0);
    figures.fleet10000x10OneThreadSeconds = one.seconds;
    figures.fleet10000x10OneThreadPeakRssMB = one.peakRssMB;
    lines.push(`  10,000 gateways signed in the main thread only: ${one.seconds.toFixed(1)} s, peak ${int(one.peakRssMB)} MB (side by side with the ${figures.fleet10000x10Threads} threads above)`);

    const worstSeconds = Math.max(figures.fleet1000x100Seconds!, figures.fleet10000x10Seconds!);
    const worstPeak = Math.max(figures.fleet1000x100PeakRssMB!, figures.fleet10000x10PeakRssMB!);
    const verdict = (ok: boolean) => (ok ? 'met' : 'NOT met');
    lines.push(
      `  goals: all 10,000 in <= ${GOAL_SECONDS} s: ${verdict(figures.fleet10000x10Seconds! <= GOAL_SECONDS)} (${figures.fleet10000x10Seconds!.toFixed(1)} s); ` +
        `<= 1 GB peak: ${verdict(worstPeak <= GOAL_PEAK_MB)} (${int(worstPeak)} MB); ` +
        `a 100-thing slice <= 64 KB: ${verdict(figures.fleet1000x100SnapshotMaxBytes! <= GOAL_SLICE_BYTES)} (largest ${kb(figures.fleet1000x100SnapshotMaxBytes!)} KB)`,
    );
    figures.fleetWorstSeconds = worstSeconds;
    return { figures, lines };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
