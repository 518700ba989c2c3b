// The layout shows the architecture: imports point down only, and the pure core does no I/O.
//   cli  >  agent  >  broker, bridge (sockets)  >  store, audit, config (disk, clock)
//   >  snapshot, decide, topics  >  policy  >  catalog      (errors.ts is shared by all)
import t from 'tap';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, dirname, resolve } from 'node:path';
import { ROOT } from '../helpers/policy.js';

const LAYER: Record<string, number> = { errors: 0, catalog: 0, generated: 0, policy: 1, snapshot: 2, decide: 2, topics: 2, store: 3, audit: 3, config: 3, broker: 4, bridge: 4, fleet: 4, agent: 5, cli: 6 };
const PURE = new Set(['generated', 'catalog', 'policy', 'snapshot', 'decide', 'topics']);
const IO_MODULES = /^(node:)?(fs|fs\/promises|net|tls|http|https|dgram|child_process|worker_threads|cluster)$|^(pino|mqtt|aedes)$/;

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}
const src = join(ROOT, 'src');
const areaOf = (file: string) => {
  const rel = relative(src, file).split('/');
  return rel.length === 1 ? rel[0]!.replace(/\.ts$/, '') : rel[0]!;
};

t.test('every source area has a layer', async (t) => {
  for (const f of files(src)) t.ok(areaOf(f) in LAYER, `${relative(ROOT, f)} is in a known area`);
});

t.test('imports point down only; the pure core does no I/O', async (t) => {
  let checked = 0;
  for (const f of files(src)) {
    const area = areaOf(f);
    const text = readFileSync(f, 'utf8');
    for (const m of text.matchAll(/^\s*(?:import|export)[^'"]*from\s+['"]([^'"]+)['"]/gm)) {
      const spec = m[1]!;
      checked++;
      if (spec.startsWith('.')) {
        const target = areaOf(resolve(dirname(f), spec.replace(/\.js$/, '.ts')));
        t.ok(LAYER[target]! <= LAYER[area]!, `${relative(ROOT, f)} (${area}) imports ${spec} (${target}): not upward`);
      } else if (PURE.has(area) && IO_MODULES.test(spec)) {
        t.fail(`${relative(ROOT, f)} is pure but imports ${spec}`);
      }
    }
    if (PURE.has(area)) {
      t.notMatch(text, /Date\.now\(\)|new Date\(\)|process\.(env|argv|exit|stdout|stderr)|console\./, `${relative(ROOT, f)} is pure: no clock, process or console`);
    }
  }
  t.ok(checked > 50, `${checked} imports checked`);
});

// The schemas are TypeBox, compiled to validators at build time (scripts/gen-validators.mjs): at run
// time neither TypeBox nor Ajv is loaded (~15 MB of resident memory and ~200 ms of start, issue 13).
t.test('TypeBox, Ajv and the schema modules are imported for their types only', async (t) => {
  let checked = 0;
  for (const f of files(src)) {
    const rel = relative(ROOT, f);
    if (/\/schema\.ts$/.test(rel)) continue;
    const text = readFileSync(f, 'utf8');
    for (const m of text.matchAll(/^\s*(import|export)(\s+type)?\b[^'"]*from\s+['"]([^'"]+)['"]/gm)) {
      const spec = m[3]!;
      if (!/^(@sinclair\/typebox|ajv)(\/|$)|\/schema\.js$/.test(spec)) continue;
      checked++;
      t.ok(m[2] !== undefined, `${rel}: \`${m[1]} type … from '${spec}'\` (a value import would load it at run time)`);
    }
    t.notMatch(text, /import\(\s*['"][^'"]*(typebox|ajv|\/schema\.js)['"]/, `${rel}: no dynamic import of TypeBox, Ajv or a schema module`);
  }
  t.ok(checked >= 3, `${checked} type imports checked`);
});
