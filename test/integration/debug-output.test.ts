// The bundled dependencies' `debug` output (src/bundle/debug-when-asked.cjs): off unless the agent
// starts with DEBUG set, and then the real thing, as a troubleshooter expects from DEBUG=mqtt-packet:*.
import t from 'tap';
import { startAgent } from '../helpers/agent.js';
import { RawMqtt } from '../helpers/raw-mqtt.js';

async function roundTrip(port: number): Promise<void> {
  const c = await RawMqtt.open(port, 4);
  const connack = await c.connect('debug-probe', 'tech-anna', 'anna-pass');
  if (connack.returnCode !== 0) throw new Error(`CONNACK ${connack.returnCode}`);
  c.send({ cmd: 'pingreq' });
  await c.next((p) => p.cmd === 'pingresp');
  c.end();
}

t.test('DEBUG=mqtt-packet:* at start: mqtt-packet says what it parses', async (t) => {
  const agent = await startAgent({ env: { DEBUG: 'mqtt-packet:*' } });
  t.teardown(() => agent.stop());
  await roundTrip(agent.port);
  const line = await agent.waitLog(/mqtt-packet:parser/, 20_000);
  t.match(line, /mqtt-packet:parser/, 'debug output on stderr');
});

t.test('without DEBUG: not a line of it', async (t) => {
  const agent = await startAgent({ env: { DEBUG: '' } });
  t.teardown(() => agent.stop());
  // The same exchange: had debug been on, its lines were written before PINGRESP left the agent.
  await roundTrip(agent.port);
  t.notOk(
    agent.logs().some((l) => /mqtt-packet:|mqttjs/.test(l)),
    'no debug output',
  );
});
