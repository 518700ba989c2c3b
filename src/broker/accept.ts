// A new TCP or TLS connection, before any MQTT: a TLS client without the certificate the listener
// requires is refused; the rest are handed to aedes, marked for the connection log (address and port
// are gone once the socket is), and their parser guarded: packet sizes bounded before mqtt-packet
// buffers them (./frame-guard.ts; an MQTT 5 client is told, DISCONNECT 0x95), topics checked as
// UTF-8 (./topic-utf8.ts), an unsupported protocol level answered with CONNACK 0x01 (./protocol-level.ts).
import type { Socket } from 'node:net';
import type { Aedes, Client } from 'aedes';
import { advertiseSharedSubscriptions, guardPrototypeFilters, hardenClient } from './aedes2.js';
import { guardSharedFilters } from './shared-subscriptions.js';
import type { Logger } from 'pino';
import type { AgentConfig } from '../config/load.js';
import { isTlsSocket, lacksRequiredCertificate } from './client-cert.js';
import type { ConnectionEvents } from './connections.js';
import type { BrokerCounters } from './context.js';
import type { Delivery } from './delivery.js';
import { DISCONNECT_PACKET_TOO_LARGE, DISCONNECT_PROTOCOL_ERROR, disconnectAndClose } from './flow-control.js';
import { FrameGuard, TOO_LARGE } from './frame-guard.js';
import { passUnsupportedLevel } from './protocol-level.js';
import { guardTopicUtf8, type ParserInternals } from './topic-utf8.js';
import { batchWrites } from './write-batching.js';

export interface AcceptDeps {
  readonly aedes: Aedes;
  readonly config: AgentConfig;
  readonly log: Logger;
  readonly events: ConnectionEvents;
  readonly delivery: Delivery;
  readonly counters: BrokerCounters;
  /** A protocol violation found here: logged and audited as aedes' client errors are (./client-errors.ts). */
  protocolError(client: Client, err: Error): void;
}

export function acceptConnection(d: AcceptDeps, socket: Socket): void {
  d.counters.connections++;
  if (isTlsSocket(socket) && lacksRequiredCertificate(d.config.listeners.tls, socket)) {
    d.events.refuseSocket({ remote: socket.remoteAddress ?? 'unknown', port: socket.remotePort, listener: 'tls' }, 'CERTIFICATE_REQUIRED');
    socket.destroy();
    return;
  }
  socket.setNoDelay(true);
  batchWrites(socket); // one writev per socket per event-loop turn (./write-batching.ts)
  socket.on('error', () => undefined); // reported through aedes' clientError
  const client = d.aedes.handle(socket) as Client & { _parser: ParserInternals & { parse(buf: Buffer): unknown } };
  hardenClient(client); // ./aedes2.ts
  // Read now: once the socket is destroyed (a refusal being logged), its address is gone.
  d.events.accepted(client, socket);
  d.delivery.wrap(client);
  const guard = new FrameGuard(d.config.limits.maxPacketBytes);
  const parser = client._parser;
  guardTopicUtf8(parser);
  passUnsupportedLevel(parser);
  guardPrototypeFilters(parser as unknown as Parameters<typeof guardPrototypeFilters>[0]);
  // $share/...: renamed for aedes, grouped by us; a malformed one closes the connection (./shared-subscriptions.ts).
  guardSharedFilters(parser as unknown as Parameters<typeof guardSharedFilters>[0], (err) => {
    d.protocolError(client, err);
    disconnectAndClose(client, DISCONNECT_PROTOCOL_ERROR, 'Protocol Error');
  });
  advertiseSharedSubscriptions(socket);
  const parse = parser.parse.bind(parser);
  let refusing = false;
  parser.parse = (buf: Buffer) => {
    if (refusing) return 0; // what comes after an oversized packet is read and discarded, never buffered
    const problem = guard.check(buf);
    if (problem !== null) {
      d.counters.oversizedPackets++;
      d.events.ending(client, 'limit', { limit: 'limits.maxPacketBytes' });
      d.log.warn({ clientId: client.id ?? null, remote: socket.remoteAddress, problem }, 'closing connection: packet limit');
      refusing = true;
      // An MQTT 5 client (after its CONNACK) is told: DISCONNECT 0x95 Packet too large [MQTT-3.2.2-15], then the close.
      if (problem.includes(TOO_LARGE)) disconnectAndClose(client, DISCONNECT_PACKET_TOO_LARGE, 'Packet too large');
      else socket.destroy();
      return 0;
    }
    return parse(buf);
  };
}
