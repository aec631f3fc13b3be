// The lease table of one served interface: who holds which address until when. Entries are keyed by
// client identity (option 61, else the hardware address); an address is held by at most one entry.
// An entry is `offered` (held briefly between OFFER and REQUEST), `bound` (ACKed) or `released`
// (given back by RELEASE or by expiry, kept for a while only as the client's preferred address).
// The table takes and gives back addresses in the pool bitmap so that `firstFree` never returns an
// address someone holds, a reserved, excluded or a quarantined (DECLINEd) one.
//
// Time is passed in (ms since the epoch); nothing here reads a clock. Expiry is one indexed min-heap
// of the entries themselves, ordered by `expiresAt`: each entry knows its position, a change moves it
// in place (O(log n)), so `expire(now)` costs O(expired · log n), nothing scans the whole table, and
// the heap never holds more than the table (no per-change garbage that would outlive a scavenge).
//
// Memory is bounded whatever clients send: addresses held (offers and bindings) are bounded by the
// pool, offers also by `offersMax` (the oldest offer is withdrawn for a new one: an unanswered offer
// is the weakest claim), released entries by `rememberMax` (the oldest are forgotten). Maps holding
// addresses are keyed by the offset in the subnet, a small integer V8 stores inline.
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
  /**
   * Source of the frames that won the entry: the bridge port they came in on ("portN", N its ifindex:
   * decide.ts), else their Ethernet source address (lowercase hex). A RELEASE or DECLINE counts only
   * from it, and dynamic holds are counted per source. Undefined: the client's own MAC (entries from
   * the lease file, or requests whose frame was not seen).
   */
  src?: string;
  /** Position in the table's expiry heap (-1: in none); the table's own bookkeeping. */
  pos: number;
}

/** What a client is known as: its key, and its MAC when it has an Ethernet one. */
export interface ClientIdentity {
  key: string;
  /** chaddr as lowercase hex when htype is Ethernet (1) and hlen is 6. */
  macHex?: string;
  /** chaddr as text for logs and the lease file. */
  mac: string;
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
  /** Offset of the address in the subnet → its holder. */
  private readonly byAddr = new Map<number, Lease>();
  /** Offset of the address in the subnet → quarantined until. */
  private readonly quarantine = new Map<number, number>();
  private readonly reservationsByKey = new Map<string, ResolvedReservation>();
  private readonly reservationsByMac = new Map<string, ResolvedReservation>();
  private readonly reservationsByAddr = new Map<Ipv4, ResolvedReservation>();
  /** Released entries in the order they were released: the oldest go first when there are too many. */
  private readonly remembered = new Map<string, Lease>();
  /** Offered entries in the order they were offered: the oldest is withdrawn when there are too many. */
  private readonly offered = new Map<string, Lease>();
  /** Ethernet source → addresses held (offered or bound) by its entries, reserved addresses not counted. */
  private readonly heldBySource = new Map<string, number>();
  /** Every entry, as a binary min-heap on expiresAt; `lease.pos` is its index. */
  private heap: Lease[] = [];
  /** How long a released or expired entry is remembered as the client's preferred address. */
  readonly rememberMs: number;
  /** At most this many released entries are kept (a client inventing identities cannot grow the table). */
  readonly rememberMax: number;
  /** At most this many offers are held at once (a flood of DISCOVERs from invented clients). */
  readonly offersMax: number;

  constructor(config: SubnetConfig, opts: { rememberMs?: number; rememberMax?: number; offersMax?: number } = {}) {
    this.config = config;
    this.rememberMs = opts.rememberMs ?? 3_600_000;
    this.rememberMax = opts.rememberMax ?? Math.max(1024, 2 * (config.poolLast - config.poolFirst + 1));
    this.offersMax = Math.max(1, opts.offersMax ?? DEFAULT_OFFERS_MAX);
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
    const holder = this.byAddr.get(this.off(r.address));
    let displaced: Lease | undefined;
    if (holder && !matchesReservation(holder, r)) {
      this.drop(holder);
      displaced = holder;
    } else if (holder) {
      this.countHold(holder, -1); // its owner's now: not a dynamic hold any more
    }
    this.reservationsByAddr.set(r.address, r);
    if (r.clientKey !== undefined) this.reservationsByKey.set(r.clientKey, r);
    if (r.macHex !== undefined) this.reservationsByMac.set(r.macHex, r);
    if (!this.byAddr.has(this.off(r.address)) && this.pool.isFree(r.address)) this.pool.take(r.address);
    return displaced;
  }

