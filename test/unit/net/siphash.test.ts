// SipHash-2-4: the one implementation (src/net/siphash.ts) behind interface names, MACs, UID
// ranges and the DHCP server's address slots, pinned by the paper's vectors (one key, every tail
// length) and by outputs of systemd itself under the keys it uses (nspawn-networking.md §1, §6.2).
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { mod64, siphash24, siphash24Bytes, siphash24Halves, siphashKey } from '../../../src/net/siphash.js';
import { SHORTEN_IFNAME_HASH_KEY, MAC_KEYS } from '../../../src/net/naming.js';

// The reference implementation's vectors (SipHash paper, Appendix A; vectors.h of the reference
// code): key 00..0f, message 00..(i-1) for i = 0..63, output as the u64 the function returns.
const VECTORS = [
  0x726fdb47dd0e0e31n, 0x74f839c593dc67fdn, 0x0d6c8009d9a94f5an, 0x85676696d7fb7e2dn,
  0xcf2794e0277187b7n, 0x18765564cd99a68dn, 0xcbc9466e58fee3cen, 0xab0200f58b01d137n,
  0x93f5f5799a932462n, 0x9e0082df0ba9e4b0n, 0x7a5dbbc594ddb9f3n, 0xf4b32f46226bada7n,
  0x751e8fbc860ee5fbn, 0x14ea5627c0843d90n, 0xf723ca908e7af2een, 0xa129ca6149be45e5n,
  0x3f2acc7f57c29bdbn, 0x699ae9f52cbe4794n, 0x4bc1b3f0968dd39cn, 0xbb6dc91da77961bdn,
  0xbed65cf21aa2ee98n, 0xd0f2cbb02e3b67c7n, 0x93536795e3a33e88n, 0xa80c038ccd5ccec8n,
  0xb8ad50c6f649af94n, 0xbce192de8a85b8ean, 0x17d835b85bbb15f3n, 0x2f2e6163076bcfadn,
  0xde4daaaca71dc9a5n, 0xa6a2506687956571n, 0xad87a3535c49ef28n, 0x32d892fad841c342n,
  0x7127512f72f27ccen, 0xa7f32346f95978e3n, 0x12e0b01abb051238n, 0x15e034d40fa197aen,
  0x314dffbe0815a3b4n, 0x027990f029623981n, 0xcadcd4e59ef40c4dn, 0x9abfd8766a33735cn,
  0x0e3ea96b5304a7d0n, 0xad0c42d6fc585992n, 0x187306c89bc215a9n, 0xd4a60abcf3792b95n,
  0xf935451de4f21df2n, 0xa9538f0419755787n, 0xdb9acddff56ca510n, 0xd06c98cd5c0975ebn,
  0xe612a3cb9ecba951n, 0xc766e62cfcadaf96n, 0xee64435a9752fe72n, 0xa192d576b245165an,
  0x0a8787bf8ecb74b2n, 0x81b3e73d20b49b6fn, 0x7fa8220ba3b2ecean, 0x245731c13ca42499n,
  0xb78dbfaf3a8d83bdn, 0xea1ad565322a1a0bn, 0x60e61c23a3795013n, 0x6606d7e446282b93n,
  0x6ca4ecb15c5f91e1n, 0x9f626da15c9625f3n, 0xe51b38608ef25f57n, 0x958a324ceb064572n,
];

const KEY = Uint8Array.from({ length: 16 }, (_, i) => i);

const hex64 = ([h, l]: [number, number]): string => h.toString(16).padStart(8, '0') + l.toString(16).padStart(8, '0');

/** systemd-networkd's DHCP server key (sd-dhcp-server.c HASH_KEY). */
const NETWORKD_DHCP_KEY = siphashKey('0d 1d fe bd f1 24 bd b3 47 f1 dd 6e 73 21 93 30');

