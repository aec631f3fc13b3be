// The lease table of one served interface: who holds which address until when. Entries are keyed by
// client identity (option 61, else the hardware address); an address is held by at most one entry.
// An entry is `offered` (held briefly between OFFER and REQUEST), `bound` (ACKed) or `released`
// (given back by RELEASE or by expiry, kept for a while only as the client's preferred address).
// The table takes and gives back addresses in the pool bitmap so that `firstFree` never returns an
// address someone holds, a reserved, excluded or a quarantined (DECLINEd) one.
//
// Time is passed in (ms since the epoch); nothing here reads a clock. Expiry is a min-heap of
// (time, entry, generation) for bindings and memories, and a FIFO queue for offers (they are all held
// for the same time, so the queue is in expiry order): each change adds an item and older ones are
// skipped when their time comes, so `expire(now)` costs O(expired · log n) and nothing scans the
// whole table.
import type { ResolvedReservation, SubnetConfig } from './config.js';
import { type Ipv4 } from './ipv4.js';
import { AddressPool, AllocationError } from './pool.js';

export type LeaseState = 'offered' | 'bound' | 'released';

export interface Lease {
  /** Client identity: "id:<hex of option 61>" or "hw:<htype>:<hex of chaddr>". */
  clientKey: string;
  /** Hardware address ("02:00:00:00:00:42"), for logs and the lease file. */
  mac: string;
  address: Ipv4;
  /** When the binding (or offer hold, or address preference) ends, ms since the epoch. */
  expiresAt: number;
  state: LeaseState;
  hostname?: string;
  /** Bumped on every change; heap items of older generations are stale. */
  gen: number;
}

/** What a client is known as: its key, and its MAC when it has an Ethernet one. */
export interface ClientIdentity {
  key: string;
  /** chaddr as lowercase hex when htype is Ethernet (1) and hlen is 6. */
  macHex?: string;
  /** chaddr as text for logs and the lease file. */
  mac: string;
}

interface HeapItem {
  at: number;
  lease: Lease;
  gen: number;
}

/** An address being taken from a client when it comes back, for the caller to log. */
export interface ExpiryEvent {
  lease: Lease;
  /** 'offer' when an unanswered offer lapsed, 'lease' when a binding ran out, 'forget' when a released entry was dropped. */
  what: 'offer' | 'lease' | 'forget';
}

export class LeaseTable {
  readonly config: SubnetConfig;
  readonly pool: AddressPool;
  private readonly byKey = new Map<string, Lease>();
  private readonly byAddr = new Map<Ipv4, Lease>();
  private readonly quarantine = new Map<Ipv4, number>();
  private readonly reservationsByKey = new Map<string, ResolvedReservation>();
  private readonly reservationsByMac = new Map<string, ResolvedReservation>();
  private readonly reservationsByAddr = new Map<Ipv4, ResolvedReservation>();
  /** Released entries in the order they were released: the oldest go first when there are too many. */
  private readonly remembered = new Map<string, Lease>();
  private heap: HeapItem[] = [];
  /** Offers in the order they were made (and, the hold time being one, in expiry order). */
  private offers: HeapItem[] = [];
  private offersHead = 0;
  /** How long a released or expired entry is remembered as the client's preferred address. */
  readonly rememberMs: number;
  /** At most this many released entries are kept (a client inventing identities cannot grow the table). */
  readonly rememberMax: number;

  constructor(config: SubnetConfig, opts: { rememberMs?: number; rememberMax?: number } = {}) {
    this.config = config;
    this.rememberMs = opts.rememberMs ?? 3_600_000;
    this.rememberMax = opts.rememberMax ?? Math.max(1024, 2 * (config.poolLast - config.poolFirst + 1));
    this.pool = new AddressPool(config.poolFirst, config.poolLast);
    for (const a of config.excluded) if (this.pool.isFree(a)) this.pool.take(a);
    for (const r of config.reservations) this.addReservation(r);
  }

  // --- reservations -------------------------------------------------------------------------

  reservationFor(client: ClientIdentity): ResolvedReservation | undefined {
    return this.reservationsByKey.get(client.key) ?? (client.macHex !== undefined ? this.reservationsByMac.get(client.macHex) : undefined);
  }
  reservationAt(a: Ipv4): ResolvedReservation | undefined {
    return this.reservationsByAddr.get(a);
  }
  reservations(): ResolvedReservation[] {
    return [...this.reservationsByAddr.values()];
  }

