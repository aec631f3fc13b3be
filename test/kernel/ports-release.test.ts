// A machine's ports go by its record: a process that did not add them (nspawn-cni's DEL without a
// sidecar opens the subsystem as a one-shot) removes them by the host ports of the reservation, with
// key lookups — never a listing of the table, whose size is every other container's mappings.
import { mkdtempSync, rmSync } from 'node:fs';
import { afterEach, describe, expect, vi } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { run, runOk } from '../helpers/exec.js';
import { TestNetns } from '../helpers/netns.js';
import { NetworkSubsystem } from '../../src/net/netd/subsystem.js';
import { shortenIfname } from '../../src/net/naming.js';
import { parsePortSpec } from '../../src/net/port-spec.js';
import { Firewall } from '../../src/net/firewall/index.js';
import { sys } from '../../src/native.js';

afterEach(() => {
  vi.restoreAllMocks();
});

async function nspawnVeth(machine: string, container: TestNetns): Promise<{ ifname: string; mac: string }> {
  const n = shortenIfname(`ve-${machine}`);
  await runOk('ip', ['link', 'add', n.name, 'type', 'veth', 'peer', 'name', 'host0', 'netns', container.name]);
  const [link] = await container.ipJson<Array<{ address: string }>>(['link', 'show', 'dev', 'host0']);
  return { ifname: n.name, mac: link?.address ?? '' };
}

describe('releasing a machine\'s ports in a new process', () => {
  ktest('a one-shot\'s release removes them by the reservation\'s ports: no listing of our table, 1,000 other mappings stay', async ({ netns }) => {
    const dir = mkdtempSync('/var/lib/nspawn-ts/ports-release-');
    const others = new Firewall();
    let sub: NetworkSubsystem | undefined;
    try {
      const { mac } = await nspawnVeth('web', netns);
      sub = await NetworkSubsystem.open({ mode: 'sidecar', oneShot: true, stateDir: dir, dnsServer: false, dns: [], machineId: null });
      const lease = await sub.reserve({ machine: 'web', mac, kind: 'veth', ports: [parsePortSpec('tcp:8000:80'), parsePortSpec('udp:5353:53')] });
      await sub.close();
      // other containers' mappings (the one-shot reconciles nothing: they stay as they are)
      const many = Array.from({ length: 1000 }, (_, i) =>
        ({ protocol: 'tcp' as const, hostPort: 20000 + i, containerAddress: `10.99.${i >> 6}.${(i & 63) + 1}`, containerPort: 80, owner: `c${i}` }));
      for (let i = 0; i < many.length; i += 500) others.addPortMappings(many.slice(i, i + 500));

      sub = await NetworkSubsystem.open({ mode: 'sidecar', oneShot: true, stateDir: dir, dnsServer: false, dns: [], machineId: null });
      const nft = vi.spyOn(sys(), 'nftRun');
      await sub.release({ machine: 'web', kind: 'veth' });
      const listings = nft.mock.calls.map((c) => c[0]).filter((cmd) => /^list /.test(cmd));
      vi.restoreAllMocks();
      expect(listings).toEqual([]);
      const map = (await run('nft', ['list', 'map', 'inet', 'nspawn-ts', 'ports4'])).stdout;
      expect(map).not.toContain('"web"');
      expect(map).not.toContain(lease.address);
      expect(others.state().ports).toHaveLength(1000);
    } finally {
      vi.restoreAllMocks();
      await sub?.close();
      others.removeTables();
      others.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
