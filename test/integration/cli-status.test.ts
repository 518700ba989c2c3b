// `edgewarden status` against the running agent (control socket), as text and JSON.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cli } from '../helpers/cli.js';
import { cleanup, connect, endAll, startAgent } from '../helpers/agent.js';
import { freePort } from '../helpers/mosquitto.js';

t.test('status of a running agent, with its cloud link down', async (t) => {
  const agent = await startAgent({ config: { cloud: { enabled: true, url: `mqtt://127.0.0.1:${await freePort()}`, reconnectMinMs: 50, reconnectMaxMs: 200 } } });
  t.teardown(async () => {
    await agent.stop();
    cleanup(agent);
  });
  const oven = await connect(agent.port, { clientId: 'oven-1', username: 'oven-1', password: 'oven-1-token' });
  await oven.client.publishAsync('things/oven-1/telemetry/temp', '20', { qos: 1 });
  const config = join(agent.stateDir, 'test-config.yaml');
  const text = cli(['status', '-c', config]);
  t.equal(text.code, 0, text.stderr);
  t.match(text.stdout, /^gateway\s+gw-plant-1$/m);
  t.match(text.stdout, /^snapshot\s+version 1, issued /m);
  t.match(text.stdout, /^expires\s+2036-01-01T00:00:00.000Z$/m);
  t.match(text.stdout, /^time floor\s+20\d\d-/m);
  t.match(text.stdout, /^clients\s+1 connected/m);
  t.match(text.stdout, /^cloud link\s+(offline|connecting) \(mqtt:\/\/127\.0\.0\.1:\d+\)/m);
  t.match(text.stdout, /^queue\s+\d+ messages \(\d+ bytes on disk\), 0 dropped \(queue full or damaged on disk\)/m);
  t.match(text.stdout, /^audit\s+\d+ records/m);
  const json = cli(['status', '--state-dir', agent.stateDir, '--json']);
  t.equal(json.code, 0, json.stderr);
  const s = JSON.parse(json.stdout) as { snapshotVersion: number; broker: { connected: number }; cloud: { link: { state: string }; queue: { depth: number } }; audit: { uploadBacklogBytes: number | null } };
  t.equal(s.snapshotVersion, 1);
  t.equal(s.broker.connected, 1);
  t.not(s.cloud.link.state, 'online');
  t.ok(s.cloud.queue.depth >= 1, 'the telemetry is queued');
  t.type(s.audit.uploadBacklogBytes, 'number');
  await endAll(oven);
});

t.test('status with no agent running', async (t) => {
  // A short path (the fixture directory's may be too long for a Unix socket: the next test).
  const dir = mkdtempSync(join(tmpdir(), 'ew-st-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const r = cli(['status', '--state-dir', dir]);
  t.equal(r.code, 1);
  t.match(r.stderr, /no agent is running with the state directory/);
});

t.test('status with a state directory whose control socket path is too long: a clear error, no stack trace', async (t) => {
  const dir = join(t.testdir({}), 'a-state-directory-whose-control-socket-path-is-'.padEnd(110, 'x'));
  const r = cli(['status', '--state-dir', dir]);
  t.equal(r.code, 1);
  t.match(r.stderr, /EW_STORE_IO: .*control\.sock: the control socket path is \d+ bytes, too long/);
  t.ok(r.stderr.includes(join(dir, 'control.sock')), 'names the path');
  t.notMatch(r.stderr, /unexpected error|\n\s+at /, 'no stack trace');
});
