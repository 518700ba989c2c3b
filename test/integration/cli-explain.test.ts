// `edgewarden explain` for the gateway as it is: the snapshot in force of a running agent (a
// non-demo one, so its answers differ from the bundled example's), --topic for publish and
// subscribe with the agent's topic rules, --client-id for a client connected with MQTT.js, --json,
// and the errors: no snapshot installed, no agent, no such client.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cli } from '../helpers/cli.js';
import { ROOT } from '../helpers/policy.js';
import { agentFor, connect, endAll, subscribe, DEMO_KEY, EXAMPLE_POLICY } from '../helpers/agent.js';
import { loadPolicyText, compilePolicy } from '../../src/policy/validate.js';
import { signSnapshot } from '../../src/snapshot/snapshot.js';
import { parsePrivateKey, kidOf } from '../../src/snapshot/keys.js';

/** The example policy with viewer-carl made an operator (EXECUTE_THING_COMMAND), as snapshot version 7. */
function operatorCarlSnapshot(dir: string): string {
  const text = readFileSync(EXAMPLE_POLICY, 'utf8').replace(/(  - id: viewer-carl\n(?:    .*\n)*?    role: )viewer/, '$1operator');
  if (!/id: viewer-carl\n(?:    .*\n)*?    role: operator/.test(text)) throw new Error('the example policy changed: viewer-carl\'s role not found');
  const { policy } = loadPolicyText(text, 'operator-carl.yaml');
  const key = parsePrivateKey(readFileSync(DEMO_KEY, 'utf8'));
  const file = join(dir, 'operator-carl.v7.cose');
  writeFileSync(file, signSnapshot(compilePolicy(policy, { version: 7, issuedAt: Date.now() - 60_000 }), key, kidOf(key)));
  return file;
}

const json = (stdout: string) => JSON.parse(stdout) as Record<string, unknown>;

