// limits.keepaliveLimitSeconds, and MQTT 5 Server Keep Alive (3.2.2.3.14).
//
// What aedes 2.0.0-beta.1 does wrong: its `keepaliveLimit` option (moscajs/aedes#930) refuses a
// 3.1.1 CONNECT whose keepalive is above the limit (or 0) with CONNACK return code 6 (connect.js
// init; "Index 6 (keep alive limit exceeded) is aedes-specific"), a code MQTT 3.1.1 does not have
// (3.2.2.3: 0 to 5; 6-255 reserved). And only that option sets an MQTT 5 client's Server Keep Alive
// (`client._serverKeepAlive`), so there is no way to get the MQTT 5 behaviour without the invalid
// 3.1.1 one. No upstream issue found for the return code.
//
// The workaround: aedes gets `keepaliveLimit: 0` (KEEPALIVE_LIMIT_OFF, ../broker.ts); our authenticate
// (../authenticate.ts) refuses a 3.1.1 client over the limit with CONNACK 0x03 (audited
// KEEPALIVE_LIMIT), and for an MQTT 5 client sets `_serverKeepAlive` itself, which aedes then writes
// into the CONNACK and arms the keepalive timer with: authenticate runs before setKeepAlive and
// doConnack (connect.js connectActions), both reading it.
//
// Internals it touches: `client._serverKeepAlive`. Shape test: test/unit/upstream-server-keep-alive.test.ts
// (fails when aedes stops reading `_serverKeepAlive` set during authenticate, and tells when
// keepaliveLimit stops answering a 3.1.1 client with 6: then aedes' option can be used).
//
// The upstream fix (aedes connect.js init), one line: a 3.1.1 return code for the keepalive refusal,
//   returnCode = 3   // Server unavailable: the server's terms (mosquitto answers 2, identifier rejected)
// instead of 6 (only 3.1/3.1.1 CONNECTs are refused there).
import type { Client } from 'aedes';
import { versionOf } from './client-fields.js';

/** aedes' `keepaliveLimit`: off (the limit is ours, see above). */
export const KEEPALIVE_LIMIT_OFF = 0;

/**
 * MQTT 5 Server Keep Alive: for a v5 client asking for a keepalive above `limit` (or none), the
 * limit is imposed instead of the CONNECT refused (a 3.1.1 client is refused: it cannot be told).
 * Call from authenticate. Returns false when the client is not v5 (the caller refuses it).
 */
export function imposeServerKeepAlive(client: Client, limit: number): boolean {
  if (versionOf(client) !== 5) return false;
  (client as { _serverKeepAlive?: number })._serverKeepAlive = limit;
  return true;
}
