// The same machine started by the real systemd-nspawn (Debian's systemd-container, v252) and by
// bin/nspawn-ts, each in a namespace of its own that stands for the host: the host-side links must
// have identical names, alternative names and MAC addresses (and the container sides the same MACs),
// and both must leave the host as they found it. /etc/machine-id is the host's for both.
//
// systemd-nspawn runs here with --register=no --keep-unit; --keep-unit makes sub-cgroups in its
// caller's cgroup, so it is started from cgroups of its own (one per v1 hierarchy it uses, plus the
// unified one), removed afterwards. It reads /sys/class/net to decide whether a zone bridge is
// empty, so it gets a mount namespace with a sysfs of its network namespace (and the cgroup mounts
// carried over, as scripts/test-in-netns.sh does). That sysfs is read-only: systemd-nspawn then
// takes udev for absent (udev_available()) instead of waiting for it to initialize a macvlan's
// parent — which the host's udev never does for links in a namespace of ours.
import { spawn, type ChildProcess } from 'node:child_process';
import { describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { waitFor } from '../helpers/exec.js';
import { NSPAWN_TS } from '../helpers/nspawn.js';
import { TestNetns } from '../helpers/netns.js';
import { busyboxRoot } from '../helpers/rootfs.js';
import { joinCgroupsShell, makeCgroups, removeCgroups, SYSTEMD_NSPAWN } from '../helpers/systemd-nspawn.js';

interface IpLink {
  ifname: string;
  address: string;
  altnames?: string[];
  master?: string;
  flags: string[];
  linkinfo?: { info_kind?: string };
}

/** What must be identical on the host side. */
interface HostLink {
  ifname: string;
  address: string;
  altnames: string[];
  kind: string | undefined;
  master: string | undefined;
}

async function hostLinks(ns: TestNetns): Promise<HostLink[]> {
  return (await ns.ipJson<IpLink[]>(['-d', 'link', 'show']))
    .filter((l) => l.ifname !== 'lo')
    .map((l) => ({ ifname: l.ifname, address: l.address, altnames: l.altnames ?? [], kind: l.linkinfo?.info_kind, master: l.master }))
    .sort((a, b) => a.ifname.localeCompare(b.ifname));
}

interface Started {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

function startIn(ns: TestNetns, argv: string[]): Started {
  const child = spawn('nsenter', [`--net=${ns.path}`, '--', ...argv], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr?.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, output: () => out, exited };
}

/** The payload: print the container side's MACs, then wait for standard input to close. */
function payload(ifnames: string[]): string[] {
  const show = ifnames.map((i) => `echo ${i}=$(cat /sys/class/net/${i}/address)`).join('; ');
  return ['/bin/sh', '-c', `${show}; echo ready; read x`];
}

function systemdNspawn(ns: TestNetns, cgroups: string[], root: string, machine: string, args: string[], inside: string[]): Started {
  const script = `
    set -e
    tmp=$(mktemp -d /run/nspawn-ts-compat.XXXXXX)
    mount --rbind /sys/fs/cgroup "$tmp"
    mount -t sysfs -o ro sysfs /sys
    mount --move "$tmp" /sys/fs/cgroup
    rmdir "$tmp"
    ${joinCgroupsShell(cgroups)}
    root=$0; machine=$1; shift
    exec ${SYSTEMD_NSPAWN} -P -D "$root" -M "$machine" "$@"
  `;
  return startIn(ns, ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', script, root, machine, ...args, ...payload(inside)]);
}

function ours(ns: TestNetns, root: string, machine: string, args: string[], inside: string[]): Started {
  return startIn(ns, [process.execPath, NSPAWN_TS, '-P', '-q', '-D', root, '-M', machine, ...args, ...payload(inside)]);
}

/** Runs one implementation until its payload is ready, snapshots both sides, stops it. */
async function observe(ns: TestNetns, started: Started): Promise<{ host: HostLink[]; container: Record<string, string>; after: HostLink[] }> {
  try {
    await waitFor(() => started.output().includes('ready\n'), `the container to start; output so far: ${started.output()}`, 30_000);
    const host = await hostLinks(ns);
    const container = Object.fromEntries([...started.output().matchAll(/^(\S+)=(\S+)$/gm)].map((m) => [m[1], m[2]]));
    started.child.stdin?.end("go\n");
    const code = await started.exited;
    if (code !== 0) throw new Error(`exited with ${code}; output:\n${started.output()}`);
    return { host, container, after: await hostLinks(ns) };
  } finally {
    started.child.kill('SIGKILL');
    await started.exited;
  }
}

interface Case {
  name: string;
  machine: string;
  args: string[];
  inside: string[];
  /** links both namespaces get before the start (macvlan parents) */
  prepare?: (ns: TestNetns) => Promise<void>;
  /** prefixes of the host links systemd-nspawn must have made (so the comparison is not vacuous) */
  hostNames: string[];
  /** whether the machine name is long enough for a shortened name with an altname */
  shortened: boolean;
}

// Machine cgroups are per machine name, not per test run: names carry our PID so that concurrent
// runs on this machine do not meet. Long ones still shorten (the exact algorithm is pinned with the
// reference's examples in test/kernel/modes.test.ts and the naming unit tests).
const P = String(process.pid);

const CASES: Case[] = [
  {
    name: 'a short machine name with --network-veth and two --network-veth-extra= (MAC index 0 and 1)',
    machine: `c${P}`, args: ['--network-veth', '--network-veth-extra=xhost0:xct0', '--network-veth-extra=xhost1'],
    inside: ['host0', 'xct0', 'xhost1'], hostNames: [`ve-c${P}`, 'xhost0', 'xhost1'], shortened: false,
  },
  {
    name: 'a long machine name (shortened, the full name as altname)',
    machine: `long-container-${P}`, args: ['-n'], inside: ['host0'], hostNames: ['ve-long-con'], shortened: true,
  },
  {
    name: 'a zone, with a long machine name',
    machine: `zoned-container-${P}`, args: ['--network-zone=compat'], inside: ['host0'], hostNames: ['vb-zoned-c', 'vz-compat'],
    shortened: true,
  },
  {
    name: 'a bridge and two macvlans (MAC index 0 and 1)',
    machine: `b${P}`, args: ['--network-bridge=br0', '--network-macvlan=uplink0', '--network-macvlan=uplink1'], inside: ['host0', 'mv-uplink0', 'mv-uplink1'],
    prepare: async (ns) => {
      // fixed addresses: a bridge without one takes its ports' (and loses it with them)
      await ns.exec('ip', ['link', 'add', 'br0', 'address', '02:00:5e:00:53:10', 'type', 'bridge']);
      await ns.exec('ip', ['link', 'add', 'uplink0', 'address', '02:00:5e:00:53:01', 'type', 'veth', 'peer', 'name', 'uplink1', 'address', '02:00:5e:00:53:02']);
    },
    hostNames: ['br0', 'uplink0', 'uplink1', `vb-b${P}`], shortened: false,
  },
];

describe('identical links from systemd-nspawn and nspawn-ts', () => {
  for (const c of CASES) {
    ktest(c.name, async () => {
      const root = await busyboxRoot();
      const theirs = await TestNetns.create('sd');
      const mine = await TestNetns.create('ts');
      const cgroups = makeCgroups(`nspawn-ts-compat-${process.pid}`);
      try {
        await c.prepare?.(theirs);
        await c.prepare?.(mine);
        const before = { theirs: await hostLinks(theirs), mine: await hostLinks(mine) };
        const sd = await observe(theirs, systemdNspawn(theirs, cgroups, root, c.machine, c.args, c.inside));
        const ts = await observe(mine, ours(mine, root, c.machine, c.args, c.inside));

        // systemd-nspawn made what the case expects (so the comparison is not vacuous) …
        for (const n of c.hostNames) expect(sd.host.map((l) => l.ifname).some((x) => x.startsWith(n)), n).toBe(true);
        expect(sd.host.some((l) => l.altnames.length > 0)).toBe(c.shortened);
        expect(Object.keys(sd.container).sort()).toEqual([...c.inside].sort());
        // … and we made the same
        expect(ts.host).toEqual(sd.host);
        expect(ts.container).toEqual(sd.container);
        // both left the host as they found it
        expect(sd.after).toEqual(before.theirs);
        expect(ts.after).toEqual(before.mine);
      } finally {
        await theirs.destroy();
        await mine.destroy();
        await removeCgroups(cgroups);
      }
    });
  }
});
