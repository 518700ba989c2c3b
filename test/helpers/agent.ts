// Starts the real agent (`edgewarden run`, built) as a child process with a temporary state
// directory and an ephemeral loopback port; talks to it with MQTT.js and the mosquitto clients.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient, type IClientOptions } from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { createConnection } from 'node:net';
import { parseDocument } from 'yaml';
import { BIN } from './cli.js';
import { ROOT } from './policy.js';
import { loadPolicyText, compilePolicy } from '../../src/policy/validate.js';
import type { SnapshotPayload } from '../../src/policy/schema.js';
import { signSnapshot } from '../../src/snapshot/snapshot.js';
import { parsePrivateKey, kidOf } from '../../src/snapshot/keys.js';

export const DEMO_KEY = join(ROOT, 'config', 'demo-keys', 'demo.key.pem');
export const DEMO_PUB = join(ROOT, 'config', 'demo-keys', 'demo.pub.pem');
export const EXAMPLE_POLICY = join(ROOT, 'config', 'example-policy.yaml');

/** The V8 flags the executables start the agent with (package.json "edgewarden.nodeFlags"; docs/packaging.md). */
export const NODE_FLAGS = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { edgewarden?: { nodeFlags?: string[] } }).edgewarden?.nodeFlags ?? [];
const demoPrivate = parsePrivateKey(readFileSync(DEMO_KEY, 'utf8'));

/** The example policy as a payload, edited, signed with the demo key. */
export function exampleSnapshot(version: number, edit?: (p: SnapshotPayload) => void, issuedAt = Date.now() - 60_000): Buffer {
  const { policy } = loadPolicyText(readFileSync(EXAMPLE_POLICY, 'utf8'), EXAMPLE_POLICY);
  const payload = compilePolicy(policy, { version, issuedAt });
  edit?.(payload);
  return signSnapshot(payload, demoPrivate, kidOf(demoPrivate));
}

/** A log line's JSON: without the `<N>` priority prefix it has under the journal (JOURNAL_STREAM). */
export function logJson(line: string): string {
  return line.replace(/^<[0-7]>/, '');
}

export interface AgentProcess {
  readonly port: number;
  readonly stateDir: string;
  readonly child: ChildProcess;
  logs(): string[];
  /** Resolves when a log line matching `re` has appeared (or rejects after timeoutMs). */
  waitLog(re: RegExp, timeoutMs?: number): Promise<string>;
  stop(): Promise<number | null>;
  kill(): Promise<void>;
}

export interface StartOptions {
  stateDir?: string;
  /** YAML text merged into the test configuration (top-level keys replace). */
  config?: Record<string, unknown>;
  /** Bootstrap snapshot file; default: none (install one yourself) unless `example` is true. */
  bootstrap?: string | null;
  configFile?: string;
  /** Run on the program's embedded defaults: no configuration file (`-c`) at all; `config`, `bootstrap` and `configFile` do not apply. */
  embeddedDefaults?: boolean;
  port?: number;
  /** The program and its leading arguments (default: this node and the built bin/edgewarden.js), e.g. a packaged executable. */
  command?: string[];
  /** How long to wait for the 'ready' log line (default 15 s). */
  readyTimeoutMs?: number;
  /** More arguments for `run` (e.g. `--log-level`, `-v`). */
  args?: string[];
  /** Environment variables added to this process's for the agent (e.g. NOTIFY_SOCKET). */
  env?: NodeJS.ProcessEnv;
}

