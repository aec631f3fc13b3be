// The launcher's network subsystem input that is not a flag: a bad $NSPAWN_NETD_DNS fails the start
// with a message naming the variable and the entry, before anything of the container exists.
import { describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { run } from '../helpers/exec.js';
import { machineRecords } from '../helpers/nspawn.js';
import { busyboxRoot } from '../helpers/rootfs.js';
import { exitOf, nspawnTs } from './e2e-world.js';

describe('bin/nspawn-ts -n: subsystem settings from the environment', () => {
  ktest('a bad $NSPAWN_NETD_DNS is refused before anything is made', async () => {
    const machine = `dns${process.pid}`;
    const p = nspawnTs(['-D', await busyboxRoot(), '-M', machine, '-n', '/bin/true'], { NSPAWN_NETD_DNS: '192.0.2.53,resolver.example' });
    expect(await exitOf(p)).toBe(1);
    expect(p.output()).toContain('$NSPAWN_NETD_DNS: "resolver.example" is not an IP address (IPv4 DNS servers are handed out by DHCP, IPv6 ones in router advertisements)');
    expect(machineRecords()).not.toContain(machine);
    expect((await run('ip', ['link', 'show', `ve-${machine}`])).code).not.toBe(0);
    expect((await run('nft', ['list', 'table', 'inet', 'nspawn-ts'])).code).not.toBe(0);
  });
});
