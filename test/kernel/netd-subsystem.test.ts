// The network subsystem against the real kernel, in the test run's private network namespace (the
// "host"): links made the way systemd-nspawn makes them (ve-NAME with host0 in a container
// namespace, vz-ZONE bridges), checked with independent tools (ip -j, nft -j).
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { ipJson, run, runOk, waitFor } from '../helpers/exec.js';
import { TestNetns } from '../helpers/netns.js';
import { NetworkSubsystem, type SubsystemOptions } from '../../src/net/netd/subsystem.js';
import { masqueradeOwner } from '../../src/net/netd/links.js';
import { SubnetPool } from '../../src/net/pool.js';
import { formatMac, generateMac, shortenIfname } from '../../src/net/naming.js';
import { dhcpBackend } from '../../src/net/netd/dhcp-backend.js';
import { logger, setLogSink } from '../../src/log.js';
import { chmodSync } from 'node:fs';

const TABLE = 'nspawn-ts';

interface IpAddr { ifname: string; flags: string[]; addr_info: Array<{ family: string; local: string; prefixlen: number }> }

async function v4(ifname: string): Promise<string[]> {
  const r = await run('ip', ['-j', '-4', 'addr', 'show', 'dev', ifname]);
  if (r.code !== 0) return [];
  const list = JSON.parse(r.stdout || '[]') as IpAddr[];
  return list.flatMap((l) => l.addr_info.map((a) => `${a.local}/${a.prefixlen}`));
}

async function masq(): Promise<Array<{ subnet: string; owner?: string }>> {
  const r = await run('nft', ['-j', 'list', 'set', 'inet', TABLE, 'masq4']);
  if (r.code !== 0) return [];
  const out = JSON.parse(r.stdout) as { nftables: Array<{ set?: { elem?: unknown[] } }> };
  const elems = out.nftables.find((o) => o.set)?.set?.elem ?? [];
  return elems.map((e) => {
    const el = (e as { elem?: { val: unknown; comment?: string } }).elem;
    const val = (el?.val ?? e) as { prefix?: { addr: string; len: number } };
    const subnet = val.prefix ? `${val.prefix.addr}/${val.prefix.len}` : String(val);
    return el?.comment ? { subnet, owner: el.comment } : { subnet };
  });
}

async function tableExists(): Promise<boolean> {
  return (await run('nft', ['list', 'table', 'inet', TABLE])).code === 0;
}

const ipForward = (): string => readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim();

/** A veth like systemd-nspawn's: ve-NAME here (down, unaddressed), host0 in the container namespace. */
async function nspawnVeth(machine: string, container: TestNetns): Promise<string> {
  const n = shortenIfname(`ve-${machine}`);
  await runOk('ip', ['link', 'add', n.name, 'type', 'veth', 'peer', 'name', 'host0', 'netns', container.name]);
  if (n.altname) await runOk('ip', ['link', 'property', 'add', 'dev', n.name, 'altname', n.altname]);
  return n.name;
}

