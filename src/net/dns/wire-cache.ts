// Encoded answers, keyed by the query's bytes after its ID (flags, question as spelled, OPT) and the
// address it came to: a repeated query — the common case, a container asking for the same names —
// costs a Map read and a copy with the new ID instead of a decode and an encode. An entry is only
// as good as what it was made from: a local answer until the name table changes (its generation),
// a cached forwarded answer until its TTLs would read one second lower (they count down) or it
// expires. Bounded: emptied when full (cheaper than LRU bookkeeping on the hot path).
export interface WireEntry {
  buf: Buffer;
  /** the name table generation it was made under (local answers), or -1 */
  generation: number;
  /** ms; valid while now < until */
  until: number;
}

export class WireCache {
  private readonly entries = new Map<string, WireEntry>();
  hits = 0;

  constructor(private readonly maxEntries = 20000, private readonly now: () => number = Date.now) {}

  static key(hostAddress: string, msg: Buffer): string {
    return hostAddress + msg.toString('latin1', 2);
  }

  /** The answer for `msg` with its ID, or undefined. */
  get(key: string, msg: Buffer, generation: number): Buffer | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if ((e.generation !== -1 && e.generation !== generation) || this.now() >= e.until) {
      this.entries.delete(key);
      return undefined;
    }
    this.hits++;
    const out = Buffer.allocUnsafe(e.buf.length);
    e.buf.copy(out);
    out[0] = msg[0] as number;
    out[1] = msg[1] as number;
    return out;
  }

  /** A local answer: good until the table changes. */
  putLocal(key: string, buf: Buffer, generation: number): void {
    this.put(key, { buf, generation, until: Infinity });
  }

  /** A forwarded answer from the cache: good for `ms` (until its TTLs tick down, or expire). */
  putTimed(key: string, buf: Buffer, ms: number): void {
    if (ms > 0) this.put(key, { buf, generation: -1, until: this.now() + ms });
  }

  private put(key: string, e: WireEntry): void {
    if (this.entries.size >= this.maxEntries) this.entries.clear();
    this.entries.set(key, e);
  }

  clear(): void {
    this.entries.clear();
  }

  get size(): number {
    return this.entries.size;
  }
}
