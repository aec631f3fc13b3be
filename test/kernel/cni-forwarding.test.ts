// Forwarding on nspawn-cni's networks: turned on while a container needs it, put back to what it was
// when the last one goes. Networks whose addresses an ipam plugin gives (host-local here) and pool
// networks (served links) share one record of the values before, in the library's state: forwarding
// goes back only when neither has a container left, whichever ends last.
import { readFileSync, writeFileSync } from 'node:fs';
import { describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { TestNetns } from '../helpers/netns.js';
import { netdState } from './e2e-world.js';
import { cni, cniSuite, leftovers, network, ok, work } from './cni-env.js';

cniSuite();

const IP_FORWARD = '/proc/sys/net/ipv4/ip_forward';
const IP6_FORWARD = '/proc/sys/net/ipv6/conf/all/forwarding';
const read = (path: string): string => readFileSync(path, 'utf8').trim();
/** [IPv4, IPv6] forwarding of the test run's (private) network namespace */
const forwarding = (): string[] => [read(IP_FORWARD), read(IP6_FORWARD)];

/** Runs `fn` with both forwarding sysctls 0 at its start; puts back the values before after it. */
async function fromOff(fn: () => Promise<void>): Promise<void> {
  const before = forwarding();
  writeFileSync(IP_FORWARD, '0\n');
  writeFileSync(IP6_FORWARD, '0\n');
  try {
    await fn();
  } finally {
    writeFileSync(IP_FORWARD, `${before[0] ?? '0'}\n`);
    writeFileSync(IP6_FORWARD, `${before[1] ?? '0'}\n`);
  }
}

/** What the state keeps about forwarding (nothing once it is put back). */
function record(stateDir: string): Record<string, unknown> {
  const st = netdState(stateDir) as unknown as Record<string, unknown>;
  return Object.fromEntries(['ipForwardBefore', 'ip6ForwardBefore', 'forwardingUsers'].filter((k) => st[k] !== undefined).map((k) => [k, st[k]]));
}

describe('nspawn-cni forwarding', () => {
  ktest('an ipam network turns IPv4 and IPv6 forwarding on while it has a container and puts both back after the last DEL', async () => {
    const c1 = await TestNetns.create('c1');
    const c2 = await TestNetns.create('c2');
    const net = network('1.0.0', {
      ipam: { type: 'host-local', ranges: [[{ subnet: '198.51.100.0/24' }], [{ subnet: '2001:db8:3::/64' }]], dataDir: `${work}/hl-fwd` },
    }, 'fwdipam');
    try {
      await fromOff(async () => {
        await ok(cni(net, 'add', c1, 'cid-f1'));
        expect(forwarding()).toEqual(['1', '1']);
        await ok(cni(net, 'add', c2, 'cid-f2'));
        await ok(cni(net, 'del', c1, 'cid-f1'));
        expect(forwarding()).toEqual(['1', '1']); // c2 still needs it
        await ok(cni(net, 'del', c2, 'cid-f2'));
        expect(forwarding()).toEqual(['0', '0']);
        expect(record(net.stateDir)).toEqual({});
        await ok(cni(net, 'del', c2, 'cid-f2'));
        expect(forwarding()).toEqual(['0', '0']);
        expect(await leftovers(net)).toEqual([]);
      });
    } finally {
      await cni(net, 'del', c1, 'cid-f1');
      await cni(net, 'del', c2, 'cid-f2');
      await c1.destroy();
      await c2.destroy();
    }
  }, 120_000);

  ktest('a pool network and an ipam network on one host: forwarding stays on while either has a container and goes back after the last, in both orders', async () => {
    const cp = await TestNetns.create('cp');
    const ci = await TestNetns.create('ci');
    const pool = network('1.0.0', {}, 'fwdpool');
    // the same state directory, as both have on a host (the library's)
    const ipam = network('1.0.0', { stateDir: pool.stateDir, ipam: { type: 'host-local', ranges: [[{ subnet: '198.51.100.0/24' }]], dataDir: `${work}/hl-mixed` } }, 'fwdmixed');
    const del = async (): Promise<void> => {
      await cni(pool, 'del', cp, 'cid-p');
      await cni(ipam, 'del', ci, 'cid-i');
    };
    try {
      await fromOff(async () => {
        // the pool network first, and first to go: the ipam network's container keeps forwarding on
        await ok(cni(pool, 'add', cp, 'cid-p'));
        expect(forwarding()).toEqual(['1', '1']);
        await ok(cni(ipam, 'add', ci, 'cid-i'));
        await ok(cni(pool, 'del', cp, 'cid-p'));
        expect(forwarding()).toEqual(['1', '1']);
        expect(record(pool.stateDir)).toEqual({ ipForwardBefore: '0', ip6ForwardBefore: '0', forwardingUsers: ['cni:fwdmixed'] });
        await ok(cni(ipam, 'del', ci, 'cid-i'));
        expect(forwarding()).toEqual(['0', '0']);
        expect(record(pool.stateDir)).toEqual({});

        // the ipam network first (it turns on IPv4's only), and first to go: the pool network's container keeps it on
        await ok(cni(ipam, 'add', ci, 'cid-i'));
        expect(forwarding()).toEqual(['1', '0']);
        await ok(cni(pool, 'add', cp, 'cid-p'));
        expect(forwarding()).toEqual(['1', '1']);
        await ok(cni(ipam, 'del', ci, 'cid-i'));
        expect(forwarding()).toEqual(['1', '1']);
        await ok(cni(pool, 'del', cp, 'cid-p'));
        expect(forwarding()).toEqual(['0', '0']);
        expect(record(pool.stateDir)).toEqual({});
        expect(await leftovers(pool)).toEqual([]);
        expect(await leftovers(ipam)).toEqual([]);
      });
    } finally {
      await del();
      await cp.destroy();
      await ci.destroy();
    }
  }, 120_000);
});
