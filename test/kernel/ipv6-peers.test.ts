// IPv6 with real peers (issue 14): clients that are not the busybox kernel's own SLAAC take our
// router advertisements and reach the "internet" namespace at 2001:db8:ffff::1 through NAT66 —
//
//   - systemd-networkd in a Debian root booted with `nspawn-ts -b -n` (its stock
//     80-container-host0.network; the launcher configures nothing on host0 with -b);
//   - dhcpcd as an IPv6 client (SLAAC only) in a namespace attached to a link the sidecar serves;
//   - the real systemd-nspawn with our sidecar (--network-veth and --network-zone): its container's
//     kernel forms the address from our RA.
//
// After each container exits nothing of its IPv6 is left on the host (e2e-world.ts ipv6Leftovers).
import { execFile } from 'node:child_process';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { killAndWait, run, runOk, waitFor } from '../helpers/exec.js';
import { machineLeader } from '../helpers/nspawn.js';
import { busyboxRoot, copyRoot, debianRoot } from '../helpers/rootfs.js';
import { makeCgroups, removeCgroups } from '../helpers/systemd-nspawn.js';
import { NetdClient } from '../../src/net/netd/client.js';
import type { ServedLinkInfo } from '../../src/net/netd/subsystem-types.js';
import { formatAddress, parseIpv6Prefix, slaacAddress } from '../../src/net/ipv6/prefix.js';
import { vethHostIfname } from '../../src/net/naming.js';
import {
  FETCH6, HOST_UPLINK6, REMOTE6, SHOW6, WAIT_SLAAC, type Proc, World, exitOf, ipv6Leftovers, nspawnTs, parse6, startSidecar, stopByLine, systemdNspawn, untilReady,
  zoneNamesSecondLower,
} from './e2e-world.js';

const exec = promisify(execFile);

const mac = (s: string): Uint8Array => Uint8Array.from(s.split(':').map((x) => parseInt(x, 16)));
const forwarding6 = (): string => readFileSync('/proc/sys/net/ipv6/conf/all/forwarding', 'utf8').trim();

/** The EUI-64 address of `hwaddr` in the /64 of `hostCidr` (the host side's PREFIX::1/64). */
function eui64In(hostCidr: string, hwaddr: string): string {
  const [addr] = hostCidr.split('/') as [string];
  const prefix = parseIpv6Prefix(`${addr.replace(/::1$/, '::')}/64`);
  return formatAddress(slaacAddress(prefix, mac(hwaddr)));
}

/** The host side's IPv6 address of `scope` on `ifname` (iproute2's JSON has {} for the filtered). */
async function hostAddress6(ifname: string, scope: 'link' | 'global'): Promise<string | undefined> {
  const links = JSON.parse((await runOk('ip', ['-j', '-6', 'addr', 'show', 'dev', ifname, 'scope', scope])) || '[]') as Array<{ addr_info: Array<{ local?: string }> }>;
  return links.flatMap((l) => l.addr_info.flatMap((a) => (a.local ? [a.local] : [])))[0];
}

/** Powers a container off if a failed test left it running (SIGKILL only if that does not end it). */
async function stopContainer(p: Proc): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill('SIGTERM');
  await exitOf(p, 30_000).catch(() => {
    p.child.kill('SIGKILL');
    return p.exited;
  });
}

/** The values of a field of `networkctl status`: "Label: first" and the continuation lines under it. */
function networkctlField(status: string, label: string): string[] {
  const lines = status.split('\n');
  const at = lines.findIndex((l) => l.trimStart().startsWith(`${label}: `));
  if (at < 0) return [];
  const col = (lines[at] as string).indexOf(': ') + 2;
  const out = [(lines[at] as string).slice(col).trim()];
  for (const l of lines.slice(at + 1)) {
    if (!/^\s+$/.test(l.slice(0, col)) || l.trim() === '') break;
    out.push(l.trim());
  }
  return out.map((v) => v.split(' ')[0] as string);
}

/** An HTTP GET of the uplink over IPv6 with bash's /dev/tcp (the Debian root has no nc or curl). */
const BASH_FETCH6 = `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 5 bash -c 'exec 3<>/dev/tcp/${REMOTE6}/80; cat >&3; cat <&3'`;

