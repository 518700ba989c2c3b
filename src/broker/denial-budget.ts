// How many audit lines one client's denials may write: at most `perSecond` lines a second each.
// Past that, the client's further denials in that second are tallied per (action, reason) and
// written as one line each when the second ends, with `"topic":"*"` and the count. So a client that
// floods denied publishes on ever new topics (which the log's coalescing of identical denials does
// not fold) writes a bounded number of lines: it cannot push the records of others out of the
// bounded log before they are uploaded. Every denial is still counted; only the topics of the
// excess are not kept.
import type { AuditRecord } from '../audit/audit-log.js';

export const DENIAL_LINES_PER_SECOND = 100;
const WINDOW_MS = 1000;
/** Distinct (action, reason) tallied per client and window: actions come from the catalog. */
const MAX_TALLY_KEYS = 64;

interface Tally {
  record: AuditRecord;
  count: number;
}

/** One client's budget; kept on its session. */
export interface DenialWindow {
  start: number;
  lines: number;
  /** Excess denials of the current window, by action and reason. */
  tally: Map<string, Tally> | null;
}

export class DenialBudget {
  /** Windows with a tally not yet written. */
  private readonly pending = new Set<DenialWindow>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly write: (r: AuditRecord) => void,
    private readonly perSecond = DENIAL_LINES_PER_SECOND,
    private readonly clock: () => number = Date.now,
  ) {
    this.timer = setInterval(() => this.sweep(), WINDOW_MS);
    this.timer.unref();
  }

  static window(): DenialWindow {
    return { start: 0, lines: 0, tally: null };
  }

  /** Writes the denial, or tallies it when the client's lines for this second are spent. */
  record(w: DenialWindow, r: AuditRecord): void {
    const now = this.clock();
    if (now - w.start >= WINDOW_MS || now < w.start) {
      this.close(w);
      w.start = now;
      w.lines = 0;
    }
    if (w.lines < this.perSecond) {
      w.lines++;
      this.write(r);
      return;
    }
    const key = `${r.action}\t${r.reason ?? ''}`;
    w.tally ??= new Map();
    const t = w.tally.get(key);
    if (t !== undefined) t.count += r.count ?? 1;
    else if (w.tally.size < MAX_TALLY_KEYS) w.tally.set(key, { record: { ...r, topic: '*', thing: null }, count: r.count ?? 1 });
    else this.write(r); // an absurd variety of actions: no tally to fold it into
    this.pending.add(w);
  }

  /** Writes the window's tally (a client going away, or its second over). */
  close(w: DenialWindow): void {
    const tally = w.tally;
    if (tally === null) return;
    w.tally = null;
    this.pending.delete(w);
    for (const t of tally.values()) this.write({ ...t.record, count: t.count });
  }

  /** Writes every tally whose second is over. */
  sweep(): void {
    const now = this.clock();
    for (const w of this.pending) if (now - w.start >= WINDOW_MS || now < w.start) this.close(w);
  }

  /** Writes every tally now and stops the timer. */
  stop(): void {
    clearInterval(this.timer);
    for (const w of this.pending) this.close(w);
  }
}
