// The codec against real traffic (test/golden/netlink/, captured from iproute2 and the kernel with
// strace) and against malformed input.
import { readdirSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import * as C from '../../../src/net/netlink/constants.js';
import {
  type ErrorMessage, type LinkMessage, type RtnlMessage, decodeAttrs, decodeMessages, encodeAttrs, encodeMessage, encodeMessages,
} from '../../../src/net/netlink/codec.js';
import { NetlinkDecodeError, NetlinkEncodeError } from '../../../src/net/netlink/errors.js';
import { link, linkInfo, type VethInfo } from '../../../src/net/netlink/policy.js';
import { Writer } from '../../../src/net/netlink/wire.js';
import { toAddress, toLink, toRoute } from '../../../src/net/netlink/views.js';
import { hex, loadGolden } from './golden.js';

const allGoldens = readdirSync(new URL('../../golden/netlink/', import.meta.url))
  .filter((f) => f.endsWith('.txt')).map((f) => f.slice(0, -4));

function only<K extends RtnlMessage['kind']>(bytes: Uint8Array, kind: K): Extract<RtnlMessage, { kind: K }>[] {
  return decodeMessages(bytes).filter((m): m is Extract<RtnlMessage, { kind: K }> => m.kind === kind);
}

function decodeError(fn: () => unknown): NetlinkDecodeError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(NetlinkDecodeError);
    return err as NetlinkDecodeError;
  }
  throw new Error('expected a NetlinkDecodeError');
}

