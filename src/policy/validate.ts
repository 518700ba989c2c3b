// Turns policy text into a validated policy: YAML parse (bounded), schema (validator generated at build time),
// then the catalog and the invariants (EVRYTHNG roles, references, credential hashes).
// Every problem is an Issue with the exact field path; nothing here does I/O.
import type { ValidateFunction } from 'ajv';
import { parseDocument } from 'yaml';
import { EwError, type Issue } from '../errors.js';
import type { PolicyFile, PolicyBody, SnapshotPayload } from './schema.js';
import { checkSemantics } from './semantics.js';
import { checkLikelyMistakes } from './likely-mistakes.js';
import { resolvePermissionName } from '../catalog/index.js';
import { ajvIssues, MAX_YAML_ALIASES, typeOf } from './issues.js';
import { validatePolicyFile } from '../generated/policy-validator.js';

export { ajvIssues, pointerToPath, MAX_YAML_ALIASES } from './issues.js';
export { validatePayload } from './validate-payload.js';

// The policy file's validator reports every problem; it is compiled from POLICY_FILE_SCHEMA at build
// time by Ajv's standalone code (scripts/gen-validators.mjs): no Ajv or TypeBox at run time.
const policyValidate = validatePolicyFile as ValidateFunction;

/** Largest policy text accepted (bytes). 100,000 things is about 15 MB of YAML. */
export const MAX_POLICY_BYTES = 64 * 1024 * 1024;
export interface ValidatedPolicy {
  readonly policy: PolicyFile;
  readonly warnings: readonly Issue[];
}

/** YAML text to a plain value. Aliases are bounded; duplicate keys and syntax errors are issues with line and column. */
export function parsePolicyYaml(text: string, where: string): unknown {
  if (Buffer.byteLength(text) > MAX_POLICY_BYTES) {
    throw new EwError('EW_POLICY_TOO_LARGE', `policy is larger than ${MAX_POLICY_BYTES} bytes`, { where });
  }
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true, strict: true });
  if (doc.errors.length > 0) {
    const issues = doc.errors.map((err) => ({
      path: err.linePos ? `line ${err.linePos[0].line}, column ${err.linePos[0].col}` : '',
      message: err.message.split('\n')[0] ?? err.code,
    }));
    throw new EwError('EW_POLICY_YAML', 'not valid YAML', { where, issues });
  }
  try {
    return doc.toJS({ maxAliasCount: MAX_YAML_ALIASES });
  } catch (err) {
    throw new EwError('EW_POLICY_YAML', `YAML aliases expand without bound (more than ${MAX_YAML_ALIASES} alias uses): ${(err as Error).message}`, {
      where,
      cause: err,
    });
  }
}

/** EVRYTHNG: a user holds exactly one role. Caught before the schema so the message says why. */
function checkOneRole(raw: unknown, issues: Issue[]): Set<string> {
  const paths = new Set<string>();
  const users = (raw as { users?: unknown })?.users;
  if (!Array.isArray(users)) return paths;
  users.forEach((u, i) => {
    if (!u || typeof u !== 'object') return;
    const user = u as Record<string, unknown>;
    if ('roles' in user) {
      const n = Array.isArray(user.roles) ? user.roles.length : 1;
      issues.push({ path: `users[${i}].roles`, message: `a user has exactly one role (EVRYTHNG rule), got roles with ${n}; use role: <name>` });
      paths.add(`users[${i}].roles`);
    }
    if (Array.isArray(user.role)) {
      issues.push({ path: `users[${i}].role`, message: `a user has exactly one role (EVRYTHNG rule), got a list of ${user.role.length}` });
      paths.add(`users[${i}].role`);
    }
  });
  return paths;
}