describe('IPv6 with real peers', () => {
  ktest('nspawn-ts -b -n: systemd-networkd in Debian takes our RA; networkctl shows the ULA address; NAT66 to the uplink; nothing left after poweroff', async () => {
    expect(await NetdClient.connect()).toBeUndefined(); // embedded: the launcher advertises
    const root = await debianRoot();
    const world = await World.create();
    const before = forwarding6();
    const machine = `deb6-${process.pid}`;
    const ve = vethHostIfname(machine).name;
    const p = nspawnTs(['-b', '-n', '--ephemeral', '-M', machine, '-D', root, 'systemd.wants=systemd-networkd.service']);
    try {
      const leader = await waitFor(() => machineLeader(machine), 'the container leader', 30_000);
      // networkctl reads networkd's state under the container's /run: its mount namespace too
      const inside = (cmd: string[]): Promise<string> => exec('nsenter', ['-t', String(leader), '-m', '-n', '-u', '-i', '-p', ...cmd]).then((r) => r.stdout);
      const global6 = (): Promise<string> => inside(['ip', '-6', '-o', 'addr', 'show', 'dev', 'host0', 'scope', 'global']);
      const addr = await waitFor(async () => {
        const out = await global6();
        return /tentative/.test(out) ? undefined : /inet6 (fd[0-9a-f:]+)\/64/.exec(out)?.[1];
      }, 'networkd to configure host0 from our RA', 60_000, 200);
      // SLAAC from the advertisement (a lifetime), not a static address: networkd's default token
      // is EUI-64, so it is the address we predict from host0's MAC and the link's /64
      expect(await global6()).toMatch(/dynamic/);
      const hostCidr = `${await hostAddress6(ve, 'global')}/64`;
      expect(hostCidr).toMatch(/^fd[0-9a-f:]+::1\/64$/);
      const hw = /link\/ether (\S+)/.exec(await inside(['ip', '-o', 'link', 'show', 'dev', 'host0']))?.[1] as string;
      expect(addr).toBe(eui64In(hostCidr as string, hw));
      // the default route came from our RA (networkd installs it with "proto ra")
      const route = await waitFor(async () => /^default via (fe80::\S+) dev host0 proto ra/m.exec(await inside(['ip', '-6', 'route', 'show', 'default']))?.[1], 'the RA default route', 30_000, 200);
      expect(route).toBe(await hostAddress6(ve, 'link'));

      // networkctl, as a user would look: host0 managed by networkd, our address and gateway
      const status = await waitFor(async () => {
        const s = await inside(['networkctl', 'status', 'host0', '--no-pager']);
        return /State: routable/.test(s) && s.includes(addr as string) ? s : undefined;
      }, 'networkctl status host0 routable with the address', 30_000, 250);
      expect(status).toMatch(/Network File: \/usr\/lib\/systemd\/network\/80-container-host0\.network/);
      expect(networkctlField(status, 'Address')).toContain(addr);
      expect(networkctlField(status, 'Gateway')).toContain(route);

      // NAT66: the uplink sees the host's address, not the container's ULA
      const r = await run('nsenter', ['-t', String(leader), '-n', 'sh', '-c', BASH_FETCH6]);
      expect(r.stdout, r.stderr).toContain(`remote-ok ${HOST_UPLINK6}`);

      p.child.kill('SIGTERM'); // poweroff
      expect(await exitOf(p, 60_000)).toBe(0);
      expect(await ipv6Leftovers({ forwardingBefore: before })).toEqual([]);
    } finally {
      await stopContainer(p);
      await world.destroy();
    }
  }, 240_000);
  ktest('dhcpcd -6 on a link the sidecar serves: SLAAC address and default route from our RA (the kernel\'s own RA handling off); NAT66; nothing left', async ({ netns }) => {
    const world = await World.create();
    const before = forwarding6();
    const sidecar = await startSidecar();
    const dir = mkdtempSync('/var/tmp/nspawn-ts-dhcpcd6-');
    let dhcpcd: ChildProcess | undefined;
    try {
      // a plain namespace on a ve- link, as systemd-nspawn would make it: the sidecar serves it
      await runOk('ip', ['link', 'add', 've-dc6', 'type', 'veth', 'peer', 'name', 'host0', 'netns', netns.name]);
      // dhcpcd is the only client: the namespace's kernel takes no advertisement itself
      await netns.exec('sysctl', ['-qw', 'net.ipv6.conf.host0.accept_ra=0']);
      const c = await sidecar.client();
      const link = await waitFor(async () => (await c.request<ServedLinkInfo[]>({ op: 'list' })).find((l) => l.ifname === 've-dc6' && l.prefix6), 'the sidecar to serve ve-dc6', 15_000);
      c.close();

      // dhcpcd keeps state in /var/lib/dhcpcd and /run/dhcpcd (npm test's /run is empty): private
      // tmpfs for each; its hook script records each event's environment
      writeFileSync(`${dir}/hook`, `#!/bin/sh\nenv | sort > ${dir}/env.$reason\necho "$reason" >> ${dir}/events\n`, { mode: 0o755 });
      dhcpcd = spawn('ip', ['netns', 'exec', netns.name, 'unshare', '-m', 'sh', '-c',
        'mkdir -p /var/lib/dhcpcd && mount -t tmpfs tmpfs /var/lib/dhcpcd && mount -t tmpfs -o mode=0755 tmpfs /run && mkdir /run/dhcpcd && exec dhcpcd "$@"',
        'dhcpcd', '-6', '-B', '--config', '/dev/null', '-c', `${dir}/hook`, 'host0'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let log = '';
      dhcpcd.stdout?.on('data', (d: Buffer) => { log += d.toString(); });
      dhcpcd.stderr?.on('data', (d: Buffer) => { log += d.toString(); });

      const hw = /link\/ether (\S+)/.exec(await netns.exec('ip', ['-o', 'link', 'show', 'dev', 'host0']))?.[1] as string;
      const want = eui64In(link.hostAddress6 as string, hw); // dhcpcd's default interface ID: the hardware address
      await waitFor(async () => {
        const out = await netns.exec('ip', ['-6', '-o', 'addr', 'show', 'dev', 'host0', 'scope', 'global']);
        return out.includes(`${want}/64`) && !/tentative/.test(out);
      }, `dhcpcd to add ${want}/64`, 30_000, 100).catch((err: unknown) => { throw new Error(`${String(err)}\ndhcpcd:\n${log}`); });
      const gw = await hostAddress6('ve-dc6', 'link');
      const route = await waitFor(async () => /^default via (\S+) dev host0/m.exec(await netns.exec('ip', ['-6', 'route', 'show', 'default']))?.[1], 'the default route from dhcpcd', 15_000);
      expect(route).toBe(gw);
      // what dhcpcd read from our advertisement (its hook's nd1_* variables)
      const ra = readFileSync(`${dir}/env.ROUTERADVERT`, 'utf8');
      expect(ra).toContain(`nd1_from=${gw}`);
      expect(ra).toContain(`nd1_prefix_information1_prefix=${(link.prefix6 as string).split('/')[0]}`);
      expect(ra).toMatch(/^nd1_prefix_information1_length=64$/m);
      expect(ra).toMatch(/^nd1_prefix_information1_flags=LA$/m);
      expect(ra).toMatch(/^nd1_addr1=/m);

      const fetched = await netns.exec('sh', ['-c', `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 5 ${REMOTE6} 80`]);
      expect(fetched).toContain(`remote-ok ${HOST_UPLINK6}`);

      dhcpcd.kill('SIGTERM');
      await new Promise((r) => dhcpcd?.once('exit', r));
      dhcpcd = undefined;
      await runOk('ip', ['link', 'del', 've-dc6']); // the container ends
      const c2 = await sidecar.client();
      await waitFor(async () => (await c2.request<unknown[]>({ op: 'list' })).length === 0, 'the link no longer served', 10_000);
      c2.close();
      // with the sidecar still running: nothing of the link's IPv6, not even the RA socket
      expect(await ipv6Leftovers({ forwardingBefore: before })).toEqual([]);
    } finally {
      if (dhcpcd) await killAndWait(dhcpcd);
      await run('ip', ['link', 'del', 've-dc6']);
      await sidecar.stop();
      rmSync(dir, { recursive: true, force: true });
      await world.destroy();
    }
  }, 120_000);
  for (const net of ['--network-veth', '--network-zone=snz6'] as const) {
    ktest(`systemd-nspawn ${net} with our sidecar: the container's kernel forms its address and default route from our RA; NAT66; nothing left`, async () => {
      const world = await World.create();
      const root = await copyRoot(await busyboxRoot());
      const before = forwarding6();
      const sidecar = await startSidecar();
      // on the zone, a first container holds the bridge; the second joins with the lower MAC
      const [first, name] = net === '--network-veth' ? [undefined, `sdn6-${process.pid}`] : zoneNamesSecondLower(`sdz${process.pid}`);
      const cgroups = makeCgroups(`nspawn-ts-ipv6-${process.pid}`);
      const cgroups1 = first ? makeCgroups(`nspawn-ts-ipv6-${process.pid}-1`) : [];
      const root1 = first ? await copyRoot(root.dir) : undefined; // systemd-nspawn locks the tree it runs
      let holder: Proc | undefined;
      try {
        if (first) holder = await untilReady(systemdNspawn(cgroups1, ['-P', '-D', (root1 as { dir: string }).dir, '-M', first, net, '/bin/sh', '-c', 'echo ready; read x']), 'the first container');
        // nothing is configured on host0 by anyone (systemd-nspawn leaves it down): only our RA
        const p = systemdNspawn(cgroups, ['-P', '-D', root.dir, '-M', name, net, '/bin/sh', '-c', `${WAIT_SLAAC}; ${SHOW6}; ${FETCH6}`]);
        expect(await exitOf(p), p.output()).toBe(0);
        const out = p.output();
        const seen = parse6(out);
        expect(seen.addr, out).toMatch(/^fd[0-9a-f]{2}:[0-9a-f:]+\/64$/);
        expect(out).toMatch(/^flags6=.*dynamic/m); // a lifetime: from the advertisement
        expect(seen.route).toMatch(/^default via fe80::[0-9a-f:]+ dev host0 .*expires/);
        expect(seen.remote, out).toBe(HOST_UPLINK6);
        if (holder) expect(await stopByLine(holder)).toBe(0);
        const c = await sidecar.client();
        await waitFor(async () => (await c.request<unknown[]>({ op: 'list' })).length === 0, 'the links no longer served', 10_000);
        c.close();
        expect(await ipv6Leftovers({ forwardingBefore: before })).toEqual([]);
      } finally {
        if (holder && holder.child.exitCode === null) await stopByLine(holder).catch(() => undefined);
        await sidecar.stop();
        await removeCgroups([...cgroups, ...cgroups1]);
        root.remove();
        root1?.remove();
        await world.destroy();
      }
    }, 120_000);
  }
});
