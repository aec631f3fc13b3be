// The cache of forwarded answers, honouring TTLs: a positive answer lives as long as its smallest
// TTL; a negative one (NXDOMAIN, or NOERROR without an answer: NODATA) as long as its SOA's TTL
// capped by the SOA's MINIMUM field (RFC 2308 §5) — and without an SOA it is not cached (RFC 2308
// §5: "SHOULD NOT"). SERVFAIL and other failures are not cached. What is served from the cache has
// its TTLs counted down by the time it spent there. Bounded: least recently used entries go first.
import type { Answer } from 'dns-packet';
import { RCODE } from './message.js';

export interface CachedAnswer {
  rcode: number;
  authenticData: boolean;
  answers: Answer[];
  authorities: Answer[];
  additionals: Answer[];
}

interface Entry {
  value: CachedAnswer;
  storedAt: number;
  expiresAt: number;
}

export interface CacheOptions {
  maxEntries?: number;
  /** longest time anything is kept, seconds (a day by default) */
  maxTtl?: number;
  /** clock in ms (tests) */
  now?: () => number;
}

/** The key of a question: case-insensitive name, type, class, and the DO bit (DNSSEC records or not). */
export function cacheKey(name: string, type: string, cls: string, dnssecOk: boolean): string {
  return `${name}\u0000${type}\u0000${cls}\u0000${dnssecOk ? 1 : 0}`;
}

/** How long an answer may be cached, in seconds; undefined: not at all. */
export function cacheTtl(a: Pick<CachedAnswer, 'rcode' | 'answers' | 'authorities'>, maxTtl = 86400): number | undefined {
  const ttlOf = (r: Answer): number => ('ttl' in r && typeof r.ttl === 'number' ? r.ttl : 0);
  if (a.rcode === RCODE.NOERROR && a.answers.length > 0) {
    return Math.min(maxTtl, ...a.answers.map(ttlOf));
  }
  if (a.rcode === RCODE.NXDOMAIN || (a.rcode === RCODE.NOERROR && a.answers.length === 0)) {
    const soa = a.authorities.find((r) => r.type === 'SOA');
    if (!soa || soa.type !== 'SOA') return undefined;
    return Math.min(maxTtl, ttlOf(soa), soa.data.minimum ?? 0);
  }
  return undefined;
}

function withTtl(records: Answer[], elapsed: number): Answer[] {
  if (elapsed === 0) return records;
  return records.map((r) => (r.type === 'OPT' || !('ttl' in r) || typeof r.ttl !== 'number' ? r : { ...r, ttl: Math.max(0, r.ttl - elapsed) }));
}

export class AnswerCache {
  private readonly entries = new Map<string, Entry>();
  private readonly maxEntries: number;
  private readonly maxTtl: number;
  private readonly now: () => number;
  hits = 0;
  misses = 0;

  constructor(opts: CacheOptions = {}) {
    this.maxEntries = opts.maxEntries ?? 10000;
    this.maxTtl = opts.maxTtl ?? 86400;
    this.now = opts.now ?? Date.now;
  }

  get size(): number {
    return this.entries.size;
  }

  /** Stores an answer if it may be cached; returns its lifetime in seconds (undefined: not stored). */
  put(key: string, value: CachedAnswer): number | undefined {
    const ttl = cacheTtl(value, this.maxTtl);
    if (ttl === undefined || ttl <= 0) return undefined;
    const now = this.now();
    this.entries.delete(key);
    this.entries.set(key, { value, storedAt: now, expiresAt: now + ttl * 1000 });
    if (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
    return ttl;
  }

  /** The answer with TTLs counted down, or undefined (absent or expired). */
  get(key: string): { value: CachedAnswer; remaining: number; exactForMs: number } | undefined {
    const e = this.entries.get(key);
    const now = this.now();
    if (!e || e.expiresAt <= now) {
      if (e) this.entries.delete(key);
      this.misses++;
      return undefined;
    }
    // least recently used first: a hit moves the entry to the end
    this.entries.delete(key);
    this.entries.set(key, e);
    this.hits++;
    const elapsed = Math.floor((now - e.storedAt) / 1000);
    const v = e.value;
    return {
      value: { ...v, answers: withTtl(v.answers, elapsed), authorities: withTtl(v.authorities, elapsed), additionals: withTtl(v.additionals, elapsed) },
      remaining: Math.ceil((e.expiresAt - now) / 1000),
      // how long these counted-down TTLs stay exact (until the next whole second, or expiry)
      exactForMs: Math.min(1000 - ((now - e.storedAt) % 1000), e.expiresAt - now),
    };
  }

  clear(): void {
    this.entries.clear();
  }
}
