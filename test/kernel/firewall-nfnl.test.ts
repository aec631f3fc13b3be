// Port mappings' element changes go to the kernel as netlink batches of our own (nfnl.ts), not through
// libnftables (which re-reads the whole ruleset before every command): one sendto per change, no
// libnftables call, and the kernel ends up holding exactly what libnftables would have made; its
// errors (a taken port, a vanished table or element) still lead to the same outcomes.
import { afterEach, describe, expect, vi } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { Firewall, type PortMapping } from '../../src/net/firewall/index.js';
import { sys } from '../../src/native.js';

const m = (owner: string, hostPort: number, containerAddress: string, containerPort = 80, protocol: 'tcp' | 'udp' = 'tcp'): PortMapping =>
  ({ protocol, hostPort, containerAddress, containerPort, owner });

const mixed: PortMapping[] = [
  { ...m('alpha', 8080, '10.0.0.18'), loopback: true },
  m('alpha', 5353, '10.0.0.18', 53, 'udp'),
  m('zone:beta-1', 8080, 'fd00:1::2'),
  m('x', 65535, '2001:db8::ffff:1', 1),
];

/** The sets and maps of our table as libnftables lists them (handles left out). */
function setsOf(fw: Firewall): unknown[] {
  const listing = JSON.parse(fw.raw('list table inet nspawn-ts')) as { nftables: Array<Record<string, { handle?: number }>> };
  return listing.nftables.flatMap((o) => [o.set ?? o.map ?? []]).flat().map(({ handle: _h, ...rest }) => rest);
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('port mapping changes as netlink batches of our own', () => {
  ktest('adding and removing a mapping is one sendto each and no libnftables call, with 200 others in the table', async ({ netns }) => {
    const fw = new Firewall({ netnsFd: netns.fd });
    try {
      fw.ensureTables();
      for (let i = 0; i < 200; i++) fw.addPortMapping(m(`bg${i % 20}`, 20000 + i, `10.1.0.${i + 1}`));
      const nft = vi.spyOn(sys(), 'nftRun');
      const send = vi.spyOn(sys(), 'sendto');
      fw.addPortMapping({ ...m('web', 8080, '10.0.0.18'), loopback: true });
      expect(nft).not.toHaveBeenCalled();
      expect(send).toHaveBeenCalledTimes(1);
      fw.removePortMappings('web');
      expect(nft).not.toHaveBeenCalled();
      expect(send).toHaveBeenCalledTimes(2);
      vi.restoreAllMocks();
      const listed = await netns.exec('nft', ['list', 'table', 'inet', 'nspawn-ts']);
      expect(listed).not.toContain('web');
      expect(fw.state().ports).toHaveLength(200);
    } finally {
      fw.removeTables();
      fw.close();
    }
  });

  ktest('the kernel holds exactly what libnftables makes for the same mappings (IPv4, IPv6, loopback, owners)', async ({ netns }) => {
    const direct = new Firewall({ netnsFd: netns.fd });
    const viaLibnftables = new Firewall({ netnsFd: netns.fd, runner: (cmd) => sys().nftRun(cmd, { netnsFd: netns.fd }) });
    try {
      direct.ensureTables();
      for (const x of mixed) direct.addPortMapping(x);
      const ours = setsOf(direct);
      direct.removeTables();
      viaLibnftables.ensureTables();
      for (const x of mixed) viaLibnftables.addPortMapping(x);
      expect(ours).toEqual(setsOf(viaLibnftables));
      expect(JSON.stringify(ours)).toContain('"comment":"zone:beta-1"');
    } finally {
      viaLibnftables.removeTables();
      direct.close();
      viaLibnftables.close();
    }
  });

  ktest('the kernel\'s answers keep their meaning: a taken port, a flushed ruleset, an element gone behind our back', async ({ netns }) => {
    const fw = new Firewall({ netnsFd: netns.fd });
    try {
      fw.ensureTables();
      fw.addPortMappings([m('web', 8080, '10.0.0.18'), m('web', 8443, '10.0.0.18', 443)]);
      // EEXIST from the kernel → the port's holder is named
      expect(() => fw.addPortMapping(m('other', 8080, '10.0.0.34'))).toThrow(/tcp port 8080 is already forwarded to 10\.0\.0\.18:80 for web/);
      // the same again is a no-op; the same owner with a new address replaces it
      fw.addPortMapping(m('web', 8080, '10.0.0.18'));
      fw.addPortMapping(m('web', 8080, '10.0.0.19'));
      expect(fw.state().ports.map((p) => `${p.hostPort}→${p.containerAddress}`).sort()).toEqual(['8080→10.0.0.19', '8443→10.0.0.18']);
      // ENOENT (the table went away) → re-created, what we had added restored
      await netns.exec('nft', ['flush', 'ruleset']);
      fw.addPortMapping(m('db', 5432, '10.0.0.50', 5432));
      expect(fw.state().ports.map((p) => p.hostPort).sort()).toEqual([5432, 8080, 8443]);
      // ENOENT for a deleted element → the rest is removed through the listing
      await netns.exec('nft', ['delete', 'element', 'inet', 'nspawn-ts', 'ports4', '{ tcp . 8443 }']);
      expect(fw.removePortMappings('web').map((p) => p.hostPort)).toEqual([8080]);
      expect(fw.state().ports.map((p) => p.owner)).toEqual(['db']);
    } finally {
      fw.removeTables();
      fw.close();
    }
  });
});
