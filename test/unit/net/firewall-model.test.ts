// The firewall model's address helpers (src/net/firewall/model.ts).
import fc from 'fast-check';
import { Address4, Address6 } from 'ip-address';
import { expect, test } from 'vitest';
import { addressFamily } from '../../../src/net/firewall/model.js';

test('addressFamily: 4 for dotted quads, 6 for IPv6 text, nothing for subnets, zones or other text', () => {
  expect(['192.0.2.1', '0.0.0.0', '255.255.255.255'].map(addressFamily)).toEqual([4, 4, 4]);
  expect(['::1', '2001:db8::1', '::ffff:192.0.2.1', 'FE80::1'].map(addressFamily)).toEqual([6, 6, 6, 6]);
  expect(['192.0.2.0/24', '2001:db8::/32', 'fe80::1%eth0', '192.0.2', '1:2', '', 'localhost', '192.0.2.256']
    .map(addressFamily)).toEqual(new Array(8).fill(undefined));
});

test('addressFamily asks only the parser that can accept the text: the same answers as asking both', () => {
  const both = (a: string): 4 | 6 | undefined => {
    if (Address4.isValid(a) && !a.includes('/')) return 4;
    if (Address6.isValid(a) && !a.includes('/') && !a.includes('%')) return 6;
    return undefined;
  };
  const text = fc.oneof(
    fc.ipV4(), fc.ipV6(), fc.ipV4Extended(),
    fc.string({ unit: fc.constantFrom(...'0123456789abcdefABCDEF.:/%x '.split('')), maxLength: 24 }),
  );
  fc.assert(fc.property(text, (a) => addressFamily(a) === both(a)), { numRuns: 3000 });
});
