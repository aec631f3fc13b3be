// End to end: containers find each other by name, and everything else through the host's resolvers.
// The host's /etc/resolv.conf (bind-mounted in the test run's mount namespace) names dnsmasq in the
// "internet" namespace (dns-world.ts); nothing is configured in the containers.
//   - two busybox containers of bin/nspawn-ts on one zone, embedded (no sidecar): busybox nslookup
//     and ping by name, a forwarded name; after one stops its name is NXDOMAIN within a second
//   - a Debian root booted with -b (its networkd leases host0): glibc's getent hosts (AAAA: the
//     address networkd formed by SLAAC) and ahostsv4
//   - the real systemd-nspawn on a zone our sidecar serves: its container resolves our machine
import { expect } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ktest } from '../helpers/kernel.js';
import { waitFor } from '../helpers/exec.js';
import { machineLeader } from '../helpers/nspawn.js';
import { busyboxRoot, copyRoot, debianRoot } from '../helpers/rootfs.js';
import { makeCgroups, removeCgroups } from '../helpers/systemd-nspawn.js';
import { exitOf, NETD, nspawnTs, startProc, systemdNspawn, untilReady, World, type Proc } from './e2e-world.js';
import { FWD_ADDR, FWD_NAME, hostResolvConf, resolveIn, Upstream, UPSTREAM } from './dns-world.js';
import { NetdClient } from '../../src/net/netd/client.js';

const exec = promisify(execFile);
/** our DNS server on: no fixed servers for containers */
const OWN_DNS = { NSPAWN_NETD_DNS: '' };

/** busybox nslookup's answer for `name`: the address after "Name: name", or undefined. */
function looked(out: string, name: string): string | undefined {
  return new RegExp(`Name:\\s+${name.replace(/\./g, '\\.')}(?:\\.machine)?\\s+Address:\\s+(\\d+\\.\\d+\\.\\d+\\.\\d+)`, 'i').exec(out)?.[1];
}

function server(out: string): string | undefined {
  return /Server:\s+(\d+\.\d+\.\d+\.\d+)/.exec(out)?.[1];
}

async function stop(p: Proc): Promise<void> {
  if (p.child.exitCode === null && p.child.signalCode === null) {
    p.child.kill('SIGKILL');
    await p.exited;
  }
}

ktest('a zone (embedded): busybox containers resolve and ping each other by name, forward the rest; a stopped one is NXDOMAIN within a second', async () => {
  expect(await NetdClient.connect()).toBeUndefined(); // no sidecar: each launcher serves the zone in-process
  const world = await World.create();
  const upstream = await Upstream.start(world);
  const resolv = await hostResolvConf([UPSTREAM]);
  const root = await copyRoot(await busyboxRoot());
  const [ma, mb] = [`dza${process.pid}`, `dzb${process.pid}`];
  const checks = `nslookup ${mb}; ping -c1 -W2 ${mb} >/dev/null && echo ping-ok; nslookup ${FWD_NAME}; nslookup ${mb}.machine; echo checks-done`;
  const a = nspawnTs(['--network-zone=dnz', '-M', ma, '-D', root.dir, 'sh', '-c', `echo ready; read x; ${checks}; read y`], OWN_DNS);
  let b: Proc | undefined;
  try {
    await untilReady(a, ma);
    // b's very first command finds b itself: the name exists before the command runs
    b = nspawnTs(['--network-zone=dnz', '-M', mb, '-D', root.dir, 'sh', '-c', `nslookup ${mb}; cat /etc/resolv.conf; nslookup ${ma}; echo ready; read x`], OWN_DNS);
    await untilReady(b, mb);
    expect(looked(b.output(), mb)).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    // b, at its start, already resolves a (and its resolv.conf names the zone's host address)
    const host = server(b.output());
    expect(host).toBeDefined();
    expect(b.output()).toContain(`nameserver ${host}`);
    const addrA = looked(b.output(), ma);
    expect(addrA).toMatch(/^\d+\.\d+\.\d+\.\d+$/);

    a.child.stdin?.write('go\n');
    await waitFor(() => a.output().includes('checks-done') || a.child.exitCode !== null, 'the checks in a', 30_000);
    const out = a.output();
    const addrB = looked(out, mb);
    expect(addrB).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    expect(addrB).not.toBe(addrA);
    expect(out).toContain('ping-ok');
    expect(looked(out, FWD_NAME)).toBe(FWD_ADDR);
    expect(out).toMatch(new RegExp(`Name:\\s+${mb}\\.machine\\s+Address:\\s+${addrB}`));

    // a veth container (its own /28) resolves its own name, not the zone's machines, and forwards the rest
    const mv = `dzv${process.pid}`;
    const v = nspawnTs(['-n', '-M', mv, '-D', root.dir, 'sh', '-c', `nslookup ${mv}; nslookup ${ma}; nslookup ${FWD_NAME}; true`], OWN_DNS);
    expect(await exitOf(v)).toBe(0);
    expect(looked(v.output(), mv)).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    expect(looked(v.output(), ma)).toBeUndefined();
    expect(v.output()).toMatch(new RegExp(`can't find ${ma}: NXDOMAIN`));
    expect(looked(v.output(), FWD_NAME)).toBe(FWD_ADDR);

    // the host asks the zone's address too; then b stops and its name goes
    expect(await resolveIn(undefined, host as string, mb)).toEqual({ ok: [addrB] });
    b.child.stdin?.end('go\n');
    expect(await exitOf(b)).toBe(0);
    const stoppedAt = Date.now();
    await waitFor(async () => {
      const r = await resolveIn(undefined, host as string, mb, 'A', 500);
      return 'err' in r && r.err === 'ENOTFOUND';
    }, `${mb} gone from DNS`, 5_000, 50);
    expect(Date.now() - stoppedAt).toBeLessThan(1000);
    expect(await resolveIn(undefined, host as string, ma)).toEqual({ ok: [addrA] });
    a.child.stdin?.end('go\n');
    expect(await exitOf(a)).toBe(0);
  } finally {
    if (b) await stop(b);
    await stop(a);
    root.remove();
    await resolv.undo();
    await upstream.stop();
    await world.destroy();
  }
});