  /**
   * Adds a reservation (replacing any for the same address or client). A different client holding the
   * address loses it: the reservation is the launcher's word. Returns that client's entry, if any.
   */
  addReservation(r: ResolvedReservation): Lease | undefined {
    const prev = this.reservationsByAddr.get(r.address);
    if (prev) this.removeReservation(prev);
    for (const old of [r.clientKey && this.reservationsByKey.get(r.clientKey), r.macHex && this.reservationsByMac.get(r.macHex)]) {
      if (old) this.removeReservation(old);
    }
    const holder = this.byAddr.get(r.address);
    let displaced: Lease | undefined;
    if (holder && !matchesReservation(holder, r)) {
      this.drop(holder);
      displaced = holder;
    }
    this.reservationsByAddr.set(r.address, r);
    if (r.clientKey !== undefined) this.reservationsByKey.set(r.clientKey, r);
    if (r.macHex !== undefined) this.reservationsByMac.set(r.macHex, r);
    if (!this.byAddr.has(r.address) && this.pool.isFree(r.address)) this.pool.take(r.address);
    return displaced;
  }

  removeReservation(r: ResolvedReservation): void {
    if (this.reservationsByAddr.get(r.address) !== r) return;
    this.reservationsByAddr.delete(r.address);
    if (r.clientKey !== undefined && this.reservationsByKey.get(r.clientKey) === r) this.reservationsByKey.delete(r.clientKey);
    if (r.macHex !== undefined && this.reservationsByMac.get(r.macHex) === r) this.reservationsByMac.delete(r.macHex);
    if (!this.byAddr.has(r.address) && !this.config.excluded.has(r.address) && !this.quarantine.has(r.address)) this.pool.release(r.address);
  }

  // --- queries (the decision logic's view) ----------------------------------------------------

  lease(clientKey: string): Lease | undefined {
    return this.byKey.get(clientKey);
  }
  holderOf(a: Ipv4): Lease | undefined {
    return this.byAddr.get(a);
  }
  isQuarantined(a: Ipv4, now: number): boolean {
    const until = this.quarantine.get(a);
    return until !== undefined && until > now;
  }

  /**
   * May `a` be given to this client now? It must be its reservation, or a pool address that is not
   * excluded, not reserved for another client, not quarantined and not held by another live entry.
   */
  availableFor(a: Ipv4, client: ClientIdentity, now: number): boolean {
    const r = this.reservationsByAddr.get(a);
    if (r) return reservationMatches(r, client);
    if (!this.pool.contains(a) || this.config.excluded.has(a)) return false;
    if (this.isQuarantined(a, now)) return false;
    const holder = this.byAddr.get(a);
    return !holder || holder.clientKey === client.key || holder.expiresAt <= now;
  }

  /** The lowest pool address nobody holds (expired holders not yet swept count as holders). */
  firstFree(): Ipv4 | undefined {
    return this.pool.firstFree();
  }

  get size(): number {
    return this.byKey.size;
  }
  entries(): IterableIterator<Lease> {
    return this.byKey.values();
  }

  // --- changes ----------------------------------------------------------------------------

  /** Holds `a` for the client until `until` (an OFFER). A live binding of the same address stays as it is. */
  hold(client: ClientIdentity, a: Ipv4, until: number, now: number): Lease {
    const cur = this.byKey.get(client.key);
    if (cur && cur.address === a && cur.state === 'bound' && cur.expiresAt > now) return cur;
    return this.put(client, a, until, 'offered', cur?.hostname, now);
  }

  /**
   * Binds `a` to the client until `expiresAt` (an ACK, or a record from the lease file). With `force`
   * (replaying the lease file, where the later record is the truth) a live holder is displaced.
   */
  bind(client: ClientIdentity, a: Ipv4, expiresAt: number, hostname: string | undefined, now: number, force = false): Lease {
    return this.put(client, a, expiresAt, 'bound', hostname, now, force);
  }

  /**
   * The client gave the address back (RELEASE) or its offer was refused: the address is free again,
   * the entry is remembered until `rememberUntil` as the client's preferred address.
   */
  release(clientKey: string, rememberUntil: number): Lease | undefined {
    const cur = this.byKey.get(clientKey);
    if (!cur || cur.state === 'released') return undefined;
    this.unholdAddress(cur);
    this.remember(cur, rememberUntil);
    return cur;
  }

