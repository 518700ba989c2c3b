// A tenant at fleet scale for the fleet section of the bench (issue 14): 100,000 things at 10,000
// sites (a site is a resource group and a location of 10 things), 2,500 customers of 4 sites each,
// 100 service partners of about 25 customers each, and 120,000 principals: 150 organization users
// (3 admins; a third of the rest narrowed to a few customers by organization authorizations),
// 20 users per partner, the rest customer users (about 47 per customer; a tenth of the customers use
// user authorizations), 500 API keys (one with READ_ALL_THINGS) and 10 applications.
// `admin` (every permission, READ_ALL_THINGS included) is the tenant's own role, held by the 3
// organization admins only; partners' and customers' managers hold custom roles.
// Two fleets over it: 1,000 gateways of 10 sites (100 things) and 10,000 gateways of one site (10 things).
// Deterministic: the same options give the same tenant.
import type { FleetGateway, TenantPolicy } from '../src/policy/fleet.js';
import { ACTIVE_MODULES, createRandom, intBelow, makeApplications, ROLES, scryptLike, sha256Like } from './synthetic.js';

export interface FleetTenantOptions {
  readonly things: number;
  readonly principals: number;
  readonly thingsPerSite: number;
  readonly seed: number;
}

const KINDS = ['oven', 'mixer', 'chiller', 'press', 'pump', 'compressor', 'boiler', 'robot', 'conveyor', 'filler'];

export interface FleetTenant {
  readonly tenant: TenantPolicy;
  readonly sites: number;
}

