// A bare aedes (no agent, none of our hooks unless a test installs one) and MQTT clients connected to
// it over in-memory stream pairs: what test/unit/upstream-*.test.ts check the upstream shapes and
// behaviours on. No sockets, no timers of ours.
import { duplexPair, type Duplex } from 'node:stream';
import { Aedes, type AedesOptions, type Client } from 'aedes';
import mqttPacket, { type Packet } from 'mqtt-packet';

interface Teardown {
  teardown(fn: () => unknown): void;
}

/** A bare aedes, closed when the test ends. */
export async function bareAedes(t: Teardown, opts: AedesOptions = {}): Promise<Aedes> {
  const aedes = await Aedes.createBroker(opts);
  t.teardown(() => new Promise<void>((resolve) => aedes.close(() => resolve())));
  return aedes;
}

/** An MQTT client talking to aedes over an in-memory stream pair; `client` is aedes' side of it. */
export class PipeClient {
  readonly packets: (Packet & Record<string, unknown>)[] = [];
  /** Every chunk aedes wrote, as written. */
  readonly raw: Buffer[] = [];
  readonly client: Client;
  /** aedes' end of the pair (what it was handed as the connection). */
  readonly conn: Duplex;
  closed = false;
  readonly whenClosed: Promise<void>;
  private readonly ours: Duplex;
  private waiters: { pred: (p: Packet & Record<string, unknown>) => boolean; resolve: (p: (Packet & Record<string, unknown>) | undefined) => void; timer: NodeJS.Timeout }[] = [];

  /** `beforeHandle`: called with aedes' end before aedes.handle (e.g. to register it with a hook). */
  constructor(aedes: Aedes, readonly version = 4, beforeHandle?: (conn: Duplex) => void) {
    const [theirs, ours] = duplexPair();
    this.conn = theirs;
    this.ours = ours;
    beforeHandle?.(theirs);
    this.client = aedes.handle(theirs);
    const parser = mqttPacket.parser({ protocolVersion: version });
    parser.on('packet', (p: Packet) => {
      const packet = p as Packet & Record<string, unknown>;
      this.packets.push(packet);
      for (const w of [...this.waiters]) {
        if (!w.pred(packet)) continue;
        this.waiters.splice(this.waiters.indexOf(w), 1);
        clearTimeout(w.timer);
        w.resolve(packet);
      }
    });
    ours.on('data', (d: Buffer) => {
      this.raw.push(d);
      parser.parse(d);
    });
    ours.on('error', () => undefined);
    this.whenClosed = new Promise((resolve) => {
      const done = () => {
        this.closed = true;
        resolve();
      };
      ours.once('close', done);
      ours.once('end', done);
    });
  }

  bytes(p: Record<string, unknown>): Buffer {
    return mqttPacket.generate(p as unknown as Packet, { protocolVersion: this.version });
  }

  send(p: Record<string, unknown>): void {
    this.ours.write(this.bytes(p));
  }

  write(bytes: Buffer): void {
    this.ours.write(bytes);
  }

  /** CONNECT (clean, keepalive 0 unless `extra` says otherwise) and wait for the CONNACK. */
  async connect(clientId: string, extra: Record<string, unknown> = {}): Promise<Packet & Record<string, unknown>> {
    this.send({ cmd: 'connect', protocolId: this.version === 3 ? 'MQIsdp' : 'MQTT', protocolVersion: this.version, clean: true, clientId, keepalive: 0, ...extra });
    const connack = await this.next((p) => p.cmd === 'connack');
    if (!connack) throw new Error(`no CONNACK for ${clientId}`);
    return connack;
  }

  /** The first packet (already received or to come) matching `pred`, or undefined after `timeoutMs`. */
  next(pred: (p: Packet & Record<string, unknown>) => boolean, timeoutMs = 10_000): Promise<(Packet & Record<string, unknown>) | undefined> {
    const seen = this.packets.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => {
      const w = {
        pred,
        resolve,
        timer: setTimeout(() => {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          resolve(undefined);
        }, timeoutMs),
      };
      this.waiters.push(w);
    });
  }

  end(): void {
    this.ours.destroy();
  }
}

/** Resolves with the first value `subscribe` reports, or undefined after `timeoutMs`. */
export function waitFor<T>(subscribe: (report: (v: T) => void) => void, timeoutMs = 10_000): Promise<T | undefined> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(undefined), timeoutMs);
    subscribe((v) => {
      clearTimeout(timer);
      resolve(v);
    });
  });
}

/** The message tests print when a bare dependency no longer behaves as a workaround assumes. */
export function upstreamChanged(what: string, module: string): string {
  return `upstream changed: ${what}; the workaround in src/broker/upstream/${module} may be obsolete or broken`;
}
