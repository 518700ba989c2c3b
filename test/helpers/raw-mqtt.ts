// A raw MQTT client for tests that must send what MQTT.js would not (two PUBRELs in one write, a
// withheld PUBREL, a reused packet id) and see every packet the agent answers with.
import { createConnection, type Socket } from 'node:net';
import mqttPacket, { type Packet } from 'mqtt-packet';

export class RawMqtt {
  readonly packets: Packet[] = [];
  closed = false;
  readonly whenClosed: Promise<void>;
  private waiters: { pred: (p: Packet) => boolean; resolve: (p: Packet | undefined) => void; timer: NodeJS.Timeout }[] = [];

  private constructor(
    readonly socket: Socket,
    readonly version: number,
  ) {
    const parser = mqttPacket.parser({ protocolVersion: version });
    parser.on('packet', (p: Packet) => {
      this.packets.push(p);
      for (const w of [...this.waiters]) {
        if (!w.pred(p)) continue;
        this.waiters.splice(this.waiters.indexOf(w), 1);
        clearTimeout(w.timer);
        w.resolve(p);
      }
    });
    socket.on('data', (d) => parser.parse(d));
    socket.on('error', () => undefined);
    this.whenClosed = new Promise((r) =>
      socket.on('close', () => {
        this.closed = true;
        r();
      }),
    );
  }

  static open(port: number, version = 5): Promise<RawMqtt> {
    return new Promise((resolve, reject) => {
      const s = createConnection(port, '127.0.0.1');
      s.once('connect', () => resolve(new RawMqtt(s, version)));
      s.once('error', reject);
    });
  }

  bytes(p: Record<string, unknown>): Buffer {
    return mqttPacket.generate(p as unknown as Packet, { protocolVersion: this.version });
  }

  send(p: Record<string, unknown>): void {
    this.socket.write(this.bytes(p));
  }

  /** CONNECT and wait for the CONNACK. */
  async connect(clientId: string, username?: string, password?: string, extra: Record<string, unknown> = {}): Promise<Packet & { returnCode?: number; reasonCode?: number }> {
    this.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: this.version, clean: true, clientId, keepalive: 60, ...(username !== undefined ? { username, password: Buffer.from(password ?? '') } : {}), ...extra });
    const connack = await this.next((p) => p.cmd === 'connack');
    if (!connack) throw new Error(`no CONNACK for ${clientId}`);
    return connack as Packet & { returnCode?: number; reasonCode?: number };
  }

  /** The first packet (already received or to come) matching `pred`, or undefined after `timeoutMs`. */
  next(pred: (p: Packet) => boolean, timeoutMs = 10_000): Promise<Packet | undefined> {
    const seen = this.packets.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => {
      const w = { pred, resolve, timer: setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        resolve(undefined);
      }, timeoutMs) };
      this.waiters.push(w);
    });
  }

  end(): void {
    this.socket.destroy();
  }
}
