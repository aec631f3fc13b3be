// Addresses and routes through the rtnetlink client, checked with `ip -j addr` and `ip -j route`.
import { describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import type { TestNetns } from '../helpers/netns.js';
import { NetlinkError, Rtnl } from '../../src/net/rtnl.js';
import { RT_SCOPE_LINK, RTPROT_BOOT } from '../../src/net/netlink/constants.js';

interface IpAddr {
  ifname: string;
  addr_info: Array<{ family: string; local: string; prefixlen: number; broadcast?: string; label?: string; valid_life_time?: number; preferred_life_time?: number }>;
}
interface IpRoute {
  dst: string;
  gateway?: string;
  dev: string;
  metric?: number;
  protocol?: string;
  scope?: string;
}

async function addrs(ns: TestNetns, dev: string): Promise<IpAddr['addr_info']> {
  const out = await ns.ipJson<IpAddr[]>(['addr', 'show', 'dev', dev]);
  return out[0]?.addr_info.filter((a) => !a.local.startsWith('fe80')) ?? [];
}

/** A client with an up veth "ve-a" (peer "ve-b", up too) in the test namespace. */
async function setup(netns: TestNetns): Promise<Rtnl> {
  const r = Rtnl.open({ netnsFd: netns.fd });
  await r.createVeth({ name: 've-a', up: true, peer: { name: 've-b' } });
  await r.setUp('ve-b');
  return r;
}

describe('addresses', () => {
  ktest('IPv4 with broadcast and IPv6 without DAD, as ip sees them; listAddresses agrees', async ({ netns }) => {
    const r = await setup(netns);
    try {
      await r.addAddress('ve-a', '192.0.2.1/24', { broadcast: true });
      await r.addAddress('ve-a', '2001:db8::1/64', { nodad: true });
      expect(await addrs(netns, 've-a')).toEqual([
        expect.objectContaining({ family: 'inet', local: '192.0.2.1', prefixlen: 24, broadcast: '192.0.2.255', label: 've-a' }),
        expect.objectContaining({ family: 'inet6', local: '2001:db8::1', prefixlen: 64 }),
      ]);
      const ours = await r.listAddresses({ link: 've-a' });
      expect(ours.filter((a) => !a.address.startsWith('fe80')).map((a) => [a.family, a.cidr, a.broadcast])).toEqual([
        [4, '192.0.2.1/24', '192.0.2.255'],
        [6, '2001:db8::1/64', undefined],
      ]);
      expect((await r.listAddresses({ family: 4 })).map((a) => a.cidr)).toEqual(['127.0.0.1/8', '192.0.2.1/24']);
    } finally {
      r.close();
    }
  });

  ktest('create fails on a duplicate, ensure accepts it, delete treats "gone" as success', async ({ netns }) => {
    const r = await setup(netns);
    try {
      await r.addAddress('ve-a', '198.51.100.7/24');
      const dup = await r.addAddress('ve-a', '198.51.100.7/24').catch((e: unknown) => e);
      expect(dup).toBeInstanceOf(NetlinkError);
      // the kernel's extended ACK says why
      expect((dup as NetlinkError).message).toBe('RTNETLINK: cannot add address 198.51.100.7/24 to link "ve-a": File exists (EEXIST): ipv4: Address already assigned');
      expect((dup as NetlinkError).extack?.msg).toBe('ipv4: Address already assigned');
      const a = await r.ensureAddress('ve-a', '198.51.100.7/24');
      expect(a).toMatchObject({ address: '198.51.100.7', prefixlen: 24, family: 4 });
      expect(await r.deleteAddress('ve-a', '198.51.100.7/24')).toBe(true);
      expect(await addrs(netns, 've-a')).toEqual([]);
      expect(await r.deleteAddress('ve-a', '198.51.100.7/24')).toBe(false);
      expect(await r.deleteAddress('no-such-link', '198.51.100.7/24')).toBe(false);
    } finally {
      r.close();
    }
  });

  ktest('lifetimes and labels reach the kernel', async ({ netns }) => {
    const r = await setup(netns);
    try {
      await r.addAddress('ve-a', '203.0.113.9/28', { validLft: 3600, preferredLft: 1800, label: 've-a:dhcp' });
      const [ip] = await addrs(netns, 've-a');
      expect(ip).toMatchObject({ local: '203.0.113.9', label: 've-a:dhcp' });
      expect(ip?.valid_life_time).toBeGreaterThan(3500);
      expect(ip?.preferred_life_time).toBeLessThanOrEqual(1800);
    } finally {
      r.close();
    }
  });
});

describe('routes', () => {
  ktest('default route, a prefix via a gateway with a metric, an IPv6 default; ip and listRoutes agree', async ({ netns }) => {
    const r = await setup(netns);
    try {
      await r.addAddress('ve-a', '192.0.2.1/24');
      await r.addAddress('ve-a', '2001:db8::1/64', { nodad: true });
      await r.addRoute({ dst: 'default', gateway: '192.0.2.254' });
      await r.addRoute({ dst: '198.51.100.0/24', gateway: '192.0.2.253', dev: 've-a', metric: 100 });
      await r.addRoute({ dst: '203.0.113.0/24', dev: 've-b' });
      await r.addRoute({ dst: 'default', gateway: '2001:db8::fe', dev: 've-a' });

      const v4 = await netns.ipJson<IpRoute[]>(['route', 'show']);
      expect(v4).toEqual(expect.arrayContaining([
        expect.objectContaining({ dst: 'default', gateway: '192.0.2.254', dev: 've-a' }),
        expect.objectContaining({ dst: '198.51.100.0/24', gateway: '192.0.2.253', dev: 've-a', metric: 100 }),
        expect.objectContaining({ dst: '203.0.113.0/24', dev: 've-b', scope: 'link' }),
      ]));
      const v6 = await netns.ipJson<IpRoute[]>(['-6', 'route', 'show']);
      expect(v6).toEqual(expect.arrayContaining([expect.objectContaining({ dst: 'default', gateway: '2001:db8::fe', dev: 've-a' })]));

      const a = await r.getLink('ve-a');
      const ours = await r.listRoutes({ family: 4 });
      expect(ours.map((x) => [x.dst, x.gateway, x.oif === a?.index ? 've-a' : 'other', x.metric])).toEqual(expect.arrayContaining([
        ['default', '192.0.2.254', 've-a', undefined],
        ['198.51.100.0/24', '192.0.2.253', 've-a', 100],
      ]));
      const direct = ours.find((x) => x.dst === '203.0.113.0/24');
      expect(direct).toMatchObject({ scope: RT_SCOPE_LINK, protocol: RTPROT_BOOT });
      expect((await r.listRoutes({ family: 6 })).some((x) => x.dst === 'default' && x.gateway === '2001:db8::fe')).toBe(true);
    } finally {
      r.close();
    }
  });

  ktest('duplicates fail with EEXIST, replace works, delete treats "gone" as success', async ({ netns }) => {
    const r = await setup(netns);
    try {
      await r.addAddress('ve-a', '192.0.2.1/24');
      await r.addRoute({ dst: 'default', gateway: '192.0.2.254' });
      const dup = await r.addRoute({ dst: 'default', gateway: '192.0.2.254' }).catch((e: unknown) => e);
      expect(dup).toMatchObject({ code: 'EEXIST' });
      expect((dup as Error).message).toBe('RTNETLINK: cannot add route default via 192.0.2.254: File exists (EEXIST)');
      await r.replaceRoute({ dst: 'default', gateway: '192.0.2.253' });
      expect((await netns.ipJson<IpRoute[]>(['route', 'show', 'default'])).map((x) => x.gateway)).toEqual(['192.0.2.253']);
      expect(await r.deleteRoute({ dst: 'default' })).toBe(true);
      expect(await netns.ipJson<IpRoute[]>(['route', 'show', 'default'])).toEqual([]);
      expect(await r.deleteRoute({ dst: 'default' })).toBe(false);
      expect(await r.deleteRoute({ dst: '198.51.100.0/24', dev: 'no-such-link' })).toBe(false);
    } finally {
      r.close();
    }
  });

  ktest('an unreachable gateway is the kernel\'s ENETUNREACH, said plainly', async ({ netns }) => {
    const r = await setup(netns);
    try {
      const err = await r.addRoute({ dst: 'default', gateway: '203.0.113.1' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(NetlinkError);
      expect(err).toMatchObject({ code: 'ENETUNREACH', errno: 101 });
      expect((err as Error).message).toMatch(/^RTNETLINK: cannot add route default via 203\.0\.113\.1: Network is unreachable \(ENETUNREACH\)/);
    } finally {
      r.close();
    }
  });
});