export async function startAgent(opts: StartOptions = {}): Promise<AgentProcess> {
  const stateDir = opts.stateDir ?? mkdtempSync(join(tmpdir(), 'ew-state-'));
  let configFile = opts.configFile;
  if (!configFile && !opts.embeddedDefaults) {
    const cfg = {
      gateway: { id: 'gw-plant-1' },
      trust: { keys: [DEMO_PUB] },
      stateDir,
      snapshot: { bootstrap: opts.bootstrap === undefined ? join(ROOT, 'config', 'example-snapshot.cose') : opts.bootstrap, inbox: true },
      listeners: { tcp: { enabled: true, host: '127.0.0.1', port: 0 } },
      log: { level: 'debug' },
      audit: { flushIntervalMs: 100 },
      ...(opts.config ?? {}),
    };
    configFile = join(stateDir, 'test-config.yaml');
    writeFileSync(configFile, parseDocument(JSON.stringify(cfg)).toString());
  }
  const [program, ...leading] = opts.command ?? [process.execPath, ...NODE_FLAGS, BIN];
  const args = [...leading, 'run', ...(opts.embeddedDefaults ? [] : ['-c', configFile!]), '--state-dir', stateDir, '--port', String(opts.port ?? 0), ...(opts.args ?? [])];
  const child = spawn(program!, args, { stdio: ['ignore', 'pipe', 'pipe'], ...(opts.env ? { env: { ...process.env, ...opts.env } } : {}) });
  const lines: string[] = [];
  const waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  const onLine = (line: string) => {
    lines.push(line);
    for (const w of [...waiters]) if (w.re.test(line)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(line);
    }
  };
  let buf = '';
  const feed = (chunk: Buffer) => {
    buf += chunk.toString('utf8');
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      onLine(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
  };
  child.stdout!.on('data', feed);
  child.stderr!.on('data', feed);
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const waitLog = (re: RegExp, timeoutMs = 15_000) => {
    const hit = lines.find((l) => re.test(l));
    if (hit) return Promise.resolve(hit);
    return new Promise<string>((resolve, reject) => {
      const w = { re, resolve };
      waiters.push(w);
      const t = setTimeout(() => reject(new Error(`no log line matching ${re} in ${timeoutMs} ms; logs:\n${lines.slice(-30).join('\n')}`)), timeoutMs);
      t.unref();
      exited.then(() => setTimeout(() => reject(new Error(`agent exited before logging ${re}; logs:\n${lines.slice(-30).join('\n')}`)), 50));
    });
  };
  const ready = await waitLog(/"msg":"ready"/, opts.readyTimeoutMs).catch((err: Error) => {
    if (child.exitCode === null) child.kill('SIGKILL');
    throw err;
  });
  const port = (JSON.parse(logJson(ready)) as { tcp: number }).tcp;
  return {
    port,
    stateDir,
    child,
    logs: () => lines,
    waitLog,
    async stop() {
      if (child.exitCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      return exited;
    },
    async kill() {
      if (child.exitCode !== null) return;
      child.kill('SIGKILL');
      await exited;
    },
  };
}

export function cleanup(agent: AgentProcess): void {
  rmSync(agent.stateDir, { recursive: true, force: true });
}

/** A fresh agent, stopped and its state directory removed when the test `t` ends. */
export async function agentFor(t: { teardown(fn: () => unknown): void }, opts: StartOptions = {}): Promise<AgentProcess> {
  const agent = await startAgent(opts);
  t.teardown(async () => {
    await agent.stop();
    cleanup(agent);
  });
  return agent;
}

// --- MQTT.js helpers ---------------------------------------------------------------------------

export interface Connected {
  client: MqttClient;
  messages: { topic: string; payload: string }[];
}

export function connect(port: number, opts: IClientOptions = {}): Promise<Connected> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect({ host: '127.0.0.1', port, protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5000, ...opts });
    const messages: { topic: string; payload: string }[] = [];
    client.on('message', (topic, payload) => messages.push({ topic, payload: payload.toString() }));
    client.once('connect', () => resolve({ client, messages }));
    client.once('error', (err) => {
      client.end(true);
      reject(err);
    });
  });
}

/** The CONNACK return code of a connection attempt (0 = accepted). */
export function connackCode(port: number, opts: IClientOptions = {}): Promise<number> {
  return new Promise((resolve) => {
    const client = mqtt.connect({ host: '127.0.0.1', port, protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5000, ...opts });
    client.once('connect', () => {
      client.end(true);
      resolve(0);
    });
    client.once('error', (err: Error & { code?: number }) => {
      client.end(true);
      resolve(typeof err.code === 'number' ? err.code : -1);
    });
  });
}

/** The granted QoS of the SUBACK (128 = refused; MQTT.js reports that as an error with code 128). */
export function subscribe(c: Connected, filter: string, qos: 0 | 1 | 2 = 1): Promise<number> {
  return new Promise((resolve, reject) => {
    c.client.subscribe(filter, { qos }, (err, granted) => {
      const refused = (err as (Error & { packet?: { granted?: number[] } }) | null)?.packet?.granted?.[0];
      if (err && refused !== undefined) return resolve(refused);
      if (err) return reject(err);
      resolve(granted?.[0]?.qos ?? -1);
    });
  });
}

