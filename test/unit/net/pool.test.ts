// The subnet pool: networkd's pools, prefix lengths, host address and DHCP pool, with a stable
// hash-derived start instead of networkd's random one.
import { describe, expect, test } from 'vitest';
import fc from 'fast-check';
import { Address4 } from 'ip-address';
import { ConfigError } from '../../../src/errors.js';
import {
  DEFAULT_POOLS, SubnetPoolExhaustedError, PoolStateError, SubnetPool, describeSubnet, keyHash, type LinkKind,
} from '../../../src/net/pool.js';

function range(cidr: string): [bigint, bigint] {
  const a = new Address4(cidr);
  return [a.startAddress().bigInt(), a.endAddress().bigInt()];
}
function overlap(a: string, b: string): boolean {
  const [s1, e1] = range(a);
  const [s2, e2] = range(b);
  return s1 <= e2 && s2 <= e1;
}

describe('golden values (pinned: changing them moves every user\'s containers)', () => {
  test('key hashes: SHA-256("nspawn-ts/subnet/v1\\0" kind "\\0" key), first 8 bytes big-endian', () => {
    expect(keyHash('veth', 'mycontainer')).toBe(0x91e0305c38e755edn);
    expect(keyHash('veth', 'web')).toBe(0xa698fda6fdea5081n);
    expect(keyHash('veth', 'db')).toBe(0xe75b21313329f478n);
    expect(keyHash('zone', 'lab')).toBe(0xcfcc6edf3309f175n);
  });

  test('subnets of a few names on an empty host', () => {
    const p = new SubnetPool();
    expect(p.allocate('veth', 'mycontainer')).toEqual({
      kind: 'veth', key: 'mycontainer', subnet: '192.168.94.208/28', network: '192.168.94.208', prefixLength: 28,
      netmask: '255.255.255.240', hostAddress: '192.168.94.209', broadcast: '192.168.94.223',
      dhcpPool: { offset: 1, size: 14, first: '192.168.94.209', last: '192.168.94.222' },
      clientRange: { first: '192.168.94.210', last: '192.168.94.222', count: 13 },
    });
    expect(p.allocate('veth', 'web').subnet).toBe('192.168.8.16/28');
    expect(p.allocate('veth', 'db').subnet).toBe('192.168.71.128/28');
    const zone = p.allocate('zone', 'lab');
    expect(zone).toMatchObject({
      subnet: '192.168.117.0/24', hostAddress: '192.168.117.1', broadcast: '192.168.117.255', netmask: '255.255.255.0',
      dhcpPool: { offset: 1, size: 254, first: '192.168.117.1', last: '192.168.117.254' },
      clientRange: { first: '192.168.117.2', last: '192.168.117.254', count: 253 },
    });
  });

  test('the same key in another kind is another allocation', () => {
    const p = new SubnetPool();
    const a = p.allocate('veth', 'lab');
    const b = p.allocate('zone', 'lab');
    expect(overlap(a.subnet, b.subnet)).toBe(false);
  });
});

describe('collisions', () => {
  test('a host address in the preferred subnet moves the machine to the next free one', () => {
    const p = new SubnetPool();
    const a = p.allocate('veth', 'mycontainer', ['192.168.94.210/28']);
    expect(a.subnet).toBe('192.168.94.224/28');
  });

  test('a wide route is jumped over in one step, and a whole covered pool falls to the next pool', () => {
    const p = new SubnetPool();
    expect(p.allocate('veth', 'mycontainer', ['192.168.94.0/24']).subnet).toBe('192.168.95.0/28');
    const q = new SubnetPool();
    const b = q.allocate('veth', 'mycontainer', ['192.168.0.0/16', '10.9.0.0/16']);
    expect(new Address4(b.subnet).isInSubnet(new Address4('172.16.0.0/12'))).toBe(true);
  });

  test('routing defaults (/0, /1) and IPv6 entries are not subnets in use', () => {
    const p = new SubnetPool();
    expect(p.allocate('veth', 'mycontainer', ['0.0.0.0/0', '0.0.0.0/1', '128.0.0.0/1', 'fd00::1/64', '::/0']).subnet).toBe('192.168.94.208/28');
  });

  test('wrap-around: the last subnet of a pool taken, the search continues at the pool start', () => {
    const p = new SubnetPool({ pools: ['192.0.2.0/24'] });
    // 16 /28s; 'x' starts at the 9th (192.0.2.128); from there to the end of the pool all are in use
    expect(keyHash('veth', 'x') % 16n).toBe(8n);
    expect(p.allocate('veth', 'x', ['192.0.2.128/26', '192.0.2.192/26']).subnet).toBe('192.0.2.0/28');
    const q = new SubnetPool({ pools: ['192.0.2.0/24'] });
    expect(q.allocate('veth', 'x', ['192.0.2.128/25', '192.0.2.0/28']).subnet).toBe('192.0.2.16/28');
  });

  test('exhaustion is a typed error naming the pools, and changes nothing', () => {
    const p = new SubnetPool({ pools: ['198.51.100.0/27'] });
    p.allocate('veth', 'a');
    p.allocate('veth', 'b');
    const before = p.serialize();
    let err: unknown;
    try {
      p.allocate('veth', 'c');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SubnetPoolExhaustedError);
    expect((err as SubnetPoolExhaustedError).code).toBe('POOL_EXHAUSTED');
    expect((err as Error).message).toMatch(/no free \/28 subnet for machine 'c' in 198\.51\.100\.0\/27/);
    expect(p.serialize()).toEqual(before);
    expect(() => new SubnetPool({ pools: ['198.51.100.0/28'] }).allocate('zone', 'z')).toThrow(SubnetPoolExhaustedError);
  });

  test('bad pools are configuration errors', () => {
    expect(() => new SubnetPool({ pools: ['10.0.0.1/8'] })).toThrow(/host bits set; did you mean 10.0.0.0\/8/);
    expect(() => new SubnetPool({ pools: ['ten'] })).toThrow(ConfigError);
    expect(() => new SubnetPool({ pools: ['10.0.0.0'] })).toThrow(/no prefix length/);
    expect(() => new SubnetPool({ pools: [] })).toThrow(ConfigError);
    expect(() => new SubnetPool().allocate('veth', 'a', ['not-an-address'])).toThrow(/neither an IPv4 nor an IPv6/);
    expect(() => new SubnetPool().allocate('veth', '')).toThrow(/must not be empty/);
  });
});

