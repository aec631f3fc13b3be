// The request builders against what iproute2 really sends for the same operation (captured with
// strace, test/golden/netlink/): byte for byte, seq and pid zeroed.
import { describe, expect, test } from 'vitest';
import * as C from '../../../src/net/netlink/constants.js';
import { type RtnlMessage, decodeMessages, encodeMessage } from '../../../src/net/netlink/codec.js';
import { NetlinkEncodeError } from '../../../src/net/netlink/errors.js';
import {
  addrRequest, altnameRequest, delLinkGroupRequest, delLinkRequest, delNeighRequest, dumpRoutesRequest, getLinkRequest,
  newBridgeRequest, newIpvlanRequest, newLinkRequest, newMacvlanRequest, newVethRequest, parseCidr, routeRequest,
  setLinkRequest, validateIfname,
} from '../../../src/net/netlink/requests.js';
import { hex, lastSent, loadGolden, zeroSeqPid } from './golden.js';

/** What NetlinkSocket.request() adds before sending. */
function asSent(msg: RtnlMessage, dump = false): Uint8Array {
  msg.nl.flags |= C.NLM_F_REQUEST | (dump ? C.NLM_F_DUMP : C.NLM_F_ACK);
  return encodeMessage(msg);
}

function expectSameAs(golden: string, msg: RtnlMessage, pick: (g: ReturnType<typeof loadGolden>) => Uint8Array = lastSent, dump = false): void {
  const g = loadGolden(golden);
  const want = zeroSeqPid(pick(g));
  const got = zeroSeqPid(asSent(msg, dump));
  // Compare decoded first for a readable diff, then the exact bytes.
  expect(decodeMessages(got)).toEqual(decodeMessages(want));
  expect(hex(got), g.command).toBe(hex(want));
}

describe('link requests match iproute2', () => {
  test('veth with a peer name', () => {
    expectSameAs('link-add-veth', newVethRequest({ name: 've-foo', peer: { name: 'host0' } }));
  });

  test('veth with MACs, MTU, group and the peer created in another netns', () => {
    // ip held /run/netns/c1 open as fd 4
    expectSameAs('link-add-veth-full', newVethRequest({
      name: 've-foo', mac: '02:00:00:00:00:01', mtu: 1400, group: 7,
      peer: { name: 'host0', mac: '02:00:00:00:00:02', netnsFd: 4 },
    }));
  });

  test('bridge', () => {
    expectSameAs('link-add-bridge', newBridgeRequest({ name: 'vz-zone' }));
  });

  for (const mode of ['private', 'vepa', 'bridge', 'passthru', 'source'] as const) {
    test(`macvlan mode ${mode}`, () => {
      expectSameAs(`link-add-macvlan-${mode}`, newMacvlanRequest({ name: 'mv-x', parent: 3, mode }));
    });
  }

  test('macvlan created directly inside another netns', () => {
    expectSameAs('link-add-macvlan-netns', newMacvlanRequest({ name: 'mv-x', parent: 3, mode: 'bridge', netnsFd: 4 }));
  });

  for (const mode of ['l2', 'l3', 'l3s'] as const) {
    test(`ipvlan mode ${mode}`, () => {
      expectSameAs(`link-add-ipvlan-${mode}`, newIpvlanRequest({ name: 'iv-x', parent: 3, mode }));
    });
  }

  test('ipvlan flags private and vepa', () => {
    expectSameAs('link-add-ipvlan-l3-private', newIpvlanRequest({ name: 'iv-x', parent: 3, mode: 'l3', flag: 'private' }));
    expectSameAs('link-add-ipvlan-l2-vepa', newIpvlanRequest({ name: 'iv-x', parent: 3, mode: 'l2', flag: 'vepa' }));
  });

  test('the generic newLinkRequest dispatches by kind', () => {
    expectSameAs('link-add-ipvlan-l3s', newLinkRequest({ kind: 'ipvlan', name: 'iv-x', parent: 3, mode: 'l3s' }));
    expectSameAs('link-add-bridge', newLinkRequest({ kind: 'bridge', name: 'vz-zone' }));
  });

  test('up, down, master, nomaster, rename, netns, MTU, group', () => {
    expectSameAs('link-set-up', setLinkRequest(3, { up: true }));
    expectSameAs('link-set-down', setLinkRequest(3, { up: false }));
    expectSameAs('link-set-master', setLinkRequest(3, { master: 4 }));
    expectSameAs('link-set-nomaster', setLinkRequest(3, { master: 0 }));
    expectSameAs('link-set-name', setLinkRequest(3, { name: 'vrenamed' }));
    expectSameAs('link-set-netns', setLinkRequest(3, { netnsFd: 4 }));
    expectSameAs('link-set-mtu', setLinkRequest(3, { mtu: 1400 }));
    expectSameAs('link-set-group', setLinkRequest(3, { group: 7 }));
  });

  test('alternative names: RTM_NEWLINKPROP and RTM_DELLINKPROP with a NLA_F_NESTED IFLA_PROP_LIST', () => {
    expectSameAs('link-altname-add', altnameRequest('add', 3, ['vtest-alt']));
    expectSameAs('link-altname-del', altnameRequest('delete', 3, ['vtest-alt']));
    const bytes = encodeMessage(altnameRequest('add', 3, ['vtest-alt']));
    // nla_type of the nest at offset 32 + 2
    expect(new DataView(bytes.buffer).getUint16(34, true)).toBe(C.IFLA_PROP_LIST | C.NLA_F_NESTED);
  });

  test('delete one link, and bulk delete by group (ifindex 0 + IFLA_GROUP)', () => {
    expectSameAs('link-del', delLinkRequest(3));
    expectSameAs('link-del-group', delLinkGroupRequest(7));
  });

  test('get a link by name (the lookup ip makes before `ip link set dev vtest …`)', () => {
    // Same bytes, except that we always ask for an ACK (iproute2 does not for this lookup).
    const withAck = (g: ReturnType<typeof loadGolden>): Uint8Array => {
      const b = (g.sent[1] as Uint8Array).slice();
      const v = new DataView(b.buffer);
      expect(v.getUint16(6, true)).toBe(C.NLM_F_REQUEST);
      v.setUint16(6, C.NLM_F_REQUEST | C.NLM_F_ACK, true);
      return b;
    };
    expectSameAs('link-set-up', getLinkRequest('vtest'), withAck);
  });

  test('a long name is looked up as IFLA_ALT_IFNAME', () => {
    const m = getLinkRequest('a-name-longer-than-fifteen');
    expect(m.attrs).toEqual({ extMask: C.RTEXT_FILTER_VF | C.RTEXT_FILTER_SKIP_STATS, altIfname: 'a-name-longer-than-fifteen' });
    expect(delLinkRequest('ve-foo').attrs).toEqual({ ifname: 've-foo' });
  });
});

