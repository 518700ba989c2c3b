// Reading the two inputs of `fleet sign`: the tenant policy (YAML, or JSON: at 100,000 things the YAML
// parser takes about 30 s where JSON.parse takes 0.3 s) and the fleet file (YAML, JSON or CSV), both
// validated together with errors naming the file, the row (the CSV line) and the field.
import { parse as parseCsv } from 'csv-parse/sync';
import { EwError, type Issue } from '../errors.js';
import { validateFleet, validateTenantPolicy, type Fleet, type ValidatedFleet } from '../policy/fleet.js';
import { parsePolicyYaml } from '../policy/validate.js';
import { readBounded } from '../store/read-bounded.js';

/** A tenant policy may be larger than a gateway's policy file: it holds every site. */
export const MAX_TENANT_BYTES = 512 * 1024 * 1024;
export const MAX_FLEET_BYTES = 64 * 1024 * 1024;
const CSV_COLUMNS = ['id', 'role', 'resourceGroups'] as const;

function parseJson(text: string, where: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new EwError('EW_POLICY_YAML', `not valid JSON: ${(err as Error).message}`, { where, cause: err });
  }
}

/** YAML, or JSON when the file name ends in .json. */
function parseStructured(path: string, max: number): unknown {
  const text = readBounded(path, max, 'EW_POLICY_TOO_LARGE', 'EW_POLICY_READ').toString('utf8');
  return path.toLowerCase().endsWith('.json') ? parseJson(text, path) : parsePolicyYaml(text, path);
}

/**
 * A CSV fleet file: a header line `id,role,resourceGroups`, then a gateway per line; the resource
 * groups separated by spaces or semicolons. Lines starting with # are comments. The rows become
 * the `gateways` of a fleet file; `lines[i]` is the line of row i, for the errors.
 */
export function parseFleetCsv(text: string, where: string): { raw: { formatVersion: 1; gateways: Record<string, unknown>[] }; lines: number[] } {
  let records: { record: Record<string, string>; info: { lines: number } }[];
  try {
    records = parseCsv(text, { columns: true, skip_empty_lines: true, trim: true, comment: '#', info: true, bom: true }) as typeof records;
  } catch (err) {
    throw new EwError('EW_POLICY_YAML', `not valid CSV: ${(err as Error).message}`, { where, cause: err });
  }
  const header = records.length > 0 ? Object.keys(records[0]!.record) : [];
  const issues: Issue[] = [];
  for (const c of CSV_COLUMNS) if (records.length > 0 && !header.includes(c)) issues.push({ path: 'line 1', message: `the header has no ${c} column (the columns are ${CSV_COLUMNS.join(',')})` });
  for (const c of header) if (!(CSV_COLUMNS as readonly string[]).includes(c)) issues.push({ path: 'line 1', message: `unknown column ${JSON.stringify(c)} (the columns are ${CSV_COLUMNS.join(',')})` });
  if (issues.length > 0) throw new EwError('EW_POLICY_INVALID', `fleet file is invalid (${issues.length} problem${issues.length > 1 ? 's' : ''})`, { where, issues });
  const gateways = records.map(({ record }) => ({
    id: record.id,
    role: record.role,
    resourceGroups: (record.resourceGroups ?? '').split(/[\s;]+/).filter((g) => g !== ''),
  }));
  return { raw: { formatVersion: 1, gateways }, lines: records.map((r) => r.info.lines) };
}

/** `gateways[i].field` as `line N (gateways[i]).field` for a CSV file. */
function withLines(err: unknown, lines: readonly number[]): unknown {
  if (!(err instanceof EwError) || err.code !== 'EW_POLICY_INVALID') return err;
  const message = err.where !== undefined && err.message.startsWith(`${err.where}: `) ? err.message.slice(err.where.length + 2) : err.message;
  return new EwError(err.code, message, { ...(err.where === undefined ? {} : { where: err.where }), issues: err.issues.map((i) => ({ ...i, path: i.path.replace(/^gateways\[(\d+)\]/, (m, n: string) => `line ${lines[Number(n)] ?? '?'} (${m})`) })) });
}

/** Reads and validates the tenant policy and the fleet file together. */
export function readFleetInputs(tenantPath: string, fleetPath: string): ValidatedFleet {
  const { tenant, warnings } = validateTenantPolicy(parseStructured(tenantPath, MAX_TENANT_BYTES), tenantPath);
  let fleet: Fleet;
  if (fleetPath.toLowerCase().endsWith('.csv')) {
    const text = readBounded(fleetPath, MAX_FLEET_BYTES, 'EW_POLICY_TOO_LARGE', 'EW_POLICY_READ').toString('utf8');
    const { raw, lines } = parseFleetCsv(text, fleetPath);
    try {
      fleet = validateFleet(raw, fleetPath, tenant, tenantPath);
    } catch (err) {
      throw withLines(err, lines);
    }
  } else {
    fleet = validateFleet(parseStructured(fleetPath, MAX_FLEET_BYTES), fleetPath, tenant, tenantPath);
  }
  return { tenant, fleet, warnings };
}
