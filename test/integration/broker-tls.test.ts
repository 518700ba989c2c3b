// The TLS listener: server certificate, optional client certificates; a device authenticates by the
// fingerprint of its certificate from the snapshot. Certificates are made with openssl per run.
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { certificateFingerprint } from '../../src/policy/credentials.js';
import { makeCertificates } from '../helpers/certs.js';
import { cleanup, connect, connackCode, endAll, exampleSnapshot, mosquitto, sleep, startAgent, subscribe, until } from '../helpers/agent.js';

t.test('TLS listener with client-certificate authentication', async (t) => {
  const dir = t.testdir({});
  makeCertificates(dir);
  const fingerprint = certificateFingerprint(new X509Certificate(readFileSync(join(dir, 'oven-1.pem'))).raw);
  const rogueFingerprint = certificateFingerprint(new X509Certificate(readFileSync(join(dir, 'rogue.pem'))).raw);
  const snapshot = join(dir, 'snapshot.cose');
  // oven-1 is known by its certificate; the rogue certificate's fingerprint is listed too, to show
  // that an unverified certificate is never used even when its fingerprint is known.
  writeFileSync(
    snapshot,
    exampleSnapshot(5, (p) => {
      p.things!.find((x) => x.id === 'oven-1')!.certFingerprints = [fingerprint];
      p.things!.find((x) => x.id === 'mixer-1')!.certFingerprints = [rogueFingerprint];
    }),
  );
  const agent = await startAgent({
    bootstrap: snapshot,
    config: {
      listeners: {
        tcp: { enabled: true, host: '127.0.0.1', port: 0 },
        tls: { enabled: true, host: '127.0.0.1', port: 0, cert: join(dir, 'server.pem'), key: join(dir, 'server.key'), ca: join(dir, 'ca.pem'), requestClientCert: true, requireClientCert: false },
      },
    },
  });
  t.teardown(async () => {
    await agent.stop();
    cleanup(agent);
  });
  const ready = JSON.parse((await agent.waitLog(/"msg":"ready"/)) as string) as { tls: number };
  const tlsPort = ready.tls;
  t.ok(tlsPort > 0, `TLS listener on port ${tlsPort}`);
  const ca = readFileSync(join(dir, 'ca.pem'));

  const oven = await connect(tlsPort, { protocol: 'mqtts', ca, cert: readFileSync(join(dir, 'oven-1.pem')), key: readFileSync(join(dir, 'oven-1.key')), clientId: 'oven-1', rejectUnauthorized: true, servername: 'localhost' });
  t.equal(await subscribe(oven, 'things/oven-1/commands/#'), 1, 'the certificate authenticated the device as oven-1');
  t.equal(await subscribe(oven, 'things/mixer-1/commands/#'), 128, '... and only as oven-1');

  const anna = await connect(tlsPort, { protocol: 'mqtts', ca, clientId: 'anna', username: 'tech-anna', password: 'anna-pass', rejectUnauthorized: true, servername: 'localhost' });
  await anna.client.publishAsync('things/oven-1/commands/reboot', 'tls', { qos: 1 });
  t.ok(await until(() => oven.messages.length === 1), 'a password user over TLS commands the certificate device');

  t.equal(
    await connackCode(tlsPort, { protocol: 'mqtts', ca, cert: readFileSync(join(dir, 'rogue.pem')), key: readFileSync(join(dir, 'rogue.key')), clientId: 'mixer-1', rejectUnauthorized: true, servername: 'localhost' }),
    5,
    'a certificate from another CA is not used for authentication (anonymous: refused)',
  );
  t.equal(await connackCode(tlsPort, { protocol: 'mqtts', ca, clientId: 'nobody', rejectUnauthorized: true, servername: 'localhost' }), 5, 'no certificate, no credentials: refused');

  // the mosquitto clients over TLS
  const pub = mosquitto('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(tlsPort), '--cafile', join(dir, 'ca.pem'), '-u', 'tech-anna', '-P', 'anna-pass', '-t', 'things/oven-1/commands/tls2', '-m', 'via-mosquitto', '-q', '1']);
  t.equal(pub.code, 0, `mosquitto_pub over TLS: ${pub.stderr}`);
  t.ok(await until(() => oven.messages.length === 2), 'delivered');
  t.equal(oven.messages[1]?.payload, 'via-mosquitto');
  await sleep(100);
  await endAll(oven, anna);
});
