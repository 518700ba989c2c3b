// `edgewarden fleet publish` against a real mosquitto: every snapshot of a fleet directory retained on
// its gateway's topic, byte for byte; a rerun publishes only what changed; a tampered file fails
// alone; a broker that is down fails with the reason, and the rerun after it is back resumes;
// Ctrl-C keeps what was acknowledged.
import t from 'tap';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { BIN, cli } from '../helpers/cli.js';
import { until, sleep } from '../helpers/agent.js';
import { startMosquitto } from '../helpers/mosquitto.js';
import { addSnapshots, cliAsync, gatewaySnapshot, makeFleet, sha256, snapshotTopic, watch } from '../helpers/fleet.js';
import { readPublished } from '../../src/fleet/manifest.js';
import { fleetPublishCommand } from '../../src/cli/fleet-publish.js';

const N = 60;
const ids = Array.from({ length: N }, (_, i) => `gw-${String(i).padStart(3, '0')}`);

t.test('publish all, rerun unchanged, one changed, a tampered file, the broker down and back', async (t) => {
  const cloud = await startMosquitto({ persistence: true });
  t.teardown(() => cloud.stop());
  const key = cloud.url; // mqtt://127.0.0.1:<port>: the record's key, no credentials
  const dir = t.testdir({});
  const files = makeFleet(dir, ids);
  const publish = (...extra: string[]) => cli(['fleet', 'publish', dir, '--broker', cloud.url, ...extra]);

  const first = publish();
  t.equal(first.code, 0, first.stderr);
  t.equal(first.stdout, `published ${N}, unchanged 0, failed 0\n`);
  t.equal(first.stderr, '', 'no progress bar when stderr is not a terminal');
  const record = readPublished(dir).brokers[key]!;
  t.same(Object.keys(record).sort(), ids, `fleet-published.json records all ${N} for ${key}`);
  t.equal(record['gw-007']!.sha256, sha256(files['gw-007']!));

  const w = await watch(cloud.url, 'edgewarden/+/snapshot');
  t.ok(await until(() => w.messages.size === N, 30_000), `a subscriber gets ${N} retained snapshots`);
  for (const id of ids) t.ok(w.messages.get(snapshotTopic(id))?.equals(files[id]!), `${id}: the retained message is the file's bytes`);
  await w.end();

  const again = publish('--json');
  t.equal(again.code, 0, again.stderr);
  t.same(JSON.parse(again.stdout), { published: 0, unchanged: N, failed: 0, failures: [] }, 'a rerun: all unchanged');

  // One gateway's snapshot changes: only it is published.
  const v2 = gatewaySnapshot('gw-003', 2);
  addSnapshots(dir, { 'gw-003': v2 });
  const one = publish();
  t.equal(one.code, 0, one.stderr);
  t.equal(one.stdout, `published 1, unchanged ${N - 1}, failed 0\n`);
  const w3 = await watch(cloud.url, snapshotTopic('gw-003'));
  t.ok(await until(() => w3.messages.has(snapshotTopic('gw-003')), 20_000));
  t.ok(w3.messages.get(snapshotTopic('gw-003'))!.equals(v2), 'the broker holds version 2');
  await w3.end();
  t.equal(readPublished(dir).brokers[key]!['gw-003']!.version, 2);

  // A tampered file (the manifest still has the signed one's sha256) fails alone; the others go on.
  addSnapshots(dir, { 'gw-010': gatewaySnapshot('gw-010', 2) });
  const tampered = Buffer.from(readFileSync(join(dir, 'gw-005.cose')));
  addSnapshots(dir, { 'gw-005': gatewaySnapshot('gw-005', 2) });
  const good5 = readFileSync(join(dir, 'gw-005.cose'));
  writeFileSync(join(dir, 'gw-005.cose'), tampered);
  const bad = publish('--json');
  t.equal(bad.code, 1, 'exit 1 on a failure');
  const badJson = JSON.parse(bad.stdout) as { published: number; unchanged: number; failed: number; failures: { gateway: string; reason: string }[] };
  t.match(badJson, { published: 1, unchanged: N - 2, failed: 1 });
  t.equal(badJson.failures.length, 1);
  t.equal(badJson.failures[0]!.gateway, 'gw-005');
  t.match(badJson.failures[0]!.reason, /gw-005\.cose: sha256 [0-9a-f]{64} does not match the manifest's/);
  t.equal(readPublished(dir).brokers[key]!['gw-010']!.version, 2, 'gw-010 was published meanwhile');
  const text = publish();
  t.equal(text.code, 1);
  t.equal(text.stdout, `published 0, unchanged ${N - 1}, failed 1\n`);
  t.match(text.stderr, /gateway gw-005 failed: .*does not match the manifest/, 'the reason on stderr');

  // The broker goes down: what is left fails with the reason, nothing is recorded for it.
  writeFileSync(join(dir, 'gw-005.cose'), good5);
  addSnapshots(dir, { 'gw-020': gatewaySnapshot('gw-020', 2), 'gw-021': gatewaySnapshot('gw-021', 2) });
  await cloud.stop();
  const down = publish('--timeout', '1', '--retries', '1', '--json');
  t.equal(down.code, 1, 'exit 1 with the broker down');
  const downJson = JSON.parse(down.stdout) as typeof badJson;
  t.match(downJson, { published: 0, unchanged: N - 3, failed: 3 });
  t.same(downJson.failures.map((f) => f.gateway), ['gw-005', 'gw-020', 'gw-021']);
  for (const f of downJson.failures) t.match(f.reason, /cannot connect to the broker: .*ECONNREFUSED/, `${f.gateway}: ${f.reason}`);
  t.equal(readPublished(dir).brokers[key]!['gw-020']!.version, 1, 'the record still says version 1 for gw-020');

  // Back up: the rerun publishes only those three.
  await cloud.start();
  const resumed = publish();
  t.equal(resumed.code, 0, resumed.stderr);
  t.equal(resumed.stdout, `published 3, unchanged ${N - 3}, failed 0\n`);
  const all = await watch(cloud.url, 'edgewarden/+/snapshot');
  t.ok(await until(() => all.messages.size === N, 30_000), 'all retained after the restart (persistence)');
  for (const id of ids) t.ok(all.messages.get(snapshotTopic(id))!.equals(readFileSync(join(dir, `${id}.cose`))), `${id}: the broker holds the file's bytes`);
  await all.end();
});

t.test('a broker that comes up during the run: the publisher connects when it can and publishes', async (t) => {
  const cloud = await startMosquitto();
  t.teardown(() => cloud.stop());
  await cloud.stop();
  const dir = t.testdir({});
  makeFleet(dir, ids.slice(0, 10));
  const run = cliAsync(['fleet', 'publish', dir, '--broker', cloud.url, '--timeout', '60']);
  // Whenever it comes up: MQTT.js retries the connection every second.
  await sleep(1500);
  await cloud.start();
  const r = await run.done;
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, 'published 10, unchanged 0, failed 0\n');
});

