// One connected client as an operator sees it (`edgewarden explain --client-id`, through the control
// socket): who it authenticated as, from where, on which listener, and what it was granted.
import type { Client } from 'aedes';
import { PRINCIPAL_KIND_NAMES } from '../decide/policy-index.js';
import { KEEPALIVE, remoteOf, type ClientMarks, type Session } from './session.js';
import { isTlsSocket } from './client-cert.js';
import { displayFilter } from './shared-subscriptions.js';

export interface ClientInfo {
  readonly clientId: string;
  /** Principal id; null for an anonymous client. */
  readonly principal: string | null;
  /** user, apiKey, application, device, gateway, or anonymous. */
  readonly kind: string;
  /** The role topic rules see (a user's or application's; null for others and for a client certificate). */
  readonly role: string | null;
  /** How it authenticated: password (or token), certificate, anonymous. */
  readonly credential: 'password' | 'certificate' | 'anonymous';
  readonly remote: string;
  readonly listener: 'tcp' | 'tls';
  readonly cleanSession: boolean;
  /** The keepalive it asked for in its CONNECT, in seconds (0: none). */
  readonly keepaliveSeconds: number;
  /** The filters granted to it (refused ones are not held), with the QoS granted. */
  readonly subscriptions: readonly { readonly filter: string; readonly qos: number }[];
  /** When it authenticated (ISO 8601). */
  readonly connectedSince: string;
}

/** The client's description, or null when there is no such client or it has not authenticated. */
export function clientInfo(client: Client | undefined, session: Session | undefined): ClientInfo | null {
  if (!client || !session) return null;
  const kind = session.kind === -1 ? 'anonymous' : (PRINCIPAL_KIND_NAMES[session.kind] ?? 'unknown');
  const credential = session.credential === 'anonymous' ? 'anonymous' : session.credential.startsWith('cert:') ? 'certificate' : 'password';
  return {
    clientId: client.id,
    principal: session.principal,
    kind,
    role: session.role,
    credential,
    remote: remoteOf(client),
    listener: isTlsSocket(client.conn) ? 'tls' : 'tcp',
    cleanSession: client.clean,
    keepaliveSeconds: (client as ClientMarks)[KEEPALIVE] ?? 0,
    subscriptions: [...session.subscriptions].sort().map((filter) => ({ filter: displayFilter(filter), qos: session.grantedQos.get(filter) ?? 0 })),
    connectedSince: new Date(session.connectedAt).toISOString(),
  };
}
