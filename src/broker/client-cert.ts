// Client certificates on the TLS listener (listeners.tls). Two modes:
//
//   ca: <file>  a client certificate must chain to these CAs (verified in the TLS handshake, by Node);
//               one that does not is never used: with requireClientCert the handshake fails, without
//               it the client goes on as if it had shown none (a password, or anonymous).
//   ca: null    "fingerprint only": any client certificate passes the TLS layer — self-signed, any
//               issuer, any dates — and the snapshot decides: its SHA-256 fingerprint must be a
//               thing's `certFingerprints` (else CONNACK 0x04, UNKNOWN_CERTIFICATE). The handshake
//               still proves that the client holds the certificate's private key (CertificateVerify).
//               With requireClientCert, a client that shows no certificate is closed right after the
//               handshake (Node can only require a certificate it also verifies).
//
// Node verifies a client certificate against its default CAs when `ca` is not given, so before this
// mode existed every self-signed device certificate was refused with `ca: null`.
import type { TLSSocket } from 'node:tls';
import { certificateFingerprint } from '../policy/credentials.js';

export interface ClientCertConfig {
  readonly ca: string | null;
  readonly requestClientCert: boolean;
  readonly requireClientCert: boolean;
}

/** The TLS server options about client certificates (`ca` is the file's contents, or null). */
export function clientCertOptions(c: ClientCertConfig, ca: Buffer | null): { ca?: Buffer; requestCert: boolean; rejectUnauthorized: boolean } {
  const requestCert = c.requestClientCert || c.requireClientCert;
  if (ca === null) return { requestCert, rejectUnauthorized: false };
  return { ca, requestCert, rejectUnauthorized: c.requireClientCert };
}

/**
 * Whether a connection came in on the TLS listener. By TLSSocket's own mark (`encrypted`), not by
 * `instanceof`: node:tls is loaded only when a TLS listener is configured (about 3 MB, issue 13).
 */
export function isTlsSocket(socket: unknown): socket is TLSSocket {
  return (socket as { encrypted?: unknown } | null)?.encrypted === true;
}

/** Whether a TLS connection lacks the client certificate the listener requires (fingerprint-only mode; with a CA, the handshake already refused it). */
export function lacksRequiredCertificate(c: ClientCertConfig, socket: TLSSocket): boolean {
  return c.requireClientCert && c.ca === null && !socket.getPeerCertificate()?.raw;
}

/** The SHA-256 fingerprint (the snapshot's form) of the client certificate to authenticate with, if any. */
export function clientCertificateFingerprint(c: ClientCertConfig, conn: TLSSocket | undefined): string | undefined {
  if (!conn || typeof conn.getPeerCertificate !== 'function') return undefined; // not TLS
  if (c.ca !== null && !conn.authorized) return undefined; // not verified against the configured CAs: not used
  const cert = conn.getPeerCertificate();
  if (!cert || !cert.raw) return undefined;
  return certificateFingerprint(cert.raw);
}
