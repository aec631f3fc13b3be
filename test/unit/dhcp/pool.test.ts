// The allocator: no time, no clients; take, release, allocate with a hint, exhaustion.
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { AddressPool, AllocationError, AddressPoolExhaustedError } from '../../../src/dhcp/pool.js';
import { ip } from './helpers.js';

describe('AddressPool', () => {
  test('allocates the hint when free, else the lowest free address', () => {
    const p = new AddressPool(ip('192.0.2.10'), ip('192.0.2.12'));
    expect(p.size).toBe(3);
    expect(p.allocate(ip('192.0.2.11'))).toBe(ip('192.0.2.11'));
    expect(p.allocate(ip('192.0.2.11'))).toBe(ip('192.0.2.10'));
    expect(p.allocate(ip('192.0.2.99'))).toBe(ip('192.0.2.12'));
    expect(() => p.allocate()).toThrow(AddressPoolExhaustedError);
    p.release(ip('192.0.2.11'));
    expect(p.firstFree()).toBe(ip('192.0.2.11'));
    expect(p.used).toBe(2);
  });
  test('double take and free of a free address are bookkeeping errors', () => {
    const p = new AddressPool(ip('192.0.2.10'), ip('192.0.2.20'));
    p.take(ip('192.0.2.15'));
    expect(() => p.take(ip('192.0.2.15'))).toThrow(AllocationError);
    expect(() => p.release(ip('192.0.2.16'))).toThrow(AllocationError);
    // outside the range: not the pool's business
    p.take(ip('192.0.2.99'));
    expect(p.isFree(ip('192.0.2.99'))).toBe(false);
  });
  test('refuses an empty or absurdly large range', () => {
    expect(() => new AddressPool(ip('192.0.2.10'), ip('192.0.2.9'))).toThrow(RangeError);
    expect(() => new AddressPool(ip('10.0.0.0'), ip('12.0.0.0'))).toThrow(/at most/);
  });
  test('behaves like a set (model check)', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 100 }), fc.array(fc.tuple(fc.boolean(), fc.nat({ max: 120 })), { maxLength: 300 }), (size, ops) => {
      const first = ip('198.51.100.0');
      const p = new AddressPool(first, first + size - 1);
      const model = new Set<number>();
      for (const [take, off] of ops) {
        const a = first + off;
        if (take) {
          if (off >= size) continue;
          const got = (() => { try { return p.allocate(a); } catch (e) { return e; } })();
          if (model.size === size) expect(got).toBeInstanceOf(AddressPoolExhaustedError);
          else {
            const want = model.has(a) ? Math.min(...[...Array(size).keys()].map((k) => first + k).filter((x) => !model.has(x))) : a;
            expect(got).toBe(want);
            model.add(want);
          }
        } else if (model.has(a)) {
          p.release(a);
          model.delete(a);
        }
        expect(p.used).toBe(model.size);
      }
    }), { numRuns: 300 });
  });
});
