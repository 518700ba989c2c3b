// Where the reply to a cloud request goes (MQTT 5 request/response, docs/cloud.md "Request/response"):
// a request may name a Response Topic and carry Correlation Data; the reply then goes to that topic
// with the same correlation data, and so does a late refusal of the same request (by its id).
//
// Only a response topic the gateway may write is taken: `P replies` or below `P replies/` (the cloud
// broker's access rules, docs/fleet.md, let a gateway write its own upward topics only; and a reply
// on `P down/...`, `P snapshot` or `P up/...` would come back to it as a request or a snapshot, or pass
// for device data). Any other goes to `P replies`, with a warning logged once per topic.
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';

/** A reply's topic (relative to the prefix P) and the correlation data it carries. */
export interface ReplyRoute {
  readonly topic: string;
  readonly correlationData?: Buffer;
}

export const REPLIES = 'replies';
/** The route of a request that names neither a response topic nor correlation data. */
export const DEFAULT_ROUTE: ReplyRoute = Object.freeze({ topic: REPLIES });

/** Requests whose route is remembered for a late refusal (the most recent), and the bytes they may hold. */
const REMEMBERED = 4096;
const REMEMBERED_BYTES = 1024 * 1024;
/** Refused response topics warned about, at most; then the set starts again. */
const WARNED = 1000;
const MAX_RESPONSE_TOPIC = 1024;

/** `responseTopic` relative to `prefix` when the gateway may reply there; otherwise why not. */
export function replyTopicFor(prefix: string, responseTopic: string): { topic: string } | { why: string } {
  if (!responseTopic.startsWith(prefix)) return { why: `it is not under the gateway's prefix ${prefix}` };
  const rel = responseTopic.slice(prefix.length);
  if (rel !== REPLIES && !(rel.startsWith(`${REPLIES}/`) && rel.length > REPLIES.length + 1)) return { why: `the gateway replies only on ${prefix}${REPLIES} and below ${prefix}${REPLIES}/` };
  if (responseTopic.length > MAX_RESPONSE_TOPIC) return { why: `it is longer than ${MAX_RESPONSE_TOPIC} characters` };
  if (rel.includes('+') || rel.includes('#') || rel.includes('\u0000')) return { why: 'it holds a wildcard (+, #) or U+0000' };
  return { topic: rel };
}

export class ReplyRoutes {
  private readonly byId = new LRUCache<string, ReplyRoute>({
    max: REMEMBERED,
    maxSize: REMEMBERED_BYTES,
    sizeCalculation: (r, id) => 64 + id.length + r.topic.length + (r.correlationData?.length ?? 0),
  });
  private readonly warned = new Set<string>();

  constructor(
    private readonly prefix: string,
    private readonly log: Logger,
  ) {}

  /** The route of a request's reply, from the MQTT 5 properties it came with. */
  route(responseTopic: string | undefined, correlationData: Buffer | undefined): ReplyRoute {
    let route = DEFAULT_ROUTE;
    if (responseTopic !== undefined || correlationData !== undefined) {
      let topic = REPLIES;
      if (responseTopic !== undefined) {
        const r = replyTopicFor(this.prefix, responseTopic);
        if ('topic' in r) topic = r.topic;
        else this.warnOnce(responseTopic, r.why);
      }
      // A copy: MQTT.js hands out a view of the bytes it received, which may be a whole large packet.
      route = correlationData === undefined ? (topic === REPLIES ? DEFAULT_ROUTE : { topic }) : { topic, correlationData: Buffer.from(correlationData) };
    }
    return route;
  }

  /**
   * Remembers the route of a delivered request for its late refusal (only one that is not the
   * default: a later request with the same id and the default route makes it forgotten).
   */
  remember(requestId: string | null, route: ReplyRoute): void {
    if (requestId === null) return;
    if (route === DEFAULT_ROUTE) this.byId.delete(requestId);
    else this.byId.set(requestId, route);
  }

  /** Forgets a request refused at once: no late refusal follows it. */
  forget(requestId: string | null): void {
    if (requestId !== null) this.byId.delete(requestId);
  }

  /** The route of a late refusal of request `requestId`: its reply's, while remembered. */
  late(requestId: string | null): ReplyRoute {
    return (requestId === null ? undefined : this.byId.get(requestId)) ?? DEFAULT_ROUTE;
  }

  private warnOnce(responseTopic: string, why: string): void {
    const key = responseTopic.length > 256 ? responseTopic.slice(0, 256) : responseTopic;
    if (this.warned.has(key)) return;
    if (this.warned.size >= WARNED) this.warned.clear();
    this.warned.add(key);
    this.log.warn({ responseTopic: responseTopic.length > 200 ? `${responseTopic.slice(0, 200)}...` : responseTopic, replyTopic: `${this.prefix}${REPLIES}` }, `cloud request's response topic not used, the reply goes to ${REPLIES}: ${why}`);
  }
}
