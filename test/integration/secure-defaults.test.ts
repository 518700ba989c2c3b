// Plain MQTT stays on loopback unless the configuration says otherwise, and then everyone is told.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDocument } from 'yaml';
import { agentFor, DEMO_PUB } from '../helpers/agent.js';
import { BIN } from '../helpers/cli.js';

t.test('plain MQTT on every interface without allowNetwork: refused at start, naming the key and the fix', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ew-secure-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'config.yaml');
  writeFileSync(file, parseDocument(JSON.stringify({ trust: { keys: [DEMO_PUB] }, stateDir: join(dir, 'state'), listeners: { tcp: { host: '0.0.0.0', port: 0 } } })).toString());
  const r = spawnSync(process.execPath, [BIN, 'run', '-c', file], { encoding: 'utf8', timeout: 30_000 });
  t.equal(r.status, 1, 'exit 1');
  t.match(r.stderr + r.stdout, /listeners\.tcp\.host: 0\.0\.0\.0 would serve plain MQTT beyond this machine/);
  t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
});

t.test('with allowNetwork: it starts, and the log and the status say that passwords cross the network in clear', async (t) => {
  const agent = await agentFor(t, { config: { listeners: { tcp: { enabled: true, host: '0.0.0.0', port: 0, allowNetwork: true } } } });
  t.ok(agent.logs().some((l) => /"level":"warn".*listeners\.tcp serves plain MQTT on 0\.0\.0\.0/.test(l)), 'a warning at start');
  const r = spawnSync(process.execPath, [BIN, 'status', '--state-dir', agent.stateDir], { encoding: 'utf8', timeout: 30_000 });
  t.equal(r.status, 0);
  t.match(r.stdout, /^warning\s+listeners\.tcp serves plain MQTT on 0\.0\.0\.0:\d+ \(allowNetwork\): passwords and device tokens cross the network in clear/m);
});
