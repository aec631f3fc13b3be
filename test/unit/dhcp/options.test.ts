// Typed options: each accessor against bytes written out by hand from its RFC, and its errors.
import { describe, expect, test } from 'vitest';
import { DhcpOptionError, DhcpOptions, Opt } from '../../../src/dhcp/options.js';
import { hex, ip } from './helpers.js';

function opts(code: number, value: Uint8Array): DhcpOptions {
  return new DhcpOptions().set(code, value);
}

describe('fixed-size and list options (RFC 2132)', () => {
  test.each([
    ['1 subnet mask', Opt.SUBNET_MASK, hex`ffffff00`, (o: DhcpOptions) => o.subnetMask(), ip('255.255.255.0')],
    ['3 routers', Opt.ROUTER, hex`c0000201 c0000202`, (o: DhcpOptions) => o.routers(), [ip('192.0.2.1'), ip('192.0.2.2')]],
    ['6 DNS servers', Opt.DNS_SERVERS, hex`c6336401`, (o: DhcpOptions) => o.dnsServers(), [ip('198.51.100.1')]],
    ['12 host name (trailing NUL dropped)', Opt.HOSTNAME, hex`6e6f646500`, (o: DhcpOptions) => o.hostname(), 'node'],
    ['15 domain name', Opt.DOMAIN_NAME, hex`6578616d706c652e6f7267`, (o: DhcpOptions) => o.domainName(), 'example.org'],
    ['26 MTU', Opt.INTERFACE_MTU, hex`05dc`, (o: DhcpOptions) => o.interfaceMtu(), 1500],
    ['28 broadcast', Opt.BROADCAST_ADDRESS, hex`c00002ff`, (o: DhcpOptions) => o.broadcastAddress(), ip('192.0.2.255')],
    ['50 requested address', Opt.REQUESTED_IP, hex`c0000294`, (o: DhcpOptions) => o.requestedIp(), ip('192.0.2.148')],
    ['51 lease time', Opt.LEASE_TIME, hex`00000e10`, (o: DhcpOptions) => o.leaseTime(), 3600],
    ['53 message type', Opt.MESSAGE_TYPE, hex`03`, (o: DhcpOptions) => o.messageType(), 3],
    ['54 server identifier', Opt.SERVER_ID, hex`c0000201`, (o: DhcpOptions) => o.serverId(), ip('192.0.2.1')],
    ['55 parameter request list', Opt.PARAMETER_REQUEST_LIST, hex`01 03 06 0f 77 79`, (o: DhcpOptions) => o.parameterRequestList(), [1, 3, 6, 15, 119, 121]],
    ['57 maximum message size', Opt.MAX_MESSAGE_SIZE, hex`05c0`, (o: DhcpOptions) => o.maxMessageSize(), 1472],
    ['58 renewal time', Opt.RENEWAL_TIME, hex`00000708`, (o: DhcpOptions) => o.renewalTime(), 1800],
    ['59 rebinding time', Opt.REBINDING_TIME, hex`00000c4e`, (o: DhcpOptions) => o.rebindingTime(), 3150],
    ['61 client identifier', Opt.CLIENT_ID, hex`01 020000000042`, (o: DhcpOptions) => { const id = o.clientId(); return id && Buffer.from(id).toString('hex'); }, '01020000000042'],
  ])('%s', (_name, code, bytes, get, want) => {
    expect(get(opts(code, bytes))).toEqual(want);
    expect(get(new DhcpOptions())).toBeUndefined();
  });

  test.each([
    ['1 of 3 bytes', Opt.SUBNET_MASK, hex`ffffff`, (o: DhcpOptions) => o.subnetMask()],
    ['3 of 6 bytes', Opt.ROUTER, hex`c0000201 c000`, (o: DhcpOptions) => o.routers()],
    ['6 empty', Opt.DNS_SERVERS, new Uint8Array(), (o: DhcpOptions) => o.dnsServers()],
    ['12 empty', Opt.HOSTNAME, new Uint8Array(), (o: DhcpOptions) => o.hostname()],
    ['26 below 68', Opt.INTERFACE_MTU, hex`0040`, (o: DhcpOptions) => o.interfaceMtu()],
    ['51 of 2 bytes', Opt.LEASE_TIME, hex`0e10`, (o: DhcpOptions) => o.leaseTime()],
    ['52 of 0', Opt.OVERLOAD, hex`00`, (o: DhcpOptions) => o.overload()],
    ['53 of 2 bytes', Opt.MESSAGE_TYPE, hex`0301`, (o: DhcpOptions) => o.messageType()],
    ['57 below 576', Opt.MAX_MESSAGE_SIZE, hex`0100`, (o: DhcpOptions) => o.maxMessageSize()],
    ['61 of 1 byte', Opt.CLIENT_ID, hex`01`, (o: DhcpOptions) => o.clientId()],
  ])('malformed %s → DhcpOptionError naming the option', (_name, code, bytes, get) => {
    expect(() => get(opts(code, bytes))).toThrow(DhcpOptionError);
    expect(() => get(opts(code, bytes))).toThrow(new RegExp(`^option ${code}:`));
  });
});

