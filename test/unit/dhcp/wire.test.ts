// IPv4/UDP framing and the kernel filter program (run by the interpreter in bpf.ts).
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { assemble, BPF, dhcpServerFilter, dropAllFilter, PACKET_OUTGOING, runFilter } from '../../../src/dhcp/bpf.js';
import { buildIpUdp, checksum, parseIpUdp } from '../../../src/dhcp/wire.js';
import { ip } from './helpers.js';

describe('IPv4/UDP framing', () => {
  test('a built datagram parses back, with valid IP and UDP checksums', () => {
    const payload = Uint8Array.from({ length: 301 }, (_, i) => i & 0xff); // odd length
    const b = buildIpUdp(ip('192.0.2.1'), ip('192.0.2.7'), 67, 68, payload);
    expect(b.length).toBe(20 + 8 + 301);
    const d = parseIpUdp(b);
    expect(d).toMatchObject({ srcIp: ip('192.0.2.1'), dstIp: ip('192.0.2.7'), srcPort: 67, dstPort: 68 });
    expect(typeof d !== 'string' && d.payload).toEqual(payload);
    expect(checksum(b, 0, 20, 0)).toBe(0);
    // UDP: pseudo header + segment sums to zero
    const pseudo = (0xc000 + 0x0201 + 0xc000 + 0x0207 + 17 + 309);
    expect(checksum(b, 20, 309, pseudo % 0xffff)).toBe(0);
  });

  test('the header, field by field', () => {
    const b = buildIpUdp(ip('192.0.2.1'), 0xffffffff, 67, 68, Uint8Array.of(0xab));
    expect(Buffer.from(b.subarray(0, 4)).toString('hex')).toBe('4500001d'); // version 4, IHL 5, TOS 0, length 29
    expect(Buffer.from(b.subarray(6, 10)).toString('hex')).toBe('00004011'); // no flags/offset, TTL 64, UDP
    // source, destination, ports 67 → 68, UDP length 9
    expect(Buffer.from(b.subarray(12, 26)).toString('hex')).toBe('c0000201ffffffff004300440009');
  });

  test.each([
    ['too short', new Uint8Array(27), /too short/],
    ['IPv6', (() => { const b = buildIpUdp(1, 2, 67, 67, new Uint8Array(4)); b[0] = 0x65; return b; })(), /version 6/],
    ['bad header checksum', (() => { const b = buildIpUdp(1, 2, 67, 67, new Uint8Array(4)); b[15] = (b[15] ?? 0) ^ 1; return b; })(), /checksum/],
    ['a fragment', (() => { const b = buildIpUdp(1, 2, 67, 67, new Uint8Array(4)); b[6] = 0x20; return b; })(), /fragment/],
    ['TCP', (() => { const b = buildIpUdp(1, 2, 67, 67, new Uint8Array(4)); b[9] = 6; return b; })(), /protocol 6/],
    ['total length past the data', (() => { const b = buildIpUdp(1, 2, 67, 67, new Uint8Array(4)); b[3] = 200; return b; })(), /total length/],
    ['UDP length past the datagram', (() => { const b = buildIpUdp(1, 2, 67, 67, new Uint8Array(4)); b[25] = 99; return b; })(), /UDP length/],
  ])('%s is refused with the reason', (_what, b, re) => {
    const r = parseIpUdp(b);
    expect(typeof r).toBe('string');
    expect(r).toMatch(re);
  });

  test('random bytes never throw', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (b) => {
      const r = parseIpUdp(b);
      expect(typeof r === 'string' || typeof r === 'object').toBe(true);
    }), { numRuns: 2000 });
  });
});

describe('the kernel filter', () => {
  const f = dhcpServerFilter();
  const host = { pkttype: 0 };
  const udp = (dport: number, opts: { ihl?: number; frag?: number; proto?: number } = {}): Uint8Array => {
    const b = buildIpUdp(ip('192.0.2.7'), 0xffffffff, 68, dport, new Uint8Array(300));
    if (!opts.ihl) {
      if (opts.frag !== undefined) { b[6] = opts.frag >> 8; b[7] = opts.frag & 0xff; }
      if (opts.proto !== undefined) b[9] = opts.proto;
      return b;
    }
    // with IP options: IHL 6 (4 bytes of NOP options)
    const o = new Uint8Array(b.length + 4);
    o.set(b.subarray(0, 20));
    o[0] = 0x46;
    o.set([1, 1, 1, 1], 20);
    o.set(b.subarray(20), 24);
    return o;
  };
  test('accepts UDP to port 67, with or without IP options', () => {
    expect(runFilter(f, udp(67), host)).toBeGreaterThan(0);
    expect(runFilter(f, udp(67, { ihl: 6 }), host)).toBeGreaterThan(0);
    expect(runFilter(f, udp(67), { pkttype: 1 })).toBeGreaterThan(0);
  });
  test('drops other ports, other protocols, fragments, our own frames and runts', () => {
    expect(runFilter(f, udp(68), host)).toBe(0);
    expect(runFilter(f, udp(67, { proto: 6 }), host)).toBe(0);
    expect(runFilter(f, udp(67, { frag: 0x2000 }), host)).toBe(0);
    expect(runFilter(f, udp(67, { frag: 0x0010 }), host)).toBe(0);
    expect(runFilter(f, udp(67), { pkttype: PACKET_OUTGOING })).toBe(0);
    // an ETH_P_ALL socket sees every EtherType: ARP, IPv6 (whatever their bytes look like) stay out
    expect(runFilter(f, udp(67), { pkttype: 0, protocol: 0x0806 })).toBe(0);
    expect(runFilter(f, udp(67), { pkttype: 0, protocol: 0x86dd })).toBe(0);
    expect(runFilter(f, new Uint8Array(10), host)).toBe(0);
  });
  test('the drop-all program drops everything; labels resolve, unknown ones are refused', () => {
    expect(runFilter(dropAllFilter(), udp(67), host)).toBe(0);
    expect(f.length % 8).toBe(0);
    expect(() => assemble([{ code: BPF.JMP | BPF.JEQ, jt: 'nowhere' }])).toThrow(/nowhere/);
  });
});
