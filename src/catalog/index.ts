// The permission catalog: which permission names exist, who may hold them, and
// which subscription modules make them available. The data lives in
// ./permissions.json (one data file, reviewed by hand); this module only loads,
// checks and indexes it. It does no I/O.
//
// Source: the Servitly "User Permissions" list (seed 002_d4c3182b4e0c5b50.txt;
// 000_0cd267d8ac5428fe.txt is a flattened copy of it). Reading rules:
// - "This permission can be assigned only to X and Y user types." -> userTypes
//   [X, Y]; absent -> all three user types.
// - "Required modules: A, B" -> modules [A, B]: available when AT LEAST ONE of
//   them is active; [] -> no module needed.
// - "The availability of this permission depends on the subscription bundle."
//   -> dependsOnBundle (informational; the modules are what we enforce).
// - READ_HISTORICAL_DATA: "This permission to be assigned to Back-office users
//   requires the Connected Field Service module." -> backOfficeModules
//   [CONNECTED_FIELD_SERVICE]: required for ORGANIZATION and PARTNER users only,
//   CUSTOMER users need no module.
// - Right under the "Thing" heading the document carries the sentence "This
//   permission can be assigned to Back-office user types only if the Connected
//   Field Service module is active." It reads like a stray copy of the
//   READ_HISTORICAL_DATA rule (it says "This permission" under a heading of 23
//   permissions). It is kept as the category's `note` text and deliberately NOT
//   applied as a rule to the permissions of the "Thing" category.
// Legacy: names only the older list (seed 001_0ccf746dac2fa40c.txt) has are
// appended with `legacy: true`; WRITE_DATA's successor is IMPORT_DATA. That list
// has no titles, so legacy titles are derived from the API name. Where the two
// lists disagree, the current list stands.
//
// test/unit/catalog.test.ts re-parses the reference document itself
// (test/fixtures/seeds/) and fails when this data drifts from it.

import data from './permissions.json' with { type: 'json' };

export type UserType = 'ORGANIZATION' | 'PARTNER' | 'CUSTOMER';
export const USER_TYPES: readonly UserType[] = Object.freeze(['ORGANIZATION', 'PARTNER', 'CUSTOMER'] as const);

/** Back-office user types (the ones `backOfficeModules` apply to). */
const BACK_OFFICE: ReadonlySet<UserType> = new Set<UserType>(['ORGANIZATION', 'PARTNER']);

export type ModuleId = 'CONNECTED_FIELD_SERVICE' | 'VALUE_ADDED_DIGITAL_SERVICES' | 'SPARE_PARTS_AND_CONSUMABLES';
const MODULE_IDS: readonly ModuleId[] = ['CONNECTED_FIELD_SERVICE', 'VALUE_ADDED_DIGITAL_SERVICES', 'SPARE_PARTS_AND_CONSUMABLES'];

export interface PermissionEntry {
  /** Index in CATALOG; stable within a build, not across catalog changes. */
  readonly id: number;
  readonly name: string;
  readonly category: string;
  readonly title: string;
  readonly description: string;
  /** The user types it can be assigned to, in USER_TYPES order. */
  readonly userTypes: readonly UserType[];
  /** Available when at least one of these is active; empty = no module needed. */
  readonly modules: readonly ModuleId[];
  /** Additionally required for ORGANIZATION and PARTNER users (only READ_HISTORICAL_DATA). */
  readonly backOfficeModules: readonly ModuleId[];
  /** The document says availability depends on the subscription bundle. */
  readonly dependsOnBundle: boolean;
  /** Only in the older permission list. */
  readonly legacy: boolean;
  /** For a legacy name: the current permission that replaces it. */
  readonly successor?: string;
  /** 'read' iff the name starts with READ_. */
  readonly access: 'read' | 'write';
}

export interface CategoryEntry {
  readonly name: string;
  /** Text the document puts under the heading; informational only, never a rule. */
  readonly note?: string;
}

// ---------------------------------------------------------------------------
// loading and checking the data (a defect here is a build defect: throw)

