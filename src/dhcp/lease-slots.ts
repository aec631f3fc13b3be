// Where a lease table keeps its entries: typed arrays with a slot per entry, not a JS object per
// entry. A slot holds the client key (inline bytes), hardware address, source, address, expiry and
// state; two open-addressing indexes find a slot by client key and by held address; an indexed
// min-heap of slots orders them by expiry; intrusive lists keep the offers and the remembered
// (released) entries in the order they came, and every entry in the order it was made (what
// entries() yields, as a Map would).
//
// Why: a JS object per lease with its strings and Map entries cost ~290 bytes of heap (and the old
// generation grows past what it holds before V8 collects it); a slot costs ~100 bytes outside the
// heap, which the collector never scans or copies. bench/dhcp holds 50,000 leases at its peak
// (docs/design/dhcp-performance.md). What does not fit a slot's fixed fields (a client key longer
// than KEY_BYTES or outside latin-1, a MAC or source not in the usual form, a hostname) goes into a
// side Map keyed by slot: rare, and bounded by the number of entries like everything else.
import { macToString, toHex } from './ipv4.js';

/** Entry states as stored; 0 marks a free slot. */
export const FREE = 0;
export const OFFERED = 1;
export const BOUND = 2;
export const RELEASED = 3;

/** Lists an entry can be on (its state says which). */
export const OFFERS = 0;
export const REMEMBERED = 1;

/** Client keys up to this many latin-1 characters are stored in the slot ("hw:1:" + 12 hex is 17). */
const KEY_BYTES = 20;
const LONG_KEY = 255;
/** flags: how the MAC and the source are stored. */
const MAC_INLINE = 1;
const MAC_SIDE = 2;
const SRC_INLINE = 4;
const SRC_SIDE = 8;

const HEX = '0123456789abcdef';

