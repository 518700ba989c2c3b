// MQTT 5 shared subscriptions (4.8.2), which aedes 2.0.0-beta.1 does not implement (it answers a v5
// `$share/...` filter with SUBACK 0x9E, and takes one from a 3.1.1 client as a literal filter).
//
// `$share/{ShareName}/{filter}`: each message matching the filter goes to ONE member of the group —
// the sessions subscribed with the same ShareName and filter — round robin among the members that
// may receive it. The same for MQTT 3.1.1 clients (mosquitto accepts `$share` from them too).
//
// How, from outside aedes:
// - Before aedes' handler sees a SUBSCRIBE or UNSUBSCRIBE (a listener prepended to the parser's
//   'packet', ./upstream/shared-subscription-rename.ts guardSharedFilters), each `$share/G/F` is renamed to the marker `$edgewarden-share/G/F`
//   and marked (SHARED). aedes then holds an ordinary subscription to the marker: its SUBACK, its
//   UNSUBACK, a persistent session's stored subscriptions. Nothing is ever published on a marker (no
//   client may publish a `$` topic, ./topic-decisions.ts; a test holds it), so that subscription never
//   delivers, and no retained message matches it: a new shared subscription gets no retained
//   messages (4.8.2). A filter that reaches us already named like a marker is refused (SUBACK 0x87).
// - authorizeSubscribe (./subscribe.ts) decides the inner filter F like any filter, counts the
//   marker against limits.maxSubscriptionsPerClient, and makes the client a member (join).
// - This module holds one subscription per group on aedes' router (aedes.subscribe, as aedes' own
//   subscribe handler does): for each message it picks the next member that may receive it — the
//   scope check of authorizeForward (./forward.ts mayReceive) — and hands it to that member's
//   delivery at min(message QoS, the member's granted QoS) (./delivery.ts deliverCopy: aedes'
//   deliver0 / deliverQoS and the in-flight window, as for aedes' subscriptions, but not
//   deduplicated against the copy a client's ordinary subscription gets: 4.8.2 has it get both),
//   where authorizeForward decides it again, as for any delivery (an action is decided again there
//   for its sender). No member may: dropped for the group, counted as a filtered delivery.
// - A member leaves on UNSUBSCRIBE and when its connection closes. Messages go to connected members
//   only; a group without one drops them (MQTT 5 lets a server do so). A persistent session keeps
//   its shared subscription (the marker is stored like its other subscriptions): when it resumes,
//   the filter is decided again and the session rejoins. A message handed to a persistent session
//   stays in its queue like any other (it is its own to receive, also after a reconnect).
// - A malformed `$share` filter (empty ShareName, one with `+` or `#`, no filter after it) or No
//   Local set on a shared subscription [MQTT-3.8.3-4] is a protocol error: the connection is closed,
//   an MQTT 5 client's with DISCONNECT 0x82 Protocol Error (./accept.ts).
import type { Aedes, AedesPublishPacket, Client } from 'aedes';
import { AedesPacket as Packet, persistenceOf } from './upstream/broker-fields.js';

export const SHARE_PREFIX = '$share/';
/** The filter aedes holds for a shared subscription (the same number of levels as the original). */
export const SHARE_MARKER = '$edgewarden-share/';
/** Marks a SUBSCRIBE's subscription renamed from `$share/...` by guardSharedFilters. */
export const SHARED = Symbol('sharedFilter');
/** The message of the error that closes a connection sending a malformed shared subscription. */
export const MALFORMED_SHARE = 'malformed shared subscription';

export interface SharedFilter {
  readonly share: string;
  /** The topic filter the group subscribes to. */
  readonly filter: string;
  /** The filter aedes holds (SHARE_MARKER + share + '/' + filter). */
  readonly marker: string;
}

/** `$share/G/F` split; null when it is not a shared subscription, 'malformed' when it breaks 4.8.2. */
export function parseShared(topic: string): SharedFilter | null | 'malformed' {
  if (!topic.startsWith(SHARE_PREFIX)) return null;
  return split(topic, SHARE_PREFIX.length);
}

/** A marker (a restored persistent session's subscription) split; null when `topic` is none. */
export function parseMarker(topic: string): SharedFilter | null {
  if (!topic.startsWith(SHARE_MARKER)) return null;
  const s = split(topic, SHARE_MARKER.length);
  return s === 'malformed' ? null : s;
}

function split(topic: string, from: number): SharedFilter | 'malformed' {
  const slash = topic.indexOf('/', from);
  if (slash <= from) return 'malformed'; // [MQTT-4.8.2-1] a ShareName at least one character long, followed by '/'
  const share = topic.slice(from, slash);
  if (share.includes('+') || share.includes('#')) return 'malformed'; // [MQTT-4.8.2-2]
  const filter = topic.slice(slash + 1);
  if (filter === '') return 'malformed'; // [MQTT-4.8.2-2] '/' followed by a Topic Filter
  return { share, filter, marker: SHARE_MARKER + share + '/' + filter };
}

/** How a marker is shown (client info): as the client subscribed. */
export function displayFilter(filter: string): string {
  return filter.startsWith(SHARE_MARKER) ? SHARE_PREFIX + filter.slice(SHARE_MARKER.length) : filter;
}

/** The parts of an aedes client reached here (not in aedes' type declarations). */
interface MemberClient {
  readonly id: string;
  readonly clean: boolean;
  readonly closed: boolean;
  readonly conn: { once(event: 'close', fn: () => void): unknown };
  deliver0(packet: AedesPublishPacket, cb: () => void): void;
  deliverQoS(packet: AedesPublishPacket, cb: () => void): void;
}

