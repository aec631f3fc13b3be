// The DHCP message codec: golden bytes from real clients, an annotated reply, overload, size limits,
// and hostile input (which yields DhcpDecodeError or a packet, nothing else).
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import {
  BOOTREPLY, decodePacket, DhcpDecodeError, type DhcpPacket, emptyPacket, encodePacket, maxPayloadFor,
} from '../../../src/dhcp/codec.js';
import { macToString } from '../../../src/dhcp/ipv4.js';
import { DhcpOptionError, DhcpOptions, MessageType, Opt } from '../../../src/dhcp/options.js';
import { clientPacket, hex, ip } from './helpers.js';

function golden(client: string): Array<{ type: string; bytes: Uint8Array }> {
  const text = readFileSync(new URL(`../../golden/dhcp/${client}.txt`, import.meta.url), 'utf8');
  return text.trim().split('\n').map((line) => {
    const [type, h] = line.split(' ');
    return { type: type as string, bytes: Uint8Array.from(Buffer.from(h as string, 'hex')) };
  });
}

function optionCodes(p: DhcpPacket): number[] {
  return p.options.codes();
}

describe('golden packets from real clients (test/golden/dhcp/capture.sh)', () => {
  test('udhcpc DISCOVER and REQUEST', () => {
    const [disc, req] = golden('udhcpc');
    const d = decodePacket(disc!.bytes);
    expect(d).toMatchObject({ op: 1, htype: 1, hlen: 6, hops: 0, flags: 0, ciaddr: 0, yiaddr: 0, siaddr: 0, giaddr: 0 });
    expect(macToString(d.chaddr, d.hlen)).toBe('02:00:00:00:00:42');
    expect(d.options.messageType()).toBe(MessageType.DISCOVER);
    expect(d.options.maxMessageSize()).toBe(576);
    expect(d.options.parameterRequestList()).toEqual([1, 3, 6, 12, 15, 28, 42]);
    expect(d.options.hostname()).toBe('golden-udhcpc');
    expect(d.options.vendorClassId()).toBe('udhcp 1.35.0');
    expect(Buffer.from(d.options.clientId()!).toString('hex')).toBe('01020000000042');
    expect(optionCodes(d)).toEqual([53, 57, 55, 12, 60, 61]);
    const r = decodePacket(req!.bytes);
    expect(r.xid).toBe(d.xid);
    expect(r.options.messageType()).toBe(MessageType.REQUEST);
    expect(r.options.requestedIp()).toBe(ip('192.0.2.148'));
    expect(r.options.serverId()).toBe(ip('192.0.2.1'));
  });

  test('dhcpcd DISCOVER and REQUEST', () => {
    const [disc, req] = golden('dhcpcd');
    const d = decodePacket(disc!.bytes);
    expect(disc!.bytes.length).toBe(334);
    expect(d.options.messageType()).toBe(MessageType.DISCOVER);
    expect(d.options.maxMessageSize()).toBe(1472);
    expect(d.options.parameterRequestList()).toEqual([1, 3, 28, 33, 51, 58, 59]);
    expect(d.options.hostname()).toBe('golden-dhcpcd');
    expect(d.options.vendorClassId()).toMatch(/^dhcpcd-9\.4\.1:Linux/);
    expect(d.options.has(Opt.CLIENT_ID)).toBe(false);
    expect(optionCodes(d)).toEqual([53, 55, 57, 60, 12, 116, 145]);
    const r = decodePacket(req!.bytes);
    expect(r.options.messageType()).toBe(MessageType.REQUEST);
    expect(r.options.requestedIp()).toBe(ip('192.0.2.148'));
    expect(r.options.serverId()).toBe(ip('192.0.2.1'));
    expect(optionCodes(r)[0]).toBe(Opt.REQUESTED_IP);
  });

  test('dhclient DISCOVER, REQUEST (SELECTING), REQUEST (INIT-REBOOT), RELEASE', () => {
    const [disc, sel, reboot, rel] = golden('dhclient');
    const d = decodePacket(disc!.bytes);
    expect(d.options.messageType()).toBe(MessageType.DISCOVER);
    expect(d.options.parameterRequestList()).toEqual([1, 28, 2, 3, 15, 6, 119, 12, 44, 47, 26, 121, 42]);
    const s = decodePacket(sel!.bytes);
    expect(s.options.serverId()).toBe(ip('192.0.2.1'));
    expect(s.options.requestedIp()).toBe(ip('192.0.2.148'));
    const b = decodePacket(reboot!.bytes);
    expect(b.options.serverId()).toBeUndefined();
    expect(b.options.requestedIp()).toBe(ip('192.0.2.148'));
    expect(b.ciaddr).toBe(0);
    const l = decodePacket(rel!.bytes);
    expect(l.options.messageType()).toBe(MessageType.RELEASE);
    expect(l.ciaddr).toBe(ip('192.0.2.148'));
    expect(l.options.serverId()).toBe(ip('192.0.2.1'));
  });

  test.each(['udhcpc', 'dhcpcd', 'dhclient'])('%s packets re-encode to the same bytes', (client) => {
    for (const { bytes } of golden(client)) {
      const again = encodePacket(decodePacket(bytes), { maxSize: 1500 });
      // Our encoder pads to 300 like the clients do; the captured packets were padded the same way
      // or longer (dhcpcd ends exactly at END).
      expect(Buffer.from(again).toString('hex')).toBe(Buffer.from(bytes).toString('hex'));
    }
  });
});

