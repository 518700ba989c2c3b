// The aedes workarounds (src/broker/aedes2.ts) are written against one exact version: package.json
// must pin it, and it must be the one installed. Moving the pin means re-checking each workaround.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { AEDES_PINNED } from '../../src/broker/aedes2.js';

const ROOT = join(import.meta.dirname, '..', '..');

t.test('package.json pins aedes exactly to the version the workarounds are for', async (t) => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
  t.equal(pkg.dependencies['aedes'], AEDES_PINNED, 'an exact version, no range');
});

t.test('the installed aedes is that version', async (t) => {
  const require = createRequire(join(ROOT, 'package.json'));
  const installed = JSON.parse(readFileSync(join(ROOT, 'node_modules', 'aedes', 'package.json'), 'utf8')) as { version: string };
  t.equal(installed.version, AEDES_PINNED);
  // aedes 2.0.0-beta.1 asks for aedes-persistence ^10.3.1; before 11.0.0 it has a known advisory (its
  // QoS 2 dedup table outlives a clean session). package.json overrides it to 11.0.0. The agent uses
  // its own store (src/broker/session-store.ts), but a vulnerable version is not shipped either.
  const persistence = JSON.parse(readFileSync(require.resolve('aedes-persistence/package.json'), 'utf8')) as { version: string };
  t.ok(Number(persistence.version.split('.')[0]) >= 11, `aedes-persistence ${persistence.version} is 11 or later`);
});
