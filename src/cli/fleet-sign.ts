// `edgewarden fleet sign TENANT FLEET -k KEY -o DIR`: one signed snapshot per gateway, each holding only
// that gateway's slice of the tenant (src/fleet/sign.ts); prints what changed for whom.
import { EwError } from '../errors.js';
import { describeChanges, ISSUE_OUTCOMES } from '../fleet/issue.js';
import { signFleet, type FleetSignReport } from '../fleet/sign.js';
import { defaultThreads } from '../fleet/signer.js';
import { loadTrustedKeys, readPrivateKeyFile } from './io.js';
import { iso, type Io } from './output.js';
import { parseTime } from './snapshot.js';
import { readEndorsementFor } from './snapshot-sign.js';
import { kidOf } from '../snapshot/keys.js';

export interface FleetSignCliOptions {
  key: string;
  out: string;
  kid?: string;
  issuedAt?: string;
  trust?: string[];
  threads?: string;
  strict?: boolean;
  json?: boolean;
  limit?: string;
  endorsement?: string;
}

export async function fleetSignCommand(tenantPath: string, fleetPath: string, o: FleetSignCliOptions, io: Io): Promise<number> {
  const threads = o.threads === undefined ? defaultThreads() : Number(o.threads);
  if (!Number.isSafeInteger(threads) || threads < 0 || threads > 64) throw new EwError('EW_USAGE', `--threads must be an integer from 0 to 64, got ${JSON.stringify(o.threads)}`);
  const limit = o.limit === undefined ? 50 : Number(o.limit);
  if (!Number.isSafeInteger(limit) || limit < 0) throw new EwError('EW_USAGE', `--limit must be a whole number, got ${JSON.stringify(o.limit)}`);
  const key = readPrivateKeyFile(o.key);
  const kid = o.kid ?? kidOf(key);
  const endorsement = o.endorsement === undefined ? undefined : readEndorsementFor(o.endorsement, kid, kidOf(key));
  const started = performance.now();
  const onTty = process.stderr.isTTY === true && o.json !== true;
  const report = await signFleet({
    tenantPath,
    fleetPath,
    dir: o.out,
    key,
    kid,
    ...(endorsement === undefined ? {} : { endorsement }),
    ...(o.issuedAt === undefined ? {} : { issuedAt: parseTime(o.issuedAt, '--issued-at') }),
    ...(o.trust && o.trust.length > 0 ? { trusted: loadTrustedKeys(o.trust) } : {}),
    threads,
    ...(o.strict === true ? { strict: true } : {}),
    ...(onTty ? { progress: (done: number, total: number) => void process.stderr.write(`\rfleet sign: ${done}/${total} gateways`) } : {}),
  });
  if (onTty) process.stderr.write('\n');
  const seconds = (performance.now() - started) / 1000;
  for (const w of report.warnings) io.err(`warning: ${tenantPath}: ${w.path}: ${w.message}`);
  if (o.json === true) {
    // peakRssMB: the process's peak resident memory, its signing threads included.
    const peakRssMB = Math.round(process.resourceUsage().maxRSS / 1024);
    io.out(JSON.stringify({ ...report, issuedAt: iso(report.issuedAt), dir: o.out, seconds: Number(seconds.toFixed(2)), peakRssMB }, null, 2));
    return 0;
  }
  for (const line of renderReport(report, o.out, limit, seconds)) io.out(line);
  return 0;
}

/** The human summary: a line per gateway issued (at most `limit`), then the totals. */
export function renderReport(r: FleetSignReport, dir: string, limit: number, seconds: number): string[] {
  const lines = [`fleet sign: tenant ${r.tenant}, ${r.gateways.length} gateway${r.gateways.length === 1 ? '' : 's'}, key ${r.kid}, issued ${iso(r.issuedAt)}, ${r.threads === 0 ? 'signed in one thread' : `${r.threads} signing threads`}`];
  const issued = r.gateways.filter((g) => g.outcome !== 'unchanged');
  for (const g of issued.slice(0, limit)) {
    const what = g.outcome === 'new' ? 'first snapshot' : g.changes ? describeChanges(g.changes) : 'the previous snapshot could not be read: no diff';
    lines.push(`  ${g.gateway}  ${g.outcome}  version ${g.version}  ${g.things} things, ${g.principals} principals, ${g.bytes} bytes: ${what}`);
  }
  if (issued.length > limit) lines.push(`  (+${issued.length - limit} more issued; --json lists every gateway)`);
  if (r.everywhere.count > 0) {
    const more = r.everywhere.count > r.everywhere.ids.length ? `, ... (+${r.everywhere.count - r.everywhere.ids.length})` : '';
    lines.push(
      `  every gateway holds the credentials of ${r.everywhere.count} principal${r.everywhere.count === 1 ? '' : 's'} that reach every thing (organization-wide, or READ_ALL_THINGS): ${r.everywhere.ids.join(', ')}${more}; organizationAuthorizations narrow them`,
    );
  }
  for (const id of r.removed) lines.push(`  ${id}  removed from the fleet: its snapshot file and manifest entry are deleted`);
  const byOutcome = ISSUE_OUTCOMES.filter((k) => k !== 'unchanged' && r.counts[k] > 0).map((k) => `${r.counts[k]} ${k}`);
  lines.push(
    `issued ${issued.length}${byOutcome.length ? ` (${byOutcome.join(', ')})` : ''}, unchanged ${r.counts.unchanged}, removed ${r.removed.length} -> ${dir} in ${seconds.toFixed(1)} s`,
  );
  return lines;
}
