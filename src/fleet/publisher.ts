// One MQTT connection to the cloud broker for `fleet publish`: retained QoS 1 publishes, each
// acknowledged or failed within a time limit. MQTT.js reconnects by itself after a loss (MQTT 5,
// clean start); a publish not acknowledged when the connection drops is resent by MQTT.js after the
// reconnect, and one that times out is taken out of MQTT.js's outgoing store, so that only the
// caller's retry sends it again (a duplicate of a retained snapshot would be harmless, but the
// store must not grow with abandoned copies).
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';

export interface BrokerSessionOptions extends IClientOptions {
  /** Time to wait for the connection, and then as long for the PUBACK of one publish, in ms. */
  readonly ackTimeoutMs: number;
}

export class BrokerSession {
  private readonly client: MqttClient;
  private readonly ackTimeoutMs: number;
  /** The last connection problem, for failure reasons (never holds the password). */
  lastError: string | undefined;
  private everConnected = false;
  /**
   * Set when the broker refused the connection in its CONNACK (bad credentials, not authorized,
   * banned): MQTT.js then stops reconnecting, and no publish can succeed.
   */
  refused: string | undefined;
  /** Publishes waiting for the connection (one 'connect' listener for all of them). */
  private readonly waiters = new Set<() => void>();

  /** `url`: mqtt://host:port or mqtts://host:port, without credentials (they go in `opts`). */
  constructor(url: string, opts: BrokerSessionOptions) {
    const { ackTimeoutMs, ...options } = opts;
    this.ackTimeoutMs = ackTimeoutMs;
    // Host and port as options, not the URL string: MQTT.js would parse that with the deprecated url.parse().
    const u = new URL(url);
    this.client = mqtt.connect({
      protocol: u.protocol === 'mqtts:' ? 'mqtts' : 'mqtt',
      host: u.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: Number(u.port),
      protocolVersion: 5,
      clean: true,
      reconnectPeriod: 1000,
      connectTimeout: ackTimeoutMs,
      ...options,
    });
    this.client.on('error', (err) => {
      this.lastError = err.message;
      if (/^Connection refused/.test(err.message) && typeof (err as { code?: unknown }).code === 'number') {
        this.refused = `the broker refused the connection: ${err.message.replace(/^Connection refused: /, '')}`;
        for (const w of [...this.waiters]) w();
      }
    });
    this.client.on('connect', (connack) => {
      this.receiveMax = connack.properties?.receiveMaximum ?? 65_535;
      this.everConnected = true;
      this.lastError = undefined;
      for (const w of [...this.waiters]) w();
    });
    this.client.on('close', () => (this.lastError ??= 'connection closed'));
  }

  get connected(): boolean {
    return this.client.connected;
  }

  /** Why nothing can be published now ('' when connected). */
  notConnectedReason(): string {
    const what = this.everConnected ? 'the connection to the broker is lost' : 'cannot connect to the broker';
    return this.lastError === undefined ? what : `${what}: ${this.lastError}`;
  }

  private waitConnected(deadline: number): Promise<void> {
    if (this.client.connected) return Promise.resolve();
    if (this.refused !== undefined) return Promise.reject(new Error(this.refused));
    return new Promise((resolve, reject) => {
      const onConnect = () => {
        this.waiters.delete(onConnect);
        clearTimeout(timer);
        if (this.refused !== undefined && !this.client.connected) reject(new Error(this.refused));
        else resolve();
      };
      const timer = setTimeout(() => {
        this.waiters.delete(onConnect);
        reject(new Error(`${this.notConnectedReason()} (waited ${this.ackTimeoutMs / 1000} s)`));
      }, Math.max(0, deadline - Date.now()));
      this.waiters.add(onConnect);
    });
  }

  /**
   * The broker's Receive Maximum (MQTT 5, CONNACK; 65535 when it sets none): a client must not have
   * more unacknowledged QoS 1 publishes than that [MQTT-3.3.4-7], or a strict broker (HiveMQ)
   * disconnects it. The caller's --concurrency may be higher; the rest wait here for a slot.
   */
  private receiveMax = 65_535;
  private receiveMaximum(): number {
    return this.receiveMax;
  }
  private inFlight = 0;
  private readonly slotWaiters: (() => void)[] = [];
  private async acquireSlot(): Promise<void> {
    while (this.inFlight >= this.receiveMaximum()) await new Promise<void>((r) => this.slotWaiters.push(r));
    this.inFlight++;
  }
  private releaseSlot(): void {
    this.inFlight--;
    this.slotWaiters.shift()?.();
  }

  /** Publishes `payload` retained with QoS 1; resolves on its PUBACK (success reason code). */
  async publishRetained(topic: string, payload: Buffer): Promise<void> {
    await this.waitConnected(Date.now() + this.ackTimeoutMs);
    await this.acquireSlot();
    const deadline = Date.now() + this.ackTimeoutMs;
    await new Promise<void>((resolve, reject) => {
      let done = false;
      const cb = (err?: Error) => {
        if (done) return;
        done = true;
        this.releaseSlot();
        clearTimeout(timer);
        if (err) reject(new Error(`the broker refused it: ${err.message}`));
        else resolve();
      };
      const timer = setTimeout(() => {
        if (done) return;
        done = true;
        this.releaseSlot();
        // Take it out of MQTT.js's store: only the caller's retry sends it again.
        for (const [id, entry] of Object.entries(this.client.outgoing)) {
          if (entry.cb === cb) this.client.removeOutgoingMessage(Number(id));
        }
        reject(new Error(this.client.connected ? `no acknowledgement within ${this.ackTimeoutMs / 1000} s` : `${this.notConnectedReason()} (no acknowledgement within ${this.ackTimeoutMs / 1000} s)`));
      }, Math.max(1, deadline - Date.now()));
      this.client.publish(topic, payload, { qos: 1, retain: true }, (err) => cb(err ?? undefined));
    });
  }

  /** Closes the connection (after a clean DISCONNECT when connected; at once while connecting). */
  async end(): Promise<void> {
    await new Promise<void>((resolve) => {
      // While a connection attempt is under way MQTT.js may call back only once it gives up on it.
      const bound = setTimeout(resolve, this.client.connected ? this.ackTimeoutMs : 1000);
      this.client.end(!this.client.connected, {}, () => {
        clearTimeout(bound);
        resolve();
      });
    });
    this.client.removeAllListeners();
    this.client.on('error', () => undefined);
  }
}
