// The TLS listener: server certificate, optional client certificates; a device authenticates by the
// fingerprint of its certificate from the snapshot. Certificates are made with openssl per run.
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { certificateFingerprint } from '../../src/policy/credentials.js';
import { connect as tlsConnect } from 'node:tls';
import { createConnection } from 'node:net';
import mqttPacket from 'mqtt-packet';
import { readAudit } from '../../src/audit/audit-log.js';
import { makeCertificates, makeSelfSignedClient } from '../helpers/certs.js';
import { agentFor, cleanup, connect, connackCode, connectBytes, endAll, exampleSnapshot, mosquitto, sleep, startAgent, subscribe, until } from '../helpers/agent.js';

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
  const connected = JSON.parse(await agent.waitLog(/"msg":"client connected: oven-1"/)) as Record<string, unknown>;
  t.match(connected, { principal: 'oven-1', kind: 'device', listener: 'tls', certFingerprint: fingerprint }, 'the connect line names the TLS listener and the certificate');

  // Plain MQTT sent to the TLS port: the handshake fails, and the warning says so.
  const plain = createConnection(tlsPort, '127.0.0.1');
  plain.on('error', () => undefined);
  plain.on('connect', () => plain.write(connectBytes({ clientId: 'plain-on-tls', clean: true })));
  const handshake = JSON.parse(await agent.waitLog(/"msg":"connection refused: TLS_HANDSHAKE_FAILED"/)) as Record<string, unknown>;
  t.match(handshake, { reason: 'TLS_HANDSHAKE_FAILED', remote: '127.0.0.1', listener: 'tls' }, 'a failed TLS handshake is a refusal with its address');
  t.type(handshake.err, 'string', `with OpenSSL's reason (${String(handshake.err)})`);
  plain.destroy();

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

  // MQTT 5 on the same TLS listener: a certificate device and a password user; a denied command gets
  // PUBACK 0x87, an allowed one arrives.
  const oven5 = await connect(tlsPort, { protocol: 'mqtts', protocolVersion: 5, ca, cert: readFileSync(join(dir, 'oven-1.pem')), key: readFileSync(join(dir, 'oven-1.key')), clientId: 'oven-1-v5', rejectUnauthorized: true, servername: 'localhost' });
  t.equal(await subscribe(oven5, 'things/oven-1/commands/#'), 1, 'MQTT 5 over TLS: the certificate authenticates oven-1');
  t.equal(await subscribe(oven5, 'things/mixer-1/commands/#'), 0x87, 'MQTT 5 over TLS: ... and only as oven-1 (SUBACK 0x87)');
  const carl5 = await connect(tlsPort, { protocol: 'mqtts', protocolVersion: 5, ca, clientId: 'carl-v5', username: 'viewer-carl', password: 'carl-pass', rejectUnauthorized: true, servername: 'localhost' });
  const denied = await carl5.client.publishAsync('things/oven-1/commands/reboot', 'carl', { qos: 1 }).then(() => 0, (err: { code?: number }) => err.code);
  t.equal(denied, 0x87, 'MQTT 5 over TLS: a denied command gets PUBACK 0x87');
  const pub5 = mosquitto('mosquitto_pub', ['-V', 'mqttv5', '-h', '127.0.0.1', '-p', String(tlsPort), '--cafile', join(dir, 'ca.pem'), '-u', 'tech-anna', '-P', 'anna-pass', '-t', 'things/oven-1/commands/tls5', '-m', 'via-mosquitto-v5', '-q', '1']);
  t.equal(pub5.code, 0, `mosquitto_pub -V mqttv5 over TLS: ${pub5.stderr}`);
  t.ok(await until(() => oven5.messages.some((m) => m.payload === 'via-mosquitto-v5')), 'delivered to the MQTT 5 device');
  t.notOk(oven5.messages.some((m) => m.payload === 'carl'), 'carl\'s never');
  await sleep(100);
  await endAll(oven, anna, oven5, carl5);
});

/** CONNACK return code of a CONNECT over TLS (raw bytes), or -1 when the connection closes without one. */
function tlsConnack(port: number, opts: { ca: Buffer; cert?: Buffer; key?: Buffer }, connect: Buffer): Promise<number> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', ca: opts.ca, ...(opts.cert ? { cert: opts.cert, key: opts.key } : {}) });
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    parser.on('packet', (p: { cmd: string; returnCode?: number }) => {
      if (p.cmd === 'connack') {
        socket.destroy();
        resolve(p.returnCode ?? -1);
      }
    });
    socket.on('data', (d) => parser.parse(d));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(-1));
    socket.on('secureConnect', () => socket.write(connect));
  });
}

