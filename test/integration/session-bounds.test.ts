// Persistent sessions are bounded: a session's queue keeps its newest messages, all queues together
// stay within their byte bound (RSS read from /proc), the number of persistent sessions is capped,
// and abandoned sessions expire. Over MQTT 3.1.1 and MQTT 5 (a persistent session there: Clean Start 0
// with a Session Expiry Interval).
import t from 'tap';
import { readFileSync } from 'node:fs';
import mqtt, { type IClientOptions } from 'mqtt';
import { controlRequest } from '../../src/agent/control.js';
import { agentFor, connackCode as connackCodeOf, connect as connectOf, endAll, until, type AgentProcess, type Connected } from '../helpers/agent.js';

/** The protocol version of the scenarios running (the two runs are sequential). */
let pv: 4 | 5 = 4;
const SESSION_EXPIRY = { sessionExpiryInterval: 3600 };
const versioned = (opts: IClientOptions): IClientOptions => ({ ...opts, protocolVersion: pv, ...(pv === 5 && opts.clean === false ? { properties: SESSION_EXPIRY } : {}) });
const connect = (port: number, opts: IClientOptions): Promise<Connected> => connectOf(port, versioned(opts));
/** CONNACK in 3.1.1's return codes (aedes maps them to MQTT 5 reason codes: 0x88 Server unavailable for 3). */
const connackCode = async (port: number, opts: IClientOptions): Promise<number> => {
  const code = await connackCodeOf(port, versioned(opts));
  return pv === 5 ? ({ 0x85: 2, 0x88: 3, 0x86: 4, 0x87: 5 } as Record<number, number>)[code] ?? code : code;
};

const DASH = { username: 'dashboard', password: 'dashboard-secret' };
const OVEN = { clientId: 'oven-1', username: 'oven-1', password: 'oven-1-token' };


const brokerStats = async (agent: AgentProcess) => {
  const r = await controlRequest(agent.stateDir, { cmd: 'status' });
  if (!r.ok) throw new Error('status failed');
  return (r.status as { broker: Record<string, number> }).broker;
};

const rssBytes = (pid: number): number => {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
};

/** Publishes n QoS 1 telemetry messages of `bytes` from the device, at most 64 unacknowledged. */
async function flood(port: number, n: number, bytes: number, topic = 'things/oven-1/telemetry/t'): Promise<void> {
  const oven = await connect(port, { ...OVEN, clientId: `oven-pub-${Math.random().toString(36).slice(2)}` });
  const filler = 'a'.repeat(bytes);
  let sent = 0;
  const worker = async () => {
    while (sent < n) {
      const i = sent++;
      await oven.client.publishAsync(topic, `${i}:${filler}`.slice(0, bytes), { qos: 1 });
    }
  };
  await Promise.all(Array.from({ length: 64 }, worker));
  await endAll(oven);
}