function fail(message: string): never {
  throw new Error(`permission catalog (src/catalog/permissions.json): ${message}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(o: Record<string, unknown>, key: string, where: string): string {
  const v = o[key];
  if (typeof v !== 'string' || v === '') fail(`${where}.${key} must be a non-empty string`);
  return v;
}

function bool(o: Record<string, unknown>, key: string, where: string): boolean {
  const v = o[key];
  if (typeof v !== 'boolean') fail(`${where}.${key} must be a boolean`);
  return v;
}

function list<T extends string>(o: Record<string, unknown>, key: string, where: string, valid: (s: string) => s is T): readonly T[] {
  const v = o[key];
  if (!Array.isArray(v)) fail(`${where}.${key} must be an array`);
  const out: T[] = [];
  for (const item of v) {
    if (typeof item !== 'string' || !valid(item)) fail(`${where}.${key}: unknown value ${JSON.stringify(item)}`);
    if (out.includes(item)) fail(`${where}.${key}: duplicate ${item}`);
    out.push(item);
  }
  return Object.freeze(out);
}

function isUserType(s: string): s is UserType {
  return s === 'ORGANIZATION' || s === 'PARTNER' || s === 'CUSTOMER';
}

export function isModuleIdValid(id: string): id is ModuleId {
  return (MODULE_IDS as readonly string[]).includes(id);
}

const PERMISSION_NAME = /^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*$/;

function load(raw: unknown): {
  modules: readonly { id: ModuleId; title: string }[];
  categories: readonly CategoryEntry[];
  catalog: readonly PermissionEntry[];
} {
  if (!isObject(raw)) fail('not an object');

  if (!Array.isArray(raw['modules'])) fail('modules must be an array');
  const modules = raw['modules'].map((m: unknown, i: number) => {
    if (!isObject(m)) fail(`modules[${i}] must be an object`);
    const id = str(m, 'id', `modules[${i}]`);
    if (!isModuleIdValid(id)) fail(`modules[${i}].id: unknown module ${id}`);
    return Object.freeze({ id, title: str(m, 'title', `modules[${i}]`) });
  });
  if (modules.map((m) => m.id).join() !== MODULE_IDS.join()) fail(`modules must be exactly ${MODULE_IDS.join(', ')}`);

  if (!Array.isArray(raw['categories'])) fail('categories must be an array');
  const categories = raw['categories'].map((c: unknown, i: number): CategoryEntry => {
    if (!isObject(c)) fail(`categories[${i}] must be an object`);
    const name = str(c, 'name', `categories[${i}]`);
    return Object.freeze(c['note'] === undefined ? { name } : { name, note: str(c, 'note', `categories[${i}]`) });
  });
  const categoryNames = new Set(categories.map((c) => c.name));
  if (categoryNames.size !== categories.length) fail('duplicate category');

  if (!Array.isArray(raw['permissions'])) fail('permissions must be an array');
  const catalog = raw['permissions'].map((p: unknown, id: number): PermissionEntry => {
    const where = `permissions[${id}]`;
    if (!isObject(p)) fail(`${where} must be an object`);
    const name = str(p, 'name', where);
    if (!PERMISSION_NAME.test(name)) fail(`${where}.name: not an API name: ${name}`);
    const category = str(p, 'category', where);
    if (!categoryNames.has(category)) fail(`${where}.category: unknown category ${category}`);
    const userTypes = list(p, 'userTypes', where, isUserType);
    if (userTypes.length === 0) fail(`${where}.userTypes must not be empty`);
    if (userTypes.join() !== USER_TYPES.filter((u) => userTypes.includes(u)).join()) fail(`${where}.userTypes must be in the order ${USER_TYPES.join(', ')}`);
    const modules = list(p, 'modules', where, isModuleIdValid);
    const backOfficeModules = list(p, 'backOfficeModules', where, isModuleIdValid);
    // requiredModulesFor() merges both lists into one "at least one of" list;
    // that is only right while no entry has both.
    if (modules.length > 0 && backOfficeModules.length > 0) fail(`${where}: both modules and backOfficeModules are set`);
    const legacy = bool(p, 'legacy', where);
    const entry: { -readonly [K in keyof PermissionEntry]: PermissionEntry[K] } = {
      id,
      name,
      category,
      title: str(p, 'title', where),
      description: str(p, 'description', where),
      userTypes,
      modules,
      backOfficeModules,
      dependsOnBundle: bool(p, 'dependsOnBundle', where),
      legacy,
      access: name.startsWith('READ_') ? 'read' : 'write',
    };
    if (p['successor'] !== undefined) {
      if (!legacy) fail(`${where}: only a legacy entry has a successor`);
      entry.successor = str(p, 'successor', where);
    }
    return Object.freeze(entry);
  });

  const byName = new Map<string, PermissionEntry>();
  for (const e of catalog) {
    if (byName.has(e.name)) fail(`duplicate permission ${e.name}`);
    byName.set(e.name, e);
  }
  let seenLegacy = false;
  for (const e of catalog) {
    if (e.legacy) seenLegacy = true;
    else if (seenLegacy) fail(`${e.name}: legacy entries must come last`);
    if (e.successor !== undefined) {
      const s = byName.get(e.successor);
      if (s === undefined || s.legacy) fail(`${e.name}: successor ${e.successor} is not a current permission`);
    }
  }
  return { modules: Object.freeze(modules), categories: Object.freeze(categories), catalog: Object.freeze(catalog) };
}

const loaded = load(data as unknown);

export const MODULES: readonly { id: ModuleId; title: string }[] = loaded.modules;
/** The categories in document order (legacy-only categories last). */
export const CATEGORIES: readonly CategoryEntry[] = loaded.categories;
/** Every permission, current ones in document order, then the legacy ones. Frozen. */
export const CATALOG: readonly PermissionEntry[] = loaded.catalog;
/** Number of entries in CATALOG (legacy ones included). */
export const PERMISSION_COUNT: number = CATALOG.length;

const ID_BY_NAME: ReadonlyMap<string, number> = new Map(CATALOG.map((e) => [e.name, e.id]));

/** The id (CATALOG index) of a permission name, exact and case-sensitive; -1 if unknown. */
export function permissionId(name: string): number {
  return ID_BY_NAME.get(name) ?? -1;
}

export function permissionByName(name: string): PermissionEntry | undefined {
  const id = ID_BY_NAME.get(name);
  return id === undefined ? undefined : CATALOG[id];
}

export interface ResolvedPermissionName {
  /** The name to use: the input, or its successor when it has one. */
  readonly name: string;
  /** Whether `name` (the result) is a legacy permission (legacy without successor). */
  readonly legacy: boolean;
  /** The legacy name the input was, when it was mapped to its successor. */
  readonly mappedFrom?: string;
}

const RESOLVED: ReadonlyMap<string, ResolvedPermissionName> = new Map(
  CATALOG.map((e): [string, ResolvedPermissionName] => [
    e.name,
    Object.freeze(e.successor !== undefined ? { name: e.successor, legacy: false, mappedFrom: e.name } : { name: e.name, legacy: e.legacy }),
  ]),
);

/**
 * Resolves a permission name as written in a policy: a current name resolves
 * to itself (legacy false); WRITE_DATA to IMPORT_DATA (legacy false, mappedFrom
 * WRITE_DATA); a legacy name without successor to itself with legacy true;
 * an unknown name to undefined. Exact, case-sensitive. The results are shared
 * frozen objects.
 */
export function resolvePermissionName(name: string): ResolvedPermissionName | undefined {
  return RESOLVED.get(name);
}

export function isAssignableTo(p: PermissionEntry, userType: UserType): boolean {
  return p.userTypes.includes(userType);
}

/**
 * The modules of which at least one must be active for `p` to be available to
 * a user of `userType`: `p.modules`, plus `p.backOfficeModules` for ORGANIZATION
 * and PARTNER users. Empty = always available. With no user type (e.g. an API
 * key) only `p.modules` apply.
 */
export function requiredModulesFor(p: PermissionEntry, userType: UserType | undefined): readonly ModuleId[] {
  if (userType === undefined || !BACK_OFFICE.has(userType) || p.backOfficeModules.length === 0) return p.modules;
  // The loader guarantees no catalog entry has both lists; keep this total anyway.
  return p.modules.length === 0 ? p.backOfficeModules : [...p.modules, ...p.backOfficeModules];
}
