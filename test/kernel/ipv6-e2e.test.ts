// IPv6 end to end (issue 14): busybox containers get a /64 of the host's ULA prefix on their link,
// an address configured at start or formed by their own kernel's SLAAC from our router
// advertisements, a default route via the host's link-local address, NAT66 to an "internet"
// namespace at 2001:db8:ffff::1 (which sees the host's uplink address), and -p forwarded on the
// host's IPv6 addresses. After each container exits nothing of its IPv6 is left.
// (e2e-world.ts draws the world.)
import { describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { run, runOk } from '../helpers/exec.js';
import { busyboxRoot, copyRoot } from '../helpers/rootfs.js';
import {
  FETCH6, HOST_UPLINK6, SHOW6, WAIT_SLAAC, World, exitOf, masq6, nspawnTs, parse6, startSidecar, ulaAddresses, untilReady, stopByLine, zoneNamesSecondLower,
} from './e2e-world.js';
import { FWD_NAME, hostResolvConf, Upstream, UPSTREAM } from './dns-world.js';

describe('IPv6 for containers', () => {
  for (const mode of ['embedded', 'sidecar'] as const) {
    ktest(`${mode}: configured at start and by SLAAC from our RA; NAT66 to the uplink; nothing left`, async () => {
      const world = await World.create();
      const root = await copyRoot(await busyboxRoot());
      const sidecar = mode === 'sidecar' ? await startSidecar() : undefined;
      const machine = `v6-${mode.slice(0, 3)}-${process.pid}`;
      try {
        // configured at start (the default without -b): the address and route are there before the command
        const a = nspawnTs(['-n', '-M', machine, '-D', root.dir, 'sh', '-c', `${SHOW6}; ${FETCH6}`]);
        expect(await exitOf(a), a.output()).toBe(0);
        const atStart = parse6(a.output());
        expect(atStart.addr, a.output()).toMatch(/^fd[0-9a-f]{2}:[0-9a-f:]+\/64$/);
        expect(atStart.route).toMatch(/^default via fe80::[0-9a-f:]+ dev host0/);
        expect(atStart.remote, a.output()).toBe(HOST_UPLINK6);
        expect(await masq6()).toEqual([]);
        expect(await ulaAddresses()).toEqual([]);

        // SLAAC: nothing configured at start; the container's kernel takes our advertisement
        const b = nspawnTs(['-n', '--network-config=dhcp', '-M', machine, '-D', root.dir, 'sh', '-c', `${SHOW6}; ${WAIT_SLAAC}; ${SHOW6}; ${FETCH6}`]);
        expect(await exitOf(b), b.output()).toBe(0);
        const out = b.output();
        const slaac = parse6(out.slice(out.lastIndexOf('addr6=')));
        // formed by the container's kernel (a lifetime from the advertisement), not configured by us
        expect(out.slice(out.lastIndexOf('flags6='))).toMatch(/^flags6=.*dynamic/m);
        // the same address either way: EUI-64 of host0's MAC in the machine's stable /64
        expect(slaac.addr, out).toBe(atStart.addr);
        // learned from the advertisement: it expires (busybox ip prints no "proto ra")
        expect(slaac.route).toMatch(/^default via fe80::[0-9a-f:]+ dev host0 .*expires/);
        expect(slaac.remote, out).toBe(HOST_UPLINK6);
        expect(await masq6()).toEqual([]);
        expect(await ulaAddresses()).toEqual([]);
      } finally {
        await sidecar?.stop();
        root.remove();
        await world.destroy();
      }
    }, 120_000);
  }

  ktest('$NSPAWN_TS_IPV6: an administrator\'s global prefix is routed, not masqueraded; "no" turns IPv6 off', async () => {
    const world = await World.create();
    const root = await copyRoot(await busyboxRoot());
    const machine = `v6-env-${process.pid}`;
    try {
      // the uplink routes the global prefix back through the host, as a provider would
      await world.uplink.exec('ip', ['-6', 'route', 'add', '2001:db8:42::/48', 'via', HOST_UPLINK6]);
      const g = nspawnTs(['-n', '-M', machine, '-D', root.dir, 'sh', '-c', `${SHOW6}; ${FETCH6}`], { NSPAWN_TS_IPV6: '2001:db8:42::/48' });
      expect(await exitOf(g), g.output()).toBe(0);
      const seen = parse6(g.output());
      expect(seen.addr).toMatch(/^2001:db8:42:[0-9a-f]{1,4}:[0-9a-f:]+\/64$/);
      // not NATed: the remote sees the container's own address
      expect(seen.remote).toBe(seen.addr?.split('/')[0]);
      expect(await masq6()).toEqual([]);

      const off = nspawnTs(['-n', '-M', machine, '-D', root.dir, 'sh', '-c', SHOW6], { NSPAWN_TS_IPV6: 'no' });
      expect(await exitOf(off), off.output()).toBe(0);
      expect(parse6(off.output())).toMatchObject({ addr: undefined, route: undefined });

      const bad = nspawnTs(['-n', '-M', machine, '-D', root.dir, 'true'], { NSPAWN_TS_IPV6: '2001:db8::1/48' });
      expect(await exitOf(bad)).toBe(1);
      expect(bad.output()).toMatch(/\$NSPAWN_TS_IPV6: .*bits set past \/48/);
    } finally {
      root.remove();
      await world.destroy();
    }
  }, 120_000);

  ktest('-p tcp:8080:80 answers on the host\'s IPv6 address, from outside and from the container itself', async () => {
    const world = await World.create();
    const root = await copyRoot(await busyboxRoot());
    const machine = `v6-port-${process.pid}`;
    try {
      const serve = 'nc -ll -p 80 -e echo pong &';
      const c = nspawnTs(['-n', '-p', 'tcp:8080:80', '-M', machine, '-D', root.dir, 'sh', '-c',
        `${serve} sleep 0.3; echo "self=$(nc -w 3 ${HOST_UPLINK6} 8080 </dev/null)"; echo ready; read x`]);
      await untilReady(c, 'the container');
      const outside = await world.uplink.exec('sh', ['-c', `busybox nc -w 3 ${HOST_UPLINK6} 8080 </dev/null`]).catch((e: unknown) => String(e));
      expect(outside.trim()).toBe('pong');
      expect(c.output()).toContain('self=pong');
      expect(await stopByLine(c)).toBe(0);
      const left = await run('nft', ['list', 'map', 'inet', 'nspawn-ts', 'ports6']);
      expect(left.stdout).not.toContain('8080');
    } finally {
      root.remove();
      await world.destroy();
    }
  }, 120_000);

  ktest('a container resolves another container\'s name to its IPv6 address over IPv6 through our DNS server, and forwards AAAA', async () => {
    const world = await World.create();
    const upstream = await Upstream.start(world);
    const resolv = await hostResolvConf([UPSTREAM]);
    const root = await copyRoot(await busyboxRoot());
    const zone = `d6${process.pid % 10000}`;
    const [ma, mb] = [`d6a${process.pid}`, `d6b${process.pid}`];
    const ownDns = { NSPAWN_NETD_DNS: '' };
    try {
      const a = nspawnTs(['--network-zone', zone, '-M', ma, '-D', root.dir, 'sh', '-c', `${SHOW6}; echo ready; read x`], ownDns);
      await untilReady(a, ma);
      const addrA = parse6(a.output()).addr?.split('/')[0];
      expect(addrA, a.output()).toMatch(/^fd/);
      // b asks the IPv6 server its resolv.conf names (the zone's ::1, from the lease, as RDNSS carries it)
      const server6 = "$(sed -n 's/^nameserver \\(.*:.*\\)$/\\1/p' /etc/resolv.conf | head -1)";
      const b = nspawnTs(['--network-zone', zone, '-M', mb, '-D', root.dir, 'sh', '-c',
        `cat /etc/resolv.conf; S=${server6}; nslookup -type=aaaa ${ma} $S; nslookup -type=aaaa ${FWD_NAME} $S; ping -6 -c1 -W3 ${ma}.machine >/dev/null && echo ping6-ok`], ownDns);
      expect(await exitOf(b), b.output()).toBe(0);
      const out = b.output();
      const ns = /^nameserver (fd[0-9a-f:]+::1)$/m.exec(out)?.[1];
      expect(ns, out).toBeDefined();
      expect(out).toMatch(/^nameserver \d+\.\d+\.\d+\.\d+$/m);
      expect(out).toMatch(new RegExp(`Server:\\s+${ns}\\b`));
      expect(out).toMatch(new RegExp(`Name:\\s+${ma}\\s+Address:\\s+${addrA}\\b`));
      expect(out).toMatch(new RegExp(`Name:\\s+${FWD_NAME}\\s+Address:\\s+2001:db8::7\\b`));
      expect(out).toContain('ping6-ok');
      expect(await stopByLine(a)).toBe(0);
      // nothing left: no DNS socket, no ULA address, no masquerade
      expect((await runOk('ss', ['-Hlnut', 'sport = :53'])).trim()).toBe('');
      expect(await ulaAddresses()).toEqual([]);
      expect(await masq6()).toEqual([]);
    } finally {
      root.remove();
      await resolv.undo();
      await upstream.stop();
      await world.destroy();
    }
  }, 120_000);

  ktest('two containers on a zone reach each other over IPv6; the second, by SLAAC, reaches the uplink through the zone bridge', async () => {
    const world = await World.create();
    const root = await copyRoot(await busyboxRoot());
    const zone = `z6${process.pid % 10000}`;
    try {
      // b joins with the lower MAC: the bridge's own MAC would change under the advertisements
      const [nameA, nameB] = zoneNamesSecondLower(`v6z${process.pid}`);
      const a = nspawnTs(['--network-zone', zone, '-M', nameA, '-D', root.dir, 'sh', '-c', `${SHOW6}; echo ready; read x`]);
      await untilReady(a, 'container a');
      const addrA = parse6(a.output()).addr?.split('/')[0];
      expect(addrA).toMatch(/^fd/);
      // b's gateway (and its MAC, the advertisement's source link-layer address) come from our RA
      // on the bridge, after both containers joined it
      const b = nspawnTs(['--network-zone', zone, '--network-config=dhcp', '-M', nameB, '-D', root.dir, 'sh', '-c',
        `${WAIT_SLAAC}; ping -6 -c 1 -W 3 ${addrA} >/dev/null && echo reached; ${FETCH6}`]);
      expect(await exitOf(b), b.output()).toBe(0);
      expect(b.output()).toContain('reached');
      expect(parse6(b.output()).remote, b.output()).toBe(HOST_UPLINK6);
      expect(await stopByLine(a)).toBe(0);
      expect(await masq6()).toEqual([]);
    } finally {
      root.remove();
      await world.destroy();
    }
  }, 120_000);
});
