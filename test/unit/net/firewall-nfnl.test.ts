// Port mappings' element changes as nf_tables netlink messages of our own (src/net/firewall/nfnl.ts):
// the element bytes are those libnftables 1.0.6 sends for the same command (captured with
// `strace -e sendmsg -xx` of `nft add element` / `delete element` on table inet nspawn-ts), the
// batch is framed as libnftables frames it, and what cannot go this way is recognised.
import { describe, expect, test } from 'vitest';
import fc from 'fast-check';
import { addressPairText, dataText, directChange, elementBatch, elementListBytes, fieldBytes, portKeyText } from '../../../src/net/firewall/nfnl.js';
import { addPortMappingsChanges, canonicalAddress, mappingElements } from '../../../src/net/firewall/rules.js';
import type { FwElement } from '../../../src/net/firewall/rules.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
/** strace's "\x30\x00…" text as hex */
const captured = (s: string): string => s.replace(/\\x/g, '');

const web: FwElement = { set: 'ports4', key: 'tcp . 8080', data: '10.0.0.18 . 80', owner: 'bench' };
const hairpin: FwElement = { set: 'hairpin4', key: '10.0.0.18 . 10.0.0.18', owner: 'bench' };

describe('nf_tables element messages', () => {
  test('map and set elements are the bytes libnftables sends (key, data, comment)', () => {
    // NFTA_SET_ELEM_LIST_ELEMENTS (length, type 3 nested) around what strace showed inside it for
    // `create element inet nspawn-ts ports4 { tcp . 8080 comment "bench" : 10.0.0.18 . 80 }`
    expect(hex(elementListBytes([web], 'create'))).toBe('34000380' + captured(
      '\\x30\\x00\\x01\\x80\\x10\\x00\\x01\\x80\\x0c\\x00\\x01\\x00\\x06\\x00\\x00\\x00\\x1f\\x90\\x00\\x00\\x10\\x00\\x02\\x80\\x0c\\x00\\x01\\x00\\x0a\\x00\\x00\\x12\\x00\\x50\\x00\\x00\\x0c\\x00\\x06\\x00\\x00\\x06\\x62\\x65\\x6e\\x63\\x68\\x00'));
    // `add element inet nspawn-ts hairpin4 { 10.0.0.18 . 10.0.0.18 comment "bench" }`
    expect(hex(elementListBytes([hairpin], 'add'))).toBe('24000380' + captured(
      '\\x20\\x00\\x01\\x80\\x10\\x00\\x01\\x80\\x0c\\x00\\x01\\x00\\x0a\\x00\\x00\\x12\\x0a\\x00\\x00\\x12\\x0c\\x00\\x06\\x00\\x00\\x06\\x62\\x65\\x6e\\x63\\x68\\x00'));
    // `delete element inet nspawn-ts ports4 { tcp . 8080 }`: the key alone
    expect(hex(elementListBytes([web], 'delete'))).toBe('18000380' + captured(
      '\\x14\\x00\\x01\\x80\\x10\\x00\\x01\\x80\\x0c\\x00\\x01\\x00\\x06\\x00\\x00\\x00\\x1f\\x90\\x00\\x00'));
  });

  test('fields: protocol and port padded to 4 bytes in network order, IPv6 addresses in 16', () => {
    expect(hex(fieldBytes('udp . 53'))).toBe('11000000' + '00350000');
    expect(hex(fieldBytes('fd00:1::2 . 65535'))).toBe('fd000001000000000000000000000002' + 'ffff0000');
    expect(() => fieldBytes('10.0.0.300 . 80')).toThrow(/not an IPv4 or IPv6 address/);
  });

  test('one batch: BEGIN, a message per set and verb asking for an ACK, END', () => {
    const changes = addPortMappingsChanges([{ protocol: 'tcp', hostPort: 8080, containerAddress: '10.0.0.18', containerPort: 80, owner: 'bench', loopback: true }]);
    const { bytes, acked } = elementBatch(changes, 'nspawn-ts', 7);
    const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const msgs: Array<{ type: number; flags: number; seq: number; family: number }> = [];
    for (let off = 0; off < bytes.length; off += v.getUint32(off, true)) {
      msgs.push({ type: v.getUint16(off + 4, true), flags: v.getUint16(off + 6, true), seq: v.getUint32(off + 8, true), family: bytes[off + 16] as number });
    }
    const NEW = (10 << 8) | 12;
    expect(msgs).toEqual([
      { type: 0x10, flags: 0x1, seq: 7, family: 0 },
      { type: NEW, flags: 0x1 | 0x4 | 0x400 | 0x200, seq: 8, family: 1 }, // create ports4
      { type: NEW, flags: 0x1 | 0x4 | 0x400 | 0x200, seq: 9, family: 1 }, // create ports_lo4
      { type: NEW, flags: 0x1 | 0x4 | 0x400, seq: 10, family: 1 }, // add hairpin4
      { type: 0x11, flags: 0x1, seq: 11, family: 0 },
    ]);
    expect(acked).toEqual([8, 9, 10]);
    const del = elementBatch([{ verb: 'delete', elements: mappingElements({ protocol: 'tcp', hostPort: 1, containerAddress: '10.0.0.2', containerPort: 1, owner: 'a' }) }], 't', 1);
    expect(new DataView(del.bytes.buffer).getUint16(20 + 4, true)).toBe((10 << 8) | 14);
    expect(new DataView(del.bytes.buffer).getUint16(20 + 6, true)).toBe(0x1 | 0x4);
  });

  test('many elements are split into messages of at most 256', () => {
    const els: FwElement[] = Array.from({ length: 600 }, (_, i) => ({ set: 'ports4', key: `tcp . ${i + 1}`, data: '10.0.0.2 . 80', owner: 'a' }));
    expect(elementBatch([{ verb: 'create', elements: els }], 'nspawn-ts', 1).acked).toEqual([2, 3, 4]);
  });

  test('masquerade (interval sets) and elements listed in a foreign form stay with libnftables', () => {
    expect(directChange(addPortMappingsChanges([{ protocol: 'tcp', hostPort: 80, containerAddress: 'fd00::2', containerPort: 80, owner: 'a' }]))).toBe(true);
    expect(directChange([{ verb: 'add', elements: [{ set: 'masq4', key: '10.0.0.16/28' }] }])).toBe(false);
    expect(directChange([{ verb: 'delete', elements: [{ ...web, keyExpr: { concat: ['tcp', 8080] } }] }])).toBe(false);
  });
});

