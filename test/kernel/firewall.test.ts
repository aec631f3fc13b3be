// The firewall against the real kernel: tables applied in the test's namespace (the "host"),
// checked by an independent observer (`nft -j list` inside the namespace) and by real traffic
// between namespaces that stand in for a client on the LAN, a container and a remote host:
//
//   client 198.51.100.2 ── c-host 198.51.100.1 [host] ve-test 10.0.0.17/28 ── host0 10.0.0.18 [container]
//                                   up-host 203.0.113.2 ── up0 203.0.113.1 [remote; no route to 10.0.0.0/28]
//        (IPv6: client 2001:db8:1::2 ─ 2001:db8:1::1 [host] fd00:1::1 ─ fd00:1::2 [container])
import { describe, expect } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { ktest } from '../helpers/kernel.js';
import { TestNetns } from '../helpers/netns.js';
import { killAndWait, runOk } from '../helpers/exec.js';
import { connect, serve } from '../helpers/traffic.js';
import { Firewall, NftError } from '../../src/net/firewall/index.js';
import { layoutMapsScript } from '../../src/net/firewall/rules.js';
import { sys } from '../../src/native.js';
import { goldenPath } from '../unit/net/golden.js';

const NODE = process.execPath;

interface Topology {
  host: TestNetns;
  client: TestNetns;
  container: TestNetns;
  remote: TestNetns;
  servers: ChildProcess[];
  /** runs the client from namespace `from` */
  connect(from: TestNetns, proto: 'tcp' | 'udp', host: string, port: number): Promise<string>;
  serve(ns: TestNetns, ports: number[]): Promise<void>;
  destroy(): Promise<void>;
}

