// Property tests: decode∘encode is the identity on every message shape the codec knows, and no
// input — random, or real messages with bytes flipped and cut — makes the decoder throw anything but
// NetlinkDecodeError.
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import * as C from '../../../src/net/netlink/constants.js';
import { type RtnlMessage, decodeMessages, encodeMessage, encodeMessages, formatIpBytes } from '../../../src/net/netlink/codec.js';
import { NetlinkDecodeError } from '../../../src/net/netlink/errors.js';
import {
  type AddrAttrs, type AttrTable, type BridgeInfo, type IfInfoMsg, type IpvlanInfo, type LinkAttrs, type LinkInfo,
  type MacvlanInfo, type RawAttr, type RouteAttrs, addr, bridgeInfo, ipvlanInfo, link, macvlanInfo, route,
} from '../../../src/net/netlink/policy.js';
import { loadGolden } from './golden.js';

const u8 = fc.integer({ min: 0, max: 0xff });
const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const s32 = fc.integer({ min: -0x80000000, max: 0x7fffffff });
const u64 = fc.bigInt({ min: 0n, max: 0xffffffffffffffffn });
const ifname = fc.stringMatching(/^[a-z][a-z0-9-]{0,14}$/);
const text = fc.string({ maxLength: 40, unit: 'grapheme' }).filter((s) => !s.includes('\0'));
const lladdr = fc.uint8Array({ minLength: 0, maxLength: 8 }).map((b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(':'));
const mac = fc.uint8Array({ minLength: 6, maxLength: 6 }).map((b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(':'));
const ipv4 = fc.uint8Array({ minLength: 4, maxLength: 4 }).map(formatIpBytes);
const ipv6 = fc.uint8Array({ minLength: 16, maxLength: 16 }).map(formatIpBytes);
const ip = fc.oneof(ipv4, ipv6);
const bytes = (max = 24) => fc.uint8Array({ maxLength: max });

/** Attributes a table does not know, with any NLA_F_* bits. */
function unknownAttrs(table: AttrTable<object>): fc.Arbitrary<RawAttr[]> {
  const type = u16.filter((t) => !table.byType.has(t & C.NLA_TYPE_MASK));
  return fc.array(fc.record({ type, data: bytes(16) }), { minLength: 1, maxLength: 3 });
}

/** A record of optional keys, plus maybe some unknown attributes. */
function attrSet<T>(table: AttrTable<T>, fields: { [K in keyof T]?: fc.Arbitrary<T[K]> }): fc.Arbitrary<T> {
  return fc.record({ known: fc.record(fields as Record<string, fc.Arbitrary<unknown>>, { requiredKeys: [] }), unknown: fc.option(unknownAttrs(table as AttrTable<object>), { nil: undefined }) })
    .map(({ known, unknown }) => (unknown ? { ...known, unknownAttrs: unknown } : known) as T);
}

const ifinfomsg: fc.Arbitrary<IfInfoMsg> = fc.record({ family: u8, type: u16, index: s32, flags: u32, change: u32 });

const bridge = attrSet<BridgeInfo>(bridgeInfo as AttrTable<BridgeInfo>, {
  forwardDelay: u32, stpState: u32, priority: u16, vlanFiltering: u8, vlanProtocol: u16, rootId: bytes(8),
  helloTimer: u64, groupAddr: mac, fdbFlush: fc.constant(true as const), mcastSnooping: u8,
});
const macvlan = attrSet<MacvlanInfo>(macvlanInfo as AttrTable<MacvlanInfo>, {
  mode: u32, flags: u16, macaddrMode: u32, macaddr: mac, macaddrCount: u32, bcCutoff: s32,
  macaddrData: fc.record({ macaddrs: fc.array(mac, { minLength: 1, maxLength: 3 }) }),
});
const ipvlan = attrSet<IpvlanInfo>(ipvlanInfo as AttrTable<IpvlanInfo>, { mode: u16, flags: u16 });

/** Link attributes, with a veth peer nest up to `depth` levels down. */
function linkAttrs(depth: number): fc.Arbitrary<LinkAttrs> {
  const kinds: fc.Arbitrary<LinkInfo>[] = [
    fc.record({ kind: fc.constant('bridge'), data: bridge }, { requiredKeys: ['kind'] }),
    fc.record({ kind: fc.constantFrom('macvlan', 'macvtap'), data: macvlan }, { requiredKeys: ['kind'] }),
    fc.record({ kind: fc.constantFrom('ipvlan', 'ipvtap'), data: ipvlan }, { requiredKeys: ['kind'] }),
    // kinds without a table keep their data raw
    fc.record({ kind: fc.constantFrom('vxlan', 'dummy', 'wireguard', ''), data: bytes(), xstats: bytes(), slaveKind: fc.constantFrom('bridge'), slaveData: bytes() }, { requiredKeys: ['kind'] }),
  ];
  if (depth > 0) {
    kinds.push(fc.record({
      kind: fc.constant('veth'),
      data: fc.record({ peer: fc.record({ header: ifinfomsg, attrs: linkAttrs(depth - 1) }) }, { requiredKeys: [] }),
    }, { requiredKeys: ['kind'] }));
  }
  return attrSet<LinkAttrs>(link, {
    address: lladdr, broadcast: lladdr, ifname, mtu: u32, link: u32, qdisc: text, master: u32, txqlen: u32,
    operstate: u8, linkinfo: fc.oneof(...kinds), ifalias: text, group: u32, netNsFd: u32, extMask: u32, carrier: u8,
    linkNetnsid: s32, newIfindex: s32, minMtu: u32, permAddress: lladdr, altIfname: ifname,
    propList: fc.record({ altIfnames: fc.array(ifname, { minLength: 1, maxLength: 3 }) }),
    stats64: fc.record({ rxPackets: u64, txPackets: u64, rxBytes: u64, txBytes: u64, rxErrors: u64, txErrors: u64, rxDropped: u64, txDropped: u64, multicast: u64, collisions: u64 }),
  });
}

const addrAttrs = attrSet<AddrAttrs>(addr, {
  address: ip, local: ip, label: ifname, broadcast: ipv4, flags: u32, rtPriority: u32, targetNetnsid: s32, proto: u8,
  cacheinfo: fc.record({ prefered: u32, valid: u32, cstamp: u32, tstamp: u32 }),
});

const routeAttrs = attrSet<RouteAttrs>(route, {
  dst: ip, src: ip, gateway: ip, prefsrc: ip, oif: u32, iif: u32, priority: u32, table: u32, mark: u32, pref: u8,
  encapType: u16, encap: bytes(), multipath: bytes(), sport: u16, dport: u16, nhId: u32, expires: u32,
  metrics: fc.record({ mtu: u32, advmss: u32, hoplimit: u32, ccAlgo: text }, { requiredKeys: [] }),
});

const nl = (types: number[]) => fc.record({ type: fc.constantFrom(...types), flags: u16, seq: u32, pid: u32 });
const extack = fc.record({ msg: text, offset: u32, missType: u32, missNest: u32, cookie: bytes(8), policy: bytes(12) }, { requiredKeys: [] });

const message: fc.Arbitrary<RtnlMessage> = fc.oneof(
  fc.record({ kind: fc.constant('link' as const), nl: nl([C.RTM_NEWLINK, C.RTM_DELLINK, C.RTM_GETLINK, C.RTM_SETLINK, C.RTM_NEWLINKPROP, C.RTM_DELLINKPROP]), header: ifinfomsg, attrs: linkAttrs(2) }),
  fc.record({ kind: fc.constant('addr' as const), nl: nl([C.RTM_NEWADDR, C.RTM_DELADDR, C.RTM_GETADDR]), header: fc.record({ family: u8, prefixlen: u8, flags: u8, scope: u8, index: u32 }), attrs: addrAttrs }),
  fc.record({
    kind: fc.constant('route' as const), nl: nl([C.RTM_NEWROUTE, C.RTM_DELROUTE, C.RTM_GETROUTE]),
    header: fc.record({ family: u8, dstLen: u8, srcLen: u8, tos: u8, table: u8, protocol: u8, scope: u8, type: u8, flags: u32 }), attrs: routeAttrs,
  }),
  // NLMSG_ERROR: the echoed request is either whole or capped; TLVs only with NLM_F_ACK_TLVS
  fc.record({ capped: fc.boolean(), ack: fc.option(extack, { nil: undefined }), error: fc.integer({ min: -4095, max: 0 }), payload: bytes(40), seq: u32, pid: u32, req: nl([16, 20, 24]) })
    .map(({ capped, ack, error, payload, seq, pid, req }): RtnlMessage => ({
      kind: 'error',
      nl: { type: C.NLMSG_ERROR, flags: (capped ? C.NLM_F_CAPPED : 0) | (ack ? C.NLM_F_ACK_TLVS : 0), seq, pid },
      error,
      request: { ...req, len: capped ? 16 + payload.length + 100 : 16 + payload.length },
      requestPayload: capped ? new Uint8Array(0) : payload,
      ...(ack ? { extack: ack } : {}),
    })),
  fc.record({ ack: fc.option(extack, { nil: undefined }), error: s32, seq: u32, pid: u32, multi: fc.boolean() })
    .map(({ ack, error, seq, pid, multi }): RtnlMessage => ({
      kind: 'done', nl: { type: C.NLMSG_DONE, flags: (multi ? C.NLM_F_MULTI : 0) | (ack ? C.NLM_F_ACK_TLVS : 0), seq, pid }, error, ...(ack ? { extack: ack } : {}),
    })),
  fc.record({ kind: fc.constant('raw' as const), nl: nl([C.NLMSG_NOOP, C.NLMSG_OVERRUN, 28, 30, 64, 100]), payload: fc.integer({ min: 0, max: 10 }).chain((n) => fc.uint8Array({ minLength: n * 4, maxLength: n * 4 })) }),
);

function onlyDecodeErrors(b: Uint8Array): void {
  try {
    decodeMessages(b);
  } catch (err) {
    if (!(err instanceof NetlinkDecodeError)) throw err;
  }
}

// Thousands of runs each: they assert correctness, not time, and took over vitest's 5 s default at load 19.
describe('properties', { timeout: 60_000 }, () => {
  test('decode(encode(m)) = m for every message kind', () => {
    fc.assert(fc.property(message, (m) => {
      const bytes = encodeMessage(m);
      expect(decodeMessages(bytes)).toEqual([m]);
      // raw payloads as views into the datagram (how the socket decodes) give the same result
      expect(decodeMessages(bytes, { share: true })).toEqual([m]);
    }), { numRuns: 1500 });
  });

  test('several messages in one datagram decode in order', () => {
    fc.assert(fc.property(fc.array(message, { minLength: 1, maxLength: 6 }), (ms) => {
      expect(decodeMessages(encodeMessages(ms))).toEqual(ms);
    }), { numRuns: 300 });
  });

  test('random bytes raise only NetlinkDecodeError', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), onlyDecodeErrors), { numRuns: 3000 });
  });

  test('random payloads behind a well-formed header of every known type raise only NetlinkDecodeError', () => {
    const types = [C.NLMSG_ERROR, C.NLMSG_DONE, C.RTM_NEWLINK, C.RTM_NEWADDR, C.RTM_NEWROUTE, C.RTM_NEWLINKPROP];
    fc.assert(fc.property(fc.constantFrom(...types), u16, fc.uint8Array({ maxLength: 400 }), (type, flags, payload) => {
      const b = new Uint8Array(16 + payload.length);
      const v = new DataView(b.buffer);
      v.setUint32(0, b.length, true);
      v.setUint16(4, type, true);
      v.setUint16(6, flags, true);
      b.set(payload, 16);
      onlyDecodeErrors(b);
    }), { numRuns: 3000 });
  });

  test('real kernel messages with bytes flipped or cut raise only NetlinkDecodeError', () => {
    const samples = ['link-show-veth', 'link-show-bridge', 'link-show-macvlan', 'link-dump', 'addr-dump', 'route-dump', 'link-add-ipvlan-l2', 'link-add-veth-full']
      .flatMap((n) => { const g = loadGolden(n); return [...g.received, ...g.sent]; });
    fc.assert(fc.property(
      fc.constantFrom(...samples),
      fc.array(fc.record({ at: fc.nat(), value: u8 }), { minLength: 1, maxLength: 8 }),
      fc.option(fc.nat(), { nil: undefined }),
      (sample, flips, cut) => {
        const b = sample.slice(0, cut === undefined ? sample.length : cut % (sample.length + 1));
        for (const { at, value } of flips) if (b.length) b[at % b.length] = value;
        onlyDecodeErrors(b);
      },
    ), { numRuns: 4000 });
  });
});
