// The network options through bin/nspawn-ts on the busybox root, each launcher in a namespace of
// its own standing for the host: what the container sees (busybox ip inside), what the host has
// (`ip -j` outside), what is left after the container ends, and the exit code and message of a
// start that cannot be set up.
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { waitFor } from '../helpers/exec.js';
import { NSPAWN_TS, leftoverCgroups } from '../helpers/nspawn.js';
import type { TestNetns } from '../helpers/netns.js';
import { busyboxRoot } from '../helpers/rootfs.js';
import { newSpec } from '../unit/runtime/spec-fixture.js';
import { containerNetworkHooks } from '../../src/runtime/net/links.js';
import { launchHooks } from '../../src/runtime/net/hooks.js';
import { runContainer } from '../../src/runtime/launcher.js';
import { defaultNetworkSpec } from '../../src/runtime/spec.js';
import { ipJson } from '../helpers/exec.js';

// Machine cgroups are the machine's, not the test run's: names carry our PID so that concurrent
// runs on this machine do not meet.
const P = String(process.pid);

interface Started {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

/** bin/nspawn-ts inside `ns`; the payload runs `script` then waits for a line on standard input. */
function launch(ns: TestNetns, root: string, args: string[], script: string, wait = true): Started {
  const payload = wait ? `${script}; echo ready; read x` : script;
  const child = spawn('nsenter', [`--net=${ns.path}`, '--', process.execPath, NSPAWN_TS, '--pipe', '-q', '-D', root, ...args, '/bin/sh', '-c', payload],
    { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr?.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, output: () => out, exited };
}

async function ready(s: Started): Promise<void> {
  await waitFor(() => s.output().includes('ready\n') || s.child.exitCode !== null, 'the container to start', 30_000);
  if (!s.output().includes('ready\n')) throw new Error(`the container did not start: ${s.output()}`);
}

async function stop(s: Started): Promise<number | null> {
  s.child.stdin?.end('go\n');
  return s.exited;
}

/** Runs a start to its end; returns exit code and output. */
async function runToEnd(ns: TestNetns, root: string, args: string[], script: string): Promise<{ code: number | null; output: string }> {
  const s = launch(ns, root, args, script, false);
  s.child.stdin?.end();
  return { code: await s.exited, output: s.output() };
}

interface IpLink { ifname: string; ifindex: number; flags: string[]; master?: string; address: string }

async function hostLinks(ns: TestNetns): Promise<IpLink[]> {
  return ns.ipJson<IpLink[]>(['link', 'show']);
}

async function hostNames(ns: TestNetns): Promise<string[]> {
  return (await hostLinks(ns)).map((l) => l.ifname).sort();
}

/** busybox `ip -o link` lines → "name flags" (the @peer suffix dropped). */
function insideLinks(output: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of output.matchAll(/^\d+: ([^:@]+)(?:@[^:]+)?: <([^>]*)>/gm)) out[m[1] as string] = m[2] as string;
  return out;
}

describe('bin/nspawn-ts network options on a busybox container', () => {
  ktest('--private-network: only lo inside, and up', async ({ netns }) => {
    const root = await busyboxRoot();
    const r = await runToEnd(netns, root, ['-M', `priv${P}`, '--private-network'], 'ip -o link');
    expect(r.code).toBe(0);
    const inside = insideLinks(r.output);
    expect(Object.keys(inside)).toEqual(['lo']);
    expect(inside.lo?.split(',')).toContain('UP');
    expect(await hostNames(netns)).toEqual(['lo']);
  });

  ktest('-n: host0 and lo up inside, ve-NAME on the host while it runs, nothing after', async ({ netns }) => {
    const root = await busyboxRoot();
    const s = launch(netns, root, ['-M', `w${P}`, '-n'], 'ip -o link');
    await ready(s);
    const inside = insideLinks(s.output());
    expect(Object.keys(inside).sort()).toEqual(['host0', 'lo']);
    expect(inside.host0?.split(',')).toContain('UP');
    expect(inside.lo?.split(',')).toContain('UP');
    expect(await hostNames(netns)).toEqual(['lo', `ve-w${P}`]);
    expect(await stop(s)).toBe(0);
    expect(await hostNames(netns)).toEqual(['lo']);
  });

  ktest('--network-interface: moved in, renamed inside, and back on the host under its name after the exit', async ({ netns }) => {
    const root = await busyboxRoot();
    await netns.exec('ip', ['link', 'add', 'eth7', 'type', 'veth', 'peer', 'name', 'eth7p']);
    const index = (await hostLinks(netns)).find((l) => l.ifname === 'eth7')?.ifindex;
    const s = launch(netns, root, ['-M', `mi${P}`, '--network-interface=eth7'], 'ip link set eth7 name lan0; ip -o link');
    await ready(s);
    expect(Object.keys(insideLinks(s.output())).sort()).toEqual(['lan0', 'lo']);
    expect(await hostNames(netns)).toEqual(['eth7p', 'lo']);
    expect(await stop(s)).toBe(0);
    expect((await hostLinks(netns)).find((l) => l.ifname === 'eth7')?.ifindex).toBe(index);
    await netns.exec('ip', ['link', 'del', 'eth7']);
  });

  ktest('--network-macvlan and --network-veth-extra: mv-IF and the extra end inside', async ({ netns }) => {
    const root = await busyboxRoot();
    await netns.exec('ip', ['link', 'add', 'uplink0', 'type', 'veth', 'peer', 'name', 'uplink1']);
    const s = launch(netns, root, ['-M', `mx${P}`, '--network-macvlan=uplink0', '--network-veth-extra=xhost:xct'], 'ip -o link');
    await ready(s);
    expect(Object.keys(insideLinks(s.output())).sort()).toEqual(['lo', 'mv-uplink0', 'xct']);
    expect(await hostNames(netns)).toEqual(['lo', 'uplink0', 'uplink1', 'xhost']);
    expect(await stop(s)).toBe(0);
    expect(await hostNames(netns)).toEqual(['lo', 'uplink0', 'uplink1']);
    await netns.exec('ip', ['link', 'del', 'uplink0']);
  });

  ktest('the same from a .nspawn file: [Network] Zone=, VirtualEthernetExtra=, MACVLAN=, Interface=', async ({ netns }) => {
    const root = await busyboxRoot();
    const machine = `nf${P}`;
    // next to the root directory; trusted with --settings=trusted, as systemd-nspawn wants for [Network]
    const file = `${dirname(root)}/${machine}.nspawn`;
    writeFileSync(file, '[Network]\nZone=file\nVirtualEthernetExtra=xhost:xct\nMACVLAN=uplink0\nInterface=eth7\n');
    await netns.exec('ip', ['link', 'add', 'uplink0', 'type', 'veth', 'peer', 'name', 'eth7']);
    try {
      const s = launch(netns, root, ['-M', machine, '--settings=trusted'], 'ip -o link');
      await ready(s);
      expect(Object.keys(insideLinks(s.output())).sort()).toEqual(['eth7', 'host0', 'lo', 'mv-uplink0', 'xct']);
      const host = await hostLinks(netns);
      expect(host.map((l) => l.ifname).sort()).toEqual(['lo', 'uplink0', `vb-${machine}`, 'vz-file', 'xhost']);
      expect(host.find((l) => l.ifname === `vb-${machine}`)?.master).toBe('vz-file');
      expect(await stop(s)).toBe(0);
      expect(await hostNames(netns)).toEqual(['eth7', 'lo', 'uplink0']);
    } finally {
      rmSync(file, { force: true });
      await netns.exec('ip', ['link', 'del', 'uplink0']);
    }
  });

  ktest('two launchers in one zone: one bridge for both, gone when the second leaves', async ({ netns }) => {
    const root = await busyboxRoot();
    const a = launch(netns, root, ['-M', `za${P}`, '--network-zone=pair'], 'true');
    const b = launch(netns, root, ['-M', `zb${P}`, '--network-zone=pair'], 'true');
    await Promise.all([ready(a), ready(b)]);
    const links = await hostLinks(netns);
    expect(links.map((l) => l.ifname).sort()).toEqual(['lo', `vb-za${P}`, `vb-zb${P}`, 'vz-pair'].sort());
    expect(links.filter((l) => l.master === 'vz-pair').map((l) => l.ifname).sort()).toEqual([`vb-za${P}`, `vb-zb${P}`].sort());
    expect(await stop(a)).toBe(0);
    expect(await hostNames(netns)).toEqual(['lo', `vb-zb${P}`, 'vz-pair'].sort());
    expect(await stop(b)).toBe(0);
    expect(await hostNames(netns)).toEqual(['lo']);
  });

  ktest('a launcher killed with SIGKILL leaves its zone bridge; the next start in the zone removes it when done', async ({ netns }) => {
    const root = await busyboxRoot();
    const victim = launch(netns, root, ['-M', `v${P}`, '--network-zone=kill'], 'true');
    await ready(victim);
    victim.child.kill('SIGKILL');
    await victim.exited;
    await waitFor(async () => (await hostNames(netns)).join() === 'lo,vz-kill', 'the container to die with its launcher', 10_000);
    // the same machine again: it also reclaims the cgroup the killed launcher could not remove
    const next = await runToEnd(netns, root, ['-M', `v${P}`, '--network-zone=kill'], 'ip -o link');
    expect(next.code).toBe(0);
    expect(Object.keys(insideLinks(next.output)).sort()).toEqual(['host0', 'lo']);
    expect(await hostNames(netns)).toEqual(['lo']);
    expect(leftoverCgroups().filter((d) => d.endsWith(`/machine-v${P}`))).toEqual([]);
  });

  ktest('bad input: exit code 1, a message naming the interface and the cause, nothing left', async ({ netns }) => {
    const root = await busyboxRoot();
    await netns.exec('ip', ['link', 'add', 'br0', 'type', 'bridge']);
    await netns.exec('ip', ['link', 'add', 'eth7', 'type', 'veth', 'peer', 'name', 'eth7p']);
    await netns.exec('ip', ['link', 'set', 'eth7', 'master', 'br0']);
    await netns.exec('ip', ['link', 'add', `ve-cl${P}`, 'type', 'veth', 'peer', 'name', 'clash-p']);
    const before = await hostNames(netns);
    const cases: Array<[string[], string]> = [
      [['-M', `bad${P}`, '--network-bridge=br9'], '--network-bridge=br9: no such interface "br9" on the host'],
      [['-M', `bad${P}`, '--network-macvlan=eth9'], '--network-macvlan=eth9: no such interface "eth9" on the host'],
      [['-M', `bad${P}`, '-n', '--network-interface=eth7'], '--network-interface=eth7: interface is already in use: "eth7" is a port of bridge "br0"'],
      [['-M', `bad${P}`, '--network-zone=z1', `--network-veth-extra=ve-cl${P}`], `--network-veth-extra=ve-cl${P}:ve-cl${P}: interface "ve-cl${P}" already exists in the host's network namespace`],
      [['-M', `cl${P}`, '-n'], `--network-veth: interface "ve-cl${P}" already exists in the host's network namespace`],
    ];
    for (const [args, message] of cases) {
      const r = await runToEnd(netns, root, args, 'true');
      expect({ args, code: r.code }).toEqual({ args, code: 1 });
      expect(r.output).toContain(message);
      expect(await hostNames(netns)).toEqual(before);
    }
    await netns.exec('ip', ['link', 'del', 'eth7']);
    await netns.exec('ip', ['link', 'del', 'br0']);
    await netns.exec('ip', ['link', 'del', `ve-cl${P}`]);
  });

  ktest('--network-ipvlan (skips, naming the kernel\'s error, where the kernel has no ipvlan)', async ({ netns, skip }) => {
    const root = await busyboxRoot();
    await netns.exec('ip', ['link', 'add', 'uplink0', 'type', 'veth', 'peer', 'name', 'uplink1']);
    try {
      const r = await runToEnd(netns, root, ['-M', `iv${P}`, '-n', '--network-ipvlan=uplink0'], 'ip -o link');
      if (r.code === 1 && r.output.includes('Operation not supported (EOPNOTSUPP)')) {
        expect(r.output).toContain('--network-ipvlan=uplink0: RTNETLINK: cannot create ipvlan link "iv-uplink0" on parent "uplink0": Operation not supported (EOPNOTSUPP)');
        expect(await hostNames(netns)).toEqual(['lo', 'uplink0', 'uplink1']); // the veth made before it is gone
        skip(`this kernel has no ipvlan: ${/Operation not supported \(EOPNOTSUPP\)[^\n]*/.exec(r.output)?.[0] ?? ''}`);
      }
      expect(r.code).toBe(0);
      expect(Object.keys(insideLinks(r.output)).sort()).toEqual(['host0', 'iv-uplink0', 'lo']);
    } finally {
      await netns.exec('ip', ['link', 'del', 'uplink0']);
    }
  });

  ktest('in-process: launchHooks({ links }) lets other hooks read the links while the container runs', async () => {
    const root = await busyboxRoot();
    const network = containerNetworkHooks();
    const seen: unknown[] = [];
    const machine = `hk${P}`;
    const spec = newSpec({
      directory: root, machine, command: ['/bin/true'], quiet: true, network: { ...defaultNetworkSpec(), private: true, veth: true },
    });
    const exit = await runContainer(spec, {
      registry: null, handleSignals: false, console: 'pipe', status: () => undefined,
      hooks: () => launchHooks(spec, { links: network, hooks: [{
        afterClone: async () => {
          const v = network.network()?.veth;
          const onHost = (await ipJson<Array<{ ifname: string; ifindex: number; address: string }>>(['link', 'show', v?.hostIfname ?? 'none']))[0];
          seen.push({ hostIfname: v?.hostIfname, ifindexMatches: onHost?.ifindex === v?.hostIfindex, macMatches: onHost?.address === v?.hostMac });
        },
      }] }),
    });
    expect(exit.exitCode).toBe(0);
    expect(seen).toEqual([{ hostIfname: `ve-${machine}`, ifindexMatches: true, macMatches: true }]);
    expect(network.network()).toBeUndefined();
  });
});
