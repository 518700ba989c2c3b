// Bare aedes (bare-aedes.ts): aedes with its defaults on node:net, 127.0.0.1 and an ephemeral port.
// It loads nothing else, so its memory is aedes' and Node's. Prints {"msg":"ready","port":N} once
// listening; SIGTERM closes it.
import { createServer } from 'node:net';
import { Aedes } from 'aedes';

const broker = await Aedes.createBroker();
const server = createServer(broker.handle);
server.listen(0, '127.0.0.1', () => {
  const addr = server.address();
  process.stdout.write(`${JSON.stringify({ msg: 'ready', port: typeof addr === 'object' && addr ? addr.port : 0 })}\n`);
});
process.once('SIGTERM', () => server.close(() => broker.close(() => process.exit(0))));
