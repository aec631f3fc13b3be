// The layout and masquerade checks (FirewallTable.ensure() and masqueraded(): every in-process CNI
// ADD, embedded launcher start and sidecar one-shot) read our table with nf_tables dumps of our own
// (src/net/firewall/nfnl-dump.ts) that carry no map elements: no libnftables call, and the same
// bytes read at 1 and at 10,000 port mappings. A table missing a chain, a rule, a set or a
// masquerade element is still found out, and repaired as before.
import { afterEach, describe, expect, vi } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import type { TestNetns } from '../helpers/netns.js';
import { Firewall, type PortMapping } from '../../src/net/firewall/index.js';
import { FirewallTable } from '../../src/net/netd/firewall-table.js';
import type { SubsystemCore } from '../../src/net/netd/core.js';
import { sys } from '../../src/native.js';

afterEach(() => {
  vi.restoreAllMocks();
});

/** A FirewallTable as an embedded launcher (or a CNI ADD without the sidecar) has it. */
function tableOf(fw: Firewall): FirewallTable {
  return new FirewallTable({ mode: 'embedded', oneShot: false, firewall: fw } as unknown as SubsystemCore);
}

function mappings(n: number): PortMapping[] {
  return Array.from({ length: n }, (_, i) => ({
    protocol: i % 2 ? 'udp' : 'tcp', hostPort: 1024 + Math.floor(i / 2), containerAddress: `10.${100 + (i >> 16)}.${(i >> 8) & 255}.${(i & 255) || 1}`,
    containerPort: 80, owner: `c${i % 97}`,
  }));
}

/** ensure() + masqueraded() on a fresh FirewallTable: libnftables calls, bytes read, the subnets. */
function check(fw: Firewall): { nft: number; bytes: number; recvs: number; subnets: string[] } {
  const nft = vi.spyOn(sys(), 'nftRun');
  const recv = vi.spyOn(sys(), 'recv');
  const t = tableOf(fw);
  t.ensure();
  const subnets = t.masqueraded();
  const bytes = recv.mock.results.reduce((n, r) => n + Math.max(0, r.value as number), 0);
  const out = { nft: nft.mock.calls.length, bytes, recvs: recv.mock.calls.length, subnets };
  vi.restoreAllMocks();
  return out;
}

async function ruleHandle(netns: TestNetns, chain: string, text: string): Promise<string> {
  const listed = await netns.exec('nft', ['-a', 'list', 'chain', 'inet', 'nspawn-ts', chain]);
  const line = listed.split('\n').find((l) => l.includes(text));
  const handle = /# handle (\d+)/.exec(line ?? '')?.[1];
  if (!handle) throw new Error(`no rule with "${text}" in chain ${chain}:\n${listed}`);
  return handle;
}

