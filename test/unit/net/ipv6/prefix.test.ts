// Host ULA prefixes, per-link /64s and SLAAC addresses: fixed by the derivations in prefix.ts, pinned
// here so a change that would move every host's or machine's prefix shows up.
import { describe, expect, test } from 'vitest';
import {
  addressBytes,
  formatAddress,
  formatPrefix,
  hostUlaPrefix,
  linkLocalAddress,
  linkPrefix,
  parseIpv6Prefix,
  slaacAddress,
} from '../../../../src/net/ipv6/prefix.js';

const ID_A = '0123456789abcdef0123456789abcdef';
const ID_B = 'fedcba9876543210fedcba9876543210';
const mac = (s: string): Uint8Array => Uint8Array.from(s.split(':').map((x) => parseInt(x, 16)));

describe('the host ULA /48 (RFC 4193)', () => {
  test('fd00::/8 and a 40-bit ID from the machine ID, stable and host-specific', () => {
    const a = hostUlaPrefix(ID_A);
    expect(a.length).toBe(48);
    expect(formatPrefix(a)).toMatch(/^fd[0-9a-f]{2}:[0-9a-f]{1,4}:[0-9a-f]{1,4}::\/48$/);
    expect(formatPrefix(hostUlaPrefix(`${ID_A}\n`))).toBe(formatPrefix(a));
    expect(formatPrefix(hostUlaPrefix(ID_B))).not.toBe(formatPrefix(a));
    expect(formatPrefix(a)).toMatchInlineSnapshot(`"fd11:b2dc:59f0::/48"`);
  });

  test('the machine ID cannot be read out of it', () => {
    expect(formatPrefix(hostUlaPrefix(ID_A)).replace(/:/g, '')).not.toContain('0123');
  });

  test('refuses a machine ID that is not 32 hex digits', () => {
    expect(() => hostUlaPrefix('uninitialized')).toThrow(/machine ID/);
  });
});

describe('per-link /64s', () => {
  const base = parseIpv6Prefix('2001:db8:42::/48');

  test('stable per kind and key, inside the base, never subnet 0', () => {
    const p = linkPrefix(base, 'veth', 'web');
    expect(formatPrefix(p)).toBe(formatPrefix(linkPrefix(base, 'veth', 'web')));
    expect(formatPrefix(p)).toMatch(/^2001:db8:42:[0-9a-f]{1,4}::\/64$/);
    expect(formatPrefix(linkPrefix(base, 'zone', 'web'))).not.toBe(formatPrefix(p));
    expect(formatPrefix(p)).toMatchInlineSnapshot(`"2001:db8:42:2b4::/64"`);
  });

  test('moves past prefixes in use', () => {
    const p = linkPrefix(base, 'veth', 'web');
    const q = linkPrefix(base, 'veth', 'web', new Set([formatPrefix(p)]));
    expect(formatPrefix(q)).not.toBe(formatPrefix(p));
  });

  test('a /56 base has 255 usable /64s; a /64 base none', () => {
    const small = parseIpv6Prefix('2001:db8:0:ff00::/56');
    const used = new Set<string>();
    for (let i = 0; i < 255; i++) used.add(formatPrefix(linkPrefix(small, 'veth', `m${i}`, used)));
    expect(used.size).toBe(255);
    expect(() => linkPrefix(small, 'veth', 'one-more', used)).toThrow(/no free \/64/);
    expect(() => linkPrefix(parseIpv6Prefix('2001:db8::/64'), 'veth', 'x')).toThrow(/no room/);
  });

  test.each([
    ['banana', /not an IPv6 prefix/],
    ['2001:db8::/80', /longer than \/64/],
    ['2001:db8::1/48', /bits set past \/48; did you mean 2001:db8::\/48/],
  ])('refuses %s', (text, msg) => {
    expect(() => parseIpv6Prefix(text)).toThrow(msg);
  });
});

describe('interface identifiers (RFC 4291 appendix A)', () => {
  test('modified EUI-64 as the kernel forms it', () => {
    // the link-local address of the real RS in ndp.test.ts
    expect(formatAddress(linkLocalAddress(mac('02:00:00:00:00:01')))).toBe('fe80::ff:fe00:1');
    expect(formatAddress(slaacAddress(parseIpv6Prefix('2001:db8:1:2::/64'), mac('00:1b:63:84:45:e6')))).toBe('2001:db8:1:2:21b:63ff:fe84:45e6');
  });

  test('address text round trip', () => {
    expect(formatAddress(addressBytes('2001:db8::1'))).toBe('2001:db8::1');
  });
});

describe('IPv6 settings ($NSPAWN_TS_IPV6, nspawn-netd --ipv6=)', () => {
  test('default and "yes": the host ULA; "no": off; a prefix: global', async () => {
    const { ipv6Settings } = await import('../../../../src/net/netd/ipv6.js');
    expect(ipv6Settings(undefined)).toEqual({ enabled: true });
    expect(ipv6Settings('yes')).toEqual({ enabled: true });
    expect(ipv6Settings('no')).toEqual({ enabled: false });
    expect(ipv6Settings('2001:db8:42::/48')).toEqual({ enabled: true, prefix: '2001:db8:42::/48' });
    expect(() => ipv6Settings('banana', '--ipv6')).toThrow(/^--ipv6: "banana" is not an IPv6 prefix.*or "no" to turn IPv6 off$/);
  });

  test('nspawn-netd --ipv6= is parsed and checked', async () => {
    const { parseSidecarArgs } = await import('../../../../src/net/netd/daemon.js');
    expect(parseSidecarArgs(['--ipv6=no'], {})).toMatchObject({ ipv6: { enabled: false } });
    expect(parseSidecarArgs(['--ipv6', '2001:db8:42::/56'], {})).toMatchObject({ ipv6: { enabled: true, prefix: '2001:db8:42::/56' } });
    expect(parseSidecarArgs([], { NSPAWN_TS_IPV6: 'no' })).toMatchObject({ ipv6: { enabled: false } });
    expect(() => parseSidecarArgs(['--ipv6=2001:db8::/96'], {})).toThrow(/longer than \/64/);
  });
});
