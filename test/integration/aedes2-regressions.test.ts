// What aedes 2.0.0-beta.1 (pinned, src/broker/aedes2.ts) got wrong, each checked against the real agent:
// without its workaround each of these either ends the agent process or loses a message. The agent
// must still serve a client after every one.
import t, { type Test } from 'tap';
import { agentFor, type AgentProcess } from '../helpers/agent.js';
import { RawMqtt } from '../helpers/raw-mqtt.js';

let agent: AgentProcess;
t.before(async () => {
  agent = await agentFor(t);
});

/** The agent still serves: a new client connects and gets CONNACK 0. */
async function stillServes(t: Test, what: string): Promise<void> {
  const c = await RawMqtt.open(agent.port, 5);
  const connack = await c.connect(`alive-${Math.random().toString(36).slice(2, 8)}`, 'tech-anna', 'anna-pass');
  t.equal(connack.reasonCode, 0, `after ${what}: the agent still serves (CONNACK 0)`);
  t.notOk(agent.logs().some((l) => /Uncaught|unhandled|TypeError/i.test(l)), `after ${what}: no uncaught error logged`);
  c.end();
}

t.test('a CONNECT of level 0, 1 or 2 (no client id parsed) is refused 0x01, the agent lives', async (t) => {
  const str = (s: string) => {
    const b = Buffer.from(s);
    return [b.length >> 8, b.length & 0xff, ...b];
  };
  for (const level of [0, 1, 2]) {
    const c = await RawMqtt.open(agent.port, 4);
    const body = [...str('MQTT'), level, 0xc2, 0, 30, ...str(`lvl-${level}`), ...str('tech-anna'), ...str('anna-pass')];
    c.socket.write(Buffer.from([0x10, body.length, ...body]));
    const connack = await c.next((p) => p.cmd === 'connack');
    t.equal((connack as { returnCode?: number } | undefined)?.returnCode, 1, `level ${level}: CONNACK 0x01`);
    await c.whenClosed;
  }
  await stillServes(t, 'levels 0-2');
});

t.test('client ids that are Object.prototype names (GHSA-52qw-whmv-87c5) connect, twice, and the agent lives', async (t) => {
  for (const id of ['constructor', 'toString', 'hasOwnProperty', '__proto__', 'valueOf']) {
    for (const version of [5, 4]) {
      const a = await RawMqtt.open(agent.port, version);
      t.equal((await a.connect(id, 'tech-anna', 'anna-pass'))[version === 5 ? 'reasonCode' : 'returnCode'], 0, `${id} (v${version}): CONNACK 0`);
      // A second connection with the same id takes the session over: the first is closed.
      const b = await RawMqtt.open(agent.port, version);
      t.equal((await b.connect(id, 'tech-anna', 'anna-pass'))[version === 5 ? 'reasonCode' : 'returnCode'], 0, `${id} (v${version}): the takeover gets CONNACK 0`);
      await a.whenClosed;
      // A filter named like a prototype member is an ordinary (refused or granted) filter.
      b.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: id, qos: 1 }, { topic: 'things/oven-1/telemetry/#', qos: 1 }] });
      const suback = (await b.next((p) => p.cmd === 'suback')) as { granted?: number[] } | undefined;
      t.equal(suback?.granted?.length, 2, `${id} (v${version}): SUBACK for both filters`);
      b.end();
    }
  }
  await stillServes(t, 'prototype-named client ids');
});

t.test('two PUBRELs for one QoS 2 message in one write: one PUBCOMP each, the agent lives', async (t) => {
  for (const version of [5, 4]) {
    const c = await RawMqtt.open(agent.port, version);
    await c.connect(`dup-pubrel-${version}`, 'mixer-1', 'mixer-1-token');
    c.send({ cmd: 'publish', topic: 'things/mixer-1/telemetry/t', payload: Buffer.from('1'), qos: 2, messageId: 7 });
    t.ok(await c.next((p) => p.cmd === 'pubrec' && p.messageId === 7), `v${version}: PUBREC`);
    const rel = c.bytes({ cmd: 'pubrel', messageId: 7 });
    c.socket.write(Buffer.concat([rel, rel]));
    t.ok(await c.next((p) => p.cmd === 'pubcomp' && p.messageId === 7), `v${version}: PUBCOMP`);
    c.end();
  }
  await stillServes(t, 'double PUBREL');
});

t.test('[MQTT-3.1.2-6] a QoS 2 packet id reused after a clean reconnect is delivered (the old session\'s state is gone)', async (t) => {
  for (const version of [4, 5]) {
    const oven = await RawMqtt.open(agent.port, version);
    await oven.connect('oven-1', 'oven-1', 'oven-1-token');
    oven.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'things/oven-1/commands/#', qos: 2 }] });
    await oven.next((p) => p.cmd === 'suback');
    const first = await RawMqtt.open(agent.port, version);
    await first.connect(`anna-residue-${version}`, 'tech-anna', 'anna-pass');
    first.send({ cmd: 'publish', topic: 'things/oven-1/commands/reboot', payload: Buffer.from('first'), qos: 2, messageId: 9 });
    t.ok(await first.next((p) => p.cmd === 'pubrec'), `v${version}: first PUBREC (its PUBREL never comes)`);
    first.end();
    await first.whenClosed;
    const again = await RawMqtt.open(agent.port, version);
    await again.connect(`anna-residue-${version}`, 'tech-anna', 'anna-pass');
    again.send({ cmd: 'publish', topic: 'things/oven-1/commands/reboot', payload: Buffer.from('second'), qos: 2, messageId: 9 });
    t.ok(await again.next((p) => p.cmd === 'pubrec'), `v${version}: second PUBREC`);
    again.send({ cmd: 'pubrel', messageId: 9 });
    t.ok(await again.next((p) => p.cmd === 'pubcomp'), `v${version}: PUBCOMP`);
    const got = (await oven.next((p) => p.cmd === 'publish' && String((p as { payload: Buffer }).payload) === 'second')) as { payload: Buffer } | undefined;
    t.equal(got?.payload.toString(), 'second', `v${version}: the second message reaches oven-1`);
    again.end();
    oven.end();
    await oven.whenClosed;
  }
});