describe('stability, release, persistence', () => {
  test('allocate is idempotent and a released key gets its subnet back', () => {
    const p = new SubnetPool();
    const a = p.allocate('veth', 'web', ['192.168.8.16/28']); // moved on by a collision
    expect(a.subnet).toBe('192.168.8.32/28');
    expect(p.allocate('veth', 'web').subnet).toBe(a.subnet);
    expect(p.release('veth', 'web')).toBe(true);
    expect(p.release('veth', 'web')).toBe(false);
    expect(p.get('veth', 'web')).toBeUndefined();
    // the collision is gone, but the key keeps the subnet it had: moving only on a collision
    expect(p.allocate('veth', 'web').subnet).toBe('192.168.8.32/28');
  });

  test('the link\'s own address, reported back after a restart, is not a collision', () => {
    const p = new SubnetPool();
    const a = p.allocate('veth', 'db');
    expect(p.allocate('veth', 'db', [`${a.hostAddress}/28`, a.subnet]).subnet).toBe(a.subnet);
    // a foreign prefix of another length inside it is
    expect(p.allocate('veth', 'db', [`${a.clientRange.first}/30`]).subnet).not.toBe(a.subnet);
  });

  test('a remembered subnet is avoided by others while there is room, and given up when there is not', () => {
    const p = new SubnetPool({ pools: ['198.51.100.0/27'] });
    const a = p.allocate('veth', 'a');
    p.release('veth', 'a');
    const b = p.allocate('veth', 'b');
    expect(b.subnet).not.toBe(a.subnet);
    const c = p.allocate('veth', 'c');
    expect(c.subnet).toBe(a.subnet); // only the remembered one was left
    // 'a' returns: its subnet is taken now, and the pool is full
    expect(() => p.allocate('veth', 'a')).toThrow(SubnetPoolExhaustedError);
  });

  test('serialize → JSON → restore gives the same allocations and the same answers', () => {
    const p = new SubnetPool();
    p.allocate('veth', 'one');
    p.allocate('zone', 'lab');
    p.allocate('veth', 'two');
    p.release('veth', 'two');
    const q = SubnetPool.restore(JSON.parse(JSON.stringify(p.serialize())));
    expect(q.allocations()).toEqual(p.allocations());
    expect(q.serialize()).toEqual(p.serialize());
    expect(q.allocate('veth', 'two')).toEqual(p.allocate('veth', 'two'));
  });

  test('restore refuses malformed or inconsistent state', () => {
    const bad: unknown[] = [
      null, { version: 2, entries: [] }, { version: 1 },
      { version: 1, entries: [{ kind: 'tap', key: 'a', subnet: '10.0.0.0/28', active: true }] },
      { version: 1, entries: [{ kind: 'veth', key: '', subnet: '10.0.0.0/28', active: true }] },
      { version: 1, entries: [{ kind: 'veth', key: 'a', subnet: '10.0.0.8/28', active: true }] },
      { version: 1, entries: [{ kind: 'veth', key: 'a', subnet: '10.0.0.0/24', active: true }] },
      { version: 1, entries: [{ kind: 'veth', key: 'a', subnet: '10.0.0.0/28', active: 'yes' }] },
      { version: 1, entries: [{ kind: 'veth', key: 'a', subnet: '10.0.0.0/28', active: true }, { kind: 'zone', key: 'b', subnet: '10.0.0.0/24', active: true }] },
      { version: 1, entries: [{ kind: 'veth', key: 'a', subnet: '10.0.0.0/28', active: true }, { kind: 'veth', key: 'a', subnet: '10.0.1.0/28', active: false }] },
    ];
    for (const s of bad) expect(() => SubnetPool.restore(s), JSON.stringify(s)).toThrow(PoolStateError);
  });

  test('an allocation restored from a pool no longer configured moves into the configured ones', () => {
    const state = { version: 1, entries: [{ kind: 'veth', key: 'old', subnet: '10.1.2.0/28', active: false, used: 1 }] };
    const p = SubnetPool.restore(state, { pools: ['172.16.0.0/12'] });
    expect(new Address4(p.allocate('veth', 'old').subnet).isInSubnet(new Address4('172.16.0.0/12'))).toBe(true);
  });

  test('describeSubnet for a /24 and a /28', () => {
    expect(describeSubnet('veth', 'k', '10.0.0.16/28')).toMatchObject({ hostAddress: '10.0.0.17', broadcast: '10.0.0.31', dhcpPool: { size: 14 } });
    expect(DEFAULT_POOLS).toEqual(['192.168.0.0/16', '172.16.0.0/12', '10.0.0.0/8']);
  });
});

