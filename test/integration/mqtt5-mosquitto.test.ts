// The MQTT 5 features of the local listener as the mosquitto command-line clients (-V mqttv5) use
// them: request/response with its properties, a response topic the requester may not read, user
// properties, message expiry with the action time to live, session expiry, topic aliases, the
// client's Maximum Packet Size. (MQTT.js and raw-packet tests: mqtt5*.test.ts.)
import t, { type Test } from 'tap';
import { join } from 'node:path';
import { readAudit } from '../../src/audit/audit-log.js';
import { agentFor, mosquitto, mosquittoSub, sleep, until, type AgentProcess } from '../helpers/agent.js';

let agent: AgentProcess;
t.before(async () => {
  agent = await agentFor(t);
});

const at = () => ['-V', 'mqttv5', '-h', '127.0.0.1', '-p', String(agent.port)];
const oven = (id: string) => [...at(), '-i', id, '-u', 'oven-1', '-P', 'oven-1-token'];
const anna = (id: string) => [...at(), '-i', id, '-u', 'tech-anna', '-P', 'anna-pass'];
const COMMANDS = 'things/oven-1/commands/#';
const REPLY = 'things/oven-1/commands/reboot/reply';

/** mosquitto_pub, which must succeed. */
function pub(t: Test, args: string[], what: string): string {
  const r = mosquitto('mosquitto_pub', args, 30_000);
  t.equal(r.code, 0, `${what}: mosquitto_pub exits 0 ${r.stderr}`);
  return r.stdout + r.stderr;
}

/** The lines of a background mosquitto_sub with the given prefix. */
const tagged = (lines: string[], tag: string) => lines.filter((l) => l.startsWith(`${tag}|`));

t.test('request/response: the command reaches the device with response topic, correlation data, user property and expiry; the device\'s reply reaches the requester', async (t) => {
  const device = mosquittoSub([...oven('oven-1'), '-t', COMMANDS, '-q', '1', '-F', 'CMD|%t|%p|%R|%D|%P|%E', '-d']);
  const requester = mosquittoSub([...anna('anna-rr'), '-t', REPLY, '-q', '1', '-F', 'REPLY|%t|%p|%D', '-d']);
  t.teardown(() => Promise.all([device.stop(), requester.stop()]));
  await Promise.all([device.ready, requester.ready]);
  pub(t, [...anna('anna-cmd'), '-t', 'things/oven-1/commands/reboot', '-m', 'go', '-q', '1', '-D', 'publish', 'response-topic', REPLY, '-D', 'publish', 'correlation-data', 'corr-77', '-D', 'publish', 'user-property', 'tool', 'fieldkit', '-D', 'publish', 'message-expiry-interval', '600'], 'the command');
  t.ok(await until(() => tagged(device.lines, 'CMD').length > 0, 20_000), 'the device got the command');
  const [, topic, payload, responseTopic, correlation, userProps, expiry] = tagged(device.lines, 'CMD')[0]!.split('|');
  t.same([topic, payload, responseTopic, correlation], ['things/oven-1/commands/reboot', 'go', REPLY, 'corr-77'], 'with its response topic and correlation data');
  t.match(userProps, /tool.*fieldkit/, 'and its user property');
  t.ok(Number(expiry) > 0 && Number(expiry) <= 600, `and what remains of its expiry (${expiry} s; the action's time to live, 300 s, is shorter)`);
  t.ok(Number(expiry) <= 300, 'the shorter of the message expiry and the action time to live');
  pub(t, [...oven('oven-1-reply'), '-t', REPLY, '-m', 'done', '-q', '1', '-D', 'publish', 'correlation-data', 'corr-77'], 'the reply');
  t.ok(await until(() => tagged(requester.lines, 'REPLY').length > 0, 20_000), 'the requester got the reply');
  t.equal(tagged(requester.lines, 'REPLY')[0], `REPLY|${REPLY}|done|corr-77`, 'with the correlation data');
});

t.test('a response topic the requester may not read: "Publish 1 failed: Not authorized." RESPONSE_TOPIC_DENIED; never delivered', async (t) => {
  const device = mosquittoSub([...oven('oven-1-rt'), '-t', COMMANDS, '-q', '1', '-F', 'CMD|%p', '-d']);
  t.teardown(() => device.stop());
  await device.ready;
  const out = pub(t, [...anna('anna-rt'), '-t', 'things/oven-1/commands/reboot', '-m', 'elsewhere', '-q', '1', '-D', 'publish', 'response-topic', 'things/oven-2/telemetry/x'], 'the refused command');
  t.match(out, /Publish 1 failed: Not authorized\.\s*RESPONSE_TOPIC_DENIED/, 'told why');
  pub(t, [...anna('anna-rt2'), '-t', 'things/oven-1/commands/reboot', '-m', 'after', '-q', '1'], 'a command after it');
  t.ok(await until(() => tagged(device.lines, 'CMD').length > 0, 20_000), 'the command after it arrives');
  t.same(tagged(device.lines, 'CMD'), ['CMD|after'], 'and only that one');
});

