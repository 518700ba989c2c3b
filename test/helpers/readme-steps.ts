// The shell steps of a README, typed as a person would: one line after another in a terminal, in the
// directory the previous `cd` left. `edgewarden run` holds its terminal until Ctrl-C, so it is started
// in the background (with extra arguments, e.g. `--port 0`) and the steps after it are typed "in a
// second terminal" while it runs; it gets Ctrl-C (SIGINT) before the next `run` and at the end.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { until } from './agent.js';

/** The fenced sh block between `<!-- name:start -->` and `<!-- name:end -->`. */
export function markedBlock(text: string, name: string): string {
  const m = new RegExp(`<!-- ${name}:start -->\\n\`\`\`sh\\n([\\s\\S]*?)\`\`\`\\n<!-- ${name}:end -->`).exec(text);
  if (!m) throw new Error(`no ${name} block`);
  return m[1]!;
}

/** The commands of a block: continuation lines joined, blank and comment-only lines dropped. */
export function commandsOf(block: string): string[] {
  return block
    .replace(/\\\n\s*/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}

/** A command's trailing comment (`cmd   # ...`) cut off. */
function withoutComment(command: string): string {
  return command.replace(/\s+#\s.*$/, '');
}

/** The exit status a step's comment announces ("(exit status 3)"), else 0. */
function expectedStatus(command: string): number {
  const m = /#.*\(exit status (\d+)\)/.exec(command);
  return m ? Number(m[1]) : 0;
}

export interface StepResult {
  command: string;
  cwd: string;
  status: number | null;
  expected: number;
  output: string;
}

export interface RunningAgent {
  command: string;
  child: ChildProcess;
  log(): string;
  /** The parsed `"msg":"ready"` line. */
  ready: Record<string, unknown>;
  /** Exit code after Ctrl-C. */
  exitCode?: number | null;
}

export interface StepsOptions {
  cwd: string;
  /** Which commands hold their terminal (default: `./edgewarden run` and `edgewarden run`). */
  isRun?: (command: string) => boolean;
  /** Appended to a run command (e.g. ['--port', '0']). */
  runArgs?: string[];
  readyTimeoutMs?: number;
  /** Called with each finished step and each agent once it is ready. */
  onStep?: (r: StepResult) => void;
  onAgent?: (a: RunningAgent) => void | Promise<void>;
}

async function interrupt(agent: RunningAgent): Promise<void> {
  const { child } = agent;
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGINT');
    await exited;
  }
  agent.exitCode = child.exitCode;
}

/**
 * Runs the commands in order; returns the agents it started (each stopped with Ctrl-C by then) and
 * the directory the last step left. Throws when an agent exits before it is ready.
 */
export async function runSteps(commands: string[], opts: StepsOptions): Promise<{ agents: RunningAgent[]; cwd: string }> {
  const isRun = opts.isRun ?? ((c: string) => /^(\.\/)?edgewarden run\b/.test(c));
  const pwdDir = mkdtempSync(join(tmpdir(), 'ew-steps-'));
  const pwdFile = join(pwdDir, 'pwd');
  let cwd = opts.cwd;
  const agents: RunningAgent[] = [];
  let running: RunningAgent | undefined;
  try {
    for (const command of commands) {
      if (isRun(command)) {
        if (running) await interrupt(running);
        const line = [withoutComment(command), ...(opts.runArgs ?? [])].join(' ');
        const child = spawn('bash', ['-c', `exec ${line}`], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
        let log = '';
        child.stdout!.on('data', (d: Buffer) => (log += d.toString()));
        child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
        const readyLine = () => log.split('\n').find((l) => /"msg":"ready"/.test(l));
        await until(() => readyLine() !== undefined || child.exitCode !== null || child.signalCode !== null, opts.readyTimeoutMs ?? 60_000);
        const ready = readyLine();
        if (!ready) {
          if (child.exitCode === null) child.kill('SIGKILL');
          throw new Error(`${line} (in ${cwd}) did not become ready:\n${log.slice(-3000)}`);
        }
        running = { command: line, child, log: () => log, ready: JSON.parse(ready) as Record<string, unknown> };
        agents.push(running);
        await opts.onAgent?.(running);
        continue;
      }
      const script = `${command}\n__status=$?\npwd > '${pwdFile}'\nexit $__status\n`;
      const r = spawnSync('bash', ['-o', 'pipefail', '-c', script], { cwd, encoding: 'utf8', timeout: 120_000 });
      const result: StepResult = { command, cwd, status: r.status, expected: expectedStatus(command), output: `${r.stdout ?? ''}${r.stderr ?? ''}` };
      if (existsSync(pwdFile)) cwd = readFileSync(pwdFile, 'utf8').trim();
      rmSync(pwdFile, { force: true });
      opts.onStep?.(result);
    }
  } finally {
    if (running) await interrupt(running);
    for (const a of agents) if (a.child.exitCode === null && a.child.signalCode === null) a.child.kill('SIGKILL');
    rmSync(pwdDir, { recursive: true, force: true });
  }
  return { agents, cwd };
}

/**
 * Relative links (`[text](target)`) in the Markdown files below root whose target is not a file or
 * directory below root; `#anchors` and URLs are not checked.
 */
export function brokenLinks(root: string, files: string[]): string[] {
  const broken: string[] = [];
  for (const f of files) {
    const text = readFileSync(join(root, f), 'utf8');
    for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = m[1]!.split('#')[0]!;
      if (target === '' || /^[a-z]+:/i.test(target)) continue;
      const abs = resolve(root, dirname(f), target);
      if (relative(root, abs).startsWith('..') || !existsSync(abs)) broken.push(`${f}: ${m[1]}`);
    }
  }
  return broken;
}
