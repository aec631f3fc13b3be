// Elements looked up by key (src/net/firewall/nfnl.ts lookup()): the GETSETELEM request is the one
// libnftables 1.0.6 sends for `nft get element inet nspawn-ts ports6 { tcp . 8080 }` (captured with
// `strace -X raw -xx`; libnftables puts the set's name before the table's, the kernel takes either
// order), and the kernel's answer to it (captured likewise) reads back as the element's data and comment.
import { describe, expect, test } from 'vitest';
import { lookupMessages, parseFoundElement } from '../../../src/net/firewall/nfnl.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const bytes = (h: string): Uint8Array => Uint8Array.from(Buffer.from(h.replace(/\s+/g, ''), 'hex'));
/** strace's "\x30\x00…" text as hex */
const captured = (s: string): string => s.replace(/\\x/g, '');

describe('nf_tables element lookups', () => {
  test('a lookup is one GETSETELEM per key with an ACK asked, the key as libnftables writes it', () => {
    const msg = lookupMessages([{ table: 'nspawn-ts', set: 'ports6', key: 'tcp . 8080' }, { family: 'ip', table: 'io.systemd.nat', set: 'map_port_ipport', key: 'udp . 53' }], 7);
    const view = new DataView(msg.buffer, msg.byteOffset, msg.byteLength);
    const len = view.getUint32(0, true);
    expect(len).toBe(72); // as libnftables' request
    expect(view.getUint16(4, true)).toBe((10 << 8) | 13); // NFNL_SUBSYS_NFTABLES, NFT_MSG_GETSETELEM
    expect(view.getUint16(6, true)).toBe(0x5); // NLM_F_REQUEST | NLM_F_ACK
    expect(view.getUint32(8, true)).toBe(7);
    expect(hex(msg.subarray(16, 20))).toBe('01000000'); // inet, version 0, res_id 0
    expect(hex(msg.subarray(20, len))).toBe(
      '0e000100' + hex(Buffer.from('nspawn-ts\0\0\0')) + '0b000200' + hex(Buffer.from('ports6\0\0')) + '18000380' + captured(
        '\\x14\\x00\\x01\\x80\\x10\\x00\\x01\\x80\\x0c\\x00\\x01\\x00\\x06\\x00\\x00\\x00\\x1f\\x90\\x00\\x00'));
    // the second: its own sequence number, family ip (systemd-nspawn's table)
    expect(view.getUint32(len + 8, true)).toBe(8);
    expect(msg[len + 16]).toBe(2);
    expect(msg.length).toBe(len + view.getUint32(len, true));
  });

  test('the kernel\'s answer: the map\'s data and the element\'s comment (our owner)', () => {
    const answer = bytes('01000002' + '0e000100' + hex(Buffer.from('nspawn-ts\0\0\0')) + '0b000200' + hex(Buffer.from('ports6\0\0')) + '40000300' + captured(
      '\\x3c\\x00\\x01\\x00\\x10\\x00\\x01\\x00\\x0c\\x00\\x01\\x00\\x06\\x00\\x00\\x00\\x1f\\x90\\x00\\x00\\x1c\\x00\\x02\\x00\\x18\\x00\\x01\\x00\\xfd\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x18\\x00\\x50\\x00\\x00\\x0a\\x00\\x06\\x00\\x00\\x04\\x77\\x65\\x62\\x00\\x00\\x00'));
    expect(parseFoundElement(answer)).toEqual({ data: 'fd00:1::18 . 80', owner: 'web' });
    // a set element (no data) without a comment; a truncated answer yields what it holds
    expect(parseFoundElement(bytes('01000002 18000300 14000100 10000100 0c000100 0a000012 0a000012'))).toEqual({});
    expect(parseFoundElement(answer.subarray(0, 40))).toEqual({});
  });
});
