// Router advertisement and solicitation bytes against layouts written out by hand from RFC 4861 and
// RFC 8106, a solicitation captured from a real kernel (Linux sends one when a link comes up with
// accept_ra=1), and round trips of random messages.
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { runFilter } from '../../../../src/dhcp/bpf.js';
import {
  type RouterAdvertisement,
  buildIpv6Icmp,
  decodeRouterAdvertisement,
  decodeRouterSolicitation,
  encodeDomainName,
  encodeRouterAdvertisement,
  parseIpv6Icmp,
} from '../../../../src/net/ipv6/ndp.js';
import { addressBytes } from '../../../../src/net/ipv6/prefix.js';
import { routerSolicitationFilter } from '../../../../src/net/ipv6/ra-server.js';

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

// The IPv6 datagram of an RS a Linux 6.x kernel sent from 02:00:00:00:00:01 (tcpdump capture, the
// Ethernet header removed as a SOCK_DGRAM packet socket removes it).
const KERNEL_RS = hex(`
  60000000 0010 3a ff
  fe800000000000000000 00fffe000001
  ff020000000000000000000000000002
  85 00 7b2c 00000000 01 01 020000000001`);

const RA: RouterAdvertisement = {
  curHopLimit: 64,
  managed: false,
  other: false,
  routerLifetime: 1800,
  reachableTime: 0,
  retransTimer: 0,
  sourceMac: hex('020000000001'),
  mtu: 1500,
  prefixes: [{ prefix: addressBytes('fd00:1:2:3::'), length: 64, onLink: true, autonomous: true, validLifetime: 2592000, preferredLifetime: 604800 }],
  rdnss: { lifetime: 1800, servers: [addressBytes('fd00:1:2:3::1')] },
  dnssl: { lifetime: 1800, domains: ['machine'] },
};

const RA_BYTES = `
  86 00 0000 40 00 0708 00000000 00000000
  01 01 020000000001
  05 01 0000 000005dc
  03 04 40 c0 00278d00 00093a80 00000000 fd000001000200030000000000000000
  19 03 0000 00000708 fd000001000200030000000000000001
  1f 03 0000 00000708 07 6d616368696e65 00 00000000000000`;

describe('router advertisement (RFC 4861 §4.2, RFC 8106)', () => {
  test('encodes header, SLLA, MTU, prefix information, RDNSS and DNSSL byte for byte', () => {
    expect(toHex(encodeRouterAdvertisement(RA))).toBe(toHex(hex(RA_BYTES)));
  });

  test('decodes what it encodes', () => {
    expect(decodeRouterAdvertisement(hex(RA_BYTES))).toEqual(RA);
  });

  test('clears prefix bits past the length (§4.6.2)', () => {
    const ra = { ...RA, prefixes: [{ ...RA.prefixes[0]!, prefix: addressBytes('fd00:1:2:3::99') }] };
    expect(toHex(encodeRouterAdvertisement(ra))).toBe(toHex(hex(RA_BYTES)));
  });

  test('router lifetime 0 for the final advertisement, options left out when empty', () => {
    const b = encodeRouterAdvertisement({ ...RA, routerLifetime: 0, sourceMac: undefined, mtu: undefined, prefixes: [], rdnss: undefined, dnssl: undefined });
    expect(toHex(b)).toBe('8600000040000000' + '0000000000000000');
  });

  test.each([
    ['too short', '8600000040000708000000'],
    ['an option of length 0', '86000000400007080000000000000000 0100 000000000000'],
    ['an option past the end', '86000000400007080000000000000000 0102 020000000001'],
    ['a DNSSL label past the option', '86000000400007080000000000000000 1f02 0000 00000708 3f6d6163 00000000'],
  ])('refuses %s', (_name, bytes) => {
    expect(typeof decodeRouterAdvertisement(hex(bytes))).toBe('string');
  });

  test('round trips random advertisements', () => {
    const bytes16 = fc.uint8Array({ minLength: 16, maxLength: 16 });
    const label = fc.stringMatching(/^[a-z0-9-]{1,20}$/);
    fc.assert(
      fc.property(
        fc.record({
          curHopLimit: fc.integer({ min: 0, max: 255 }),
          managed: fc.boolean(),
          other: fc.boolean(),
          routerLifetime: fc.integer({ min: 0, max: 65535 }),
          reachableTime: fc.nat(),
          retransTimer: fc.nat(),
          mtu: fc.integer({ min: 1280, max: 65535 }),
          prefixes: fc.array(
            fc.record({ prefix: bytes16.map((b) => { b.fill(0, 8); return b; }), length: fc.constant(64), onLink: fc.boolean(), autonomous: fc.boolean(), validLifetime: fc.nat(), preferredLifetime: fc.nat() }),
            { maxLength: 3 },
          ),
          rdnss: fc.record({ lifetime: fc.nat(), servers: fc.array(bytes16, { minLength: 1, maxLength: 3 }) }),
          dnssl: fc.record({ lifetime: fc.nat(), domains: fc.array(fc.array(label, { minLength: 1, maxLength: 3 }).map((l) => l.join('.')), { minLength: 1, maxLength: 3 }) }),
        }),
        (ra) => {
          expect(decodeRouterAdvertisement(encodeRouterAdvertisement(ra))).toEqual(ra);
        },
      ),
    );
  });

  test('domain names in DNS wire format, refusing over-long labels', () => {
    expect(toHex(encodeDomainName('a.example.'))).toBe('0161076578616d706c6500');
    expect(() => encodeDomainName(`${'x'.repeat(64)}.example`)).toThrow(/longer than 63/);
  });
});