describe('81 client FQDN (RFC 4702)', () => {
  test('ASCII and canonical wire encodings', () => {
    expect(opts(Opt.CLIENT_FQDN, hex`01 00 00 686f7374`).clientFqdn()).toEqual({ flags: 1, rcode1: 0, rcode2: 0, name: 'host' });
    const wire = hex`05 ff ff 04 686f7374 07 6578616d706c65 03 6f7267 00`;
    expect(opts(Opt.CLIENT_FQDN, wire).clientFqdn()).toEqual({ flags: 5, rcode1: 255, rcode2: 255, name: 'host.example.org' });
    // partial name: no terminating zero
    expect(opts(Opt.CLIENT_FQDN, hex`04 00 00 04 686f7374`).clientFqdn()?.name).toBe('host');
    const o = new DhcpOptions().setClientFqdn({ flags: 5, rcode1: 255, rcode2: 255, name: 'host.example.org' });
    expect(o.get(Opt.CLIENT_FQDN)).toEqual(wire);
    expect(() => opts(Opt.CLIENT_FQDN, hex`01 00`).clientFqdn()).toThrow(DhcpOptionError);
    expect(() => opts(Opt.CLIENT_FQDN, hex`04 00 00 09 686f7374`).clientFqdn()).toThrow(DhcpOptionError);
  });
});

describe('82 relay agent information (RFC 3046)', () => {
  test('sub-options in order', () => {
    const v = hex`01 04 65746830  02 02 abcd`;
    expect(opts(Opt.RELAY_AGENT_INFO, v).relayAgentInfo()).toEqual([
      { code: 1, value: hex`65746830` }, { code: 2, value: hex`abcd` },
    ]);
    expect(new DhcpOptions().setRelayAgentInfo([{ code: 1, value: hex`65746830` }, { code: 2, value: hex`abcd` }]).get(82)).toEqual(v);
    expect(() => opts(Opt.RELAY_AGENT_INFO, hex`01 05 6574`).relayAgentInfo()).toThrow(DhcpOptionError);
    expect(() => opts(Opt.RELAY_AGENT_INFO, hex`01`).relayAgentInfo()).toThrow(DhcpOptionError);
  });
});

