// src/broker/upstream/pins.ts: every package whose internals or behaviour the workarounds of
// src/broker/upstream/ rely on is pinned to an exact version in package.json (a dependency, or an
// `overrides` entry for one we reach only through aedes), recorded so in package-lock.json, installed
// at that version, and the one copy aedes resolves. And the reaches stay in src/broker/upstream/.
import t from 'tap';
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, relative } from 'node:path';
import { PINNED } from '../../src/broker/upstream/pins.js';

const ROOT = join(import.meta.dirname, '..', '..');
const UPSTREAM = join(ROOT, 'src', 'broker', 'upstream');
const EXACT = /^\d+\.\d+\.\d+(-[0-9A-Za-z.]+)?$/;

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; overrides?: Record<string, string> };
const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { version?: string }> };
const versionIn = (dir: string) => (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version: string }).version;

t.test('package.json pins each exactly (dependency or override), and it is that version', async (t) => {
  for (const [name, version] of Object.entries(PINNED)) {
    const spec = pkg.dependencies[name] ?? pkg.overrides?.[name];
    t.ok(spec !== undefined, `${name}: in dependencies or overrides`);
    t.match(spec, EXACT, `${name}: an exact version, no range (${spec})`);
    t.equal(spec, version, `${name}: package.json says ${version} (src/broker/upstream/pins.ts)`);
    if (pkg.dependencies[name] !== undefined && pkg.overrides?.[name] !== undefined) t.equal(pkg.overrides[name], pkg.dependencies[name], `${name}: override and dependency agree`);
  }
});

t.test('installed at the pinned version, in the lock too, and the copy aedes resolves', async (t) => {
  const fromAedes = createRequire(join(ROOT, 'node_modules', 'aedes', 'package.json'));
  const fromRoot = createRequire(join(ROOT, 'package.json'));
  for (const [name, version] of Object.entries(PINNED)) {
    t.equal(versionIn(join(ROOT, 'node_modules', name)), version, `${name}: node_modules has ${version}`);
    t.equal(lock.packages[`node_modules/${name}`]?.version, version, `${name}: package-lock.json has ${version}`);
    if (name === 'aedes') continue;
    t.equal(fromAedes.resolve(`${name}/package.json`), fromRoot.resolve(`${name}/package.json`), `${name}: aedes gets the same copy as we do`);
  }
  t.equal(
    createRequire(join(ROOT, 'node_modules', 'mqtt', 'package.json')).resolve('mqtt-packet/package.json'),
    fromRoot.resolve('mqtt-packet/package.json'),
    'MQTT.js (the cloud link) shares that mqtt-packet (packet-number-cache.ts, packet-write-hook.ts set it process-wide)',
  );
});

/** The packages src/broker/upstream/ requires or imports (by their root name). */
function reachedPackages(): Set<string> {
  const names = new Set<string>();
  for (const f of readdirSync(UPSTREAM)) {
    const text = readFileSync(join(UPSTREAM, f), 'utf8');
    for (const m of text.matchAll(/(?:require\(|from )'([^'.][^']*)'/g)) {
      const spec = m[1]!;
      if (spec.startsWith('node:')) continue;
      names.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!);
    }
  }
  return names;
}

t.test('every package src/broker/upstream/ reaches is pinned there', async (t) => {
  const reached = reachedPackages();
  for (const name of ['aedes', 'mqemitter', 'mqtt-packet', 'qlobber', 'aedes-packet']) t.ok(reached.has(name), `${name} is reached (the scan works)`);
  for (const name of reached) t.ok(name in PINNED, `${name}: reached by src/broker/upstream/, so in PINNED`);
});

/** Source files under `dir`, recursively. */
function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

t.test('the reaches into private internals stay in src/broker/upstream/', async (t) => {
  // ../delivery.ts keeps two (the broker's hot path), documented in src/broker/upstream/client-delivery.ts.
  const allowed: Record<string, RegExp> = { [join('src', 'broker', 'delivery.ts')]: /\bc\._(?:parser|nextId)\b/g };
  const rules: [RegExp, string][] = [
    [/createRequire|\brequire\(/, 'require() (a deep or CommonJS reach)'],
    [/\w\._[a-z]\w*/, 'a private member access (`x._name`)'],
    [/\b_[a-z]\w*\??:/, 'a private member declared in a cast'],
  ];
  const offenders: string[] = [];
  let scanned = 0;
  for (const file of sources(join(ROOT, 'src'))) {
    const rel = relative(ROOT, file);
    if (rel.startsWith(join('src', 'broker', 'upstream'))) continue;
    scanned++;
    const code = readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => !/^\s*(\/\/|\*|\/\*)/.test(l))
      .join('\n')
      .replace(allowed[rel] ?? /$^/g, '');
    for (const [re, what] of rules) if (re.test(code)) offenders.push(`${rel}: ${what}`);
  }
  t.ok(scanned > 50, `${scanned} source files scanned`);
  t.same(offenders, [], 'none outside src/broker/upstream/ (move the reach there, with a shape test)');
  // The scan finds what it looks for (the allowed reaches of delivery.ts, not removed).
  const delivery = readFileSync(join(ROOT, 'src', 'broker', 'delivery.ts'), 'utf8');
  t.match(delivery, rules[1]![0], 'delivery.ts still reaches _parser/_nextId (else drop the allowance)');
});

t.test('every module of src/broker/upstream/ has its shape test, cites upstream, and is in docs/upstream.md', async (t) => {
  const doc = readFileSync(join(ROOT, 'docs', 'upstream.md'), 'utf8');
  const modules = readdirSync(UPSTREAM).filter((f) => f.endsWith('.ts'));
  t.ok(modules.length >= 20, `${modules.length} modules`);
  for (const file of modules) {
    const name = file.slice(0, -3);
    const header = readFileSync(join(UPSTREAM, file), 'utf8').split('\n').filter((l) => l.startsWith('//')).join('\n');
    const test = `test/unit/upstream-${name}.test.ts`;
    t.ok(header.includes(test), `${file}: its header names ${test}`);
    t.ok(readdirSync(join(ROOT, 'test', 'unit')).includes(`upstream-${name}.test.ts`), `${test} exists`);
    t.match(header, /GHSA-|moscajs\/|mqttjs\/|mcollina\/|[Nn]o upstream issue|[Nn]ot a defect|[Nn]ot workarounds|[Nn]ot a workaround/, `${file}: cites the upstream issue or advisory, or says there is none`);
    t.ok(doc.includes(`(../src/broker/upstream/${file})`), `${file}: in docs/upstream.md`);
  }
});
