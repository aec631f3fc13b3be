import { createHash, createHmac } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { hmacSha256, sha256 } from '../../../src/common/sha256.js';
import { keyHash } from '../../../src/net/pool.js';
import { addressHash } from '../../../src/net/netd/addresses.js';
import { hostUlaPrefix, linkPrefix, formatPrefix } from '../../../src/net/ipv6/prefix.js';

describe('SHA-256 without node:crypto', () => {
  test('the digests node:crypto gives, for any parts (strings as UTF-8) and keys', () => {
    fc.assert(fc.property(fc.array(fc.oneof(fc.string({ unit: 'grapheme' }), fc.uint8Array({ maxLength: 200 })), { minLength: 1, maxLength: 4 }), (parts) => {
      const h = createHash('sha256');
      for (const p of parts) h.update(p);
      expect(sha256(...parts).equals(h.digest())).toBe(true);
    }));
    fc.assert(fc.property(fc.uint8Array({ maxLength: 100 }), fc.string(), (key, data) => {
      expect(hmacSha256(key, data).equals(createHmac('sha256', key).update(data).digest())).toBe(true);
    }));
  });

  test('a Buffer of its own (readBigUInt64BE, hex)', () => {
    expect(sha256('abc').toString('hex')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    expect(sha256('x', 'y').length).toBe(32);
  });

  test('what the pool, the address placement and the IPv6 prefixes derive stays as it was (node:crypto\'s digests)', () => {
    const digest64 = (s: string): bigint => createHash('sha256').update(s, 'utf8').digest().readBigUInt64BE(0);
    expect(keyHash('zone', 'web')).toBe(digest64('nspawn-ts/subnet/v1\0' + 'zone' + '\0' + 'web'));
    expect(addressHash('pod-1')).toBe(digest64('nspawn-ts/address/v1\0' + 'pod-1'));
    const ula = hostUlaPrefix('0123456789abcdef0123456789abcdef');
    const mac = createHmac('sha256', Buffer.from('0123456789abcdef0123456789abcdef', 'hex')).update(Buffer.from('5b3c0d5a8e2f4f61a7c2e4d1f09b6a37', 'hex')).digest();
    expect([...ula.bytes.subarray(1, 6)]).toEqual([...mac.subarray(0, 5)]);
    const n = Number(digest64('nspawn-ts/prefix6/v1\0' + 'veth' + '\0' + 'm1') % 65536n);
    const p = linkPrefix(ula, 'veth', 'm1');
    expect((p.bytes[6] as number) * 256 + (p.bytes[7] as number)).toBe(n);
    expect(formatPrefix(p).endsWith('/64')).toBe(true);
  });
});