t.test('the connection lost mid-run: MQTT.js reconnects and every snapshot is published', async (t) => {
  const cloud = await startMosquitto({ persistence: true });
  t.teardown(() => cloud.stop());
  const dir = t.testdir({});
  const many = Array.from({ length: 400 }, (_, i) => `gw-${i}`);
  makeFleet(dir, many);
  const run = cliAsync(['fleet', 'publish', dir, '--broker', cloud.url, '--concurrency', '1', '--timeout', '60']);
  t.ok(await until(() => Object.keys(readPublishedOrEmpty(dir)).length > 0, 60_000), 'publishing');
  await cloud.stop();
  const during = Object.keys(readPublishedOrEmpty(dir)).length;
  await sleep(1500);
  await cloud.start();
  const r = await run.done;
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, `published ${many.length}, unchanged 0, failed 0\n`, `all published (${during} were before the broker went down)`);
  const w = await watch(cloud.url, 'edgewarden/+/snapshot');
  t.ok(await until(() => w.messages.size === many.length, 30_000), 'all retained on the broker');
  await w.end();
});

t.test('the progress line on a terminal (in process, a fake terminal)', async (t) => {
  const cloud = await startMosquitto();
  t.teardown(() => cloud.stop());
  const dir = t.testdir({});
  makeFleet(dir, ids.slice(0, 20));
  addSnapshots(dir, {});
  const writes: string[] = [];
  const out: string[] = [];
  const err: string[] = [];
  const code = await fleetPublishCommand(dir, { broker: cloud.url }, { out: (l) => out.push(l), err: (l) => err.push(l) }, { progress: { write: (s) => writes.push(s) }, handleSignals: false });
  t.equal(code, 0, err.join('\n'));
  t.same(out, ['published 20, unchanged 0, failed 0']);
  t.match(writes[0], /^\r\[\.{20}\] 0\/20 published 0 unchanged 0 failed 0/, 'starts empty');
  t.ok(writes.every((w) => w.startsWith('\r') || w === '\n'), 'each rewrites the line');
  t.match(writes.at(-2), /^\r\[#{20}\] 20\/20 published 20 unchanged 0 failed 0/, 'ends full');
  t.equal(writes.at(-1), '\n');
  const none: string[] = [];
  t.equal(await fleetPublishCommand(dir, { broker: cloud.url }, { out: (l) => none.push(l), err: (l) => none.push(l) }, { progress: undefined, handleSignals: false }), 0);
  t.same(none, ['published 0, unchanged 20, failed 0'], 'no terminal: only the summary');
});

t.test('on a real terminal (util-linux script: stdout and stderr on a pty), the progress line', { skip: spawnSync('script', ['--version']).status === 0 ? false : 'no script(1)' }, async (t) => {
  const cloud = await startMosquitto();
  t.teardown(() => cloud.stop());
  const dir = t.testdir({});
  makeFleet(dir, ids.slice(0, 5));
  const quote = (a: string) => `'${a.replace(/'/g, `'\\''`)}'`;
  const command = [process.execPath, BIN, 'fleet', 'publish', dir, '--broker', cloud.url].map(quote).join(' ');
  const r = spawnSync('script', ['-qec', command, '/dev/null'], { encoding: 'utf8', timeout: 60_000 });
  t.equal(r.status, 0, r.stdout + r.stderr);
  t.match(r.stdout, /\r\[#{20}\] 5\/5 published 5 unchanged 0 failed 0/, 'the bar, full');
  t.match(r.stdout, /published 5, unchanged 0, failed 0\r?\n/, 'the summary');
});

t.test('SIGINT: what was acknowledged is recorded; the rerun publishes the rest', async (t) => {
  const cloud = await startMosquitto();
  t.teardown(() => cloud.stop());
  const dir = t.testdir({});
  const many = Array.from({ length: 400 }, (_, i) => `gw-${i}`);
  makeFleet(dir, many);
  const run = cliAsync(['fleet', 'publish', dir, '--broker', cloud.url, '--concurrency', '1']);
  // Interrupt it once the first acknowledgements are on disk.
  t.ok(await until(() => Object.keys(readPublishedOrEmpty(dir)).length > 0, 60_000), 'the record is written while it runs');
  run.child.kill('SIGINT');
  const r = await run.done;
  t.ok(r.code === 130 || r.code === 0, `exit 130 when interrupted (or 0 had it finished first): ${r.code} ${r.stderr}`);
  if (r.code === 130) t.match(r.stderr, /interrupted by SIGINT: published \d+/);
  const recorded = Object.keys(readPublished(dir).brokers[cloud.url] ?? {}).length;
  t.ok(recorded > 0, `${recorded} recorded`);
  const rest = cli(['fleet', 'publish', dir, '--broker', cloud.url]);
  t.equal(rest.code, 0, rest.stderr);
  t.equal(rest.stdout, `published ${many.length - recorded}, unchanged ${recorded}, failed 0\n`, 'the rerun publishes only the rest');
  const w = await watch(cloud.url, 'edgewarden/+/snapshot');
  t.ok(await until(() => w.messages.size === many.length, 30_000), 'all retained');
  await w.end();
});

t.test('usage errors exit 2 and touch nothing', async (t) => {
  const dir = t.testdir({});
  makeFleet(dir, ['gw-a']);
  for (const args of [
    ['--broker', 'http://127.0.0.1:1'],
    ['--broker', 'mqtt://127.0.0.1:1', '--concurrency', '0'],
    ['--broker', 'mqtt://127.0.0.1:1', '--retries', 'x'],
    ['--broker', 'mqtt://127.0.0.1:1', '--gateway', 'gw-nope'],
    ['--broker', 'mqtt://127.0.0.1:1', '--prefix', 'site/+/'],
    ['--broker', 'mqtt://127.0.0.1:1', '--username', 'u', '--password-file', '/nonexistent/pass'],
  ]) {
    const r = cli(['fleet', 'publish', dir, ...args]);
    t.equal(r.code, 2, `${args.join(' ')}: ${r.stderr.trim()}`);
    t.match(r.stderr, /EW_USAGE/);
  }
  t.notOk(existsSync(join(dir, 'fleet-published.json')), 'nothing recorded');
  const empty = t.testdir({});
  t.equal(cli(['fleet', 'publish', empty, '--broker', 'mqtt://127.0.0.1:1']).code, 2, 'a directory without a manifest');
});

function readPublishedOrEmpty(dir: string): Record<string, unknown> {
  try {
    return Object.values(readPublished(dir).brokers)[0] ?? {};
  } catch {
    return {};
  }
}
