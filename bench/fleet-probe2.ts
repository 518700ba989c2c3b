import { readFileSync } from 'node:fs';
import { generateFleet } from './fleet-tenant.js';
import { validateTenantPolicy, prepareTenant, sliceForGateway } from '../src/policy/fleet.js';
import { compilePolicy } from '../src/policy/validate.js';
import { encodePayload } from '../src/snapshot/snapshot.js';
const v = validateTenantPolicy(JSON.parse(readFileSync('/tmp/fx/tenant.json', 'utf8')), 'x');
const p = prepareTenant(v.tenant);
let best = { n: 0, g: 0 };
const gws = generateFleet(1000, 10).gateways;
gws.forEach((g, i) => { const n = encodePayload(compilePolicy(sliceForGateway(p, g), { version: 1, issuedAt: 1 })).length; if (n > best.n) best = { n, g: i }; });
const pl = compilePolicy(sliceForGateway(p, gws[best.g]!), { version: 1, issuedAt: 1 }) as any;
console.log('max', best);
for (const k of Object.keys(pl)) { const part = encodePayload({ [k]: pl[k] } as any).length; console.log(k, Array.isArray(pl[k]) ? pl[k].length : '', part); }
const by: Record<string, number> = {}; for (const u of pl.users) by[u.userType] = (by[u.userType] ?? 0) + 1; console.log(by);
console.log(JSON.stringify(pl.users.slice(0,2)), JSON.stringify(pl.things[0]));
