#!/usr/bin/env node
// The CLI from the build: dist/edgewarden.cjs, the bundle `npm run build` makes (scripts/bundle.mjs),
// as the single-file executable runs it. Node 24 is edgewarden's runtime: on an older node (e.g. Debian's
// Node 20 running the README's walkthrough) this runs itself again on Node 24 (scripts/node24.mjs).
if (Number(process.versions.node.split('.')[0]) < 24) {
  const { runOnNode24 } = await import('../scripts/node24.mjs');
  const { fileURLToPath } = await import('node:url');
  runOnNode24([fileURLToPath(import.meta.url), ...process.argv.slice(2)]);
} else {
  const { createRequire } = await import('node:module');
  const { main } = createRequire(import.meta.url)('../dist/edgewarden.cjs');
  process.exitCode = await main(process.argv.slice(2));
}
