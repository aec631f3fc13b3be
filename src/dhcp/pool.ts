// The address allocator of one served subnet: which addresses of a range are taken. It knows nothing
// of time, clients or leases (coredhcp's allocator contract): the lease table decides when an address
// is taken or given back, this only answers "is it free" and "give me one" in O(1) and amortised
// O(range/32). A bitmap, so a /16 pool costs 8 KiB.
import { NspawnError } from '../errors.js';
import { type Ipv4, ipv4ToString } from './ipv4.js';

/** No address of the pool is free. */
export class AddressPoolExhaustedError extends NspawnError {
  constructor(first: Ipv4, last: Ipv4) {
    super('DHCP_POOL_EXHAUSTED', `no free address in ${ipv4ToString(first)}-${ipv4ToString(last)}`);
  }
}

/** A take of an address already taken, or a free of one not taken: a bookkeeping bug. */
export class AllocationError extends NspawnError {
  constructor(message: string) {
    super('DHCP_ALLOCATION', message);
  }
}

/** Largest pool (2^24 addresses: a /8), so a typo like /1 cannot allocate gigabytes. */
export const MAX_POOL_SIZE = 1 << 24;

export class AddressPool {
  readonly first: Ipv4;
  readonly last: Ipv4;
  readonly size: number;
  private readonly bits: Uint32Array;
  /** Every word below this index is full. */
  private lowWord = 0;
  private usedCount = 0;

  constructor(first: Ipv4, last: Ipv4) {
    if (last < first) throw new RangeError(`pool ${ipv4ToString(first)}-${ipv4ToString(last)} is empty (last before first)`);
    const size = last - first + 1;
    if (size > MAX_POOL_SIZE) throw new RangeError(`pool ${ipv4ToString(first)}-${ipv4ToString(last)} has ${size} addresses; at most ${MAX_POOL_SIZE} (a /8) are supported`);
    this.first = first;
    this.last = last;
    this.size = size;
    this.bits = new Uint32Array(Math.ceil(size / 32));
    // Bits past the end of the range are permanently set so searches never return them.
    const tail = size % 32;
    if (tail) this.bits[this.bits.length - 1] = (0xffffffff << tail) >>> 0;
  }

  get used(): number {
    return this.usedCount;
  }
  get free(): number {
    return this.size - this.usedCount;
  }

  contains(a: Ipv4): boolean {
    return a >= this.first && a <= this.last;
  }

  /** In the range and not taken. */
  isFree(a: Ipv4): boolean {
    if (a < this.first || a > this.last) return false;
    const i = a - this.first;
    return ((this.bits[i >>> 5] as number) & (1 << (i & 31))) === 0;
  }

  /** Marks an address taken. Throws AllocationError if it already is; addresses outside are ignored. */
  take(a: Ipv4): void {
    if (!this.contains(a)) return;
    const i = a - this.first;
    const w = i >>> 5;
    const bit = 1 << (i & 31);
    if ((this.bits[w] as number) & bit) throw new AllocationError(`address ${ipv4ToString(a)} is already taken`);
    this.bits[w] = ((this.bits[w] as number) | bit) >>> 0;
    this.usedCount++;
  }

  /** Gives an address back. Throws AllocationError if it was not taken; addresses outside are ignored. */
  release(a: Ipv4): void {
    if (!this.contains(a)) return;
    const i = a - this.first;
    const w = i >>> 5;
    const bit = 1 << (i & 31);
    if (!((this.bits[w] as number) & bit)) throw new AllocationError(`address ${ipv4ToString(a)} is not taken`);
    this.bits[w] = ((this.bits[w] as number) & ~bit) >>> 0;
    this.usedCount--;
    if (w < this.lowWord) this.lowWord = w;
  }

  /** The lowest free address, without taking it. */
  firstFree(): Ipv4 | undefined {
    const bits = this.bits;
    let w = this.lowWord;
    while (w < bits.length && bits[w] === 0xffffffff) w++;
    this.lowWord = w; // a cache of "everything below is full", not state a caller sees
    if (w >= bits.length) return undefined;
    const inv = ~(bits[w] as number);
    const bit = 31 - Math.clz32(inv & -inv);
    return (this.first + w * 32 + bit) >>> 0;
  }

  /** Takes the hint when it is free, else the lowest free address. */
  allocate(hint?: Ipv4): Ipv4 {
    const a = hint !== undefined && this.isFree(hint) ? hint : this.firstFree();
    if (a === undefined) throw new AddressPoolExhaustedError(this.first, this.last);
    this.take(a);
    return a;
  }
}