describe('router solicitation (RFC 4861 §4.1, §6.1.1) and the IPv6 header', () => {
  test("parses a real kernel's solicitation and verifies its checksum", () => {
    const ip = parseIpv6Icmp(KERNEL_RS);
    if (typeof ip === 'string') throw new Error(ip);
    expect(ip.hopLimit).toBe(255);
    expect(toHex(ip.src)).toBe('fe80000000000000000000fffe000001');
    expect(decodeRouterSolicitation(ip.icmp, false)).toEqual({ sourceMac: hex('020000000001') });
  });

  test('rebuilds the same datagram, checksum included', () => {
    const ip = parseIpv6Icmp(KERNEL_RS);
    if (typeof ip === 'string') throw new Error(ip);
    const icmp = Uint8Array.from(ip.icmp);
    expect(toHex(buildIpv6Icmp(ip.src, ip.dst, 255, icmp))).toBe(toHex(KERNEL_RS));
  });

  test('a flipped bit fails the checksum', () => {
    const bad = Uint8Array.from(KERNEL_RS);
    bad[bad.length - 1] = (bad.at(-1) as number) ^ 1;
    expect(parseIpv6Icmp(bad)).toBe('bad ICMPv6 checksum');
  });

  test.each([
    ['a source link-layer option from the unspecified address', '8500000000000000 0101020000000001', true],
    ['code 1', '8501000000000000', false],
    ['a truncated option', '8500000000000000 01', false],
    ['an option of the wrong size', '8500000000000000 0102 0200000000010000 0000000000000000', false],
  ])('refuses %s', (_name, bytes, unspecified) => {
    expect(typeof decodeRouterSolicitation(hex(bytes), unspecified)).toBe('string');
  });

  test('the packet filter passes solicitations only, and none this host sent', () => {
    const f = routerSolicitationFilter();
    expect(runFilter(f, KERNEL_RS, { pkttype: 2 })).toBeGreaterThan(0);
    expect(runFilter(f, KERNEL_RS, { pkttype: 4 })).toBe(0);
    const ra = buildIpv6Icmp(addressBytes('fe80::1'), addressBytes('ff02::1'), 255, hex(RA_BYTES));
    expect(runFilter(f, ra, { pkttype: 2 })).toBe(0);
    const udp = Uint8Array.from(KERNEL_RS);
    udp[6] = 17;
    expect(runFilter(f, udp, { pkttype: 2 })).toBe(0);
  });
});
