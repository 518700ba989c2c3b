// The cloud link over TLS (server CA, client certificate and key) and with username/password,
// against mosquitto; config/cloud-tls.yaml is the shipped example of such a site.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { controlRequest } from '../../src/agent/control.js';
import { loadConfig, bundledPaths } from '../../src/config/load.js';
import { makeCertificates } from '../helpers/certs.js';
import { startMosquitto } from '../helpers/mosquitto.js';
import { ROOT } from '../helpers/policy.js';
import { cli } from '../helpers/cli.js';
import { cleanup, sleep, startAgent, until, type AgentProcess } from '../helpers/agent.js';

const linkState = async (agent: AgentProcess) => {
  const r = await controlRequest(agent.stateDir, { cmd: 'status' });
  if (!r.ok) throw new Error('status failed');
  return (r.status as { cloud: { link: { state: string; lastError: string | null } } }).cloud.link;
};

const cloud = (url: string, extra: Record<string, unknown>) => ({ cloud: { enabled: true, url, reconnectMinMs: 50, reconnectMaxMs: 300, ...extra } });

t.test('TLS with a client certificate: the link comes up; without the certificate, or with a rogue CA, it does not', async (t) => {
  const dir = t.testdir({});
  makeCertificates(dir, ['gw-plant-1']);
  const broker = await startMosquitto({
    tls: true,
    listener: [`cafile ${join(dir, 'ca.pem')}`, `certfile ${join(dir, 'server.pem')}`, `keyfile ${join(dir, 'server.key')}`, 'require_certificate true'],
  });
  t.teardown(() => broker.stop());
  t.match(broker.url, /^mqtts:/);

  const good = await startAgent({ config: cloud(broker.url, { ca: join(dir, 'ca.pem'), cert: join(dir, 'gw-plant-1.pem'), key: join(dir, 'gw-plant-1.key') }) });
  t.teardown(async () => {
    await good.stop();
    cleanup(good);
  });
  t.ok(await until(() => good.logs().some((l) => /cloud link up/.test(l)), 10_000), 'the link is up over TLS with the client certificate');
  t.equal((await linkState(good)).state, 'online');

  const noCert = await startAgent({ config: cloud(broker.url, { ca: join(dir, 'ca.pem') }) });
  const rogueCa = await startAgent({ config: cloud(broker.url, { ca: join(dir, 'rogue-ca.pem'), cert: join(dir, 'gw-plant-1.pem'), key: join(dir, 'gw-plant-1.key') }) });
  t.teardown(async () => {
    await noCert.stop();
    await rogueCa.stop();
    cleanup(noCert);
    cleanup(rogueCa);
  });
  await sleep(1500);
  for (const [label, agent] of [['without a client certificate', noCert], ['trusting another CA', rogueCa]] as const) {
    t.not((await linkState(agent)).state, 'online', `${label}: the link stays down`);
    t.notOk(agent.logs().some((l) => /cloud link up/.test(l)), `${label}: never up`);
    t.ok(agent.logs().some((l) => /cloud link error/.test(l)), `${label}: the failure is logged`);
  }
  t.match((await linkState(rogueCa)).lastError, /certificate|self.signed|verify/i, 'a server certificate the CA does not vouch for is refused');
});

t.test('username and password from a file: never logged', async (t) => {
  const dir = t.testdir({});
  const pwfile = join(dir, 'mosquitto.pw');
  execFileSync('mosquitto_passwd', ['-b', '-c', pwfile, 'gw-plant-1', 's3cret-Pa55'], { stdio: 'ignore' });
  chmodSync(pwfile, 0o600);
  const broker = await startMosquitto({ config: ['allow_anonymous false', `password_file ${pwfile}`] });
  t.teardown(() => broker.stop());
  writeFileSync(join(dir, 'good.txt'), 's3cret-Pa55\n', { mode: 0o600 });
  writeFileSync(join(dir, 'bad.txt'), 'wrong-Pa55\n', { mode: 0o600 });

  const good = await startAgent({ config: { ...cloud(broker.url, { username: 'gw-plant-1', passwordFile: join(dir, 'good.txt') }), log: { level: 'trace' } } });
  const bad = await startAgent({ config: { ...cloud(broker.url, { username: 'gw-plant-1', passwordFile: join(dir, 'bad.txt') }), log: { level: 'trace' } } });
  t.teardown(async () => {
    await good.stop();
    await bad.stop();
    cleanup(good);
    cleanup(bad);
  });
  t.ok(await until(() => good.logs().some((l) => /cloud link up/.test(l)), 10_000), 'the right password: the link is up');
  await sleep(1000);
  t.not((await linkState(bad)).state, 'online', 'the wrong password: the link stays down');
  t.match((await linkState(bad)).lastError, /Not authorized|Bad user name or password|refused/i, 'the broker\'s refusal is reported');
  for (const agent of [good, bad]) {
    const logs = agent.logs().join('\n');
    t.notMatch(logs, /s3cret-Pa55|wrong-Pa55/, 'no password in any log line');
  }
});

t.test('a missing password file stops the agent at start with the file named, leaving nothing running', async (t) => {
  const dir = t.testdir({});
  const config = join(dir, 'config.yaml');
  writeFileSync(config, stringify({ trust: { keys: [join(ROOT, 'config', 'demo-keys', 'demo.pub.pem')] }, cloud: { enabled: true, passwordFile: join(dir, 'missing.txt') } }));
  const state = mkdtempSync(join(tmpdir(), 'ew-pw-'));
  t.teardown(() => rmSync(state, { recursive: true, force: true }));
  const r = cli(['run', '-c', config, '--state-dir', state, '--port', '0']);
  // The fixture directory's path is too long for a Unix socket: that too is an error, not a hang.
  const long = cli(['run', '-c', config, '--state-dir', join(dir, 'a-state-directory-whose-control-socket-path-is-too-long-for-linux'), '--port', '0']);
  t.equal(long.code, 1);
  t.match(long.stderr, /EW_STORE_IO: .*control\.sock: the control socket path is \d+ bytes, too long: more than the 107 a Unix socket allows/);
  t.equal(r.code, 1, 'exit 1, not a hang: the listener that had opened is closed again');
  t.match(r.stderr, /EW_CONFIG_READ: .*missing\.txt: cloud\.passwordFile cannot be read: ENOENT/);
});

t.test('config/cloud-tls.yaml is a valid configuration', async (t) => {
  const { config } = loadConfig({ path: join(ROOT, 'config', 'cloud-tls.yaml'), bundled: bundledPaths(ROOT) });
  t.equal(config.cloud.enabled, true);
  t.match(config.cloud.url, /^mqtts:\/\//);
  t.ok(config.cloud.ca && config.cloud.cert && config.cloud.key, 'server CA, client certificate and key');
});