for (const version of [4, 5] as const) t.test(`MQTT ${version === 4 ? '3.1.1' : '5'}`, async (t) => {
  pv = version;
  t.test('a full session queue keeps its newest messages; the drop is logged once and counted', async (t) => {
    const agent = await agentFor(t, { config: { sessions: { maxQueuedMessages: 100 } } });
    const dash = await connect(agent.port, { ...DASH, clientId: 'dash-1', clean: false });
    await dash.client.subscribeAsync('things/+/telemetry/#', { qos: 1 });
    await endAll(dash);
    await flood(agent.port, 1000, 64);
    const stats = await brokerStats(agent);
    t.equal(stats['sessionsQueued'], 100, '100 queued');
    t.equal(stats['sessionsDroppedOldest'], 900, '900 oldest dropped, counted');
    t.equal(agent.logs().filter((l) => /session queue full/.test(l)).length, 1, 'logged once for the session');
    const back = await connect(agent.port, { ...DASH, clientId: 'dash-1', clean: false });
    t.ok(await until(() => back.messages.length >= 100, 15_000), 'the queue is delivered on reconnect');
    t.equal(back.messages.length, 100);
    const numbers = back.messages.map((m) => Number(m.payload.split(':')[0]));
    t.ok(numbers.every((i) => i >= 900), `the newest ones (lowest ${Math.min(...numbers)})`);
    await endAll(back);
  });

  t.test('20 offline readers and 60,000 × 1 KiB QoS 1 messages: memory levels off within the sessions\' byte bounds', async (t) => {
    const agent = await agentFor(t, { readyTimeoutMs: 30_000 });
    for (let i = 0; i < 20; i++) {
      const r = await connect(agent.port, { ...DASH, clientId: `reader-${i}`, clean: false });
      await r.client.subscribeAsync('things/+/telemetry/#', { qos: 1 });
      await endAll(r);
    }
    const before = rssBytes(agent.child.pid!);
    await flood(agent.port, 20_000, 1024);
    const filled = rssBytes(agent.child.pid!);
    await flood(agent.port, 40_000, 1024);
    const after = rssBytes(agent.child.pid!);
    const stats = await brokerStats(agent);
    const mb = (n: number) => Math.round(n / 1048576);
    t.ok(stats['sessionsQueuedBytes']! <= 20 * 1024 * 1024, `queued ${mb(stats['sessionsQueuedBytes']!)} MB: each session within its 1 MiB`);
    t.ok(stats['sessionsQueued']! <= 20 * 1000, `${stats['sessionsQueued']} messages queued`);
    t.ok(after - filled < 64 * 1024 * 1024, `RSS ${mb(before)} MB → ${mb(filled)} MB after 20,000 messages → ${mb(after)} MB after 40,000 more: it levels off (unbounded queues took it past 700 MB)`);
    t.ok(after < 400 * 1024 * 1024, 'well under the unit\'s MemoryMax (512 MB)');
  });

  t.test('the number of persistent sessions is capped; abandoned ones expire', async (t) => {
    const agent = await agentFor(t, { config: { sessions: { maxPersistent: 2, expirySeconds: 2 } } });
    for (const id of ['s1', 's2']) {
      const c = await connect(agent.port, { ...DASH, clientId: id, clean: false });
      await c.client.subscribeAsync('things/+/telemetry/#', { qos: 1 });
      await endAll(c);
    }
    t.equal(await connackCode(agent.port, { ...DASH, clientId: 's3', clean: false }), 3, 'a third persistent session is refused (CONNACK 0x03)');
    t.equal(await connackCode(agent.port, { ...DASH, clientId: 's3', clean: true }), 0, 'a clean session is not');
    t.match(JSON.parse(await agent.waitLog(/"msg":"connection refused: SESSION_LIMIT"/)), { reason: 'SESSION_LIMIT', limit: 'sessions.maxPersistent', max: 2 }, 'logged, with the bound');
    // Both abandoned: expired after 2 s (3.1.1: our sweep, every second; MQTT 5: their Session Expiry
    // Interval, bounded by sessions.expirySeconds, aedes' timer), then new sessions fit again.
    t.ok(await agent.waitLog(pv === 5 ? /"clientId":"s2".*"msg":"MQTT 5 session expired"/ : /abandoned persistent sessions expired/, 20_000), 'the abandoned sessions expire');
    const present = await new Promise<boolean>((resolve, reject) => {
      const c = mqtt.connect({ host: '127.0.0.1', port: agent.port, reconnectPeriod: 0, ...versioned({ ...DASH, clientId: 's1', clean: false }) });
      c.once('connect', (connack) => {
        c.end(true);
        resolve(connack.sessionPresent);
      });
      c.once('error', reject);
    });
    t.equal(present, false, 'an expired session is gone: CONNACK session present 0');
    t.equal(await connackCode(agent.port, { ...DASH, clientId: 's4', clean: false }), 0, 'room again for a new persistent session');
    t.equal((await brokerStats(agent))['sessionsExpiredSessions']! >= 2, true, 'counted');
  });
});