t.test('message expiry: a command whose Message Expiry Interval passed while its device was away is not delivered (ACTION_EXPIRED); one still valid is', async (t) => {
  const session = ['-c', '-x', '600'];
  const first = mosquitto('mosquitto_sub', [...oven('oven-1-away'), ...session, '-t', COMMANDS, '-q', '1', '-E'], 30_000);
  t.equal(first.code, 0, `the device's persistent session (Session Expiry Interval 600) ${first.stderr}`);
  const sentAt = Date.now();
  pub(t, [...anna('anna-exp'), '-t', 'things/oven-1/commands/short', '-m', 'short', '-q', '1', '-D', 'publish', 'message-expiry-interval', '2'], 'a command valid 2 s');
  pub(t, [...anna('anna-exp'), '-t', 'things/oven-1/commands/long', '-m', 'long', '-q', '1', '-D', 'publish', 'message-expiry-interval', '120'], 'a command valid 120 s');
  // The device stays away until the first command's interval has passed (by the clock, with a margin).
  while (Date.now() < sentAt + 3_500) await sleep(100);
  const back = mosquittoSub([...oven('oven-1-away'), ...session, '-t', COMMANDS, '-q', '1', '-F', 'CMD|%p|%E', '-d']);
  t.teardown(() => back.stop());
  await back.ready;
  pub(t, [...anna('anna-exp'), '-t', 'things/oven-1/commands/marker', '-m', 'marker', '-q', '1'], 'a marker command behind them');
  t.ok(await until(() => tagged(back.lines, 'CMD').some((l) => l.startsWith('CMD|marker')), 20_000), 'the marker arrives');
  const got = tagged(back.lines, 'CMD').map((l) => l.split('|')[1]);
  t.same(got, ['long', 'marker'], 'the expired command was not delivered, the valid one was (in order)');
  const remaining = Number(tagged(back.lines, 'CMD')[0]!.split('|')[2]);
  t.ok(remaining > 0 && remaining <= 117, `delivered with the interval that remains (${remaining} s)`);
  let expired: Awaited<ReturnType<typeof readAudit>> = [];
  for (const end = Date.now() + 20_000; expired.length === 0 && Date.now() < end; await sleep(100)) {
    expired = (await readAudit(join(agent.stateDir, 'audit'))).filter((e) => e.reason === 'ACTION_EXPIRED' && e.topic === 'things/oven-1/commands/short');
  }
  t.equal(expired.length, 1, 'the expired command is audited ACTION_EXPIRED');
});

t.test('session expiry: a session with Session Expiry Interval 2 ends 2 s after its client left; nothing queued for it is delivered', async (t) => {
  const first = mosquitto('mosquitto_sub', [...oven('oven-1-brief'), '-c', '-x', '2', '-t', COMMANDS, '-q', '1', '-E'], 30_000);
  t.equal(first.code, 0, `a persistent session of 2 s ${first.stderr}`);
  pub(t, [...anna('anna-se'), '-t', 'things/oven-1/commands/queued', '-m', 'queued', '-q', '1'], 'a command queued for it');
  t.match(await agent.waitLog(/"msg":"MQTT 5 session expired"/, 30_000), /oven-1-brief/, 'the agent ends the session');
  const back = mosquittoSub([...oven('oven-1-brief'), '-c', '-x', '2', '-t', COMMANDS, '-q', '1', '-F', 'CMD|%p', '-d']);
  t.teardown(() => back.stop());
  await back.ready;
  pub(t, [...anna('anna-se'), '-t', 'things/oven-1/commands/marker', '-m', 'fresh', '-q', '1'], 'a new command');
  t.ok(await until(() => tagged(back.lines, 'CMD').length > 0, 20_000), 'the new command arrives');
  t.same(tagged(back.lines, 'CMD'), ['CMD|fresh'], 'and nothing of the ended session');
  t.match(back.lines.join('\n'), /received CONNACK \(0\)/, 'a new session');
});

t.test('topic aliases and the client\'s Maximum Packet Size', async (t) => {
  const small = mosquittoSub([...oven('oven-1-small'), '-D', 'connect', 'maximum-packet-size', '200', '-t', COMMANDS, '-q', '1', '-F', 'CMD|%p', '-d']);
  t.teardown(() => small.stop());
  await small.ready;
  pub(t, [...anna('anna-big'), '-t', 'things/oven-1/commands/big', '-m', 'x'.repeat(1000), '-q', '1'], 'a 1 KB command');
  // mosquitto_pub sends the topic with alias 1 (the agent advertises Topic Alias Maximum 16).
  pub(t, [...anna('anna-alias'), '-t', 'things/oven-1/commands/aliased', '-m', 'aliased', '-q', '1', '-D', 'publish', 'topic-alias', '1'], 'a command with a topic alias');
  t.ok(await until(() => tagged(small.lines, 'CMD').length > 0, 20_000), 'a message arrives');
  t.same(tagged(small.lines, 'CMD'), ['CMD|aliased'], 'the one over the device\'s 200-byte maximum was not sent; the aliased one was');
});
