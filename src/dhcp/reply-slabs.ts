// Where the server's replies are encoded: views carved from 16 KiB slabs (as node's Buffer pool
// does), not an ArrayBuffer each (a malloc, a free and work for V8's array-buffer sweeper per
// reply). A slab whose replies have all been sent is carved again: the transport hands each datagram
// back once sendmmsg has copied it (releaseReply), so a server under load keeps the few slabs its
// replies in flight need instead of making ~6 MB of slabs a second for the garbage collector.
// That matters for memory more than for time: a slab left to the collector that survived two
// scavenges is promoted, and its memory waits for a full collection, which comes rarely now that the
// leases are off the heap (docs/design/dhcp-performance.md: with young generations of 1 MiB the
// peak RSS was 108 MB once).
//
// A reply that is never handed back (a test's transport, an ACK whose lease could not be written,
// replies still queued when the sockets close) only keeps its slab from being carved again: at most
// TRACKED slabs are followed, the oldest beyond that is left to the collector as before.
/** Bytes per slab (~48 replies of 300–350 bytes). */
export const SLAB_BYTES = 1 << 14;
/** Slabs with replies outstanding that are followed (the newest is being carved). */
const TRACKED = 32;
/** Slabs kept for carving again. */
const SPARE = 8;

/** Tracked slabs, oldest first; the last is the one being carved. */
const slabs: ArrayBuffer[] = [];
/** Replies carved from slabs[i] and not handed back; the slab being carved counts one more. */
const outstanding: number[] = [];
const spare: ArrayBuffer[] = [];
let carving: Uint8Array = new Uint8Array(0);
let used = 0;
/** The slab being carved was carved before (its bytes are not zero). */
let reused = false;
/** Slabs made so far (tests: replies reuse them). */
let made = 0;

/**
 * `size` zeroed bytes for a reply, as a view into a slab. Larger requests than a quarter slab get an
 * array of their own.
 */
export function replyBytes(size: number): Uint8Array {
  if (size > SLAB_BYTES / 4) return new Uint8Array(size);
  if (used + size > carving.length) nextSlab();
  const b = carving.subarray(used, used + size);
  if (reused) b.fill(0);
  used += (size + 7) & ~7;
  (outstanding[outstanding.length - 1] as number)++;
  return b;
}

function nextSlab(): void {
  if (slabs.length) done(slabs.length - 1); // the old slab is carved no more
  const again = spare.pop();
  reused = again !== undefined;
  const buf = again ?? newSlab();
  if (slabs.length === TRACKED) {
    slabs.shift(); // replies never handed back: left to the collector
    outstanding.shift();
  }
  slabs.push(buf);
  outstanding.push(1);
  carving = new Uint8Array(buf);
  used = 0;
}

function newSlab(): ArrayBuffer {
  made++;
  return new ArrayBuffer(SLAB_BYTES);
}

/** One reference of tracked slab i is gone; a slab nothing references any more is spare again. */
function done(i: number): void {
  const n = (outstanding[i] as number) - 1;
  outstanding[i] = n;
  if (n > 0) return;
  const buf = slabs[i] as ArrayBuffer;
  slabs.splice(i, 1);
  outstanding.splice(i, 1);
  if (spare.length < SPARE) spare.push(buf);
}

/**
 * A reply (or a datagram that contains it) was sent or will never be: its bytes may be carved
 * again. Each reply is handed back at most once; views that did not come from replyBytes are ignored.
 */
export function releaseReply(view: Uint8Array): void {
  const buf = view.buffer;
  for (let i = slabs.length - 1; i >= 0; i--) {
    if (slabs[i] === buf) {
      // the slab being carved keeps its own reference until it is full
      done(i);
      return;
    }
  }
}

/** Slabs made since the process started (tests). */
export function slabsMade(): number {
  return made;
}
