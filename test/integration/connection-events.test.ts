// Connection events, as an operator reads them: one info line per connect and disconnect (with why),
// one warning line per refusal naming its reason code and the address, every refusal counted by
// reason in `status` and the metrics, and a client reconnecting in a loop coalesced into a bounded
// number of lines.
import t from 'tap';
import { createConnection, type Socket } from 'node:net';
import { agentFor, connect, connackCode, connectBytes, endAll, until, type AgentProcess } from '../helpers/agent.js';
import { cli } from '../helpers/cli.js';

type Line = Record<string, unknown> & { msg?: string; level?: number | string };

const parsed = (a: AgentProcess): Line[] =>
  a
    .logs()
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Line);
const withMsg = (a: AgentProcess, msg: string | RegExp) => parsed(a).filter((l) => (typeof msg === 'string' ? l.msg === msg : typeof l.msg === 'string' && msg.test(l.msg)));
const isWarning = (l: Line) => l.level === 40 || l.level === 'warn';
const isInfo = (l: Line) => l.level === 30 || l.level === 'info';

function status(a: AgentProcess): { refused: Record<string, number>; broker: Record<string, number> } {
  const r = cli(['status', '--json', '--state-dir', a.stateDir]);
  if (r.code !== 0) throw new Error(`status failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as { refused: Record<string, number>; broker: Record<string, number> };
}

async function scrape(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  return res.text();
}

/** A socket that writes `bytes` (or nothing) and resolves when the agent closes it. */
function rawAttempt(port: number, bytes: Buffer | null): Promise<void> {
  return new Promise((resolve) => {
    const socket: Socket = createConnection(port, '127.0.0.1');
    socket.on('error', () => undefined);
    socket.on('close', () => resolve());
    socket.on('data', () => undefined);
    if (bytes) socket.once('connect', () => socket.write(bytes));
  });
}

const WRONG_TOKEN = 'not-the-oven-token-s3cr3t';

t.test('each refusal kind: exactly one warning line with its reason, address and port, counted by reason', async (t) => {
  // listeners.mqtt5 off: an MQTT 5 client is refused as by an MQTT 3.1.1 broker (UNSUPPORTED_PROTOCOL_LEVEL).
  const agent = await agentFor(t, { config: { listeners: { tcp: { enabled: true, host: '127.0.0.1', port: 0 }, mqtt5: false }, limits: { connectTimeoutMs: 1500 }, metrics: { enabled: true, host: '127.0.0.1', port: 0 } } });
  const metricsPort = (JSON.parse(await agent.waitLog(/metrics endpoint listening/)) as { port: number }).port;
  const holder = await connect(agent.port, { clientId: 'oven-1-held', username: 'oven-1', password: 'oven-1-token' });
  t.teardown(() => endAll(holder));

  const attempts: [string, () => Promise<unknown>][] = [
    ['BAD_CREDENTIALS', () => connackCode(agent.port, { clientId: 'oven-1-wrong', username: 'oven-1', password: WRONG_TOKEN })],
    ['ANONYMOUS_REFUSED', () => connackCode(agent.port, { clientId: 'nobody-anon' })],
    ['CLIENT_ID_TAKEN', () => connackCode(agent.port, { clientId: 'oven-1-held', username: 'mixer-1', password: 'mixer-1-token' })],
    ['GATEWAY_SCOPE', () => connackCode(agent.port, { clientId: 'oven-2', username: 'oven-2', password: 'oven-2-token' })],
    ['UNSUPPORTED_PROTOCOL_LEVEL', () => connackCode(agent.port, { clientId: 'mqtt5-client', protocolVersion: 5, username: 'oven-1', password: 'oven-1-token' })],
    ['EMPTY_CLIENT_ID_WITH_PERSISTENT_SESSION', () => rawAttempt(agent.port, connectBytes({ clientId: '', clean: false, username: 'oven-1', password: 'oven-1-token' }))],
    ['PROTOCOL_ERROR', () => rawAttempt(agent.port, Buffer.from('GET / HTTP/1.1\r\nHost: gw\r\n\r\n'))],
    ['CONNECT_TIMEOUT', () => rawAttempt(agent.port, null)],
  ];
  for (const [reason, attempt] of attempts) {
    await attempt();
    const msg = `connection refused: ${reason}`;
    t.ok(await until(() => withMsg(agent, msg).length > 0, 15_000), `${reason}: logged`);
    const lines = withMsg(agent, msg);
    t.equal(lines.length, 1, `${reason}: exactly one line`);
    const line = lines[0]!;
    t.ok(isWarning(line), `${reason}: at warning level`);
    t.match(line, { reason, remote: '127.0.0.1', listener: 'tcp' }, `${reason}: names the reason and the address`);
    t.type(line.port, 'number', `${reason}: and the port`);
    t.equal(status(agent).refused[reason], 1, `${reason}: counted in status`);
  }
  const s = status(agent);
  t.equal(s.broker.refusedConnections, attempts.length, 'the total counts every refusal');
  const text = cli(['status', '--state-dir', agent.stateDir]).stdout;
  t.match(text, /refused\s+.*BAD_CREDENTIALS 1/, 'status names the reasons');
  const metrics = await scrape(metricsPort);
  for (const [reason] of attempts) t.match(metrics, new RegExp(`edgewarden_connections_refused_total\\{reason="${reason}"\\} 1\\b`), `${reason}: in the metrics`);
  t.notOk(agent.logs().some((l) => l.includes(WRONG_TOKEN)), 'the password sent is never logged');
  const bad = withMsg(agent, 'connection refused: BAD_CREDENTIALS')[0]!;
  t.match(bad, { username: 'oven-1', clientId: 'oven-1-wrong', connack: '0x04' }, 'username, client id and CONNACK code are in the line');
  t.match(withMsg(agent, 'connection refused: UNSUPPORTED_PROTOCOL_LEVEL')[0], { clientId: 'mqtt5-client', username: 'oven-1', protocolLevel: 5, connack: '0x01' }, 'an MQTT 5 client: its client id, username and level');
});

t.test('connects and disconnects: one info line each, with who, where and why', async (t) => {
  const agent = await agentFor(t);
  const c = await connect(agent.port, { clientId: 'oven-1-events', username: 'oven-1', password: 'oven-1-token', keepalive: 45 });
  const localPort = (c.client.stream as Socket).localPort;
  await agent.waitLog(/client connected: oven-1-events/);
  const [connected] = withMsg(agent, 'client connected: oven-1-events');
  t.ok(isInfo(connected!), 'at info level');
  t.match(connected, { clientId: 'oven-1-events', principal: 'oven-1', kind: 'device', remote: '127.0.0.1', port: localPort, listener: 'tcp', protocolLevel: 4, clean: true, keepalive: 45 });
  await c.client.endAsync();
  await agent.waitLog(/client disconnected: oven-1-events \(client\)/);
  t.match(withMsg(agent, 'client disconnected: oven-1-events (client)')[0], { principal: 'oven-1', remote: '127.0.0.1', port: localPort, why: 'client' });

  // The same client id again: the first connection is taken over.
  const first = await connect(agent.port, { clientId: 'mixer-1-twin', username: 'mixer-1', password: 'mixer-1-token' });
  first.client.on('error', () => undefined);
  first.client.options.reconnectPeriod = 0;
  const second = await connect(agent.port, { clientId: 'mixer-1-twin', username: 'mixer-1', password: 'mixer-1-token' });
  t.teardown(() => endAll(first, second));
  await agent.waitLog(/client disconnected: mixer-1-twin \(takeover\)/);

  // The socket closed without DISCONNECT.
  const lost = await connect(agent.port, { clientId: 'chiller-1-lost', username: 'chiller-1', password: 'chiller-1-token' });
  (lost.client.stream as Socket).destroy();
  await agent.waitLog(/client disconnected: chiller-1-lost \(connection lost\)/);
  lost.client.end(true);
  t.pass('takeover and connection lost are told apart');
});

t.test('a reconnect storm: 1,000 refusals of one device give a bounded number of lines, and all are counted', async (t) => {
  const agent = await agentFor(t);
  const N = 1000;
  const CONCURRENT = 25;
  let next = 0;
  const worker = async () => {
    while (next < N) {
      next++;
      await rawAttempt(agent.port, connectBytes({ clientId: 'pump-7', clean: true }));
    }
  };
  await Promise.all(Array.from({ length: CONCURRENT }, worker));
  t.ok(await until(() => status(agent).refused.ANONYMOUS_REFUSED === N, 30_000), `status counts all ${N}`);
  // Each line stands for itself or for `count` refusals; the interval's line comes within 10 s.
  const accounted = () =>
    withMsg(agent, /^connection refused: ANONYMOUS_REFUSED/).reduce((n, l) => n + (typeof l.count === 'number' ? l.count : 1), 0);
  t.ok(await until(() => accounted() === N, 30_000), 'the lines account for every refusal (first, then the count per interval)');
  const lines = withMsg(agent, /^connection refused/);
  t.ok(lines.length <= 8, `${lines.length} lines for ${N} refusals`);
  t.ok(lines.every(isWarning), 'all at warning level');

  // A client that connects and leaves in a loop: a few lines, then a count.
  for (let i = 0; i < 20; i++) {
    const c = await connect(agent.port, { clientId: 'oven-1-loop', username: 'oven-1', password: 'oven-1-token' });
    await c.client.endAsync();
  }
  const connects = () => withMsg(agent, 'client connected: oven-1-loop').length;
  const summarized = () => withMsg(agent, /^client oven-1-loop connected \d+ more time/).reduce((n, l) => n + (l.count as number), 0);
  t.ok(await until(() => connects() + summarized() === 20, 30_000), 'the loop is summarized: lines and counts add up to the 20 connects');
  t.ok(connects() <= 6, `${connects()} connect lines for 20 connects`);
  t.ok(withMsg(agent, /^client disconnected: oven-1-loop/).length <= connects(), 'a disconnect line only for a logged connect');
});
