// Test certificates made with openssl per run: a CA, a server certificate for 127.0.0.1/localhost,
// client certificates, and a rogue CA whose certificates are never trusted.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export function openssl(cwd: string, ...args: string[]): void {
  execFileSync('openssl', args, { cwd, stdio: 'ignore' });
}

/** ca.pem, server.pem/key, oven-1.pem/key and `clients` (client certificates), rogue-ca.pem, rogue.pem/key in `dir`. */
export function makeCertificates(dir: string, clients: readonly string[] = []): void {
  openssl(dir, 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=edgewarden test CA');
  const leaf = (name: string, ext: string, ca = 'ca') => {
    openssl(dir, 'req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    writeFileSync(join(dir, `${name}.ext`), ext);
    openssl(dir, 'x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`);
  };
  leaf('server', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  leaf('oven-1', 'extendedKeyUsage=clientAuth\n');
  for (const name of clients) leaf(name, 'extendedKeyUsage=clientAuth\n');
  // a client certificate from another CA: never trusted
  openssl(dir, 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'rogue-ca.key', '-out', 'rogue-ca.pem', '-days', '2', '-subj', '/CN=rogue CA');
  leaf('rogue', 'extendedKeyUsage=clientAuth\n', 'rogue-ca');
}

/** `${name}.pem`/`.key` in `dir`: a self-signed client certificate (its own issuer; no CA knows it). */
export function makeSelfSignedClient(dir: string, name: string): void {
  openssl(dir, 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=${name}`, '-addext', 'extendedKeyUsage=clientAuth');
}
