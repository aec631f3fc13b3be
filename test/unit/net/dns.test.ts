// The DNS server's pure core: the name table and its per-link visibility, the query decision, the
// wire format (golden bytes written out from RFC 1035 by hand), the cache's TTL rules (RFC 2308),
// the rate limit, and fuzzing of the whole query path.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import dnsPacket from 'dns-packet';
import type { Answer } from 'dns-packet';
import { afterEach, describe, expect, it } from 'vitest';
import { AnswerCache, cacheKey, cacheTtl } from '../../../src/net/dns/cache.js';
import { decide } from '../../../src/net/dns/decide.js';
import { encodeAnswer, parseQuery, RCODE } from '../../../src/net/dns/message.js';
import { addressOfReverse, NameTable, prefix64Of, reverseName, reverseName6, type DnsLink } from '../../../src/net/dns/names.js';
import { Address6 } from 'ip-address';
import { RateLimiter } from '../../../src/net/dns/ratelimit.js';
import { DnsServer } from '../../../src/net/dns/server.js';
import { Forwarder, hostUpstreams, parseUpstream } from '../../../src/net/dns/upstream.js';
import { registerCalls, ResolvedRegistrar, revertCalls } from '../../../src/net/dns/resolved.js';
import type { Logger } from '../../../src/log.js';

const ZONE: DnsLink = {
  ifname: 'vz-web', hostAddress: '192.168.40.1', subnet: '192.168.40.0/24',
  machines: [{ name: 'a', address: '192.168.40.10' }, { name: 'B', address: '192.168.40.11' }],
};
const VETH: DnsLink = { ifname: 've-solo', hostAddress: '192.168.50.17', subnet: '192.168.50.16/28', machines: [{ name: 'solo', address: '192.168.50.18' }] };

/** The zone with IPv6: its /64's ::1 is a second host address; `a` has an EUI-64 address, `B` none. */
const ZONE6: DnsLink = {
  ...ZONE, hostAddress6: '2001:db8:40::1', prefix6: '2001:db8:40::/64',
  machines: [{ name: 'a', address: '192.168.40.10', address6: '2001:db8:40:0:5054:ff:fe00:a' }, { name: 'B', address: '192.168.40.11' }],
};
const A6 = '2001:db8:40:0:5054:ff:fe00:a';

function hex(s: string): Buffer {
  return Buffer.from(s.replace(/\s+/g, ''), 'hex');
}

/** A query as bytes: ID 0x1234, RD, one question (name as labels), type, class IN. */
function query(name: string, type: number, id = 0x1234, extra = ''): Buffer {
  const labels = name.split('.').filter(Boolean).map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]).toString('hex')).join('');
  const ar = extra ? '0001' : '0000';
  return hex(`${id.toString(16).padStart(4, '0')} 0100 0001 0000 0000 ${ar} ${labels}00 ${type.toString(16).padStart(4, '0')} 0001 ${extra}`);
}

function server(): DnsServer {
  const s = new DnsServer({ forwarder: new Forwarder({ servers: [] }), rate: 0 });
  s.table.set([ZONE, VETH]);
  return s;
}

describe('name table', () => {
  it('answers NAME and NAME.machine per link, case-insensitively, and PTR inside the subnet', () => {
    const t = new NameTable();
    t.set([ZONE, VETH]);
    const zone = t.forLink('192.168.40.1');
    expect(zone?.forward.get('a')).toEqual(['192.168.40.10']);
    expect(zone?.forward.get('b.machine')).toEqual(['192.168.40.11']);
    expect(zone?.forward.get('solo')).toBeUndefined(); // another link's machine: invisible
    expect(t.forLink('192.168.50.17')?.forward.get('a')).toBeUndefined();
    expect(zone?.reverse.get('11.40.168.192.in-addr.arpa')).toBe('B.machine');
    expect(zone?.ownsReverse('99.40.168.192.in-addr.arpa')).toBe(true);
    expect(zone?.ownsReverse('1.50.168.192.in-addr.arpa')).toBe(false);
    expect(zone?.onLink('192.168.40.200')).toBe(true);
    expect(zone?.onLink('192.0.2.7')).toBe(false);
    expect(zone?.onLink('::ffff:192.168.40.5')).toBe(true);
  });

  it('takes a configurable domain and refuses unusable ones', () => {
    const t = new NameTable('Containers.Test.');
    t.set([ZONE]);
    expect(t.forLink('192.168.40.1')?.forward.get('a.containers.test')).toEqual(['192.168.40.10']);
    expect(() => new NameTable('bad domain')).toThrow(/not a usable DNS domain/);
    expect(() => new NameTable('1.2.3')).toThrow();
  });

  it('does not publish names that are no DNS names', () => {
    const t = new NameTable();
    t.set([{ ...ZONE, machines: [{ name: 'has space', address: '192.168.40.2' }, { name: 'x.machine', address: '192.168.40.3' }, { name: 'ok', address: 'junk' }] }]);
    expect([...(t.forLink('192.168.40.1')?.forward.keys() ?? [])]).toEqual([]);
  });

  it('maps reverse names both ways', () => {
    fc.assert(fc.property(fc.ipV4(), (a) => addressOfReverse(reverseName(a)) === a));
    expect(addressOfReverse('1.2.3.in-addr.arpa')).toBeUndefined();
    expect(addressOfReverse('256.1.1.1.in-addr.arpa')).toBeUndefined();
  });
});

