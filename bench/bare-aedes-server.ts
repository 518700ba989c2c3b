// Bare aedes (bare-aedes.ts): aedes with its defaults on node:net, 127.0.0.1 and an ephemeral port.
// It loads nothing else, so its memory and its CPU time are aedes' and Node's. Prints
// {"msg":"ready","port":N} once listening; SIGTERM closes it (and lets `node --cpu-prof` write its
// profile).
//
// Each connection gets the socket options the agent's plain TCP listener gives it
// (src/broker/accept.ts `acceptConnection`), and nothing of the agent's own machinery:
//   - setNoDelay(true): without it Nagle holds back small writes. With a few connections and a closed
//     loop, bare aedes is then latency-bound on QoS 0 (0.3–0.6 of a core) and faster than the agent
//     on QoS 1 (Nagle coalesces its small writes): the throughput comparison would measure Nagle
//     (docs/notes/broker-speed.md, section 1);
//   - an 'error' listener on the socket (aedes reports the error through its client; the listener
//     only keeps an unhandled 'error' from being thrown).
// The agent sets no TCP keepalive and no buffer sizes; its `server.maxConnections` (a count at
// accept) is left out (the bench connects far fewer).
import { createServer } from 'node:net';
import { Aedes } from 'aedes';

const broker = await Aedes.createBroker();
const server = createServer((socket) => {
  socket.setNoDelay(true);
  socket.on('error', () => undefined);
  broker.handle(socket);
});
server.listen(0, '127.0.0.1', () => {
  const addr = server.address();
  process.stdout.write(`${JSON.stringify({ msg: 'ready', port: typeof addr === 'object' && addr ? addr.port : 0 })}\n`);
});
process.once('SIGTERM', () => {
  server.close();
  broker.close(() => process.exit(0));
});
