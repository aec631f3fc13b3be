// Port forwarding by the network subsystem, against the real kernel: the test run's namespace is
// the host, containers are namespaces with host0 behind a ve- link made as systemd-nspawn makes it,
// a LAN client sits at 198.51.100.2. The mapping exists as soon as the address is reserved (before
// the container has configured anything), carries real traffic, and goes with the reservation.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { describe, expect, vi } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { killAndWait, run, runOk, waitFor } from '../helpers/exec.js';
import { TestNetns } from '../helpers/netns.js';
import { connect, lanClient, serve } from '../helpers/traffic.js';
import { NetworkSubsystem, type MachineLease } from '../../src/net/netd/subsystem.js';
import { handleRequest } from '../../src/net/netd/daemon.js';
import { shortenIfname } from '../../src/net/naming.js';
import { parsePortSpec } from '../../src/net/port-spec.js';
import { Firewall } from '../../src/net/firewall/index.js';
import { StateStore } from '../../src/net/netd/state.js';
import { MachineRegistry, type MachineSpecSummary } from '../../src/runtime/registry.js';

const p = parsePortSpec;

function withState(): { dir: string; remove: () => void } {
  const dir = mkdtempSync('/var/lib/nspawn-ts/ports-test-');
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

async function nspawnVeth(machine: string, container: TestNetns): Promise<{ ifname: string; mac: string }> {
  const n = shortenIfname(`ve-${machine}`);
  await runOk('ip', ['link', 'add', n.name, 'type', 'veth', 'peer', 'name', 'host0', 'netns', container.name]);
  const [link] = await container.ipJson<Array<{ address: string }>>(['link', 'show', 'dev', 'host0']);
  return { ifname: n.name, mac: link?.address ?? '' };
}

/** What the launcher does with a static lease: host0 up with the address, default route. */
async function configure(container: TestNetns, lease: MachineLease): Promise<void> {
  await container.exec('ip', ['addr', 'add', `${lease.address}/${lease.prefixLength}`, 'dev', 'host0']);
  await container.exec('ip', ['link', 'set', 'host0', 'up']);
  await container.exec('ip', ['route', 'add', 'default', 'via', lease.gateway]);
}

async function portsMap(): Promise<string> {
  const r = await run('nft', ['list', 'map', 'inet', 'nspawn-ts', 'ports4']);
  return r.code === 0 ? r.stdout : '';
}

async function tableExists(): Promise<boolean> {
  return (await run('nft', ['list', 'table', 'inet', 'nspawn-ts'])).code === 0;
}

describe('port forwarding in the network subsystem', () => {
  ktest('reserve with ports: mapped before the container is configured; LAN, host and 127.0.0.1 reach it; release removes it', async ({ netns }) => {
    const st = withState();
    const client = await lanClient();
    const servers: ChildProcess[] = [];
    let sub: NetworkSubsystem | undefined;
    try {
      const { ifname, mac } = await nspawnVeth('web', netns);
      sub = await NetworkSubsystem.open({ mode: 'embedded', stateDir: st.dir, dns: [], machineId: null });
      const lease = await sub.reserve({ machine: 'web', mac, kind: 'veth', ports: [p('tcp:8000:80'), p('udp:5353:53')], portLoopback: true });
      // in place before the container has an address at all
      expect(await netns.ipJson(['-4', 'addr', 'show', 'dev', 'host0'])).toEqual([]);
      const map = await portsMap();
      expect(map).toContain(`tcp . 8000 comment "web" : ${lease.address} . 80`);
      expect(map).toContain(`udp . 5353 comment "web" : ${lease.address} . 53`);
      expect(readFileSync(`/proc/sys/net/ipv4/conf/${ifname}/route_localnet`, 'utf8').trim()).toBe('1');
      expect(readFileSync('/proc/sys/net/ipv4/conf/all/route_localnet', 'utf8').trim()).toBe('0');
      const rec = JSON.parse(readFileSync(`${st.dir}/netd/state.json`, 'utf8')).links[ifname].reservations[0];
      expect(rec).toMatchObject({ machine: 'web', address: lease.address, ports: [p('tcp:8000:80'), p('udp:5353:53')], portLoopback: true });

      await configure(netns, lease);
      servers.push(await serve(netns, [80, 53]));
      // from the LAN, through the host's address: DNAT keeps the client's address
      expect(await connect(client.ns, 'tcp', '198.51.100.1', 8000)).toBe('OK 80 198.51.100.2');
      expect(await connect(client.ns, 'udp', '198.51.100.1', 5353)).toBe('OK 53 198.51.100.2');
      // from the host itself, via its non-loopback addresses (any of them: also the gateway on ve-)
      expect(await connect(undefined, 'tcp', '198.51.100.1', 8000)).toMatch(/^OK 80 /);
      expect(await connect(undefined, 'tcp', lease.gateway, 8000)).toMatch(/^OK 80 /);
      // --port-loopback: 127.0.0.1 too (masqueraded to the link's host address)
      expect(await connect(undefined, 'tcp', '127.0.0.1', 8000)).toBe(`OK 80 ${lease.gateway}`);
      expect(await connect(undefined, 'udp', '127.0.0.1', 5353)).toBe(`OK 53 ${lease.gateway}`);
      // hairpin: the container reaches its own published port via the host's address
      expect(await connect(netns, 'tcp', '198.51.100.1', 8000)).toBe(`OK 80 ${lease.gateway}`);

      expect(await sub.release({ machine: 'web', kind: 'veth' })).toBe(true);
      expect(await portsMap()).not.toContain('8000');
      expect(await connect(client.ns, 'tcp', '198.51.100.1', 8000)).toBe('ERR ECONNREFUSED');
      expect(await connect(undefined, 'tcp', '127.0.0.1', 8000)).toBe('ERR ECONNREFUSED');
      expect(await tableExists()).toBe(false);
      await runOk('ip', ['link', 'del', ifname]);
    } finally {
      for (const s of servers) await killAndWait(s);
      await sub?.close();
      await client.destroy();
      st.remove();
    }
  });

  ktest('two machines with different ports at once; a clash is refused before and at reservation, changing nothing', async ({ netns }) => {
    const st = withState();
    const client = await lanClient();
    const other = await TestNetns.create('ct2');
    const servers: ChildProcess[] = [];
    let sub: NetworkSubsystem | undefined;
    try {
      const a = await nspawnVeth('alpha', netns);
      const b = await nspawnVeth('beta', other);
      sub = await NetworkSubsystem.open({ mode: 'embedded', stateDir: st.dir, dns: [], machineId: null });
      const la = await sub.reserve({ machine: 'alpha', mac: a.mac, kind: 'veth', ports: [p('8000:80')] });
      // beta asks for alpha's port: refused by the check (the launcher asks before making anything)
      await expect(sub.checkPorts('beta', [p('9000:80'), p('8000:80')])).rejects.toThrow(
        `cannot forward tcp port 8000 to beta: tcp port 8000 is already forwarded to ${la.address}:80 for alpha (stop that machine or pick another host port)`);
      expect(await sub.checkPorts('beta', [p('9000:80'), p('udp:8000:80')])).toEqual({ checked: 2 });
      expect(await sub.checkPorts('alpha', [p('8000:80')])).toEqual({ checked: 1 });
      // and by the reservation itself: nothing of beta's ports is installed or recorded
      const before = await portsMap();
      await expect(sub.reserve({ machine: 'beta', mac: b.mac, kind: 'veth', ports: [p('9000:80'), p('8000:80')] }))
        .rejects.toMatchObject({ code: 'NETD_PORT_IN_USE', message: expect.stringContaining('tcp port 8000 is already forwarded') });
      expect(await portsMap()).toBe(before);
      // nor anything else of the refused request: the link it started to serve is not served, and has no address
      expect(JSON.parse(readFileSync(`${st.dir}/netd/state.json`, 'utf8')).links[b.ifname]).toBeUndefined();
      expect(sub.list().map((l) => l.ifname)).toEqual([a.ifname]);
      expect((await runOk('ip', ['-4', '-o', 'addr', 'show', 'dev', b.ifname])).trim()).toBe('');
      // with its own ports it works, next to alpha
      const lb = await sub.reserve({ machine: 'beta', mac: b.mac, kind: 'veth', ports: [p('9000:80')] });
      await configure(netns, la);
      await configure(other, lb);
      servers.push(await serve(netns, [80]), await serve(other, [80]));
      expect(await connect(client.ns, 'tcp', '198.51.100.1', 8000)).toBe('OK 80 198.51.100.2');
      expect(await connect(client.ns, 'tcp', '198.51.100.1', 9000)).toBe('OK 80 198.51.100.2');
      await waitFor(async () => (await connect(client.ns, 'tcp', lb.gateway, 9000)).startsWith('OK'), 'beta via its gateway address');
      // alpha goes: beta stays reachable, alpha's port is free for beta now
      await sub.release({ machine: 'alpha', kind: 'veth' });
      expect(await connect(client.ns, 'tcp', '198.51.100.1', 8000)).toBe('ERR ECONNREFUSED');
      expect(await connect(client.ns, 'tcp', '198.51.100.1', 9000)).toBe('OK 80 198.51.100.2');
      expect(await sub.checkPorts('beta', [p('8000:80')])).toEqual({ checked: 1 });
      await sub.release({ machine: 'beta', kind: 'veth' });
      expect(await tableExists()).toBe(false);
      await runOk('ip', ['link', 'del', a.ifname]);
      await runOk('ip', ['link', 'del', b.ifname]);
    } finally {
      for (const s of servers) await killAndWait(s);
      await sub?.close();
      await other.destroy();
      await client.destroy();
      st.remove();
    }
  });

  ktest('a port systemd-nspawn forwards (table ip io.systemd.nat) is refused with its holder named', async ({ netns }) => {
    const st = withState();
    let sub: NetworkSubsystem | undefined;
    try {
      await runOk('nft', ['-f', '-'], {
        input: `table ip io.systemd.nat {
  map map_port_ipport { type inet_proto . inet_service : ipv4_addr . inet_service; elements = { tcp . 8080 : 10.0.0.24 . 80 } }
}
`,
      });
      const { ifname, mac } = await nspawnVeth('web', netns);
      sub = await NetworkSubsystem.open({ mode: 'embedded', stateDir: st.dir, dns: [], machineId: null });
      await expect(sub.checkPorts('web', [p('8080:80')])).rejects.toThrow(
        'tcp port 8080 is already forwarded to 10.0.0.24:80 for a systemd-nspawn container (table ip io.systemd.nat)');
      await expect(sub.reserve({ machine: 'web', mac, kind: 'veth', ports: [p('8080:80')] })).rejects.toMatchObject({ code: 'NETD_PORT_IN_USE' });
      expect(await portsMap()).not.toContain('8080');
      await sub.release({ machine: 'web', kind: 'veth' });
      await runOk('ip', ['link', 'del', ifname]);
    } finally {
      await sub?.close();
      await run('nft', ['delete', 'table', 'ip', 'io.systemd.nat']);
      st.remove();
    }
  });

  ktest('sidecar: mappings go with the link; a restarted sidecar restores what it recorded and drops what it did not', async ({ netns }) => {
    const st = withState();
    let sub: NetworkSubsystem | undefined;
    const open = () => NetworkSubsystem.open({ mode: 'sidecar', stateDir: st.dir, dns: [], machineId: null });
    try {
      const { ifname, mac } = await nspawnVeth('svc', netns);
      sub = await open();
      // through the API, as the launcher asks
      const lease = await handleRequest(sub, { op: 'reserve', machine: 'svc', mac, kind: 'veth', ports: [p('8000:80'), p('udp:53')] }) as MachineLease;
      const listed = await handleRequest(sub, { op: 'ports' }) as Array<{ hostPort: number }>;
      // to its IPv4 address, and to its IPv6 address in the link's /64 (the host's ULA prefix)
      const v6 = lease.ipv6?.address;
      expect(v6).toMatch(/^fd/);
      expect(listed.sort((x, y) => y.hostPort - x.hostPort)).toEqual([
        { protocol: 'tcp', hostPort: 8000, containerAddress: lease.address, containerPort: 80, owner: 'svc' },
        { protocol: 'tcp', hostPort: 8000, containerAddress: v6, containerPort: 80, owner: 'svc' },
        { protocol: 'udp', hostPort: 53, containerAddress: lease.address, containerPort: 53, owner: 'svc' },
        { protocol: 'udp', hostPort: 53, containerAddress: v6, containerPort: 53, owner: 'svc' },
      ]);
      await expect(handleRequest(sub, { op: 'check-ports', machine: 'other', ports: [p('udp:53')] })).rejects.toMatchObject({ code: 'NETD_PORT_IN_USE' });
      // the sidecar goes away (kill -9: nothing torn down); meanwhile one mapping is lost and a stray one appears
      await sub.close();
      sub = undefined;
      await runOk('nft', ['delete element inet nspawn-ts ports4 { udp . 53 }']);
      await runOk('nft', ['add element inet nspawn-ts ports4 { tcp . 7777 comment "ghost" : 10.99.0.2 . 77 }']);
      sub = await open();
      const map = await portsMap();
      expect(map).toContain(`tcp . 8000 comment "svc" : ${lease.address} . 80`);
      expect(map).toContain(`udp . 53 comment "svc" : ${lease.address} . 53`);
      expect(map).not.toContain('ghost');
      // the container ends: its link goes, and with it the mappings
      await runOk('ip', ['link', 'del', ifname]);
      await waitFor(() => sub?.list().length === 0, 'the link no longer served');
      expect(await portsMap()).not.toContain('elements'); // no mapping left (a running sidecar keeps its empty table)
      await sub.close();
      expect(await tableExists()).toBe(false); // the empty table goes with the sidecar
    } finally {
      await sub?.close();
      st.remove();
    }
  });

  ktest('zone: a member\'s ports are mapped to its address on the bridge and go when its port leaves', async () => {
    const st = withState();
    let sub: NetworkSubsystem | undefined;
    try {
      await runOk('ip', ['link', 'add', 'vz-ports', 'type', 'bridge']);
      // a member on it: a sidecar starting removes empty zone bridges as leftovers of killed launchers
      await runOk('ip', ['link', 'add', 'vb-pm', 'type', 'veth', 'peer', 'name', 'vb-pm-peer']);
      await runOk('ip', ['link', 'set', 'vb-pm', 'master', 'vz-ports']);
      sub = await NetworkSubsystem.open({ mode: 'sidecar', stateDir: st.dir, dns: [], machineId: null });
      const l1 = await sub.reserve({ machine: 'm1', mac: '02:00:00:00:00:01', kind: 'zone', zone: 'ports', ports: [p('8001:80')], portLoopback: true });
      const l2 = await sub.reserve({ machine: 'm2', mac: '02:00:00:00:00:02', kind: 'zone', zone: 'ports', ports: [p('8002:80')] });
      let map = await portsMap();
      expect(map).toContain(`tcp . 8001 comment "m1" : ${l1.address} . 80`);
      expect(map).toContain(`tcp . 8002 comment "m2" : ${l2.address} . 80`);
      expect(readFileSync('/proc/sys/net/ipv4/conf/vz-ports/route_localnet', 'utf8').trim()).toBe('1');
      await sub.release({ machine: 'm1', kind: 'zone', zone: 'ports' });
      map = await portsMap();
      expect(map).not.toContain('8001');
      expect(map).toContain('8002');
      // no loopback mapping left on the bridge: route_localnet back to 0
      expect(readFileSync('/proc/sys/net/ipv4/conf/vz-ports/route_localnet', 'utf8').trim()).toBe('0');
      await runOk('ip', ['link', 'del', 'vz-ports']);
      await waitFor(() => sub?.list().length === 0, 'zone no longer served');
      expect(await portsMap()).not.toContain('elements'); // no mapping left (a running sidecar keeps its empty table)
    } finally {
      await sub?.close();
      await run('ip', ['link', 'del', 'vz-ports']);
      await run('ip', ['link', 'del', 'vb-pm']);
      st.remove();
    }
  });

  ktest('a reservation and its ports are one state write: a launcher serving a fresh link, a one-shot on a served zone', async ({ netns }) => {
    const st = withState();
    // StateStore's write(): one per update that changed the state (one fsync each)
    const writes = vi.spyOn(StateStore.prototype as unknown as { write(text: string): void }, 'write');
    let sub: NetworkSubsystem | undefined;
    try {
      const { ifname, mac } = await nspawnVeth('one', netns);
      sub = await NetworkSubsystem.open({ mode: 'embedded', stateDir: st.dir, dns: [], machineId: null });
      writes.mockClear();
      const lease = await sub.reserve({ machine: 'one', mac, kind: 'veth', ports: [p('tcp:8010:80')] });
      expect(writes).toHaveBeenCalledTimes(1);
      expect(await portsMap()).toContain(`tcp . 8010 comment "one" : ${lease.address} . 80`);
      expect(JSON.parse(readFileSync(`${st.dir}/netd/state.json`, 'utf8')).links[ifname].reservations[0]).toMatchObject({ machine: 'one', ports: [p('tcp:8010:80')] });
      await sub.close();
      sub = undefined;

      await runOk('ip', ['link', 'add', 'vz-once', 'type', 'bridge']);
      await runOk('ip', ['link', 'add', 'vb-once', 'type', 'veth', 'peer', 'name', 'vb-once-peer']);
      await runOk('ip', ['link', 'set', 'vb-once', 'master', 'vz-once']);
      const oneShot = async <T>(fn: (s: NetworkSubsystem) => Promise<T>): Promise<T> => {
        const s = await NetworkSubsystem.open({ mode: 'sidecar', oneShot: true, stateDir: st.dir, dns: [], dnsServer: false, machineId: null });
        try {
          return await fn(s);
        } finally {
          await s.close();
        }
      };
      await oneShot((s) => s.reserve({ machine: 'z1', mac: '02:00:00:00:01:01', kind: 'zone', zone: 'once', ports: [] }));
      writes.mockClear();
      const l2 = await oneShot((s) => s.reserve({ machine: 'z2', mac: '02:00:00:00:01:02', kind: 'zone', zone: 'once', ports: [p('tcp:8011:80')] }));
      expect(writes).toHaveBeenCalledTimes(1);
      expect(await portsMap()).toContain(`tcp . 8011 comment "z2" : ${l2.address} . 80`);
      // refused ports: nothing written, nothing mapped
      writes.mockClear();
      await expect(oneShot((s) => s.reserve({ machine: 'z3', mac: '02:00:00:00:01:03', kind: 'zone', zone: 'once', ports: [p('tcp:8011:81')] }))).rejects.toThrow(/8011/);
      expect(writes).not.toHaveBeenCalled();
      expect(JSON.parse(readFileSync(`${st.dir}/netd/state.json`, 'utf8')).links['vz-once'].reservations.map((r: { machine: string }) => r.machine)).toEqual(['z1', 'z2']);
      await oneShot((s) => s.release({ machine: 'z2', kind: 'zone', zone: 'once' }));
      expect(await portsMap()).not.toContain('8011');
      await oneShot((s) => s.release({ machine: 'z1', kind: 'zone', zone: 'once' }));
    } finally {
      writes.mockRestore();
      await sub?.close();
      await run('ip', ['link', 'del', 'vz-once']);
      await run('ip', ['link', 'del', 'vb-once']);
      await run('nft', ['delete', 'table', 'inet', 'nspawn-ts']);
      st.remove();
    }
  });

  ktest('a restarted sidecar leaves mappings of running machines it has no record of (launchers watching their address) and removes those of gone ones', async () => {
    const st = withState();
    const registry = new MachineRegistry();
    let sub: NetworkSubsystem | undefined;
    const fw = new Firewall();
    try {
      await registry.register({ name: 'watched', rootDirectory: '/srv/watched', spec: {} as MachineSpecSummary });
      fw.ensureTables();
      fw.addPortMapping({ protocol: 'tcp', hostPort: 8000, containerAddress: '10.77.0.2', containerPort: 80, owner: 'watched' });
      fw.addPortMapping({ protocol: 'tcp', hostPort: 8001, containerAddress: '10.77.0.3', containerPort: 80, owner: 'gone' });
      fw.addMasquerade('10.99.0.0/28', 've:ghost');
      sub = await NetworkSubsystem.open({ mode: 'sidecar', stateDir: st.dir, dns: [], machineId: null });
      const map = await portsMap();
      expect(map).toContain('tcp . 8000 comment "watched" : 10.77.0.2 . 80');
      expect(map).not.toContain('"gone"');
      expect(fw.state().masquerade).toEqual([]);
      // the machine ends: its launcher removes its mappings
      expect(fw.removePortMappings('watched')).toHaveLength(1);
    } finally {
      await registry.unregister('watched', { force: true });
      await sub?.close();
      fw.removeTables();
      fw.close();
      st.remove();
    }
  });
});