t.test('fingerprint-only mode (listeners.tls.ca: null): any client certificate passes TLS; the snapshot\'s fingerprints decide', async (t) => {
  const dir = t.testdir({});
  makeCertificates(dir);
  makeSelfSignedClient(dir, 'self-oven');
  makeSelfSignedClient(dir, 'self-stranger');
  const file = (name: string) => readFileSync(join(dir, name));
  const fp = (name: string) => certificateFingerprint(new X509Certificate(file(`${name}.pem`)).raw);
  const snapshot = join(dir, 'snapshot.cose');
  // oven-1 by a self-signed certificate; mixer-1 by one of the test CA, which this listener does not know either.
  writeFileSync(
    snapshot,
    exampleSnapshot(5, (p) => {
      p.things!.find((x) => x.id === 'oven-1')!.certFingerprints = [fp('self-oven')];
      p.things!.find((x) => x.id === 'mixer-1')!.certFingerprints = [fp('oven-1')];
    }),
  );
  const tlsListener = (require: boolean) => ({ enabled: true, host: '127.0.0.1', port: 0, cert: join(dir, 'server.pem'), key: join(dir, 'server.key'), ca: null, requestClientCert: true, requireClientCert: require });
  const strict = await agentFor(t, { bootstrap: snapshot, config: { listeners: { tcp: { enabled: true, host: '127.0.0.1', port: 0 }, tls: tlsListener(true) } } });
  const port = (JSON.parse(await strict.waitLog(/"msg":"ready"/)) as { tls: number }).tls;
  const ca = file('ca.pem');
  const withCert = (name: string, clientId: string) => ({ protocol: 'mqtts' as const, ca, cert: file(`${name}.pem`), key: file(`${name}.key`), clientId, rejectUnauthorized: true, servername: 'localhost' });

  const oven = await connect(port, withCert('self-oven', 'oven-1'));
  t.equal(await subscribe(oven, 'things/oven-1/commands/#'), 1, 'a self-signed certificate whose fingerprint is oven-1\'s: connected as oven-1');
  t.equal(await subscribe(oven, 'things/mixer-1/commands/#'), 128, '... and only as oven-1');
  const mixer = await connect(port, withCert('oven-1', 'mixer-1'));
  t.equal(await subscribe(mixer, 'things/mixer-1/commands/#'), 1, 'a certificate of a CA the listener does not know, whose fingerprint is mixer-1\'s: connected as mixer-1');
  t.equal(await connackCode(port, withCert('self-stranger', 'stranger')), 4, 'a self-signed certificate whose fingerprint is in no snapshot: CONNACK 0x04');
  t.equal(await connackCode(port, withCert('rogue', 'rogue')), 4, 'nor one of another CA');
  const login = connectBytes({ clientId: 'anna-no-cert', clean: true, username: 'tech-anna', password: 'anna-pass' });
  t.equal(await tlsConnack(port, { ca }, login), -1, 'requireClientCert: no certificate, even with a good password, is closed without a CONNACK');
  t.match(JSON.parse(await strict.waitLog(/"msg":"connection refused: CERTIFICATE_REQUIRED"/)), { reason: 'CERTIFICATE_REQUIRED', listener: 'tls', remote: '127.0.0.1' }, 'and logged as CERTIFICATE_REQUIRED');
  t.equal(await tlsConnack(port, { ca, cert: file('self-oven.pem'), key: file('self-oven.key') }, connectBytes({ clientId: 'oven-1-raw', clean: true })), 0, 'the same certificate over raw bytes: CONNACK 0');

  const anna = await connect(strict.port, { clientId: 'anna', username: 'tech-anna', password: 'anna-pass' });
  await anna.client.publishAsync('things/oven-1/commands/reboot', 'pinned', { qos: 1 });
  t.ok(await until(() => oven.messages.some((m) => m.payload === 'pinned'), 15_000), 'the certificate device receives its commands');
  let refusal: Awaited<ReturnType<typeof readAudit>>[number] | undefined;
  for (let i = 0; i < 100 && refusal === undefined; i++) {
    refusal = (await readAudit(join(strict.stateDir, 'audit'))).find((e) => e.reason === 'UNKNOWN_CERTIFICATE');
    if (refusal === undefined) await sleep(100);
  }
  t.match(refusal, { action: 'connect', decision: 'deny', remote: '127.0.0.1' }, 'the unknown certificate is audited');
  await endAll(oven, mixer, anna);

  // requestClientCert without requireClientCert: a client without a certificate goes on with its password.
  const lenient = await agentFor(t, { bootstrap: snapshot, config: { listeners: { tcp: { enabled: false }, tls: tlsListener(false) } } });
  const lport = (JSON.parse(await lenient.waitLog(/"msg":"ready"/)) as { tls: number }).tls;
  t.equal(await tlsConnack(lport, { ca }, login), 0, 'requestClientCert only: no certificate, a good password: CONNACK 0');
  t.equal(await connackCode(lport, withCert('self-oven', 'oven-1')), 0, 'a listed self-signed certificate: CONNACK 0');
  t.equal(await connackCode(lport, withCert('self-stranger', 'stranger')), 4, 'an unlisted one: CONNACK 0x04');
});