function withState(): { dir: string; remove: () => void } {
  const dir = mkdtempSync('/var/lib/nspawn-ts/netd-test-');
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

async function open(dir: string, extra: Partial<SubsystemOptions> = {}): Promise<NetworkSubsystem> {
  return NetworkSubsystem.open({ mode: 'sidecar', stateDir: dir, dns: ['192.0.2.53'], machineId: null, ...extra });
}

describe('sidecar mode', () => {
  ktest('serves ve- links present at start and appearing later; takes everything down when they go', async ({ netns }) => {
    const st = withState();
    const fwdBefore = ipForward();
    writeFileSync('/proc/sys/net/ipv4/ip_forward', '0\n');
    let sub: NetworkSubsystem | undefined;
    try {
      const first = await nspawnVeth('alpha', netns);
      sub = await open(st.dir);
      const a = sub.list().find((l) => l.ifname === first);
      expect(a).toBeDefined();
      expect(a?.subnet).toMatch(/\/28$/);
      expect(await v4(first)).toEqual([`${a?.hostAddress}/28`]);
      const link = (await ipJson<Array<{ flags: string[] }>>(['link', 'show', 'dev', first]))[0];
      expect(link?.flags).toContain('UP');
      expect(await masq()).toEqual([{ subnet: a?.subnet, owner: masqueradeOwner('veth', 'alpha') }]);
      expect(ipForward()).toBe('1');

      // a second container appears while the sidecar runs
      const other = await TestNetns.create();
      try {
        const second = await nspawnVeth('beta', other);
        const b = await waitFor(() => sub?.list().find((l) => l.ifname === second), 've-beta served');
        expect(b.subnet).not.toBe(a?.subnet);
        expect(await v4(second)).toEqual([`${b.hostAddress}/28`]);
        await waitFor(async () => (await masq()).length === 2, 'two masquerade entries');

        // the container's end: systemd-nspawn deletes the veth
        await runOk('ip', ['link', 'del', second]);
        await waitFor(() => !sub?.list().some((l) => l.ifname === second), 've-beta no longer served');
        expect(await masq()).toEqual([{ subnet: a?.subnet, owner: 've:alpha' }]);
        expect(JSON.parse(readFileSync(`${st.dir}/netd/state.json`, 'utf8')).links[second]).toBeUndefined();
      } finally {
        await other.destroy();
      }
      await runOk('ip', ['link', 'del', first]);
      await waitFor(() => sub?.list().length === 0, 'nothing served');
      // a running sidecar keeps its (now empty) table for the next container; its stop removes it
      expect(await masq()).toEqual([]);
      expect(await tableExists()).toBe(true);
      expect(ipForward()).toBe('0');
      const state = JSON.parse(readFileSync(`${st.dir}/netd/state.json`, 'utf8'));
      expect(state.links).toEqual({});
      // the pool remembers alpha's subnet for its return, inactive
      const pool = SubnetPool.restore(state.pool);
      expect(pool.allocations()).toEqual([]);
      expect(pool.allocate('veth', 'alpha').subnet).toBe(a?.subnet);
      await sub.close();
      expect(await tableExists()).toBe(false);
    } finally {
      await sub?.close();
      writeFileSync('/proc/sys/net/ipv4/ip_forward', `${fwdBefore}\n`);
      st.remove();
    }
  });

  for (const [what, text] of [
    ['invalid JSON', '{"version":1,"links":{"ve-a":'],
    ['valid JSON with a wrongly typed pool', JSON.stringify({ version: 1, pool: { version: 1, entries: 'none' }, links: {} })],
    ['valid JSON with wrongly typed ports', JSON.stringify({
      version: 1, pool: undefined,
      links: { 've-gone': { kind: 'veth', key: 'gone', ifname: 've-gone', ifindex: 9, subnet: '192.168.37.16/28', holders: ['sidecar'],
        reservations: [{ machine: 'gone', mac: '02:00:00:00:00:01', address: '192.168.37.18', ports: [{ protocol: 'tcp', hostPort: '80' }] }] } },
    })],
  ] as const) {
    ktest(`a corrupt state.json (${what}) is set aside, said so in the log, and the first start serves`, async ({ netns }) => {
      const st = withState();
      const lines: string[] = [];
      const restore = setLogSink((l) => lines.push(l));
      let sub: NetworkSubsystem | undefined;
      try {
        mkdirSync(`${st.dir}/netd`, { recursive: true });
        writeFileSync(`${st.dir}/netd/state.json`, text);
        const link = await nspawnVeth('corrupt', netns);
        sub = await open(st.dir);
        expect(sub.list().find((l) => l.ifname === link)?.subnet).toMatch(/\/28$/);
        const aside = readdirSync(`${st.dir}/netd`).filter((f) => f.startsWith('state.json.corrupt-'));
        expect(aside).toHaveLength(1);
        expect(readFileSync(`${st.dir}/netd/${aside[0]}`, 'utf8')).toBe(text);
        expect(lines.join('\n')).toMatch(/state\.json is not .*moved it to .*state\.json\.corrupt-\d+ and started with empty state/);
        expect(JSON.parse(readFileSync(`${st.dir}/netd/state.json`, 'utf8')).links[link]).toBeDefined();
        await runOk('ip', ['link', 'del', link]);
        await waitFor(() => sub?.list().length === 0, 'nothing served');
      } finally {
        setLogSink(restore);
        await sub?.close();
        st.remove();
      }
    });
  }

  ktest('a restarted sidecar finds the same subnets, adds no duplicates and removes leftovers', async ({ netns }) => {
    const st = withState();
    let sub: NetworkSubsystem | undefined;
    try {
      const ifname = await nspawnVeth('restart', netns);
      sub = await open(st.dir);
      const before = sub.list()[0];
      // the sidecar goes away (links stay configured, as after kill -9)
      await sub.close();
      sub = undefined;
      expect(await v4(ifname)).toEqual([`${before?.hostAddress}/28`]);
      // meanwhile: a container whose link went while no sidecar ran, and a stray entry
      await runOk('nft', ['add', 'element', 'inet', TABLE, 'masq4', '{ 10.99.0.0/28 comment "ve:ghost" }']);
      sub = await open(st.dir);
      const after = sub.list()[0];
      expect(after?.subnet).toBe(before?.subnet);
      expect(await v4(ifname)).toEqual([`${before?.hostAddress}/28`]);
      expect(await masq()).toEqual([{ subnet: before?.subnet, owner: 've:restart' }]);
      await runOk('ip', ['link', 'del', ifname]);
      await waitFor(() => sub?.list().length === 0, 'nothing served');
      expect(await masq()).toEqual([]);
      await sub.close();
      expect(await tableExists()).toBe(false);
    } finally {
      await sub?.close();
      st.remove();
    }
  });

  ktest('a record of a link that went while the sidecar was down is dropped at start', async ({ netns }) => {
    const st = withState();
    let sub: NetworkSubsystem | undefined;
    try {
      const ifname = await nspawnVeth('gone', netns);
      sub = await open(st.dir);
      const subnet = sub.list()[0]?.subnet;
      await sub.close();
      sub = undefined;
      await runOk('ip', ['link', 'del', ifname]);
      sub = await open(st.dir);
      expect(sub.list()).toEqual([]);
      expect(await masq()).toEqual([]);
      const state = JSON.parse(readFileSync(`${st.dir}/netd/state.json`, 'utf8'));
      expect(state.links).toEqual({});
      expect(SubnetPool.restore(state.pool).allocate('veth', 'gone').subnet).toBe(subnet);
    } finally {
      await sub?.close();
      st.remove();
    }
  });

  ktest('leaves vb- links, administrator bridges and other links alone; names a shortened veth by its altname', async ({ netns }) => {
    const st = withState();
    let sub: NetworkSubsystem | undefined;
    try {
      await runOk('ip', ['link', 'add', 'br-admin', 'type', 'bridge']);
      await runOk('ip', ['link', 'add', 'vb-adm', 'type', 'veth', 'peer', 'name', 'host0', 'netns', netns.name]);
      await runOk('ip', ['link', 'set', 'vb-adm', 'master', 'br-admin']);
      await runOk('ip', ['link', 'add', 've-notveth', 'type', 'bridge']);
      const other = await TestNetns.create();
      try {
        const long = await nspawnVeth('a-rather-long-machine-name', other);
        sub = await open(st.dir);
        expect(sub.list().map((l) => [l.ifname, l.key])).toEqual([[long, 'a-rather-long-machine-name']]);
        for (const l of ['br-admin', 'vb-adm', 've-notveth']) expect(await v4(l)).toEqual([]);
        await runOk('ip', ['link', 'del', long]);
        await waitFor(() => sub?.list().length === 0, 'nothing served');
      } finally {
        await other.destroy();
      }
    } finally {
      await sub?.close();
      for (const l of ['vb-adm', 'br-admin', 've-notveth']) await run('ip', ['link', 'del', l]);
      st.remove();
    }
  });

  ktest('serves a vz- zone bridge with a /24 and reserves stable addresses for its members', async ({ netns }) => {
    const st = withState();
    let sub: NetworkSubsystem | undefined;
    try {
      await runOk('ip', ['link', 'add', 'vz-web', 'type', 'bridge']);
      // a member, or the sidecar removes the empty bridge as a leftover
      await runOk('ip', ['link', 'add', 'vb-one', 'type', 'veth', 'peer', 'name', 'host0', 'netns', netns.name]);
      await runOk('ip', ['link', 'set', 'vb-one', 'master', 'vz-web']);
      sub = await open(st.dir);
      const zone = sub.list()[0];
      expect(zone?.kind).toBe('zone');
      expect(zone?.subnet).toMatch(/\/24$/);
      const r1 = await sub.reserve({ machine: 'one', mac: '02:00:00:00:00:01', kind: 'zone', zone: 'web' });
      const r2 = await sub.reserve({ machine: 'two', mac: '02:00:00:00:00:02', kind: 'zone', zone: 'web' });
      expect(r1.subnet).toBe(zone?.subnet);
      expect(r1.gateway).toBe(zone?.hostAddress);
      expect(r1.prefixLength).toBe(24);
      expect(r1.dns).toEqual(['192.0.2.53']);
      expect(r1.address).not.toBe(r2.address);
      // asking again gives the same address
      expect((await sub.reserve({ machine: 'one', mac: '02:00:00:00:00:01', kind: 'zone', zone: 'web' })).address).toBe(r1.address);
      expect(await sub.release({ machine: 'one', kind: 'zone', zone: 'web' })).toBe(true);
      expect(sub.list()[0]?.reservations.map((r) => r.machine)).toEqual(['two']);
      await runOk('ip', ['link', 'del', 'vz-web']);
      await waitFor(() => sub?.list().length === 0, 'zone no longer served');
    } finally {
      await sub?.close();
      await run('ip', ['link', 'del', 'vz-web']);
      await run('ip', ['link', 'del', 'vb-one']);
      st.remove();
    }
  });

  ktest('at start, removes zone bridges without ports (left by killed launchers) and serves the others', async ({ netns }) => {
    const st = withState();
    let sub: NetworkSubsystem | undefined;
    try {
      await runOk('ip', ['link', 'add', 'vz-stale', 'type', 'bridge']);
      await runOk('ip', ['link', 'add', 'vz-live', 'type', 'bridge']);
      await runOk('ip', ['link', 'add', 'vb-member', 'type', 'veth', 'peer', 'name', 'host0', 'netns', netns.name]);
      await runOk('ip', ['link', 'set', 'vb-member', 'master', 'vz-live']);
      sub = await open(st.dir);
      expect((await run('ip', ['link', 'show', 'vz-stale'])).code).not.toBe(0);
      expect(sub.list().map((l) => l.ifname)).toEqual(['vz-live']);
      expect(await v4('vb-member')).toEqual([]);
      await runOk('ip', ['link', 'del', 'vz-live']);
      await waitFor(() => sub?.list().length === 0, 'nothing served');
    } finally {
      await sub?.close();
      for (const l of ['vz-stale', 'vz-live', 'vb-member']) await run('ip', ['link', 'del', l]);
      st.remove();
    }
  });

  ktest('avoids subnets of addresses and routes on the host', async ({ netns }) => {
    const st = withState();
    let sub: NetworkSubsystem | undefined;
    try {
      // the machine's hash-derived subnet, occupied by a route to somewhere else
      const want = new SubnetPool().allocate('veth', 'crowded').subnet;
      await runOk('ip', ['link', 'add', 'dummyish', 'type', 'bridge']);
      await runOk('ip', ['link', 'set', 'dummyish', 'up']);
      await runOk('ip', ['route', 'add', want, 'dev', 'dummyish']);
      await nspawnVeth('crowded', netns);
      sub = await open(st.dir);
      const got = sub.list()[0]?.subnet;
      expect(got).toBeDefined();
      expect(got).not.toBe(want);
      await runOk('ip', ['link', 'del', 've-crowded']);
      await waitFor(() => sub?.list().length === 0, 'nothing served');
    } finally {
      await sub?.close();
      await run('ip', ['link', 'del', 'dummyish']);
      st.remove();
    }
  });
});

describe('embedded mode', () => {
  ktest('serves only the link it is asked for, gives the same address at every start, and takes all down at close', async ({ netns }) => {
    const st = withState();
    try {
      const other = await TestNetns.create();
      try {
        const mine = await nspawnVeth('emb', netns);
        const foreign = await nspawnVeth('foreign', other);
        const addresses: string[] = [];
        for (let i = 0; i < 2; i++) {
          const sub = await NetworkSubsystem.open({ mode: 'embedded', stateDir: st.dir, dns: ['192.0.2.53'], machineId: null });
          try {
            const lease = await sub.reserve({ machine: 'emb', mac: '02:11:22:33:44:55', kind: 'veth' });
            expect(lease.ifname).toBe(mine);
            expect(await v4(mine)).toEqual([`${lease.gateway}/28`]);
            expect(await v4(foreign)).toEqual([]);
            expect(await masq()).toEqual([{ subnet: lease.subnet, owner: 've:emb' }]);
            addresses.push(`${lease.address}/${lease.prefixLength}`);
          } finally {
            await sub.close();
          }
          expect(await v4(mine)).toEqual([]);
          expect(await tableExists()).toBe(false);
          expect(JSON.parse(readFileSync(`${st.dir}/netd/state.json`, 'utf8')).links).toEqual({});
        }
        expect(addresses[0]).toBe(addresses[1]);
        await runOk('ip', ['link', 'del', mine]);
        await runOk('ip', ['link', 'del', foreign]);
      } finally {
        await other.destroy();
      }
    } finally {
      st.remove();
    }
  });

  ktest('a complete firewall layout is used as it is (rules untouched); an incomplete one is rewritten', async ({ netns }) => {
    const st = withState();
    const rules = async (): Promise<Array<{ handle: number; chain: string }>> => {
      const out = JSON.parse(await runOk('nft', ['-a', '-j', 'list', 'table', 'inet', TABLE])) as { nftables: Array<{ rule?: { handle: number; chain: string } }> };
      return out.nftables.flatMap((o) => (o.rule ? [o.rule] : [])).sort((a, b) => a.handle - b.handle);
    };
    const ruleHandles = async (): Promise<number[]> => (await rules()).map((r) => r.handle);
    const { Firewall } = await import('../../src/net/firewall/index.js');
    const fw = new Firewall();
    try {
      fw.ensureTables();
      // something else keeps the table alive (a port mapping of another machine)
      fw.addPortMapping({ protocol: 'tcp', hostPort: 18080, containerAddress: '10.99.0.2', containerPort: 80, owner: 'other' });
      const before = await ruleHandles();
      await nspawnVeth('layout', netns);
      for (const damage of [false, true]) {
        if (damage) {
          const last = (await rules()).pop() as { handle: number; chain: string };
          await runOk('nft', ['delete', 'rule', 'inet', TABLE, last.chain, 'handle', String(last.handle)]);
        }
        const sub = await NetworkSubsystem.open({ mode: 'embedded', stateDir: st.dir, dns: [], machineId: null });
        try {
          await sub.reserve({ machine: 'layout', mac: '02:00:00:00:00:77', kind: 'veth' });
          const now = await ruleHandles();
          expect(now.length).toBe(before.length);
          if (!damage) expect(now).toEqual(before);
          else expect(now).not.toEqual(before);
        } finally {
          await sub.close();
        }
      }
      await runOk('ip', ['link', 'del', 've-layout']);
    } finally {
      fw.removeTables();
      st.remove();
    }
  });

  ktest('a reservation for a link that does not exist is refused and changes nothing', async () => {
    const st = withState();
    const sub = await NetworkSubsystem.open({ mode: 'embedded', stateDir: st.dir, dns: [], machineId: null });
    try {
      await expect(sub.reserve({ machine: 'nolink', mac: '02:00:00:00:00:09', kind: 'veth' })).rejects.toMatchObject({ code: 'NETD_NO_LINK' });
      expect(sub.list()).toEqual([]);
      expect(await tableExists()).toBe(false);
    } finally {
      await sub.close();
      st.remove();
    }
  });
});


/** Runs busybox udhcpc in `ns` until it has a lease; returns the variables its script saw. */
async function udhcpc(ns: TestNetns, dir: string, ifname = 'host0'): Promise<Record<string, string>> {
  const script = `${dir}/udhcpc.sh`;
  writeFileSync(script, `#!/bin/sh\ncase "$1" in bound|renew) env | sort > ${dir}/lease.env; ip addr replace "$ip/$mask" dev "$interface" ;; deconfig) ip link set "$interface" up ;; esac\nexit 0\n`);
  chmodSync(script, 0o755);
  rmSync(`${dir}/lease.env`, { force: true });
  await ns.exec('busybox', ['udhcpc', '-i', ifname, '-f', '-q', '-n', '-t', '5', '-T', '1', '-s', script], { timeoutMs: 20_000 });
  const text = readFileSync(`${dir}/lease.env`, 'utf8');
  return Object.fromEntries(text.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

describe('DHCP', () => {
  const machineId = Uint8Array.from(Buffer.from('0123456789abcdef0123456789abcdef', 'hex'));

  ktest('a systemd-nspawn-like container gets its reserved address, router and DNS; a restarted sidecar keeps the lease; nothing is left when the link goes', async ({ netns }) => {
    const st = withState();
    let sub: NetworkSubsystem | undefined;
    try {
      const mac = formatMac(generateMac(machineId, 'dhcpbox', 'container'));
      await netns.exec('ip', ['link', 'set', 'lo', 'up']);
      const ifname = await nspawnVeth('dhcpbox', netns);
      await netns.exec('ip', ['link', 'set', 'host0', 'address', mac]);
      const open2 = () => NetworkSubsystem.open({ mode: 'sidecar', stateDir: st.dir, dns: ['192.0.2.53'], machineId, dhcp: dhcpBackend(logger('dhcp')) });
      sub = await open2();
      const served = sub.list()[0];
      expect(served?.dhcp).toBe(true);
      const reserved = served?.reservations.find((r) => r.machine === 'dhcpbox');
      expect(reserved?.mac).toBe(mac);
      const env = await udhcpc(netns, st.dir);
      expect(env.ip).toBe(reserved?.address);
      expect(env.router).toBe(served?.hostAddress);
      expect(env.dns?.trim()).toBe('192.0.2.53');
      expect(env.mask).toBe('28');
      // it reaches the host through its new address
      await netns.exec('busybox', ['ping', '-c', '1', '-W', '2', served?.hostAddress ?? '']);
      expect(sub.leases(ifname)).toMatchObject([{ address: reserved?.address, mac, state: 'bound' }]);

      // kill -9 equivalent: no teardown, then a new sidecar
      await sub.close();
      sub = await open2();
      expect(sub.leases(ifname)).toMatchObject([{ address: reserved?.address, mac, state: 'bound' }]);
      // a renewal (a new client run asks for the same address) is granted
      expect((await udhcpc(netns, st.dir)).ip).toBe(reserved?.address);

      await runOk('ip', ['link', 'del', ifname]);
      await waitFor(() => sub?.list().length === 0, 'nothing served');
      expect(sub.leases()).toEqual([]);
    } finally {
      await sub?.close();
      st.remove();
    }
  });

  ktest('embedded on a zone: the launcher\'s server answers only its own container', async ({ netns }) => {
    const st = withState();
    const other = await TestNetns.create();
    const subs: NetworkSubsystem[] = [];
    try {
      await runOk('ip', ['link', 'add', 'vz-lab', 'type', 'bridge']);
      const macs = ['02:00:00:00:0a:01', '02:00:00:00:0a:02'];
      const spaces = [netns, other];
      for (let i = 0; i < 2; i++) {
        await runOk('ip', ['link', 'add', `vb-m${i}`, 'type', 'veth', 'peer', 'name', 'host0', 'netns', spaces[i]!.name]);
        await runOk('ip', ['link', 'set', `vb-m${i}`, 'master', 'vz-lab', 'up']);
        await spaces[i]!.exec('ip', ['link', 'set', 'host0', 'address', macs[i]!]);
      }
      const leases = [];
      for (let i = 0; i < 2; i++) {
        const sub = await NetworkSubsystem.open({ mode: 'embedded', stateDir: st.dir, dns: ['192.0.2.53'], machineId: null, dhcp: dhcpBackend(logger('dhcp')) });
        subs.push(sub);
        leases.push(await sub.reserve({ machine: `m${i}`, mac: macs[i]!, kind: 'zone', zone: 'lab' }));
      }
      expect(leases[0]?.subnet).toBe(leases[1]?.subnet);
      expect(leases[0]?.address).not.toBe(leases[1]?.address);
      for (let i = 0; i < 2; i++) expect((await udhcpc(spaces[i]!, st.dir)).ip).toBe(leases[i]?.address);
      await other.exec('busybox', ['ping', '-c', '1', '-W', '2', leases[0]?.address ?? '']);
      // the first launcher ends: the zone stays served by the second
      await subs.shift()?.close();
      expect(await v4('vz-lab')).toEqual([`${leases[1]?.gateway}/24`]);
      expect(await masq()).toEqual([{ subnet: leases[1]?.subnet, owner: 'vz:lab' }]);
      await subs.shift()?.close();
      expect(await v4('vz-lab')).toEqual([]);
      expect(await tableExists()).toBe(false);
    } finally {
      for (const s of subs) await s.close();
      for (const l of ['vb-m0', 'vb-m1', 'vz-lab']) await run('ip', ['link', 'del', l]);
      await other.destroy();
      st.remove();
    }
  });
});
