// Turns validator errors into Issues with readable field paths, and bounds YAML: shared by the
// policy file (validate.ts), the snapshot payload (validate-payload.ts) and the configuration.
import type { ErrorObject } from 'ajv';
import type { Issue } from '../errors.js';

/** Aliases allowed in one YAML document: a policy needs few; a "billion laughs" needs many. */
export const MAX_YAML_ALIASES = 100;

/** JSON pointer (/users/3/role) to the path form used in messages (users[3].role). */
export function pointerToPath(pointer: string): string {
  if (!pointer) return '';
  let out = '';
  for (const raw of pointer.split('/').slice(1)) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    out += /^[0-9]+$/.test(seg) ? `[${seg}]` : out ? `.${seg}` : seg;
  }
  return out;
}

function join(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

export function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return `${typeof v}`;
}

function describeValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v);
  return typeOf(v);
}

/** Ajv errors to issues with readable paths and reasons; union-of-literal noise collapsed. */
export function ajvIssues(errors: readonly ErrorObject[] | null | undefined): Issue[] {
  if (!errors) return [];
  const issues: Issue[] = [];
  const anyOfPaths = new Set(errors.filter((e) => e.keyword === 'anyOf').map((e) => e.instancePath));
  for (const e of errors) {
    const path = pointerToPath(e.instancePath);
    switch (e.keyword) {
      case 'required':
        issues.push({ path: join(path, String((e.params as { missingProperty: string }).missingProperty)), message: 'missing required key' });
        break;
      case 'additionalProperties':
        issues.push({ path: join(path, String((e.params as { additionalProperty: string }).additionalProperty)), message: 'unknown key' });
        break;
      case 'const':
        if (anyOfPaths.has(e.instancePath)) break;
        issues.push({ path, message: `must be ${JSON.stringify((e.params as { allowedValue: unknown }).allowedValue)}, got ${describeValue(e.data)}` });
        break;
      case 'anyOf': {
        const options = (e.schema as Array<{ const?: unknown }>).map((s) => s.const).filter((c) => c !== undefined);
        issues.push({ path, message: `must be one of ${options.join(', ')}; got ${describeValue(e.data)}` });
        break;
      }
      case 'type':
        if (anyOfPaths.has(e.instancePath)) break;
        issues.push({ path, message: `must be ${String((e.params as { type: string }).type)}, got ${typeOf(e.data)}` });
        break;
      case 'pattern':
        issues.push({
          path,
          message: (e.schema as string).startsWith('^[A-Za-z0-9][A-Za-z0-9._:@-]')
            ? `${describeValue(e.data)} is not a valid id (letters, digits and . _ : @ -, starting with a letter or digit)`
            : `${describeValue(e.data)} does not match ${String(e.schema)}`,
        });
        break;
      default:
        issues.push({ path, message: e.message ?? e.keyword });
    }
  }
  return issues;
}
