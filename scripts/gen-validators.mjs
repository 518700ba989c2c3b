#!/usr/bin/env node
// Writes src/generated/*.ts: the JSON-schema validators of the configuration, the policy file and the
// snapshot payload, compiled by Ajv at build time (Ajv "standalone code"), with the configuration's
// defaults and the policy file's schema as plain JSON.
//
// Why: compiling them with Ajv when the agent starts cost ~15 MB of resident memory and ~200 ms of
// its start (bench/README.md "Where the memory goes"), and kept TypeBox and Ajv loaded for good. The
// generated modules need neither (Ajv's one runtime helper they call is inlined).
//
// The schemas stay in TypeScript (src/config/schema.ts, src/policy/schema.ts, TypeBox) and are the
// source of truth; the generated files are committed (as fastify does with its config validator),
// and test/unit/generated-validators.test.ts fails when they are not what this script writes.
//
//   node scripts/gen-validators.mjs           write src/generated/
//   node scripts/gen-validators.mjs --check   exit 1 naming each file that is out of date
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createRequire } from 'node:module';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const OUT = join(ROOT, 'src', 'generated');
const require = createRequire(join(ROOT, 'package.json'));

/** The TypeBox schemas, as plain JSON Schema values (esbuild compiles the TypeScript sources). */
async function loadSchemas() {
  const esbuild = await import('esbuild');
  const dir = mkdtempSync(join(tmpdir(), 'ew-gen-'));
  try {
    const outfile = join(dir, 'schemas.mjs');
    await esbuild.build({
      stdin: {
        contents: [
          "export { CONFIG_SCHEMA } from './src/config/schema.ts';",
          "export { POLICY_FILE_SCHEMA, SNAPSHOT_PAYLOAD_SCHEMA } from './src/policy/schema.ts';",
        ].join('\n'),
        resolveDir: ROOT,
        loader: 'ts',
      },
      bundle: true,
      platform: 'node',
      format: 'esm',
      outfile,
      logLevel: 'warning',
    });
    const mod = await import(pathToFileURL(outfile).href);
    // JSON round trip: TypeBox marks its schemas with symbol keys, which are not JSON Schema.
    return JSON.parse(JSON.stringify({ config: mod.CONFIG_SCHEMA, policy: mod.POLICY_FILE_SCHEMA, payload: mod.SNAPSHOT_PAYLOAD_SCHEMA }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Keys that only document a schema: left out of the validators (the errors never show them). */
const DOC_KEYS = new Set(['description', 'title', 'examples', '$comment']);

/** The schema without its documentation keywords (`default` stays: Ajv does not apply it, CONFIG_DEFAULTS does). */
function bare(schema) {
  if (Array.isArray(schema)) return schema.map(bare);
  if (!schema || typeof schema !== 'object') return schema;
  return Object.fromEntries(
    Object.entries(schema)
      .filter(([k]) => !DOC_KEYS.has(k))
      // under `properties`, keys are property names, not keywords
      .map(([k, v]) => [k, k === 'properties' ? Object.fromEntries(Object.entries(v).map(([p, ps]) => [p, bare(ps)])) : bare(v)]),
  );
}

/**
 * Non-ASCII characters as \\u escapes: they occur only in string literals (messages, patterns,
 * consts), and one of them would make V8 keep the whole module's source as a two-byte string.
 */
const ascii = (code) => code.replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

/** Every key's default, as src/config/schema.ts promises (each key has a default or properties). */
function defaultsOf(schema, path = 'config') {
  if ('default' in schema) return structuredClone(schema.default);
  if (schema.properties) return Object.fromEntries(Object.entries(schema.properties).map(([k, v]) => [k, defaultsOf(v, `${path}.${k}`)]));
  throw new Error(`config schema: ${path} has neither a default nor properties`);
}

/** Ajv's runtime helpers that are one self-contained function, inlined by their source text. */
const INLINED_HELPERS = new Set(['ucs2length', 'equal']);

/** Every key path of the configuration in schema order (`topics.rules[]` for list items). */
function keyOrder(schema) {
  const order = [];
  const walk = (s, prefix) => {
    for (const [k, v] of Object.entries(s.properties ?? {})) {
      const path = prefix ? `${prefix}.${k}` : k;
      order.push(path);
      walk(v, path);
    }
    if (s.items) walk(s.items, `${prefix}[]`);
  };
  walk(schema, '');
  return order;
}

/**
 * One module of standalone validators compiled with `options`. Ajv's output calls
 * `require("ajv/dist/runtime/…").default` even in ESM mode; those helpers are inlined, so the
 * module imports nothing and loads alike in Node's ESM, tsc's output and the executable's bundle.
 */
function standalone(options, exports) {
  const { Ajv } = require('ajv');
  const standaloneCode = require('ajv/dist/standalone').default;
  const ajv = new Ajv({ ...options, strict: true, allowUnionTypes: true, logger: false, code: { source: true, esm: true, lines: true } });
  const names = {};
  for (const [name, schema] of Object.entries(exports)) {
    ajv.addSchema(bare(schema), name);
    names[name] = name;
  }
  const helpers = new Map();
  const code = standaloneCode(ajv, names).replace(/require\("ajv\/dist\/runtime\/([a-z0-9_]+)"\)\.default/gi, (_m, name) => {
    if (!INLINED_HELPERS.has(name)) throw new Error(`standalone code needs ajv/dist/runtime/${name}: teach gen-validators.mjs to inline it`);
    if (!helpers.has(name)) helpers.set(name, `const ajvRuntime_${name} = ${require(`ajv/dist/runtime/${name}`).default.toString()};`);
    return `ajvRuntime_${name}`;
  });
  if (/\brequire\(/.test(code)) throw new Error('standalone code still calls require(): teach gen-validators.mjs the new form');
  return { head: [...helpers.values()], code: code.replace(/^"use strict";/, '') };
}

function moduleText(what, options, exports, extra = []) {
  const { head, code } = standalone(options, exports);
  return [
    `// GENERATED by scripts/gen-validators.mjs from ${what}: do not edit; run \`npm run gen\`.`,
    `// Ajv options: ${JSON.stringify(options)}`,
    '// @ts-nocheck',
    '/* eslint-disable */',
    ...head,
    ...extra,
    code.trim(),
    '',
  ].map(ascii).join('\n');
}

export async function generate() {
  const s = await loadSchemas();
  return {
    'config-validator.ts': moduleText('src/config/schema.ts (CONFIG_SCHEMA)', { allErrors: true, verbose: true }, { validateConfig: s.config }, [
      `export const CONFIG_DEFAULTS = ${JSON.stringify(defaultsOf(s.config))};`,
      `export const CONFIG_KEY_ORDER = ${JSON.stringify(keyOrder(s.config))};`,
    ]),
    'policy-validator.ts': moduleText('src/policy/schema.ts (POLICY_FILE_SCHEMA)', { allErrors: true, verbose: true }, { validatePolicyFile: s.policy }),
    // `edgewarden policy schema` prints it (docs/policy.schema.json): the whole schema, documented.
    'policy-schema.ts': [
      '// GENERATED by scripts/gen-validators.mjs from src/policy/schema.ts (POLICY_FILE_SCHEMA): do not edit; run `npm run gen`.',
      `export const POLICY_FILE_SCHEMA_JSON = ${JSON.stringify(s.policy, null, 2)} as const;`,
      '',
    ].map(ascii).join('\n'),
    // Snapshot payloads are checked by the gateway at every load: stop at the first problem, which is
    // faster on 100,000 things (the signer already reported every problem of the policy).
    'payload-validator.ts': moduleText('src/policy/schema.ts (SNAPSHOT_PAYLOAD_SCHEMA)', { allErrors: false, verbose: true }, { validatePayloadFull: s.payload }),
    // The load path's first check: no error detail (verbose costs on the success path too) and string
    // lengths in UTF-16 code units (no per-character count): 4x faster on 100,000 things. It accepts
    // only payloads the full validator accepts (a length in code units is never below the length in
    // characters, and the one minLength, 1, is met alike), so when it fails the full one decides and
    // explains.
    'payload-fast-validator.ts': moduleText('src/policy/schema.ts (SNAPSHOT_PAYLOAD_SCHEMA)', { allErrors: false, verbose: false, unicode: false }, { validatePayloadFast: s.payload }),
  };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const check = process.argv.includes('--check');
  const files = await generate();
  let stale = 0;
  if (!check) mkdirSync(OUT, { recursive: true });
  for (const [name, text] of Object.entries(files)) {
    const path = join(OUT, name);
    const same = existsSync(path) && readFileSync(path, 'utf8') === text;
    if (check) {
      if (!same) {
        stale++;
        console.error(`src/generated/${name} is out of date: run \`npm run gen\``);
      }
    } else if (!same) {
      writeFileSync(path, text);
      console.log(`wrote src/generated/${name} (${text.length} bytes)`);
    }
  }
  process.exitCode = stale ? 1 : 0;
}
