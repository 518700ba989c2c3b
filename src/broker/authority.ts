// Who authorized an action, carried with the message until it is delivered (SPEC section 3: "an
// action never outlives its authority").
//
// An action message (a command, a parameter, metric or option write, a firmware update, an alert
// ack/clear, an activation, a registration, a bulk update's share for one thing) is decided when it
// is published; the broker then attaches an Authority to it: who sent it and when it was allowed.
// Every delivery decides again for that sender — live, from a persistent session's queue, on a QoS
// 1/2 redelivery, after a restart — against the snapshot in force then and the time floor, and
// drops the message once its time to live has passed.
//
// Where the authority lives while the message waits:
// - during the publish itself (live deliveries, and the copies aedes puts into offline queues), in
//   the broker's InFlightAuthorities, keyed by the aedes packet's (brokerId, brokerCounter), which
//   aedes copies into every wrapper of the packet it makes;
// - in a session's queue, beside the queued packet (src/broker/session-store.ts), on disk too.
import type { AgentConfig } from '../config/load.js';
import { permissionId } from '../catalog/index.js';

/** The authority of one action message. Shared (frozen) by every queued copy of it. */
export interface Authority {
  /** The principal who sent it; for a request that came down the cloud link, the cloud principal. */
  readonly principal: string;
  /** 'cloud' for a request that came down the cloud link (its client id is `cloud:<principal>`). */
  readonly source: 'local' | 'cloud';
  /** The sender's client id (`cloud:<principal>` for the cloud). */
  readonly clientId: string;
  /** The cloud request's id, to report a refusal at delivery on the replies topic; else null. */
  readonly requestId: string | null;
  /** The permission it was authorized for (a catalog API name). */
  readonly permission: string;
  /** When it was authorized, by the time floor (ms since the epoch). */
  readonly authorizedAt: number;
  /** When it expires undelivered: authorizedAt + its time to live, or + its MQTT 5 message expiry interval when shorter (ms, time floor). */
  readonly expiresAt: number;
}

/** Time to live, in ms, per catalog permission id (0 = not an action). */
export function actionTtls(config: AgentConfig): Float64Array {
  const t = config.actions.ttlSeconds;
  const byName: Record<string, number> = {
    EXECUTE_THING_COMMAND: t.command,
    SET_THING_PARAMETER: t.parameter,
    UPDATE_FIRMWARE: t.firmware,
    WRITE_METRIC_VALUE: t.metric,
    WRITE_ALERT_STATUS: t.alert,
    CLEAR_ALERT: t.alert,
    WRITE_THING_OPTION: t.option,
    WRITE_THING_ACTIVATION: t.activation,
    REGISTER_THING: t.registration,
    EXECUTE_BULK_UPDATE: t.bulk,
  };
  const ids = Object.keys(byName).map((n) => permissionId(n));
  const ttl = new Float64Array(Math.max(...ids) + 1);
  for (const [name, seconds] of Object.entries(byName)) ttl[permissionId(name)] = seconds * 1000;
  return ttl;
}

/**
 * The authorities of the messages being published right now, by the aedes packet's brokerCounter
 * (this broker's packets only: brokerId is the broker's id). An entry lives from the moment aedes
 * is handed the packet until its publish completes — by then every live delivery has been decided
 * and every offline queue holds its own copy of the authority.
 */
export class InFlightAuthorities {
  private readonly byCounter = new Map<number, Authority>();

  constructor(readonly brokerId: string) {}

  hold(counter: number, authority: Authority): void {
    this.byCounter.set(counter, authority);
  }

  release(counter: number): void {
    this.byCounter.delete(counter);
  }

  get(brokerId: string | undefined, counter: number | undefined): Authority | undefined {
    if (brokerId !== this.brokerId || counter === undefined) return undefined;
    return this.byCounter.get(counter);
  }

  get size(): number {
    return this.byCounter.size;
  }
}
