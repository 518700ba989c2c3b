// `edgewarden explain`: why a principal may or may not do something on a thing, from a snapshot.
import { explain } from '../decide/decide.js';
import { DENY_REASONS } from '../decide/reasons.js';
import { buildIndex, type ExpiredMode } from '../decide/policy-index.js';
import { verifySnapshot } from '../snapshot/snapshot.js';
import { EwError } from '../errors.js';
import { bundled, readSnapshotFile } from './io.js';
import { iso, type Io } from './output.js';
import { parseTime, trustedKeysFrom } from './snapshot.js';

export function explainCommand(
  opts: { snapshot?: string; trust?: string[]; principal: string; permission: string; thing?: string; at?: string; expiredMode?: string; json?: boolean },
  io: Io,
): number {
  const file = opts.snapshot ?? bundled.snapshot();
  const v = verifySnapshot(readSnapshotFile(file), trustedKeysFrom(opts.trust), { where: file });
  const mode = opts.expiredMode ?? 'read-only';
  if (mode !== 'read-only' && mode !== 'deny-all' && mode !== 'enforce') {
    throw new EwError('EW_USAGE', `--expired-mode must be read-only, deny-all or enforce, got ${JSON.stringify(mode)}`);
  }
  const index = buildIndex(v.payload, { expiredMode: mode as ExpiredMode });
  const now = opts.at === undefined ? Date.now() : parseTime(opts.at, '--at');
  const { decision, steps } = explain(index, opts.principal, opts.permission, opts.thing, now);
  if (opts.json) {
    io.out(JSON.stringify({ snapshot: file, version: v.payload.version, at: iso(now), principal: opts.principal, permission: opts.permission, thing: opts.thing ?? null, decision: decision.allow ? 'allow' : 'deny', reason: decision.reason ?? null, steps }, null, 2));
    return decision.allow ? 0 : 3;
  }
  const on = opts.thing ? ` on ${opts.thing}` : '';
  io.out(`${opts.principal} ${opts.permission}${on}: ${decision.allow ? 'ALLOW' : `DENY ${decision.reason}`}  (snapshot version ${v.payload.version}, ${file})`);
  for (const s of steps) io.out(`  ${s.passed ? 'ok  ' : 'FAIL'} ${s.rule.padEnd(13)} ${s.detail}`);
  if (!decision.allow) io.out(`  ${decision.reason}: ${DENY_REASONS[decision.reason]}`);
  return decision.allow ? 0 : 3;
}
