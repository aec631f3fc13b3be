// The lease table of one served interface: who holds which address until when. Entries are keyed by
// client identity (option 61, else the hardware address); an address is held by at most one entry.
// An entry is `offered` (held briefly between OFFER and REQUEST), `bound` (ACKed) or `released`
// (given back by RELEASE or by expiry, kept for a while only as the client's preferred address).
// The table takes and gives back addresses in the pool bitmap so that `firstFree` never returns an
// address someone holds, a reserved, excluded or a quarantined (DECLINEd) one.
//
// Time is passed in (ms since the epoch); nothing here reads a clock. Expiry is one indexed min-heap
// of the entries, ordered by their expiry: a change moves an entry in place (O(log n)), so
// `expire(now)` costs O(expired · log n) and nothing scans the whole table.
//
// The entries live in typed arrays (lease-slots.ts), not as an object each: ~100 bytes a lease
// outside the JS heap instead of ~290 in it. What the queries return (`Lease`) is a copy made for
// the caller; it does not follow later changes.
//
// Memory is bounded whatever clients send: addresses held (offers and bindings) are bounded by the
// pool, offers also by `offersMax` (the oldest offer is withdrawn for a new one: an unanswered offer
// is the weakest claim), released entries by `rememberMax` (the oldest are forgotten). The
// quarantine is keyed by the offset in the subnet, a small integer V8 stores inline.
import type { ResolvedReservation, SubnetConfig } from './config.js';
import { type Ipv4 } from './ipv4.js';
import { BOUND, FREE, LeaseSlots, OFFERED, OFFERS, RELEASED, REMEMBERED } from './lease-slots.js';
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
  /** The entries (lease-slots.ts): a slot each, found by client key and by held address. */
  private slots = new LeaseSlots();
  /** Offset of the address in the subnet → quarantined until. */
  private readonly quarantine = new Map<number, number>();
  private readonly reservationsByKey = new Map<string, ResolvedReservation>();
  private readonly reservationsByMac = new Map<string, ResolvedReservation>();
  private readonly reservationsByAddr = new Map<Ipv4, ResolvedReservation>();
  /** Ethernet source → addresses held (offered or bound) by its entries, reserved addresses not counted. */
  private readonly heldBySource = new Map<string, number>();
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
    const holder = this.slots.holderAt(r.address);
    let displaced: Lease | undefined;
    if (holder >= 0 && !matchesReservation(this.at(holder), r)) {
      displaced = this.at(holder);
      this.drop(holder);
    } else if (holder >= 0) {
      this.countHold(holder, -1); // its owner's now: not a dynamic hold any more
    }
    this.reservationsByAddr.set(r.address, r);
    if (r.clientKey !== undefined) this.reservationsByKey.set(r.clientKey, r);
    if (r.macHex !== undefined) this.reservationsByMac.set(r.macHex, r);
    if (this.slots.holderAt(r.address) < 0 && this.pool.isFree(r.address)) this.pool.take(r.address);
    return displaced;
  }

  removeReservation(r: ResolvedReservation): void {
    if (this.reservationsByAddr.get(r.address) !== r) return;
    this.reservationsByAddr.delete(r.address);
    if (r.clientKey !== undefined && this.reservationsByKey.get(r.clientKey) === r) this.reservationsByKey.delete(r.clientKey);
    if (r.macHex !== undefined && this.reservationsByMac.get(r.macHex) === r) this.reservationsByMac.delete(r.macHex);
    const holder = this.slots.holderAt(r.address);
    if (holder >= 0) this.countHold(holder, 1); // a dynamic hold from now on
    else if (!this.config.excluded.has(r.address) && !this.quarantine.has(this.off(r.address))) this.pool.release(r.address);
  }

  // --- queries (the decision logic's view) ----------------------------------------------------

  /** The client's entry (a copy: it does not follow later changes). */
  lease(clientKey: string): Lease | undefined {
    const s = this.slots.find(clientKey);
    return s < 0 ? undefined : this.at(s, clientKey);
  }
  holderOf(a: Ipv4): Lease | undefined {
    const s = this.slots.holderAt(a);
    return s < 0 ? undefined : this.at(s);
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
    const h = this.slots.holderAt(a);
    return h < 0 || this.slots.keyIs(h, client.key) || (this.slots.exp[h] as number) <= now;
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
    for (let s = this.slots.listHead(OFFERS); s >= 0; s = this.slots.listNext(s)) {
      if (!this.slots.keyIs(s, exceptKey) && !this.reservationsByAddr.has(this.slots.addr[s] as number)) return this.at(s);
      if (++looked >= 64) break; // reserved ones are few: this only bounds a pathological table
    }
    return undefined;
  }

  /** The lowest pool address nobody holds (expired holders not yet swept count as holders). */
  firstFree(): Ipv4 | undefined {
    return this.pool.firstFree();
  }

  get size(): number {
    return this.slots.count;
  }
  /** Offers held now. */
  get offerCount(): number {
    return this.slots.lsize[OFFERS] as number;
  }
  /** Every entry (copies), in the order they were made. */
  *entries(): Generator<Lease> {
    for (const s of this.slots.all()) yield this.at(s);
  }

  /**
   * The entries as they are now, to be read later (a compaction writes them a chunk per event-loop
   * turn): a copy of the slots, which changes made meanwhile do not reach.
   */
  frozenEntries(): Iterable<Lease> {
    const copy = Object.create(LeaseTable.prototype) as LeaseTable;
    copy.slots = this.slots.packedCopy();
    return {
      *[Symbol.iterator](): Generator<Lease> {
        yield* copy.entries();
        copy.slots.discard(); // read to the end: its memory goes back at once
      },
    };
  }

  // --- changes ----------------------------------------------------------------------------

  /**
   * Holds `a` for the client until `until` (an OFFER). A live binding of the same address stays as it
   * is. With `offersMax` offers held already, the oldest is withdrawn first.
   */
  hold(client: ClientIdentity, a: Ipv4, until: number, now: number, src?: string): void {
    const { slots } = this;
    const cur = slots.find(client.key);
    if (cur >= 0 && slots.addr[cur] === a && slots.state[cur] === BOUND && (slots.exp[cur] as number) > now) return;
    if (cur < 0 || slots.state[cur] !== OFFERED) {
      while ((slots.lsize[OFFERS] as number) >= this.offersMax) this.drop(slots.listHead(OFFERS));
    }
    this.put(client, a, until, OFFERED, undefined, now, false, src);
  }

  /**
   * Binds `a` to the client until `expiresAt` (an ACK, or a record from the lease file). With `force`
   * (replaying the lease file, where the later record is the truth) a live holder is displaced.
   */
  bind(client: ClientIdentity, a: Ipv4, expiresAt: number, hostname: string | undefined, now: number, force = false, src?: string): Lease {
    return this.at(this.put(client, a, expiresAt, BOUND, hostname, now, force, src), client.key);
  }

  /**
   * The client gave the address back (RELEASE) or its offer was refused: the address is free again,
   * the entry is remembered until `rememberUntil` as the client's preferred address.
   */
  release(clientKey: string, rememberUntil: number): Lease | undefined {
    const s = this.slots.find(clientKey);
    if (s < 0 || this.slots.state[s] === RELEASED) return undefined;
    this.unholdAddress(s);
    return this.rememberAs(s, rememberUntil, clientKey);
  }

  /** Restores a memory of the client's address (from the lease file) without holding the address. */
  recall(client: ClientIdentity, a: Ipv4, until: number): Lease {
    const cur = this.slots.find(client.key);
    if (cur >= 0) this.drop(cur);
    const s = this.slots.alloc(client.key);
    this.slots.setMac(s, client.mac);
    this.slots.addr[s] = a;
    this.slots.state[s] = RELEASED;
    return this.rememberAs(s, until, client.key);
  }

  /** Quarantined addresses and until when. */
  *quarantined(): IterableIterator<[Ipv4, number]> {
    for (const [o, until] of this.quarantine) yield [this.addr(o), until];
  }

  /** Forgets an offer the client did not take (it chose another server). */
  forgetOffer(clientKey: string): Lease | undefined {
    const s = this.slots.find(clientKey);
    if (s < 0 || this.slots.state[s] !== OFFERED) return undefined;
    const l = this.at(s, clientKey);
    this.drop(s);
    return l;
  }

  /** The client found `a` in use (DECLINE): nobody gets it until `until`. */
  quarantineAddress(a: Ipv4, until: number): void {
    const o = this.off(a);
    const holder = this.slots.holderAt(a);
    if (holder >= 0) this.drop(holder);
    if (!this.quarantine.has(o) && this.pool.isFree(a)) this.pool.take(a);
    this.quarantine.set(o, until);
  }

  /** Drops every entry and quarantine (the interface went away). */
  clear(): Lease[] {
    const all = [...this.slots.all()];
    const leases = all.map((s) => this.at(s));
    for (const s of all) this.drop(s);
    for (const o of [...this.quarantine.keys()]) this.endQuarantine(o);
    this.slots = new LeaseSlots();
    return leases;
  }

  /** Ends offers, bindings and memories whose time has come; returns what changed. */
  expire(now: number): ExpiryEvent[] {
    const events: ExpiryEvent[] = [];
    const { slots } = this;
    for (let s = slots.top(); s >= 0 && (slots.exp[s] as number) <= now; s = slots.top()) {
      const state = slots.state[s];
      if (state === BOUND) {
        this.unholdAddress(s);
        events.push({ lease: this.rememberAs(s, now + this.rememberMs), what: 'lease' }); // moves it down the heap
      } else {
        events.push({ lease: this.at(s), what: state === OFFERED ? 'offer' : 'forget' });
        this.drop(s);
      }
    }
    for (const [o, until] of this.quarantine) if (until <= now) this.endQuarantine(o);
    return events;
  }

  /** Earliest time `expire` has work, or undefined. */
  nextExpiry(): number | undefined {
    const s = this.slots.top();
    return s < 0 ? undefined : this.slots.exp[s];
  }

  private off(a: Ipv4): number {
    return a - this.config.network;
  }
  private addr(o: number): Ipv4 {
    return (this.config.network + o) >>> 0;
  }

  /** Entry `s` as an object (a copy). */
  private at(s: number, key?: string): Lease {
    const { slots } = this;
    const l: Lease = {
      clientKey: key ?? slots.key(s), mac: slots.mac(s), address: slots.addr[s] as number, expiresAt: slots.exp[s] as number,
      state: STATE_NAMES[slots.state[s] as number] as LeaseState,
    };
    const hostname = slots.hostnames.get(s);
    if (hostname !== undefined) l.hostname = hostname;
    const src = slots.src(s);
    if (src !== undefined) l.src = src;
    return l;
  }

  /** The change both make; the client's slot. */
  private put(client: ClientIdentity, a: Ipv4, expiresAt: number, state: number, hostname: string | undefined, now: number, force = false,
    src?: string): number {
    const { slots } = this;
    let cur = slots.find(client.key);
    const holder = slots.holderAt(a);
    if (holder >= 0 && holder !== cur) {
      // A live holder gives way only to the owner of the address's reservation (the launcher's word),
      // or when its claim is an unanswered offer (withdrawn: decide() takes an offered address only
      // when nothing else is free); otherwise this is a bookkeeping conflict the caller answers with
      // a NAK. An expired holder is simply gone.
      const reservation = this.reservationsByAddr.get(a);
      if ((slots.exp[holder] as number) > now && !force && slots.state[holder] !== OFFERED && !(reservation && reservationMatches(reservation, client))) {
        throw new AllocationError(`address held by ${slots.key(holder)}`);
      }
      if (slots.state[holder] === OFFERED) this.drop(holder);
      else {
        this.unholdAddress(holder);
        this.remember(holder, now + this.rememberMs);
      }
    }
    // (remembering the holder may have forgotten the oldest memory: the client's own)
    if (cur >= 0 && slots.state[cur] === FREE) cur = -1;
    if (cur >= 0 && slots.addr[cur] !== a) this.unholdAddress(cur);
    else if (cur >= 0 && !slots.srcIs(cur, src) && slots.holderAt(a) === cur) {
      // the same client, its frames now from another source: the hold moves to that source's count
      this.countHold(cur, -1);
      slots.setSrc(cur, src);
      this.countHold(cur, 1);
    }
    if (cur < 0) {
      cur = slots.alloc(client.key);
      slots.setMac(cur, client.mac);
      slots.addr[cur] = a;
    } else {
      slots.unlink(cur);
      slots.addr[cur] = a; // it holds no other address (given up above)
      if (!slots.macIs(cur, client.mac)) slots.setMac(cur, client.mac);
    }
    if (!slots.srcIs(cur, src)) slots.setSrc(cur, src);
    slots.exp[cur] = expiresAt;
    slots.state[cur] = state;
    if (hostname !== undefined) slots.hostnames.set(cur, hostname);
    // offered, or re-offered: to the end of the line
    if (state === OFFERED) slots.push(OFFERS, cur);
    if (slots.holderAt(a) !== cur) {
      slots.hold(cur);
      this.countHold(cur, 1);
      if (this.pool.isFree(a)) this.pool.take(a);
    }
    slots.schedule(cur);
    return cur;
  }

  private drop(s: number): void {
    const { slots } = this;
    if (slots.state[s] === FREE) return;
    this.unholdAddress(s);
    slots.unschedule(s);
    slots.release(s);
  }

  /** remember(), returning the entry as it is then (it may be forgotten at once when rememberMax is tiny). */
  private rememberAs(s: number, until: number, key?: string): Lease {
    const l = this.at(s, key);
    this.remember(s, until);
    l.state = 'released';
    l.expiresAt = until;
    return l;
  }

  /** Turns an entry into a memory of the client's address (it must not hold the address any more). */
  private remember(s: number, until: number): void {
    const { slots } = this;
    slots.state[s] = RELEASED;
    slots.exp[s] = until;
    slots.schedule(s);
    slots.push(REMEMBERED, s);
    while ((slots.lsize[REMEMBERED] as number) > this.rememberMax) this.drop(slots.listHead(REMEMBERED));
  }

  private unholdAddress(s: number): void {
    const { slots } = this;
    const a = slots.addr[s] as number;
    if (slots.holderAt(a) !== s) return;
    this.countHold(s, -1);
    slots.unhold(s);
    const o = this.off(a);
    if (!this.reservationsByAddr.has(a) && !this.config.excluded.has(a) && !this.quarantine.has(o) && this.pool.contains(a) && !this.pool.isFree(a)) {
      this.pool.release(a);
    }
  }

  /**
   * Counts a dynamic hold (not on a reserved address) toward its Ethernet source: `src`, else the
   * client's MAC. Only where a cap reads the counts.
   */
  private countHold(s: number, delta: 1 | -1): void {
    if (!this.config.maxLeasesPerSource || this.reservationsByAddr.has(this.slots.addr[s] as number)) return;
    const src = this.slots.src(s) ?? this.slots.mac(s).replace(/:/g, '');
    const n = (this.heldBySource.get(src) ?? 0) + delta;
    if (n > 0) this.heldBySource.set(src, n);
    else this.heldBySource.delete(src);
  }

  private endQuarantine(o: number): void {
    this.quarantine.delete(o);
    const a = this.addr(o);
    if (this.slots.holderAt(a) < 0 && !this.reservationsByAddr.has(a) && !this.config.excluded.has(a) && this.pool.contains(a) && !this.pool.isFree(a)) {
      this.pool.release(a);
    }
  }
}

const STATE_NAMES = ['', 'offered', 'bound', 'released'];

/** Offers held at once per interface, at most (each is a few hundred bytes). */
export const DEFAULT_OFFERS_MAX = 8192;

export function reservationMatches(r: ResolvedReservation, client: ClientIdentity): boolean {
  return (r.clientKey !== undefined && r.clientKey === client.key) || (r.macHex !== undefined && r.macHex === client.macHex);
}

function matchesReservation(l: Lease, r: ResolvedReservation): boolean {
  return (r.clientKey !== undefined && r.clientKey === l.clientKey) || (r.macHex !== undefined && r.macHex === l.mac.replace(/:/g, ''));
}
