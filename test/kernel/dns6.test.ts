// DNS over IPv6 on a served link (issue 14), against the real kernel and real clients: the network
// subsystem on a ve- link whose host0 is in a container namespace, an administrator's documentation
// prefix (2001:db8:77::/48) so nothing depends on this host's machine ID.
//   - our DNS server on: rdisc6 (ndisc6, a real RA client) reads RDNSS = the link's ::1 and DNSSL =
//     "machine" from our advertisement; c-ares in the container namespace asks that address for the
//     machine's AAAA (its SLAAC address, as configured at start) and A; a source outside the /64
//     is not answered; after close no socket on port 53 and no address of the prefix is left
//   - our DNS server off (fixed servers): RDNSS carries the configured IPv6 servers, DHCP the IPv4 ones
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import dnsPacket from 'dns-packet';
import { Address6 } from 'ip-address';
import { describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { run, runOk } from '../helpers/exec.js';
import type { TestNetns } from '../helpers/netns.js';
import { NetworkSubsystem, type SubsystemOptions } from '../../src/net/netd/subsystem.js';
import { dnsServerClass } from '../../src/net/netd/dns-class.js';
import { configureContainerLink } from '../../src/net/container-link.js';
import { resolveIn } from './dns-world.js';

const PREFIX = '2001:db8:77::/48';
const MAC = '02:11:22:33:44:66';

/** What rdisc6 read from one solicited advertisement on host0 in `ns`. */
async function rdisc6(ns: TestNetns): Promise<{ rdnss: string[]; dnssl: string[]; out: string }> {
  const out = await ns.exec('rdisc6', ['-1', '-r', '3', '-w', '1500', 'host0'], { timeoutMs: 15_000 });
  const rdnss = [...out.matchAll(/Recursive DNS server\s*:\s*(\S+)/g)].map((m) => m[1] as string);
  const dnssl = [...out.matchAll(/DNS search list\s*:\s*(.+)$/gm)].flatMap((m) => (m[1] as string).trim().split(/\s+/));
  return { rdnss, dnssl, out };
}

/** UDP and TCP sockets on port 53 in this (the host's) namespace. */
async function port53(): Promise<string> {
  return (await runOk('ss', ['-Hlnut', 'sport = :53'])).trim();
}

async function prefixAddresses(): Promise<string> {
  return (await runOk('ip', ['-6', '-o', 'addr', 'show', 'to', PREFIX])).trim();
}

async function served(netns: TestNetns, opts: Partial<SubsystemOptions>, body: (sub: NetworkSubsystem) => Promise<void>): Promise<void> {
  mkdirSync('/var/lib/nspawn-ts', { recursive: true });
  const dir = mkdtempSync('/var/lib/nspawn-ts/dns6-test-');
  await runOk('ip', ['link', 'add', 've-dns6', 'type', 'veth', 'peer', 'name', 'host0', 'netns', netns.name]);
  await netns.exec('ip', ['link', 'set', 'host0', 'address', MAC]);
  const subOpts: SubsystemOptions = { mode: 'embedded', stateDir: dir, machineId: null, ipv6: { enabled: true, prefix: PREFIX }, ...opts };
  const sub = await NetworkSubsystem.open(subOpts, await dnsServerClass(subOpts));
  try {
    await body(sub);
  } finally {
    await sub.close();
    await run('ip', ['link', 'del', 've-dns6']);
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('DNS over IPv6', () => {
  ktest('our server: RDNSS and DNSSL point at the link\'s ::1, which answers AAAA and A for the machine, only to its /64', async ({ netns }) => {
    await served(netns, { dnsServer: { forwarder: { servers: [] }, resolved: false } }, async (sub) => {
      const lease = await sub.reserve({ machine: 'dns6', mac: MAC, kind: 'veth' });
      const v6 = lease.ipv6;
      expect(v6?.address).toMatch(/^2001:db8:77:[0-9a-f]{1,4}:11:22ff:fe33:4466$/);
      const host6 = `${new Address6(v6?.address ?? '::').canonicalForm().split(':').slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':')}::1`;
      // the host side's ::1 of the same /64, and the lease says so (resolv.conf of a container configured at start)
      expect(host6).toMatch(/^2001:db8:77:[0-9a-f]{1,4}::1$/);
      expect(v6?.dns).toEqual([host6]);
      expect(lease.dns).toEqual([lease.gateway]);

      await configureContainerLink(netns.path, 'host0', lease);
      const ra = await rdisc6(netns);
      expect(ra.rdnss, ra.out).toEqual([host6]);
      expect(ra.dnssl, ra.out).toEqual(['machine']);

      expect(await resolveIn(netns.name, host6, 'dns6', 'AAAA')).toEqual({ ok: [v6?.address] });
      expect(await resolveIn(netns.name, host6, 'dns6.machine', 'A')).toEqual({ ok: [lease.address] });
      expect(await resolveIn(netns.name, host6, 'nobody.machine', 'AAAA')).toEqual({ err: 'ENOTFOUND' });
      // a source outside the link's /64 (another prefix on host0, routed back by the host) is not
      // answered; the same query from the machine's address is
      await netns.exec('ip', ['addr', 'add', '2001:db8:99::9/128', 'dev', 'host0', 'nodad']);
      await runOk('ip', ['-6', 'route', 'add', '2001:db8:99::9/128', 'dev', 've-dns6']);
      const q = dnsPacket.encode({ type: 'query', id: 7, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name: 'dns6', type: 'AAAA', class: 'IN' }] }).toString('hex');
      const from = (source: string): string => `const d = require('dgram').createSocket('udp6'); d.bind(0, '${source}', () => {
        d.on('message', () => { console.log('answered'); process.exit(0); });
        d.send(Buffer.from('${q}', 'hex'), 53, '${host6}');
        setTimeout(() => { console.log('silent'); process.exit(0); }, 1500); });`;
      expect((await netns.exec(process.execPath, ['-e', from('2001:db8:99::9')])).trim()).toBe('silent');
      expect((await netns.exec(process.execPath, ['-e', from(v6?.address ?? '')])).trim()).toBe('answered');
      expect(await port53()).toContain(`[${host6}]:53`);
    });
    expect(await port53()).toBe('');
    expect(await prefixAddresses()).toBe('');
  }, 60_000);

  ktest('our server off: RDNSS carries the configured IPv6 servers, DHCP the IPv4 ones; no DNSSL', async ({ netns }) => {
    await served(netns, { dns: ['192.0.2.53', '2001:db8::53'] }, async (sub) => {
      const lease = await sub.reserve({ machine: 'dns6', mac: MAC, kind: 'veth' });
      expect(lease.dns).toEqual(['192.0.2.53']);
      expect(lease.ipv6?.dns).toEqual(['2001:db8::53']);
      await configureContainerLink(netns.path, 'host0', lease);
      const ra = await rdisc6(netns);
      expect(ra.rdnss, ra.out).toEqual(['2001:db8::53']);
      expect(ra.dnssl, ra.out).toEqual([]);
      expect(await port53()).toBe('');
    });
    expect(await prefixAddresses()).toBe('');
  }, 60_000);
});
