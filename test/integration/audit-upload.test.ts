// The audit trail reaches the cloud even when it is written faster than the upload schedule: the
// upload is started by volume, so rotation (the disk bound) drops only uploaded records while the
// link is up. Offline, a loss forced by the bound is counted, logged and recorded as a "lost" line
// with the seqs and times lost, and that line reaches the cloud once the link is back.
import t from 'tap';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { readAudit } from '../../src/audit/audit-log.js';
import { controlRequest } from '../../src/agent/control.js';
import { agentFor, connect, endAll, until, type Connected } from '../helpers/agent.js';
import { startMosquitto, type Mosquitto } from '../helpers/mosquitto.js';

const P = 'edgewarden/gw-plant-1/';

interface Line {
  seq?: number;
  decision: string;
  count?: number;
  fromSeq?: number;
  toSeq?: number;
}

/** Every audit line the cloud receives, parsed. */
async function auditObserver(m: Mosquitto): Promise<{ lines: Line[]; end(): Promise<void> }> {
  const client = mqtt.connect(m.url, { clientId: `audit-obs-${Math.random().toString(36).slice(2)}`, protocolVersion: 5, reconnectPeriod: 100 });
  const lines: Line[] = [];
  client.on('message', (_topic, payload) => {
    for (const l of payload.toString('utf8').split('\n')) if (l.length > 0) lines.push(JSON.parse(l) as Line);
  });
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  await client.subscribeAsync(`${P}audit`, { qos: 1 });
  return { lines, end: async () => void (await client.endAsync(true)) };
}

/** `n` denied commands, each on its own topic (so none are coalesced), in paced batches. */
async function denials(c: Connected, n: number, tag: string): Promise<void> {
  for (let i = 0; i < n; i += 100) {
    for (let k = i; k < Math.min(n, i + 99); k++) c.client.publish(`things/oven-1/commands/${tag}-${k}`, 'x', { qos: 0 });
    await c.client.publishAsync(`things/oven-1/commands/${tag}-${Math.min(n, i + 100) - 1}`, 'x', { qos: 1 });
  }
}

const config = (m: Mosquitto, maxBytes: number) => ({
  audit: { maxBytes, flushIntervalMs: 100 },
  cloud: { enabled: true, url: m.url, reconnectMinMs: 50, reconnectMaxMs: 300 },
  // Once a year: every upload in these tests is started by volume (or the link coming back).
  schedule: { auditUpload: '0 0 1 1 *' },
});

t.test('online, a busy audit log is uploaded by volume: every record reaches the cloud, none is rotated away', async (t) => {
  const cloud = await startMosquitto();
  t.teardown(() => cloud.stop());
  const obs = await auditObserver(cloud);
  t.teardown(() => obs.end());
  const agent = await agentFor(t, { config: config(cloud, 1024 * 1024) });
  await agent.waitLog(/cloud link online/, 15_000);
  // 20 misbehaving clients, each within its 100 denial lines a second: ~1.5 MB of records in a few
  // seconds, a few rotations of a 512 KiB file, none of it folded.
  const clients = await Promise.all(Array.from({ length: 20 }, (_, i) => connect(agent.port, { clientId: `carl-${i}`, username: 'viewer-carl', password: 'carl-pass' })));
  t.teardown(() => endAll(...clients));
  const ROUNDS = 3;
  const PER_ROUND = 95;
  for (let round = 0; round < ROUNDS; round++) {
    const started = Date.now();
    await Promise.all(clients.map((c, i) => denials(c, PER_ROUND, `busy-${i}-${round}`)));
    await new Promise((r) => setTimeout(r, Math.max(0, 1100 - (Date.now() - started)))); // pacing the load: each client's next second
  }
  const N = clients.length * ROUNDS * PER_ROUND;
  // Every record is in the cloud or still in the local log (the newest, less than an upload's worth,
  // wait for the schedule); the cloud has all the older ones although the schedule is once a year.
  const dir = join(agent.stateDir, 'audit');
  let localSeqs: number[] = [];
  let maxSeq = 0;
  const covered = async () => {
    const local = await readAudit(dir);
    localSeqs = local.map((e) => e.seq!);
    const all = new Set([...localSeqs, ...obs.lines.map((l) => l.seq!)]);
    const denied = local.filter((e) => e.decision === 'deny').length + obs.lines.filter((l) => l.decision === 'deny').length;
    if (denied < N) return false;
    maxSeq = Math.max(...all);
    for (let s = 1; s <= maxSeq; s++) if (!all.has(s)) return false;
    return true;
  };
  let ok = false;
  for (let i = 0; i < 600 && !(ok = await covered()); i++) await new Promise((r) => setTimeout(r, 100));
  t.ok(ok, `every record (1..${maxSeq}) is in the cloud or in the local log`);
  const cloudSeqs = [...new Set(obs.lines.map((l) => l.seq!))].sort((a, b) => a - b);
  t.ok(localSeqs[0]! > 1, `the local log rotated (it keeps ${localSeqs[0]}..${localSeqs.at(-1)})`);
  t.equal(cloudSeqs[0], 1, 'the cloud has them from the first record');
  t.same(cloudSeqs, Array.from({ length: cloudSeqs.length }, (_, i) => i + 1), `no gap in the ${cloudSeqs.length} uploaded`);
  t.ok(cloudSeqs.length >= localSeqs[0]! - 1, 'including all those rotated away locally');
  t.same(obs.lines.filter((l) => l.decision === 'lost'), [], 'nothing was lost');
  t.notOk(agent.logs().some((l) => /rotated away/.test(l)), 'no loss logged');
});