describe('register bytes back to our text form (the dumps that confirm a listing)', () => {
  test('port keys, hairpin keys and map data read back as written', () => {
    for (const k of ['tcp . 8080', 'udp . 53', 'tcp . 0', 'udp . 65535']) expect(portKeyText(fieldBytes(k))).toBe(k);
    for (const k of ['10.0.0.18 . 10.0.0.18', 'fd00:1::18 . fd00:1::18']) expect(addressPairText(fieldBytes(k))).toBe(k);
    for (const d of ['10.0.0.18 . 80', 'fd00:1::18 . 8080']) expect(dataText(fieldBytes(d))).toBe(d);
  });

  test('another protocol (sctp, 132) or length is not ours: undefined', () => {
    const sctp = fieldBytes('tcp . 80');
    sctp[0] = 132;
    expect(portKeyText(sctp)).toBeUndefined();
    expect(portKeyText(new Uint8Array(4))).toBeUndefined();
    expect(addressPairText(new Uint8Array(20))).toBeUndefined();
    expect(dataText(new Uint8Array(12))).toBeUndefined();
  });

  test('property: an address reads back in the listing\'s canonical form (canonicalAddress), else a listing would never be confirmed', () => {
    fc.assert(fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), (addr) => {
      expect(addressPairText(fieldBytes(`${addr} . ${addr}`))).toBe(`${canonicalAddress(addr)} . ${canonicalAddress(addr)}`);
    }), { numRuns: 2000 });
    for (const addr of ['::', '::1', '::ffff:10.0.0.1', '2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1', 'fd00:0:0:1::', '0:0:1::']) {
      expect(addressPairText(fieldBytes(`${addr} . ${addr}`))).toBe(`${canonicalAddress(addr)} . ${canonicalAddress(addr)}`);
    }
  });

  test('property: any port and IPv4/IPv6 address round-trip', () => {
    fc.assert(fc.property(fc.constantFrom('tcp', 'udp'), fc.integer({ min: 0, max: 65535 }), fc.oneof(fc.ipV4(), fc.ipV6()), (proto, port, addr) => {
      const canonical = addressPairText(fieldBytes(`${addr} . ${addr}`))?.split(' . ')[0] ?? '';
      expect(portKeyText(fieldBytes(`${proto} . ${port}`))).toBe(`${proto} . ${port}`);
      expect(dataText(fieldBytes(`${addr} . ${port}`))).toBe(`${canonical} . ${port}`);
      expect(addressPairText(fieldBytes(`${canonical} . ${canonical}`))).toBe(`${canonical} . ${canonical}`);
    }));
  });
});
