// The cloud broker's access rule of docs/fleet.md, on a real mosquitto configured with exactly the
// blocks of that file (read between their markers: the docs and this test cannot drift apart):
// snapshots for gw-a and gw-b put there by `fleet publish` as the publisher account; gw-a then reads
// its own snapshot and down/# and nothing of gw-b's, and cannot publish under gw-b's prefix.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { cli } from '../helpers/cli.js';
import { DEMO_KEY, EXAMPLE_POLICY, until, sleep } from '../helpers/agent.js';
import { startMosquitto } from '../helpers/mosquitto.js';
import { docBlock, entryFor, watch } from '../helpers/fleet.js';
import { writeManifest } from '../../src/fleet/manifest.js';

const PASSWORDS: Record<string, string> = {
  'edgewarden-publisher': 'publisher-secret-9f2c',
  'edgewarden-cloud': 'cloud-secret-41aa',
  'gw-a': 'gw-a-secret-77d0',
  'gw-b': 'gw-b-secret-03be',
};

interface Received {
  topic: string;
  payload: Buffer;
}

/** A client of `username` collecting every message, with the SUBACK codes of its subscriptions. */
async function as(url: string, username: string, filters: string[]): Promise<{ client: MqttClient; got: Received[]; granted: number[]; end(): Promise<void> }> {
  const w = await watch(url, filters, { username, password: PASSWORDS[username]!, clientId: `${username}-${Math.random().toString(36).slice(2, 8)}` });
  const got: Received[] = [];
  w.client.on('message', (topic, payload) => got.push({ topic, payload }));
  return { client: w.client, got, granted: w.granted, end: w.end };
}

