// Per-principal token buckets (commands per minute, firmware updates per hour).
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly perMs: number;

  /** `limit` actions per `windowMs`, with bursts up to `limit`; limit 0 disables. */
  constructor(
    private readonly limit: number,
    windowMs: number,
    private readonly maxKeys = 100_000,
  ) {
    this.perMs = limit / windowMs;
  }

  get enabled(): boolean {
    return this.limit > 0;
  }

  /** Takes one token for `key`; false when the bucket is empty. */
  take(key: string, now: number): boolean {
    if (this.limit <= 0) return true;
    let b = this.buckets.get(key);
    if (!b) {
      if (this.buckets.size >= this.maxKeys) this.buckets.clear();
      b = { tokens: this.limit, at: now };
      this.buckets.set(key, b);
    } else {
      b.tokens = Math.min(this.limit, b.tokens + (now - b.at) * this.perMs);
      b.at = now;
    }
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  clear(): void {
    this.buckets.clear();
  }
}
