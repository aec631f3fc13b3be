import { describe, expect, test } from 'vitest';
import { parseCidrText } from '../../../src/common/cidr.js';
import { parseIpv4Cidr } from '../../../src/dhcp/ipv4.js';
import { parseCidr } from '../../../src/net/netlink/requests.js';

describe('one CIDR parser for the netlink encoder and the DHCP server', () => {
  test('both families, canonical text, bare addresses get a host prefix', () => {
    expect(parseCidrText('192.0.2.1/24')).toEqual({ family: 4, address: '192.0.2.1', prefixlen: 24 });
    expect(parseCidrText('2001:DB8:0::1/64')).toEqual({ family: 6, address: '2001:db8::1', prefixlen: 64 });
    expect(parseCidrText('192.0.2.1')).toEqual({ family: 4, address: '192.0.2.1', prefixlen: 32 });
    expect(parseCidrText('192.0.2.1', { requirePrefix: true })).toBe('syntax');
  });

  test('says what is wrong instead of throwing', () => {
    expect(parseCidrText('192.0.2.1/33')).toBe('prefix4');
    expect(parseCidrText('2001:db8::/129')).toBe('prefix6');
    expect(parseCidrText('192.0.2.1/2/4')).toBe('syntax');
    expect(parseCidrText('192.0.2.1/x')).toBe('syntax');
    expect(parseCidrText('host.example/24')).toBe('address');
  });

  test('the callers word their own failures: netlink throws naming the field, DHCP returns undefined', () => {
    expect(() => parseCidr('192.0.2.1/33', 'gateway')).toThrow('invalid gateway "192.0.2.1/33": an IPv4 prefix length is 0..32');
    expect(parseIpv4Cidr('192.0.2.1/33')).toBeUndefined();
    expect(parseIpv4Cidr('2001:db8::1/64')).toBeUndefined(); // the DHCP server is IPv4 only
    expect(parseIpv4Cidr('192.0.2.77/24')).toEqual({ address: 0xc000024d, prefixLength: 24, network: 0xc0000200, broadcast: 0xc00002ff });
  });
});
