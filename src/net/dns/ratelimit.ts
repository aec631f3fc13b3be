// Per-source rate limit: a token bucket per client address, checked before a query is decoded, so a
// flooding container costs one Map read per packet and cannot starve the others. Over the limit,
// queries are dropped (an answer would only feed the flood; a real resolver retries). The table is
// bounded: when full, buckets that have refilled completely (idle sources) are swept, and if none
// is, new sources share one overflow bucket.
export interface RateLimitOptions {
  /** queries per second a source may send on average; 0 disables the limit */
  rate: number;
  /** how many it may send at once */
  burst?: number;
  maxSources?: number;
  now?: () => number;
}

interface Bucket {
  tokens: number;
  at: number;
}

export const DEFAULT_RATE = 2000;

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly rate: number;
  private readonly burst: number;
  private readonly maxSources: number;
  private readonly now: () => number;
  dropped = 0;

  constructor(opts: RateLimitOptions) {
    this.rate = opts.rate;
    this.burst = opts.burst ?? Math.max(1, opts.rate * 2);
    this.maxSources = opts.maxSources ?? 4096;
    this.now = opts.now ?? Date.now;
  }

  /** Whether a query from `source` may be served now (takes a token if so). */
  allow(source: string): boolean {
    if (this.rate <= 0) return true;
    const now = this.now();
    let b = this.buckets.get(source);
    if (!b) {
      if (this.buckets.size >= this.maxSources) this.sweep(now);
      const key = this.buckets.size >= this.maxSources ? '\u0000overflow' : source;
      b = this.buckets.get(key);
      if (!b) {
        b = { tokens: this.burst, at: now };
        this.buckets.set(key, b);
      }
    }
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.rate);
    b.at = now;
    if (b.tokens < 1) {
      this.dropped++;
      return false;
    }
    b.tokens -= 1;
    return true;
  }

  private sweep(now: number): void {
    for (const [k, b] of this.buckets) {
      if (b.tokens + ((now - b.at) / 1000) * this.rate >= this.burst) this.buckets.delete(k);
    }
  }

  get sources(): number {
    return this.buckets.size;
  }
}
