// The stable address slot networkd's DHCP server gives a client (SipHash-2-4 itself is pinned in
// test/unit/net/siphash.test.ts).
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { clientIdHash, stableAddress } from '../../../src/dhcp/decide.js';
import { ipv4ToString } from '../../../src/dhcp/ipv4.js';
import { clientPacket, subnet } from './helpers.js';
import { Opt } from '../../../src/dhcp/options.js';

const hex64 = ([h, l]: [number, number]): string => h.toString(16).padStart(8, '0') + l.toString(16).padStart(8, '0');

describe('the client hash', () => {
  test("networkd's hash of client id 01:06:74:3f:97:db:5a (nspawn-networking.md §6.2)", () => {
    expect(hex64(clientIdHash(Uint8Array.of(1, 6, 0x74, 0x3f, 0x97, 0xdb, 0x5a)))).toBe('8c36b8019cf0e4e7');
  });
});

describe('the stable slot', () => {
  test('is where networkd puts the client: 10.0.0.24 in 10.0.0.16/28', () => {
    const p = clientPacket({ type: 1, clientId: Uint8Array.of(1, 6, 0x74, 0x3f, 0x97, 0xdb, 0x5a) });
    expect(ipv4ToString(stableAddress(subnet({ address: '10.0.0.17/28' }), p))).toBe('10.0.0.24');
    // /24: offset 1 + h mod 254 (networkd's pool: the subnet without network and broadcast)
    expect(ipv4ToString(stableAddress(subnet({ address: '10.0.0.1/24' }), p))).toBe('10.0.0.204');
  });
  test('without option 61 it hashes htype ‖ chaddr, as networkd synthesises the id', () => {
    const withId = clientPacket({ type: 1, mac: '06:74:3f:97:db:5a', clientId: Uint8Array.of(1, 6, 0x74, 0x3f, 0x97, 0xdb, 0x5a) });
    const without = clientPacket({ type: 1, mac: '06:74:3f:97:db:5a' });
    without.options.delete(Opt.CLIENT_ID);
    const c = subnet({ address: '10.0.0.17/28' });
    expect(stableAddress(c, without)).toBe(stableAddress(c, withId));
  });
  test('always lies in the pool', () => {
    const c = subnet({ address: '198.51.100.1/24', pool: '198.51.100.100-198.51.100.119' });
    fc.assert(fc.property(fc.uint8Array({ minLength: 2, maxLength: 40 }), (id) => {
      const a = stableAddress(c, clientPacket({ type: 1, clientId: id }));
      expect(a).toBeGreaterThanOrEqual(c.poolFirst);
      expect(a).toBeLessThanOrEqual(c.poolLast);
    }));
  });
});
