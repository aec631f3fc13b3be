// The RA server's decisions with a fake transport and clock: what it sends when, and which
// solicitations it ignores (RFC 4861 §6.1.1, §6.2.4–6.2.6).
import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import { logger } from '../../../../src/log.js';
import { buildIpv6Icmp, decodeRouterAdvertisement, parseIpv6Icmp } from '../../../../src/net/ipv6/ndp.js';
import { addressBytes, linkLocalAddress, parseIpv6Prefix } from '../../../../src/net/ipv6/prefix.js';
import { AdvertisementSchedule, RA_TIMING } from '../../../../src/net/ipv6/ra-schedule.js';
import { type RaLink, type RaTransport, RouterAdvertiser } from '../../../../src/net/ipv6/ra-server.js';

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const HOST_MAC = hex('020000000001');
const CONTAINER_MAC = hex('02aabbccddee');

class FakeTransport implements RaTransport {
  sent: { ifindex: number; dstMac: string; dst: string; lifetime: number; prefixes: number }[] = [];
  deliver: (ifindex: number, srcMac: Uint8Array, datagram: Uint8Array) => void = () => {};
  start(cb: (ifindex: number, srcMac: Uint8Array, datagram: Uint8Array) => void): void {
    this.deliver = cb;
  }
  send(ifindex: number, dstMac: Uint8Array, datagram: Uint8Array): boolean {
    const ip = parseIpv6Icmp(datagram);
    if (typeof ip === 'string') throw new Error(ip);
    expect(ip.hopLimit).toBe(255);
    const ra = decodeRouterAdvertisement(ip.icmp);
    if (typeof ra === 'string') throw new Error(ra);
    this.sent.push({ ifindex, dstMac: Buffer.from(dstMac).toString('hex'), dst: Buffer.from(ip.dst).toString('hex'), lifetime: ra.routerLifetime, prefixes: ra.prefixes.length });
    return true;
  }
  close(): void {}
}

function link(ifindex = 7): RaLink {
  return {
    ifindex,
    ifname: 've-test',
    mac: HOST_MAC,
    linkLocal: linkLocalAddress(HOST_MAC),
    mtu: 1500,
    prefixes: [parseIpv6Prefix('2001:db8:1:2::/64')],
    dnsServers: [addressBytes('2001:db8:1:2::1')],
    searchDomains: [],
  };
}

function rs(opts: { hopLimit?: number; src?: string } = {}): Uint8Array {
  const src = addressBytes(opts.src ?? 'fe80::aa:bbff:fecc:ddee');
  const unspecified = src.every((b) => b === 0);
  const icmp = hex(unspecified ? '8500000000000000' : '8500000000000000 0101 02aabbccddee');
  return buildIpv6Icmp(src, addressBytes('ff02::2'), opts.hopLimit ?? 255, icmp);
}

describe('AdvertisementSchedule', () => {
  test('the first three unsolicited advertisements at most 16 s apart, then 200–600 s', () => {
    const s = new AdvertisementSchedule(0, RA_TIMING, () => 0.99);
    expect(s.sentMulticast(0)).toBe(16_000);
    expect(s.sentMulticast(16_000)).toBe(16_000);
    expect(s.sentMulticast(32_000)).toBe(596_000);
    const low = new AdvertisementSchedule(0, RA_TIMING, () => 0);
    for (let i = 0; i < 3; i++) low.sentMulticast(0);
    expect(low.sentMulticast(0)).toBe(200_000);
  });

  test('solicitations from an address are answered at once, up to a rate', () => {
    const s = new AdvertisementSchedule(0);
    for (let i = 0; i < RA_TIMING.unicastBurst; i++) expect(s.solicited(0, false).kind).toBe('unicast');
    expect(s.solicited(0, false).kind).toBe('none');
    expect(s.solicited(1000, false).kind).toBe('unicast');
  });

  test('from the unspecified address: multicast, at least 3 s after the last one', () => {
    const s = new AdvertisementSchedule(0);
    s.sentMulticast(10_000);
    expect(s.solicited(11_000, true)).toEqual({ kind: 'multicast', atMs: 13_000 });
    expect(s.solicited(20_000, true)).toEqual({ kind: 'multicast', atMs: 20_000 });
  });
});

describe('RouterAdvertiser', () => {
  let t: FakeTransport;
  let ra: RouterAdvertiser;
  beforeEach(() => {
    vi.useFakeTimers();
    t = new FakeTransport();
    ra = new RouterAdvertiser({ log: logger('test'), transport: t, now: () => Date.now(), random: () => 0 });
  });
  afterEach(() => {
    ra.close();
    vi.useRealTimers();
  });

  test('advertises at once to all nodes, then on schedule', () => {
    ra.serve(link());
    expect(t.sent).toEqual([{ ifindex: 7, dstMac: '333300000001', dst: 'ff020000000000000000000000000001', lifetime: 1800, prefixes: 1 }]);
    vi.advanceTimersByTime(16_000);
    expect(t.sent).toHaveLength(2);
  });

  test('answers a solicitation by unicast to its source at once', () => {
    ra.serve(link());
    t.deliver(7, CONTAINER_MAC, rs());
    expect(t.sent[1]).toEqual({ ifindex: 7, dstMac: '02aabbccddee', dst: 'fe8000000000000000aabbfffeccddee', lifetime: 1800, prefixes: 1 });
    expect(ra.counters.solicitations).toBe(1);
  });

  test('ignores solicitations with hop limit below 255, bad checksums, and links it does not serve', () => {
    ra.serve(link());
    t.deliver(7, CONTAINER_MAC, rs({ hopLimit: 64 }));
    const bad = rs();
    bad[bad.length - 1] = (bad.at(-1) as number) ^ 1;
    t.deliver(7, CONTAINER_MAC, bad);
    t.deliver(8, CONTAINER_MAC, rs());
    expect(t.sent).toHaveLength(1);
    expect(ra.counters.dropped).toBe(2);
  });

  test('a flood of solicitations draws a bounded number of answers', () => {
    ra.serve(link());
    for (let i = 0; i < 1000; i++) t.deliver(7, CONTAINER_MAC, rs());
    expect(t.sent.length - 1).toBe(RA_TIMING.unicastBurst);
  });

  test('a solicitation from :: is answered by one multicast after the 3 s spacing', () => {
    ra.serve(link());
    t.deliver(7, CONTAINER_MAC, rs({ src: '::' }));
    t.deliver(7, CONTAINER_MAC, rs({ src: '::' }));
    expect(t.sent).toHaveLength(1);
    vi.advanceTimersByTime(3_000);
    expect(t.sent).toHaveLength(2);
    expect(t.sent[1]?.dstMac).toBe('333300000001');
  });

  test('stopping sends a final advertisement with router lifetime 0; a gone link gets none', () => {
    ra.serve(link(7));
    ra.serve(link(9));
    ra.stop(7);
    expect(t.sent.at(-1)).toMatchObject({ ifindex: 7, lifetime: 0 });
    ra.stop(9, { linkGone: true });
    expect(t.sent).toHaveLength(3);
    vi.advanceTimersByTime(1_000_000);
    expect(t.sent).toHaveLength(3);
    expect(ra.serves(7)).toBe(false);
  });
});
