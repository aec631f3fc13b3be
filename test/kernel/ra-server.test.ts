// The RA server against the kernel's own SLAAC: a client namespace (accept_ra=1, as a container's
// host0 is) across a veth forms its address from our prefix information with EUI-64, takes a default
// route via our link-local address, and drops that route when the final advertisement (router
// lifetime 0) comes.
import { describe, expect } from 'vitest';
import { waitFor } from '../helpers/exec.js';
import { ktest } from '../helpers/kernel.js';
import { TestNetns } from '../helpers/netns.js';
import { logger } from '../../src/log.js';
import { addressBytes, formatAddress, parseIpv6Prefix, slaacAddress } from '../../src/net/ipv6/prefix.js';
import { RouterAdvertiser } from '../../src/net/ipv6/ra-server.js';

interface IpAddr { ifname: string; address: string; addr_info: { family: string; local: string; prefixlen: number; scope: string; tentative?: boolean }[] }
interface IpRoute { dst: string; gateway?: string; dev: string; protocol?: string }

const mac = (s: string): Uint8Array => Uint8Array.from(s.split(':').map((x) => parseInt(x, 16)));

describe('router advertisements', () => {
  ktest('the kernel forms its SLAAC address and default route from ours, and drops the route at the final one', async ({ netns }) => {
    const client = await TestNetns.create('ra');
    let ra: RouterAdvertiser | undefined;
    try {
      await netns.exec('ip', ['link', 'add', 'ra0', 'address', '02:00:00:00:00:01', 'type', 'veth', 'peer', 'name', 'host0', 'address', '02:aa:bb:cc:dd:ee', 'netns', client.name]);
      await netns.exec('sysctl', ['-qw', 'net.ipv6.conf.ra0.accept_ra=0']);
      await netns.exec('ip', ['link', 'set', 'ra0', 'up']);
      await client.exec('ip', ['link', 'set', 'host0', 'up']);
      const [link] = await netns.ipJson<IpAddr[]>(['addr', 'show', 'dev', 'ra0']);
      const ll = await waitFor(async () => {
        const [l] = await netns.ipJson<IpAddr[]>(['addr', 'show', 'dev', 'ra0']);
        return l?.addr_info.find((a) => a.family === 'inet6' && a.scope === 'link')?.local;
      }, 'the link-local address of ra0');
      const [{ ifindex }] = (await netns.ipJson<{ ifindex: number }[]>(['link', 'show', 'ra0'])) as [{ ifindex: number }];
      const prefix = parseIpv6Prefix('2001:db8:1:2::/64');
      ra = new RouterAdvertiser({ log: logger('test'), netnsFd: netns.fd });
      ra.serve({ ifindex, ifname: 'ra0', mac: mac(link!.address), linkLocal: addressBytes(ll), mtu: 1500, prefixes: [prefix], dnsServers: [addressBytes('2001:db8:1:2::1')], searchDomains: ['machine'] });

      const want = formatAddress(slaacAddress(prefix, mac('02:aa:bb:cc:dd:ee')));
      expect(want).toBe('2001:db8:1:2:aa:bbff:fecc:ddee');
      await waitFor(async () => {
        const [l] = await client.ipJson<IpAddr[]>(['-6', 'addr', 'show', 'dev', 'host0']);
        return l?.addr_info.some((a) => a.local === want && a.prefixlen === 64 && a.scope === 'global');
      }, `SLAAC address ${want}`, 15_000);
      const route = await waitFor(async () => (await client.ipJson<IpRoute[]>(['-6', 'route', 'show', 'default'])).find((r) => r.dev === 'host0'), 'a default route', 15_000);
      expect(route).toMatchObject({ gateway: ll, protocol: 'ra' });
      expect(ra.counters.advertisements).toBeGreaterThanOrEqual(1);

      ra.stop(ifindex);
      await waitFor(async () => (await client.ipJson<IpRoute[]>(['-6', 'route', 'show', 'default'])).length === 0, 'the default route gone after the final advertisement', 5_000);
    } finally {
      ra?.close();
      await client.destroy();
    }
  }, 60_000);
});
