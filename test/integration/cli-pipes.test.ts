// The CLI in a pipeline whose reader has gone (`edgewarden catalog | head -1`): the write fails with
// EPIPE, and the command ends quietly — no stack trace — with the exit status it would have had.
// The reader is gone before the CLI starts, so each case meets EPIPE however busy the machine is.
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { cli, BIN } from '../helpers/cli.js';
import { agentFor, connackCode, until } from '../helpers/agent.js';
import { ROOT } from '../helpers/policy.js';

interface Run {
  code: number | null;
  stderr: string;
}

/**
 * Runs the CLI with its stdout the write end of a socket pair whose read end is closed first: sh
 * waits for a line on stdin before it becomes the CLI, and the line comes after the close.
 */
function withClosedStdout(args: string[]): Promise<Run> {
  const child = spawn('sh', ['-c', 'read -r go && exec "$0" "$@"', process.execPath, BIN, ...args], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
  child.stdout.destroy();
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<Run>((resolve) => child.on('close', (code) => resolve({ code, stderr })));
  child.stdin.end('go\n');
  return exited;
}

const EXAMPLE_SNAPSHOT = join(ROOT, 'config', 'example-snapshot.cose');
const NO_TRACE = /EPIPE|Unhandled|node:internal|at .*\.js:\d+|unexpected error/;

t.test('stdout closed by its reader: the status the command would have had, and no stack trace', async (t) => {
  const agent = await agentFor(t);
  // A record for audit tail to print: a refused connection.
  t.equal(await connackCode(agent.port, { clientId: 'x', username: 'oven-1', password: 'wrong' }), 4);
  t.ok(await until(() => cli(['audit', 'tail', '--state-dir', agent.stateDir]).stdout.includes('BAD_CREDENTIALS'), 20_000), 'the audit log has it');
  const cases: [string, string[]][] = [
    ['catalog', ['catalog']],
    ['catalog --json (one write larger than a pipe holds)', ['catalog', '--json', '--legacy']],
    ['explain, allowed (0)', ['explain', '--state-dir', agent.stateDir, '-p', 'tech-anna', '-P', 'EXECUTE_THING_COMMAND', '--thing', 'oven-1']],
    ['explain, denied (3)', ['explain', '--state-dir', agent.stateDir, '-p', 'viewer-carl', '-P', 'EXECUTE_THING_COMMAND', '--thing', 'oven-1']],
    ['explain --json, denied (3)', ['explain', '--state-dir', agent.stateDir, '-p', 'viewer-carl', '-P', 'EXECUTE_THING_COMMAND', '--thing', 'oven-1', '--json']],
    ['snapshot diff', ['snapshot', 'diff', EXAMPLE_SNAPSHOT, EXAMPLE_SNAPSHOT]],
    ['snapshot inspect', ['snapshot', 'inspect', EXAMPLE_SNAPSHOT]],
    ['status', ['status', '--state-dir', agent.stateDir]],
    ['status --json', ['status', '--state-dir', agent.stateDir, '--json']],
    ['audit tail', ['audit', 'tail', '--state-dir', agent.stateDir]],
    ['--help', ['--help']],
    ['an error (1), on stderr', ['snapshot', 'inspect', join(ROOT, 'nope.cose')]],
  ];
  for (const [label, args] of cases) {
    const open = cli(args);
    t.ok(open.stdout.length > 0 || open.code !== 0, `${label}: writes to stdout when it is open`);
    const closed = await withClosedStdout(args);
    t.equal(closed.code, open.code, `${label}: exit ${open.code}, as with stdout open`);
    t.notMatch(closed.stderr, NO_TRACE, `${label}: no stack trace`);
    t.equal(closed.stderr, open.stderr, `${label}: stderr as with stdout open`);
  }
});

t.test('in a shell pipeline, the status survives pipefail: `explain ... | head -1`', async (t) => {
  const dir = t.testdir({});
  // The right side closes its stdin and only then lets the left side start the CLI (a FIFO as gate).
  const script = `
    set -o pipefail
    mkfifo "$GATE"
    { read -r go < "$GATE"; exec node "$BIN" explain -s "$SNAPSHOT" -p viewer-carl -P EXECUTE_THING_COMMAND --thing oven-1; } | { exec 0<&-; echo go > "$GATE"; }
    echo "pipeline $? statuses \${PIPESTATUS[*]}"
    node "$BIN" catalog | head -1
    echo "catalog statuses \${PIPESTATUS[*]}"`;
  const r = spawnSync('bash', ['-c', script], { cwd: ROOT, encoding: 'utf8', timeout: 60_000, env: { ...process.env, BIN, GATE: join(dir, 'gate'), SNAPSHOT: EXAMPLE_SNAPSHOT } });
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /^pipeline 3 statuses 3 0$/m, 'explain\'s deny (3) is the pipeline\'s status');
  t.match(r.stdout, /^NAME +CATEGORY/m, 'head printed the first line');
  t.match(r.stdout, /^catalog statuses 0 0$/m);
  t.notMatch(r.stderr, NO_TRACE);
});