describe('address and route requests match iproute2', () => {
  test('IPv4 address, with and without broadcast; delete', () => {
    expectSameAs('addr-add-v4', addrRequest('add', 3, '192.0.2.1/24'));
    expectSameAs('addr-add-v4-brd', addrRequest('add', 3, '192.0.2.1/24', { broadcast: true }));
    expectSameAs('addr-del-v4', addrRequest('delete', 3, '192.0.2.1/24'));
  });

  test('IPv6 address without DAD', () => {
    expectSameAs('addr-add-v6', addrRequest('add', 3, '2001:db8::1/64', { nodad: true }));
  });

  test('IPv4 default route, a prefix with device and metric, delete', () => {
    expectSameAs('route-add-default-v4', routeRequest('add', { dst: 'default', gateway: '192.0.2.254' }));
    expectSameAs('route-add-v4', routeRequest('add', { dst: '198.51.100.0/24', gateway: '192.0.2.254', oif: 3, metric: 100 }));
    expectSameAs('route-del-default-v4', routeRequest('delete', { dst: 'default', gateway: '192.0.2.254' }));
  });

  test('IPv6 default route (iproute2 sends :: as RTA_DST)', () => {
    expectSameAs('route-add-default-v6', routeRequest('add', { dst: 'default', gateway: '2001:db8::fe', oif: 3 }));
  });

  test('route dump of the main table', () => {
    expectSameAs('route-dump', dumpRoutesRequest({ family: 4, table: C.RT_TABLE_MAIN }), (g) => g.sent[0] as Uint8Array, true);
  });

  test('a route prefix is sent as its network address; no gateway means link scope', () => {
    const m = routeRequest('add', { dst: '198.51.100.7/24', oif: 3 });
    expect(m.attrs.dst).toBe('198.51.100.0');
    expect(m.header.scope).toBe(C.RT_SCOPE_LINK);
    const big = routeRequest('add', { dst: 'default', gateway: '192.0.2.1', table: 1000 });
    expect(big.header.table).toBe(C.RT_TABLE_UNSPEC);
    expect(big.attrs.table).toBe(1000);
  });
});