describe('encoding a reply', () => {
  test('an OFFER, field by field', () => {
    const p = emptyPacket(BOOTREPLY);
    p.xid = 0x5b83d51e;
    p.flags = 0x8000;
    p.yiaddr = ip('192.0.2.148');
    p.chaddr.set([2, 0, 0, 0, 0, 0x42]);
    p.options.setU8(Opt.MESSAGE_TYPE, MessageType.OFFER)
      .setIpv4(Opt.SERVER_ID, ip('192.0.2.1'))
      .setU32(Opt.LEASE_TIME, 3600)
      .setIpv4(Opt.SUBNET_MASK, ip('255.255.255.0'))
      .setIpv4List(Opt.ROUTER, [ip('192.0.2.1')]);
    const expected = hex`
      02 01 06 00           # op BOOTREPLY, htype Ethernet, hlen 6, hops 0
      5b83d51e              # xid
      0000 8000             # secs, flags (broadcast)
      00000000              # ciaddr
      c0000294              # yiaddr 192.0.2.148
      00000000 00000000     # siaddr, giaddr
      020000000042 00000000000000000000  # chaddr
      ${'00'.repeat(64)}    # sname
      ${'00'.repeat(128)}   # file
      63825363              # magic cookie
      35 01 02              # 53 message type OFFER
      36 04 c0000201        # 54 server identifier
      33 04 00000e10        # 51 lease time 3600
      01 04 ffffff00        # 1 subnet mask
      03 04 c0000201        # 3 router
      ff                    # end
    `;
    const out = encodePacket(p);
    expect(out.length).toBe(300);
    expect(Buffer.from(out.subarray(0, expected.length)).toString('hex')).toBe(Buffer.from(expected).toString('hex'));
    expect(out.subarray(expected.length).every((b) => b === 0)).toBe(true);
  });

  test('options that do not fit the options field overflow into file and sname (option 52)', () => {
    const p = emptyPacket(BOOTREPLY);
    p.options.setU8(Opt.MESSAGE_TYPE, MessageType.ACK);
    const names = Array.from({ length: 8 }, (_, i) => `search${i}.example.org`);
    p.options.setDomainSearch(names); // ~170 bytes
    p.options.set(200, new Uint8Array(120).fill(7));
    p.options.set(201, new Uint8Array(100).fill(8));
    p.options.set(202, new Uint8Array(40).fill(9));
    const dropped: number[] = [];
    const out = encodePacket(p, { maxSize: 548, dropped });
    expect(out.length).toBeLessThanOrEqual(548);
    expect(dropped).toEqual([]);
    const back = decodePacket(out);
    expect(back.options.overload()).toBeGreaterThan(0);
    expect(back.options.domainSearch()).toEqual(names);
    expect(back.options.get(200)).toEqual(new Uint8Array(120).fill(7));
    expect(back.options.get(201)).toEqual(new Uint8Array(100).fill(8));
    expect(back.options.get(202)).toEqual(new Uint8Array(40).fill(9));
  });

  test('an option that fits nowhere is left out whole and reported', () => {
    const p = emptyPacket(BOOTREPLY);
    p.options.setU8(Opt.MESSAGE_TYPE, MessageType.ACK);
    p.options.set(200, new Uint8Array(290).fill(1)); // 2 chunks, 294 bytes: fills the options field
    p.options.set(201, new Uint8Array(250).fill(2)); // 252 bytes: more than file (128) or sname (64)
    const dropped: number[] = [];
    const out = encodePacket(p, { maxSize: 548, dropped });
    expect(dropped).toEqual([201]);
    const back = decodePacket(out);
    expect(back.options.get(200)?.length).toBe(290);
    expect(back.options.has(201)).toBe(false);
  });

  test('a value longer than 255 bytes is split and joined again (RFC 3396)', () => {
    const p = emptyPacket(BOOTREPLY);
    const long = Uint8Array.from({ length: 700 }, (_, i) => i & 0xff);
    p.options.set(224, long);
    const out = encodePacket(p, { maxSize: 1500 });
    expect(decodePacket(out).options.get(224)).toEqual(long);
  });

  test('the client maximum message size counts IP and UDP headers, and is at least the RFC default', () => {
    expect(maxPayloadFor(clientPacket({ type: 1 }))).toBe(548);
    const big = clientPacket({ type: 1 });
    big.options.setU16(Opt.MAX_MESSAGE_SIZE, 1500);
    expect(maxPayloadFor(big)).toBe(1472);
    const bad = clientPacket({ type: 1 });
    bad.options.setU16(Opt.MAX_MESSAGE_SIZE, 100);
    expect(maxPayloadFor(bad)).toBe(548);
  });
});

