// A Debian root booted with `nspawn-ts -b -n` and systemd-networkd enabled inside: the container's
// own networkd (80-container-host0.network) leases host0 from the DHCP server the launcher runs
// in-process — no sidecar, no networkd on the host — and reaches the remote through the masquerade.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { run, waitFor } from '../helpers/exec.js';
import { machineLeader } from '../helpers/nspawn.js';
import { debianRoot } from '../helpers/rootfs.js';
import { NetdClient } from '../../src/net/netd/client.js';
import { HOST_UPLINK, REMOTE, World, assertNothingLeftFor, exitOf, nspawnTs } from './e2e-world.js';

const exec = promisify(execFile);

ktest('nspawn-ts -b -n: networkd inside leases host0 from the embedded server; the remote is reached; nothing left after poweroff', async () => {
  expect(await NetdClient.connect()).toBeUndefined(); // no sidecar
  const root = await debianRoot();
  const world = await World.create();
  const machine = `deb-${process.pid}`;
  const p = nspawnTs(['-b', '-n', '--ephemeral', '-M', machine, '-D', root, 'systemd.wants=systemd-networkd.service']);
  try {
    const leader = await waitFor(() => machineLeader(machine), 'the container leader', 30_000);
    const inside = (cmd: string[]): Promise<string> => exec('nsenter', ['-t', String(leader), '-n', ...cmd]).then((r) => r.stdout);
    const addr = await waitFor(async () => /inet (\S+)/.exec(await inside(['ip', '-4', '-o', 'addr', 'show', 'dev', 'host0']))?.[1], 'host0 leased by networkd', 60_000, 200);
    expect(addr).toMatch(/\/28$/);
    const routes = await inside(['ip', '-4', 'route']);
    expect(routes).toMatch(/^default via \S+ dev host0 proto dhcp/m);
    // the lease came from DHCP (networkd's "dynamic" address), not from a static configuration
    expect(await inside(['ip', '-4', '-o', 'addr', 'show', 'dev', 'host0'])).toMatch(/dynamic/);
    // and it works: the remote sees the host
    const r = await run('nsenter', ['-t', String(leader), '-n', 'sh', '-c', `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 5 bash -c 'exec 3<>/dev/tcp/${REMOTE}/80; cat >&3; cat <&3'`]);
    expect(r.stdout).toContain(`remote-ok ${HOST_UPLINK}`);
    p.child.kill('SIGTERM'); // poweroff
    expect(await exitOf(p, 60_000)).toBe(0);
    const [a, len] = (addr as string).split('/') as [string, string];
    const last = Number(a.split('.')[3]) & ~15;
    expect(await assertNothingLeftFor(machine, `${a.split('.').slice(0, 3).join('.')}.${last}/${len}`)).toEqual([]);
  } finally {
    if (p.child.exitCode === null) {
      p.child.kill('SIGKILL');
      await p.exited;
    }
    await world.destroy();
  }
}, 180_000);