ktest('a Debian root booted with -b resolves machine and forwarded names with glibc (getent hosts)', async () => {
  const world = await World.create();
  const upstream = await Upstream.start(world);
  const resolv = await hostResolvConf([UPSTREAM]);
  const machine = `ddeb${process.pid}`;
  const p = nspawnTs(['-b', '-n', '--ephemeral', '-M', machine, '-D', await debianRoot(), 'systemd.wants=systemd-networkd.service'], OWN_DNS);
  try {
    const leader = await waitFor(() => machineLeader(machine), 'the container leader', 30_000);
    const inside = async (cmd: string[]): Promise<string> => (await exec('nsenter', ['-t', String(leader), '-a', ...cmd]).catch((e: { stdout?: string }) => ({ stdout: e.stdout ?? '' }))).stdout;
    const addr = await waitFor(async () => /inet (\S+)\//.exec(await inside(['ip', '-4', '-o', 'addr', 'show', 'dev', 'host0']))?.[1], 'host0 leased by networkd', 60_000, 200);
    expect(await inside(['getent', 'ahostsv4', machine])).toMatch(new RegExp(`^${addr.replace(/\./g, '\\.')}\\s+STREAM ${machine}`));
    expect(await inside(['getent', 'ahostsv4', `${machine}.machine`])).toMatch(new RegExp(`^${addr.replace(/\./g, '\\.')}\\s`));
    // glibc asks AAAA first: the address networkd formed by SLAAC from our advertisement
    const addr6 = await waitFor(async () => /inet6 (\S+)\//.exec(await inside(['ip', '-6', '-o', 'addr', 'show', 'dev', 'host0', 'scope', 'global']))?.[1], 'host0 SLAAC address', 30_000, 200);
    expect(await inside(['getent', 'hosts', machine])).toMatch(new RegExp(`^${addr6}\\s+${machine}`));
    expect(await inside(['getent', 'hosts', FWD_NAME])).toMatch(new RegExp(`^2001:db8::7\\s+${FWD_NAME}`)); // AAAA first, as glibc asks
    expect(await inside(['getent', 'ahostsv4', FWD_NAME])).toMatch(new RegExp(`^${FWD_ADDR.replace(/\./g, '\\.')}\\s+STREAM ${FWD_NAME}`));
    expect(await inside(['getent', 'hosts', `nothere${process.pid}`])).toBe('');
    p.child.kill('SIGTERM');
    expect(await exitOf(p, 60_000)).toBe(0);
  } finally {
    await stop(p);
    await resolv.undo();
    await upstream.stop();
    await world.destroy();
  }
}, 180_000);

ktest('the real systemd-nspawn on a zone our sidecar serves resolves our machine by name', async () => {
  const world = await World.create();
  const upstream = await Upstream.start(world);
  const resolv = await hostResolvConf([UPSTREAM]);
  const root = await copyRoot(await busyboxRoot());
  const sidecar = startProc(process.execPath, [NETD]);
  const cgroups = makeCgroups(`nspawn-ts-dns-${process.pid}`);
  const ours = `dso${process.pid}`;
  const theirs = `dst${process.pid}`;
  let p: Proc | undefined;
  let t: Proc | undefined;
  try {
    (await waitFor(() => NetdClient.connect(), 'the sidecar socket', 10_000, 20)).close();
    p = nspawnTs(['--network-zone=dsz', '-M', ours, '-D', root.dir, 'sh', '-c', 'ip -4 -o addr show host0; echo ready; read x'], OWN_DNS);
    await untilReady(p, ours);
    const addr = /inet (\d+\.\d+\.\d+\.\d+)\//.exec(p.output())?.[1];
    expect(addr).toBeDefined();
    t = systemdNspawn(cgroups, ['-P', '-D', root.dir, '-M', theirs, '--network-zone=dsz', '/bin/sh', '-c',
      `udhcpc -i host0 -f -q -n -t 5 -T 1 >/dev/null 2>&1; cat /etc/resolv.conf; nslookup ${ours}; nslookup ${FWD_NAME}`]);
    expect(await exitOf(t), t.output()).toBe(0);
    expect(looked(t.output(), ours)).toBe(addr);
    expect(looked(t.output(), FWD_NAME)).toBe(FWD_ADDR);
    expect(t.output()).toMatch(/nameserver \d+\.\d+\.\d+\.1\n/);
    p.child.stdin?.end('go\n');
    expect(await exitOf(p)).toBe(0);
  } finally {
    if (t) await stop(t);
    if (p) await stop(p);
    if (sidecar.child.exitCode === null) {
      sidecar.child.kill('SIGTERM');
      await sidecar.exited;
    }
    await removeCgroups(cgroups);
    root.remove();
    await resolv.undo();
    await upstream.stop();
    await world.destroy();
  }
});