t.test('one client flooding denials on ever new topics writes a bounded number of lines; every denial is counted', async (t) => {
  const agent = await agentFor(t, { config: { audit: { flushIntervalMs: 100 } } });
  const carl = await connect(agent.port, { clientId: 'carl', username: 'viewer-carl', password: 'carl-pass' });
  t.teardown(() => endAll(carl));
  const started = Date.now();
  const N = 5000;
  await denials(carl, N, 'flood');
  const seconds = Math.ceil((Date.now() - started) / 1000) + 1;
  const dir = join(agent.stateDir, 'audit');
  const mine = async () => (await readAudit(dir)).filter((e) => e.clientId === 'carl' && e.decision === 'deny');
  let lines = await mine();
  const total = () => lines.reduce((n, e) => n + (e.count ?? 1), 0);
  for (let i = 0; i < 100 && total() < N; i++) {
    await new Promise((r) => setTimeout(r, 100));
    lines = await mine();
  }
  t.equal(total(), N, `all ${N} denials are counted`);
  t.ok(lines.length <= seconds * 101 + 10, `in ${lines.length} lines (${seconds} s of flood, 100 lines a second at most)`);
  t.ok(lines.some((e) => e.topic === '*' && (e.count ?? 1) > 1 && e.reason === 'NOT_GRANTED'), 'the excess is one line with topic "*" and the count');
});

t.test('offline, a loss forced by the disk bound is counted, logged and recorded; the record reaches the cloud later', async (t) => {
  const cloud = await startMosquitto();
  t.teardown(() => cloud.stop());
  const agent = await agentFor(t, { config: config(cloud, 64 * 1024) });
  await agent.waitLog(/cloud link online/, 15_000);
  await cloud.stop();
  await agent.waitLog(/cloud link offline/, 15_000);
  const clients = await Promise.all(Array.from({ length: 20 }, (_, i) => connect(agent.port, { clientId: `carl-${i}`, username: 'viewer-carl', password: 'carl-pass' })));
  t.teardown(() => endAll(...clients));
  await Promise.all(clients.map((c, i) => denials(c, 95, `offline-${i}`)));
  const logged = await agent.waitLog(/rotated away before they were uploaded/, 30_000);
  const fields = JSON.parse(logged) as { lost: number; fromSeq: number; toSeq: number; from: string; to: string };
  t.ok(fields.lost > 0 && fields.toSeq - fields.fromSeq + 1 === fields.lost, `the log line says how many (${fields.lost}) and which seqs`);
  t.ok(Date.parse(fields.from) <= Date.parse(fields.to), `and when: ${fields.from} to ${fields.to}`);

  let lost: { count?: number }[] = [];
  for (let i = 0; i < 100 && lost.length === 0; i++) {
    lost = (await readAudit(join(agent.stateDir, 'audit'))).filter((e) => e.decision === 'lost');
    if (lost.length === 0) await new Promise((r) => setTimeout(r, 100));
  }
  t.ok(lost.length > 0, 'a "lost" line is in the audit log');
  const r = await controlRequest(agent.stateDir, { cmd: 'status' });
  if (!r.ok) throw new Error(r.message);
  const audit = (r.status as { audit: { lostBeforeUpload: number; lastLoss: { count: number } | null } }).audit;
  t.ok(audit.lostBeforeUpload >= fields.lost, `status counts ${audit.lostBeforeUpload} lost`);

  // The link comes back: the newest records and the "lost" lines go up.
  const obs = await auditObserverLater(cloud);
  t.teardown(() => obs.end());
  // The link coming back starts an upload (the schedule is once a year).
  t.ok(await until(() => obs.lines.some((l) => l.decision === 'lost'), 30_000), 'the cloud learns of the loss');
  const l = obs.lines.find((x) => x.decision === 'lost')!;
  t.ok(l.count! > 0 && l.toSeq! - l.fromSeq! + 1 === l.count, `the line names ${l.count} records, seq ${l.fromSeq}-${l.toSeq}`);
});

/** Starts the (stopped) cloud broker again and observes it. */
async function auditObserverLater(m: Mosquitto): Promise<{ lines: Line[]; end(): Promise<void> }> {
  await m.start();
  return auditObserver(m);
}