  /** Restores a memory of the client's address (from the lease file) without holding the address. */
  recall(client: ClientIdentity, a: Ipv4, until: number): Lease {
    const cur = this.byKey.get(client.key);
    if (cur) this.drop(cur);
    const l: Lease = { clientKey: client.key, mac: client.mac, address: a, expiresAt: until, state: 'released', gen: 0 };
    this.byKey.set(client.key, l);
    this.remember(l, until);
    return l;
  }

  /** Quarantined addresses and until when. */
  quarantined(): IterableIterator<[Ipv4, number]> {
    return this.quarantine.entries();
  }

  /** Forgets an offer the client did not take (it chose another server). */
  forgetOffer(clientKey: string): Lease | undefined {
    const cur = this.byKey.get(clientKey);
    if (!cur || cur.state !== 'offered') return undefined;
    this.drop(cur);
    return cur;
  }

  /** The client found `a` in use (DECLINE): nobody gets it until `until`. */
  quarantineAddress(a: Ipv4, until: number): void {
    const holder = this.byAddr.get(a);
    if (holder) this.drop(holder);
    if (!this.quarantine.has(a) && this.pool.isFree(a)) this.pool.take(a);
    this.quarantine.set(a, until);
  }

  /** Drops every entry and quarantine (the interface went away). */
  clear(): Lease[] {
    const all = [...this.byKey.values()];
    for (const l of all) this.drop(l);
    for (const a of [...this.quarantine.keys()]) this.endQuarantine(a);
    this.heap = [];
    this.offers = [];
    this.offersHead = 0;
    this.remembered.clear();
    return all;
  }

  /** Ends offers, bindings and memories whose time has come; returns what changed. */
  expire(now: number): ExpiryEvent[] {
    const events: ExpiryEvent[] = [];
    const offers = this.offers;
    while (this.offersHead < offers.length && (offers[this.offersHead] as HeapItem).at <= now) {
      const item = offers[this.offersHead++] as HeapItem;
      const l = item.lease;
      if (item.gen !== l.gen || this.byKey.get(l.clientKey) !== l || l.state !== 'offered') continue;
      this.drop(l);
      events.push({ lease: l, what: 'offer' });
    }
    if (this.offersHead > 1024 && this.offersHead * 2 > offers.length) {
      this.offers = offers.slice(this.offersHead);
      this.offersHead = 0;
    }
    const heap = this.heap;
    while (heap.length && (heap[0] as HeapItem).at <= now) {
      const item = heapPop(heap);
      const l = item.lease;
      if (item.gen !== l.gen || this.byKey.get(l.clientKey) !== l) continue;
      if (l.state === 'offered') {
        this.drop(l);
        events.push({ lease: l, what: 'offer' });
      } else if (l.state === 'bound') {
        this.unholdAddress(l);
        this.remember(l, now + this.rememberMs);
        events.push({ lease: l, what: 'lease' });
      } else {
        this.drop(l);
        events.push({ lease: l, what: 'forget' });
      }
    }
    for (const [a, until] of this.quarantine) if (until <= now) this.endQuarantine(a);
    return events;
  }

  /** Earliest time `expire` has work, or undefined. */
  nextExpiry(): number | undefined {
    const offer = this.offers[this.offersHead]?.at;
    const other = this.heap[0]?.at;
    return offer === undefined ? other : other === undefined ? offer : Math.min(offer, other);
  }

  private put(client: ClientIdentity, a: Ipv4, expiresAt: number, state: LeaseState, hostname: string | undefined, now: number, force = false): Lease {
    let cur = this.byKey.get(client.key);
    const holder = this.byAddr.get(a);
    if (holder && holder !== cur) {
      // Only an expired holder can be displaced; decide() never picks a live one.
      if (holder.expiresAt > now && !force) throw new AllocationError(`address held by ${holder.clientKey}`);
      this.unholdAddress(holder);
      this.remember(holder, now + this.rememberMs);
    }
    if (cur && cur.address !== a) this.unholdAddress(cur);
    if (!cur) {
      cur = { clientKey: client.key, mac: client.mac, address: a, expiresAt, state, hostname, gen: 0 };
      this.byKey.set(client.key, cur);
    } else {
      this.remembered.delete(cur.clientKey);
      cur.address = a;
      cur.expiresAt = expiresAt;
      cur.state = state;
      cur.mac = client.mac;
      if (hostname !== undefined) cur.hostname = hostname;
      cur.gen++;
    }
    if (this.byAddr.get(a) !== cur) {
      this.byAddr.set(a, cur);
      if (this.pool.isFree(a)) this.pool.take(a);
    }
    this.push(cur);
    return cur;
  }