  removeReservation(r: ResolvedReservation): void {
    if (this.reservationsByAddr.get(r.address) !== r) return;
    this.reservationsByAddr.delete(r.address);
    if (r.clientKey !== undefined && this.reservationsByKey.get(r.clientKey) === r) this.reservationsByKey.delete(r.clientKey);
    if (r.macHex !== undefined && this.reservationsByMac.get(r.macHex) === r) this.reservationsByMac.delete(r.macHex);
    const o = this.off(r.address);
    const holder = this.byAddr.get(o);
    if (holder) this.countHold(holder, 1); // a dynamic hold from now on
    else if (!this.config.excluded.has(r.address) && !this.quarantine.has(o)) this.pool.release(r.address);
  }

  // --- queries (the decision logic's view) ----------------------------------------------------

  lease(clientKey: string): Lease | undefined {
    return this.byKey.get(clientKey);
  }
  holderOf(a: Ipv4): Lease | undefined {
    return this.byAddr.get(this.off(a));
  }
  isQuarantined(a: Ipv4, now: number): boolean {
    const until = this.quarantine.get(this.off(a));
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
    const holder = this.byAddr.get(this.off(a));
    return !holder || holder.clientKey === client.key || holder.expiresAt <= now;
  }

  /** Addresses (not reserved ones) held now by entries won by frames from this Ethernet source. */
  heldFrom(src: string): number {
    return this.heldBySource.get(src) ?? 0;
  }

  /**
   * The oldest offer of another client on a pool address that is not reserved: when nothing is free,
   * it is withdrawn for a new client (an unanswered offer is the weakest claim on an address).
   */
  oldestOffer(exceptKey: string): Lease | undefined {
    let looked = 0;
    for (const l of this.offered.values()) {
      if (l.clientKey !== exceptKey && !this.reservationsByAddr.has(l.address)) return l;
      if (++looked >= 64) break; // reserved ones are few: this only bounds a pathological table
    }
    return undefined;
  }

  /** The lowest pool address nobody holds (expired holders not yet swept count as holders). */
  firstFree(): Ipv4 | undefined {
    return this.pool.firstFree();
  }

  get size(): number {
    return this.byKey.size;
  }
  /** Offers held now. */
  get offerCount(): number {
    return this.offered.size;
  }
  entries(): IterableIterator<Lease> {
    return this.byKey.values();
  }

  // --- changes ----------------------------------------------------------------------------

  /**
   * Holds `a` for the client until `until` (an OFFER). A live binding of the same address stays as it
   * is. With `offersMax` offers held already, the oldest is withdrawn first.
   */
  hold(client: ClientIdentity, a: Ipv4, until: number, now: number, src?: string): Lease {
    const cur = this.byKey.get(client.key);
    if (cur && cur.address === a && cur.state === 'bound' && cur.expiresAt > now) return cur;
    if (cur?.state !== 'offered') {
      while (this.offered.size >= this.offersMax) this.drop(this.offered.values().next().value as Lease);
    }
    return this.put(client, a, until, 'offered', cur?.hostname, now, false, src);
  }

  /**
   * Binds `a` to the client until `expiresAt` (an ACK, or a record from the lease file). With `force`
   * (replaying the lease file, where the later record is the truth) a live holder is displaced.
   */
  bind(client: ClientIdentity, a: Ipv4, expiresAt: number, hostname: string | undefined, now: number, force = false, src?: string): Lease {
    return this.put(client, a, expiresAt, 'bound', hostname, now, force, src);
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
    const l: Lease = { clientKey: client.key, mac: client.mac, address: a, expiresAt: until, state: 'released', pos: -1 };
    this.byKey.set(client.key, l);
    this.remember(l, until);
    return l;
  }

  /** Quarantined addresses and until when. */
  *quarantined(): IterableIterator<[Ipv4, number]> {
    for (const [o, until] of this.quarantine) yield [this.addr(o), until];
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
    const o = this.off(a);
    const holder = this.byAddr.get(o);
    if (holder) this.drop(holder);
    if (!this.quarantine.has(o) && this.pool.isFree(a)) this.pool.take(a);
    this.quarantine.set(o, until);
  }