/** A CONNECT packet built by hand (mqtt-packet refuses some the tests need, e.g. an empty client id with CleanSession=0). */
export function connectBytes(o: { clientId: string; clean: boolean; username?: string; password?: string; keepalive?: number }): Buffer {
  const str = (s: string) => {
    const b = Buffer.from(s, 'utf8');
    return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
  };
  const flags = (o.username !== undefined ? 0x80 : 0) | (o.password !== undefined ? 0x40 : 0) | (o.clean ? 0x02 : 0);
  const keepalive = o.keepalive ?? 30;
  const body = Buffer.concat([
    str('MQTT'),
    Buffer.from([4, flags, keepalive >> 8, keepalive & 0xff]),
    str(o.clientId),
    ...(o.username !== undefined ? [str(o.username)] : []),
    ...(o.password !== undefined ? [str(o.password)] : []),
  ]);
  return Buffer.concat([Buffer.from([0x10, body.length]), body]);
}

/** CONNACK return code for raw CONNECT bytes; -1 if the connection closes without one. */
export function rawConnack(port: number, connect: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(port, '127.0.0.1');
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    parser.on('packet', (p: { cmd: string; returnCode?: number }) => {
      if (p.cmd === 'connack') {
        socket.destroy();
        resolve(p.returnCode ?? -1);
      }
    });
    socket.on('data', (d) => parser.parse(d));
    socket.on('error', reject);
    socket.on('close', () => resolve(-1));
    socket.write(connect);
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Waits until `pred` holds, polling; false on timeout. */
/** Polls `pred` until it holds or `timeoutMs` (generous: a loaded machine is slow) have passed. */
export async function until(pred: () => boolean, timeoutMs = 10_000): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (pred()) return true;
    await sleep(20);
  }
  return pred();
}

export function endAll(...clients: (Connected | undefined)[]): Promise<void[]> {
  return Promise.all(clients.map((c) => (c ? c.client.endAsync(true).catch(() => undefined) : undefined)));
}

/** mosquitto_pub / mosquitto_sub, synchronously, with a timeout. */
export function mosquitto(tool: 'mosquitto_pub' | 'mosquitto_sub', args: string[], timeoutMs = 10_000): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(tool, args, { encoding: 'utf8', timeout: timeoutMs });
  return { code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/**
 * mosquitto_sub in the background: collects lines until stopped. With `-d` among the arguments,
 * `ready` resolves when mosquitto_sub has its SUBACK (its debug line "received SUBACK"), and rejects
 * if it exits first or has none within 30 s; without, it is a 400 ms pause.
 */
export function mosquittoSub(args: string[]): { lines: string[]; ready: Promise<void>; stop(): Promise<void> } {
  // Its debug lines go through stdio's buffer, which a pipe makes a block buffer: stdbuf -oL (coreutils) flushes each line.
  const child = args.includes('-d')
    ? spawn('stdbuf', ['-oL', 'mosquitto_sub', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn('mosquitto_sub', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const stderr: string[] = [];
  let onLine = (_line: string) => {};
  let buf = '';
  child.stdout.on('data', (c: Buffer) => {
    buf += c.toString();
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      lines.push(line);
      onLine(line);
      buf = buf.slice(nl + 1);
    }
  });
  child.stderr.on('data', (c: Buffer) => stderr.push(c.toString()));
  const exited = new Promise<void>((r) => child.on('exit', () => r()));
  const ready = !args.includes('-d')
    ? sleep(400).then(() => undefined)
    : new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`mosquitto_sub: no SUBACK in 30 s: ${lines.join('\n')}${stderr.join('')}`)), 30_000);
      timer.unref();
      onLine = (line) => {
        if (/received SUBACK/.test(line)) {
          clearTimeout(timer);
          resolve();
        }
      };
      void exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`mosquitto_sub exited before its SUBACK: ${lines.join('\n')}${stderr.join('')}`));
      });
    });
  ready.catch(() => undefined); // reported to whoever awaits it; not an unhandled rejection otherwise
  return {
    lines,
    ready,
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}
