// The aedes workarounds (src/broker/aedes2.ts) are written against one exact version: package.json
// must pin it, and it must be the one installed. Moving the pin means re-checking each workaround.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { AEDES_PINNED } from '../../src/broker/aedes2.js';

const ROOT = join(import.meta.dirname, '..', '..');

t.test('package.json pins aedes exactly to the version the workarounds are for', async (t) => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
  t.equal(pkg.dependencies['aedes'], AEDES_PINNED, 'an exact version, no range');
});

t.test('the packages whose internals the broker reaches are pinned exactly, and installed at that version', async (t) => {
  // mqemitter (src/broker/mq.ts), mqtt-packet (src/broker/topic-utf8.ts, protocol-level.ts, aedes2.ts):
  // a caret range would let an install move them under the workarounds.
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; overrides: Record<string, string> };
  for (const name of ['mqemitter', 'mqtt-packet']) {
    const pinned = pkg.dependencies[name]!;
    t.match(pinned, /^\d+\.\d+\.\d+$/, `${name}: an exact version (${pinned})`);
    const installed = JSON.parse(readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string };
    t.equal(installed.version, pinned, `${name}: installed ${installed.version}`);
  }
  t.equal(pkg.overrides['aedes-persistence'], '11.0.0', 'aedes-persistence overridden to an exact version');
});

t.test('the installed aedes is that version', async (t) => {
  const require = createRequire(join(ROOT, 'package.json'));
  const installed = JSON.parse(readFileSync(join(ROOT, 'node_modules', 'aedes', 'package.json'), 'utf8')) as { version: string };
  t.equal(installed.version, AEDES_PINNED);
  // aedes 2.0.0-beta.1 asks for aedes-persistence ^10.3.1; before 11.0.0 it has a known advisory (its
  // QoS 2 dedup table outlives a clean session). package.json overrides it to 11.0.0. The agent uses
  // its own store (src/broker/session-store.ts), but a vulnerable version is not shipped either.
  const persistence = JSON.parse(readFileSync(require.resolve('aedes-persistence/package.json'), 'utf8')) as { version: string };
  t.ok(Number(persistence.version.split('.')[0]) >= 11, `aedes-persistence ${persistence.version} is 11 or later`);
});

t.test('CONNACK: the beta says sharedSubscriptionAvailable false; a connection given to advertiseSharedSubscriptions gets none (available)', async (t) => {
  // A bare aedes: one connection through the hook, one not. Fails when aedes writes its CONNACK
  // another way (the hook no longer reaches it) or stops saying false (the hook can go).
  const { Aedes } = await import('aedes');
  const { createServer } = await import('node:net');
  const { advertiseSharedSubscriptions } = await import('../../src/broker/aedes2.js');
  const { RawMqtt } = await import('../helpers/raw-mqtt.js');
  const aedes = await Aedes.createBroker();
  let hooked = true;
  const server = createServer((socket) => {
    if (hooked) advertiseSharedSubscriptions(socket);
    aedes.handle(socket);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    server.close();
    aedes.close();
  });
  const port = (server.address() as { port: number }).port;
  const props = async (id: string) => {
    const c = await RawMqtt.open(port, 5);
    const connack = (await c.connect(id)) as { reasonCode?: number; properties?: Record<string, unknown> };
    c.end();
    t.equal(connack.reasonCode, 0);
    return connack.properties ?? {};
  };
  const mine = await props('hooked');
  t.notOk('sharedSubscriptionAvailable' in mine, 'through the hook: absent (available)');
  hooked = false;
  const plain = await props('plain');
  t.equal(plain['sharedSubscriptionAvailable'], false, 'aedes itself still says false (else drop the hook)');
  hooked = true;
  t.equal((await props('hooked-again'))['sharedSubscriptionAvailable'], undefined, 'the wrap is installed once, and keeps working');
});