async function topology(host: TestNetns): Promise<Topology> {
  const made: TestNetns[] = [];
  const servers: ChildProcess[] = [];
  const t: Topology = {
    host, servers,
    client: await TestNetns.create('client').then((n) => (made.push(n), n)),
    container: await TestNetns.create('ct').then((n) => (made.push(n), n)),
    remote: await TestNetns.create('remote').then((n) => (made.push(n), n)),
    connect: (from, proto, h, port) => connect(from, proto, h, port),
    async serve(ns, ports) {
      servers.push(await serve(ns, ports));
    },
    async destroy() {
      await Promise.all(servers.map((s) => killAndWait(s)));
      for (const n of made) await n.destroy();
    },
  };
  const ip = (ns: TestNetns, ...args: string[]) => runOk('ip', ['-n', ns.name, ...args]);
  try {
    // no duplicate address detection: links are usable (also their link-local addresses) at once
    for (const ns of [host, t.client, t.container, t.remote]) {
      await ns.exec('sysctl', ['-qw', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0']);
    }
    await ip(host, 'link', 'add', 'c-host', 'type', 'veth', 'peer', 'name', 'c0', 'netns', t.client.name);
    await ip(host, 'link', 'add', 've-test', 'type', 'veth', 'peer', 'name', 'host0', 'netns', t.container.name);
    await ip(host, 'link', 'add', 'up-host', 'type', 'veth', 'peer', 'name', 'up0', 'netns', t.remote.name);
    for (const [ns, dev, addrs] of [
      [host, 'c-host', ['198.51.100.1/24', '2001:db8:1::1/64']], [t.client, 'c0', ['198.51.100.2/24', '2001:db8:1::2/64']],
      [host, 've-test', ['10.0.0.17/28', 'fd00:1::1/64']], [t.container, 'host0', ['10.0.0.18/28', 'fd00:1::2/64']],
      [host, 'up-host', ['203.0.113.2/24']], [t.remote, 'up0', ['203.0.113.1/24']],
    ] as Array<[TestNetns, string, string[]]>) {
      for (const a of addrs) await ip(ns, 'addr', 'add', a, 'dev', dev, ...(a.includes(':') ? ['nodad'] : []));
      await ip(ns, 'link', 'set', dev, 'up');
    }
    await ip(t.client, 'route', 'add', 'default', 'via', '198.51.100.1');
    await ip(t.client, '-6', 'route', 'add', 'default', 'via', '2001:db8:1::1');
    await ip(t.container, 'route', 'add', 'default', 'via', '10.0.0.17');
    await ip(t.container, '-6', 'route', 'add', 'default', 'via', 'fd00:1::1');
    await host.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
  } catch (err) {
    await t.destroy();
    throw err;
  }
  return t;
}

async function listTable(ns: TestNetns, table = 'nspawn-ts'): Promise<string> {
  return ns.exec('nft', ['list', 'table', 'inet', table]);
}

async function listJson(ns: TestNetns, what: string[]): Promise<Array<Record<string, Record<string, unknown>>>> {
  return (JSON.parse(await ns.exec('nft', ['-j', 'list', ...what])) as { nftables: Array<Record<string, Record<string, unknown>>> }).nftables;
}

describe('firewall tables', () => {
  ktest('ensureTables builds the layout once, idempotently, and only in the given namespace', async ({ netns }) => {
    const fw = new Firewall({ netnsFd: netns.fd });
    fw.ensureTables();
    const first = await listJson(netns, ['table', 'inet', 'nspawn-ts']);
    fw.ensureTables();
    fw.ensureTables();
    const again = await listJson(netns, ['table', 'inet', 'nspawn-ts']);
    const shape = (l: typeof first) => l.filter((o) => !o.metainfo).map((o) => {
      const [kind, v] = Object.entries(o)[0] as [string, Record<string, unknown>];
      return kind === 'rule' ? `rule ${String(v.chain)} ${JSON.stringify(v.expr)}` : `${kind} ${String(v.name)}`;
    });
    expect(shape(again)).toEqual(shape(first));
    expect(shape(first).filter((s) => s.startsWith('rule'))).toHaveLength(16);
    expect(shape(first).filter((s) => !s.startsWith('rule')).sort()).toEqual([
      'chain forward', 'chain input', 'chain output', 'chain postrouting', 'chain prerouting', 'map ports4', 'map ports6', 'map ports_lo4',
      'set hairpin4', 'set hairpin6', 'set masq4', 'set masq6', 'table nspawn-ts']);
    const text = await listTable(netns);
    expect(text).toContain('type nat hook prerouting priority dstnat + 1; policy accept;');
    expect(text).toContain('type nat hook postrouting priority srcnat + 1; policy accept;');
    expect(text).toContain('fib daddr type local dnat ip to meta l4proto . th dport map @ports4');
    expect(text).toContain('type inet_proto . inet_service : ipv4_addr . inet_service');
    // CVE-2020-8558: 127.0.0.0/8 from another link only when a DNAT made it (or it answers one)
    expect(text).toContain('iif != "lo" ip daddr 127.0.0.0/8 ct state != { established, related } ct status ! dnat drop');
    // the run's own namespace has no such table
    expect(await runOk('nft', ['list', 'tables'])).not.toContain('nspawn-ts');
    fw.removeTables();
    fw.removeTables();
    expect(await netns.exec('nft', ['list', 'tables'])).toBe('');
  });

  ktest('every golden document is accepted by libnftables, in order', async ({ netns }) => {
    const s = sys();
    const apply = (text: string, what: string) => {
      const r = s.nftRun(text, { netnsFd: netns.fd });
      expect(r.error, what).toBe('');
      expect(r.rc, what).toBe(0);
    };
    apply(readFileSync(goldenPath('layout-maps.nft'), 'utf8'), 'layout-maps.nft');
    for (const name of ['layout.json', 'add-masquerade-v4.json', 'add-masquerade-v6.json', 'add-port-mapping-v4-loopback.json',
      'add-port-mapping-v6.json', 'add-port-mapping-udp.json', 'remove-masquerade.json']) {
      apply(readFileSync(goldenPath(name), 'utf8'), name);
    }
    const text = await listTable(netns);
    expect(text).toContain('tcp . 8080 comment "alpha" : 10.0.0.18 . 80');
    expect(text).toContain('udp . 5353 comment "alpha" : 10.0.0.18 . 53');
    expect(text).toContain('tcp . 8080 comment "alpha" : fd00:1::2 . 80');
    expect(text).toContain('fd00:1::/64 comment "zone:public"');
    expect(text).not.toContain('10.0.0.16/28');
    apply(readFileSync(goldenPath('delete-table.json'), 'utf8'), 'delete-table.json');
  });

  ktest('survives `nft flush ruleset`: re-creates the table and restores what it had added', async ({ netns }) => {
    const fw = new Firewall({ netnsFd: netns.fd });
    fw.ensureTables();
    fw.addMasquerade('10.0.0.17/28', 'alpha');
    fw.addPortMapping({ protocol: 'tcp', hostPort: 8080, containerAddress: '10.0.0.18', containerPort: 80, owner: 'alpha' });
    await netns.exec('nft', ['flush', 'ruleset']);
    expect(fw.state()).toEqual({ masquerade: [], ports: [] });
    // removal of what is gone is fine
    fw.removeMasquerade('192.0.2.0/24');
    expect(fw.removePortMappings('nobody')).toEqual([]);
    fw.addPortMapping({ protocol: 'udp', hostPort: 53, containerAddress: '10.0.0.18', containerPort: 5353, owner: 'alpha' });
    const text = await listTable(netns);
    expect(text).toContain('10.0.0.16/28 comment "alpha"');
    expect(text).toContain('tcp . 8080 comment "alpha" : 10.0.0.18 . 80');
    expect(text).toContain('udp . 53 comment "alpha" : 10.0.0.18 . 5353');
    expect(text).toContain('dnat ip to meta l4proto . th dport map @ports4');
    fw.removeTables();
  });

  ktest('coexists with other tables: a foreign table and its rules stay exactly as they were', async ({ netns }) => {
    await netns.exec('nft', ['-f', '-'], {
      input: `table ip foreign {
  set blocked { type ipv4_addr; elements = { 192.0.2.99 } }
  chain f_forward { type filter hook forward priority 0; policy accept; ip saddr @blocked drop; }
  chain f_post { type nat hook postrouting priority 100; policy accept; ip saddr 192.0.2.0/24 oifname "up*" masquerade; }
}
table inet nspawn-ts-other {
  chain c { type filter hook input priority 0; policy accept; tcp dport 22 accept
  }
}
`,
    });
    const before = [await netns.exec('nft', ['list', 'table', 'ip', 'foreign']), await netns.exec('nft', ['list', 'table', 'inet', 'nspawn-ts-other'])];
    const fw = new Firewall({ netnsFd: netns.fd });
    fw.ensureTables();
    fw.addMasquerade('10.0.0.16/28', 'a');
    fw.addPortMapping({ protocol: 'tcp', hostPort: 8080, containerAddress: '10.0.0.18', containerPort: 80, owner: 'a' });
    fw.reconcile({ masquerade: [], ports: [] });
    fw.removePortMappings('a');
    fw.removeTables();
    const after = [await netns.exec('nft', ['list', 'table', 'ip', 'foreign']), await netns.exec('nft', ['list', 'table', 'inet', 'nspawn-ts-other'])];
    expect(after).toEqual(before);
    // and the drop policy of a foreign forward chain is reported
    await netns.exec('nft', ['add chain ip foreign strict { type filter hook forward priority 10; policy drop; }']);
    const blockers = fw.blockers();
    expect(blockers).toEqual([expect.objectContaining({ family: 'ip', table: 'foreign', chain: 'strict', hook: 'forward' })]);
    expect(blockers[0]?.effect).toMatch(/forwarded to and from containers is dropped unless chain "strict"/);
    await netns.exec('nft', ['delete', 'table', 'ip', 'foreign']);
    await netns.exec('nft', ['delete', 'table', 'inet', 'nspawn-ts-other']);
  });

  ktest('errors name the operation, the object and the kernel\'s answer', async ({ netns }) => {
    const fw = new Firewall({ netnsFd: netns.fd });
    fw.ensureTables();
    fw.addPortMapping({ protocol: 'tcp', hostPort: 2222, containerAddress: '10.0.0.34', containerPort: 22, owner: 'beta' });
    const taken = (() => {
      try {
        fw.addPortMapping({ protocol: 'tcp', hostPort: 2222, containerAddress: '10.0.0.18', containerPort: 22, owner: 'alpha' });
      } catch (e) { return e; }
      return undefined;
    })();
    expect(taken).toBeInstanceOf(NftError);
    expect(taken).toMatchObject({
      code: 'NFT_PORT_IN_USE', errno: 'EEXIST', rc: expect.any(Number),
      message: 'nftables: forwarding tcp port 2222 → 10.0.0.18:22 for alpha in table inet nspawn-ts failed: '
        + 'tcp port 2222 is already forwarded to 10.0.0.34:22 for beta (Error: Could not process rule: File exists)',
    });
    // nothing changed
    expect(fw.state().ports).toEqual([{ protocol: 'tcp', hostPort: 2222, containerAddress: '10.0.0.34', containerPort: 22, owner: 'beta' }]);
    fw.addMasquerade('10.0.0.16/28', 'alpha');
    expect(() => fw.addMasquerade('10.0.0.0/24', 'gamma')).toThrow(/adding masquerade for 10.0.0.0\/24 \(gamma\) to table inet nspawn-ts failed: it overlaps the masqueraded subnets 10.0.0.16\/28 \(alpha\)/);
    // re-adding the same subnet is a no-op, as is re-adding the same mapping
    fw.addMasquerade('10.0.0.17/28', 'alpha');
    fw.addPortMapping({ protocol: 'tcp', hostPort: 2222, containerAddress: '10.0.0.34', containerPort: 22, owner: 'beta' });
    expect(fw.state()).toEqual({
      masquerade: [{ subnet: '10.0.0.16/28', owner: 'alpha' }],
      ports: [{ protocol: 'tcp', hostPort: 2222, containerAddress: '10.0.0.34', containerPort: 22, owner: 'beta' }],
    });
    // a raw failure carries rc and stderr
    const raw = (() => { try { fw.raw('add rule inet nspawn-ts nochain accept'); } catch (e) { return e; } return undefined; })();
    expect(raw).toMatchObject({ code: 'NFT_FAILED', errno: 'ENOENT', stderr: expect.stringContaining('No such file or directory') });
    fw.removeTables();
  });

  ktest('reconcile after a restart: no duplicates, no leftovers, other owners spared', async ({ netns }) => {
    const old = new Firewall({ netnsFd: netns.fd });
    old.ensureTables();
    old.addMasquerade('10.0.0.16/28', 'alpha');
    old.addMasquerade('10.0.0.32/28', 'gone');
    old.addPortMapping({ protocol: 'tcp', hostPort: 8080, containerAddress: '10.0.0.18', containerPort: 80, owner: 'alpha', loopback: true });
    old.addPortMapping({ protocol: 'tcp', hostPort: 9090, containerAddress: '10.0.0.34', containerPort: 90, owner: 'gone' });
    old.addPortMapping({ protocol: 'udp', hostPort: 53, containerAddress: '10.0.0.50', containerPort: 53, owner: 'launcher-owned' });
    // the restarted sidecar knows alpha (now with a new address and without loopback) and a new one
    const fw = new Firewall({ netnsFd: netns.fd });
    const desired = {
      masquerade: [{ subnet: '10.0.0.16/28', owner: 'alpha' }, { subnet: '10.0.0.48/28', owner: 'delta' }],
      ports: [
        { protocol: 'tcp' as const, hostPort: 8080, containerAddress: '10.0.0.19', containerPort: 80, owner: 'alpha' },
        { protocol: 'tcp' as const, hostPort: 443, containerAddress: '10.0.0.50', containerPort: 443, owner: 'delta' },
      ],
    };
    const r = fw.reconcile(desired, { owns: (o) => o !== 'launcher-owned' });
    expect(r.removed.length).toBeGreaterThan(0);
    const state = fw.state();
    expect(state.masquerade).toEqual(desired.masquerade);
    expect(state.ports).toEqual(expect.arrayContaining([...desired.ports,
      { protocol: 'udp', hostPort: 53, containerAddress: '10.0.0.50', containerPort: 53, owner: 'launcher-owned' }]));
    expect(state.ports).toHaveLength(3);
    const text = await listTable(netns);
    expect(text).not.toContain('gone');
    expect(text).not.toMatch(/ports_lo4 \{[^}]*elements/);
    expect(text).not.toContain('10.0.0.18 . 10.0.0.18');
    // a second reconcile changes nothing
    expect(fw.reconcile(desired, { owns: (o) => o !== 'launcher-owned' })).toEqual({ added: [], removed: [] });
    expect(await listTable(netns)).toBe(text);
    fw.removeTables();
  });
});

describe('firewall traffic', () => {
  ktest('DNAT from a LAN client lands on the container port; removal stops it; ownership is per owner', async ({ netns }) => {
    const t = await topology(netns);
    try {
      await t.serve(t.container, [80, 81, 5353]);
      const fw = new Firewall({ netnsFd: netns.fd });
      fw.ensureTables();
      expect(await t.connect(t.client, 'tcp', '198.51.100.1', 8080)).toBe('ERR ECONNREFUSED');
      fw.addPortMapping({ protocol: 'tcp', hostPort: 8080, containerAddress: '10.0.0.18', containerPort: 80, owner: 'A' });
      fw.addPortMapping({ protocol: 'udp', hostPort: 53, containerAddress: '10.0.0.18', containerPort: 5353, owner: 'A' });
      fw.addPortMapping({ protocol: 'tcp', hostPort: 8081, containerAddress: '10.0.0.18', containerPort: 81, owner: 'B' });
      // DNAT keeps the client's address: the container sees who connected
      expect(await t.connect(t.client, 'tcp', '198.51.100.1', 8080)).toBe('OK 80 198.51.100.2');
      expect(await t.connect(t.client, 'udp', '198.51.100.1', 53)).toBe('OK 5353 198.51.100.2');
      expect(await t.connect(t.client, 'tcp', '198.51.100.1', 8081)).toBe('OK 81 198.51.100.2');
      // any local address of the host works (fib daddr type local), e.g. the uplink's
      expect(await t.connect(t.client, 'tcp', '203.0.113.2', 8080)).toBe('OK 80 198.51.100.2');
      // from the host itself, via a non-loopback address (output chain)
      expect(await t.connect(t.host, 'tcp', '198.51.100.1', 8080)).toMatch(/^OK 80 /);
      // ADD A, ADD B, DEL A: only A's entries go, in one transaction
      const removed = fw.removePortMappings('A');
      expect(removed.map((m) => `${m.protocol}/${m.hostPort}`).sort()).toEqual(['tcp/8080', 'udp/53']);
      expect(await t.connect(t.client, 'tcp', '198.51.100.1', 8080)).toBe('ERR ECONNREFUSED');
      expect(await t.connect(t.client, 'udp', '198.51.100.1', 53)).not.toMatch(/^OK/);
      expect(await t.connect(t.client, 'tcp', '198.51.100.1', 8081)).toBe('OK 81 198.51.100.2');
      const text = await listTable(netns);
      expect(text).toContain('tcp . 8081 comment "B" : 10.0.0.18 . 81');
      expect(text).not.toContain('"A"');
      // the container address changed: same owner, new target, replaced atomically
      await runOk('ip', ['-n', t.container.name, 'addr', 'add', '10.0.0.19/28', 'dev', 'host0']);
      fw.addPortMapping({ protocol: 'tcp', hostPort: 8081, containerAddress: '10.0.0.19', containerPort: 80, owner: 'B' });
      expect(await t.connect(t.client, 'tcp', '198.51.100.1', 8081)).toBe('OK 80 198.51.100.2');
      fw.removePortMappings('B');
      expect(await t.connect(t.client, 'tcp', '198.51.100.1', 8081)).toBe('ERR ECONNREFUSED');
      fw.removeTables();
    } finally {
      await t.destroy();
    }
  });

  ktest('masquerade: the remote sees the host\'s uplink address; without it the container gets no answer', async ({ netns }) => {
    const t = await topology(netns);
    try {
      await t.serve(t.remote, [7000]);
      const fw = new Firewall({ netnsFd: netns.fd });
      fw.ensureTables();
      // the remote has no route back to 10.0.0.0/28
      expect(await t.connect(t.container, 'tcp', '203.0.113.1', 7000)).toBe('TIMEOUT');
      fw.addMasquerade('10.0.0.17/28', 'A');
      expect(await t.connect(t.container, 'tcp', '203.0.113.1', 7000)).toBe('OK 7000 203.0.113.2');
      expect(await t.connect(t.container, 'udp', '203.0.113.1', 7000)).toBe('OK 7000 203.0.113.2');
      fw.removeMasquerade('10.0.0.16/28');
      // conntrack keeps NAT for existing flows only; a new connection is not masqueraded
      expect(await t.connect(t.container, 'tcp', '203.0.113.1', 7000)).toBe('TIMEOUT');
      fw.removeTables();
    } finally {
      await t.destroy();
    }
  });

  ktest('hairpin: a container reaches its own published port via the host\'s address', async ({ netns }) => {
    const t = await topology(netns);
    try {
      await t.serve(t.container, [80]);
      const fw = new Firewall({ netnsFd: netns.fd });
      fw.ensureTables();
      // no masquerade entry for the subnet (as for a bridged container): the hairpin set alone does it
      fw.addPortMapping({ protocol: 'tcp', hostPort: 8080, containerAddress: '10.0.0.18', containerPort: 80, owner: 'A' });
      expect(await t.connect(t.container, 'tcp', '198.51.100.1', 8080)).toBe('OK 80 10.0.0.17');
      expect(await t.connect(t.container, 'tcp', '10.0.0.17', 8080)).toBe('OK 80 10.0.0.17');
      // without the hairpin entry the container would see its own address as the source: no answer
      fw.raw('delete element inet nspawn-ts hairpin4 { 10.0.0.18 . 10.0.0.18 }');
      expect(await t.connect(t.container, 'tcp', '198.51.100.1', 8080)).not.toMatch(/^OK/);
      fw.removeTables();
    } finally {
      await t.destroy();
    }
  });

  ktest('loopback variant: 127.0.0.1:HOSTPORT with route_localnet on the container\'s link only', async ({ netns }) => {
    const t = await topology(netns);
    try {
      await t.serve(t.container, [80, 81]);
      const fw = new Firewall({ netnsFd: netns.fd });
      fw.ensureTables();
      fw.addPortMapping({ protocol: 'tcp', hostPort: 8080, containerAddress: '10.0.0.18', containerPort: 80, owner: 'A', loopback: true });
      fw.addPortMapping({ protocol: 'tcp', hostPort: 8081, containerAddress: '10.0.0.18', containerPort: 81, owner: 'A' });
      // without route_localnet the kernel refuses to route 127.0.0.1 out of ve-test
      expect(await t.connect(t.host, 'tcp', '127.0.0.1', 8080)).not.toMatch(/^OK/);
      await netns.exec('sysctl', ['-qw', 'net.ipv4.conf.ve-test.route_localnet=1']);
      expect(await netns.exec('sysctl', ['-n', 'net.ipv4.conf.all.route_localnet'])).toBe('0\n');
      // masqueraded to the host side of the link: the container never sees 127.0.0.1
      expect(await t.connect(t.host, 'tcp', '127.0.0.1', 8080)).toBe('OK 80 10.0.0.17');
      expect(await t.connect(t.host, 'udp', '127.0.0.1', 8080)).not.toMatch(/^OK/);
      // a mapping without the opt-in is not reachable on 127.0.0.1 (systemd's behaviour)
      expect(await t.connect(t.host, 'tcp', '127.0.0.1', 8081)).toBe('ERR ECONNREFUSED');
      expect(await t.connect(t.host, 'tcp', '198.51.100.1', 8081)).toBe('OK 81 198.51.100.1');
      fw.removePortMappings('A');
      expect(await t.connect(t.host, 'tcp', '127.0.0.1', 8080)).toBe('ERR ECONNREFUSED');
      fw.removeTables();
    } finally {
      await t.destroy();
    }
  });

  ktest('IPv6: DNAT to the container\'s address and masquerade of its subnet', async ({ netns }) => {
    const t = await topology(netns);
    try {
      await t.serve(t.container, [80]);
      const fw = new Firewall({ netnsFd: netns.fd });
      fw.ensureTables();
      fw.addPortMapping({ protocol: 'tcp', hostPort: 8080, containerAddress: 'fd00:1::2', containerPort: 80, owner: 'A' });
      expect(await t.connect(t.client, 'tcp', '2001:db8:1::1', 8080)).toBe('OK 80 2001:db8:1::2');
      // the IPv4 map knows nothing of it
      expect(await t.connect(t.client, 'tcp', '198.51.100.1', 8080)).toBe('ERR ECONNREFUSED');
      fw.addMasquerade('fd00:1::/64', 'A');
      await t.serve(t.client, [7000]);
      expect(await t.connect(t.container, 'tcp', '2001:db8:1::2', 7000)).toBe('OK 7000 2001:db8:1::1');
      fw.removePortMappings('A');
      expect(await t.connect(t.client, 'tcp', '2001:db8:1::1', 8080)).toBe('ERR ECONNREFUSED');
      fw.removeTables();
    } finally {
      await t.destroy();
    }
  });
});

describe('firewall in the caller\'s namespace', () => {
  ktest('a Firewall without netnsFd works in the current namespace (the sidecar\'s case)', async ({ netns }) => {
    // exercised through a child node process inside the test namespace, so the run's own
    // namespace keeps no table
    const script = `
      import { Firewall } from ${JSON.stringify(new URL('../../dist/net/firewall/index.js', import.meta.url).pathname)};
      const fw = new Firewall({ table: 'nspawn-ts-here' });
      fw.ensureTables();
      fw.addPortMapping({ protocol: 'tcp', hostPort: 1, containerAddress: '10.0.0.2', containerPort: 2, owner: 'x' });
      console.log(JSON.stringify(fw.state()));`;
    const out = await netns.exec(NODE, ['--input-type=module', '-e', script]);
    expect(JSON.parse(out)).toEqual({ masquerade: [], ports: [{ protocol: 'tcp', hostPort: 1, containerAddress: '10.0.0.2', containerPort: 2, owner: 'x' }] });
    expect(await netns.exec('nft', ['list', 'tables'])).toContain('table inet nspawn-ts-here');
    await netns.exec('nft', ['delete', 'table', 'inet', 'nspawn-ts-here']);
    expect(layoutMapsScript('nspawn-ts-here')).toContain('nspawn-ts-here');
  });
});

