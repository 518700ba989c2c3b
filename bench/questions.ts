// A fixed, deterministic list of decision questions (principal, permission, thing?) over a
// synthetic tenant: a realistic mix of the traffic a plant gateway sees (mostly devices and
// people acting on their own things) and of everything that should be refused.
import type { UserType } from '../src/catalog/index.js';
import { createRandom, intBelow, pick, ROLE_BY_NAME, type TenantModel } from './synthetic.js';

export interface Questions {
  readonly count: number;
  readonly principals: readonly string[];
  readonly permissions: readonly string[];
  /** undefined: a tenant-level question (no thing). */
  readonly things: readonly (string | undefined)[];
  /** How many questions of each kind (QUESTION_KINDS) were generated. */
  readonly kinds: Readonly<Record<QuestionKind, number>>;
}

/** Kinds of question (stable ids, used as JSON keys), what they probe, and their weight (percent). */
export const QUESTION_KINDS = {
  deviceOwnThing: { weight: 24, label: 'device acts on itself' },
  deviceOtherThing: { weight: 2, label: 'device acts on another thing' },
  customerUserOwnThing: { weight: 15, label: 'customer user, own customer\'s thing' },
  partnerUserAssignedThing: { weight: 8, label: 'partner user, assigned customer\'s thing' },
  organizationUserThing: { weight: 4, label: 'organization user, any thing' },
  applicationThing: { weight: 6, label: 'application, any thing' },
  apiKeyThing: { weight: 4, label: 'API key, own scope or READ_ALL_THINGS' },
  tenantLevel: { weight: 8, label: 'tenant-level (no thing)' },
  otherCustomersThing: { weight: 7, label: 'thing of another customer' },
  outsideGatewayGroups: { weight: 5, label: 'thing outside the gateway\'s resource groups' },
  permissionNotGranted: { weight: 4, label: 'permission not granted by the role' },
  moduleInactive: { weight: 3, label: 'permission needs an inactive module' },
  userTypeRestricted: { weight: 3, label: 'permission not assignable to the user type' },
  unknownPrincipal: { weight: 3, label: 'unknown principal' },
  revokedPrincipal: { weight: 2, label: 'revoked principal' },
  unknownThing: { weight: 1, label: 'unknown thing' },
  registerThingOnStandardGateway: { weight: 1, label: 'REGISTER_THING on a standard gateway' },
} as const;
export type QuestionKind = keyof typeof QUESTION_KINDS;

const THING_READS = ['READ_THING', 'READ_CLOUD_STATUS', 'READ_HISTORICAL_DATA'];
const TENANT_LEVEL = ['READ_CUSTOMER', 'READ_LOCATION', 'READ_ALL_CUSTOMERS', 'READ_WORK_ORDER', 'READ_TICKET', 'PLACE_ORDER', 'READ_SPARE_PART', 'READ_AUDIT'];
const INACTIVE_MODULE_PERMISSIONS = new Set(['READ_RULE', 'WRITE_RULE', 'READ_TASK', 'WRITE_TASK', 'WRITE_WORK_SESSION']);
const NEVER_GRANTED_CANDIDATES = ['EXECUTE_THING_COMMAND', 'UPDATE_FIRMWARE', 'SET_THING_PARAMETER', 'DELETE_THING', 'WRITE_THING'];
const RESTRICTED: Readonly<Record<UserType, readonly string[]>> = {
  CUSTOMER: ['WRITE_CLOUD_STATUS', 'WRITE_CERTIFICATE', 'READ_CERTIFICATE', 'WRITE_THING_CONNECTION_TOKENS'],
  PARTNER: ['WRITE_CLOUD_STATUS', 'READ_USER_AUTHORIZATION', 'WRITE_PAYMENTS'],
  ORGANIZATION: ['READ_USER_AUTHORIZATION', 'WRITE_USER_AUTHORIZATION', 'PLACE_ORDER'],
};

/** A flat copy, as Buffer#toString makes when mqtt-packet decodes a username or a topic. */
const flat = (s: string): string => Buffer.from(s, 'utf8').toString('utf8');

