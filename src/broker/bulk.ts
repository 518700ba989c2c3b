// A bulk update (EXECUTE_BULK_UPDATE on bulk/<operation>), fanned out: each named thing once (at
// most MAX_BULK_TARGETS), or every thing in the principal's scope when none is named, decided for
// each thing; each allowed share is published on the thing's own topic with its own authority (so it
// is decided again at delivery) and audited; the refused ones are one audit line per reason, with
// the count and the first thing refused.
import type { Client, PublishPacket } from 'aedes';
import type { Logger } from 'pino';
import type { AuditRecord } from '../audit/audit-log.js';
import { permissionId } from '../catalog/index.js';
import { decideById } from '../decide/decide.js';
import type { PolicyView } from './broker.js';
import { REQUEST_ID, type Marked, type Session } from './session.js';

const BULK_PERMISSION = permissionId('EXECUTE_BULK_UPDATE');
/** Things one bulk request may name (after removing repeats); the rest are ignored and logged. */
export const MAX_BULK_TARGETS = 10_000;

export interface BulkDeps {
  audit(r: AuditRecord): void;
  fanOutTopic(thing: string, operation: string): string;
  /** Attaches the share's authority (the sender's), as for any action. */
  authorize(share: PublishPacket & Marked, principal: string, clientId: string, source: 'cloud' | 'local', requestId: string | null): void;
  publish(share: PublishPacket & Marked): void;
  readonly log: Logger;
}

export function fanOutBulk(deps: BulkDeps, client: Client, session: Session, operation: string, packet: PublishPacket & Marked, view: PolicyView): void {
  const index = view.index!;
  let named: unknown;
  try {
    named = packet.payload.length > 0 ? (JSON.parse(packet.payload.toString('utf8')) as { things?: unknown }).things : undefined;
  } catch {
    named = undefined;
  }
  // Named things: each once, at most MAX_BULK_TARGETS; none named: every thing in scope.
  const everyThing = !Array.isArray(named);
  const unique = everyThing ? index.thingIds : [...new Set((named as unknown[]).filter((t): t is string => typeof t === 'string'))];
  const targets = unique.length > MAX_BULK_TARGETS ? unique.slice(0, MAX_BULK_TARGETS) : unique;
  // Refused targets: one audit record per reason, with the count and the first thing refused.
  const refused = new Map<string, { count: number; thing: string }>();
  let delivered = 0;
  for (const thing of targets) {
    const d = decideById(index, session.principal!, BULK_PERMISSION, thing, view.now());
    if (!d.allow) {
      if (everyThing && (d.reason === 'OUT_OF_SCOPE' || d.reason === 'GATEWAY_SCOPE')) continue; // "all in scope": skip silently
      const r = refused.get(d.reason!);
      if (r) r.count++;
      else refused.set(d.reason!, { count: 1, thing });
      continue;
    }
    delivered++;
    const topic = deps.fanOutTopic(thing, operation);
    deps.audit({ principal: session.principal, clientId: client.id, action: 'EXECUTE_BULK_UPDATE', topic, thing, decision: 'allow', snapshotVersion: index.version });
    const share = { cmd: 'publish', topic, payload: packet.payload, qos: packet.qos, retain: false, dup: false } as PublishPacket & Marked;
    deps.authorize(share, session.principal!, client.id!, session.credential === 'cloud' ? 'cloud' : 'local', packet[REQUEST_ID] ?? null);
    deps.publish(share);
  }
  for (const [reason, r] of refused) {
    deps.audit({ principal: session.principal, clientId: client.id, action: 'EXECUTE_BULK_UPDATE', topic: packet.topic, thing: r.thing, decision: 'deny', reason, snapshotVersion: index.version, ...(r.count > 1 ? { count: r.count } : {}) });
  }
  const truncated = unique.length - targets.length;
  deps.log.info({ principal: session.principal, operation, targets: targets.length, delivered, refused: Object.fromEntries([...refused].map(([k, v]) => [k, v.count])), ...(truncated > 0 ? { truncated } : {}) }, 'bulk update fanned out');
}
