// `edgewarden catalog`: prints the permission catalog (src/catalog) as an
// aligned text table or as JSON. Not wired into the CLI entry point here.

import { CATALOG, MODULES, USER_TYPES, requiredModulesFor, type ModuleId, type PermissionEntry } from '../catalog/index.js';

export interface CatalogCommandOptions {
  /** Print JSON instead of the table. */
  json?: boolean;
  /** Include the legacy names (only in the older permission list). Default: current names only. */
  legacy?: boolean;
}

const SHORT: Readonly<Record<ModuleId, string>> = {
  CONNECTED_FIELD_SERVICE: 'CFS',
  VALUE_ADDED_DIGITAL_SERVICES: 'VADS',
  SPARE_PARTS_AND_CONSUMABLES: 'SPC',
};

function userTypesCell(p: PermissionEntry): string {
  return p.userTypes.length === USER_TYPES.length ? 'all' : p.userTypes.join(',');
}

function modulesCell(p: PermissionEntry): string {
  const parts: string[] = [];
  if (p.modules.length === 1) parts.push(SHORT[p.modules[0]!]);
  else if (p.modules.length > 1) parts.push(`any of ${p.modules.map((m) => SHORT[m]).join(',')}`);
  if (p.backOfficeModules.length > 0) {
    const list = p.backOfficeModules.map((m) => SHORT[m]).join(',');
    parts.push(`back-office: ${p.backOfficeModules.length > 1 ? `any of ${list}` : list}`);
  }
  return parts.length > 0 ? parts.join('; ') : '-';
}

function flagsCell(p: PermissionEntry): string {
  const flags: string[] = [];
  if (p.dependsOnBundle) flags.push('bundle');
  if (p.legacy) flags.push(p.successor !== undefined ? `legacy -> ${p.successor}` : 'legacy');
  return flags.join(', ');
}

function table(rows: readonly (readonly string[])[]): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) =>
    row
      .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd(),
  );
}

/**
 * Prints the catalog. `out` is called once per line of the table, or once with
 * the whole JSON document; no trailing newline (like console.log).
 */
export function catalogCommand(opts: CatalogCommandOptions, out: (s: string) => void): void {
  const entries = CATALOG.filter((p) => opts.legacy === true || !p.legacy);

  if (opts.json === true) {
    out(
      JSON.stringify(
        {
          userTypes: USER_TYPES,
          modules: MODULES.map((m) => ({ id: m.id, shortName: SHORT[m.id], title: m.title })),
          permissions: entries.map((p) => ({
            name: p.name,
            category: p.category,
            title: p.title,
            description: p.description,
            access: p.access,
            assignableToUserTypes: p.userTypes,
            requiredModulesAnyOf: p.modules,
            requiredModulesForBackOfficeUsers: p.backOfficeModules,
            // the rule actually applied (requiredModulesFor), per user type it can be assigned to
            requiredModulesAnyOfByUserType: Object.fromEntries(p.userTypes.map((u) => [u, requiredModulesFor(p, u)])),
            dependsOnSubscriptionBundle: p.dependsOnBundle,
            legacy: p.legacy,
            ...(p.successor !== undefined ? { replacedBy: p.successor } : {}),
          })),
        },
        null,
        2,
      ),
    );
    return;
  }

  const rows: string[][] = [['NAME', 'CATEGORY', 'USER TYPES', 'MODULES', 'FLAGS']];
  for (const p of entries) rows.push([p.name, p.category, userTypesCell(p), modulesCell(p), flagsCell(p)]);
  for (const line of table(rows)) out(line);

  const current = entries.filter((p) => !p.legacy).length;
  const legacy = entries.length - current;
  out('');
  out(`${current} permissions${legacy > 0 ? ` + ${legacy} legacy` : ''}.`);
  out(`Modules: ${MODULES.map((m) => `${SHORT[m.id]} = ${m.title}`).join(', ')}.`);
  out('"any of": available when at least one listed module is active; "back-office": required for ORGANIZATION and PARTNER users only.');
  out('"bundle": availability depends on the subscription bundle.');
}