  private drop(l: Lease): void {
    this.unholdAddress(l);
    l.gen++;
    if (this.byKey.get(l.clientKey) === l) this.byKey.delete(l.clientKey);
    if (this.remembered.get(l.clientKey) === l) this.remembered.delete(l.clientKey);
  }

  /** Turns an entry into a memory of the client's address (it must not hold the address any more). */
  private remember(l: Lease, until: number): void {
    l.state = 'released';
    l.expiresAt = until;
    l.gen++;
    this.push(l);
    this.remembered.delete(l.clientKey);
    this.remembered.set(l.clientKey, l);
    while (this.remembered.size > this.rememberMax) {
      const oldest = this.remembered.values().next().value as Lease;
      this.drop(oldest);
    }
  }

  private unholdAddress(l: Lease): void {
    if (this.byAddr.get(l.address) !== l) return;
    this.byAddr.delete(l.address);
    const a = l.address;
    if (!this.reservationsByAddr.has(a) && !this.config.excluded.has(a) && !this.quarantine.has(a) && this.pool.contains(a) && !this.pool.isFree(a)) {
      this.pool.release(a);
    }
  }

  private endQuarantine(a: Ipv4): void {
    this.quarantine.delete(a);
    if (!this.byAddr.has(a) && !this.reservationsByAddr.has(a) && !this.config.excluded.has(a) && this.pool.contains(a) && !this.pool.isFree(a)) {
      this.pool.release(a);
    }
  }

  private push(l: Lease): void {
    if (l.state === 'offered') {
      this.offers.push({ at: l.expiresAt, lease: l, gen: l.gen });
      if (this.offers.length - this.offersHead > 1024 && this.offers.length - this.offersHead > 2 * this.byKey.size) {
        // a client asking again and again: keep only live offers (their order is kept)
        this.offers = this.offers.slice(this.offersHead).filter((x) => x.gen === x.lease.gen && x.lease.state === 'offered');
        this.offersHead = 0;
      }
      return;
    }
    heapPush(this.heap, { at: l.expiresAt, lease: l, gen: l.gen });
    // Every change pushes an item and old ones wait for their time: rebuild when stale ones dominate,
    // so a client renewing in a loop cannot grow the heap.
    if (this.heap.length > 1024 && this.heap.length > 2 * this.byKey.size) {
      const live: HeapItem[] = [];
      for (const e of this.byKey.values()) if (e.state !== 'offered') live.push({ at: e.expiresAt, lease: e, gen: e.gen });
      live.sort((x, y) => x.at - y.at); // a sorted array is a valid min-heap
      this.heap = live;
    }
  }
}

export function reservationMatches(r: ResolvedReservation, client: ClientIdentity): boolean {
  return (r.clientKey !== undefined && r.clientKey === client.key) || (r.macHex !== undefined && r.macHex === client.macHex);
}

function matchesReservation(l: Lease, r: ResolvedReservation): boolean {
  return (r.clientKey !== undefined && r.clientKey === l.clientKey) || (r.macHex !== undefined && r.macHex === l.mac.replace(/:/g, ''));
}

function heapPush(h: HeapItem[], item: HeapItem): void {
  h.push(item);
  let i = h.length - 1;
  while (i > 0) {
    const p = (i - 1) >> 1;
    if ((h[p] as HeapItem).at <= item.at) break;
    h[i] = h[p] as HeapItem;
    i = p;
  }
  h[i] = item;
}

function heapPop(h: HeapItem[]): HeapItem {
  const top = h[0] as HeapItem;
  const last = h.pop() as HeapItem;
  if (h.length) {
    let i = 0;
    const n = h.length;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && (h[r] as HeapItem).at < (h[l] as HeapItem).at ? r : l;
      if ((h[c] as HeapItem).at >= last.at) break;
      h[i] = h[c] as HeapItem;
      i = c;
    }
    h[i] = last;
  }
  return top;
}