describe('the layout and masquerade checks read our table without its elements', () => {
  ktest('with 10,000 port mappings, ensure() and masqueraded() make no libnftables call and read what they read at 1', async ({ netns }) => {
    const fw = new Firewall({ netnsFd: netns.fd });
    try {
      fw.ensureTables();
      fw.addMasquerade('10.0.0.16/28', 'zone:a');
      fw.addMasquerade('fd00:1::/64', 'zone:a');
      fw.addPortMapping(mappings(1)[0] as PortMapping);
      const one = check(fw);
      expect(one.nft).toBe(0);
      expect(one.subnets.sort()).toEqual(['10.0.0.16/28', 'fd00:1::/64']);
      const all = mappings(10_000);
      for (let i = 1; i < all.length; i += 250) fw.addPortMappings(all.slice(i, i + 250));
      expect(fw.state().ports).toHaveLength(10_000);
      const many = check(fw);
      expect(many.nft).toBe(0);
      expect(many.subnets.sort()).toEqual(['10.0.0.16/28', 'fd00:1::/64']);
      // the same dumps with the same answers: nothing of the 30,000 elements is read
      expect(many.bytes).toBe(one.bytes);
      expect(many.recvs).toBe(one.recvs);
      expect(many.bytes).toBeLessThan(16 * 1024);
    } finally {
      fw.removeTables();
      fw.close();
    }
  });

  ktest('the layout and the masquerade entries are those libnftables lists', async ({ netns }) => {
    const fw = new Firewall({ netnsFd: netns.fd });
    const viaLibnftables = new Firewall({ netnsFd: netns.fd, runner: (cmd) => sys().nftRun(cmd, { netnsFd: netns.fd }) });
    try {
      expect(fw.layout()).toBeUndefined();
      expect(fw.masquerade()).toEqual([]);
      fw.ensureTables();
      expect(fw.masquerade()).toEqual([]);
      // a /32, prefixes at both ends of the address space (the top one has no end element), IPv6
      for (const [subnet, owner] of [['10.0.0.16/28', 'zone:a'], ['192.0.2.1/32', 'b'], ['255.255.255.0/24', undefined], ['0.0.0.0/8', 'low'],
        ['fd00:1::/64', 'zone:a'], ['2001:db8::1/128', 'c'], ['ffff::/16', 'top6']] as const) {
        fw.addMasquerade(subnet, owner);
      }
      // a range someone added by hand is not a subnet of ours: left out as the listing leaves it out
      await netns.exec('nft', ['add', 'element', 'inet', 'nspawn-ts', 'masq4', '{ 198.51.100.10-198.51.100.20 }']);
      const sort = (xs: Array<{ subnet: string; owner?: string }>): Array<{ subnet: string; owner?: string }> => [...xs].sort((a, b) => a.subnet.localeCompare(b.subnet));
      expect(sort(fw.masquerade())).toEqual(sort(viaLibnftables.state().masquerade));
      expect(fw.masquerade()).toHaveLength(7);
      expect(fw.layout()).toEqual(viaLibnftables.layout());
      expect(fw.layout()?.rules.get('postrouting')).toBe(5);
    } finally {
      fw.removeTables();
      fw.close();
      viaLibnftables.close();
    }
  });

  ktest('chains of other tables with the same names are not ours', async ({ netns }) => {
    const fw = new Firewall({ netnsFd: netns.fd });
    try {
      await netns.exec('nft', ['add table inet other; add chain inet other input { type filter hook input priority 0; }; add rule inet other input accept; add set inet other masq4 { type ipv4_addr; }']);
      expect(fw.layout()).toBeUndefined();
      fw.ensureTables();
      expect(fw.layout()?.rules.get('input')).toBe(1);
    } finally {
      fw.removeTables();
      await netns.exec('nft', ['delete table inet other']);
      fw.close();
    }
  });

  ktest('a table missing a chain, a rule or a set is found incomplete and rewritten; a missing masquerade element is seen', async ({ netns }) => {
    const fw = new Firewall({ netnsFd: netns.fd });
    const complete = (): boolean => {
      const nft = vi.spyOn(sys(), 'nftRun');
      tableOf(fw).ensure();
      const rewrote = nft.mock.calls.length > 0;
      vi.restoreAllMocks();
      return !rewrote;
    };
    try {
      expect(complete()).toBe(false); // no table: made
      expect(complete()).toBe(true);
      fw.addMasquerade('10.0.0.16/28', 'zone:a');
      fw.addPortMapping(mappings(1)[0] as PortMapping);
      await netns.exec('nft', ['delete chain inet nspawn-ts input']);
      expect(complete()).toBe(false);
      expect(fw.layout()?.chains.has('input')).toBe(true);
      expect(complete()).toBe(true);
      await netns.exec('nft', ['delete rule inet nspawn-ts forward handle', await ruleHandle(netns, 'forward', 'ct status dnat accept')]);
      expect(complete()).toBe(false);
      expect(complete()).toBe(true);
      // a rule more (someone's own) is not our layout either
      await netns.exec('nft', ['add rule inet nspawn-ts output accept']);
      expect(complete()).toBe(false);
      expect(fw.layout()?.rules.get('output')).toBe(3);
      // every set is used by a rule: the rule goes first
      await netns.exec('nft', ['delete rule inet nspawn-ts postrouting handle', await ruleHandle(netns, 'postrouting', '@hairpin6')]);
      await netns.exec('nft', ['delete set inet nspawn-ts hairpin6']);
      expect(fw.layout()?.sets.has('hairpin6')).toBe(false);
      expect(complete()).toBe(false);
      expect(fw.layout()?.sets.has('hairpin6')).toBe(true);
      expect(complete()).toBe(true);
      // elements survive the rewrites
      expect(fw.state().ports).toHaveLength(1);
      expect(tableOf(fw).masqueraded()).toEqual(['10.0.0.16/28']);
      await netns.exec('nft', ['delete element inet nspawn-ts masq4 { 10.0.0.16/28 }']);
      expect(tableOf(fw).masqueraded()).toEqual([]);
    } finally {
      fw.removeTables();
      fw.close();
    }
  });
});
