// Valid policies that are probably not what their author meant: each of these signs into a snapshot
// on which a gateway serves nothing, or a principal silently lacks a permission it was given. They are
// warnings, with the field path; `snapshot sign --strict` refuses a policy that has any.
//  - a resource group of the gateway that no thing is in (a typo in gateway.resourceGroups);
//  - a standard gateway with no resource group while the policy has things;
//  - a permission of a role or an API key that needs a module the policy does not activate
//    (decisions would say MODULE_INACTIVE).
// A user's or an application's role that is not defined is warned by checkSemantics (the gateway
// refuses it in a payload, so it lives with the shared invariants). Only the issuer runs these
// checks: they change nothing in what a gateway accepts. No I/O.
import type { Issue } from '../errors.js';
import { isAssignableTo, permissionByName, requiredModulesFor, resolvePermissionName, type UserType } from '../catalog/index.js';
import type { PolicyBody } from './schema.js';

/** How many of the things' resource groups a warning names as the ones that exist. */
const GROUPS_NAMED = 5;

export function checkLikelyMistakes(p: PolicyBody, warnings: Issue[]): void {
  checkResourceGroups(p, warnings);
  checkModules(p, warnings);
}

function checkResourceGroups(p: PolicyBody, warnings: Issue[]): void {
  const things = p.things ?? [];
  const used = new Set<string>();
  for (const t of things) used.add(t.resourceGroup);
  const known = [...used].sort();
  const existing =
    known.length === 0
      ? 'the policy has no things'
      : `the things are in ${known.slice(0, GROUPS_NAMED).join(', ')}${known.length > GROUPS_NAMED ? ` (+${known.length - GROUPS_NAMED} more)` : ''}`;
  const standard = p.gateway.role === 'standard';
  p.gateway.resourceGroups.forEach((g, i) => {
    if (used.has(g)) return;
    warnings.push({
      path: `gateway.resourceGroups[${i}]`,
      message: `no thing is in resource group "${g}" (${existing})${standard ? ': the gateway serves nothing through it' : ''}`,
    });
  });
  if (standard && p.gateway.resourceGroups.length === 0 && things.length > 0) {
    warnings.push({ path: 'gateway.resourceGroups', message: `a standard gateway serves only the things of its resource groups, and it has none: it serves none of the ${things.length} things` });
  }
}

function checkModules(p: PolicyBody, warnings: Issue[]): void {
  const active = new Set<string>(p.modules);
  const check = (perms: readonly string[], userType: UserType, path: string, holder: string) => {
    perms.forEach((name, j) => {
      const resolved = resolvePermissionName(name);
      const entry = resolved && permissionByName(resolved.name);
      // Unknown names and user-type restrictions are errors of checkSemantics.
      if (!entry || !isAssignableTo(entry, userType)) return;
      const need = requiredModulesFor(entry, userType);
      if (need.length === 0 || need.some((m) => active.has(m))) return;
      const modules = need.length === 1 ? `module ${need[0]}, which is not` : `one of the modules ${need.join(' or ')}, none of which is`;
      warnings.push({ path: `${path}[${j}]`, message: `${entry.name} needs ${modules} in modules: ${holder} is denied it (MODULE_INACTIVE)` });
    });
  };
  (p.roles ?? []).forEach((r, i) => check(r.permissions, r.userType, `roles[${i}].permissions`, `role "${r.name}"`));
  (p.apiKeys ?? []).forEach((k, i) => check(k.permissions, k.userType, `apiKeys[${i}].permissions`, `API key "${k.id}"`));
}
