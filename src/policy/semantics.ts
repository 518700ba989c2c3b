// The checks a schema cannot express: references between entities, unique ids, the permission
// catalog (known names, user-type rules), EVRYTHNG's role invariants and credential hashes.
import type { Issue } from '../errors.js';
import { permissionByName, resolvePermissionName, isAssignableTo, type UserType } from '../catalog/index.js';
import { hashKind } from './credentials.js';
import type { PolicyBody } from './schema.js';

export const BUILT_IN_ROLES = ['admin', 'none'] as const;

const PLAINTEXT = 'is not a credential hash (expected sha256:<64 hex> or scrypt:...); a plaintext secret never belongs in a policy — make one with `edgewarden hash`';

// A person's password is guessable: an unsalted fast hash of it falls to a dictionary in seconds.
// sha256 is for generated high-entropy secrets only (device tokens, personal access tokens, keys).
export const UNSALTED_PASSWORD =
  'is a sha256 hash: a user\'s password must be a salted slow hash (scrypt:...) — make one with `edgewarden hash --scrypt` (the password on standard input); ' +
  'sha256 is only for generated high-entropy tokens (`edgewarden token`), which go in tokenHashes';

export function checkSemantics(p: PolicyBody, issues: Issue[], warnings: Issue[]): void {
  const err = (path: string, message: string) => issues.push({ path, message });
  const warn = (path: string, message: string) => warnings.push({ path, message });

  // --- unique ids -------------------------------------------------------------------------
  const uniq = (list: readonly { id: string }[] | undefined, what: string, path: string): ReadonlyMap<string, number> => {
    const seen = new Map<string, number>();
    const l = list ?? [];
    for (let i = 0; i < l.length; i++) {
      const id = l[i]!.id;
      const first = seen.get(id);
      if (first !== undefined) err(`${path}[${i}].id`, `duplicate ${what} id "${id}" (first at ${path}[${first}])`);
      else seen.set(id, i);
    }
    return seen;
  };
  const partners = uniq(p.partners, 'partner', 'partners');
  const customers = uniq(p.customers, 'customer', 'customers');
  const locations = uniq(p.locations, 'location', 'locations');
  const things = uniq(p.things, 'thing', 'things');
  uniq(p.users, 'user', 'users');
  uniq(p.apiKeys, 'API key', 'apiKeys');
  uniq(p.applications, 'application', 'applications');

  // Principals share one namespace: the MQTT username names exactly one of them.
  // The owner of each id as its collection and index (the path is only spelled out for an error).
  const principalOwner = new Map<string, { collection: string; i: number }>();
  principalOwner.set(p.gateway.id, { collection: 'gateway', i: -1 });
  const claim = (id: string, collection: string, i: number) => {
    const other = principalOwner.get(id);
    if (other === undefined) principalOwner.set(id, { collection, i });
    else if (other.collection !== collection) {
      const otherPath = other.i < 0 ? 'gateway.id' : `${other.collection}[${other.i}].id`;
      err(`${collection}[${i}].id`, `duplicate principal id "${id}": already used by ${otherPath} (users, API keys, applications, things and the gateway share one namespace)`);
    }
  };
  (p.things ?? []).forEach((t, i) => claim(t.id, 'things', i));
  (p.users ?? []).forEach((u, i) => claim(u.id, 'users', i));
  (p.apiKeys ?? []).forEach((k, i) => claim(k.id, 'apiKeys', i));
  (p.applications ?? []).forEach((a, i) => claim(a.id, 'applications', i));

  // --- gateway, modules ------------------------------------------------------------------
  const groups = new Set<string>();
  p.gateway.resourceGroups.forEach((g, i) => {
    if (groups.has(g)) err(`gateway.resourceGroups[${i}]`, `duplicate resource group "${g}"`);
    groups.add(g);
  });
  const modules = new Set<string>();
  p.modules.forEach((m, i) => {
    if (modules.has(m)) err(`modules[${i}]`, `duplicate module "${m}"`);
    modules.add(m);
  });

  // --- tenant hierarchy ----------------------------------------------------------------------
  (p.partners ?? []).forEach((pt, i) =>
    pt.customers.forEach((c, j) => {
      if (!customers.has(c)) err(`partners[${i}].customers[${j}]`, `unknown customer "${c}"`);
    }),
  );
  const locationCustomer = new Map<string, string>();
  (p.locations ?? []).forEach((l, i) => {
    if (!customers.has(l.customer)) err(`locations[${i}].customer`, `unknown customer "${l.customer}"`);
    locationCustomer.set(l.id, l.customer);
  });
  const thingCustomer = new Map<string, string>();
  (p.things ?? []).forEach((t, i) => {
    thingCustomer.set(t.id, t.customer);
    if (!customers.has(t.customer)) err(`things[${i}].customer`, `thing "${t.id}" is in unknown customer "${t.customer}"`);
    if (t.location !== undefined) {
      const lc = locationCustomer.get(t.location);
      if (lc === undefined) err(`things[${i}].location`, `unknown location "${t.location}"`);
      else if (lc !== t.customer) err(`things[${i}].location`, `location "${t.location}" belongs to customer "${lc}", not "${t.customer}"`);
    }
    (t.tokenHashes ?? []).forEach((h, j) => {
      if (hashKind(h) !== 'sha256') err(`things[${i}].tokenHashes[${j}]`, PLAINTEXT);
    });
    (t.certFingerprints ?? []).forEach((h, j) => {
      if (hashKind(h) !== 'sha256') err(`things[${i}].certFingerprints[${j}]`, 'is not a certificate fingerprint (expected sha256:<64 hex> of the DER certificate)');
    });
  });

  // --- roles and permissions ---------------------------------------------------------------
  const checkPermissions = (perms: readonly string[], userType: UserType, path: string, holder: string) => {
    const seen = new Set<string>();
    perms.forEach((name, j) => {
      const resolved = resolvePermissionName(name);
      if (!resolved) {
        err(`${path}[${j}]`, `unknown permission "${name}" (see \`edgewarden catalog\`)`);
        return;
      }
      if (resolved.mappedFrom) warn(`${path}[${j}]`, `legacy permission ${resolved.mappedFrom} is mapped to ${resolved.name}`);
      else if (resolved.legacy) warn(`${path}[${j}]`, `legacy permission ${name} (only in the older Servitly list)`);
      if (seen.has(resolved.name)) warn(`${path}[${j}]`, `permission ${resolved.name} listed twice`);
      seen.add(resolved.name);
      const entry = permissionByName(resolved.name);
      if (entry && !isAssignableTo(entry, userType)) {
        err(`${path}[${j}]`, `${resolved.name} can be assigned only to ${entry.userTypes.join(' and ')} user types; ${holder} is ${userType}`);
      }
    });
  };
  const roleType = new Map<string, UserType>();
  (p.roles ?? []).forEach((r, i) => {
    if ((BUILT_IN_ROLES as readonly string[]).includes(r.name)) {
      err(`roles[${i}].name`, `"${r.name}" is a built-in role and cannot be redefined`);
      return;
    }
    if (roleType.has(r.name)) err(`roles[${i}].name`, `duplicate role "${r.name}"`);
    roleType.set(r.name, r.userType);
    checkPermissions(r.permissions, r.userType, `roles[${i}].permissions`, `role "${r.name}"`);
  });

  // --- principals ---------------------------------------------------------------------------
  const entityExists = (userType: UserType, entity: string): boolean =>
    userType === 'ORGANIZATION' ? entity === p.organization.id : userType === 'PARTNER' ? partners.has(entity) : customers.has(entity);

  const userById = new Map<string, { userType: UserType; entity: string }>();
  let admins = 0;
  (p.users ?? []).forEach((u, i) => {
    userById.set(u.id, { userType: u.userType, entity: u.entity });
    if (!entityExists(u.userType, u.entity)) err(`users[${i}].entity`, `unknown ${u.userType.toLowerCase()} "${u.entity}"`);
    const role = u.role ?? 'none';
    if (role === 'admin') admins++;
    else if (role !== 'none') {
      const t = roleType.get(role);
      if (t === undefined) warn(`users[${i}].role`, `role "${role}" is not defined: user "${u.id}" falls back to none (EVRYTHNG rule for a deleted role)`);
      else if (t !== u.userType) err(`users[${i}].role`, `role "${role}" is for ${t} users; user "${u.id}" is ${u.userType}`);
    }
    if (u.passwordHash !== undefined) {
      const kind = hashKind(u.passwordHash);
      if (kind === undefined) err(`users[${i}].passwordHash`, PLAINTEXT);
      else if (kind !== 'scrypt') err(`users[${i}].passwordHash`, UNSALTED_PASSWORD);
    }
    (u.tokenHashes ?? []).forEach((h, j) => {
      if (hashKind(h) !== 'sha256') err(`users[${i}].tokenHashes[${j}]`, PLAINTEXT);
    });
  });
  if (admins === 0) err('users', 'at least one user must hold the built-in admin role (EVRYTHNG rule)');

  (p.apiKeys ?? []).forEach((k, i) => {
    if (!entityExists(k.userType, k.entity)) err(`apiKeys[${i}].entity`, `unknown ${k.userType.toLowerCase()} "${k.entity}"`);
    checkPermissions(k.permissions, k.userType, `apiKeys[${i}].permissions`, `API key "${k.id}" of a ${k.userType.toLowerCase()}`);
    if (hashKind(k.secretHash) !== 'sha256') err(`apiKeys[${i}].secretHash`, PLAINTEXT);
  });
  (p.applications ?? []).forEach((a, i) => {
    if (a.role !== 'admin' && a.role !== 'none') {
      const t = roleType.get(a.role);
      if (t === undefined) warn(`applications[${i}].role`, `role "${a.role}" is not defined: application "${a.id}" falls back to none`);
      else if (t !== 'ORGANIZATION') err(`applications[${i}].role`, `role "${a.role}" is for ${t} users; applications belong to the organization and need an ORGANIZATION role`);
    }
    if (hashKind(a.secretHash) !== 'sha256') err(`applications[${i}].secretHash`, PLAINTEXT);
  });

  // --- authorizations -------------------------------------------------------------------------
  (p.userAuthorizations ?? []).forEach((a, i) => {
    const path = `userAuthorizations[${i}]`;
    if (!customers.has(a.customer)) err(`${path}.customer`, `unknown customer "${a.customer}"`);
    const u = userById.get(a.user);
    if (!u) err(`${path}.user`, `unknown user "${a.user}"`);
    else if (u.userType !== 'CUSTOMER' || u.entity !== a.customer) err(`${path}.user`, `user "${a.user}" is not a CUSTOMER user of customer "${a.customer}"`);
    a.things.forEach((t, j) => {
      const c = thingCustomer.get(t);
      if (c === undefined) err(`${path}.things[${j}]`, `unknown thing "${t}"`);
      else if (c !== a.customer) err(`${path}.things[${j}]`, `thing "${t}" belongs to customer "${c}", not "${a.customer}"`);
    });
  });
  (p.organizationAuthorizations ?? []).forEach((a, i) => {
    const path = `organizationAuthorizations[${i}]`;
    const u = userById.get(a.user);
    if (!u) err(`${path}.user`, `unknown user "${a.user}"`);
    else if (u.userType !== 'ORGANIZATION') err(`${path}.user`, `user "${a.user}" is not an ORGANIZATION user`);
    (a.customers ?? []).forEach((c, j) => {
      if (!customers.has(c)) err(`${path}.customers[${j}]`, `unknown customer "${c}"`);
    });
    (a.locations ?? []).forEach((l, j) => {
      if (!locations.has(l)) err(`${path}.locations[${j}]`, `unknown location "${l}"`);
    });
    (a.things ?? []).forEach((t, j) => {
      if (!things.has(t)) err(`${path}.things[${j}]`, `unknown thing "${t}"`);
    });
  });
}
