// `edgewarden snapshot publish FILE --url mqtt://broker:1883`: the cloud side. Publishes a signed
// snapshot, retained, QoS 1, to `<prefix>snapshot` of the gateway it names, where the gateway's
// cloud link picks it up (now, or whenever it next connects). The snapshot is verified first
// (signature with the trusted keys, payload), so a broken file never reaches a gateway.
import { readFileSync } from 'node:fs';
import mqtt, { type IClientOptions } from 'mqtt';
import { EwError } from '../errors.js';
import { verifySnapshot } from '../snapshot/snapshot.js';
import { expandGatewayId } from '../bridge/cloud-link.js';
import { readSnapshotFile } from './io.js';
import { trustedKeysFrom } from './snapshot.js';
import type { Io } from './output.js';

export interface PublishOptions {
  url: string;
  trust?: string[];
  gateway?: string;
  prefix?: string;
  username?: string;
  passwordFile?: string;
  ca?: string;
  cert?: string;
  key?: string;
  timeout?: string;
}

export async function publishCommand(file: string, opts: PublishOptions, io: Io): Promise<number> {
  if (!/^(mqtt|mqtts):\/\/[^/?#]+$/.test(opts.url)) {
    throw new EwError('EW_USAGE', `--url must be mqtt://host:port or mqtts://host:port, got ${JSON.stringify(opts.url)}`);
  }
  const timeoutMs = opts.timeout === undefined ? 15_000 : Number(opts.timeout) * 1000;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new EwError('EW_USAGE', `--timeout must be a number of seconds, got ${JSON.stringify(opts.timeout)}`);
  const bytes = readSnapshotFile(file);
  const v = verifySnapshot(bytes, trustedKeysFrom(opts.trust), { where: file });
  const gatewayId = v.payload.gateway.id;
  if (opts.gateway !== undefined && opts.gateway !== gatewayId) {
    throw new EwError('EW_SNAPSHOT_WRONG_GATEWAY', `the snapshot is for gateway ${gatewayId}, not ${opts.gateway}`, { where: file });
  }
  const prefix = expandGatewayId(opts.prefix ?? 'edgewarden/{gatewayId}/', gatewayId);
  if (!prefix.endsWith('/') || /[+#\u0000]/.test(prefix)) throw new EwError('EW_USAGE', `--prefix must end in / and hold no + or #, got ${JSON.stringify(prefix)}`);
  const topic = `${prefix}snapshot`;
  const options: IClientOptions = {
    clientId: `edgewarden-publish-${process.pid}-${Date.now().toString(36)}`,
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: timeoutMs,
  };
  if (opts.username !== undefined) options.username = opts.username;
  if (opts.passwordFile !== undefined) options.password = readFileSync(opts.passwordFile, 'utf8').split(/\r?\n/)[0] ?? '';
  if (opts.ca !== undefined) options.ca = readFileSync(opts.ca);
  if (opts.cert !== undefined) options.cert = readFileSync(opts.cert);
  if (opts.key !== undefined) options.key = readFileSync(opts.key);

  const client = mqtt.connect(opts.url, options);
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new EwError('EW_CLOUD_CONNECT', `no acknowledgement within ${timeoutMs / 1000} s`, { where: opts.url })), timeoutMs);
      const fail = (err: Error) => {
        clearTimeout(timer);
        reject(new EwError('EW_CLOUD_CONNECT', err.message, { where: opts.url, cause: err }));
      };
      client.once('error', fail);
      client.once('close', () => fail(new Error('connection closed')));
      client.once('connect', () => {
        client.publish(topic, bytes, { qos: 1, retain: true }, (err) => {
          clearTimeout(timer);
          if (err) fail(err);
          else resolve();
        });
      });
    });
  } finally {
    client.removeAllListeners();
    client.on('error', () => undefined);
    await new Promise<void>((resolve) => client.end(false, {}, () => resolve()));
  }
  io.out(`published snapshot version ${v.payload.version} for gateway ${gatewayId} (${bytes.length} bytes), retained, to ${topic} on ${opts.url}`);
  return 0;
}
