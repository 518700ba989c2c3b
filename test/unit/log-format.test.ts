// How log lines look: the journal's priority prefix, the terminal's readable line, level names in
// JSON, redaction kept in every form; and `-v` / `--log-level`.
import t from 'tap';
import { isJournalStream, journalPrefix, levelName, prettyLine, syslogPriority } from '../../src/agent/log-format.js';
import { createLogger, type LogFormat } from '../../src/agent/log.js';
import { logLevelOption } from '../../src/cli/run.js';
import { isEwError } from '../../src/errors.js';

t.test('sd-daemon priorities: 3 error and fatal, 4 warn, 6 info, 7 debug and trace', async (t) => {
  for (const [level, prio] of [[60, 3], [50, 3], [40, 4], [30, 6], [20, 7], [10, 7]] as const) {
    t.equal(syslogPriority(level), prio, `level ${level}`);
    t.equal(journalPrefix(level), `<${prio}>`);
  }
});

t.test('JOURNAL_STREAM counts only when it names this stdout (device:inode)', async (t) => {
  const st = { dev: 64769n, ino: 123456789n };
  t.ok(isJournalStream('64769:123456789', st));
  t.ok(isJournalStream(' 64769:123456789\n', st), 'surrounding blanks');
  t.notOk(isJournalStream('64769:1', st), 'another stream: stdout was redirected');
  t.notOk(isJournalStream(undefined, st), 'not set');
  t.notOk(isJournalStream('', st));
  t.notOk(isJournalStream('journal', st), 'malformed');
  t.notOk(isJournalStream('64769:123456789', undefined), 'stdout closed');
  t.ok(isJournalStream('18446744073709551615:18446744073709551614', { dev: 18446744073709551615n, ino: 18446744073709551614n }), '64-bit numbers');
});

t.test('level names from pino numbers or names', async (t) => {
  t.equal(levelName(30), 'info');
  t.equal(levelName(60), 'fatal');
  t.equal(levelName('warn'), 'warn');
  t.equal(levelName(35), 'level35');
});

t.test('a readable line: time, level, message, then key=value', async (t) => {
  const base = { level: 'warn', time: '2026-12-01T10:15:02.114Z', pid: 7, name: 'edgewarden', msg: 'inbox snapshot refused' };
  t.equal(
    prettyLine({ ...base, file: '/var/lib/edgewarden/inbox/v2.cose', code: 'EW_SNAPSHOT_STALE', version: 2, ok: false, to: null }),
    '2026-12-01T10:15:02.114Z WARN  inbox snapshot refused file=/var/lib/edgewarden/inbox/v2.cose code=EW_SNAPSHOT_STALE version=2 ok=false to=null',
  );
  t.equal(prettyLine({ ...base, level: 30, msg: 'ready' }), '2026-12-01T10:15:02.114Z INFO  ready', 'pid and name are left out; numeric levels too');
  t.equal(prettyLine({ ...base, config: '(embedded defaults)', x: 'a=b', q: 'say "hi"', e: '' }), '2026-12-01T10:15:02.114Z WARN  inbox snapshot refused config="(embedded defaults)" x="a=b" q="say \\"hi\\"" e=""', 'spaces, = and quotes are quoted');
  t.equal(prettyLine({ ...base, applied: ['log.level', 'topics'], ports: { tcp: 1883 } }), '2026-12-01T10:15:02.114Z WARN  inbox snapshot refused applied=["log.level","topics"] ports={"tcp":1883}', 'objects as JSON');
  t.equal(prettyLine({ ...base, level: 'error' }, { colors: true }), '2026-12-01T10:15:02.114Z \x1b[31mERROR\x1b[0m inbox snapshot refused', 'the level coloured on a terminal');
});

