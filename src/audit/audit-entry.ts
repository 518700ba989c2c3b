// One audit record as written to and read from the log: the fields, how a caller's record becomes
// an entry (only these fields, each type-checked and length-bounded, so whatever else a caller's
// object carries — a password, a token, a payload — never reaches the file), and the line format.

export interface AuditEntry {
  /** ISO 8601, set by record() from the injected clock when absent. */
  time: string;
  /**
   * Position in the log: 1, 2, 3, ... over the log's whole life (it continues across restarts), set
   * when the line is written. A gap is records lost; a repeat is an upload sent twice.
   */
  seq?: number;
  /** Principal id; null for anonymous or unknown. */
  principal: string | null;
  clientId: string | null;
  /** A permission API name (EXECUTE_THING_COMMAND ...) or 'publish' / 'subscribe' / 'connect' for topic-level decisions. */
  action: string;
  topic?: string;
  thing?: string | null;
  /** 'lost': not a decision but the record that the lines fromSeq..toSeq were lost (count of them). */
  decision: 'allow' | 'deny' | 'lost';
  /** Deny reason code (NOT_GRANTED, TOPIC_DENIED, RATE_LIMITED, ...). */
  reason?: string;
  snapshotVersion: number | null;
  /** Identical denials coalesced into this line (absent: 1). */
  count?: number;
  source?: 'local' | 'cloud';
  /**
   * Where an action was decided: absent or 'publish' when published; 'delivery' when decided again
   * at a delivery (live, from a session's queue, redelivered, after a restart); 'queue' when it was
   * dropped from a session's queue because its time to live passed.
   */
  stage?: 'publish' | 'delivery' | 'queue';
  /** At delivery: the receiving client id (principal/clientId are the sender's). */
  receiver?: string;
  /** At delivery: when the action was authorized at publish (ISO 8601). */
  authorizedAt?: string;
  /** The publish had the retain flag, which was ignored: actions are never retained. */
  retainIgnored?: boolean;
  /** The publish was the client's will, decided when it fired. */
  will?: boolean;
  /** A refused connection's remote address ("*": one of many, coalesced). */
  remote?: string;
  /** decision 'lost': the first and last seq lost, and the time span they were recorded in. */
  fromSeq?: number;
  toSeq?: number;
  from?: string;
  to?: string;
}

/** Records rotated away (disk bound) before they were uploaded. */
export interface AuditLoss {
  readonly count: number;
  readonly fromSeq: number;
  readonly toSeq: number;
  /** ISO 8601: the lost records were made between these times. */
  readonly from: string;
  readonly to: string;
}

/** The line that records a loss: action "audit", decision "lost", count, the seq range and the times. */
export function lossEntry(time: string, loss: AuditLoss): AuditEntry {
  return { time, decision: 'lost', principal: null, clientId: null, action: 'audit', snapshotVersion: null, count: loss.count, fromSeq: loss.fromSeq, toSeq: loss.toSeq, from: loss.from, to: loss.to };
}

export type AuditRecord = Omit<AuditEntry, 'time'> & { time?: string };

/** String fields are cut to this many characters (a topic can be 64 KiB; a line stays small). */
const MAX_FIELD_CHARS = 256;

export function clamp(s: string): string {
  return s.length <= MAX_FIELD_CHARS ? s : `${s.slice(0, MAX_FIELD_CHARS - 1)}…`;
}

function stringOrNull(v: unknown): string | null {
  return typeof v === 'string' ? clamp(v) : null;
}

/**
 * The entry as written: only AuditEntry's fields, each checked. `time` is left empty: the caller
 * sets it only when the entry is not coalesced (toISOString is most of the cost of a record).
 */
