// MQTT 5 Will Delay Interval (3.1.3.2.2). A will is authorized when it fires, by aedes' publishWill
// (aedes.js: `authorizePublish(client, will, ...)`), and our authorizePublish (../publish.ts) has to
// know that it is deciding a will — it decides it for its owner, audits it as one, and answers
// nobody. For an immediate will `client.will === packet` tells it. But aedes 2.0.0-beta.1 clears
// `client.will` when the connection ends (client.js close) and publishes a delayed will later
// (scheduleWill, then publishWill): a delayed will was decided and audited as an ordinary publish of
// a client that has gone (and, over MQTT 5, answered with an error nobody reads). No upstream issue
// found.
//
// The workaround marks every will aedes fires on its way into publishWill (WILL, a symbol aedes
// does not see); ../publish.ts reads the mark. It is still decided for its owner (the client's
// session) against the snapshot in force when it fires.
//
// Internals it touches: `aedes.publishWill(client, will)` (wrapped on the instance; aedes calls it
// through `this`/`that`, for an immediate will from client.js and for a delayed one from the
// scheduleWill timer). Shape test: test/unit/upstream-delayed-will-marker.test.ts (fails when
// publishWill is gone or no longer what fires a delayed will, and tells when `client.will` is still
// set for a delayed will: then this can go). Behaviour: test/integration/mqtt5-enforcement.test.ts
// "delayed will".
//
// The upstream fix (aedes): pass the will's nature to the hook — `authorizePublish(client, will, cb)`
// with `will.will = true` or a `{ will: true }` fourth argument — or keep `client.will` until the
// delayed will has been published.
import type { Aedes, Client } from 'aedes';

/** Marks a packet aedes publishes as a client's will (../publish.ts decides it for its owner, as a will). */
export const WILL = Symbol('edgewarden.will');

export function markWills(aedes: Aedes): void {
  const a = aedes as unknown as { publishWill(client: Client, will: object): void };
  const publishWill = a.publishWill;
  a.publishWill = function markedPublishWill(this: unknown, client: Client, will: object): void {
    (will as { [WILL]?: boolean })[WILL] = true;
    publishWill.call(this, client, will);
  };
}

/** Whether aedes is publishing `packet` as a will (marked above, or the client's own immediate will). */
export function isWill(client: Client, packet: object): boolean {
  return (packet as { [WILL]?: boolean })[WILL] === true || (client as { will?: unknown }).will === packet;
}