function hexVal(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

/** MurmurHash3's finalizer: every input bit reaches the low bits the tables index by. */
function mix(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** FNV-1a over the string's UTF-16 code units, mixed. */
function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return mix(h);
}

function hashAddr(a: number): number {
  return mix(a);
}

export class LeaseSlots {
  private cap = 0;
  /** Live entries. */
  count = 0;
  exp = new Float64Array(0);
  addr = new Uint32Array(0);
  state = new Uint8Array(0);
  private flags = new Uint8Array(0);
  private keyLen = new Uint8Array(0);
  private keyHash = new Uint32Array(0);
  private keys = new Uint8Array(0);
  private macs = new Uint8Array(0);
  private srcs = new Uint8Array(0);
  /** Position in the expiry heap, -1 when in none. */
  private hpos = new Int32Array(0);
  private heap = new Int32Array(0);
  heapSize = 0;
  /** The offer or remembered list an entry is on (prev/next slot, -1 at the ends). */
  private lprev = new Int32Array(0);
  private lnext = new Int32Array(0);
  /** Which list the entry is on: 0 none, else list + 1. */
  private onList = new Uint8Array(0);
  private readonly lhead = [-1, -1];
  private readonly ltail = [-1, -1];
  readonly lsize = [0, 0];
  /** Every entry in the order it was made. */
  private aprev = new Int32Array(0);
  private anext = new Int32Array(0);
  private ahead = -1;
  private atail = -1;
  private freeSlots = new Int32Array(0);
  private freeCount = 0;
  private byKey: Int32Array = new Int32Array(0);
  /** Slot of the entry holding an address (offered or bound), by address. */
  private byAddr: Int32Array = new Int32Array(0);
  private held = 0;
  private readonly longKeys = new Map<number, string>();
  private readonly sideMacs = new Map<number, string>();
  private readonly sideSrcs = new Map<number, string>();
  readonly hostnames = new Map<number, string>();

  constructor(initial = 64) {
    this.grow(initial);
    this.byKey = new Int32Array(Math.max(2, 2 * initial)).fill(-1);
    this.byAddr = new Int32Array(Math.max(2, 2 * initial)).fill(-1);
  }

  // --- slots ---------------------------------------------------------------------------------

  /** A new entry for `key` (not present); its other fields are the caller's to set. */
  alloc(key: string): number {
    if (this.freeCount === 0) this.grow(Math.max(64, Math.ceil(1.5 * this.cap))); // 1.5×: less slack, less to copy at once
    const s = this.freeSlots[--this.freeCount] as number;
    this.count++;
    this.state[s] = OFFERED; // set by the caller; never FREE while live
    this.flags[s] = 0;
    this.hpos[s] = -1;
    this.lprev[s] = -1;
    this.lnext[s] = -1;
    this.onList[s] = 0;
    const h = this.hashOf(key);
    this.keyHash[s] = h;
    if (key.length <= KEY_BYTES && isLatin1(key)) {
      this.keyLen[s] = key.length;
      const o = s * KEY_BYTES;
      for (let i = 0; i < key.length; i++) this.keys[o + i] = key.charCodeAt(i);
    } else {
      this.keyLen[s] = LONG_KEY;
      this.longKeys.set(s, key);
    }
    // link at the end of the every-entry list
    this.aprev[s] = this.atail;
    this.anext[s] = -1;
    if (this.atail >= 0) this.anext[this.atail] = s;
    else this.ahead = s;
    this.atail = s;
    if (2 * this.count > this.byKey.length) this.byKey = this.rehash(this.byKey, (x) => this.keyHash[x] as number);
    insert(this.byKey, s, h);
    return s;
  }

  /** Frees a live slot: it must hold no address and be in no heap; it leaves its list. */
  release(s: number): void {
    this.unlink(s);
    removeAt(this.byKey, this.keyPos(s), (x) => this.keyHash[x] as number);
    const p = this.aprev[s] as number;
    const n = this.anext[s] as number;
    if (p >= 0) this.anext[p] = n;
    else this.ahead = n;
    if (n >= 0) this.aprev[n] = p;
    else this.atail = p;
    if (this.keyLen[s] === LONG_KEY) this.longKeys.delete(s);
    this.sideMacs.delete(s);
    this.sideSrcs.delete(s);
    this.hostnames.delete(s);
    this.state[s] = FREE;
    this.count--;
    this.freeSlots[this.freeCount++] = s;
  }

  /** Slots of every entry, in the order they were made. */
  *all(): Generator<number> {
    for (let s = this.ahead; s >= 0;) {
      const next = this.anext[s] as number;
      yield s;
      s = next;
    }
  }

  private grow(to: number): void {
    const from = this.cap;
    const g = <T extends Float64Array | Uint32Array | Uint8Array | Int32Array>(a: T, per = 1): T => {
      const b = new (a.constructor as new (n: number) => T)(to * per);
      b.set(a);
      discard(a);
      return b;
    };
    this.exp = g(this.exp);
    this.addr = g(this.addr);
    this.state = g(this.state);
    this.flags = g(this.flags);
    this.keyLen = g(this.keyLen);
    this.keyHash = g(this.keyHash);
    this.keys = g(this.keys, KEY_BYTES);
    this.macs = g(this.macs, 6);
    this.srcs = g(this.srcs, 6);
    this.hpos = g(this.hpos);
    this.heap = g(this.heap);
    this.lprev = g(this.lprev);
    this.lnext = g(this.lnext);
    this.onList = g(this.onList);
    this.aprev = g(this.aprev);
    this.anext = g(this.anext);
    const free = new Int32Array(to);
    free.set(this.freeSlots.subarray(0, this.freeCount));
    discard(this.freeSlots);
    // the new slots, lowest taken first
    for (let s = to - 1; s >= from; s--) free[this.freeCount++] = s;
    this.freeSlots = free;
    this.cap = to;
  }

  /**
   * The entries as they are now, for all() and the fields a record needs (key, MAC, source, address,
   * expiry, state, hostname), packed in the order they were made: a compaction's snapshot, which later
   * changes do not reach. It has no indexes, heap or lists: ~45 bytes an entry.
   */
  packedCopy(): LeaseSlots {
    const n = this.count;
    const c = new LeaseSlots(0);
    c.count = n;
    c.cap = n;
    c.exp = new Float64Array(n);
    c.addr = new Uint32Array(n);
    c.state = new Uint8Array(n);
    c.flags = new Uint8Array(n);
    c.keyLen = new Uint8Array(n);
    c.keys = new Uint8Array(n * KEY_BYTES);
    c.macs = new Uint8Array(n * 6);
    c.srcs = new Uint8Array(n * 6);
    c.anext = new Int32Array(n);
    let i = 0;
    for (const s of this.all()) {
      c.exp[i] = this.exp[s] as number;
      c.addr[i] = this.addr[s] as number;
      c.state[i] = this.state[s] as number;
      c.flags[i] = this.flags[s] as number;
      c.keyLen[i] = this.keyLen[s] as number;
      c.keys.set(this.keys.subarray(s * KEY_BYTES, (s + 1) * KEY_BYTES), i * KEY_BYTES);
      c.macs.set(this.macs.subarray(s * 6, s * 6 + 6), i * 6);
      c.srcs.set(this.srcs.subarray(s * 6, s * 6 + 6), i * 6);
      for (const [from, to] of [[this.longKeys, c.longKeys], [this.sideMacs, c.sideMacs], [this.sideSrcs, c.sideSrcs], [this.hostnames, c.hostnames]] as const) {
        const v = from.get(s);
        if (v !== undefined) to.set(i, v);
      }
      c.anext[i] = i + 1 < n ? i + 1 : -1;
      i++;
    }
    c.ahead = n ? 0 : -1;
    c.atail = n - 1;
    return c;
  }

  // --- the client key --------------------------------------------------------------------------

  /** The slot of `key`'s entry, or -1. */
  find(key: string): number {
    const t = this.byKey;
    const mask = t.length - 1;
    for (let i = this.hashOf(key) & mask; ; i = (i + 1) & mask) {
      const s = t[i] as number;
      if (s < 0) return -1;
      if (this.keyIs(s, key)) return s;
    }
  }

  /** A request looks its client's key up a few times in a row: its hash is remembered. */
  private lastKey = '';
  private lastHash = hashString('');
  private hashOf(key: string): number {
    if (key !== this.lastKey) {
      this.lastKey = key;
      this.lastHash = hashString(key);
    }
    return this.lastHash;
  }

  keyIs(s: number, key: string): boolean {
    const len = this.keyLen[s] as number;
    if (len === LONG_KEY) return this.longKeys.get(s) === key;
    if (len !== key.length) return false;
    const o = s * KEY_BYTES;
    for (let i = 0; i < len; i++) if (this.keys[o + i] !== key.charCodeAt(i)) return false;
    return true;
  }

  key(s: number): string {
    const len = this.keyLen[s] as number;
    if (len === LONG_KEY) return this.longKeys.get(s) as string;
    const o = s * KEY_BYTES;
    return String.fromCharCode(...this.keys.subarray(o, o + len));
  }

  private keyPos(s: number): number {
    const t = this.byKey;
    const mask = t.length - 1;
    for (let i = (this.keyHash[s] as number) & mask; ; i = (i + 1) & mask) if (t[i] === s) return i;
  }

  // --- hardware address, source, hostname ------------------------------------------------------

  /** The client's MAC as text ("02:00:00:00:00:42"); stored as 6 bytes when it has that form. */
  setMac(s: number, mac: string): void {
    const f = (this.flags[s] as number) & ~(MAC_INLINE | MAC_SIDE);
    if (putHex(this.macs, s * 6, mac, true)) {
      this.flags[s] = f | MAC_INLINE;
      this.sideMacs.delete(s);
    } else {
      this.flags[s] = f | MAC_SIDE;
      this.sideMacs.set(s, mac);
    }
  }

  mac(s: number): string {
    const f = this.flags[s] as number;
    if (f & MAC_INLINE) return macToString(this.macs.subarray(s * 6, s * 6 + 6));
    return f & MAC_SIDE ? this.sideMacs.get(s) as string : '';
  }

  macIs(s: number, mac: string): boolean {
    const f = this.flags[s] as number;
    if (f & MAC_INLINE) return mac.length === 17 && hexIs(this.macs, s * 6, mac, true);
    return f & MAC_SIDE ? this.sideMacs.get(s) === mac : mac === '';
  }

  /** Source of the frames that won the entry: Ethernet (lowercase hex, inline) or a bridge port ("portN", aside); undefined: the client's own MAC. */
  setSrc(s: number, src: string | undefined): void {
    const f = (this.flags[s] as number) & ~(SRC_INLINE | SRC_SIDE);
    this.sideSrcs.delete(s);
    if (src === undefined) this.flags[s] = f;
    else if (putHex(this.srcs, s * 6, src, false)) this.flags[s] = f | SRC_INLINE;
    else {
      this.flags[s] = f | SRC_SIDE;
      this.sideSrcs.set(s, src);
    }
  }

  src(s: number): string | undefined {
    const f = this.flags[s] as number;
    if (f & SRC_INLINE) return toHex(this.srcs.subarray(s * 6, s * 6 + 6));
    return f & SRC_SIDE ? this.sideSrcs.get(s) : undefined;
  }

  srcIs(s: number, src: string | undefined): boolean {
    const f = this.flags[s] as number;
    if (src === undefined) return (f & (SRC_INLINE | SRC_SIDE)) === 0;
    if (f & SRC_INLINE) return src.length === 12 && hexIs(this.srcs, s * 6, src, false);
    return f & SRC_SIDE ? this.sideSrcs.get(s) === src : false;
  }

  // --- the address index ----------------------------------------------------------------------

  /** The entry holding address `a`, or -1. */
  holderAt(a: number): number {
    const t = this.byAddr;
    const mask = t.length - 1;
    for (let i = hashAddr(a) & mask; ; i = (i + 1) & mask) {
      const s = t[i] as number;
      if (s < 0) return -1;
      if (this.addr[s] === a) return s;
    }
  }

  /** Makes the entry the holder of its address (which nobody else holds). */
  hold(s: number): void {
    this.held++;
    if (2 * this.held > this.byAddr.length) this.byAddr = this.rehash(this.byAddr, (x) => hashAddr(this.addr[x] as number));
    insert(this.byAddr, s, hashAddr(this.addr[s] as number));
  }

  /** The entry gives up holding its address (its address must not have changed meanwhile). */
  unhold(s: number): void {
    const t = this.byAddr;
    const mask = t.length - 1;
    let i = hashAddr(this.addr[s] as number) & mask;
    while (t[i] !== s) i = (i + 1) & mask;
    removeAt(t, i, (x) => hashAddr(this.addr[x] as number));
    this.held--;
  }

  private rehash(t: Int32Array, hash: (s: number) => number): Int32Array {
    const n = new Int32Array(2 * t.length).fill(-1);
    for (const s of t) if (s >= 0) insert(n, s, hash(s));
    discard(t);
    return n;
  }

  /** Gives the arrays' memory back now (a packed copy that has been read); the slots are empty after. */
  discard(): void {
    for (const v of Object.values(this)) if (ArrayBuffer.isView(v)) discard(v as Uint8Array);
    this.count = 0;
    this.cap = 0;
    this.ahead = -1;
    this.atail = -1;
  }

  // --- the offer and remembered lists ----------------------------------------------------------

  listHead(list: number): number {
    return this.lhead[list] as number;
  }
  listNext(s: number): number {
    return this.lnext[s] as number;
  }

  /** Appends to the end of a list (taking the entry off the one it is on). */
  push(list: number, s: number): void {
    this.unlink(s);
    this.onList[s] = list + 1;
    const t = this.ltail[list] as number;
    this.lprev[s] = t;
    this.lnext[s] = -1;
    if (t >= 0) this.lnext[t] = s;
    else this.lhead[list] = s;
    this.ltail[list] = s;
    (this.lsize[list] as number)++;
  }

  /** Takes the entry off the list it is on, if any. */
  unlink(s: number): void {
    const list = (this.onList[s] as number) - 1;
    if (list < 0) return;
    this.onList[s] = 0;
    const p = this.lprev[s] as number;
    const n = this.lnext[s] as number;
    if (p >= 0) this.lnext[p] = n;
    else this.lhead[list] = n;
    if (n >= 0) this.lprev[n] = p;
    else this.ltail[list] = p;
    this.lprev[s] = -1;
    this.lnext[s] = -1;
    (this.lsize[list] as number)--;
  }

  // --- the expiry heap ------------------------------------------------------------------------

  /** The entry that expires first, or -1. */
  top(): number {
    return this.heapSize ? this.heap[0] as number : -1;
  }

  /** Puts the entry in the heap, or moves it to where its (changed) expiry belongs. */
  schedule(s: number): void {
    let i = this.hpos[s] as number;
    if (i < 0) {
      i = this.heapSize++;
      this.heap[i] = s;
      this.hpos[s] = i;
    }
    this.siftDown(this.siftUp(i));
  }

  unschedule(s: number): void {
    const i = this.hpos[s] as number;
    if (i < 0) return;
    this.hpos[s] = -1;
    const last = this.heap[--this.heapSize] as number;
    if (last === s) return;
    this.heap[i] = last;
    this.hpos[last] = i;
    this.siftDown(this.siftUp(i));
  }

  private siftUp(i: number): number {
    const { heap, exp, hpos } = this;
    const item = heap[i] as number;
    const e = exp[item] as number;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = heap[p] as number;
      if ((exp[parent] as number) <= e) break;
      heap[i] = parent;
      hpos[parent] = i;
      i = p;
    }
    heap[i] = item;
    hpos[item] = i;
    return i;
  }

  private siftDown(i: number): void {
    const { heap, exp, hpos } = this;
    const n = this.heapSize;
    const item = heap[i] as number;
    const e = exp[item] as number;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && (exp[heap[r] as number] as number) < (exp[heap[l] as number] as number) ? r : l;
      const child = heap[c] as number;
      if ((exp[child] as number) >= e) break;
      heap[i] = child;
      hpos[child] = i;
      i = c;
    }
    heap[i] = item;
    hpos[item] = i;
  }
}