describe('wire format (golden bytes)', () => {
  it('answers A for a machine: authoritative, TTL 0, question echoed as spelled', () => {
    const s = server();
    const out = s.handle(query('A.machine', 1), '192.168.40.10', '192.168.40.1', 'udp') as Buffer;
    // ID, QR|AA|RD|RA NOERROR, 1 question, 1 answer; question; answer: the name again (dns-packet
    // does not compress), A, IN, TTL 0, 4 bytes 192.168.40.10
    expect(out.toString('hex')).toBe(hex(`1234 8580 0001 0001 0000 0000
      01 41 07 6d616368696e65 00 0001 0001
      01 41 07 6d616368696e65 00 0001 0001 00000000 0004 c0a8280a`).toString('hex'));
  });

  it('answers NXDOMAIN with the domain SOA for an unknown machine', () => {
    const s = server();
    const out = s.handle(query('nope.machine', 1), '192.168.40.10', '192.168.40.1', 'udp') as Buffer;
    expect(out.subarray(0, 12).toString('hex')).toBe('123485830001000000010000');
    const p = dnsPacket.decode(out);
    expect(p.authorities?.[0]).toMatchObject({ type: 'SOA', name: 'machine', ttl: 0 });
  });

  it('answers FORMERR (header only) to undecodable queries and drops responses and runts', () => {
    const s = server();
    // a compression pointer pointing forward at itself: a loop
    const loop = hex('abcd 0100 0001 0000 0000 0000 c00c 0001 0001');
    expect((s.handle(loop, '192.168.40.10', '192.168.40.1', 'udp') as Buffer).toString('hex')).toBe('abcd818100000000000000'.padEnd(24, '0'));
    expect(s.handle(hex('abcd 8100 0001 0000 0000 0000 00 0001 0001'), '192.168.40.10', '192.168.40.1', 'udp')).toBeUndefined();
    expect(s.handle(hex('abcd01'), '192.168.40.10', '192.168.40.1', 'udp')).toBeUndefined();
    // two questions: FORMERR; an IQUERY (opcode 1): NOTIMP
    expect((s.handle(hex('0001 0100 0002 0000 0000 0000 00 0001 0001 00 0001 0001'), '192.168.40.10', '192.168.40.1', 'udp') as Buffer).readUInt16BE(2) & 0xf).toBe(RCODE.FORMERR);
    expect((s.handle(hex('0001 0900 0001 0000 0000 0000 00 0001 0001'), '192.168.40.10', '192.168.40.1', 'udp') as Buffer).readUInt16BE(2) & 0xf).toBe(RCODE.NOTIMP);
  });

  it('speaks EDNS0: echoes an OPT with 1232 bytes, BADVERS for version 1', () => {
    const s = server();
    // OPT: root name, type 41, UDP size 4096, ext-rcode 0, version 0, DO set, no options
    const out = s.handle(query('a', 1, 7, '00 0029 1000 00 00 8000 0000'), '192.168.40.10', '192.168.40.1', 'udp') as Buffer;
    expect(out.subarray(-11).toString('hex')).toBe('00002904d000008000' + '0000');
    const bad = s.handle(query('a', 1, 7, '00 0029 1000 00 01 0000 0000'), '192.168.40.10', '192.168.40.1', 'udp') as Buffer;
    const p = dnsPacket.decode(bad);
    expect(p.additionals?.[0]).toMatchObject({ type: 'OPT', extendedRcode: 1 });
  });

  it('answers ANY minimally (RFC 8482) and refuses zone transfers and other classes', () => {
    const s = server();
    const any = dnsPacket.decode(s.handle(query('example.org', 255), '192.168.40.10', '192.168.40.1', 'udp') as Buffer);
    expect(any.answers).toEqual([expect.objectContaining({ type: 'HINFO', data: { cpu: 'RFC8482', os: '' } })]);
    const anyMachine = dnsPacket.decode(s.handle(query('a', 255), '192.168.40.10', '192.168.40.1', 'udp') as Buffer);
    expect(anyMachine.answers?.map((a) => a.type)).toEqual(['A']);
    const axfr = s.handle(query('machine', 252), '192.168.40.10', '192.168.40.1', 'tcp') as Buffer;
    expect(axfr.readUInt16BE(2) & 0xf).toBe(RCODE.REFUSED);
  });

  it('truncates what does not fit in 512 bytes without EDNS', () => {
    const many: DnsLink = { ...ZONE, machines: Array.from({ length: 60 }, (_, i) => ({ name: 'm', address: `192.168.40.${i + 2}` })) };
    const s = new DnsServer({ forwarder: new Forwarder({ servers: [] }), rate: 0 });
    s.table.set([many]);
    const udp = s.handle(query('m', 1), '192.168.40.10', '192.168.40.1', 'udp') as Buffer;
    expect(udp.readUInt16BE(2) & 0x0200).toBe(0x0200);
    expect(udp.length).toBeLessThanOrEqual(512);
    const tcp = dnsPacket.decode(s.handle(query('m', 1), '192.168.40.10', '192.168.40.1', 'tcp') as Buffer);
    expect(tcp.answers).toHaveLength(60);
  });

  it('answers nobody off the link (never an open resolver)', () => {
    const s = server();
    expect(s.handle(query('a', 1), '192.0.2.9', '192.168.40.1', 'udp')).toBeUndefined();
    expect(s.handle(query('a', 1), '192.168.40.10', '192.0.2.1', 'udp')).toBeUndefined();
  });
});

