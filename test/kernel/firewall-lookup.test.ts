// Port mappings found by key, not by listing the table: a DEL in a new process removes an owner's
// mappings by the host ports its record names (lookups, then one delete), and a port check asks the
// kernel only about the ports it checks — both cost the same with 1 or thousands of other mappings.
// Where the kernel differs from the record (what a crash leaves), the listing still removes
// everything of the owner, and never anything of another owner.
import { afterEach, describe, expect, vi } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { Firewall, type PortMapping } from '../../src/net/firewall/index.js';
import { elementLine } from '../../src/net/firewall/rules.js';
import { foreignPortClashes } from '../../src/net/netd/ports.js';
import { sys } from '../../src/native.js';

const m = (owner: string, hostPort: number, containerAddress: string, containerPort = 80, protocol: 'tcp' | 'udp' = 'tcp'): PortMapping =>
  ({ protocol, hostPort, containerAddress, containerPort, owner });

/** `n` mappings of other owners (one each), added in batches. */
function fill(fw: Firewall, n: number): void {
  const all = Array.from({ length: n }, (_, i) => m(`c${i}`, 20000 + i, `10.${(i >> 14) + 1}.${(i >> 6) & 255}.${(i & 63) + 1}`));
  for (let i = 0; i < all.length; i += 500) fw.addPortMappings(all.slice(i, i + 500));
}