export function toEntry(r: AuditRecord): AuditEntry {
  const e: AuditEntry = {
    time: '',
    decision: r.decision === 'allow' ? 'allow' : 'deny',
    principal: stringOrNull(r.principal),
    clientId: stringOrNull(r.clientId),
    action: typeof r.action === 'string' ? clamp(r.action) : '?',
    snapshotVersion: typeof r.snapshotVersion === 'number' && Number.isFinite(r.snapshotVersion) ? r.snapshotVersion : null,
  };
  if (typeof r.reason === 'string') e.reason = clamp(r.reason);
  if (r.thing !== undefined) e.thing = stringOrNull(r.thing);
  if (typeof r.topic === 'string') e.topic = clamp(r.topic);
  if (typeof r.count === 'number' && Number.isSafeInteger(r.count) && r.count > 1) e.count = r.count;
  if (r.source === 'local' || r.source === 'cloud') e.source = r.source;
  if (r.stage === 'publish' || r.stage === 'delivery' || r.stage === 'queue') e.stage = r.stage;
  if (typeof r.receiver === 'string') e.receiver = clamp(r.receiver);
  if (typeof r.authorizedAt === 'string') e.authorizedAt = clamp(r.authorizedAt);
  if (r.retainIgnored === true) e.retainIgnored = true;
  if (r.will === true) e.will = true;
  if (typeof r.remote === 'string') e.remote = clamp(r.remote);
  return e;
}

/** One line of the file, keys in a fixed order. */
export function serialize(e: AuditEntry): string {
  // time first and seq second: the writer reads both back from a line's start (seqAndTime).
  const o: Record<string, unknown> = { time: e.time, seq: e.seq, decision: e.decision };
  if (e.reason !== undefined) o['reason'] = e.reason;
  o['principal'] = e.principal;
  o['clientId'] = e.clientId;
  o['action'] = e.action;
  if (e.thing !== undefined) o['thing'] = e.thing;
  if (e.topic !== undefined) o['topic'] = e.topic;
  o['snapshotVersion'] = e.snapshotVersion;
  if (e.count !== undefined) o['count'] = e.count;
  if (e.source !== undefined) o['source'] = e.source;
  if (e.stage !== undefined) o['stage'] = e.stage;
  if (e.receiver !== undefined) o['receiver'] = e.receiver;
  if (e.authorizedAt !== undefined) o['authorizedAt'] = e.authorizedAt;
  if (e.retainIgnored !== undefined) o['retainIgnored'] = e.retainIgnored;
  if (e.will !== undefined) o['will'] = e.will;
  if (e.remote !== undefined) o['remote'] = e.remote;
  if (e.fromSeq !== undefined) o['fromSeq'] = e.fromSeq;
  if (e.toSeq !== undefined) o['toSeq'] = e.toSeq;
  if (e.from !== undefined) o['from'] = e.from;
  if (e.to !== undefined) o['to'] = e.to;
  return JSON.stringify(o) + '\n';
}

/** The seq and time of a line this module wrote; undefined for anything else (older lines have no seq). */
export function seqAndTime(line: string): { seq: number; time: string } | undefined {
  let doc: unknown;
  try {
    doc = JSON.parse(line);
  } catch {
    return undefined;
  }
  const o = doc as { seq?: unknown; time?: unknown } | null;
  if (typeof o !== 'object' || o === null || typeof o.time !== 'string' || typeof o.seq !== 'number' || !Number.isSafeInteger(o.seq) || o.seq < 1) return undefined;
  return { seq: o.seq, time: o.time };
}

/** Same denial: everything but time and count. */
export function sameDenial(a: AuditEntry, b: AuditEntry): boolean {
  return (
    a.decision === 'deny' &&
    b.decision === 'deny' &&
    a.principal === b.principal &&
    a.clientId === b.clientId &&
    a.action === b.action &&
    a.topic === b.topic &&
    a.thing === b.thing &&
    a.reason === b.reason &&
    a.snapshotVersion === b.snapshotVersion &&
    a.source === b.source &&
    a.stage === b.stage &&
    a.receiver === b.receiver &&
    a.will === b.will &&
    a.remote === b.remote
  );
}