describe('decoding overloaded and repeated options', () => {
  test('options in file and sname are read after the options field, repeated ones concatenated', () => {
    const b = new Uint8Array(300);
    b[0] = 1; b[1] = 1; b[2] = 6;
    b.set([0x63, 0x82, 0x53, 0x63], 236);
    b.set([53, 1, 1, 52, 1, 3, 12, 2, 0x61, 0x62, 255], 240); // type, overload both, hostname "ab"
    b.set([12, 2, 0x63, 0x64, 15, 3, 0x78, 0x2e, 0x79, 255], 108); // file: hostname "cd", domain "x.y"
    b.set([12, 1, 0x65, 255], 44); // sname: hostname "e"
    const p = decodePacket(b);
    expect(p.options.hostname()).toBe('abcde');
    expect(p.options.domainName()).toBe('x.y');
  });

  test.each([
    ['shorter than the header', new Uint8Array(100), 100],
    ['bad op', (() => { const b = minimal(); b[0] = 3; return b; })(), 0],
    ['hlen above 16', (() => { const b = minimal(); b[2] = 17; return b; })(), 2],
    ['no magic cookie', (() => { const b = minimal(); b[236] = 0; return b; })(), 236],
    ['option without length', (() => { const b = minimal(); return Uint8Array.from([...b.subarray(0, 240), 12]); })(), 240],
    ['option overrunning', (() => { const b = minimal(); return Uint8Array.from([...b.subarray(0, 240), 12, 9, 1, 2]); })(), 240],
    ['overload of 4', (() => { const b = minimal(); b.set([52, 1, 4, 255], 240); return b; })(), 240],
    ['overload inside file', (() => { const b = minimal(); b.set([52, 1, 1, 255], 240); b.set([52, 1, 2, 255], 108); return b; })(), 108],
  ])('%s → DhcpDecodeError at its offset', (_what, bytes, offset) => {
    const err = (() => { try { decodePacket(bytes); } catch (e) { return e; } return undefined; })();
    expect(err).toBeInstanceOf(DhcpDecodeError);
    expect((err as DhcpDecodeError).offset).toBe(offset);
    expect((err as DhcpDecodeError).code).toBe('DHCP_DECODE');
  });
});

function minimal(): Uint8Array {
  const b = new Uint8Array(300);
  b[0] = 1; b[1] = 1; b[2] = 6;
  b.set([0x63, 0x82, 0x53, 0x63], 236);
  b.set([53, 1, 1, 255], 240);
  return b;
}

/** Reads every typed option the server knows; only DhcpOptionError may come out. */
function readAll(o: DhcpOptions): void {
  const getters: Array<() => unknown> = [
    () => o.messageType(), () => o.subnetMask(), () => o.routers(), () => o.dnsServers(), () => o.hostname(),
    () => o.domainName(), () => o.interfaceMtu(), () => o.broadcastAddress(), () => o.requestedIp(),
    () => o.leaseTime(), () => o.overload(), () => o.serverId(), () => o.parameterRequestList(),
    () => o.maxMessageSize(), () => o.renewalTime(), () => o.rebindingTime(), () => o.clientId(),
    () => o.clientFqdn(), () => o.relayAgentInfo(), () => o.domainSearch(), () => o.classlessRoutes(),
    () => o.message(), () => o.vendorClassId(),
  ];
  for (const g of getters) {
    try {
      g();
    } catch (err) {
      if (!(err instanceof DhcpOptionError)) throw err;
    }
  }
}

