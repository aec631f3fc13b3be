// IPv6 with real peers (issue 14): clients that are not the busybox kernel's own SLAAC take our
// router advertisements and reach the "internet" namespace at 2001:db8:ffff::1 through NAT66 —
//
//   - systemd-networkd in a Debian root booted with `nspawn-ts -b -n` (its stock
//     80-container-host0.network; the launcher configures nothing on host0 with -b);
//   - dhcpcd as an IPv6 client (SLAAC only) in a namespace attached to a link the sidecar serves;
//   - the real systemd-nspawn with our sidecar: its container's kernel forms the address.
//
// After each container exits nothing of its IPv6 is left on the host (e2e-world.ts ipv6Leftovers).
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { run, waitFor } from '../helpers/exec.js';
import { machineLeader } from '../helpers/nspawn.js';
import { debianRoot } from '../helpers/rootfs.js';
import { NetdClient } from '../../src/net/netd/client.js';
import { formatAddress, parseIpv6Prefix, slaacAddress } from '../../src/net/ipv6/prefix.js';
import { vethHostIfname } from '../../src/net/naming.js';
import { HOST_UPLINK6, REMOTE6, type Proc, World, exitOf, ipv6Leftovers, nspawnTs } from './e2e-world.js';

const exec = promisify(execFile);

const mac = (s: string): Uint8Array => Uint8Array.from(s.split(':').map((x) => parseInt(x, 16)));
const forwarding6 = (): string => readFileSync('/proc/sys/net/ipv6/conf/all/forwarding', 'utf8').trim();

/** The EUI-64 address of `hwaddr` in the /64 of `hostCidr` (the host side's PREFIX::1/64). */
function eui64In(hostCidr: string, hwaddr: string): string {
  const [addr] = hostCidr.split('/') as [string];
  const prefix = parseIpv6Prefix(`${addr.replace(/::1$/, '::')}/64`);
  return formatAddress(slaacAddress(prefix, mac(hwaddr)));
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
      const hostSide = JSON.parse((await exec('ip', ['-j', '-6', 'addr', 'show', 'dev', ve, 'scope', 'global'])).stdout) as Array<{ addr_info: Array<{ local: string; prefixlen: number }> }>;
      const hostCidr = hostSide[0]?.addr_info.map((a) => `${a.local}/${a.prefixlen}`).find((c) => c.startsWith('fd'));
      expect(hostCidr).toMatch(/^fd[0-9a-f:]+::1\/64$/);
      const hw = /link\/ether (\S+)/.exec(await inside(['ip', '-o', 'link', 'show', 'dev', 'host0']))?.[1] as string;
      expect(addr).toBe(eui64In(hostCidr as string, hw));
      // the default route came from our RA (networkd installs it with "proto ra")
      const route = await waitFor(async () => /^default via (fe80::\S+) dev host0 proto ra/m.exec(await inside(['ip', '-6', 'route', 'show', 'default']))?.[1], 'the RA default route', 30_000, 200);
      const ll = JSON.parse((await exec('ip', ['-j', '-6', 'addr', 'show', 'dev', ve, 'scope', 'link'])).stdout) as Array<{ addr_info: Array<{ local: string }> }>;
      expect(ll.flatMap((l) => l.addr_info.map((a) => a.local))).toContain(route);

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
});