/** Thing-level permissions the role grants that need no inactive module (all reads for `admin`). */
function thingPermissionsOf(role: string | undefined): readonly string[] {
  if (role === 'admin') return ['READ_THING', 'READ_CLOUD_STATUS', 'EXECUTE_THING_COMMAND', 'SET_THING_PARAMETER', 'WRITE_ALERT_STATUS'];
  const r = role === undefined ? undefined : ROLE_BY_NAME.get(role);
  if (!r) return ['READ_THING'];
  const p = r.permissions.filter((n) => !INACTIVE_MODULE_PERMISSIONS.has(n) && (THING_READS.includes(n) || /THING|ALERT|FIRMWARE/.test(n)) && n !== 'REGISTER_THING');
  return p.length > 0 ? p : ['READ_THING'];
}

export function generateQuestions(model: TenantModel, count: number, seed: number): Questions {
  const rnd = createRandom(seed);
  const p = model.payload;
  const things = p.things ?? [];
  const users = p.users ?? [];
  const apiKeys = (p.apiKeys ?? []).filter((k) => k.revoked !== true);
  const apps = p.applications ?? [];
  const served: number[] = [];
  const unserved: number[] = [];
  things.forEach((t, i) => (t.revoked === true ? undefined : (model.thingServed[i] ? served : unserved).push(i)));
  const thingId = (i: number): string => things[i]!.id;
  const user = (t: UserType) => users[pick(rnd, model.usersByType[t])]!;
  const customerIndex = new Map((p.customers ?? []).map((c, i) => [c.id, i]));
  const partnerIndex = new Map((p.partners ?? []).map((x, i) => [x.id, i]));

  /** A thing of customer ci, served by this gateway when `wantServed` (falls back to any). */
  const thingOfCustomer = (ci: number, wantServed: boolean): number | undefined => {
    const list = model.customerThings[ci] ?? [];
    if (list.length === 0) return undefined;
    for (let tries = 0; tries < 8; tries++) {
      const t = pick(rnd, list);
      if (model.thingServed[t] === wantServed && things[t]!.revoked !== true) return t;
    }
    return pick(rnd, list);
  };
  /** A customer in the principal's own scope (customer user: its customer; partner: an assigned one). */
  const scopeCustomer = (u: { userType: UserType; entity: string }): number => {
    if (u.userType === 'CUSTOMER') return customerIndex.get(u.entity)!;
    if (u.userType === 'PARTNER') return pick(rnd, model.partnerCustomers[partnerIndex.get(u.entity)!]!);
    return intBelow(rnd, customerIndex.size);
  };
  const outsideCustomer = (own: ReadonlySet<number>): number => {
    for (;;) {
      const ci = intBelow(rnd, customerIndex.size);
      if (!own.has(ci)) return ci;
    }
  };

  const kinds = Object.keys(QUESTION_KINDS) as QuestionKind[];
  const cumulative: number[] = [];
  let total = 0;
  for (const k of kinds) cumulative.push((total += QUESTION_KINDS[k].weight));
  const kindCounts = Object.fromEntries(kinds.map((k) => [k, 0])) as Record<QuestionKind, number>;

  const principals: string[] = [];
  const permissions: string[] = [];
  const thingsAsked: (string | undefined)[] = [];
  const ask = (principal: string, permission: string, thing: string | undefined) => {
    principals.push(principal);
    permissions.push(permission);
    thingsAsked.push(thing);
  };

  for (let q = 0; q < count; q++) {
    const r = rnd() * total;
    let ki = 0;
    while (cumulative[ki]! <= r) ki++;
    const kind = kinds[ki]!;
    kindCounts[kind]++;
    generateOne(kind);
  }

  function generateOne(kind: QuestionKind): void {
    switch (kind) {
      case 'deviceOwnThing': {
        const t = pick(rnd, served);
        return ask(thingId(t), pick(rnd, ['READ_THING', 'READ_CLOUD_STATUS']), thingId(t));
      }
      case 'deviceOtherThing':
        return ask(thingId(pick(rnd, served)), 'READ_THING', thingId(pick(rnd, served)));
      case 'customerUserOwnThing':
      case 'partnerUserAssignedThing': {
        const u = user(kind === 'customerUserOwnThing' ? 'CUSTOMER' : 'PARTNER');
        const t = thingOfCustomer(scopeCustomer(u), true);
        return ask(u.id, pick(rnd, thingPermissionsOf(u.role)), t === undefined ? undefined : thingId(t));
      }
      case 'organizationUserThing': {
        const u = user('ORGANIZATION');
        return ask(u.id, pick(rnd, thingPermissionsOf(u.role)), thingId(pick(rnd, served)));
      }
      case 'applicationThing': {
        const a = pick(rnd, apps);
        return ask(a.id, pick(rnd, thingPermissionsOf(a.role)), thingId(pick(rnd, served)));
      }
      case 'apiKeyThing': {
        if (rnd() < 0.5) return ask(model.readAllThingsKey, pick(rnd, THING_READS), thingId(pick(rnd, served)));
        const k = pick(rnd, apiKeys);
        const t = thingOfCustomer(scopeCustomer(k), true);
        return ask(k.id, 'READ_THING', t === undefined ? undefined : thingId(t));
      }
      case 'tenantLevel': {
        const r = rnd();
        const id = r < 0.1 ? pick(rnd, apps).id : user(r < 0.2 ? 'ORGANIZATION' : r < 0.5 ? 'PARTNER' : 'CUSTOMER').id;
        return ask(id, pick(rnd, TENANT_LEVEL), undefined);
      }
      case 'otherCustomersThing': {
        const u = user(rnd() < 0.6 ? 'CUSTOMER' : 'PARTNER');
        const own = new Set(u.userType === 'CUSTOMER' ? [customerIndex.get(u.entity)!] : model.partnerCustomers[partnerIndex.get(u.entity)!]!);
        const t = thingOfCustomer(outsideCustomer(own), true);
        return ask(u.id, pick(rnd, thingPermissionsOf(u.role)), t === undefined ? undefined : thingId(t));
      }
      case 'outsideGatewayGroups': {
        const u = user(rnd() < 0.6 ? 'CUSTOMER' : 'PARTNER');
        const t = thingOfCustomer(scopeCustomer(u), false);
        return ask(u.id, pick(rnd, thingPermissionsOf(u.role)), t === undefined ? undefined : thingId(t));
      }
      case 'permissionNotGranted': {
        for (;;) {
          const u = user(pick(rnd, ['CUSTOMER', 'PARTNER', 'ORGANIZATION'] as const));
          if (u.role === 'admin') continue;
          const granted = new Set(u.role === undefined ? [] : ROLE_BY_NAME.get(u.role)?.permissions ?? []);
          const missing = NEVER_GRANTED_CANDIDATES.filter((n) => !granted.has(n));
          if (missing.length === 0) continue;
          const t = thingOfCustomer(scopeCustomer(u), true);
          return ask(u.id, pick(rnd, missing), t === undefined ? undefined : thingId(t));
        }
      }
      case 'moduleInactive': {
        for (;;) {
          const u = user(pick(rnd, ['CUSTOMER', 'PARTNER', 'ORGANIZATION'] as const));
          const granted = u.role === undefined ? [] : (ROLE_BY_NAME.get(u.role)?.permissions ?? []);
          const inactive = granted.filter((n) => INACTIVE_MODULE_PERMISSIONS.has(n));
          if (inactive.length === 0) continue;
          const t = thingOfCustomer(scopeCustomer(u), true);
          return ask(u.id, pick(rnd, inactive), rnd() < 0.5 || t === undefined ? undefined : thingId(t));
        }
      }
      case 'userTypeRestricted': {
        const ut = pick(rnd, ['CUSTOMER', 'PARTNER', 'ORGANIZATION'] as const);
        const u = user(ut);
        const t = thingOfCustomer(scopeCustomer(u), true);
        return ask(u.id, pick(rnd, RESTRICTED[ut]), t === undefined ? undefined : thingId(t));
      }
      case 'unknownPrincipal':
        return ask(`ghost-${intBelow(rnd, 1_000_000)}`, 'READ_THING', thingId(pick(rnd, served)));
      case 'revokedPrincipal':
        return ask(pick(rnd, model.revokedPrincipals), 'READ_THING', thingId(pick(rnd, served)));
      case 'unknownThing': {
        const u = user('CUSTOMER');
        return ask(u.id, 'READ_THING', `gone-${intBelow(rnd, 1_000_000)}`);
      }
      case 'registerThingOnStandardGateway': {
        const a = apps.find((x) => x.role === 'ibm-app-backend-trusted') ?? pick(rnd, apps);
        return ask(a.id, 'REGISTER_THING', `new-thing-${intBelow(rnd, 1_000_000)}`);
      }
    }
  }

  // Principal and thing ids as the MQTT parser hands them over: flat strings, distinct from the
  // index's own key strings (so a look-up compares contents). Permission names stay the topic
  // map's constants.
  return { count, principals: principals.map(flat), permissions, things: thingsAsked.map((t) => (t === undefined ? t : flat(t))), kinds: kindCounts };
}