export function generateFleetTenant(o: FleetTenantOptions): FleetTenant {
  const rnd = createRandom(o.seed);
  const org = 'acme';
  const sites = Math.ceil(o.things / o.thingsPerSite);
  const sitesPerCustomer = 4;
  const nCustomers = Math.ceil(sites / sitesPerCustomer);
  const nPartners = Math.max(2, Math.round(nCustomers / 25));
  const customers = Array.from({ length: nCustomers }, (_, i) => ({ id: `c-${i}`, name: `Customer ${i}` }));
  const locations = Array.from({ length: sites }, (_, s) => ({ id: `site-${s}`, name: `Site ${s}`, customer: customers[Math.floor(s / sitesPerCustomer)]!.id }));
  // Each customer has one partner (some two).
  const partnerCustomers: string[][] = Array.from({ length: nPartners }, () => []);
  customers.forEach((c, i) => {
    partnerCustomers[i % nPartners]!.push(c.id);
    if (rnd() < 0.1) partnerCustomers[intBelow(rnd, nPartners)]!.push(c.id);
  });
  const partners = partnerCustomers.map((cs, i) => ({ id: `p-${i}`, name: `Service partner ${i}`, customers: [...new Set(cs)] }));

  const things = Array.from({ length: o.things }, (_, i) => {
    const site = Math.floor(i / o.thingsPerSite);
    return {
      id: `${KINDS[i % KINDS.length]}-${i}`,
      name: `${KINDS[i % KINDS.length]} #${i}`,
      customer: locations[site]!.customer,
      location: `site-${site}`,
      resourceGroup: `site-${site}`,
      tokenHashes: [sha256Like(rnd)],
      ...(rnd() < 0.3 ? { certFingerprints: [sha256Like(rnd)] } : {}),
      ...(rnd() < 0.005 ? { revoked: true } : {}),
    };
  });

  const nApplications = 10;
  const nApiKeys = 500;
  const nOrg = 150;
  const nPartnerUsers = nPartners * 20;
  const nUsers = o.principals - nApplications - nApiKeys;
  const users: NonNullable<TenantPolicy['users']> = [];
  const organizationAuthorizations: NonNullable<TenantPolicy['organizationAuthorizations']> = [];
  const customerUsers: string[][] = customers.map(() => []);
  for (let i = 0; i < nUsers; i++) {
    const r = rnd();
    let user: NonNullable<TenantPolicy['users']>[number];
    const common = { name: `User ${i}`, passwordHash: scryptLike(rnd), ...(rnd() < 0.2 ? { tokenHashes: [sha256Like(rnd)] } : {}), ...(i >= 3 && rnd() < 0.02 ? { revoked: true } : {}) };
    if (i < nOrg) {
      const role = i < 3 ? 'admin' : r < 0.4 ? 'org-operations' : r < 0.7 ? 'org-support' : 'org-viewer';
      user = { id: `org-user-${i}`, userType: 'ORGANIZATION', entity: org, role, ...common };
      if (i >= 3 && rnd() < 0.33) {
        organizationAuthorizations.push({ user: user.id, customers: Array.from({ length: 3 + intBelow(rnd, 10) }, () => customers[intBelow(rnd, nCustomers)]!.id) });
      }
    } else if (i < nOrg + nPartnerUsers) {
      const role = r < 0.6 ? 'technician' : r < 0.8 ? 'partner-manager' : 'partner-viewer';
      user = { id: `ptn-user-${i}`, userType: 'PARTNER', entity: partners[i % nPartners]!.id, role, ...common };
    } else {
      const ci = i % nCustomers;
      const role = r < 0.45 ? 'operator' : r < 0.85 ? 'viewer' : r < 0.95 ? 'customer-manager' : undefined;
      user = { id: `cus-user-${i}`, userType: 'CUSTOMER', entity: customers[ci]!.id, ...(role === undefined ? {} : { role }), ...common };
      customerUsers[ci]!.push(user.id);
    }
    users.push(user);
  }
  // A tenth of the customers use user authorizations: each of their users sees about half of their things.
  const userAuthorizations: NonNullable<TenantPolicy['userAuthorizations']> = [];
  customers.forEach((c, ci) => {
    if (rnd() >= 0.1) return;
    const own: string[] = [];
    for (let s = ci * sitesPerCustomer; s < Math.min(sites, (ci + 1) * sitesPerCustomer); s++) {
      for (let t = s * o.thingsPerSite; t < Math.min(o.things, (s + 1) * o.thingsPerSite); t++) own.push(things[t]!.id);
    }
    for (const u of customerUsers[ci]!) userAuthorizations.push({ customer: c.id, user: u, things: own.filter(() => rnd() < 0.5) });
  });

  const apiKeys: NonNullable<TenantPolicy['apiKeys']> = [
    { id: 'key-analytics', name: 'analytics export (tenant-wide reads)', userType: 'PARTNER', entity: partners[0]!.id, permissions: ['READ_THING', 'READ_CLOUD_STATUS', 'READ_HISTORICAL_DATA', 'READ_ALL_THINGS'], secretHash: sha256Like(rnd) },
  ];
  for (let i = 1; i < nApiKeys; i++) {
    const r = rnd();
    const [userType, entity, permissions]: ['PARTNER' | 'CUSTOMER', string, string[]] =
      r < 0.2 ? ['PARTNER', partners[intBelow(rnd, nPartners)]!.id, ['READ_THING', 'READ_CLOUD_STATUS', 'READ_WORK_ORDER', 'WRITE_WORK_ORDER']] : ['CUSTOMER', customers[intBelow(rnd, nCustomers)]!.id, ['READ_THING', 'READ_HISTORICAL_DATA', 'EXPORT_DATA']];
    apiKeys.push({ id: `key-${i}`, name: `integration ${i}`, userType, entity, permissions, secretHash: sha256Like(rnd), ...(rnd() < 0.05 ? { revoked: true } : {}) });
  }
  const applications = makeApplications(rnd, nApplications);

  const tenant: TenantPolicy = {
    formatVersion: 1,
    tenant: 'acme-machines',
    modules: [...ACTIVE_MODULES],
    validity: { validFor: '30d' },
    organization: { id: org, name: 'ACME Machines' },
    partners,
    customers,
    locations,
    things,
    roles: ROLES.map((r) => ({ name: r.name, userType: r.userType, description: r.description, permissions: [...r.permissions] })),
    users,
    apiKeys,
    applications,
    userAuthorizations,
    organizationAuthorizations,
  };
  return { tenant, sites };
}

/** `gateways` gateways, each serving `sitesPerGateway` consecutive sites (resource groups `site-<n>`). */
export function generateFleet(gateways: number, sitesPerGateway: number): { formatVersion: 1; gateways: FleetGateway[] } {
  return {
    formatVersion: 1,
    gateways: Array.from({ length: gateways }, (_, g) => ({
      id: `gw-${g}`,
      role: 'standard' as const,
      resourceGroups: Array.from({ length: sitesPerGateway }, (_, k) => `site-${g * sitesPerGateway + k}`),
    })),
  };
}
