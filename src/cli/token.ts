// `edgewarden token`: a new high-entropy token for a device, an API key or an application, and the
// sha256 hash of it for the policy. The token is printed this once; nothing keeps a copy.
import { generateToken } from '../policy/credentials.js';
import type { Io } from './output.js';

export function tokenCommand(opts: { json?: boolean }, io: Io, generate: () => { token: string; hash: string } = generateToken): number {
  const { token, hash } = generate();
  if (opts.json) {
    io.out(JSON.stringify({ token, hash }, null, 2));
    return 0;
  }
  io.out(`token  ${token}`);
  io.out('       to the device, API client or application: its MQTT password (shown only this once; nothing keeps a copy)');
  io.out(`hash   ${hash}`);
  io.out('       into the policy: things[].tokenHashes, users[].tokenHashes, apiKeys[].secretHash or applications[].secretHash');
  return 0;
}