t.test('a readable line cannot drive the terminal: control characters are escaped', async (t) => {
  const line = prettyLine({ level: 'info', time: 'T', msg: 'client \x1b[2J gone', clientId: 'evil\x1b]0;owned\x07', topic: 'a\u202eb', ['k\ney']: 1 });
  t.notMatch(line, /[\x00-\x1f\x7f-\x9f\u202e]/, 'no raw control or bidi character');
  t.match(line, 'client \\u001b[2J gone');
  t.match(line, 'clientId="evil\\u001b]0;owned\\u0007"');
  t.match(line, 'topic="a\\u202eb"');
});

/** The lines a logger writes in one form. */
function linesOf(format: LogFormat, write: (log: ReturnType<typeof createLogger>) => void, level = 'trace'): string[] {
  const out: string[] = [];
  const log = createLogger(level, { format, destination: { write: (s: string) => void out.push(s) } });
  write(log);
  return out.join('').split('\n').filter((l) => l !== '');
}

const events = (log: ReturnType<typeof createLogger>) => {
  log.info({ port: 1883 }, 'listening');
  log.warn({ password: 'hunter2' }, 'careful');
  log.child({ module: 'broker' }).error({ cloud: { token: 'tok' } }, 'failed');
  log.debug('detail');
  log.trace('more');
  log.fatal('gone');
};

t.test('JSON lines carry level names, and keep redaction', async (t) => {
  const lines = linesOf('json', events);
  t.same(lines.map((l) => (JSON.parse(l) as { level: string }).level), ['info', 'warn', 'error', 'debug', 'trace', 'fatal']);
  t.notMatch(lines.join('\n'), /hunter2|"tok"/, 'secrets redacted');
  t.match(lines[1], '"password":"[redacted]"');
});

t.test('journal lines: the priority prefix, then the same JSON', async (t) => {
  const lines = linesOf('journal', events);
  t.same(lines.map((l) => l.slice(0, 4)), ['<6>{', '<4>{', '<3>{', '<7>{', '<7>{', '<3>{']);
  t.match(JSON.parse(lines[2]!.slice(3)), { level: 'error', time: String, pid: process.pid, module: 'broker', cloud: { token: '[redacted]' }, msg: 'failed' }, 'fields kept (the child\'s too)');
  t.notMatch(lines.join('\n'), /hunter2|"tok"/, 'secrets redacted');
});

t.test('pretty lines: readable, redacted, uncoloured into a non-terminal destination', async (t) => {
  const lines = linesOf('pretty', events, 'info');
  t.equal(lines.length, 4, 'debug and trace are below info');
  t.match(lines[0], /^\d{4}-\d\d-\d\dT[\d:.]+Z INFO  listening port=1883$/);
  t.match(lines[1], /WARN  careful password=\[redacted\]$/);
  t.match(lines[2], /ERROR failed module=broker cloud=\{"token":"\[redacted\]"\}$/);
  t.notMatch(lines.join('\n'), /\x1b/);
});

t.test('-v and --log-level', async (t) => {
  t.equal(logLevelOption({}), undefined, 'neither: the configuration decides');
  t.equal(logLevelOption({ verbose: 0 }), undefined);
  t.equal(logLevelOption({ verbose: 1 }), 'debug');
  t.equal(logLevelOption({ verbose: 2 }), 'trace');
  t.equal(logLevelOption({ verbose: 5 }), 'trace');
  for (const l of ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']) t.equal(logLevelOption({ logLevel: l }), l);
  const usage = (o: Parameters<typeof logLevelOption>[0], re: RegExp) => {
    try {
      logLevelOption(o);
      t.fail('no error');
    } catch (err) {
      t.ok(isEwError(err) && err.code === 'EW_USAGE', 'a usage error');
      t.match((err as Error).message, re);
    }
  };
  usage({ logLevel: 'verbose' }, /^--log-level must be one of fatal, error, warn, info, debug, trace, silent; got "verbose"$/);
  usage({ logLevel: 'INFO' }, /got "INFO"/);
  usage({ logLevel: 'debug', verbose: 1 }, /not both/);
});
