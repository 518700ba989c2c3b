// Refused connections, coalesced per source (SPEC section 6: nobody outside can erase the audit trail).
//
// A refused CONNECT is audited, and everything in it (username, client id) is the sender's choice.
// One client making thousands of CONNECTs a second must not write thousands of audit lines and
// rotate the records that matter out of the bounded log. So per (remote address, reason) and
// interval, the first refusal is recorded as it comes, with its username and client id cut to
// FIELD_CHARS; the ones after it in the same interval are only counted, and one record with the
// count closes the interval. At most MAX_SOURCES sources are told apart per interval; refusals
// from any further ones are counted under the remote address "*".

/** Characters kept of an attacker-supplied field (username, client id) in a refusal record. */
export const FIELD_CHARS = 64;
/** Sources told apart per interval. */
export const MAX_SOURCES = 1024;

export interface CoalescedRefusals {
  readonly remote: string;
  readonly reason: string;
  /** Refusals counted, not recorded one by one. */
  readonly count: number;
}

export class RefusalCoalescer {
  private readonly seen = new Map<string, { remote: string; reason: string; passed: number; suppressed: number }>();

  /**
   * @param maxSources sources told apart per interval
   * @param perKey how many of one source and reason are passed per interval (1: the first only)
   */
  constructor(
    private readonly maxSources = MAX_SOURCES,
    private readonly perKey = 1,
  ) {}

  /** Whether this refusal is among the first `perKey` of its source and reason in the interval (record it); else it is counted. */
  first(remote: string, reason: string): boolean {
    let key = `${remote}\t${reason}`;
    let entry = this.seen.get(key);
    if (entry === undefined && this.seen.size >= this.maxSources) {
      key = `*\t${reason}`;
      entry = this.seen.get(key);
      if (entry === undefined) {
        this.seen.set(key, { remote: '*', reason, passed: this.perKey, suppressed: 1 });
        return false;
      }
    }
    if (entry === undefined) {
      this.seen.set(key, { remote, reason, passed: 1, suppressed: 0 });
      return true;
    }
    if (entry.passed < this.perKey) {
      entry.passed++;
      return true;
    }
    entry.suppressed++;
    return false;
  }

  /** Ends the interval: what was only counted, per source and reason. */
  flush(): CoalescedRefusals[] {
    const out: CoalescedRefusals[] = [];
    for (const e of this.seen.values()) if (e.suppressed > 0) out.push({ remote: e.remote, reason: e.reason, count: e.suppressed });
    this.seen.clear();
    return out;
  }
}

/** An attacker-supplied field cut to FIELD_CHARS. */
export function truncateField(s: string | null | undefined): string | null {
  if (typeof s !== 'string') return null;
  return s.length <= FIELD_CHARS ? s : `${s.slice(0, FIELD_CHARS - 1)}…`;
}
