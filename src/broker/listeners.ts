// The broker's listeners: plain MQTT over TCP and MQTT over TLS, as configured. A listener that
// cannot open is the start's error (EW_LISTEN, naming the listener, the address and the reason); a
// running one's errors are logged; past limits.maxConnections new connections are refused, and so are
// failed TLS handshakes (counted, logged and audited by the broker: ./connections.ts).
import { readFileSync } from 'node:fs';
import { createServer as createTcpServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import type { AgentConfig } from '../config/load.js';
import { EwError, listenError } from '../errors.js';
import { clientCertOptions } from './client-cert.js';
import type { Source } from './connections.js';

export interface ListenerHooks {
  readonly log: Logger;
  /** A connection refused before MQTT: past limits.maxConnections (CONNECTION_LIMIT), or its TLS handshake failed (TLS_HANDSHAKE_FAILED). */
  refused(source: Source, reason: string, fields?: Record<string, unknown>): void;
  /** Each server is added here as soon as it is made, so that close() closes it whatever happens next. */
  readonly servers: Server[];
}

/** Opens the configured listeners; resolves with their ports (0 in the configuration: the port given). */
export async function openListeners(c: AgentConfig, onSocket: (socket: Socket) => void, hooks: ListenerHooks): Promise<{ tcp: number | undefined; tls: number | undefined }> {
  let tcp: number | undefined;
  let tls: number | undefined;
  if (c.listeners.tcp.enabled) tcp = await bind(createTcpServer(onSocket), c.listeners.tcp.host, c.listeners.tcp.port, 'tcp', c, hooks);
  const t = c.listeners.tls;
  if (t.enabled) {
    // node:tls only when a TLS listener is configured (about 3 MB of resident memory, issue 13).
    const { createServer: createTlsServer } = await import('node:tls');
    const server = createTlsServer(
      {
        cert: readTlsFile(t.cert!, 'listeners.tls.cert'),
        key: readTlsFile(t.key!, 'listeners.tls.key'),
        ...clientCertOptions(t, t.ca === null ? null : readTlsFile(t.ca, 'listeners.tls.ca')),
        minVersion: 'TLSv1.2',
      },
      onSocket,
    );
    // A device with the wrong CA, certificate or protocol (plain MQTT on the TLS port): refused, said why.
    server.on('tlsClientError', (err, socket) =>
      hooks.refused({ remote: socket.remoteAddress ?? 'unknown', port: socket.remotePort, listener: 'tls' }, 'TLS_HANDSHAKE_FAILED', { err: tlsProblem(err) }),
    );
    tls = await bind(server, t.host, t.port, 'tls', c, hooks);
  }
  return { tcp, tls };
}

function bind(server: Server, host: string, port: number, name: string, c: AgentConfig, hooks: ListenerHooks): Promise<number> {
  server.maxConnections = c.limits.maxConnections;
  server.on('drop', (data) => {
    // Counted; logged and audited once per address and 10 s (./connections.ts).
    hooks.refused({ remote: data?.remoteAddress ?? 'unknown', port: data?.remotePort, listener: name as Source['listener'] }, 'CONNECTION_LIMIT', { limit: 'limits.maxConnections', max: server.maxConnections });
  });
  // After the listen: errors of the running server (a failed listen is the start's error).
  const running = (err: Error) => hooks.log.error({ err: err.message, listener: name }, 'listener error');
  server.once('listening', () => server.on('error', running));
  hooks.servers.push(server);
  return new Promise((resolve, reject) => {
    const failed = (err: Error) => reject(listenError(err, `listeners.${name}`, `${host.includes(':') ? `[${host}]` : host}:${port}`));
    server.once('error', failed);
    server.listen(port, host, () => {
      server.off('error', failed);
      const addr = server.address();
      resolve(typeof addr === 'object' && addr ? addr.port : port);
    });
  });
}

/** A TLS file of the configuration, or EW_KEY_READ naming the key and the file. */
function readTlsFile(path: string, key: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new EwError('EW_KEY_READ', `${key}: cannot read the file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { where: path, cause: err });
  }
}

/** What went wrong in a TLS handshake, short: OpenSSL's reason ("wrong version number", "certificate unknown", ...) or the message. */
function tlsProblem(err: Error & { reason?: string; code?: string }): string {
  return (err.reason ?? err.code ?? err.message).slice(0, 200);
}