describe('golden traffic', () => {
  test('there is a capture for every case, each with its command', () => {
    expect(allGoldens.length).toBeGreaterThanOrEqual(40);
    for (const name of allGoldens) expect(loadGolden(name).command).toMatch(/^ip /);
  });

  test('every request iproute2 sent re-encodes to the same bytes', () => {
    for (const name of allGoldens) {
      for (const sent of loadGolden(name).sent) {
        expect(hex(encodeMessages(decodeMessages(sent))), name).toBe(hex(sent));
      }
    }
  });

  test('every kernel reply decodes, and re-encoding it decodes to the same thing', () => {
    let replies = 0;
    for (const name of allGoldens) {
      for (const got of loadGolden(name).received) {
        const msgs = decodeMessages(got);
        expect(msgs.length, name).toBeGreaterThan(0);
        expect(decodeMessages(encodeMessages(msgs)), name).toEqual(msgs);
        replies++;
      }
    }
    expect(replies).toBeGreaterThan(60);
  });

  test('the kernel\'s answer for a veth: ifinfomsg, names, MTU, link kind, peer index', () => {
    const g = loadGolden('link-show-veth');
    const [m] = only(g.received[g.received.length - 2] as Uint8Array, 'link');
    expect(m?.nl.type).toBe(C.RTM_NEWLINK);
    expect(m?.header).toMatchObject({ family: C.AF_UNSPEC, type: C.ARPHRD_ETHER, index: 3 });
    expect(m?.attrs).toMatchObject({
      ifname: 'vtest', mtu: 1500, minMtu: 68, maxMtu: 65535, group: 0, txqlen: 1000, qdisc: 'noop',
      operstate: C.IF_OPER_DOWN, broadcast: 'ff:ff:ff:ff:ff:ff', link: 2, linkinfo: { kind: 'veth' },
    });
    expect(m?.attrs.address).toMatch(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
    expect(typeof m?.attrs.stats64?.rxBytes).toBe('bigint');
    // attributes newer than our tables pass through raw
    expect(m?.attrs.unknownAttrs?.some((a) => a.type === C.IFLA_AF_SPEC)).toBe(true);
    const l = toLink(m as LinkMessage);
    expect(l).toMatchObject({ index: 3, name: 'vtest', kind: 'veth', up: false, operstate: 'down', parent: 2, group: 0, altnames: [] });
  });

  test('a bridge: IFLA_INFO_DATA decoded with the bridge table, the unknown IFLA_BR_* kept raw', () => {
    const g = loadGolden('link-show-bridge');
    const [m] = only(g.received[g.received.length - 1] as Uint8Array, 'link');
    const info = m?.attrs.linkinfo;
    expect(info?.kind).toBe('bridge');
    expect(info?.data).toMatchObject({ forwardDelay: 1500, helloTime: 200, maxAge: 2000, stpState: 0, priority: 32768, groupAddr: '01:80:c2:00:00:00' });
    expect((info?.data as { unknownAttrs?: unknown[] }).unknownAttrs?.length).toBeGreaterThan(5);
    expect(toLink(m as LinkMessage).bridge?.stpState).toBe(0);
  });

  test('a macvlan in source mode, and the alternative names in IFLA_PROP_LIST', () => {
    const mv = only(loadGolden('link-show-macvlan').received[1] as Uint8Array, 'link')[0] as LinkMessage;
    expect(mv.attrs.linkinfo).toMatchObject({ kind: 'macvlan', data: { mode: C.MACVLAN_MODE_SOURCE, flags: 0, bcQueueLen: 1000 } });
    expect(toLink(mv).macvlan).toEqual({ mode: 'source', flags: 0 });
    const alt = only(loadGolden('link-show-altname').received[1] as Uint8Array, 'link')[0] as LinkMessage;
    expect(alt.attrs.propList).toEqual({ altIfnames: ['vtest-alt'] });
    expect(toLink(alt).altnames).toEqual(['vtest-alt']);
  });

  test('a multi-part link dump ends with NLMSG_DONE', () => {
    const g = loadGolden('link-dump');
    const msgs = g.received.flatMap((d) => decodeMessages(d));
    const links = msgs.filter((m): m is LinkMessage => m.kind === 'link');
    expect(links.map((m) => m.attrs.ifname)).toEqual(['lo', 'vtest-p', 'vtest', 'vz-zone']);
    expect(links.every((m) => (m.nl.flags & C.NLM_F_MULTI) !== 0)).toBe(true);
    expect(msgs[msgs.length - 1]).toMatchObject({ kind: 'done', error: 0 });
    expect(toLink(links[2] as LinkMessage).master).toBe(4);
  });

  test('addresses and routes of dumps', () => {
    const addrs = loadGolden('addr-dump').received.flatMap((d) => only(d, 'addr')).map(toAddress);
    expect(addrs.map((a) => [a.family, a.cidr, a.index, a.label])).toEqual([
      [4, '192.0.2.1/24', 3, 'vtest'],
      [6, '2001:db8::1/64', 3, undefined],
    ]);
    expect(addrs[0]?.validLft).toBe(C.INFINITY_LIFE_TIME);
    expect((addrs[1]?.flags ?? 0) & C.IFA_F_NODAD).toBe(C.IFA_F_NODAD);
    const routes = loadGolden('route-dump').received.flatMap((d) => only(d, 'route')).map(toRoute);
    expect(routes.map((r) => [r.dst, r.gateway, r.oif, r.table, r.protocol, r.scope])).toEqual([
      ['default', '192.0.2.254', 3, C.RT_TABLE_MAIN, C.RTPROT_BOOT, C.RT_SCOPE_UNIVERSE],
      ['192.0.2.0/24', undefined, 3, C.RT_TABLE_MAIN, C.RTPROT_KERNEL, C.RT_SCOPE_LINK],
    ]);
  });

  test('NLMSG_ERROR without and with the kernel\'s extended ACK', () => {
    const g = loadGolden('error-eexist');
    const [e] = only(g.received[g.received.length - 1] as Uint8Array, 'error');
    expect(e).toMatchObject({ error: -17, request: { type: C.RTM_NEWLINK, len: 92 } });
    expect(e?.extack).toBeUndefined();
    // the echoed request is the one ip sent
    expect(e?.requestPayload.length).toBe(92 - 16);

    const ip = loadGolden('link-add-ipvlan-l2');
    const [x] = only(ip.received[ip.received.length - 1] as Uint8Array, 'error');
    expect(x?.error).toBe(-95);
    expect((x?.nl.flags ?? 0) & C.NLM_F_ACK_TLVS).toBe(C.NLM_F_ACK_TLVS);
    expect(x?.extack).toEqual({ msg: 'Unknown device type' });
  });

  test('an ACK is an NLMSG_ERROR with error 0', () => {
    const g = loadGolden('link-set-up');
    const [ack] = only(g.received[g.received.length - 1] as Uint8Array, 'error');
    expect(ack?.error).toBe(0);
    expect(ack?.request.type).toBe(C.RTM_NEWLINK);
  });

  test('a capped ACK (NETLINK_CAP_ACK) carries no payload; ext-ack TLVs follow the header', () => {
    const m: ErrorMessage = {
      kind: 'error', nl: { type: C.NLMSG_ERROR, flags: C.NLM_F_CAPPED | C.NLM_F_ACK_TLVS, seq: 7, pid: 99 },
      error: -22, request: { len: 200, type: C.RTM_NEWLINK, flags: 5, seq: 7, pid: 0 }, requestPayload: new Uint8Array(0),
      extack: { msg: 'Attribute failed policy validation', offset: 36 },
    };
    expect(decodeMessages(encodeMessage(m))).toEqual([m]);
  });
});

describe('encoding details', () => {
  test('IFLA_INFO_KIND goes without a NUL (as iproute2 sends it); other strings with one', () => {
    const bytes = encodeMessage({ kind: 'link', nl: { type: C.RTM_NEWLINK, flags: 0, seq: 0, pid: 0 }, header: { family: 0, type: 0, index: 0, flags: 0, change: 0 }, attrs: { ifname: 'ab', linkinfo: { kind: 'veth' } } });
    // IFLA_IFNAME len 7 "ab\0" + 1 pad; IFLA_LINKINFO len 12 { IFLA_INFO_KIND len 8 "veth" }
    expect(hex(bytes.subarray(32))).toBe('07000300616200000c0012000800010076657468');
    expect(new DataView(bytes.buffer).getUint32(0, true)).toBe(bytes.length);
  });

  test('a union member is decoded by its selector even when the selector comes after it', () => {
    const w = new Writer();
    encodeAttrs(linkInfo, w, { data: { peer: { header: { family: 0, type: 0, index: 5, flags: 0, change: 0 }, attrs: { ifname: 'p' } } }, kind: 'veth' });
    const info = decodeAttrs(linkInfo, w.finish());
    expect((info.data as VethInfo).peer).toEqual({ header: { family: 0, type: 0, index: 5, flags: 0, change: 0 }, attrs: { ifname: 'p' } });
  });

  test('IFLA_INFO_DATA of an unknown kind stays raw both ways', () => {
    const w = new Writer();
    encodeAttrs(linkInfo, w, { kind: 'vxlan', data: Uint8Array.of(8, 0, 1, 0, 42, 0, 0, 0) });
    expect(decodeAttrs(linkInfo, w.finish())).toEqual({ kind: 'vxlan', data: Uint8Array.of(8, 0, 1, 0, 42, 0, 0, 0) });
  });

  test('values that cannot be encoded raise NetlinkEncodeError', () => {
    const enc = (attrs: Record<string, unknown>): unknown => {
      try {
        encodeMessage({ kind: 'link', nl: { type: C.RTM_NEWLINK, flags: 0, seq: 0, pid: 0 }, header: { family: 0, type: 0, index: 0, flags: 0, change: 0 }, attrs });
      } catch (err) {
        return err;
      }
      return undefined;
    };
    expect(enc({ ifname: 'sixteen-bytes-xx' })).toBeInstanceOf(NetlinkEncodeError);
    expect(enc({ mtu: 2 ** 32 })).toBeInstanceOf(NetlinkEncodeError);
    expect(enc({ address: 'zz:00' })).toBeInstanceOf(NetlinkEncodeError);
    expect(enc({ nosuch: 1 })).toMatchObject({ message: 'link: no attribute is called "nosuch"' });
    expect(enc({ linkinfo: { kind: 'vxlan', data: { mode: 1 } } })).toBeInstanceOf(NetlinkEncodeError);
  });
});

describe('malformed input raises NetlinkDecodeError only', () => {
  const valid = loadGolden('link-add-veth-full').sent[1] as Uint8Array;

  test('a header that claims more than there is', () => {
    const b = valid.slice();
    new DataView(b.buffer).setUint32(0, b.length + 4, true);
    expect(decodeError(() => decodeMessages(b)).message).toMatch(/nlmsg_len \d+ overruns the datagram/);
  });

  test('nlmsg_len shorter than the header', () => {
    const b = valid.slice();
    new DataView(b.buffer).setUint32(0, 8, true);
    expect(decodeError(() => decodeMessages(b)).offset).toBe(0);
  });

  test('an attribute overrunning its nest', () => {
    const b = valid.slice();
    // IFLA_ADDRESS at 32: claim 200 bytes
    new DataView(b.buffer).setUint16(32, 200, true);
    const e = decodeError(() => decodeMessages(b));
    expect(e.message).toMatch(/attribute type 1 of length 200 overruns its container/);
    expect(e.offset).toBe(32);
  });

  test('an attribute shorter than its own header', () => {
    const b = valid.slice();
    new DataView(b.buffer).setUint16(32, 2, true);
    expect(decodeError(() => decodeMessages(b)).message).toMatch(/shorter than its header/);
  });

  test('a u32 of the wrong size', () => {
    const b = valid.slice();
    // IFLA_MTU at 44 (len 8): make it 6
    new DataView(b.buffer).setUint16(44, 6, true);
    expect(decodeError(() => decodeMessages(b)).message).toMatch(/attribute mtu \(u32\) has 2 byte\(s\), expected 4/);
  });

  test('a message too short for its family header', () => {
    const b = new Uint8Array(20);
    new DataView(b.buffer).setUint32(0, 20, true);
    new DataView(b.buffer).setUint16(4, C.RTM_NEWLINK, true);
    expect(decodeError(() => decodeMessages(b)).message).toMatch(/struct ifinfomsg needs 16 bytes, 4 left/);
  });

  test('nests deeper than any real message', () => {
    // veth peer → link → linkinfo → veth → peer → … built by hand, 3 levels per round
    let inner: Record<string, unknown> = { ifname: 'x' };
    for (let i = 0; i < 8; i++) inner = { linkinfo: { kind: 'veth', data: { peer: { header: { family: 0, type: 0, index: 0, flags: 0, change: 0 }, attrs: inner } } } };
    const bytes = encodeMessage({ kind: 'link', nl: { type: C.RTM_NEWLINK, flags: 0, seq: 0, pid: 0 }, header: { family: 0, type: 0, index: 0, flags: 0, change: 0 }, attrs: inner });
    expect(decodeError(() => decodeMessages(bytes)).message).toMatch(/nested deeper than 16 levels/);
  });

  test('non-zero bytes after the last message', () => {
    const b = new Uint8Array(valid.length + 3);
    b.set(valid);
    b[valid.length + 1] = 7;
    expect(decodeError(() => decodeMessages(b)).message).toMatch(/3 trailing byte\(s\)/);
  });

  test('the attribute walker rejects a range outside the buffer', () => {
    decodeError(() => decodeAttrs(link, new Uint8Array(4), 0, 8));
  });
});
