// The one-screen summary `snapshot sign` ends with: for which gateway, what it serves, to whom, and
// until when — so that a policy that signs cleanly but serves nothing, or nobody, shows at a glance.
import type { SnapshotPayload } from '../policy/schema.js';
import { iso } from './output.js';

/** Roles listed by name before "+N more": the summary stays one screen for any policy. */
const ROLES_SHOWN = 8;

const plural = (n: number, one: string, many = `${one}s`): string => `${n.toLocaleString('en-US')} ${n === 1 ? one : many}`;

function duration(ms: number): string {
  if (ms >= 2 * 86_400_000) return plural(Math.floor(ms / 86_400_000), 'day');
  if (ms >= 2 * 3_600_000) return plural(Math.floor(ms / 3_600_000), 'hour');
  return plural(Math.max(0, Math.floor(ms / 60_000)), 'minute');
}

export function signSummary(p: SnapshotPayload): string[] {
  const things = p.things ?? [];
  const users = p.users ?? [];
  const apiKeys = p.apiKeys ?? [];
  const applications = p.applications ?? [];
  const privileged = p.gateway.role === 'privileged';
  const groups = new Set(p.gateway.resourceGroups);
  const served = privileged ? things.length : things.filter((t) => groups.has(t.resourceGroup)).length;
  const revoked = [...users, ...apiKeys, ...applications, ...things].filter((x) => x.revoked === true).length;

  // Holders per role: users and applications (an API key carries its own permission set).
  const holders = new Map<string, { users: number; applications: number }>();
  const holder = (role: string) => {
    let h = holders.get(role);
    if (!h) holders.set(role, (h = { users: 0, applications: 0 }));
    return h;
  };
  for (const u of users) holder(u.role ?? 'none').users++;
  for (const a of applications) holder(a.role).applications++;
  const roleLine = (name: string, userType?: string): string => {
    const h = holders.get(name);
    const who = [h?.users ? plural(h.users, 'user') : '', h?.applications ? plural(h.applications, 'application') : ''].filter(Boolean).join(', ');
    return `${name}${userType ? ` (${userType})` : ''}: ${who || 'held by nobody'}`;
  };
  const roles = [
    roleLine('admin'),
    ...(holders.has('none') ? [roleLine('none')] : []),
    ...(p.roles ?? []).map((r) => roleLine(r.name, r.userType)),
  ];
  const shownRoles = roles.length <= ROLES_SHOWN ? roles.join('; ') : `${roles.slice(0, ROLES_SHOWN).join('; ')}; +${roles.length - ROLES_SHOWN} more`;

  return [
    `  gateway     ${p.gateway.id} (${p.gateway.role}), ${privileged ? 'serves every thing' : `resource groups ${p.gateway.resourceGroups.join(', ') || '(none)'}`}`,
    `  things      ${served.toLocaleString('en-US')} served of ${things.length.toLocaleString('en-US')}`,
    `  principals  ${[plural(users.length, 'user'), plural(apiKeys.length, 'API key'), plural(applications.length, 'application'), plural(things.length, 'device')].join(', ')}; ${revoked.toLocaleString('en-US')} revoked`,
    `  roles       ${plural(roles.length, 'role')}: ${shownRoles}`,
    `  modules     ${p.modules.join(', ') || '(none)'}`,
    `  expires     ${iso(p.expiresAt)} (${duration(p.expiresAt - p.issuedAt)} after issue at ${iso(p.issuedAt)})`,
  ];
}
