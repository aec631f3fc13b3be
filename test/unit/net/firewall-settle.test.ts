// settledListing (settle.ts): a listing counts once the next one equals it; a listing naming an
// element twice is torn; listings that never agree end in ListingUnsettledError, after a bound.
import { describe, expect, test } from 'vitest';
import fc from 'fast-check';
import { elementId, elementLine, type FwElement } from '../../../src/net/firewall/rules.js';
import { ListingUnsettledError, SETTLE_ATTEMPTS, settledListing } from '../../../src/net/firewall/settle.js';

const el = (hostPort: number, owner = `c${hostPort}`): FwElement =>
  ({ set: 'ports4', key: `tcp . ${hostPort}`, data: `10.0.0.${(hostPort % 250) + 2} . 80`, owner });
const table = [el(1), el(2), el(3), el(4)];
/** what a dump during a resize shows: as many elements, one seen twice, one missed */
const torn = [el(1), el(2), el(2), el(4)];

/** A fake lister handing out these listings in turn (the last one again when they run out). */
function lister(listings: FwElement[][]): { list: () => FwElement[]; calls: () => number } {
  let i = 0;
  return { list: () => [...(listings[Math.min(i++, listings.length - 1)] ?? [])], calls: () => i };
}

const opts = { idOf: elementId, lineOf: elementLine, what: 'the elements of table inet nspawn-ts' };

describe('settledListing', () => {
  test('two listings that agree at once: the second is taken, no third', () => {
    const l = lister([table, [...table].reverse()]);
    expect(settledListing(l.list, opts)).toEqual([...table].reverse());
    expect(l.calls()).toBe(2);
  });

  test('an empty table settles too ([] twice)', () => {
    const l = lister([[]]);
    expect(settledListing(l.list, opts)).toEqual([]);
    expect(l.calls()).toBe(2);
  });

  test('a torn listing (an element twice, another missing) is never taken, even when the next is torn alike', () => {
    const l = lister([torn, torn, table, table]);
    expect(settledListing(l.list, opts)).toEqual(table);
    expect(l.calls()).toBe(4);
  });

  test('a torn listing without a duplicate (one element missing) is not taken: the next differs from it', () => {
    const l = lister([table.slice(1), table, table]);
    expect(settledListing(l.list, opts)).toEqual(table);
    expect(l.calls()).toBe(3);
  });

  test('data or owner differing makes two listings differ', () => {
    const l = lister([table, [el(1), el(2), el(3), el(4, 'other')], [el(1), el(2), el(3), el(4, 'other')]]);
    expect(settledListing(l.list, opts).map((e) => e.owner)).toEqual(['c1', 'c2', 'c3', 'other']);
    expect(l.calls()).toBe(3);
  });

  test('listings that never agree: ListingUnsettledError (code, what, attempts) after the bound, no more listings', () => {
    let n = 0;
    const list = (): FwElement[] => [el(1000 + n++)];
    let err: unknown;
    try {
      settledListing(list, opts);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ListingUnsettledError);
    expect(err).toMatchObject({ code: 'NFT_LISTING_UNSETTLED', attempts: SETTLE_ATTEMPTS });
    expect((err as Error).message).toMatch(/^nftables: listing the elements of table inet nspawn-ts gave a different answer each time \(6 listings; .*try again$/);
    expect(n).toBe(SETTLE_ATTEMPTS);
  });

  test('only torn listings: ListingUnsettledError too', () => {
    const l = lister([torn]);
    expect(() => settledListing(l.list, { ...opts, attempts: 3 })).toThrow(ListingUnsettledError);
    expect(l.calls()).toBe(3);
  });

  test('property: whatever torn or changing listings come first, the answer is a listing that came twice in a row and names each element once', () => {
    const listing = fc.uniqueArray(fc.integer({ min: 1, max: 40 }), { maxLength: 8 }).map((ports) => ports.map((p) => el(p)));
    const tornOf = (ls: FwElement[]): FwElement[] => (ls.length >= 2 ? [...ls.slice(0, -1), ls[0] as FwElement] : ls);
    fc.assert(fc.property(fc.array(fc.tuple(listing, fc.boolean()), { maxLength: 4 }), listing, (before, settled) => {
      const seq = [...before.map(([ls, t]) => (t ? tornOf(ls) : ls)), settled, settled];
      const l = lister(seq);
      const got = settledListing(l.list, { ...opts, attempts: seq.length });
      const lines = (ls: FwElement[]): string => ls.map(elementLine).sort().join('\n');
      expect(new Set(got.map(elementId)).size).toBe(got.length);
      const i = l.calls() - 1;
      expect(lines(got)).toBe(lines(seq[i] as FwElement[]));
      expect(lines(seq[i - 1] as FwElement[])).toBe(lines(got));
    }));
  });
});

describe('settledListing with a cheaper second read (confirm)', () => {
  test('the second read agrees at once: one listing', () => {
    const l = lister([table]);
    const confirm = (items: readonly FwElement[]): boolean => items.length === 4;
    expect(settledListing(l.list, { ...opts, confirm })).toEqual(table);
    expect(l.calls()).toBe(1);
  });

  test('the second read disagrees with a torn listing that names nothing twice: the next listing, read again', () => {
    const l = lister([table.slice(1), table]);
    const reads: number[] = [];
    const confirm = (items: readonly FwElement[]): boolean => {
      reads.push(items.length);
      return items.length === 4;
    };
    expect(settledListing(l.list, { ...opts, confirm })).toEqual(table);
    expect(reads).toEqual([3, 4]);
  });

  test('a listing naming an element twice is not even compared', () => {
    const l = lister([torn, table]);
    const reads: number[] = [];
    expect(settledListing(l.list, { ...opts, confirm: (items) => (reads.push(items.length), true) })).toEqual(table);
    expect(reads).toEqual([4]);
    expect(l.calls()).toBe(2);
  });

  test('the second read cannot tell (undefined): two listings in a row decide', () => {
    const l = lister([table, table]);
    expect(settledListing(l.list, { ...opts, confirm: () => undefined })).toEqual(table);
    expect(l.calls()).toBe(2);
  });

  test('a second read that always disagrees (a quirk of its own): two listings in a row still decide', () => {
    const l = lister([table, table]);
    expect(settledListing(l.list, { ...opts, confirm: () => false })).toEqual(table);
    expect(l.calls()).toBe(2);
  });

  test('never agreeing: ListingUnsettledError after the bound', () => {
    let n = 0;
    const list = (): FwElement[] => [el(1000 + n++)];
    expect(() => settledListing(list, { ...opts, confirm: () => false })).toThrow(ListingUnsettledError);
    expect(n).toBe(SETTLE_ATTEMPTS);
  });
});