/**
 * Frees a replaced array's memory at the next scavenge instead of the next full collection: the
 * arrays of a long-lived table are in the old generation, and a grown table's old arrays (or a
 * compaction's copy) would otherwise stay resident beside the new ones until V8 runs a full GC. Its
 * buffer is moved (transferred) into a young object nobody keeps; the array itself becomes empty.
 */
function discard(a: { buffer: ArrayBufferLike }): void {
  if (a.buffer.byteLength) structuredClone(a.buffer, { transfer: [a.buffer as ArrayBuffer] });
}

function isLatin1(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 255) return false;
  return true;
}

/** Linear probing: the slot goes into the first empty place from its hash on. */
function insert(t: Int32Array, s: number, hash: number): void {
  const mask = t.length - 1;
  let i = hash & mask;
  while ((t[i] as number) >= 0) i = (i + 1) & mask;
  t[i] = s;
}

/** Removes the element at i, shifting later ones of its probe run back (no tombstones). */
function removeAt(t: Int32Array, i: number, hash: (s: number) => number): void {
  const mask = t.length - 1;
  let j = i;
  for (;;) {
    j = (j + 1) & mask;
    const s = t[j] as number;
    if (s < 0) break;
    const home = hash(s) & mask;
    // s may move to i when its home is not cyclically within (i, j]
    if (i <= j ? home <= i || home > j : home <= i && home > j) {
      t[i] = s;
      i = j;
    }
  }
  t[i] = -1;
}