  /** Drops every entry and quarantine (the interface went away). */
  clear(): Lease[] {
    const all = [...this.byKey.values()];
    for (const l of all) this.drop(l);
    for (const o of [...this.quarantine.keys()]) this.endQuarantine(o);
    this.heap = [];
    this.offered.clear();
    this.remembered.clear();
    return all;
  }

  /** Ends offers, bindings and memories whose time has come; returns what changed. */
  expire(now: number): ExpiryEvent[] {
    const events: ExpiryEvent[] = [];
    const heap = this.heap;
    while (heap.length && (heap[0] as Lease).expiresAt <= now) {
      const l = heap[0] as Lease;
      if (l.state === 'offered') {
        this.drop(l);
        events.push({ lease: l, what: 'offer' });
      } else if (l.state === 'bound') {
        this.unholdAddress(l);
        this.remember(l, now + this.rememberMs); // moves it down the heap
        events.push({ lease: l, what: 'lease' });
      } else {
        this.drop(l);
        events.push({ lease: l, what: 'forget' });
      }
    }
    for (const [o, until] of this.quarantine) if (until <= now) this.endQuarantine(o);
    return events;
  }

  /** Earliest time `expire` has work, or undefined. */
  nextExpiry(): number | undefined {
    return this.heap[0]?.expiresAt;
  }

  private off(a: Ipv4): number {
    return a - this.config.network;
  }
  private addr(o: number): Ipv4 {
    return (this.config.network + o) >>> 0;
  }

  private put(client: ClientIdentity, a: Ipv4, expiresAt: number, state: LeaseState, hostname: string | undefined, now: number, force = false,
    src?: string): Lease {
    let cur = this.byKey.get(client.key);
    const o = this.off(a);
    const holder = this.byAddr.get(o);
    if (holder && holder !== cur) {
      // A live holder gives way only to the owner of the address's reservation (the launcher's word),
      // or when its claim is an unanswered offer (withdrawn: decide() takes an offered address only
      // when nothing else is free); otherwise this is a bookkeeping conflict the caller answers with
      // a NAK. An expired holder is simply gone.
      const reservation = this.reservationsByAddr.get(a);
      if (holder.expiresAt > now && !force && holder.state !== 'offered' && !(reservation && reservationMatches(reservation, client))) {
        throw new AllocationError(`address held by ${holder.clientKey}`);
      }
      if (holder.state === 'offered') this.drop(holder);
      else {
        this.unholdAddress(holder);
        this.remember(holder, now + this.rememberMs);
      }
    }
    if (cur && cur.address !== a) this.unholdAddress(cur);
    else if (cur && cur.src !== src && this.byAddr.get(o) === cur) {
      // the same client, its frames now from another source: the hold moves to that source's count
      this.countHold(cur, -1);
      cur.src = src;
      this.countHold(cur, 1);
    }
    if (!cur) {
      cur = { clientKey: client.key, mac: client.mac, address: a, expiresAt, state, hostname, src, pos: -1 };
      this.byKey.set(client.key, cur);
    } else {
      cur.src = src;
      if (cur.state === 'released') this.remembered.delete(cur.clientKey);
      else if (cur.state === 'offered' && state !== 'offered') this.offered.delete(cur.clientKey);
      cur.address = a;
      cur.expiresAt = expiresAt;
      cur.state = state;
      if (cur.mac !== client.mac) cur.mac = client.mac;
      if (hostname !== undefined) cur.hostname = hostname;
    }
    if (state === 'offered') {
      // re-offered: to the end of the line
      this.offered.delete(cur.clientKey);
      this.offered.set(cur.clientKey, cur);
    }
    if (this.byAddr.get(o) !== cur) {
      this.byAddr.set(o, cur);
      this.countHold(cur, 1);
      if (this.pool.isFree(a)) this.pool.take(a);
    }
    this.schedule(cur);
    return cur;
  }