describe('hostile input', () => {
  const allGolden = ['udhcpc', 'dhcpcd', 'dhclient'].flatMap((c) => golden(c).map((g) => g.bytes));

  test('random bytes: a packet or DhcpDecodeError, never anything else', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 0, maxLength: 700 }), (bytes) => {
      try {
        readAll(decodePacket(bytes).options);
      } catch (err) {
        if (!(err instanceof DhcpDecodeError)) throw err;
      }
    }), { numRuns: 3000 });
  });

  test('random bytes after a valid header and cookie (the interesting part)', () => {
    const head = minimal().subarray(0, 240);
    fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), fc.uint8Array({ minLength: 192, maxLength: 192 }), (tail, snameFile) => {
      const b = new Uint8Array(240 + tail.length);
      b.set(head);
      b.set(snameFile, 44);
      b.set(tail, 240);
      try {
        const p = decodePacket(b);
        readAll(p.options);
        // whatever decodes re-encodes and decodes to the same options
        const again = decodePacket(encodePacket(p, { maxSize: 65535 }));
        expect(again.options.codes().sort()).toEqual(p.options.codes().filter((c) => c !== Opt.OVERLOAD).sort());
      } catch (err) {
        if (!(err instanceof DhcpDecodeError)) throw err;
      }
    }), { numRuns: 3000 });
  });

  test('mutated real packets (bit flips, truncation, splices)', () => {
    fc.assert(fc.property(
      fc.constantFrom(...allGolden),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 12 }),
      fc.nat(),
      (orig, flips, cut) => {
        const b = orig.slice(0, Math.max(0, orig.length - (cut % 80)));
        for (const [pos, v] of flips) if (b.length) b[pos % b.length] = v;
        try {
          readAll(decodePacket(b).options);
        } catch (err) {
          if (!(err instanceof DhcpDecodeError)) throw err;
        }
      },
    ), { numRuns: 5000 });
  });

  test('a 64 KiB datagram of option 0x01 length 255 decodes with bounded work', () => {
    const b = new Uint8Array(65535);
    b.set(minimal().subarray(0, 240));
    for (let i = 240; i + 257 <= b.length; i += 257) b.set([6, 255], i);
    const t0 = performance.now();
    const p = decodePacket(b);
    expect(performance.now() - t0).toBeLessThan(200);
    expect(() => p.options.dnsServers()).toThrow(DhcpOptionError);
  });
});

describe('round trip of arbitrary packets', () => {
  test('encode then decode gives back header and options', () => {
    const optionArb = fc.tuple(fc.integer({ min: 1, max: 254 }).filter((c) => c !== Opt.OVERLOAD), fc.uint8Array({ maxLength: 300 }));
    fc.assert(fc.property(
      fc.record({
        op: fc.constantFrom(1, 2), xid: fc.nat({ max: 0xffffffff }), secs: fc.nat({ max: 0xffff }), flags: fc.nat({ max: 0xffff }),
        ciaddr: fc.nat({ max: 0xffffffff }), yiaddr: fc.nat({ max: 0xffffffff }), giaddr: fc.nat({ max: 0xffffffff }),
        hlen: fc.integer({ min: 0, max: 16 }), options: fc.uniqueArray(optionArb, { selector: (o) => o[0], maxLength: 12 }),
      }),
      (r) => {
        const p = emptyPacket(r.op);
        Object.assign(p, { xid: r.xid, secs: r.secs, flags: r.flags, ciaddr: r.ciaddr, yiaddr: r.yiaddr, giaddr: r.giaddr, hlen: r.hlen });
        for (const [c, v] of r.options) p.options.set(c, v);
        const back = decodePacket(encodePacket(p, { maxSize: 65535 }));
        expect({ ...back, options: undefined, chaddr: undefined, sname: undefined, file: undefined })
          .toEqual({ ...p, options: undefined, chaddr: undefined, sname: undefined, file: undefined });
        for (const [c, v] of r.options) expect(back.options.get(c) ?? new Uint8Array()).toEqual(v);
      },
    ), { numRuns: 500 });
  });
});
