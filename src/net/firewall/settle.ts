// A consistent view of the table's elements. The kernel dumps a hash set in parts and resumes each
// part by counting the elements it walked (nf_tables_dump_set: iter.skip); right after a burst of
// inserts (or deletes) a worker grows (or shrinks) the set's rhashtable, which reorders the walk, so
// a listing taken meanwhile shows some elements twice and misses as many others. Nothing marks it:
// no commit happens, so the generation stays and neither NLM_F_DUMP_INTR nor libnftables' genid
// check fires (test/kernel/firewall-torn.test.ts shows it). Acting on such a view deletes, keeps or
// re-adds the wrong mappings, so every listing the product acts on goes through settledListing():
// a listing counts once the next read equals it; one naming a (set, key) twice is torn for certain.
// The read after a listing is, where it can be, a cheaper one (`confirm`: the Firewall's own
// nf_tables dumps of the sets, ~1/7 of a libnftables listing's time at 10,000 mappings), else the
// next listing.
import { NspawnError } from '../../errors.js';

/** How many listings are taken before giving up (a resize is over in milliseconds). */
export const SETTLE_ATTEMPTS = 6;

/** Listings of `what` never agreed twice in a row: nothing was acted on. */
export class ListingUnsettledError extends NspawnError {
  constructor(readonly what: string, readonly attempts: number) {
    super('NFT_LISTING_UNSETTLED',
      `nftables: listing ${what} gave a different answer each time (${attempts} listings; the kernel was still resizing a set, ` +
      'or other processes kept changing the table); nothing was changed: try again');
  }
}

export interface SettleOptions<T> {
  /** identity of an item (our elements: set and key); a listing with one twice is torn */
  idOf: (item: T) => string;
  /** everything of an item that matters (two listings agree when their lines are equal) */
  lineOf: (item: T) => string;
  /** what is listed, for the error */
  what: string;
  attempts?: number;
  /**
   * A second read of the same, taken now (cheaper than another listing): whether it agrees with
   * this listing; undefined when it cannot tell. Unless it agrees, the next listing is compared too.
   */
  confirm?: (items: readonly T[]) => boolean | undefined;
}

function hasDuplicate(ids: readonly string[]): boolean {
  return new Set(ids).size !== ids.length;
}

/**
 * Takes `list()` until it names no item twice and the read after it (`confirm`, or the next
 * listing) agrees with it; that listing. At most `attempts` listings.
 */
export function settledListing<T>(list: () => T[], opts: SettleOptions<T>): T[] {
  const attempts = opts.attempts ?? SETTLE_ATTEMPTS;
  let previous: string | undefined;
  for (let i = 0; i < attempts; i++) {
    const items = list();
    if (hasDuplicate(items.map(opts.idOf))) {
      previous = undefined;
      continue;
    }
    if (opts.confirm?.(items) === true) return items;
    // otherwise (it disagrees or cannot tell) the next listing is compared too: a second read that
    // disagreed by some quirk of its own costs a listing, not the answer
    const lines = items.map(opts.lineOf).sort().join('\n');
    if (lines === previous) return items;
    previous = lines;
  }
  throw new ListingUnsettledError(opts.what, attempts);
}