  private drop(l: Lease): void {
    this.unholdAddress(l);
    this.unschedule(l);
    if (this.byKey.get(l.clientKey) === l) this.byKey.delete(l.clientKey);
    if (this.remembered.get(l.clientKey) === l) this.remembered.delete(l.clientKey);
    if (this.offered.get(l.clientKey) === l) this.offered.delete(l.clientKey);
  }

  /** Turns an entry into a memory of the client's address (it must not hold the address any more). */
  private remember(l: Lease, until: number): void {
    if (l.state === 'offered' && this.offered.get(l.clientKey) === l) this.offered.delete(l.clientKey);
    l.state = 'released';
    l.expiresAt = until;
    this.schedule(l);
    this.remembered.delete(l.clientKey);
    this.remembered.set(l.clientKey, l);
    while (this.remembered.size > this.rememberMax) {
      const oldest = this.remembered.values().next().value as Lease;
      this.drop(oldest);
    }
  }

  private unholdAddress(l: Lease): void {
    const o = this.off(l.address);
    if (this.byAddr.get(o) !== l) return;
    this.byAddr.delete(o);
    this.countHold(l, -1);
    const a = l.address;
    if (!this.reservationsByAddr.has(a) && !this.config.excluded.has(a) && !this.quarantine.has(o) && this.pool.contains(a) && !this.pool.isFree(a)) {
      this.pool.release(a);
    }
  }

  /**
   * Counts a dynamic hold (not on a reserved address) toward its Ethernet source: `src`, else the
   * client's MAC. Only where a cap reads the counts.
   */
  private countHold(l: Lease, delta: 1 | -1): void {
    if (!this.config.maxLeasesPerSource || this.reservationsByAddr.has(l.address)) return;
    const src = l.src ?? l.mac.replace(/:/g, '');
    const n = (this.heldBySource.get(src) ?? 0) + delta;
    if (n > 0) this.heldBySource.set(src, n);
    else this.heldBySource.delete(src);
  }

  private endQuarantine(o: number): void {
    this.quarantine.delete(o);
    const a = this.addr(o);
    if (!this.byAddr.has(o) && !this.reservationsByAddr.has(a) && !this.config.excluded.has(a) && this.pool.contains(a) && !this.pool.isFree(a)) {
      this.pool.release(a);
    }
  }

  // --- the expiry heap ------------------------------------------------------------------------

  /** Puts the entry in the heap, or moves it to where its (changed) expiresAt belongs. */
  private schedule(l: Lease): void {
    const h = this.heap;
    if (l.pos < 0) {
      l.pos = h.length;
      h.push(l);
      this.siftUp(l.pos);
      return;
    }
    this.siftUp(l.pos);
    this.siftDown(l.pos);
  }

  private unschedule(l: Lease): void {
    const i = l.pos;
    if (i < 0) return;
    const h = this.heap;
    l.pos = -1;
    const last = h.pop() as Lease;
    if (last === l) return;
    h[i] = last;
    last.pos = i;
    this.siftUp(i);
    this.siftDown(last.pos);
  }

  private siftUp(i: number): void {
    const h = this.heap;
    const item = h[i] as Lease;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = h[p] as Lease;
      if (parent.expiresAt <= item.expiresAt) break;
      h[i] = parent;
      parent.pos = i;
      i = p;
    }
    h[i] = item;
    item.pos = i;
  }

  private siftDown(i: number): void {
    const h = this.heap;
    const n = h.length;
    const item = h[i] as Lease;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && (h[r] as Lease).expiresAt < (h[l] as Lease).expiresAt ? r : l;
      const child = h[c] as Lease;
      if (child.expiresAt >= item.expiresAt) break;
      h[i] = child;
      child.pos = i;
      i = c;
    }
    h[i] = item;
    item.pos = i;
  }
}

/** Offers held at once per interface, at most (each is a few hundred bytes). */
export const DEFAULT_OFFERS_MAX = 8192;

export function reservationMatches(r: ResolvedReservation, client: ClientIdentity): boolean {
  return (r.clientKey !== undefined && r.clientKey === client.key) || (r.macHex !== undefined && r.macHex === client.macHex);
}

function matchesReservation(l: Lease, r: ResolvedReservation): boolean {
  return (r.clientKey !== undefined && r.clientKey === l.clientKey) || (r.macHex !== undefined && r.macHex === l.mac.replace(/:/g, ''));
}