describe('SipHash-2-4', () => {
  test('matches all 64 reference vectors (message lengths 0..63), as a bigint and in halves', () => {
    const msg = Uint8Array.from({ length: 64 }, (_, i) => i);
    VECTORS.forEach((want, i) => {
      expect(siphash24(msg.subarray(0, i), KEY), `length ${i}`).toBe(want);
      expect(hex64(siphash24Halves(msg.subarray(0, i), KEY)), `length ${i}`).toBe(want.toString(16).padStart(16, '0'));
    });
  });

  test("the paper's worked example serialises little-endian", () => {
    const msg = Uint8Array.from({ length: 15 }, (_, i) => i);
    expect(Buffer.from(siphash24Bytes(msg, KEY)).toString('hex')).toBe('e545be4961ca29a1');
  });

  // What systemd computed for these inputs, under its own keys: the hash behind the shortened
  // names of veths (nspawn-network.c, shorten_ifname), the raw bytes behind a ve- link's MAC
  // (generate_mac: machine-id ‖ name) and networkd's DHCP slot for a client id (u64_LE(len) ‖ id).
  test.each([
    ['ve-long-container-name', SHORTEN_IFNAME_HASH_KEY, Buffer.from('ve-long-container-name'), '848920ab9b2596e9'],
    ['ve-verylongcontainername', SHORTEN_IFNAME_HASH_KEY, Buffer.from('ve-verylongcontainername'), 'a959bc4616d7e419'],
    ['vb-my-test-container', SHORTEN_IFNAME_HASH_KEY, Buffer.from('vb-my-test-container'), 'd357f37e24fe767a'],
    ['ve-abcdefghijklm', SHORTEN_IFNAME_HASH_KEY, Buffer.from('ve-abcdefghijklm'), '50dfb480a4ca17b9'],
    ['networkd client id 01:06:74:3f:97:db:5a', NETWORKD_DHCP_KEY,
      Buffer.from('0700000000000000' + '0106743f97db5a', 'hex'), '8c36b8019cf0e4e7'],
  ])("systemd's hash of %s", (_what, key, input, want) => {
    expect(hex64(siphash24Halves(input, key))).toBe(want);
    expect(siphash24(input, key)).toBe(BigInt(`0x${want}`));
    expect(Buffer.from(siphash24Bytes(input, key)).toString('hex')).toBe(Buffer.from(want, 'hex').reverse().toString('hex'));
  });

  test("systemd's MAC of machine 0123…cdef/mycontainer: hash bytes 75 84 85 cd d8 e2 before the bit fix-up", () => {
    const input = Buffer.concat([Buffer.from('0123456789abcdef0123456789abcdef', 'hex'), Buffer.from('mycontainer')]);
    expect(Buffer.from(siphash24Bytes(input, MAC_KEYS.host).subarray(0, 6)).toString('hex')).toBe('758485cdd8e2');
  });

  test('the three forms agree, and no call leaks state into the next', () => {
    const key = fc.uint8Array({ minLength: 16, maxLength: 16 });
    const msg = fc.uint8Array({ maxLength: 64 });
    fc.assert(fc.property(key, msg, key, msg, (k1, m1, k2, m2) => {
      const first = siphash24Halves(m1, k1);
      const other = siphash24(m2, k2);
      expect(siphash24Halves(m1, k1)).toEqual(first);
      expect(siphash24(m1, k1)).toBe((BigInt(first[0]) << 32n) | BigInt(first[1]));
      const bytes = siphash24Bytes(m1, k1);
      expect(new DataView(bytes.buffer).getBigUint64(0, true)).toBe(siphash24(m1, k1));
      expect(siphash24(m2, k2)).toBe(other);
    }), { numRuns: 300 });
  });

  test('refuses keys that are not 16 bytes', () => {
    expect(() => siphash24(new Uint8Array(0), new Uint8Array(15))).toThrow(/16 bytes/);
    expect(() => siphash24Halves(new Uint8Array(0), new Uint8Array(17))).toThrow(/16 bytes/);
    expect(() => siphashKey('00 01')).toThrow(/32 hex digits/);
    expect(siphashKey('00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f')).toEqual(KEY);
  });

  test('mod64 agrees with BigInt arithmetic', () => {
    fc.assert(fc.property(fc.nat({ max: 0xffffffff }), fc.nat({ max: 0xffffffff }), fc.integer({ min: 1, max: 0xffffffff }), (hi, lo, n) => {
      expect(mod64([hi, lo], n)).toBe(Number(((BigInt(hi) << 32n) | BigInt(lo)) % BigInt(n)));
    }));
  });
});
