// The firewall's port-forwarding operations as a container's start and end use them, against the
// real kernel in the test's namespace: a container's mappings added in one transaction (all or
// none), and removed in one transaction from what the instance added — without listing the table —
// falling back to the listing when the kernel's table and the instance's memory differ.
import { readFileSync } from 'node:fs';
import { describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import type { TestNetns } from '../helpers/netns.js';
import { Firewall, NftError, type PortMapping } from '../../src/net/firewall/index.js';
import { sys } from '../../src/native.js';
import { goldenPath } from '../unit/net/golden.js';

/** A Firewall in `ns` that records every command it sends to libnftables. */
function recording(ns: TestNetns): { fw: Firewall; commands: string[] } {
  const commands: string[] = [];
  const fw = new Firewall({
    netnsFd: ns.fd,
    runner: (cmd) => {
      commands.push(cmd);
      return sys().nftRun(cmd, { netnsFd: ns.fd });
    },
  });
  return { fw, commands };
}

const m = (owner: string, hostPort: number, containerAddress: string, containerPort = 80, protocol: 'tcp' | 'udp' = 'tcp'): PortMapping =>
  ({ protocol, hostPort, containerAddress, containerPort, owner });

async function table(ns: TestNetns): Promise<string> {
  return ns.exec('nft', ['list', 'table', 'inet', 'nspawn-ts']);
}

describe('port mappings of a container', () => {
  ktest('removal is one transaction of known elements, with no listing, and spares every other owner', async ({ netns }) => {
    const { fw, commands } = recording(netns);
    fw.ensureTables();
    fw.addPortMappings([m('web', 8080, '10.0.0.18'), m('web', 5353, '10.0.0.18', 53, 'udp'), { ...m('web', 8443, '10.0.0.18', 443), loopback: true },
      m('web', 8080, 'fd00:1::2')]);
    for (let i = 0; i < 50; i++) fw.addPortMapping(m(`other${i}`, 20000 + i, `10.0.1.${i + 1}`));
    const before = fw.elements().filter((e) => e.owner !== 'web');
    commands.length = 0;
    const removed = fw.removePortMappings('web');
    expect(commands).toHaveLength(1);
    expect(commands[0]).not.toMatch(/^list/);
    expect(JSON.parse(commands[0] as string).nftables.every((c: object) => 'delete' in c)).toBe(true);
    expect(removed.map((r) => `${r.protocol}/${r.hostPort}/${r.containerAddress}`).sort())
      .toEqual(['tcp/8080/10.0.0.18', 'tcp/8080/fd00:1::2', 'tcp/8443/10.0.0.18', 'udp/5353/10.0.0.18']);
    const after = await table(netns);
    expect(after).not.toContain('"web"');
    expect(after).not.toContain('10.0.0.18');
    expect(after).not.toContain('fd00:1::2');
    // the others: exactly as before
    expect(fw.elements()).toEqual(before);
    expect(fw.state().ports).toHaveLength(50);
    // a second removal has nothing known: it looks (the owner may have been added by another process),
    // with a settled listing: through a test runner (no dumps of its own to confirm it), two in a row
    commands.length = 0;
    expect(fw.removePortMappings('web')).toEqual([]);
    expect(commands).toEqual(['list table inet nspawn-ts', 'list table inet nspawn-ts']);
    fw.removeTables();
  });

  ktest('when an element went behind its back, removal falls back to the listing and removes the rest', async ({ netns }) => {
    const { fw, commands } = recording(netns);
    fw.ensureTables();
    fw.addPortMappings([m('web', 8080, '10.0.0.18'), m('web', 8081, '10.0.0.18', 81)]);
    await netns.exec('nft', ['delete element inet nspawn-ts ports4 { tcp . 8080 }']);
    commands.length = 0;
    // what was still there is removed (and reported)
    expect(fw.removePortMappings('web').map((r) => r.hostPort)).toEqual([8081]);
    expect(commands.length).toBeGreaterThan(1);
    expect(commands.some((c) => c.startsWith('list'))).toBe(true);
    expect(fw.state()).toEqual({ masquerade: [], ports: [] });
    expect(await table(netns)).not.toContain('10.0.0.18');
    fw.removeTables();
  });

  ktest('mappings added by another instance (a restarted sidecar) are found by listing; a shared address keeps its hairpin', async ({ netns }) => {
    const first = new Firewall({ netnsFd: netns.fd });
    first.ensureTables();
    first.addPortMappings([m('web', 8080, '10.0.0.18'), m('web', 8081, '10.0.0.18', 81)]);
    const second = new Firewall({ netnsFd: netns.fd });
    expect(second.removePortMappings('web').map((r) => r.hostPort).sort()).toEqual([8080, 8081]);
    expect(second.state().ports).toEqual([]);
    // two owners targeting one address: removing one keeps the hairpin entry for the other
    second.addPortMapping(m('a', 1000, '10.0.0.50'));
    second.addPortMapping(m('b', 1001, '10.0.0.50'));
    second.removePortMappings('a');
    const text = await table(netns);
    expect(text).toContain('10.0.0.50 . 10.0.0.50 comment "b"');
    expect(text).not.toContain('"a"');
    second.removePortMappings('b');
    expect(await table(netns)).not.toContain('10.0.0.50');
    second.removeTables();
  });

  ktest('a container\'s mappings are added all or none: a clash names every taken port and changes nothing', async ({ netns }) => {
    const fw = new Firewall({ netnsFd: netns.fd });
    fw.ensureTables();
    fw.addPortMapping(m('db', 5432, '10.0.0.34', 5432));
    fw.addPortMapping(m('dns', 53, '10.0.0.50', 53, 'udp'));
    const before = await table(netns);
    let err: unknown;
    try {
      fw.addPortMappings([m('web', 8080, '10.0.0.18'), m('web', 5432, '10.0.0.18', 5432), m('web', 53, '10.0.0.18', 53, 'udp')]);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NftError);
    expect(err).toMatchObject({ code: 'NFT_PORT_IN_USE', errno: 'EEXIST' });
    expect((err as Error).message).toContain('tcp port 5432 is already forwarded to 10.0.0.34:5432 for db');
    expect((err as Error).message).toContain('udp port 53 is already forwarded to 10.0.0.50:53 for dns');
    expect(await table(netns)).toBe(before);
    // the same owner again (a new run of the machine with a new address): replaced, not refused
    fw.addPortMappings([m('web', 8080, '10.0.0.18'), m('web', 8081, '10.0.0.18', 81)]);
    fw.addPortMappings([m('web', 8080, '10.0.0.19'), m('web', 8081, '10.0.0.19', 81)]);
    const text = await table(netns);
    expect(text).toContain('tcp . 8080 comment "web" : 10.0.0.19 . 80');
    expect(text).toContain('tcp . 8081 comment "web" : 10.0.0.19 . 81');
    expect(text).not.toContain('10.0.0.18');
    expect(fw.removePortMappings('web')).toHaveLength(2);
    expect(fw.state().ports.map((p) => p.owner).sort()).toEqual(['db', 'dns']);
    fw.removeTables();
  });

  ktest('the batch golden document is accepted by libnftables', async ({ netns }) => {
    const fw = new Firewall({ netnsFd: netns.fd });
    fw.ensureTables();
    const r = sys().nftRun(readFileSync(goldenPath('add-port-mappings-batch.json'), 'utf8'), { netnsFd: netns.fd });
    expect(r.error).toBe('');
    expect(r.rc).toBe(0);
    expect(fw.state().ports).toHaveLength(3);
    fw.removeTables();
  });
});