describe('pool (property-based)', () => {
  const name = fc.stringMatching(/^[a-z][a-z0-9-]{0,11}$/);
  const kind = fc.constantFrom<LinkKind>('veth', 'zone');
  const prefix = fc.tuple(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 8, max: 32 }))
    .map(([n, len]) => `${Address4.fromInteger(n).correctForm()}/${len}`);
  const pools = fc.constantFrom(['192.168.0.0/16', '172.16.0.0/12', '10.0.0.0/8'], ['198.51.100.0/24'], ['203.0.113.0/25', '192.0.2.0/24']);

  test('allocations never overlap each other or the in-use prefixes; they are aligned and inside the pools', () => {
    fc.assert(fc.property(pools, fc.array(fc.tuple(kind, name), { maxLength: 20 }), fc.array(prefix, { maxLength: 10 }), (poolList, requests, inUse) => {
      const p = new SubnetPool({ pools: poolList });
      const got = new Map<string, string>();
      for (const [k, n] of requests) {
        let a;
        try {
          a = p.allocate(k, n, inUse);
        } catch (e) {
          expect(e).toBeInstanceOf(SubnetPoolExhaustedError);
          continue;
        }
        got.set(`${k}:${n}`, a.subnet);
        const net = new Address4(a.subnet);
        expect(net.subnetMask).toBe(k === 'veth' ? 28 : 24);
        expect(net.startAddress().correctForm()).toBe(net.correctForm());
        expect(poolList.some((pl) => net.isInSubnet(new Address4(pl)))).toBe(true);
        for (const u of inUse) expect(overlap(a.subnet, u), `${a.subnet} vs in-use ${u}`).toBe(false);
      }
      const subnets = [...got.values()];
      for (let i = 0; i < subnets.length; i++) {
        for (let j = i + 1; j < subnets.length; j++) expect(overlap(subnets[i]!, subnets[j]!)).toBe(false);
      }
      expect(p.allocations().map((a) => a.subnet).sort()).toEqual([...subnets].sort());
    }), { numRuns: 200 });
  });

  test('same key → same subnet when free, in any order and in a fresh pool', () => {
    fc.assert(fc.property(fc.uniqueArray(name, { minLength: 1, maxLength: 8 }), (names) => {
      const fwd = new SubnetPool();
      const rev = new SubnetPool();
      const a = names.map((n) => fwd.allocate('veth', n).subnet);
      const b = [...names].reverse().map((n) => rev.allocate('veth', n).subnet).reverse();
      // with 4096 /28s in the first pool, collisions between a handful of names are rare; where
      // none happened, order does not matter
      const alone = names.map((n) => new SubnetPool().allocate('veth', n).subnet);
      names.forEach((_, i) => {
        if (new Set(alone).size === alone.length) {
          expect(a[i]).toBe(alone[i]);
          expect(b[i]).toBe(alone[i]);
        }
      });
    }));
  });

  test('persist/restore round-trips any sequence of allocate and release', () => {
    fc.assert(fc.property(fc.array(fc.tuple(fc.boolean(), kind, name), { maxLength: 30 }), (ops) => {
      const p = new SubnetPool({ pools: ['10.0.0.0/16'] });
      for (const [alloc, k, n] of ops) {
        if (alloc) p.allocate(k, n);
        else p.release(k, n);
      }
      const q = SubnetPool.restore(JSON.parse(JSON.stringify(p.serialize())), { pools: ['10.0.0.0/16'] });
      expect(q.allocations()).toEqual(p.allocations());
    }));
  });
});