describe('IPv6', () => {
  function server6(rate = 0): DnsServer {
    const s = new DnsServer({ forwarder: new Forwarder({ servers: [] }), rate, resolved: false });
    s.table.set([ZONE6, VETH]);
    return s;
  }

  it('answers AAAA for a machine over IPv6 (golden bytes)', () => {
    const out = server6().handle(query('A.machine', 28), A6, '2001:db8:40::1', 'udp') as Buffer;
    // ID, QR|AA|RD|RA NOERROR, 1 question, 1 answer; question A.machine AAAA IN; answer: AAAA, IN,
    // TTL 0, 16 bytes 2001:0db8:0040:0000:5054:00ff:fe00:000a
    expect(out.toString('hex')).toBe(hex(`1234 8580 0001 0001 0000 0000
      01 41 07 6d616368696e65 00 001c 0001
      01 41 07 6d616368696e65 00 001c 0001 00000000 0010 20010db8004000005054 00ff fe00 000a`).toString('hex'));
  });

  it('answers the same names on both host addresses of a link, A and AAAA on each', () => {
    const s = server6();
    const aaaaOver4 = dnsPacket.decode(s.handle(query('a', 28), '192.168.40.10', '192.168.40.1', 'udp') as Buffer);
    expect(aaaaOver4.answers).toEqual([expect.objectContaining({ type: 'AAAA', data: A6 })]);
    const aOver6 = dnsPacket.decode(s.handle(query('a', 1), A6, '2001:db8:40::1', 'tcp') as Buffer);
    expect(aOver6.answers).toEqual([expect.objectContaining({ type: 'A', data: '192.168.40.10' })]);
    const any = dnsPacket.decode(s.handle(query('a', 255), A6, '2001:db8:40::1', 'udp') as Buffer);
    expect(any.answers?.map((a) => a.type)).toEqual(['A', 'AAAA']);
    // B has no IPv6 address: NODATA (NOERROR, no answer, the SOA), not NXDOMAIN
    const b = s.handle(query('b.machine', 28), A6, '2001:db8:40::1', 'udp') as Buffer;
    expect(b.subarray(0, 12).toString('hex')).toBe('123485800001000000010000');
    // a veth link without IPv6: AAAA of its machine is NODATA, its names stay its own
    expect((s.handle(query('solo', 28), '192.168.50.18', '192.168.50.17', 'udp') as Buffer).subarray(0, 12).toString('hex')).toBe('123485800001000000000000');
    expect((s.handle(query('solo', 28), A6, '2001:db8:40::1', 'udp') as Buffer).readUInt16BE(2) & 0xf).toBe(RCODE.NXDOMAIN);
  });

  it('answers PTR inside the /64, NXDOMAIN for unknown addresses there, and forwards the rest', () => {
    const t = new NameTable();
    t.set([ZONE6]);
    const link = t.forLink('2001:db8:40::1');
    expect(reverseName6(A6)).toBe('a.0.0.0.0.0.e.f.f.f.0.0.4.5.0.5.0.0.0.0.0.4.0.0.8.b.d.0.1.0.0.2.ip6.arpa');
    const q = (name: string, type: string) => {
      const p = parseQuery(dnsPacket.encode({ type: 'query', id: 1, questions: [{ name, type: type as 'A', class: 'IN' }] }));
      if (!p.ok) throw new Error(p.reason);
      return p.query;
    };
    expect(decide(q(reverseName6(A6), 'PTR'), link, t)).toMatchObject({ kind: 'answer', parts: { answers: [{ data: 'a.machine' }] } });
    expect(decide(q(reverseName6('2001:db8:40::77'), 'PTR'), link, t)).toMatchObject({ kind: 'answer', parts: { rcode: RCODE.NXDOMAIN, authoritative: true } });
    expect(decide(q(reverseName6('2001:db8:41::77'), 'PTR'), link, t)).toEqual({ kind: 'forward' });
    expect(decide(q('0.4.0.0.8.b.d.0.1.0.0.2.ip6.arpa', 'PTR'), link, t)).toEqual({ kind: 'forward' });
  });

  it('reads the /64 of a source as ip-address does, and nothing of junk', () => {
    fc.assert(fc.property(fc.ipV6().filter((a) => !a.includes('.')), (a) => prefix64Of(a) === new Address6(a).canonicalForm().replace(/:/g, '').slice(0, 16)), { numRuns: 3000 });
    for (const junk of ['', ':', ':::', '1::2::3', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7', 'g::1', '12345::1', '::ffff:192.0.2.1', 'fe80::1%eth0', '192.0.2.1', '1:2:3:4:5:6:7::8']) {
      expect(prefix64Of(junk), junk).toBeUndefined();
    }
    expect(prefix64Of('::')).toBe('0'.repeat(16));
    expect(prefix64Of('2001:DB8:40::1')).toBe('20010db800400000');
  });

  it('answers nobody off the /64, nor scoped link-local sources, nor addresses outside the /64', () => {
    const s = server6();
    expect(s.handle(query('a', 28), '2001:db8:ffff::1', '2001:db8:40::1', 'udp')).toBeUndefined();
    expect(s.handle(query('a', 28), 'fe80::5054:ff:fe00:a%vz-web', '2001:db8:40::1', 'udp')).toBeUndefined();
    expect(s.handle(query('a', 28), A6, '2001:db8:41::1', 'udp')).toBeUndefined();
    expect(s.stats.dropped).toBe(3);
    // a machine's IPv6 address outside the link's /64 is not published
    const t = new NameTable();
    t.set([{ ...ZONE6, machines: [{ name: 'x', address: '192.168.40.12', address6: '2001:db8:99::1' }] }]);
    expect(t.forLink('2001:db8:40::1')?.forward6.get('x')).toBeUndefined();
  });

  it('gives sources it does not know in the /64 one shared bucket: cycling addresses neither outruns the limit nor fills the table', () => {
    const s = server6(10); // 10/s, burst 20
    let answered = 0;
    for (let i = 0; i < 500; i++) if (s.handle(query('a', 28, i), `2001:db8:40::${(i + 0x100).toString(16)}`, '2001:db8:40::1', 'udp')) answered++;
    expect(answered).toBeLessThanOrEqual(21);
    expect(s.limiter.sources).toBe(1);
    // the machine's own address has a bucket of its own, and IPv4 sources keep theirs
    expect(s.handle(query('a', 28), A6, '2001:db8:40::1', 'udp')).toBeDefined();
    expect(s.handle(query('a', 1), '192.168.40.10', '192.168.40.1', 'udp')).toBeDefined();
  });
});

describe('repeated queries (wire cache)', () => {
  it('answers a repeat from its encoded answer with the new ID, until the names change', () => {
    const s = server();
    const first = s.handle(query('a', 1, 0x1111), '192.168.40.10', '192.168.40.1', 'udp') as Buffer;
    const again = s.handle(query('a', 1, 0x2222), '192.168.40.10', '192.168.40.1', 'udp') as Buffer;
    expect(s.stats.repeated).toBe(1);
    expect(again.readUInt16BE(0)).toBe(0x2222);
    expect(again.subarray(2)).toEqual(first.subarray(2));
    // another link asking the same bytes gets its own answer (its names)
    expect((s.handle(query('a', 1, 0x3333), '192.168.50.18', '192.168.50.17', 'udp') as Buffer).readUInt16BE(2) & 0xf).toBe(RCODE.NXDOMAIN);
    s.table.set([VETH, { ...ZONE, machines: [] }]);
    expect((s.handle(query('a', 1, 0x4444), '192.168.40.10', '192.168.40.1', 'udp') as Buffer).readUInt16BE(2) & 0xf).toBe(RCODE.NXDOMAIN);
  });

  it('serves cached forwarded answers with TTLs exact to the second', () => {
    let now = 5_000_000;
    const c = new AnswerCache({ now: () => now });
    c.put('k', { rcode: 0, authenticData: false, answers: [{ type: 'A', name: 'x', ttl: 30, class: 'IN', data: '192.0.2.1' }], authorities: [], additionals: [] });
    now += 1_250;
    expect(c.get('k')).toMatchObject({ exactForMs: 750, value: { answers: [{ ttl: 29 }] } });
  });
});

describe('decision', () => {
  const t = new NameTable();
  t.set([ZONE, VETH]);
  const link = t.forLink('192.168.40.1');
  const q = (name: string, type: string, cls = 'IN') => {
    const p = parseQuery(dnsPacket.encode({ type: 'query', id: 1, questions: [{ name, type: type as 'A', class: cls as 'IN' }] }));
    if (!p.ok) throw new Error(p.reason);
    return p.query;
  };

  it('answers machine names itself and forwards the rest', () => {
    expect(decide(q('a', 'AAAA'), link, t)).toMatchObject({ kind: 'answer', parts: { rcode: RCODE.NOERROR, authoritative: true } });
    expect(decide(q('solo', 'A'), link, t)).toMatchObject({ kind: 'answer', parts: { rcode: RCODE.NXDOMAIN } });
    expect(decide(q('machine', 'SOA'), link, t)).toMatchObject({ kind: 'answer', parts: { answers: [{ type: 'SOA' }] } });
    expect(decide(q('10.40.168.192.in-addr.arpa', 'PTR'), link, t)).toMatchObject({ kind: 'answer', parts: { answers: [{ data: 'a.machine' }] } });
    expect(decide(q('77.40.168.192.in-addr.arpa', 'PTR'), link, t)).toMatchObject({ kind: 'answer', parts: { rcode: RCODE.NXDOMAIN } });
    expect(decide(q('8.8.8.8.in-addr.arpa', 'PTR'), link, t)).toEqual({ kind: 'forward' });
    expect(decide(q('www.example.org', 'A'), link, t)).toEqual({ kind: 'forward' });
    expect(decide(q('version.bind', 'TXT', 'CH'), link, t)).toMatchObject({ parts: { rcode: RCODE.REFUSED } });
    expect(decide(q('a', 'A'), undefined, t)).toMatchObject({ parts: { rcode: RCODE.REFUSED } });
  });
});

describe('cache (RFC 2308)', () => {
  const a = (ttl: number): Answer => ({ type: 'A', name: 'x.example', ttl, class: 'IN', data: '192.0.2.1' });
  const soa = (ttl: number, minimum: number): Answer => ({ type: 'SOA', name: 'example', ttl, class: 'IN', data: { mname: 'ns', rname: 'h', minimum } });

  it('keeps positive answers for their smallest TTL, negative ones for min(SOA TTL, MINIMUM), never SERVFAIL', () => {
    expect(cacheTtl({ rcode: 0, answers: [a(300), a(60)], authorities: [] })).toBe(60);
    expect(cacheTtl({ rcode: 3, answers: [], authorities: [soa(900, 30)] })).toBe(30);
    expect(cacheTtl({ rcode: 0, answers: [], authorities: [soa(20, 300)] })).toBe(20);
    expect(cacheTtl({ rcode: 3, answers: [], authorities: [] })).toBeUndefined();
    expect(cacheTtl({ rcode: 2, answers: [], authorities: [] })).toBeUndefined();
    expect(cacheTtl({ rcode: 0, answers: [a(999999)], authorities: [] })).toBe(86400);
  });

  it('counts TTLs down and expires', () => {
    let now = 1_000_000;
    const c = new AnswerCache({ now: () => now });
    const k = cacheKey('x.example', 'A', 'IN', false);
    c.put(k, { rcode: 0, authenticData: false, answers: [a(10)], authorities: [], additionals: [] });
    now += 4_500;
    expect(c.get(k)?.value.answers[0]).toMatchObject({ ttl: 6 });
    now += 6_000;
    expect(c.get(k)).toBeUndefined();
  });

  it('stays within its size, dropping the least recently used', () => {
    const c = new AnswerCache({ maxEntries: 3 });
    for (const n of ['a', 'b', 'c']) c.put(n, { rcode: 0, authenticData: false, answers: [a(60)], authorities: [], additionals: [] });
    c.get('a');
    c.put('d', { rcode: 0, authenticData: false, answers: [a(60)], authorities: [], additionals: [] });
    expect(c.size).toBe(3);
    expect(c.get('b')).toBeUndefined();
    expect(c.get('a')).toBeDefined();
  });
});

describe('rate limit', () => {
  it('lets a source send its burst, then its rate, and leaves other sources alone', () => {
    let now = 0;
    const r = new RateLimiter({ rate: 10, burst: 20, now: () => now });
    let ok = 0;
    for (let i = 0; i < 100; i++) if (r.allow('192.168.40.10')) ok++;
    expect(ok).toBe(20);
    expect(r.allow('192.168.40.11')).toBe(true);
    now += 1000;
    ok = 0;
    for (let i = 0; i < 100; i++) if (r.allow('192.168.40.10')) ok++;
    expect(ok).toBe(10);
  });

  it('stays bounded under many sources', () => {
    const r = new RateLimiter({ rate: 10, maxSources: 100 });
    for (let i = 0; i < 10_000; i++) r.allow(`10.0.${i >> 8}.${i & 255}`);
    expect(r.sources).toBeLessThanOrEqual(101);
  });
});

describe('upstreams', () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('parses addresses with optional ports', () => {
    expect(parseUpstream('192.0.2.53')).toEqual({ address: '192.0.2.53', port: 53 });
    expect(parseUpstream('192.0.2.53:5353')).toEqual({ address: '192.0.2.53', port: 5353 });
    expect(parseUpstream('[2001:db8::53]:54')).toEqual({ address: '2001:db8::53', port: 54 });
    expect(parseUpstream('2001:db8::53')).toEqual({ address: '2001:db8::53', port: 53 });
    expect(parseUpstream('fe80::1%eth0')).toBeUndefined();
    expect(parseUpstream('192.0.2.53:0')).toBeUndefined();
  });

  it('uses resolved\'s real upstreams when resolv.conf names only its stub, and never our own addresses', () => {
    dir = mkdtempSync(join(tmpdir(), 'dns-up-'));
    const host = join(dir, 'resolv.conf');
    const uplink = join(dir, 'uplink.conf');
    writeFileSync(host, 'nameserver 127.0.0.53\noptions edns0\n');
    writeFileSync(uplink, 'nameserver 198.51.100.53\nnameserver 192.168.40.1\n');
    expect(hostUpstreams({ host, uplink }, new Set(['192.168.40.1']))).toEqual([{ address: '198.51.100.53', port: 53 }]);
    writeFileSync(host, 'nameserver 127.0.0.1\nnameserver 203.0.113.53\n');
    expect(hostUpstreams({ host, uplink }).map((u) => u.address)).toEqual(['127.0.0.1', '203.0.113.53']);
  });
});

