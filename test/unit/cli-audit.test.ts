import t, { type Test } from 'tap';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AUDIT_DIR_NAME, AUDIT_FILE, AuditLog } from '../../src/audit/audit-log.js';
import { auditTailCommand } from '../../src/cli/audit.js';

const T0 = Date.parse('2027-03-01T12:00:00.000Z');

async function run(opts: { stateDir: string; lines?: string; json?: boolean }) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await auditTailCommand(opts, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out, err };
}

/** A state directory whose audit log holds `n` allows (thing-0 ...), then a coalesced flood and an anonymous deny. */
async function stateWith(t: Test, n: number): Promise<string> {
  const stateDir = t.testdir();
  let now = T0;
  const log = await AuditLog.open({ dir: join(stateDir, AUDIT_DIR_NAME), clock: () => now, flushIntervalMs: 60_000 });
  for (let i = 0; i < n; i++) {
    log.record({ principal: 'tech-anna', clientId: 'anna-phone', action: 'EXECUTE_THING_COMMAND', thing: `thing-${i}`, topic: `things/thing-${i}/cmd`, decision: 'allow', snapshotVersion: 12 });
    now += 1000;
  }
  for (let i = 0; i < 37; i++) {
    log.record({ principal: 'tech-bob', clientId: 'bob-laptop', action: 'publish', thing: 'oven-1', topic: 'things/oven-1/fw', decision: 'deny', reason: 'TOPIC_DENIED', snapshotVersion: 12 });
    now += 10;
  }
  log.record({ principal: null, clientId: 'x\u001b[31mred', action: 'connect', decision: 'deny', reason: 'UNKNOWN_PRINCIPAL', snapshotVersion: null });
  await log.close();
  return stateDir;
}

t.test('text: aligned columns, the newest last, default 20', async (t) => {
  const stateDir = await stateWith(t, 30);
  const { code, out, err } = await run({ stateDir });
  t.equal(code, 0);
  t.same(err, []);
  t.equal(out.length, 21, 'header + 20 entries');
  const header = out[0]!;
  t.match(header, /^TIME +DECISION +REASON +PRINCIPAL +CLIENT +ACTION +THING +TOPIC +SNAPSHOT +COUNT$/);
  const cols = ['DECISION', 'REASON', 'PRINCIPAL', 'CLIENT', 'ACTION', 'THING', 'TOPIC', 'SNAPSHOT'].map((c) => header.indexOf(c));
  for (const line of out.slice(1)) {
    for (const c of cols) t.equal(line[c - 1], ' ', `aligned at ${c}: ${line}`);
    t.equal(line, line.trimEnd(), 'no trailing spaces');
  }
  const cells = (line: string) => line.split(/ {2,}/);
  t.same(cells(out[1]!), ['2027-03-01T12:00:12.000Z', 'allow', '-', 'tech-anna', 'anna-phone', 'EXECUTE_THING_COMMAND', 'thing-12', 'things/thing-12/cmd', '12']);
  t.same(cells(out[19]!), ['2027-03-01T12:00:30.000Z', 'deny', 'TOPIC_DENIED', 'tech-bob', 'bob-laptop', 'publish', 'oven-1', 'things/oven-1/fw', '12', '×37']);
  t.same(cells(out[20]!), ['2027-03-01T12:00:30.370Z', 'deny', 'UNKNOWN_PRINCIPAL', '-', 'x\\u001b[31mred', 'connect', '-', '-', '-']);
  t.notOk(out.join('\n').includes('\u001b'), 'no escape sequence reaches the terminal');
});

t.test('--lines', async (t) => {
  const stateDir = await stateWith(t, 3);
  const r = await run({ stateDir, lines: '2' });
  t.equal(r.out.length, 3);
  t.match(r.out[1], /TOPIC_DENIED/);
  t.equal((await run({ stateDir, lines: '1000' })).out.length, 1 + 5, 'more than there are: all');
  for (const bad of ['0', '-1', 'x', '1.5', '', '99999999']) {
    await t.rejects(auditTailCommand({ stateDir, lines: bad }, { out: () => undefined, err: () => undefined }), { code: 'EW_USAGE', message: /--lines/ }, bad);
  }
});

t.test('--json: JSON Lines, one entry each', async (t) => {
  const stateDir = await stateWith(t, 2);
  const { code, out } = await run({ stateDir, json: true });
  t.equal(code, 0);
  t.equal(out.length, 4);
  const entries = out.map((l) => JSON.parse(l) as Record<string, unknown>);
  t.same(entries[0], {
    time: '2027-03-01T12:00:00.000Z',
    seq: 1,
    decision: 'allow',
    principal: 'tech-anna',
    clientId: 'anna-phone',
    action: 'EXECUTE_THING_COMMAND',
    thing: 'thing-0',
    topic: 'things/thing-0/cmd',
    snapshotVersion: 12,
  });
  t.match(entries[2], { decision: 'deny', reason: 'TOPIC_DENIED', count: 37 });
  t.match(entries[3], { principal: null, clientId: 'x\u001b[31mred', snapshotVersion: null });
  t.notOk(out.join('\n').includes('\u001b'), 'escaped in the JSON text');
  t.same((await run({ stateDir, json: true, lines: '1' })).out.length, 1);
});

t.test('a missing audit directory: a clear message, exit 1', async (t) => {
  const stateDir = t.testdir();
  const { code, out, err } = await run({ stateDir });
  t.equal(code, 1);
  t.same(out, []);
  t.same(err, [`no audit log at ${join(stateDir, 'audit')}: has the agent run with this state directory?`]);
  const asFile = t.testdir({ audit: 'not a directory' });
  t.equal((await run({ stateDir: asFile })).code, 1);
});

t.test('an empty log, and corrupt lines', async (t) => {
  const stateDir = t.testdir();
  mkdirSync(join(stateDir, 'audit'));
  const empty = await run({ stateDir });
  t.equal(empty.code, 0);
  t.same(empty.out, []);
  t.match(empty.err, [/has no entries/]);

  const line = JSON.stringify({ time: '2027-03-01T12:00:00.000Z', decision: 'deny', reason: 'NOT_GRANTED', principal: 'p', clientId: 'c', action: 'READ_THING', thing: 'oven-1', snapshotVersion: 3 });
  writeFileSync(join(stateDir, 'audit', AUDIT_FILE), `${line}\n{"torn`);
  const r = await run({ stateDir });
  t.equal(r.code, 0);
  t.equal(r.out.length, 2);
  t.match(r.err, [/1 unreadable line\(s\) skipped/]);
});