/** The table's elements as sorted lines (a settled listing: Firewall.elements(), settle.ts). */
function elementLines(fw: Firewall): string[] {
  return fw.elements().map(elementLine).sort();
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('removing an owner by its recorded host ports', () => {
  ktest('a new instance (a DEL\'s) removes them with the same three sendto and no listing, with 1 or 2,000 other mappings', async ({ netns }) => {
    for (const others of [1, 2000]) {
      const setup = new Firewall({ netnsFd: netns.fd });
      const fw = new Firewall({ netnsFd: netns.fd });
      try {
        setup.ensureTables();
        fill(setup, others);
        setup.addPortMappings([
          { ...m('web', 8080, '10.0.0.18'), loopback: true }, m('web', 5353, '10.0.0.18', 53, 'udp'), m('web', 8080, 'fd00:1::18'),
        ]);
        const before = elementLines(setup).filter((l) => !l.endsWith(' web'));
        const nft = vi.spyOn(sys(), 'nftRun');
        const send = vi.spyOn(sys(), 'sendto');
        const removed = fw.removePortMappings('web', [{ protocol: 'tcp', hostPort: 8080 }, { protocol: 'udp', hostPort: 5353 }]);
        // the keys' map entries looked up, then their hairpins, then one delete batch
        expect(nft).not.toHaveBeenCalled();
        expect(send).toHaveBeenCalledTimes(3);
        vi.restoreAllMocks();
        expect(removed.map((p) => `${p.protocol} ${p.hostPort} ${p.containerAddress}${p.loopback ? ' lo' : ''}`).sort())
          .toEqual(['tcp 8080 10.0.0.18 lo', 'tcp 8080 fd00:1::18', 'udp 5353 10.0.0.18']);
        // nothing of web is left (map, loopback and hairpin entries), everything else is as it was
        expect(elementLines(setup)).toEqual(before);
        expect(before).toHaveLength(others * 2);
      } finally {
        setup.removeTables();
        setup.close();
        fw.close();
      }
    }
  });

  ktest('the record and the kernel differ (a crash): everything of the owner goes through the listing, nothing of another owner', async ({ netns }) => {
    const setup = new Firewall({ netnsFd: netns.fd });
    const fw = new Firewall({ netnsFd: netns.fd });
    try {
      setup.ensureTables();
      fill(setup, 50);
      // web forwards 8080 and (unrecorded: left by a crash) 9090; 8081, which web's record names, is other's
      setup.addPortMappings([m('web', 8080, '10.0.0.18'), m('web', 9090, '10.0.0.18', 90)]);
      setup.addPortMapping(m('other', 8081, '10.0.0.34'));
      const others = elementLines(setup).filter((l) => !l.endsWith(' web'));
      const nft = vi.spyOn(sys(), 'nftRun');
      const removed = fw.removePortMappings('web', [{ protocol: 'tcp', hostPort: 8080 }, { protocol: 'tcp', hostPort: 8081 }]);
      expect(nft).toHaveBeenCalled(); // the listing
      vi.restoreAllMocks();
      expect(removed.map((p) => p.hostPort).sort()).toEqual([8080, 9090]);
      expect(elementLines(setup)).toEqual(others);
      expect(others).toContain('ports4 tcp . 8081 : 10.0.0.34 . 80 other');

      // a recorded port whose entry is gone (the mapping was never made): the listing finds the rest
      setup.addPortMappings([m('web', 8080, '10.0.0.18'), m('web', 9090, '10.0.0.18', 90)]);
      expect(fw.removePortMappings('web', [{ protocol: 'tcp', hostPort: 7070 }, { protocol: 'tcp', hostPort: 8080 }]).map((p) => p.hostPort).sort())
        .toEqual([8080, 9090]);
      expect(elementLines(setup)).toEqual(others);
      // a record without ports: nothing to look up, nothing removed, no listing
      const nft2 = vi.spyOn(sys(), 'nftRun');
      expect(fw.removePortMappings('other', [])).toEqual([]);
      expect(nft2).not.toHaveBeenCalled();
    } finally {
      setup.removeTables();
      setup.close();
      fw.close();
    }
  });

  ktest('a hairpin entry another owner holds stays with it', async ({ netns }) => {
    const setup = new Firewall({ netnsFd: netns.fd });
    const fw = new Firewall({ netnsFd: netns.fd });
    try {
      setup.ensureTables();
      // old (a stale owner) targeted 10.0.0.18 first: the hairpin entry names it; web targets the address too
      setup.addPortMapping(m('old', 7000, '10.0.0.18'));
      setup.addPortMapping(m('web', 8080, '10.0.0.18'));
      expect(fw.removePortMappings('web', [{ protocol: 'tcp', hostPort: 8080 }]).map((p) => p.hostPort)).toEqual([8080]);
      expect(elementLines(setup)).toEqual(['hairpin4 10.0.0.18 . 10.0.0.18 old', 'ports4 tcp . 7000 : 10.0.0.18 . 80 old']);
    } finally {
      setup.removeTables();
      setup.close();
      fw.close();
    }
  });
});

describe('port checks by key', () => {
  ktest('portMappingsAt and foreignPortClashes read only the asked ports (no listing), both families, absent tables hold nothing', async ({ netns }) => {
    const ours = new Firewall({ netnsFd: netns.fd });
    const cni = new Firewall({ netnsFd: netns.fd, table: 'nspawn-cni' });
    try {
      const tcp = (hostPort: number) => ({ protocol: 'tcp' as const, hostPort, hostPortEnd: hostPort, containerPort: 80, containerPortEnd: 80 });
      expect(ours.portMappingsAt([{ protocol: 'tcp', hostPort: 8080 }])).toEqual([]);
      expect(foreignPortClashes([tcp(8080)], { netnsFd: netns.fd })).toEqual([]);
      ours.ensureTables();
      cni.ensureTables();
      fill(ours, 1000);
      fill(cni, 1000);
      ours.addPortMapping(m('web', 8080, 'fd00:1::18'));
      cni.addPortMapping(m('cni:net/pod', 8443, '198.51.100.7', 443));
      await netns.exec('nft', ['-f', '-'], {
        input: 'table ip io.systemd.nat {\n map map_port_ipport { type inet_proto . inet_service : ipv4_addr . inet_service; elements = { udp . 53 : 10.0.0.24 . 53 } }\n}\n',
      });
      const nft = vi.spyOn(sys(), 'nftRun');
      expect(ours.portMappingsAt([{ protocol: 'tcp', hostPort: 8080 }, { protocol: 'tcp', hostPort: 8443 }, { protocol: 'tcp', hostPort: 20005 }]))
        .toEqual([m('web', 8080, 'fd00:1::18'), m('c5', 20005, '10.1.0.6')]);
      expect(foreignPortClashes([tcp(8080), tcp(8443), { ...tcp(53), protocol: 'udp' }], { netnsFd: netns.fd }).sort((a, b) => a.hostPort - b.hostPort)).toEqual([
        { protocol: 'udp', hostPort: 53, target: '10.0.0.24:53', holder: 'a systemd-nspawn container (table ip io.systemd.nat)' },
        { protocol: 'tcp', hostPort: 8443, target: '198.51.100.7:443', holder: 'cni:net/pod (table inet nspawn-cni)' },
      ]);
      expect(nft).not.toHaveBeenCalled();
    } finally {
      vi.restoreAllMocks();
      await netns.exec('nft', ['delete', 'table', 'ip', 'io.systemd.nat']).catch(() => undefined);
      ours.removeTables();
      cni.removeTables();
      ours.close();
      cni.close();
    }
  });
});