interface Member {
  readonly client: Client;
  qos: number;
  /** Retain As Published. */
  rap: boolean;
  /** The Subscription Identifier property to echo, or null. */
  si: { readonly subscriptionIdentifier: number } | null;
}

interface Group {
  readonly key: string;
  readonly filter: string;
  /** The filter starts with a wildcard: it does not match `$` topics [MQTT-4.7.2-1]. */
  readonly wildcardStart: boolean;
  readonly members: Member[];
  /** Where the round robin goes on. */
  next: number;
  readonly deliver: (packet: AedesPublishPacket, cb: () => void) => void;
}

export interface SharedOptions {
  readonly aedes: Aedes;
  /** Whether the client may receive the message (its scope; ./forward.ts mayReceive). */
  mayReceive(client: Client, packet: AedesPublishPacket): boolean;
  /** No member could take a message. */
  filtered(): void;
  /** Hands the member its copy, at the QoS set on it (./delivery.ts deliverCopy). */
  deliver(client: Client, packet: AedesPublishPacket, cb: () => void): void;
}

export class SharedSubscriptions {
  private readonly groups = new Map<string, Group>();
  private readonly joined = new WeakMap<Client, Set<Group>>();

  constructor(private readonly opts: SharedOptions) {}

  /** The client subscribed (or resubscribed) to the shared filter, granted `qos`. */
  join(client: Client, s: SharedFilter, sub: { qos: number; rap?: boolean; subscriptionIdentifier?: number }): void {
    const c = client as unknown as MemberClient;
    if (c.closed) return;
    let group = this.groups.get(s.marker);
    if (!group) {
      const g: Group = {
        key: s.marker,
        filter: s.filter,
        wildcardStart: s.filter.charCodeAt(0) === 0x2b || s.filter.charCodeAt(0) === 0x23,
        members: [],
        next: 0,
        deliver: (packet, cb) => this.route(g, packet, cb),
      };
      group = g;
      this.groups.set(s.marker, g);
      this.opts.aedes.subscribe(s.filter, g.deliver, () => undefined);
    }
    const si = sub.subscriptionIdentifier !== undefined ? Object.freeze({ subscriptionIdentifier: sub.subscriptionIdentifier }) : null;
    const existing = group.members.find((m) => m.client === client);
    if (existing) {
      existing.qos = sub.qos;
      existing.rap = sub.rap === true;
      existing.si = si;
      return;
    }
    group.members.push({ client, qos: sub.qos, rap: sub.rap === true, si });
    let mine = this.joined.get(client);
    if (!mine) {
      mine = new Set();
      this.joined.set(client, mine);
      c.conn.once('close', () => this.leaveAll(client));
    }
    mine.add(group);
  }

  /** The client unsubscribed from the marker. */
  leave(client: Client, marker: string): void {
    const group = this.groups.get(marker);
    if (!group) return;
    this.remove(group, client);
    this.joined.get(client)?.delete(group);
  }

  /** Members of the group (tests, status). */
  members(marker: string): number {
    return this.groups.get(marker)?.members.length ?? 0;
  }

  get size(): number {
    return this.groups.size;
  }

  private leaveAll(client: Client): void {
    const mine = this.joined.get(client);
    if (!mine) return;
    this.joined.delete(client);
    for (const group of mine) this.remove(group, client);
  }

  private remove(group: Group, client: Client): void {
    const at = group.members.findIndex((m) => m.client === client);
    if (at < 0) return;
    group.members.splice(at, 1);
    if (group.next > at) group.next--;
    if (group.members.length === 0) {
      this.groups.delete(group.key);
      this.opts.aedes.unsubscribe(group.filter, group.deliver, () => undefined);
    }
  }

  /** A message matching the group's filter: to the next member that may receive it. */
  private route(group: Group, packet: AedesPublishPacket, cb: () => void): void {
    if (group.wildcardStart && packet.topic.charCodeAt(0) === 0x24) return cb();
    const members = group.members;
    const n = members.length;
    for (let k = 0; k < n; k++) {
      const at = (group.next + k) % n;
      const m = members[at]!;
      if ((m.client as unknown as MemberClient).closed || !this.opts.mayReceive(m.client, packet)) continue;
      group.next = (at + 1) % n;
      this.deliver(m, packet, cb);
      return;
    }
    this.opts.filtered();
    cb();
  }

  private deliver(m: Member, packet: AedesPublishPacket, cb: () => void): void {
    const c = m.client as unknown as MemberClient;
    const copy = new Packet(packet, this.opts.aedes);
    if (!m.rap) copy.retain = false;
    if (m.si) (copy as { properties?: object }).properties = copy.properties ? { ...copy.properties, ...m.si } : m.si;
    const qos = Math.min(packet.qos, m.qos) as 0 | 1 | 2;
    copy.qos = qos;
    if (qos === 0) return this.opts.deliver(m.client, copy, cb);
    // A persistent session's message goes into its queue first, as aedes queues those of its other
    // subscriptions before delivering them, and out as its in-flight window allows. The session
    // store (./session-store.ts) enqueues synchronously, within the call: the delivery follows at
    // once, so it cannot fall behind a newer message to the same client (which aedes' duplicate
    // check and the window's would then drop).
    if (!c.clean) void persistenceOf(this.opts.aedes).outgoingEnqueue({ clientId: c.id }, copy).catch(() => undefined);
    this.opts.deliver(m.client, copy, cb);
  }
}
