// Packets as aedes hands them to its persistence, and reading a session's queue back, for the
// session store's tests.
import type { SessionStore, StoredPacket } from '../../src/broker/session-store.js';

/** A QoS 1 PUBLISH of broker `brokerId` with its brokerCounter; `extra` overrides fields. */
export function queuedPacket(brokerId: string, counter: number, topic: string, extra: Partial<StoredPacket> = {}): StoredPacket {
  return { cmd: 'publish', brokerId, brokerCounter: counter, topic, payload: Buffer.from(`p${counter}`), qos: 1, retain: false, dup: false, ...extra };
}

/** The client's outgoing queue, in order, as aedes reads it when the session resumes. */
export async function drainQueue(store: SessionStore, clientId: string): Promise<StoredPacket[]> {
  const out: StoredPacket[] = [];
  for await (const p of store.outgoingStream({ id: clientId })) out.push(p as StoredPacket);
  return out;
}