describe('fuzzing the query path', () => {
  const s = server();
  const check = (bytes: Uint8Array) => {
    const out = s.handle(Buffer.from(bytes), '192.168.40.10', '192.168.40.1', 'udp');
    if (out === undefined || out instanceof Promise) return;
    expect(out.length).toBeGreaterThanOrEqual(12);
    expect(out.length).toBeLessThanOrEqual(512);
    expect(out.readUInt16BE(0)).toBe(Buffer.from(bytes).readUInt16BE(0));
    expect(out.readUInt16BE(2) & 0x8000).toBe(0x8000);
  };

  it('never throws on random bytes; every answer is a response with the query ID within 512 bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), check), { numRuns: 3000 });
  });

  it('never throws on mutated valid queries', () => {
    const seeds = [query('a.machine', 1), query('b', 28), query('11.40.168.192.in-addr.arpa', 12), query('a', 1, 9, '00 0029 1000 00 00 8000 0000')];
    fc.assert(fc.property(fc.constantFrom(...seeds), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }), fc.nat({ max: 40 }),
      (seed, flips, cut) => {
        const b = Buffer.from(seed);
        for (const [i, v] of flips) b[i % b.length] = v;
        check(b.subarray(0, Math.max(0, b.length - cut)));
      }), { numRuns: 3000 });
  });

  it('encodes every answer it decides (property: local names of any case round-trip)', () => {
    fc.assert(fc.property(fc.constantFrom('a', 'B', 'a.machine', 'B.MACHINE', 'nx', 'nx.machine'), fc.constantFrom(1, 28, 12, 16, 255),
      (name, type) => {
        const out = s.handle(query(name, type), '192.168.40.10', '192.168.40.1', 'udp') as Buffer;
        const p = dnsPacket.decode(out);
        expect(p.questions?.[0]?.name).toBe(name);
        expect(p.flag_aa || type === 255).toBe(true);
      }));
  });

  it('header-only answers and encodeAnswer keep the ID', () => {
    const p = parseQuery(query('a', 1, 0xbeef));
    if (!p.ok) throw new Error('bad');
    expect(encodeAnswer(p.query, { rcode: RCODE.SERVFAIL }).readUInt16BE(0)).toBe(0xbeef);
  });
});