/** Validates a parsed policy value; throws EW_POLICY_INVALID listing every issue. */
export function validatePolicy(raw: unknown, where: string): ValidatedPolicy {
  const issues: Issue[] = [];
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new EwError('EW_POLICY_INVALID', `policy must be a mapping, got ${typeOf(raw)}`, { where, issues: [{ path: '', message: `expected a mapping, got ${typeOf(raw)}` }] });
  }
  const handled = checkOneRole(raw, issues);
  if (!policyValidate(raw)) {
    for (const issue of ajvIssues(policyValidate.errors)) if (!handled.has(issue.path)) issues.push(issue);
  }
  if (issues.length > 0) {
    throw new EwError('EW_POLICY_INVALID', `policy is invalid (${issues.length} problem${issues.length > 1 ? 's' : ''})`, { where, issues });
  }
  const policy = raw as PolicyFile;
  const warnings: Issue[] = [];
  checkSemantics(policy, issues, warnings);
  checkValidity(policy, issues);
  if (issues.length > 0) {
    throw new EwError('EW_POLICY_INVALID', `policy is invalid (${issues.length} problem${issues.length > 1 ? 's' : ''})`, { where, issues });
  }
  checkLikelyMistakes(policy, warnings);
  return { policy, warnings };
}

/** Parse + validate in one step. */
export function loadPolicyText(text: string, where: string): ValidatedPolicy {
  return validatePolicy(parsePolicyYaml(text, where), where);
}

function checkValidity(policy: PolicyFile, issues: Issue[]): void {
  const v = policy.validity;
  if ((v.expiresAt === undefined) === (v.validFor === undefined)) {
    issues.push({ path: 'validity', message: 'give exactly one of expiresAt or validFor' });
  }
  if (v.expiresAt !== undefined && !/(Z|[+-][0-9]{2}:?[0-9]{2})$/.test(v.expiresAt)) {
    issues.push({ path: 'validity.expiresAt', message: `${JSON.stringify(v.expiresAt)} must be an ISO 8601 time with a zone, e.g. 2027-01-31T00:00:00Z` });
  } else if (v.expiresAt !== undefined && Number.isNaN(Date.parse(v.expiresAt))) {
    issues.push({ path: 'validity.expiresAt', message: `${JSON.stringify(v.expiresAt)} is not a valid ISO 8601 time` });
  }
}

const UNIT_MS = { m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** The expiry (ms since the epoch) a policy gives when signed at `issuedAt`. */
export function expiryOf(policy: PolicyFile, issuedAt: number): number {
  const v = policy.validity;
  if (v.expiresAt !== undefined) return Date.parse(v.expiresAt);
  const m = /^([0-9]+)(m|h|d)$/.exec(v.validFor ?? '');
  if (!m) throw new EwError('EW_POLICY_INVALID', 'validity has neither expiresAt nor validFor');
  return issuedAt + Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
}

/** The snapshot payload for a validated policy: validity resolved, legacy names mapped, arrays present. */
export function compilePolicy(policy: PolicyFile, opts: { version: number; issuedAt: number }): SnapshotPayload {
  const { validity: _validity, ...body } = policy;
  const normalized = normalizeBody(body);
  return { ...normalized, version: opts.version, issuedAt: opts.issuedAt, expiresAt: expiryOf(policy, opts.issuedAt) };
}

function normalizeBody(body: PolicyBody): PolicyBody {
  const roleNames = new Set((body.roles ?? []).map((r) => r.name));
  return {
    ...body,
    partners: body.partners ?? [],
    customers: body.customers ?? [],
    locations: body.locations ?? [],
    things: body.things ?? [],
    roles: (body.roles ?? []).map((r) => ({ ...r, permissions: mapLegacy(r.permissions) })),
    // EVRYTHNG: a user whose role no longer exists falls back to none.
    users: (body.users ?? []).map((u) => ({ ...u, role: u.role === undefined || isKnownRole(u.role, roleNames) ? (u.role ?? 'none') : 'none' })),
    apiKeys: (body.apiKeys ?? []).map((k) => ({ ...k, permissions: mapLegacy(k.permissions) })),
    applications: (body.applications ?? []).map((a) => ({ ...a, role: isKnownRole(a.role, roleNames) ? a.role : 'none' })),
    userAuthorizations: body.userAuthorizations ?? [],
    organizationAuthorizations: body.organizationAuthorizations ?? [],
  };
}

function isKnownRole(name: string, custom: Set<string>): boolean {
  return name === 'admin' || name === 'none' || custom.has(name);
}

function mapLegacy(perms: readonly string[]): string[] {
  return [...new Set(perms.map((p) => resolvePermissionName(p)?.name ?? p))];
}
