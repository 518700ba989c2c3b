// The Prometheus endpoint of the running agent: scraped over HTTP, and the figures move with what
// clients do.
import t, { type Test } from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cleanup, connect, endAll, exampleSnapshot, startAgent, until } from '../helpers/agent.js';
import { freePort } from '../helpers/mosquitto.js';
import { ROOT } from '../helpers/policy.js';

const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

/** Prometheus conventions that hold in every scrape. */
function conventions(t: Test, text: string, when: string): void {
  t.notMatch(text, /=""/, `${when}: no label with an empty value`);
  t.notMatch(text, /^edgewarden_(process|nodejs)_/m, `${when}: process and Node metrics keep their standard names`);
}

async function scrape(port: number): Promise<{ text: string; value(name: string, labels?: Record<string, string>): number | undefined }> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  const text = await res.text();
  if (res.status !== 200) throw new Error(`status ${res.status}: ${text}`);
  return {
    text,
    value(name, labels = {}) {
      for (const line of text.split('\n')) {
        const m = /^([a-z_]+)(?:\{([^}]*)\})? (\S+)$/.exec(line);
        if (!m || m[1] !== name) continue;
        const got = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
        if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
      }
      return undefined;
    },
  };
}

t.test('metrics endpoint: scraped from the running agent, figures move', async (t) => {
  const agent = await startAgent({
    config: {
      metrics: { enabled: true, host: '127.0.0.1', port: 0 },
      cloud: { enabled: true, url: `mqtt://127.0.0.1:${await freePort()}`, reconnectMinMs: 50, reconnectMaxMs: 200 },
    },
  });
  t.teardown(async () => {
    await agent.stop();
    cleanup(agent);
  });
  const port = (JSON.parse(await agent.waitLog(/metrics endpoint listening/)) as { port: number }).port;
  const before = await scrape(port);
  t.match(before.text, /# TYPE edgewarden_decisions_total counter/);
  t.match(before.text, /# HELP edgewarden_snapshot_expiry_seconds /);
  t.equal(before.value('edgewarden_snapshot_version'), 1);
  t.ok(before.value('edgewarden_snapshot_expiry_seconds')! > 3600 * 24 * 365, 'seconds to expiry');
  t.equal(before.value('edgewarden_cloud_link_up'), 0, 'the cloud link is down');
  t.equal(before.value('edgewarden_clients_connected', { kind: 'device' }), 0);
  t.equal(before.value('edgewarden_messages_in_total'), 0);
  conventions(t, before.text, 'at start');
  t.ok(before.value('process_resident_memory_bytes')! > 0, 'process metrics, unprefixed');
  t.ok(before.value('process_cpu_seconds_total')! > 0);
  t.ok(before.value('nodejs_heap_size_used_bytes')! > 0, 'Node metrics, unprefixed');
  t.equal(before.value('edgewarden_build_info', { version: VERSION, node: process.version }), 1, 'build_info: the package version and Node\'s');
  t.match(before.text, /^# TYPE edgewarden_build_info gauge$/m);
  t.equal((await fetch(`http://127.0.0.1:${port}/other`)).status, 404);

  const oven = await connect(agent.port, { clientId: 'oven-1', username: 'oven-1', password: 'oven-1-token' });
  await oven.client.subscribeAsync('things/oven-1/commands/#', { qos: 1 });
  const anna = await connect(agent.port, { clientId: 'anna', username: 'tech-anna', password: 'anna-pass' });
  const carl = await connect(agent.port, { clientId: 'carl', username: 'viewer-carl', password: 'carl-pass' });
  await anna.client.publishAsync('things/oven-1/commands/reboot', 'ok', { qos: 1 });
  await carl.client.publishAsync('things/oven-1/commands/reboot', 'no', { qos: 1 });
  await carl.client.publishAsync('things/oven-1/commands/reboot', 'no', { qos: 1 });
  await oven.client.publishAsync('things/oven-1/telemetry/temp', '21', { qos: 1 });
  t.ok(await until(() => oven.messages.length === 1));
  let after = await scrape(port);
  for (let i = 0; i < 20 && (after.value('edgewarden_queue_depth') ?? 0) < 1; i++) after = await scrape(port);
  t.equal(after.value('edgewarden_clients_connected', { kind: 'device' }), 1);
  t.equal(after.value('edgewarden_clients_connected', { kind: 'user' }), 2);
  t.equal(after.value('edgewarden_messages_in_total'), 4);
  t.equal(after.value('edgewarden_messages_denied_total'), 2);
  t.equal(after.value('edgewarden_messages_out_total'), 1, 'one delivery: the allowed command');
  conventions(t, after.text, 'after decisions');
  t.match(after.text, /^edgewarden_decisions_total\{result="allow",action="EXECUTE_THING_COMMAND"\} 1$/m, 'an allowed decision has no reason label');
  t.equal(after.value('edgewarden_decisions_total', { result: 'deny', action: 'EXECUTE_THING_COMMAND', reason: 'NOT_GRANTED' }), 2);
  t.ok(after.value('edgewarden_queue_depth')! >= 1, 'the telemetry waits in the queue');
  t.ok(after.value('edgewarden_queue_bytes')! > 0);

  writeFileSync(join(agent.stateDir, 'inbox', 'v2.cose'), exampleSnapshot(2));
  t.ok(await until(() => agent.logs().some((l) => /inbox snapshot accepted/.test(l)), 15_000), 'the inbox snapshot is taken');
  t.equal((await scrape(port)).value('edgewarden_snapshot_version'), 2, 'a new snapshot shows');
  await endAll(oven, anna, carl);
  let gone = await scrape(port);
  for (let i = 0; i < 20 && gone.value('edgewarden_clients_connected', { kind: 'user' }) !== 0; i++) gone = await scrape(port);
  t.equal(gone.value('edgewarden_clients_connected', { kind: 'user' }), 0, 'disconnected clients are not counted');
});

t.test('metrics are off by default', async (t) => {
  const agent = await startAgent();
  t.teardown(async () => {
    await agent.stop();
    cleanup(agent);
  });
  t.notOk(agent.logs().some((l) => /metrics endpoint listening/.test(l)));
});
