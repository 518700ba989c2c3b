// The running agent's log: the journal's priority prefix when standard output is the journal,
// plain JSON lines otherwise, and `--log-level` / `-v` over `log.level`.
import t from 'tap';
import { agentFor, logJson } from '../helpers/agent.js';
import { BIN, cli } from '../helpers/cli.js';

/** The agent's lines that are log records (the helper also collects stderr). */
const records = (lines: string[]) => lines.filter((l) => /"msg":/.test(l));

// systemd sets JOURNAL_STREAM to the device:inode of the stream it connects to stdout; the shell
// does the same for the stdout it passes on to the agent (`exec` keeps the pid, so the helper's
// SIGTERM reaches the agent).
const underJournal = ['sh', '-c', 'JOURNAL_STREAM=$(stat -L -c %d:%i /proc/$$/fd/1) exec "$0" "$@"', process.execPath, BIN];

t.test('stdout is the journal: each line begins with its priority, then the JSON', async (t) => {
  const agent = await agentFor(t, { command: underJournal, config: { log: { level: 'info' } }, args: ['--log-level', 'debug'] });
  const lines = records(agent.logs());
  t.ok(lines.length >= 4, `${lines.length} lines`);
  for (const line of lines) t.match(line, /^<[3467]>\{"level":"(fatal|error|warn|info|debug|trace)",/, line.slice(0, 60));
  t.match(await agent.waitLog(/trusting the bundled DEMO key/), /^<4>\{"level":"warn",/, 'a warning is <4>');
  t.match(await agent.waitLog(/"msg":"ready"/), /^<6>\{"level":"info",/, 'info is <6>');
  const debug = await agent.waitLog(/"msg":"configuration in force"/);
  t.match(debug, /^<7>\{"level":"debug",/, 'debug is <7>: --log-level debug wins over log.level info');
  t.match(JSON.parse(logJson(debug)), { configuration: { gateway: { id: 'gw-plant-1' }, log: { level: 'debug' } } }, 'the rest of the line is the JSON record');

  // The flag holds across a reload: the file still says info.
  agent.child.kill('SIGHUP');
  const reloaded = JSON.parse(logJson(await agent.waitLog(/"msg":"configuration reloaded/))) as { applied: string[] };
  t.notOk(reloaded.applied.includes('log.level'), 'the reload keeps --log-level');
});

t.test('JOURNAL_STREAM naming another stream (stdout redirected): plain JSON; -v logs debug', async (t) => {
  const agent = await agentFor(t, { env: { JOURNAL_STREAM: '1:1' }, config: { log: { level: 'info' } }, args: ['-v'] });
  const lines = records(agent.logs());
  for (const line of lines) t.match(line, /^\{"level":"[a-z]+",/, line.slice(0, 60));
  const debug = await agent.waitLog(/"msg":"configuration in force"/);
  t.match(debug, /^\{"level":"debug",/, '-v: debug');
  t.match(JSON.parse(debug), { configuration: { log: { level: 'debug' } } });
});

t.test('-vv: trace', async (t) => {
  const agent = await agentFor(t, { config: { log: { level: 'warn' } }, args: ['-vv'] });
  t.match(JSON.parse(await agent.waitLog(/"msg":"configuration in force"/)), { level: 'debug', configuration: { log: { level: 'trace' } } });
});

t.test('the default level (log.level info): no debug line', async (t) => {
  const agent = await agentFor(t, { config: { log: { level: 'info' } } });
  // The debug line would come before "ready", which the helper waited for.
  const lines = records(agent.logs());
  t.ok(lines.some((l) => /"msg":"ready"/.test(l)));
  t.notOk(lines.some((l) => /"level":"(debug|trace)"/.test(l)), 'nothing below info');
});

t.test('--log-level with an unknown level: a usage error, before anything starts', async (t) => {
  const r = cli(['run', '--log-level', 'loud', '--state-dir', '/nonexistent/never-created']);
  t.equal(r.code, 2);
  t.match(r.stderr, /EW_USAGE: --log-level must be one of fatal, error, warn, info, debug, trace, silent; got "loud"/);
  t.equal(r.stdout, '');
  const both = cli(['run', '-v', '--log-level', 'info', '--state-dir', '/nonexistent/never-created']);
  t.equal(both.code, 2);
  t.match(both.stderr, /give -v or --log-level, not both/);
});
