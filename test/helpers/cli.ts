// Runs the built `edgewarden` command (npm test builds first) as a child process.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from './policy.js';

export const BIN = join(ROOT, 'bin', 'edgewarden.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function cli(args: string[], opts: { input?: string; cwd?: string } = {}): CliResult {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd: opts.cwd ?? ROOT,
    input: opts.input ?? '',
    encoding: 'utf8',
    timeout: 60_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