t.test('each gateway reads only its own snapshot and down/#, and publishes only under its own prefix', async (t) => {
  const dir = t.testdir({ fleet: {} });
  const fleet = join(dir, 'fleet');

  // The documented configuration, with this test's paths.
  const passwd = join(dir, 'edgewarden.passwd');
  const acl = join(dir, 'edgewarden.acl');
  const aclText = docBlock('mosquitto-acl');
  t.match(aclText, /^pattern read edgewarden\/%u\/snapshot$/m, 'the documented ACL (sanity)');
  writeFileSync(acl, aclText);
  for (const [i, [user, password]] of Object.entries(PASSWORDS).entries()) {
    const r = spawnSync('mosquitto_passwd', [...(i === 0 ? ['-c'] : []), '-b', passwd, user, password], { encoding: 'utf8' });
    t.equal(r.status, 0, `mosquitto_passwd ${user}: ${r.stderr}`);
  }
  const conf = docBlock('mosquitto-conf')
    .trim()
    .split('\n')
    .map((line) => line.replace('/etc/mosquitto/edgewarden.passwd', passwd).replace('/etc/mosquitto/edgewarden.acl', acl));
  t.same(conf.map((l) => l.split(' ')[0]), ['allow_anonymous', 'password_file', 'acl_file'], 'the documented mosquitto.conf lines');
  const cloud = await startMosquitto({ config: conf });
  t.teardown(() => cloud.stop());

  // Two snapshots signed with the CLI from small policy files, listed in a manifest.
  const policy = readFileSync(EXAMPLE_POLICY, 'utf8');
  const snapshots: Record<string, Buffer> = {};
  const gateways: Record<string, ReturnType<typeof entryFor>> = {};
  for (const id of ['gw-a', 'gw-b']) {
    const file = join(dir, `${id}.yaml`);
    writeFileSync(file, policy.replace(/^  id: gw-plant-1$/m, `  id: ${id}`));
    const signed = cli(['snapshot', 'sign', file, '-k', DEMO_KEY, '--version', '1', '-o', join(fleet, `${id}.cose`)]);
    t.equal(signed.code, 0, signed.stderr);
    snapshots[id] = readFileSync(join(fleet, `${id}.cose`));
    gateways[id] = entryFor(id, snapshots[id]);
  }
  writeManifest(fleet, { formatVersion: 1, lastIssuedAt: gateways['gw-a']!.issuedAt, gateways });

  // A gateway's account cannot put a snapshot on the broker, not even its own.
  const pwFile = (user: string) => {
    const p = join(dir, `${user}.pass`);
    writeFileSync(p, `${PASSWORDS[user]}\n`);
    return p;
  };
  const byGateway = cli(['fleet', 'publish', fleet, '--broker', cloud.url, '--username', 'gw-a', '--password-file', pwFile('gw-a'), '--gateway', 'gw-a', '--retries', '0', '--json']);
  t.equal(byGateway.code, 1, 'gw-a may not write its snapshot topic');
  t.match(JSON.parse(byGateway.stdout), { published: 0, failed: 1, failures: [{ gateway: 'gw-a', reason: /Not authorized/ }] });

  // A wrong password: refused in the CONNACK, which is final: it fails at once, not after
  // --retries attempts of --timeout each.
  writeFileSync(join(dir, 'wrong.pass'), 'not-the-password\n');
  const started = Date.now();
  const wrong = cli(['fleet', 'publish', fleet, '--broker', cloud.url, '--username', 'edgewarden-publisher', '--password-file', join(dir, 'wrong.pass'), '--timeout', '120', '--json']);
  t.equal(wrong.code, 1);
  const wrongJson = JSON.parse(wrong.stdout) as { failed: number; failures: { gateway: string; reason: string }[] };
  t.equal(wrongJson.failed, 2);
  for (const f of wrongJson.failures) t.match(f.reason, /the broker refused the connection: (Bad User Name or Password|Not authorized)/, f.reason);
  t.ok(Date.now() - started < 60_000, `failed in ${Date.now() - started} ms, not after 4 attempts of 120 s`);

  // The publisher account: both published; the password is never printed.
  const pub = cli(['fleet', 'publish', fleet, '--broker', cloud.url, '--username', 'edgewarden-publisher', '--password-file', pwFile('edgewarden-publisher')]);
  t.equal(pub.code, 0, pub.stderr);
  t.equal(pub.stdout, 'published 2, unchanged 0, failed 0\n');
  t.notMatch(pub.stdout + pub.stderr, PASSWORDS['edgewarden-publisher']!, 'no password in the output');
  // Credentials in the URL: the record's key has none (and it is the same broker: unchanged).
  const inUrl = cli(['fleet', 'publish', fleet, '--broker', cloud.url.replace('mqtt://', `mqtt://edgewarden-publisher:${PASSWORDS['edgewarden-publisher']}@`)]);
  t.equal(inUrl.code, 0, inUrl.stderr);
  t.equal(inUrl.stdout, 'published 0, unchanged 2, failed 0\n');
  const record = readFileSync(join(fleet, 'fleet-published.json'), 'utf8');
  t.notMatch(record, PASSWORDS['edgewarden-publisher']!, 'no password in fleet-published.json');
  t.same(Object.keys(JSON.parse(record).brokers), [cloud.url]);

  // gw-a subscribes to gw-b's snapshot and every wildcard first, to its own snapshot last: mosquitto
  // handles one connection's packets in order, so once its own retained snapshot is there, any of
  // gw-b's these subscriptions could have brought would have come before it.
  const gwA = await as(cloud.url, 'gw-a', ['edgewarden/gw-b/snapshot', 'edgewarden/+/snapshot', 'edgewarden/#', '#', 'edgewarden/gw-b/down/#']);
  t.teardown(() => gwA.end());
  await gwA.client.subscribeAsync('edgewarden/gw-a/snapshot', { qos: 1 });
  t.ok(await until(() => gwA.got.some((m) => m.topic === 'edgewarden/gw-a/snapshot'), 20_000), 'gw-a receives its own retained snapshot');
  t.ok(gwA.got.find((m) => m.topic === 'edgewarden/gw-a/snapshot')!.payload.equals(snapshots['gw-a']!), 'the file\'s bytes');
  await sleep(300); // a bounded settle after the positive control
  t.same(gwA.got.filter((m) => !m.topic.startsWith('edgewarden/gw-a/')), [], `nothing of gw-b's (SUBACK codes ${gwA.granted.join(', ')})`);

  // Requests down: the cloud application's for gw-a reaches gw-a, the one for gw-b does not; the
  // one for gw-a is sent last, on the same connection, as the positive control.
  const app = await as(cloud.url, 'edgewarden-cloud', ['edgewarden/#']);
  t.teardown(() => app.end());
  await app.client.publishAsync('edgewarden/gw-b/down/things/oven-9/commands/stop', 'for gw-b', { qos: 1 });
  await app.client.publishAsync('edgewarden/gw-a/down/things/oven-1/commands/stop', 'for gw-a', { qos: 1 });
  t.ok(await until(() => gwA.got.some((m) => m.topic === 'edgewarden/gw-a/down/things/oven-1/commands/stop'), 20_000), 'gw-a receives its own request');
  await sleep(300);
  t.same(gwA.got.filter((m) => m.topic.startsWith('edgewarden/gw-b/')), [], 'not gw-b\'s');

  // gw-a posing as gw-b: every publish under gw-b's prefix is refused. The cloud application (which
  // reads edgewarden/#) and gw-b see none of them; gw-a's own status, sent after them on the same
  // connection, is the positive control.
  const gwB = await as(cloud.url, 'gw-b', ['edgewarden/gw-b/snapshot', 'edgewarden/gw-b/down/#']);
  t.teardown(() => gwB.end());
  t.ok(await until(() => gwB.got.some((m) => m.topic === 'edgewarden/gw-b/snapshot'), 20_000), 'gw-b receives its own snapshot');
  const refused: string[] = [];
  for (const [topic, retain] of [
    ['edgewarden/gw-b/snapshot', true],
    ['edgewarden/gw-b/status', true],
    ['edgewarden/gw-b/up/things/oven-9/telemetry/t', false],
    ['edgewarden/gw-b/audit', false],
    ['edgewarden/gw-b/replies/tool-7', false],
    ['edgewarden/gw-b/down/things/oven-9/commands/stop', false],
  ] as const) {
    try {
      await gwA.client.publishAsync(topic, 'forged by gw-a', { qos: 1, retain });
    } catch (err) {
      refused.push(`${topic}: ${(err as Error).message}`);
    }
  }
  t.equal(refused.length, 6, `each refused (MQTT 5 PUBACK): ${refused.join('; ')}`);
  await gwA.client.publishAsync('edgewarden/gw-a/status', '{"state":"online"}', { qos: 1, retain: true });
  t.ok(await until(() => app.got.some((m) => m.topic === 'edgewarden/gw-a/status'), 20_000), 'gw-a may publish its own status');
  await gwA.client.publishAsync('edgewarden/gw-a/replies/tool-7', '{"outcome":"delivered"}', { qos: 1 });
  t.ok(await until(() => app.got.some((m) => m.topic === 'edgewarden/gw-a/replies/tool-7'), 20_000), 'and a reply to a response topic below its own replies/');
  await sleep(300);
  t.same(app.got.filter((m) => m.payload.toString() === 'forged by gw-a'), [], 'the cloud application saw nothing forged');
  t.same(gwB.got.filter((m) => m.payload.toString() === 'forged by gw-a'), [], 'gw-b saw nothing forged');
  const fresh = await as(cloud.url, 'gw-b', ['edgewarden/gw-b/snapshot']);
  t.teardown(() => fresh.end());
  t.ok(await until(() => fresh.got.length > 0, 20_000));
  t.ok(fresh.got[0]!.payload.equals(snapshots['gw-b']!), 'gw-b\'s retained snapshot is still the published one');
});