describe('systemd-resolved registration', () => {
  const link = { ifindex: 7, ifname: 'vz-web', address: '192.168.40.1', domain: 'machine' };

  it('calls resolve1.Manager as networkd does for DNS= and Domains=~machine (busctl arguments)', () => {
    const dest = ['org.freedesktop.resolve1', '/org/freedesktop/resolve1', 'org.freedesktop.resolve1.Manager'];
    expect(registerCalls(link)).toEqual([
      ['call', ...dest, 'SetLinkDNS', 'ia(iay)', '7', '1', '2', '4', '192', '168', '40', '1'],
      ['call', ...dest, 'SetLinkDomains', 'ia(sb)', '7', '1', 'machine', 'true'],
      ['call', ...dest, 'SetLinkDefaultRoute', 'ib', '7', 'false'],
    ]);
    expect(revertCalls(7)).toEqual([['call', ...dest, 'RevertLink', 'i', '7']]);
    // with IPv6: both addresses, AF_INET6 = 10 with its 16 bytes
    expect(registerCalls({ ...link, address6: '2001:db8:40::1' })[0]).toEqual(
      ['call', ...dest, 'SetLinkDNS', 'ia(iay)', '7', '2', '2', '4', '192', '168', '40', '1', '10', '16', '32', '1', '13', '184', '0', '64', ...Array(9).fill('0'), '1'],
    );
  });

  it('registers only where resolved runs, and a failure is a warning', async () => {
    const warnings: string[] = [];
    const log: Logger = { debug: () => undefined, info: () => undefined, warn: (m) => warnings.push(m), error: () => undefined };
    const calls: string[][] = [];
    const off = new ResolvedRegistrar(log, { running: () => false, run: async (a) => { calls.push(a); } });
    expect(await off.register(link)).toBe(false);
    expect(calls).toEqual([]);
    const on = new ResolvedRegistrar(log, { running: () => true, run: async (a) => { calls.push(a); } });
    expect(await on.register(link)).toBe(true);
    expect(calls.map((c) => c[4])).toEqual(['SetLinkDNS', 'SetLinkDomains', 'SetLinkDefaultRoute']);
    const failing = new ResolvedRegistrar(log, { running: () => true, run: async () => { throw new Error('Access denied'); } });
    expect(await failing.register(link)).toBe(false);
    expect(warnings[0]).toMatch(/registering the DNS server of vz-web with it failed .*Access denied/);
  });
});
