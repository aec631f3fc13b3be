// End to end: containers from a busybox root reach a remote server through the host's masquerade,
// with addresses from our DHCP server — started by bin/nspawn-ts with the subsystem embedded and
// with the sidecar, in zones, and by the real systemd-nspawn with our sidecar. After every container
// exits nothing of it is left: no subnet, address, DHCP interface, active lease or firewall entry.
// (e2e-world.ts draws the world.)
import { lstatSync, readFileSync, writeFileSync } from 'node:fs';
import { describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { waitFor } from '../helpers/exec.js';
import { busyboxRoot, copyRoot } from '../helpers/rootfs.js';
import { makeCgroups, removeCgroups } from '../helpers/systemd-nspawn.js';
import {
  FETCH, HOST_UPLINK, World, assertNothingLeftFor, exitOf, masqueraded, nspawnTs, startSidecar, systemdNspawn, TEST_DNS,
} from './e2e-world.js';
import type { ServedLinkInfo, DhcpLeaseInfo } from '../../src/net/netd/subsystem.js';

const UDHCPC = 'udhcpc -i host0 -f -q -n -t 5 -T 1 >/tmp/udhcpc.log 2>&1 || { echo udhcpc-failed; cat /tmp/udhcpc.log; }';
const SHOW = 'echo "addr=$(ip -4 -o addr show host0 | awk \'{print $4}\')"; echo "route=$(ip -4 route show default)"; echo "dns=$(grep nameserver /etc/resolv.conf)"';

interface Seen { addr: string | undefined; route: string | undefined; dns: string | undefined; remote: string | undefined }

function parse(out: string): Seen {
  const get = (k: string): string | undefined => new RegExp(`^${k}=(.*)$`, 'm').exec(out)?.[1]?.trim() || undefined;
  return { addr: get('addr'), route: get('route'), dns: get('dns'), remote: /remote-ok (\S+)/.exec(out)?.[1] };
}

function subnetOf(cidr: string): string {
  const [a, len] = cidr.split('/') as [string, string];
  const n = a.split('.').map(Number).reduce((x, o) => (x << 8) + o, 0) >>> 0;
  const mask = len === '0' ? 0 : (0xffffffff << (32 - Number(len))) >>> 0;
  const net = (n & mask) >>> 0;
  return `${[24, 16, 8, 0].map((s) => (net >>> s) & 255).join('.')}/${len}`;
}

describe('nspawn-ts -n', () => {
  for (const mode of ['embedded', 'sidecar'] as const) {
    ktest(`${mode}: udhcpc leases host0; default route; the remote sees the host's address; the static start gives the same address; nothing left`, async () => {
      const world = await World.create();
      const root = await copyRoot(await busyboxRoot());
      const sidecar = mode === 'sidecar' ? await startSidecar() : undefined;
      const machine = `e2e-${mode.slice(0, 3)}-${process.pid}`;
      try {
        // DHCP only: udhcpc configures host0
        const a = nspawnTs(['-n', '--network-config=dhcp', '-M', machine, '-D', root.dir, 'sh', '-c', `${SHOW}; ${UDHCPC}; ${SHOW}; ${FETCH}`]);
        expect(await exitOf(a)).toBe(0);
        const out = a.output();
        expect(out).not.toMatch(/udhcpc-failed/);
        const before = parse(out.slice(0, out.indexOf('route=') + 1 + out.slice(out.indexOf('route=')).indexOf('\n')));
        expect(before.addr).toBeUndefined(); // nothing configured before the client ran
        const seen = parse(out.slice(out.lastIndexOf('addr=')));
        expect(seen.addr).toMatch(/^\d+\.\d+\.\d+\.\d+\/28$/);
        const subnet = subnetOf(seen.addr as string);
        const gateway = `${subnet.split('/')[0]?.split('.').slice(0, 3).join('.')}.${Number(subnet.split('/')[0]?.split('.')[3]) + 1}`;
        expect(seen.route).toBe(`default via ${gateway} dev host0`);
        expect(seen.dns).toBe(`nameserver ${TEST_DNS}`);
        expect(seen.remote).toBe(HOST_UPLINK);
        expect(await assertNothingLeftFor(machine, subnet)).toEqual([]);

        // static (the default without -b): configured before the command; a later udhcpc gets the same lease.
        // The lease's resolv.conf is bound over the image's (--resolv-conf=auto): the image keeps its
        // own byte for byte, also when udhcpc's script rewrites /etc/resolv.conf inside
        const image = `${root.dir}/etc/resolv.conf`;
        writeFileSync(image, '# the image\'s own\nnameserver 203.0.113.99\n');
        const imageStat = lstatSync(image);
        const b = nspawnTs(['-n', '-M', machine, '-D', root.dir, 'sh', '-c', `${SHOW}; ${FETCH}; ${UDHCPC}; ${SHOW}`]);
        expect(await exitOf(b)).toBe(0);
        expect(readFileSync(image, 'utf8')).toBe('# the image\'s own\nnameserver 203.0.113.99\n');
        expect(lstatSync(image)).toMatchObject({ ino: imageStat.ino, mtimeMs: imageStat.mtimeMs, uid: imageStat.uid, mode: imageStat.mode });
        const outB = b.output();
        const first = parse(outB.slice(0, outB.indexOf('remote-ok')));
        expect(first).toMatchObject({ addr: seen.addr, route: seen.route, dns: `nameserver ${TEST_DNS}` });
        expect(parse(outB).remote).toBe(HOST_UPLINK);
        expect(outB).not.toMatch(/udhcpc-failed/);
        expect(parse(outB.slice(outB.lastIndexOf('addr='))).addr).toBe(seen.addr);
        expect(await assertNothingLeftFor(machine, subnet)).toEqual([]);

        if (sidecar) {
          const c = await sidecar.client();
          expect(await c.request<ServedLinkInfo[]>({ op: 'list' })).toEqual([]);
          expect((await c.request<DhcpLeaseInfo[]>({ op: 'leases' })).filter((l) => l.state === 'bound')).toEqual([]);
          c.close();
        }
        expect(await masqueraded()).toEqual([]);
      } finally {
        await sidecar?.stop();
        root.remove();
        await world.destroy();
      }
    });
  }
});

describe('zones', () => {
  ktest('two containers in --network-zone=web get addresses in one /24 and reach each other (sidecar)', async () => {
    const world = await World.create();
    const root = await copyRoot(await busyboxRoot());
    const sidecar = await startSidecar();
    const [m1, m2] = [`zone-a-${process.pid}`, `zone-b-${process.pid}`];
    try {
      // the first listens until the second has said hello
      const a = nspawnTs(['--network-zone=web', '-M', m1, '-D', root.dir, 'sh', '-c', `${UDHCPC}; ${SHOW}; echo listening; nc -l -p 7777; echo got-it`]);
      await waitFor(() => a.output().includes('listening'), 'the first container listening', 20_000);
      const seenA = parse(a.output());
      expect(seenA.addr).toMatch(/\/24$/);
      const b = nspawnTs(['--network-zone=web', '-M', m2, '-D', root.dir, 'sh', '-c', `${UDHCPC}; ${SHOW}; echo hello-from-b | nc -w 3 ${seenA.addr?.split('/')[0]} 7777; ${FETCH}`]);
      expect(await exitOf(b)).toBe(0);
      expect(await exitOf(a)).toBe(0);
      const seenB = parse(b.output());
      expect(a.output()).toMatch(/hello-from-b/);
      expect(subnetOf(seenB.addr as string)).toBe(subnetOf(seenA.addr as string));
      expect(seenB.addr).not.toBe(seenA.addr);
      expect(seenB.remote).toBe(HOST_UPLINK);
      const subnet = subnetOf(seenA.addr as string);
      // the zone bridge went with its last container, and everything of the zone with it
      await waitFor(async () => (await assertNothingLeftFor('web', subnet)).length === 0, 'the zone released', 10_000);
      for (const m of [m1, m2]) expect(await assertNothingLeftFor(m, subnet)).toEqual([]);
    } finally {
      await sidecar.stop();
      root.remove();
      await world.destroy();
    }
  });
});

describe('systemd-nspawn with our sidecar', () => {
  for (const net of ['--network-veth', '--network-zone=snz'] as const) {
    ktest(`systemd-nspawn ${net}: udhcpc gets a lease and the remote is reached; nothing left after`, async () => {
      const world = await World.create();
      const root = await copyRoot(await busyboxRoot());
      const sidecar = await startSidecar();
      const name = `sdn-${process.pid}`;
      const cgroups = makeCgroups(`nspawn-ts-e2e-${process.pid}`);
      try {
        const p = systemdNspawn(cgroups, ['-P', '-D', root.dir, '-M', name, net, '/bin/sh', '-c', `${UDHCPC}; ${SHOW}; ${FETCH}`]);
        expect(await exitOf(p)).toBe(0);
        const seen = parse(p.output());
        expect(p.output()).not.toMatch(/udhcpc-failed/);
        expect(seen.addr).toMatch(net === '--network-veth' ? /\/28$/ : /\/24$/);
        expect(seen.route).toMatch(/^default via \S+ dev host0$/);
        expect(seen.remote).toBe(HOST_UPLINK);
        const subnet = subnetOf(seen.addr as string);
        await waitFor(async () => (await assertNothingLeftFor(net === '--network-veth' ? name : 'snz', subnet)).length === 0, 'everything of it gone', 10_000);
        const c = await sidecar.client();
        expect(await c.request({ op: 'list' })).toEqual([]);
        expect((await c.request<DhcpLeaseInfo[]>({ op: 'leases' })).filter((l) => l.state === 'bound')).toEqual([]);
        c.close();
      } finally {
        await sidecar.stop();
        await removeCgroups(cgroups);
        root.remove();
        await world.destroy();
      }
    });
  }
});
