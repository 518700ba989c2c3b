// The README's commands work as written: the five-minute walkthrough against the agent on its
// embedded defaults (what `npm start` runs), and the cloud side (keygen, hash, sign, verify, diff,
// explain, publish to a real mosquitto). Only the port, the state directory and the cloud broker's
// address are replaced by the test's own. (Installing the .deb is covered by package-deb.test.ts.)
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { ROOT } from '../helpers/policy.js';
import { BIN } from '../helpers/cli.js';
import { until } from '../helpers/agent.js';
import { startMosquitto } from '../helpers/mosquitto.js';

const README = readFileSync(join(ROOT, 'README.md'), 'utf8');

function block(name: string): string {
  const m = new RegExp(`<!-- ${name}:start -->\\n\`\`\`sh\\n([\\s\\S]*?)\`\`\`\\n<!-- ${name}:end -->`).exec(README);
  if (!m) throw new Error(`README has no ${name} block`);
  return m[1]!;
}

function bash(script: string, cwd: string): { code: number | null; out: string } {
  const r = spawnSync('bash', ['-c', script], { cwd, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

t.test('the walkthrough, against the agent on its embedded defaults', async (t) => {
  const state = mkdtempSync(join(tmpdir(), 'ew-readme-'));
  const agent = spawn(process.execPath, [BIN, 'run', '--state-dir', state, '--port', '0'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  agent.stdout.on('data', (d: Buffer) => (log += d.toString()));
  agent.stderr.on('data', (d: Buffer) => (log += d.toString()));
  t.teardown(async () => {
    if (agent.exitCode === null) {
      agent.kill('SIGTERM');
      await new Promise((r) => agent.once('exit', r));
    }
    rmSync(state, { recursive: true, force: true });
  });
  t.ok(await until(() => /"msg":"ready"/.test(log), 20_000), 'the agent is ready');
  const port = (JSON.parse(log.split('\n').find((l) => /"msg":"ready"/.test(l))!) as { tcp: number }).tcp;
  t.match(log, /example-snapshot\.cose/, 'on the bundled example snapshot');

  const commands = block('walkthrough');
  t.match(commands, /-p 1883/);
  const script = commands
    .replaceAll('-p 1883', `-p ${port}`)
    .replaceAll('--state-dir .state', `--state-dir ${state}`)
    .replaceAll('node bin/edgewarden.js', `node ${BIN}`)
    // a person types the next command after the subscriber is up; a script waits a moment
    .replace(/&\n/g, '&\nsleep 1\n')
    // The agent writes its audit records to disk once a second; typed by hand that is long past, but
    // the explains before it take less than that: wait until the status says every record is on disk.
    .replace(
      `node ${BIN} audit tail`,
      `for i in $(seq 1 120); do node ${BIN} status --state-dir ${state} | grep -q ' 0 not yet on disk' && break; sleep 0.25; done\nnode ${BIN} audit tail`,
    );
  t.match(script, /grep -q ' 0 not yet on disk' && break; sleep 0\.25; done\nnode \S+ audit tail/, 'the walkthrough waits for the audit records to be on disk before reading them');
  const r = bash(`${script}\nwait\n`, ROOT);
  t.comment(r.out);
  const count = (s: string) => r.out.split(s).length - 1;
  t.equal(count('things/oven-1/commands/reboot from anna'), 1, 'the device got Anna\'s command once');
  t.equal(count('from carl'), 0, 'and not Carl\'s');
  t.match(r.out, /Publish 1 failed: Not authorized\.\s*NOT_GRANTED/, 'over MQTT 5, Carl is told why (PUBACK 0x87, reason string NOT_GRANTED)');
  t.equal(count('All subscription requests were denied.'), 1, 'one refused subscription (oven-1), one granted (chiller-1)');
  t.match(r.out, /viewer-carl EXECUTE_THING_COMMAND on oven-1: DENY NOT_GRANTED/);
  t.match(r.out, /tech-anna EXECUTE_THING_COMMAND on oven-2: DENY GATEWAY_SCOPE/);
  t.match(r.out, /viewer-carl subscribe things\/oven-1\/telemetry\/#: DENY OUT_OF_SCOPE  \(snapshot version 1, .*current\.cose/, 'explain --topic, from the agent\'s snapshot in force');
  t.match(r.out, /allow\s+-\s+tech-anna\s+anna\s+EXECUTE_THING_COMMAND\s+oven-1/, 'audit: Anna\'s allowed command');
  t.match(r.out, /deny\s+NOT_GRANTED\s+viewer-carl\s+carl\s+EXECUTE_THING_COMMAND\s+oven-1/, 'audit: Carl\'s denial');
  t.match(r.out, /deny\s+TOPIC_DENIED\s+mixer-1\s+mixer-1\s+publish\s+oven-1/, 'audit: mixer-1 posing as oven-1');
  t.match(r.out, /deny\s+OUT_OF_SCOPE\s+viewer-carl\s+carl-sub\s+subscribe/, 'audit: the refused subscription');
  t.match(r.out, /^snapshot\s+version 1, issued/m, 'status');
});

t.test('the cloud side: keygen, hash, sign, verify, diff, explain, publish', async (t) => {
  const cloud = await startMosquitto();
  t.teardown(() => cloud.stop());
  const app = mqtt.connect(cloud.url, { reconnectPeriod: 0 });
  const got: Buffer[] = [];
  app.on('message', (_topic, payload) => got.push(payload));
  await new Promise<void>((resolve) => app.once('connect', () => resolve()));
  await app.subscribeAsync('edgewarden/gw-plant-1/snapshot', { qos: 1 });
  t.teardown(() => app.endAsync(true));

  const dir = mkdtempSync(join(tmpdir(), 'ew-readme-cloud-'));
  symlinkSync(join(ROOT, 'config'), join(dir, 'config'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const commands = block('cloud-side');
  t.match(commands, /mqtt:\/\/cloud-broker\.example\.com:1883/);
  const script = `set -euo pipefail\nedgewarden() { node ${BIN} "$@"; }\n${commands.replaceAll('mqtt://cloud-broker.example.com:1883', cloud.url)}`;
  const r = bash(script, dir);
  t.comment(r.out);
  t.equal(r.code, 0, 'every command succeeds');
  t.match(r.out, /^token  [A-Za-z0-9_-]{43}$/m, 'a new token');
  t.match(r.out, /^hash   sha256:[0-9a-f]{64}$/m, 'and its hash');
  t.match(r.out, /^scrypt:15:8:1:\S+$/m, 'a password\'s hash');
  t.match(r.out, /signed snapshot version 2 for gateway gw-plant-1/);
  t.match(r.out, /valid snapshot version 2 for gateway gw-plant-1 .*acceptable by gateway gw-plant-1/);
  t.match(r.out, /tech-anna UPDATE_FIRMWARE on oven-1: ALLOW/);
  t.match(r.out, /published snapshot version 2 for gateway gw-plant-1/);
  t.ok(await until(() => got.length === 1, 15_000), 'the cloud broker holds the snapshot');
  t.ok(got[0]!.equals(readFileSync(join(dir, 'gw-plant-1.v2.cose'))), 'byte for byte');
});