/** 6 bytes from 12 lowercase hex digits (with colons after each pair but the last: 17 characters). */
function putHex(out: Uint8Array, o: number, text: string, colons: boolean): boolean {
  const step = colons ? 3 : 2;
  if (text.length !== (colons ? 17 : 12)) return false;
  for (let i = 0; i < 6; i++) {
    const hi = hexVal(text.charCodeAt(i * step));
    const lo = hexVal(text.charCodeAt(i * step + 1));
    if (hi < 0 || lo < 0 || (colons && i < 5 && text.charCodeAt(i * step + 2) !== 58)) return false;
  }
  for (let i = 0; i < 6; i++) out[o + i] = (hexVal(text.charCodeAt(i * step)) << 4) | hexVal(text.charCodeAt(i * step + 1));
  return true;
}

function hexIs(b: Uint8Array, o: number, text: string, colons: boolean): boolean {
  const step = colons ? 3 : 2;
  for (let i = 0; i < 6; i++) {
    const v = b[o + i] as number;
    if (text.charCodeAt(i * step) !== HEX.charCodeAt(v >> 4) || text.charCodeAt(i * step + 1) !== HEX.charCodeAt(v & 15)) return false;
    if (colons && i < 5 && text.charCodeAt(i * step + 2) !== 58) return false;
  }
  return true;
}