describe('119 domain search (RFC 3397)', () => {
  test('the RFC example, with a compression pointer', () => {
    // RFC 3397 §3: "eng.apple.com." and "marketing.apple.com."
    const v = hex`03 656e67 05 6170706c65 03 636f6d 00 09 6d61726b6574696e67 c0 04`;
    expect(opts(Opt.DOMAIN_SEARCH, v).domainSearch()).toEqual(['eng.apple.com', 'marketing.apple.com']);
  });
  test('encoding writes names uncompressed', () => {
    const o = new DhcpOptions().setDomainSearch(['eng.apple.com', 'marketing.apple.com.']);
    expect(o.domainSearch()).toEqual(['eng.apple.com', 'marketing.apple.com']);
    expect(o.get(Opt.DOMAIN_SEARCH)?.length).toBe(15 + 21);
  });
  test.each([
    ['a pointer to itself', hex`c0 00`],
    ['a forward pointer', hex`c0 02 00`],
    ['a loop of pointers', hex`03 616263 00 c0 06 c0 05`],
    ['an unterminated name', hex`03 616263`],
    ['a label past the end', hex`09 616263 00`],
    ['a truncated pointer', hex`03 616263 00 c0`],
    ['an extended label type', hex`41 00`],
  ])('%s → DhcpOptionError', (_what, v) => {
    expect(() => opts(Opt.DOMAIN_SEARCH, v).domainSearch()).toThrow(DhcpOptionError);
  });
  test('a name over 255 octets is refused both ways', () => {
    const long = Array.from({ length: 5 }, () => 'a'.repeat(60)).join('.');
    expect(() => new DhcpOptions().setDomainSearch([long])).toThrow(DhcpOptionError);
    const label = [60, ...Buffer.from('a'.repeat(60))];
    const wire = Uint8Array.from([...label, ...label, ...label, ...label, ...label, 0]);
    expect(() => opts(Opt.DOMAIN_SEARCH, wire).domainSearch()).toThrow(/longer than 255/);
  });
});

describe('121 classless static routes (RFC 3442)', () => {
  test('the RFC examples of destination encoding', () => {
    // 0/0 via 192.0.2.1; 10.0.0.0/8 via 192.0.2.2; 10.17.0.0/16; 10.27.129.0/24; 10.229.0.128/25; 10.198.122.47/32
    const v = hex`00 c0000201  08 0a c0000202  10 0a11 c0000203  18 0a1b81 c0000204  19 0ae50080 c0000205  20 0ac67a2f c0000206`;
    expect(opts(Opt.CLASSLESS_ROUTES, v).classlessRoutes()).toEqual([
      { destination: 0, prefixLength: 0, router: ip('192.0.2.1') },
      { destination: ip('10.0.0.0'), prefixLength: 8, router: ip('192.0.2.2') },
      { destination: ip('10.17.0.0'), prefixLength: 16, router: ip('192.0.2.3') },
      { destination: ip('10.27.129.0'), prefixLength: 24, router: ip('192.0.2.4') },
      { destination: ip('10.229.0.128'), prefixLength: 25, router: ip('192.0.2.5') },
      { destination: ip('10.198.122.47'), prefixLength: 32, router: ip('192.0.2.6') },
    ]);
    const o = new DhcpOptions().setClasslessRoutes(opts(Opt.CLASSLESS_ROUTES, v).classlessRoutes()!);
    expect(o.get(Opt.CLASSLESS_ROUTES)).toEqual(v);
  });
  test.each([
    ['width 33', hex`21 0a000000 00 c0000201`],
    ['truncated router', hex`08 0a c00002`],
    ['too short', hex`00 c000`],
  ])('%s → DhcpOptionError', (_what, v) => {
    expect(() => opts(Opt.CLASSLESS_ROUTES, v).classlessRoutes()).toThrow(DhcpOptionError);
  });
});

describe('the option map', () => {
  test('keeps insertion order, appends repeated values, refuses pad and end codes', () => {
    const o = new DhcpOptions().setU8(53, 1).set(12, hex`6162`).append(12, hex`63`).setU16(57, 1500);
    expect(o.codes()).toEqual([53, 12, 57]);
    expect(o.hostname()).toBe('abc');
    expect(() => o.set(0, new Uint8Array())).toThrow(RangeError);
    expect(() => o.set(255, new Uint8Array())).toThrow(RangeError);
  });
});
