// Authentication of a CONNECT (aedes' authenticate hook): the client's credentials — password or
// token, client certificate, or none — against the snapshot in force, then the connection rules: the
// keepalive limit, the gateway's scope for devices, client ids that belong to another principal, the
// bound on persistent sessions. Every refusal is audited by the broker (`refused`) with its reason and
// answered with the CONNACK code MQTT 3.1.1 has for it.
import type { TLSSocket } from 'node:tls';
import type { AuthenticateError, AuthErrorCode, Client } from 'aedes';
import type { Logger } from 'pino';
import type { AgentConfig } from '../config/load.js';
import { PrincipalKind, principalByCertFingerprint } from '../decide/policy-index.js';
import type { PolicyView } from './broker.js';
import { clientCertificateFingerprint } from './client-cert.js';
import type { CredentialChecker } from './credentials.js';
import { imposeServerKeepAlive } from './upstream/server-keep-alive.js';
import type { SessionStore } from './session-store.js';
import { EMPTY_ID, KEEPALIVE, newSession, remoteOf, type ClientMarks, type Session } from './session.js';

export interface AuthDeps {
  readonly config: AgentConfig;
  policy(): PolicyView;
  credentials(): CredentialChecker;
  /** The topic rules let anonymous clients in (they change on a reload). */
  allowsAnonymous(): boolean;
  store(): SessionStore;
  /** The principal of the connected client with this client id (null: anonymous); undefined when none. */
  connectedPrincipal(clientId: string): string | null | undefined;
  /** Counts, audits and logs a refusal (coalesced per source and reason: ./connections.ts). */
  refused(client: Client, reason: string, principal: string | null, connack: number, fields?: Record<string, unknown>): void;
  readonly log: Logger;
}

export async function authenticate(d: AuthDeps, client: Client, username: string | undefined, password: Buffer | undefined): Promise<{ error: AuthenticateError } | { session: Session }> {
  const refuse = (returnCode: 2 | 3 | 4 | 5, reason: string, principal: string | null, fields?: Record<string, unknown>) => {
    d.refused(client, reason, principal, returnCode, fields);
    return { error: Object.assign(new Error(reason), { returnCode: returnCode as AuthErrorCode }) };
  };
  if ((client as ClientMarks)[EMPTY_ID] && !client.clean) return refuse(2, 'EMPTY_CLIENT_ID_WITH_PERSISTENT_SESSION', username ?? null);
  // limits.keepaliveLimitSeconds, before any credential is checked. MQTT 3.1.1 cannot tell a client
  // to use a shorter keepalive (MQTT 5's Server Keep Alive), and closing it after the shorter time
  // would drop a client that keeps to the keepalive it asked for: refused, CONNACK 0x03 (the
  // server's terms, not the client's identity or rights: 0x02, 0x04, 0x05 would point there).
  // A keepalive of 0 (none: the connection is never checked) is above any limit. An MQTT 5 client is
  // told the limit instead (Server Keep Alive in CONNACK, ./upstream/server-keep-alive.ts) and held to it.
  const limit = d.config.limits.keepaliveLimitSeconds;
  const keepalive = (client as ClientMarks)[KEEPALIVE] ?? 0;
  if (limit > 0 && (keepalive === 0 || keepalive > limit)) {
    if (!imposeServerKeepAlive(client, limit)) {
      d.refused(client, 'KEEPALIVE_LIMIT', username ?? null, 3, { limit: 'limits.keepaliveLimitSeconds', max: limit });
      return { error: Object.assign(new Error('KEEPALIVE_LIMIT'), { returnCode: 3 as AuthErrorCode }) };
    }
    (client as ClientMarks)[KEEPALIVE] = limit; // the one in force (connection log, explain --client-id)
  }
  const view = d.policy();
  let session: Session | undefined;
  const cert = clientCertificateFingerprint(d.config.listeners.tls, client.conn as TLSSocket | undefined);
  if (username || password) {
    if (!view.index) return refuse(3, 'NO_SNAPSHOT', username ?? null);
    if (!username) return refuse(4, 'BAD_CREDENTIALS', null);
    const r = await d.credentials().check(view.index, username, password, remoteOf(client));
    if (!r.ok) return refuse(r.returnCode, r.reason, username);
    session = newSession(r.principal.id, r.principal.kind, r.principal.role ?? null, r.credential);
  } else if (cert && view.index) {
    const p = principalByCertFingerprint(view.index, cert);
    if (!p) return refuse(4, 'UNKNOWN_CERTIFICATE', null);
    if (p.revoked) return refuse(5, 'REVOKED', p.id);
    session = newSession(p.id, p.kind, null, `cert:${cert}`);
  } else {
    if (!d.allowsAnonymous()) return refuse(5, 'ANONYMOUS_REFUSED', null);
    session = newSession(null, -1, null, 'anonymous');
  }
  // A standard gateway serves only the things of its resource groups: other devices cannot connect through it.
  if (session.kind === PrincipalKind.Device && view.index && view.index.thingServed[view.index.ids.get(session.principal!) ?? 0] !== 1) {
    return refuse(5, 'GATEWAY_SCOPE', session.principal);
  }
  // A client id cannot be taken over by another principal, connected or with a persistent session.
  const connected = d.connectedPrincipal(client.id);
  if (connected !== undefined && connected !== session.principal) return refuse(2, 'CLIENT_ID_TAKEN', session.principal);
  // Persistent sessions (CleanSession=0) belong to the principal that made them, also across restarts.
  const owner = d.store().ownerOf(client.id);
  if (owner !== undefined && owner !== session.principal) return refuse(2, 'CLIENT_ID_TAKEN', session.principal);
  if (!client.clean && owner === undefined && d.store().sessionCount >= d.config.sessions.maxPersistent) {
    // One warning line, the refusal's (./connections.ts), with the bound.
    return refuse(3, 'SESSION_LIMIT', session.principal, { limit: 'sessions.maxPersistent', max: d.config.sessions.maxPersistent });
  }
  if (!client.clean) {
    d.store().setOwner(client.id, session.principal);
    d.store().reconnected(client.id);
  }
  else if (owner !== undefined) d.store().discardSession(client.id);
  return { session };
}

