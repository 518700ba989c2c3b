import { writeFileSync } from 'node:fs';
import { generateFleetTenant, generateFleet } from './fleet-tenant.js';
import { validateTenantPolicy, validateFleet, prepareTenant, sliceForGateway } from '../src/policy/fleet.js';
import { compilePolicy } from '../src/policy/validate.js';
import { signSnapshot } from '../src/snapshot/snapshot.js';
import { generateKeyPair, parsePrivateKey } from '../src/snapshot/keys.js';
const t0 = performance.now();
const { tenant } = generateFleetTenant({ things: 100_000, principals: 120_000, thingsPerSite: 10, seed: 7 });
const t1 = performance.now(); console.log('gen', (t1 - t0).toFixed(0));
const json = JSON.stringify(tenant); writeFileSync('/tmp/fx/tenant.json', json); console.log('json MB', (json.length/1e6).toFixed(1));
let a = performance.now(); JSON.parse(json); console.log('JSON.parse', (performance.now()-a).toFixed(0));
const raw = JSON.parse(json);
a = performance.now(); const v = validateTenantPolicy(raw, 'x'); console.log('validate', (performance.now()-a).toFixed(0), v.warnings.length);
const f1 = generateFleet(1000, 10), f2 = generateFleet(10000, 1);
a = performance.now(); validateFleet(f2, 'f', v.tenant); console.log('validateFleet 10k', (performance.now()-a).toFixed(0));
a = performance.now(); const p = prepareTenant(v.tenant); console.log('prepare', (performance.now()-a).toFixed(0));
const key = parsePrivateKey(generateKeyPair().privateKeyPem);
for (const f of [f1, f2]) {
  a = performance.now(); let sliceMs = 0, compMs = 0, signMs = 0, maxB = 0, tot = 0;
  for (const g of f.gateways) {
    let b = performance.now(); const s = sliceForGateway(p, g); sliceMs += performance.now() - b;
    b = performance.now(); const pl = compilePolicy(s, { version: 1, issuedAt: Date.now() }); compMs += performance.now() - b;
    b = performance.now(); const bytes = signSnapshot(pl, key, 'k'); signMs += performance.now() - b;
    maxB = Math.max(maxB, bytes.length); tot += bytes.length;
  }
  console.log(f.gateways.length, 'total', (performance.now()-a).toFixed(0), 'slice', sliceMs.toFixed(0), 'compile', compMs.toFixed(0), 'sign', signMs.toFixed(0), 'max bytes', maxB, 'avg', (tot/f.gateways.length).toFixed(0));
}
console.log('rss MB', (process.memoryUsage().rss/1e6).toFixed(0), 'maxRSS', (process.resourceUsage().maxRSS/1e3).toFixed(0));