describe('bad input is refused before anything is sent', () => {
  const invalid = (fn: () => unknown, text: RegExp): void => {
    let err: unknown;
    try {
      fn();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NetlinkEncodeError);
    expect(err).toMatchObject({ code: 'NL_INVALID' });
    expect((err as Error).message).toMatch(text);
  };

  test('interface names', () => {
    invalid(() => validateIfname('a-very-long-name'), /invalid interface name "a-very-long-name": 16 bytes long, Linux allows at most 15/);
    invalid(() => validateIfname(''), /invalid interface name: it is empty/);
    invalid(() => validateIfname('a/b'), /may not be "\." or "\.\.", nor contain "\/"/);
    invalid(() => newVethRequest({ name: 've-ok', peer: { name: 'host 0' } }), /invalid peer interface name "host 0"/);
    expect(validateIfname('ve-machine-ab12')).toBe('ve-machine-ab12');
  });

  test('MACs, modes, numbers, groups, renames', () => {
    invalid(() => newVethRequest({ name: 'a', mac: '02:00:00:00:00', peer: { name: 'b' } }), /invalid MAC address "02:00:00:00:00"/);
    invalid(() => newMacvlanRequest({ name: 'mv', parent: 2, mode: 'bogus' as 'bridge' }), /invalid macvlan mode "bogus" \(allowed: private, vepa, bridge, passthru, source\)/);
    invalid(() => newIpvlanRequest({ name: 'iv', parent: 2, mode: 'l4' as 'l2' }), /invalid ipvlan mode "l4" \(allowed: l2, l3, l3s\)/);
    invalid(() => setLinkRequest(2, { mtu: -1 }), /invalid MTU: -1/);
    invalid(() => setLinkRequest('eth0', { name: 'eth1' }), /renaming a link needs its ifindex/);
    invalid(() => delLinkGroupRequest(0), /refusing to delete link group 0/);
    invalid(() => setLinkRequest(0, { up: true }), /invalid ifindex 0/);
  });

  test('addresses and routes', () => {
    invalid(() => parseCidr('192.0.2.1/33'), /an IPv4 prefix length is 0\.\.32/);
    invalid(() => parseCidr('192.0.2.300/24'), /"192\.0\.2\.300" is not an IPv4 or IPv6 address/);
    invalid(() => parseCidr('2001:db8::1/129'), /an IPv6 prefix length is 0\.\.128/);
    invalid(() => addrRequest('add', 2, '2001:db8::1/64', { broadcast: true }), /broadcast address applies to IPv4 only/);
    invalid(() => routeRequest('add', { dst: '198.51.100.0/24', gateway: '2001:db8::1' }), /gateway 2001:db8::1 is not IPv4/);
    expect(parseCidr('2001:DB8:0::1/64')).toEqual({ family: 6, address: '2001:db8::1', prefixlen: 64 });
    expect(parseCidr('192.0.2.1')).toEqual({ family: 4, address: '192.0.2.1', prefixlen: 32 });
  });
});

describe('RTM_DELNEIGH', () => {
  test('struct ndmsg (family, ifindex, state 0) and NDA_DST, IPv4 and IPv6', () => {
    // nlmsghdr: len 36, type 29, flags REQUEST|ACK; ndmsg: AF_INET, pads, ifindex 3, state 0, flags 0, type 0; NDA_DST 192.0.2.7
    expect(hex(asSent(delNeighRequest(3, '192.0.2.7')))).toBe(
      '24000000' + '1d00' + '0500' + '00000000' + '00000000' + '02' + '00' + '0000' + '03000000' + '0000' + '00' + '00' + '0800' + '0100' + 'c0000207');
    const v6 = asSent(delNeighRequest(7, '2001:db8::1'));
    expect(v6.length).toBe(16 + 12 + 20);
    expect(hex(v6.subarray(16, 20))).toBe('0a000000');
    expect(hex(v6.subarray(28, 32))).toBe('14000100');
    expect(hex(v6.subarray(32))).toBe('20010db8000000000000000000000001');
    expect(() => delNeighRequest(3, '192.0.2.7/24')).toThrow(NetlinkEncodeError);
  });
});
