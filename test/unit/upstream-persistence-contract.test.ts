// src/broker/upstream/persistence-contract.ts: the persistence methods aedes calls are the ones listed
// there, our session store implements each (setup as an async function), and aedes 2.0.0-beta.1's
// PUBREL handler still leaves an incomingDelPacket rejection unhandled (else the store may reject).
import t from 'tap';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { SessionStore } from '../../src/broker/session-store.js';
import { PERSISTENCE_METHODS } from '../../src/broker/upstream/persistence-contract.js';
import { PipeClient, bareAedes, upstreamChanged } from '../helpers/bare-aedes.js';

const MODULE = 'persistence-contract.ts';
const AEDES = join(import.meta.dirname, '..', '..', 'node_modules', 'aedes');

function aedesSources(): string[] {
  const lib = (dir: string): string[] => readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? lib(join(dir, e.name)) : e.name.endsWith('.js') ? [join(dir, e.name)] : []));
  return [join(AEDES, 'aedes.js'), ...lib(join(AEDES, 'lib'))];
}

t.test("the methods aedes' code calls on its persistence are the listed ones", async (t) => {
  const called = new Set<string>();
  for (const f of aedesSources()) for (const m of readFileSync(f, 'utf8').matchAll(/persistence\.([A-Za-z]+)\(/g)) called.add(m[1]!);
  t.same([...called].sort(), [...PERSISTENCE_METHODS].sort(), upstreamChanged("aedes calls other persistence methods than src/broker/upstream/persistence-contract.ts lists (a new one our store lacks? cleanIncoming called at last?)", MODULE));
});

t.test('our session store implements each, setup as an async function', async (t) => {
  const proto = SessionStore.prototype as unknown as Record<string, unknown>;
  for (const name of PERSISTENCE_METHODS) t.type(proto[name], 'function', `SessionStore.${name}`);
  t.equal((proto['setup'] as { constructor: { name: string } }).constructor.name, 'AsyncFunction', 'aedes checks setup.constructor.name');
});

t.test('a session on a bare aedes touches no other method of our store', async (t) => {
  const touched = new Set<string>();
  const store = new SessionStore();
  const proxy = new Proxy(store, {
    get(target, name) {
      const v = Reflect.get(target, name) as unknown;
      if (typeof name !== 'string' || typeof v !== 'function') return v;
      touched.add(name);
      // Bound to the store itself: its own calls to its other methods are not aedes' (a bound async
      // function is still an AsyncFunction, which aedes checks setup for).
      return (v as (...args: unknown[]) => unknown).bind(target);
    },
  });
  const aedes = await bareAedes(t, { persistence: proxy });
  const sub = new PipeClient(aedes, 4);
  await sub.connect('sub', { clean: false });
  sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'a/#', qos: 2 }] });
  await sub.next((p) => p.cmd === 'suback');
  const pub = new PipeClient(aedes, 4);
  await pub.connect('pub', { will: { topic: 'a/will', payload: Buffer.from('w'), qos: 1, retain: false } });
  pub.send({ cmd: 'publish', topic: 'a/r', payload: Buffer.from('r'), qos: 1, messageId: 1, retain: true, dup: false });
  pub.send({ cmd: 'publish', topic: 'a/q2', payload: Buffer.from('2'), qos: 2, messageId: 2, retain: false, dup: false });
  await pub.next((p) => p.cmd === 'pubrec');
  pub.send({ cmd: 'pubrel', messageId: 2 });
  await pub.next((p) => p.cmd === 'pubcomp');
  const got = await sub.next((p) => p.cmd === 'publish' && p.topic === 'a/q2');
  sub.send({ cmd: 'pubrec', messageId: got!.messageId });
  await sub.next((p) => p.cmd === 'pubrel');
  sub.send({ cmd: 'pubcomp', messageId: got!.messageId });
  sub.send({ cmd: 'unsubscribe', messageId: 3, unsubscriptions: ['a/#'] });
  await sub.next((p) => p.cmd === 'unsuback');
  pub.end();
  sub.end();
  await Promise.all([pub.whenClosed, sub.whenClosed]);
  for (const name of ['setup', 'addSubscriptions', 'storeRetained', 'outgoingEnqueueCombi', 'incomingStorePacket', 'incomingDelPacket', 'putWill']) t.ok(touched.has(name), `aedes called ${name} (the session went through)`);
  const unlisted = [...touched].filter((n) => !(PERSISTENCE_METHODS as readonly string[]).includes(n));
  t.same(unlisted, [], upstreamChanged('aedes called unlisted methods of its persistence', MODULE));
});

t.test("aedes' PUBREL handler attaches no rejection handler to incomingDelPacket's promise", async (t) => {
  // A thenable standing for the promise: it records how aedes chains on it (and settles as fulfilled,
  // so that nothing is rejected for real), and so does whatever each call returns.
  const calls: string[] = [];
  const thenable = (depth: number): object => ({
    then(onFulfilled?: () => void, onRejected?: () => void) {
      calls.push(`${depth}:then${onRejected ? '+reject' : ''}`);
      if (onFulfilled) setImmediate(onFulfilled);
      return thenable(depth + 1);
    },
    catch() {
      calls.push(`${depth}:catch`);
      return thenable(depth + 1);
    },
    finally(onFinally?: () => void) {
      calls.push(`${depth}:finally`);
      if (onFinally) setImmediate(onFinally);
      return thenable(depth + 1);
    },
  });
  const store = new SessionStore();
  store.incomingDelPacket = () => thenable(0) as Promise<void>;
  const aedes = await bareAedes(t, { persistence: store });
  const c = new PipeClient(aedes, 4);
  await c.connect('pubrel');
  c.send({ cmd: 'publish', topic: 'a/b', payload: Buffer.from('x'), qos: 2, messageId: 7, retain: false, dup: false });
  await c.next((p) => p.cmd === 'pubrec');
  c.send({ cmd: 'pubrel', messageId: 7 });
  t.ok(await c.next((p) => p.cmd === 'pubcomp'), 'PUBCOMP');
  t.ok(calls.length > 0, 'aedes chained on the promise');
  t.notOk(calls.some((c) => c.endsWith('catch') || c.endsWith('+reject')), upstreamChanged(`aedes' PUBREL handler now handles a rejection of incomingDelPacket (${calls.join(', ')}): the store may reject again`, MODULE));
  c.end();
});