t.test('explain answers from the running agent\'s snapshot in force, with its topic rules', async (t) => {
  const dir = t.testdir({});
  const snapshot = operatorCarlSnapshot(dir);
  const agent = await agentFor(t, { bootstrap: snapshot, config: { topics: { rules: [{ pattern: 'apps/#', who: 'role:operator', access: 'readwrite' }] } } });
  const config = join(agent.stateDir, 'test-config.yaml');
  const current = join(agent.stateDir, 'snapshot', 'current.cose');

  const demo = cli(['explain', '-s', join(ROOT, 'config', 'example-snapshot.cose'), '-p', 'viewer-carl', '-P', 'EXECUTE_THING_COMMAND', '--thing', 'chiller-1']);
  t.equal(demo.code, 3, 'the bundled example snapshot denies viewer-carl');
  t.match(demo.stdout, /DENY NOT_GRANTED  \(snapshot version 1, .*example-snapshot\.cose/);
  const installed = cli(['explain', '-c', config, '-p', 'viewer-carl', '-P', 'EXECUTE_THING_COMMAND', '--thing', 'chiller-1']);
  t.equal(installed.code, 0, `the installed snapshot allows: ${installed.stderr}`);
  t.match(installed.stdout, `viewer-carl EXECUTE_THING_COMMAND on chiller-1: ALLOW  (snapshot version 7, ${current}`);
  t.match(installed.stdout, /role operator grants EXECUTE_THING_COMMAND/);
  const byStateDir = cli(['explain', '--state-dir', agent.stateDir, '-p', 'viewer-carl', '-P', 'EXECUTE_THING_COMMAND', '--thing', 'chiller-1', '--json']);
  t.equal(byStateDir.code, 0, byStateDir.stderr);
  t.match(json(byStateDir.stdout), { snapshot: current, version: 7, principal: 'viewer-carl', kind: 'user', permission: 'EXECUTE_THING_COMMAND', thing: 'chiller-1', decision: 'allow', reason: null });

  // --topic, publish (the default)
  const command = cli(['explain', '-c', config, '-p', 'viewer-carl', '--topic', 'things/chiller-1/commands/defrost']);
  t.equal(command.code, 0, command.stderr);
  t.match(command.stdout, /viewer-carl publish things\/chiller-1\/commands\/defrost: ALLOW  \(snapshot version 7/);
  t.match(command.stdout, /route\s+action: EXECUTE_THING_COMMAND on chiller-1 \(defrost\)/);
  const other = cli(['explain', '-c', config, '-p', 'viewer-carl', '--topic', 'things/oven-1/commands/reboot', '--publish']);
  t.equal(other.code, 3);
  t.match(other.stdout, /DENY OUT_OF_SCOPE/);
  const ruled = cli(['explain', '-c', config, '-p', 'viewer-carl', '--topic', 'apps/line/status']);
  t.equal(ruled.code, 0, 'outside the map, the agent\'s topic rule for role operator allows');
  t.match(ruled.stdout, /route\s+outside the topic map: the topic rules decide/);
  const unruled = cli(['explain', '-c', config, '-p', 'tech-anna', '--topic', 'apps/line/status']);
  t.equal(unruled.code, 3);
  t.match(unruled.stdout, /DENY TOPIC_DENIED/);
  const posing = cli(['explain', '-c', config, '-p', 'mixer-1', '--topic', 'things/oven-1/telemetry/temp']);
  t.equal(posing.code, 3);
  t.match(posing.stdout, /route\s+device-own: .*\n.*only the device oven-1 publishes it; mixer-1 is not it/);

  // --topic, subscribe
  const sub = cli(['explain', '-c', config, '-p', 'viewer-carl', '--topic', 'things/chiller-1/telemetry/#', '--subscribe', '--json']);
  t.equal(sub.code, 0, sub.stderr);
  t.match(json(sub.stdout), { snapshot: current, version: 7, topic: 'things/chiller-1/telemetry/#', direction: 'subscribe', route: { kind: 'subscription', reads: [{ permission: 'READ_THING', thing: 'chiller-1' }] }, permission: 'READ_THING', thing: 'chiller-1', decision: 'allow', reason: null });
  const refused = cli(['explain', '-c', config, '-p', 'viewer-carl', '--topic', 'things/oven-1/telemetry/#', '--subscribe', '--json']);
  t.equal(refused.code, 3);
  const r = json(refused.stdout) as { decision: string; reason: string; steps: { rule: string; passed: boolean }[] };
  t.match(r, { decision: 'deny', reason: 'OUT_OF_SCOPE', permission: 'READ_THING', thing: 'oven-1' });
  t.ok(r.steps.some((s) => s.rule === 'scope' && !s.passed), 'the steps say which rule failed');
  // A shared subscription is decided on its filter.
  const shared = cli(['explain', '-c', config, '-p', 'viewer-carl', '--topic', '$share/g/things/chiller-1/telemetry/#', '--subscribe', '--json']);
  t.match(json(shared.stdout), { topic: '$share/g/things/chiller-1/telemetry/#', permission: 'READ_THING', thing: 'chiller-1', decision: 'allow' }, '$share/g/F: allowed as F');
  t.match(json(cli(['explain', '-c', config, '-p', 'viewer-carl', '--topic', '$share/g/things/oven-1/telemetry/#', '--subscribe', '--json']).stdout), { decision: 'deny', reason: 'OUT_OF_SCOPE', thing: 'oven-1' }, '$share/g/F: refused as F');
  const outside = cli(['explain', '-c', config, '-p', 'viewer-carl', '--topic', 'elsewhere/#', '--subscribe']);
  t.equal(outside.code, 3);
  t.match(outside.stdout, /DENY TOPIC_DENIED/);
  const ghost = cli(['explain', '-c', config, '-p', 'ghost', '--topic', 'apps/x']);
  t.equal(ghost.code, 3);
  t.match(ghost.stdout, /DENY UNKNOWN_PRINCIPAL[\s\S]*the broker refuses its CONNECT/);

  // --client-id: a client connected with MQTT.js
  const carl = await connect(agent.port, { clientId: 'carl-explain', username: 'viewer-carl', password: 'carl-pass', keepalive: 45 });
  t.teardown(() => endAll(carl));
  t.equal(await subscribe(carl, 'things/chiller-1/telemetry/#'), 1);
  const shown = cli(['explain', '-c', config, '--client-id', 'carl-explain']);
  t.equal(shown.code, 0, shown.stderr);
  t.match(shown.stdout, /^client\s+carl-explain$/m);
  t.match(shown.stdout, /^principal\s+viewer-carl \(user, role operator\)$/m);
  t.match(shown.stdout, /^remote\s+127\.0\.0\.1 on the tcp listener$/m);
  t.match(shown.stdout, /^session\s+clean, keepalive 45 s$/m);
  t.match(shown.stdout, /^subscriptions\s+things\/chiller-1\/telemetry\/# \(QoS 1\)$/m);
  t.match(shown.stdout, /^connected\s+20\d\d-/m);
  const forClient = cli(['explain', '-c', config, '--client-id', 'carl-explain', '--topic', 'things/oven-1/alerts/#', '--subscribe', '--json']);
  t.equal(forClient.code, 3);
  t.match(json(forClient.stdout), { snapshot: current, version: 7, client: { clientId: 'carl-explain', principal: 'viewer-carl', kind: 'user', role: 'operator', listener: 'tcp', cleanSession: true, keepaliveSeconds: 45, subscriptions: [{ filter: 'things/chiller-1/telemetry/#', qos: 1 }] }, principal: 'viewer-carl', decision: 'deny', reason: 'OUT_OF_SCOPE' });
  const permitted = cli(['explain', '-c', config, '--client-id', 'carl-explain', '-P', 'EXECUTE_THING_COMMAND', '--thing', 'chiller-1']);
  t.equal(permitted.code, 0, permitted.stderr);
  t.match(permitted.stdout, /viewer-carl EXECUTE_THING_COMMAND on chiller-1: ALLOW/);
  const unknown = cli(['explain', '-c', config, '--client-id', 'nobody']);
  t.equal(unknown.code, 1);
  t.match(unknown.stderr, /no client with the client id "nobody" is connected/);
});

t.test('explain without -s: no snapshot installed, no agent', async (t) => {
  const dir = t.testdir({});
  const none = cli(['explain', '--state-dir', dir, '-p', 'tech-anna', '-P', 'READ_THING']);
  t.equal(none.code, 1);
  t.match(none.stderr, /EW_STORE_IO: .*no snapshot is installed for the agent on .*current\.cose and previous\.cose.*edgewarden snapshot install FILE/);
  // A short state directory: the fixture directory's control socket path may be too long (below).
  const short = mkdtempSync(join(tmpdir(), 'ew-ex-'));
  t.teardown(() => rmSync(short, { recursive: true, force: true }));
  const client = cli(['explain', '--state-dir', short, '--client-id', 'oven-1']);
  t.equal(client.code, 1);
  t.match(client.stderr, /no agent is running with the state directory/);
  const long = join(dir, 'a-state-directory-whose-control-socket-path-is-'.padEnd(110, 'x'));
  const tooLong = cli(['explain', '--state-dir', long, '--client-id', 'oven-1']);
  t.equal(tooLong.code, 1);
  t.match(tooLong.stderr, /EW_STORE_IO: .*control\.sock: the control socket path is \d+ bytes, too long/, 'a socket path too long: a clear error');
  const withTrust = cli(['explain', '--state-dir', dir, '-t', 'some.pub.pem', '-p', 'tech-anna', '-P', 'READ_THING']);
  t.equal(withTrust.code, 2, 'a wrong command line');
  t.match(withTrust.stderr, /-t\/--trust goes with -s FILE/);
  t.equal(cli(['explain', '-s', 'x.cose', '-p', 'a', '--topic', 't', '-P', 'READ_THING']).code, 2, '--topic and -P');
  t.equal(cli(['explain', '-s', 'x.cose', '-p', 'a', '--topic', 't', '--publish', '--subscribe']).code, 2, '--publish and --subscribe');
  t.equal(cli(['explain', '-s', 'x.cose', '-P', 'READ_THING']).code, 2, 'no principal');
});
