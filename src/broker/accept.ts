// A new TCP or TLS connection, before any MQTT: a TLS client without the certificate the listener
// requires is refused; the rest are handed to aedes, marked for the connection log (address and port
// are gone once the socket is), and their parser guarded (the workarounds of ./upstream/): packet
// sizes bounded before mqtt-packet buffers them (frame-size-guard.ts; an MQTT 5 client is told,
// DISCONNECT 0x95), topics and MQTT 5 properties checked (utf8-topic-validation.ts,
// mqtt5-property-validation.ts), an unsupported protocol level answered with CONNACK 0x01
// (protocol-level-connack.ts), prototype-named and shared filters renamed before aedes sees them
// (prototype-safe-maps.ts, shared-subscription-rename.ts).
import type { Socket } from 'node:net';
import type { Aedes, Client } from 'aedes';
import { guardPrototypeFilters, hardenClient } from './upstream/prototype-safe-maps.js';
import { advertiseSharedSubscriptions } from './upstream/connack-shared-subscriptions.js';
import { guardSharedFilters } from './upstream/shared-subscription-rename.js';
import type { Logger } from 'pino';
import type { AgentConfig } from '../config/load.js';
import { isTlsSocket, lacksRequiredCertificate } from './client-cert.js';
import type { ConnectionEvents } from './connections.js';
import type { BrokerCounters } from './context.js';
import type { Delivery } from './delivery.js';
import { DISCONNECT_PACKET_TOO_LARGE, DISCONNECT_PROTOCOL_ERROR, disconnectAndClose } from './flow-control.js';
import { TOO_LARGE, guardFrameSize } from './upstream/frame-size-guard.js';
import { passUnsupportedLevel } from './upstream/protocol-level-connack.js';
import { guardTopicUtf8 } from './upstream/utf8-topic-validation.js';
import { guardPropertyValues } from './upstream/mqtt5-property-validation.js';
import { parserOf } from './upstream/client-parser.js';
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
  const client = d.aedes.handle(socket);
  hardenClient(client); // GHSA-52qw-whmv-87c5
  // Read now: once the socket is destroyed (a refusal being logged), its address is gone.
  d.events.accepted(client, socket);
  d.delivery.wrap(client);
  const parser = parserOf(client);
  guardTopicUtf8(parser);
  guardPropertyValues(parser);
  passUnsupportedLevel(parser);
  guardPrototypeFilters(parser);
  // $share/...: renamed for aedes, grouped by us; a malformed one closes the connection (./shared-subscriptions.ts).
  guardSharedFilters(parser, (err) => {
    d.protocolError(client, err);
    disconnectAndClose(client, DISCONNECT_PROTOCOL_ERROR, 'Protocol Error');
  });
  advertiseSharedSubscriptions(socket);
  // What comes after an oversized packet is read and discarded, never buffered.
  guardFrameSize(parser, d.config.limits.maxPacketBytes, (problem) => {
    d.counters.oversizedPackets++;
    d.events.ending(client, 'limit', { limit: 'limits.maxPacketBytes' });
    d.log.warn({ clientId: client.id ?? null, remote: socket.remoteAddress, problem }, 'closing connection: packet limit');
    // An MQTT 5 client (after its CONNACK) is told: DISCONNECT 0x95 Packet too large [MQTT-3.2.2-15], then the close.
    if (problem.includes(TOO_LARGE)) disconnectAndClose(client, DISCONNECT_PACKET_TOO_LARGE, 'Packet too large');
    else socket.destroy();
  });
}
