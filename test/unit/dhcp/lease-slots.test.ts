// The lease table's storage (src/dhcp/lease-slots.ts) against a model made of Maps and arrays, and
// what a lease costs in memory.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { BOUND, LeaseSlots, OFFERED, OFFERS, REMEMBERED } from '../../../src/dhcp/lease-slots.js';
import { LeaseTable } from '../../../src/dhcp/leases.js';
import { subnet } from './helpers.js';

interface Model {
  key: string;
  mac: string;
  src: string | undefined;
  addr: number;
  exp: number;
  held: boolean;
  list: number;
}

const keyArb = fc.oneof(
  fc.integer({ min: 0, max: 40 }).map((i) => `hw:1:0200000000${i.toString(16).padStart(2, '0')}`),
  fc.integer({ min: 0, max: 10 }).map((i) => `id:${'ab'.repeat(20 + i)}`), // longer than a slot holds
  fc.constantFrom('id:é', 'hw:1:ünï€ode', ''), // latin-1 and beyond
);
const macArb = fc.oneof(fc.constantFrom('02:00:00:00:00:42', 'aa:bb:cc:dd:ee:ff', '', '02:00:00:00:00', 'AA:BB:CC:DD:EE:FF', 'not a mac'));
const srcArb = fc.constantFrom(undefined, '0200000000bb', 'ffffffffffff', '02', 'ZZ0000000000');

describe('lease slots', () => {
  test('find, the address index, the lists, the heap and every field agree with a model', () => {
    fc.assert(fc.property(fc.array(fc.tuple(fc.nat(5), keyArb, macArb, srcArb, fc.integer({ min: 0, max: 30 }), fc.integer({ min: 0, max: 1000 })), { maxLength: 300 }),
      (ops) => {
        const slots = new LeaseSlots(4);
        const model = new Map<string, Model>();
        const slotOf = new Map<string, number>();
        const order: string[] = [];
        for (const [op, key, mac, src, addr, exp] of ops) {
          const cur = model.get(key);
          if (op <= 1 && !cur) {
            const s = slots.alloc(key);
            slots.setMac(s, mac);
            slots.setSrc(s, src);
            slots.addr[s] = addr;
            slots.exp[s] = exp;
            slots.state[s] = BOUND;
            slots.schedule(s);
            model.set(key, { key, mac, src, addr, exp, held: false, list: -1 });
            slotOf.set(key, s);
            order.push(key);
          } else if (op === 2 && cur) {
            const s = slotOf.get(key) as number;
            if (cur.held) slots.unhold(s);
            slots.unschedule(s);
            slots.release(s);
            model.delete(key);
            slotOf.delete(key);
            order.splice(order.indexOf(key), 1);
          } else if (op === 3 && cur) {
            const s = slotOf.get(key) as number;
            const holder = [...model.values()].find((m) => m.held && m.addr === cur.addr);
            if (cur.held) {
              slots.unhold(s);
              cur.held = false;
            } else if (!holder) {
              slots.hold(s);
              cur.held = true;
            }
          } else if (op === 4 && cur) {
            const s = slotOf.get(key) as number;
            const list = exp & 1 ? OFFERS : REMEMBERED;
            if (cur.list === list) {
              slots.unlink(s);
              cur.list = -1;
            } else {
              slots.push(list, s);
              cur.list = list;
            }
          } else if (op === 5 && cur) {
            const s = slotOf.get(key) as number;
            slots.setMac(s, mac);
            slots.setSrc(s, src);
            slots.exp[s] = exp;
            slots.schedule(s);
            Object.assign(cur, { mac, src, exp });
          }
          // everything the model knows, the slots say
          expect(slots.count).toBe(model.size);
          for (const m of model.values()) {
            const s = slots.find(m.key);
            expect(s).toBe(slotOf.get(m.key));
            expect(slots.key(s)).toBe(m.key);
            expect(slots.keyIs(s, m.key)).toBe(true);
            expect(slots.mac(s)).toBe(m.mac);
            expect(slots.macIs(s, m.mac)).toBe(true);
            expect(slots.src(s)).toBe(m.src);
            expect(slots.srcIs(s, m.src)).toBe(true);
            if (m.held) expect(slots.holderAt(m.addr)).toBe(s);
          }
          for (let a = 0; a <= 30; a++) {
            const holder = [...model.values()].find((m) => m.held && m.addr === a);
            expect(slots.holderAt(a)).toBe(holder ? slotOf.get(holder.key) : -1);
          }
          expect([...slots.all()].map((s) => slots.key(s))).toEqual(order);
          for (const list of [OFFERS, REMEMBERED]) {
            const on: string[] = [];
            for (let s = slots.listHead(list); s >= 0; s = slots.listNext(s)) on.push(slots.key(s));
            expect(on.sort()).toEqual([...model.values()].filter((m) => m.list === list).map((m) => m.key).sort());
            expect(slots.lsize[list]).toBe(on.length);
          }
          const top = slots.top();
          expect(top < 0 ? undefined : slots.exp[top]).toBe(model.size ? Math.min(...[...model.values()].map((m) => m.exp)) : undefined);
        }
        expect(slots.find('never added')).toBe(-1);
      }), { numRuns: 150 });
  });

  test('a copy does not follow later changes', () => {
    const slots = new LeaseSlots();
    for (const k of ['hw:1:020000000041', 'hw:1:020000000040', `id:${'ab'.repeat(30)}`]) slots.alloc(k);
    slots.release(slots.find('hw:1:020000000041')); // a free slot before the others
    const s = slots.alloc('hw:1:020000000042');
    slots.setMac(s, '02:00:00:00:00:42');
    slots.setSrc(s, 'odd source');
    slots.hostnames.set(s, 'box');
    slots.state[s] = OFFERED;
    slots.exp[s] = 5;
    const copy = slots.packedCopy();
    slots.exp[s] = 9;
    slots.setMac(s, 'weird');
    slots.release(s);
    slots.alloc('hw:1:020000000043');
    expect([...copy.all()].map((x) => [copy.key(x), copy.mac(x), copy.src(x), copy.hostnames.get(x), copy.state[x], copy.exp[x]])).toEqual([
      ['hw:1:020000000040', '', undefined, undefined, OFFERED, 0],
      [`id:${'ab'.repeat(30)}`, '', undefined, undefined, OFFERED, 0],
      ['hw:1:020000000042', '02:00:00:00:00:42', 'odd source', 'box', OFFERED, 5],
    ]);
  });

  test('a lease costs at most 160 bytes of heap and array buffers (bench/dhcp holds 50,000)', () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const used = (): number => {
      gc();
      gc();
      const m = process.memoryUsage();
      return m.heapUsed + m.arrayBuffers;
    };
    const N = 50_000;
    const before = used();
    const table = new LeaseTable(subnet({ address: '198.18.0.1/15' }));
    for (let i = 0; i < N; i++) {
      const hex = (0x020000000000 + i).toString(16).padStart(12, '0');
      const client = { key: `hw:1:${hex}`, mac: hex.replace(/(..)(?!$)/g, '$1:'), macHex: hex };
      table.bind(client, table.firstFree() as number, 3_600_000 + i, undefined, 0, false, '0200000000bb');
    }
    const perLease = (used() - before) / N;
    expect(table.size).toBe(N);
    expect(perLease).toBeLessThan(160); // a JS object per lease with its strings and Map entries: ~290
  });
});
