#!/usr/bin/env node
// esbuild bundles the CLI (TypeScript sources from src/cli/main.ts and the npm dependencies) into one
// CommonJS file: `dist/edgewarden.cjs`, which bin/edgewarden.js (`npm start`, the tests) runs, and
// the single-file executable's main script (scripts/package.mjs). One file instead of ~300 modules
// from dist/ and node_modules/: ~9 MB less resident at idle and no module resolution at start (the
// loader's hot path got the optimizing compilers to work during start), bench/README.md.
//
// Whitespace and syntax are minified, names are kept (stack traces stay readable): V8 keeps the
// source of every script in memory for lazy compilation, and a smaller one is ~1.3 MB less.
//
//   node scripts/bundle.mjs     write dist/edgewarden.cjs (run by `npm run build`, after tsc)
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const DEV_BUNDLE = join(ROOT, 'dist', 'edgewarden.cjs');

/**
 * Bundles the CLI into `outfile`. `sea` ({ version }) is the single-file executable's build: the file
 * runs the CLI itself (the SEA's main script) and bundles the loader of cbor-extract's native addon,
 * which it finds in prebuilds/ beside the executable. Otherwise the file exports `main` and loads
 * cbor-extract from node_modules.
 */
export async function bundle(outfile, { sea } = {}) {
  const esbuild = await import('esbuild');
  // `const require = createRequire(import.meta.url)` in our sources (e.g. src/broker/upstream/mqemitter-flat-drain.ts) would look
  // for node_modules beside the bundle at run time; without it, esbuild bundles the modules `require` names.
  const ownCreateRequire = {
    name: 'own-create-require',
    setup(build) {
      build.onLoad({ filter: /[\\/]src[\\/].*\.ts$/ }, (args) => {
        let text = readFileSync(args.path, 'utf8');
        if (text.includes('createRequire(import.meta.url)')) {
          text = text.replace(/^\s*const require = createRequire\(import\.meta\.url\);\s*$/m, '');
          if (text.includes('createRequire(import.meta.url)')) {
            throw new Error(`${args.path}: createRequire(import.meta.url) in a form the bundler does not rewrite`);
          }
        }
        return { contents: text, loader: 'ts' };
      });
    },
  };
  // `debug` (mqtt-packet's, MQTT.js'): the real one only when DEBUG is set at start (src/bundle/debug-when-asked.cjs).
  const STUB = join(ROOT, 'src', 'bundle', 'debug-when-asked.cjs');
  const debugWhenAsked = {
    name: 'debug-when-asked',
    setup(build) {
      build.onResolve({ filter: /^debug$/ }, (args) => (args.importer === STUB ? undefined : { path: STUB }));
    },
  };
  const entry = sea
    ? "import { main } from './src/cli/main.js';\nmain(process.argv.slice(2)).then((code) => { process.exitCode = code; });\n"
    : "import './src/fleet/worker-entry.js';\nexport { main } from './src/cli/main.js';\n";
  const result = await esbuild.build({
    stdin: { contents: entry, resolveDir: ROOT, sourcefile: sea ? 'sea-entry.ts' : 'entry.ts', loader: 'ts' },
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node24',
    outfile,
    legalComments: 'none',
    minifyWhitespace: true,
    minifySyntax: true,
    logLevel: 'warning',
    metafile: true,
    // EW_SOURCEMAP=1 npm run build: dist/edgewarden.cjs.map beside the bundle, for mapping CPU profiles to src/.
    sourcemap: process.env.EW_SOURCEMAP === '1' ? 'external' : false,
    plugins: [ownCreateRequire, debugWhenAsked],
    external: sea ? [] : ['cbor-extract'],
    define: {
      ...(sea ? { __EDGEWARDEN_SEA__: JSON.stringify({ version: sea.version }) } : {}),
      'import.meta.url': '__ew_import_meta_url',
    },
    // In a SEA the wrapper's `require` loads built-in modules only; a file-system require rooted at
    // the executable loads the native addon from prebuilds/ beside it.
    banner: {
      js: [
        "const __ew_import_meta_url = require('node:url').pathToFileURL(__filename).href;",
        ...(sea ? ["require = require('node:module').createRequire(__filename);"] : []),
      ].join('\n'),
    },
  });
  const inputs = Object.keys(result.metafile.inputs);
  if (!inputs.some((i) => i.includes('node_modules/mqemitter/'))) throw new Error('bundle: mqemitter is not in the bundle');
  if (sea && !inputs.some((i) => i.includes('node_modules/cbor-extract/'))) throw new Error('bundle: cbor-extract (loader) is not in the bundle');
  return result;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await bundle(DEV_BUNDLE);
}
