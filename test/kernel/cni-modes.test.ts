// nspawn-cni beyond zone mode with our pool: the point-to-point veth mode with IPv6 (libcni driver),
// "ipam" delegated to the reference host-local plugin (IPv4 and IPv6 ranges), and CNI 1.1.0's STATUS
// and GC (the plugin run with the spec's environment and stdin: libcni 1.1.2 has no API for them).
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { killAndWait, run, runOk, waitFor } from '../helpers/exec.js';
import { TestNetns } from '../helpers/netns.js';
import { NetdClient } from '../../src/net/netd/client.js';
import { FETCH, FETCH6, HOST_UPLINK, HOST_UPLINK6, NETD, netdState, startProc, TEST_DNS, World } from './e2e-world.js';
import { cni, cniPath, cniSuite, leftovers, network, ok, PLUGIN, type Result, work } from './cni-env.js';

cniSuite();

const NC = (cmd: string): string => cmd.replace('| nc ', '| busybox nc ');

/** A web server on port 80 (both families) in `ns`, answering "web ADDRESS-OF-CLIENT". */
async function webServer(ns: TestNetns): Promise<ReturnType<typeof spawn>> {
  const server = spawn('ip', ['netns', 'exec', ns.name, process.execPath, '-e',
    `require('http').createServer((q, r) => r.end('web ' + q.socket.remoteAddress + '\\n')).listen(80, '::', () => console.log('ready'))`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  server.stdout?.on('data', (d: Buffer) => { out += d.toString(); });
  await waitFor(() => out.includes('ready'), `the web server in ${ns.name}`, 10_000);
  return server;
}

function get(ns: TestNetns, host: string, port: number): Promise<string> {
  return ns.exec('sh', ['-c', `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 5 ${host} ${port}`]);
}

describe('nspawn-cni veth mode', () => {
  ktest('a /28 and a point-to-point link per container, IPv6 from the link\'s /64; neighbours, NAT and NAT66, a port map over both families; DEL leaves nothing', async () => {
    const world = await World.create();
    const c1 = await TestNetns.create('c1');
    const c2 = await TestNetns.create('c2');
    const net = network('1.0.0', { mode: 'veth' }, 'vethnet');
    let server: ReturnType<typeof spawn> | undefined;
    try {
      const r1 = JSON.parse(await ok(cni(net, 'add', c1, 'cid-va', {
        caps: { portMappings: [{ hostPort: 8081, containerPort: 80, protocol: 'tcp' }] }, args: 'K8S_POD_NAME=va',
      }))) as Result;
      const r2 = JSON.parse(await ok(cni(net, 'add', c2, 'cid-vb', { args: 'K8S_POD_NAME=vb' }))) as Result;
      expect(r1.interfaces.map((i) => i.name)).toEqual(['ve-va', 'eth0']);
      const v4 = (r: Result) => r.ips.find((i) => !i.address.includes(':'));
      const v6 = (r: Result) => r.ips.find((i) => i.address.includes(':'));
      expect(v4(r1)?.address).toMatch(/\/28$/);
      expect(v4(r1)?.gateway).not.toBe(v4(r2)?.gateway); // a subnet each
      expect(v6(r1)?.address).toMatch(/^fd[0-9a-f]{2}:[0-9a-f:]+\/64$/);
      expect(v6(r1)?.gateway).toMatch(/^fe80::/);
      expect(v6(r1)?.interface).toBe(1);
      expect((r1 as unknown as { routes: unknown[] }).routes).toEqual([{ dst: '0.0.0.0/0', gw: v4(r1)?.gateway }, { dst: '::/0', gw: v6(r1)?.gateway }]);
      // the host side is the subsystem's veth link: the gateway there, served as --network-veth's ve-
      expect(Object.keys(netdState(net.stateDir).links).sort()).toEqual(['ve-va', 've-vb']);
      expect(await c1.exec('ip', ['-6', 'addr', 'show', 'dev', 'eth0'])).toContain((v6(r1)?.address ?? '').split('/')[0]);
      expect(await c1.exec('ip', ['-6', 'route', 'show', 'default'])).toContain(`via ${v6(r1)?.gateway ?? ''}`);
      const a2 = (v4(r2)?.address ?? '').split('/')[0] ?? '';
      const b2 = (v6(r2)?.address ?? '').split('/')[0] ?? '';
      // routed through the host: IPv4 and IPv6
      await c1.exec('busybox', ['ping', '-c', '1', '-W', '3', a2]);
      await c1.exec('busybox', ['ping', '-c', '1', '-W', '3', b2]);
      // the internet sees the host's uplink address: masquerade and NAT66
      expect(await c2.exec('sh', ['-c', NC(FETCH)])).toContain(`remote-ok ${HOST_UPLINK}`);
      expect(await c2.exec('sh', ['-c', NC(FETCH6)])).toContain(`remote-ok ${HOST_UPLINK6}`);
      // -p 8081:80 from the uplink, to the host's IPv4 and IPv6 addresses
      server = await webServer(c1);
      expect(await get(world.uplink, HOST_UPLINK, 8081)).toContain('web ');
      expect(await get(world.uplink, HOST_UPLINK6, 8081)).toContain('web ');

      await ok(cni(net, 'check', c1, 'cid-va', { args: 'K8S_POD_NAME=va' }));
      await c1.exec('ip', ['-6', 'addr', 'del', v6(r1)?.address ?? '', 'dev', 'eth0']);
      const bad = await cni(net, 'check', c1, 'cid-va', { args: 'K8S_POD_NAME=va' });
      expect(bad.code).not.toBe(0);
      expect(bad.stderr + bad.stdout).toMatch(/lost its address fd/);

      for (const [ns, id, pod] of [[c1, 'cid-va', 'va'], [c2, 'cid-vb', 'vb']] as const) {
        await ok(cni(net, 'del', ns, id, { args: `K8S_POD_NAME=${pod}` }));
        await ok(cni(net, 'del', ns, id, { args: `K8S_POD_NAME=${pod}` }));
      }
      expect(await leftovers(net)).toEqual([]);
    } finally {
      if (server) await killAndWait(server);
      await cni(net, 'del', c1, 'cid-va', { args: 'K8S_POD_NAME=va' });
      await cni(net, 'del', c2, 'cid-vb', { args: 'K8S_POD_NAME=vb' });
      await c1.destroy();
      await c2.destroy();
      await world.destroy();
    }
  }, 120_000);
});

describe('nspawn-cni with ipam delegated to host-local', () => {
  ktest('addresses from host-local on cn-NAME, neighbours, masquerade, a port map; a failed ADD gives its address back; DEL leaves nothing here or in host-local', async () => {
    const world = await World.create();
    const c1 = await TestNetns.create('c1');
    const c2 = await TestNetns.create('c2');
    const c3 = await TestNetns.create('c3');
    const dataDir = `${work}/host-local`;
    const net = network('1.0.0', { ipam: { type: 'host-local', ranges: [[{ subnet: '198.51.100.0/24' }]], dataDir } }, 'ipamnet');
    const allocated = (): string[] => {
      try {
        return readdirSync(`${dataDir}/ipamnet`).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)).sort();
      } catch {
        return [];
      }
    };
    let server: ReturnType<typeof spawn> | undefined;
    try {
      const r1 = JSON.parse(await ok(cni(net, 'add', c1, 'cid-i1', { caps: { portMappings: [{ hostPort: 8082, containerPort: 80, protocol: 'tcp' }] } }))) as Result;
      const r2 = JSON.parse(await ok(cni(net, 'add', c2, 'cid-i2'))) as Result;
      expect(r1.ips).toEqual([{ address: '198.51.100.2/24', gateway: '198.51.100.1', interface: 2 }]);
      expect(r2.ips[0]?.address).toBe('198.51.100.3/24');
      expect(r1.interfaces.map((i) => i.name)).toEqual(['cn-ipamnet', expect.stringMatching(/^nc[0-9a-f]{8}$/), 'eth0']);
      expect(allocated()).toEqual(['198.51.100.2', '198.51.100.3']);
      // not the subsystem's: no pool subnet, no record of it
      expect(netdState(net.stateDir).links).toEqual({});
      expect(await c1.exec('ip', ['route', 'show', 'default'])).toContain('via 198.51.100.1');
      await c1.exec('busybox', ['ping', '-c', '1', '-W', '3', '198.51.100.3']);
      expect(await c2.exec('sh', ['-c', NC(FETCH)])).toContain(`remote-ok ${HOST_UPLINK}`);
      server = await webServer(c1);
      expect(await get(world.uplink, HOST_UPLINK, 8082)).toContain('web ');
      await ok(cni(net, 'check', c1, 'cid-i1'));

      // our part fails after host-local gave an address (the host port is c1's): it is given back
      const clash = await cni(net, 'add', c3, 'cid-i3', { caps: { portMappings: [{ hostPort: 8082, containerPort: 80, protocol: 'tcp' }] } });
      expect(clash.code).not.toBe(0);
      expect(clash.stderr).toMatch(/8082/);
      expect(allocated()).toEqual(['198.51.100.2', '198.51.100.3']);
      expect(await c3.tryExec('ip', ['link', 'show', 'eth0'])).toMatchObject({ code: 1 });

      for (const [ns, id] of [[c1, 'cid-i1'], [c2, 'cid-i2'], [c3, 'cid-i3']] as const) {
        await ok(cni(net, 'del', ns, id));
        await ok(cni(net, 'del', ns, id));
      }
      expect(allocated()).toEqual([]);
      expect(await leftovers(net)).toEqual([]);
    } finally {
      if (server) await killAndWait(server);
      for (const [ns, id] of [[c1, 'cid-i1'], [c2, 'cid-i2'], [c3, 'cid-i3']] as const) await cni(net, 'del', ns, id);
      for (const ns of [c1, c2, c3]) await ns.destroy();
      await world.destroy();
    }
  }, 120_000);
});

describe('nspawn-cni with ipam delegated to host-local, IPv6', () => {
  ktest('an IPv6 range from host-local: neighbours over IPv6, NAT66 to the uplink as the pool\'s links have, a port map over IPv6; DEL leaves nothing', async () => {
    const world = await World.create();
    const c1 = await TestNetns.create('c1');
    const c2 = await TestNetns.create('c2');
    const net = network('1.0.0', {
      ipam: { type: 'host-local', ranges: [[{ subnet: '198.51.100.0/24' }], [{ subnet: '2001:db8:1::/64' }]], dataDir: `${work}/host-local-v6` },
    }, 'ipam6');
    let server: ReturnType<typeof spawn> | undefined;
    try {
      const r1 = JSON.parse(await ok(cni(net, 'add', c1, 'cid-s1', { caps: { portMappings: [{ hostPort: 8086, containerPort: 80, protocol: 'tcp' }] } }))) as Result;
      const r2 = JSON.parse(await ok(cni(net, 'add', c2, 'cid-s2'))) as Result;
      expect(r1.ips).toEqual([
        { address: '198.51.100.2/24', gateway: '198.51.100.1', interface: 2 },
        { address: '2001:db8:1::2/64', gateway: '2001:db8:1::1', interface: 2 },
      ]);
      expect(r2.ips[1]?.address).toBe('2001:db8:1::3/64');
      expect(await c1.exec('ip', ['-6', 'route', 'show', 'default'])).toContain('via 2001:db8:1::1');
      await c1.exec('busybox', ['ping', '-c', '1', '-W', '3', '2001:db8:1::3']);
      // the uplink has no route to 2001:db8:1::/64: only NAT66 to the host's address gets an answer back
      expect(await c2.exec('sh', ['-c', NC(FETCH6)])).toContain(`remote-ok ${HOST_UPLINK6}`);
      expect(await c2.exec('sh', ['-c', NC(FETCH)])).toContain(`remote-ok ${HOST_UPLINK}`);
      expect((await run('nft', ['list', 'set', 'inet', 'nspawn-cni', 'masq6'])).stdout).toContain('2001:db8:1::/64');
      server = await webServer(c1);
      expect(await get(world.uplink, HOST_UPLINK6, 8086)).toContain('web ');
      await ok(cni(net, 'check', c1, 'cid-s1'));
      for (const [ns, id] of [[c1, 'cid-s1'], [c2, 'cid-s2']] as const) {
        await ok(cni(net, 'del', ns, id));
        await ok(cni(net, 'del', ns, id));
      }
      expect(await leftovers(net)).toEqual([]);
    } finally {
      if (server) await killAndWait(server);
      for (const [ns, id] of [[c1, 'cid-s1'], [c2, 'cid-s2']] as const) await cni(net, 'del', ns, id);
      await c1.destroy();
      await c2.destroy();
      await world.destroy();
    }
  }, 120_000);
});

describe('nspawn-cni with ipam delegated to host-local, veth mode', () => {
  ktest('a point-to-point link each with host-local addresses (IPv4 and IPv6): the gateway as a host route, neighbours through the host, masquerade and NAT66; DEL leaves nothing', async () => {
    const world = await World.create();
    const c1 = await TestNetns.create('c1');
    const c2 = await TestNetns.create('c2');
    const net = network('1.0.0', {
      mode: 'veth', ipam: { type: 'host-local', ranges: [[{ subnet: '198.51.100.0/24' }], [{ subnet: '2001:db8:2::/64' }]], dataDir: `${work}/host-local-veth` },
    }, 'ipamveth');
    try {
      const r1 = JSON.parse(await ok(cni(net, 'add', c1, 'cid-p1'))) as Result;
      const r2 = JSON.parse(await ok(cni(net, 'add', c2, 'cid-p2'))) as Result;
      expect(r1.interfaces.map((i) => i.name)).toEqual([expect.stringMatching(/^nc[0-9a-f]{8}$/), 'eth0']);
      expect(r1.ips).toEqual([
        { address: '198.51.100.2/24', gateway: '198.51.100.1', interface: 1 },
        { address: '2001:db8:2::2/64', gateway: '2001:db8:2::1', interface: 1 },
      ]);
      // no on-link route to the /24 (/64): the gateway is reached as a host route, the rest through it
      expect(await c1.exec('ip', ['route'])).toMatch(/198\.51\.100\.0\/24 via 198\.51\.100\.1/);
      expect(await c1.exec('ip', ['-6', 'route'])).toMatch(/2001:db8:2::\/64 via 2001:db8:2::1/);
      await c1.exec('busybox', ['ping', '-c', '1', '-W', '3', (r2.ips[0]?.address ?? '').split('/')[0] ?? '']);
      await c1.exec('busybox', ['ping', '-c', '1', '-W', '3', '2001:db8:2::3']);
      expect(await c2.exec('sh', ['-c', NC(FETCH)])).toContain(`remote-ok ${HOST_UPLINK}`);
      expect(await c2.exec('sh', ['-c', NC(FETCH6)])).toContain(`remote-ok ${HOST_UPLINK6}`);
      await ok(cni(net, 'check', c1, 'cid-p1'));
      await ok(cni(net, 'del', c1, 'cid-p1'));
      await ok(cni(net, 'del', c2, 'cid-p2'));
      expect(await leftovers(net)).toEqual([]);
    } finally {
      await cni(net, 'del', c1, 'cid-p1');
      await cni(net, 'del', c2, 'cid-p2');
      await c1.destroy();
      await c2.destroy();
      await world.destroy();
    }
  }, 120_000);
});

/** The library's default pools (src/net/pool.ts DEFAULT_POOLS). */
const POOLS = ['192.168.0.0/16', '172.16.0.0/12', '10.0.0.0/8'];

/** Runs `fn` while blackhole routes on this host cover `prefixes` (default: every pool; the pool counts routes as in use). */
async function withFullPool(fn: () => Promise<void>, prefixes = POOLS): Promise<void> {
  try {
    for (const p of prefixes) await runOk('ip', ['route', 'add', 'blackhole', p]);
    await fn();
  } finally {
    for (const p of prefixes) await run('ip', ['route', 'del', 'blackhole', p]);
  }
}

/** The plugin run with the spec's environment and stdin, as a 1.1.0 runtime runs STATUS and GC. */
function call(env: Record<string, string>, stdin: unknown) {
  return run(PLUGIN, [], { env: { PATH: process.env.PATH ?? '', CNI_PATH: cniPath(), ...env }, input: JSON.stringify(stdin), timeoutMs: 60_000 });
}

describe('nspawn-cni CNI 1.1.0: STATUS, GC', () => {
  ktest('STATUS answers, also "not available" (50) on a full pool; GC removes the attachments not in cni.dev/valid-attachments; libcni 1.1.2 refuses a 1.1.0 result and its DEL then cleans up', async () => {
    const keep = await TestNetns.create('keep');
    const gone = await TestNetns.create('gone');
    const net = network('1.1.0', {}, 'gcnet');
    const conf = { cniVersion: '1.1.0', name: 'gcnet', type: 'nspawn-cni', stateDir: net.stateDir, netdSocket: `${work}/none.sock` };
    const add = (ns: TestNetns, id: string) => call({ CNI_COMMAND: 'ADD', CNI_CONTAINERID: id, CNI_IFNAME: 'eth0', CNI_NETNS: ns.path, CNI_ARGS: `K8S_POD_NAME=${id}` }, conf);
    try {
      expect(JSON.parse((await call({ CNI_COMMAND: 'VERSION' }, { cniVersion: '1.1.0' })).stdout).supportedVersions).toContain('1.1.0');
      const status = await call({ CNI_COMMAND: 'STATUS' }, conf);
      expect([status.code, status.stdout]).toEqual([0, '']);
      const noIpam = await call({ CNI_COMMAND: 'STATUS' }, { ...conf, ipam: { type: 'no-such-ipam' } });
      expect(noIpam.code).toBe(1);
      expect(JSON.parse(noIpam.stdout)).toMatchObject({ cniVersion: '1.1.0', code: 50, msg: expect.stringContaining('no-such-ipam') });
      expect(JSON.parse((await call({ CNI_COMMAND: 'STATUS' }, { ...conf, cniVersion: '1.0.0' })).stdout)).toMatchObject({ code: 1, msg: expect.stringContaining('1.1.0') });

      // a full pool (the host's routes cover every pool): not available, the pool named; the ADD it foretells fails alike
      await withFullPool(async () => {
        const full = await call({ CNI_COMMAND: 'STATUS' }, conf);
        expect(full.code).toBe(1);
        expect(JSON.parse(full.stdout)).toMatchObject({ cniVersion: '1.1.0', code: 50, msg: expect.stringContaining(`the subnet pool ${POOLS.join(', ')} has no /24 left for network gcnet`) });
        expect(JSON.parse((await call({ CNI_COMMAND: 'STATUS' }, { ...conf, mode: 'veth' })).stdout)).toMatchObject({ code: 50, msg: expect.stringContaining('has no /28 left') });
        const refused = await add(keep, 'cid-full');
        expect(refused.code).toBe(1);
        expect(refused.stdout).toContain('no free /24 subnet');
      });
      expect((await call({ CNI_COMMAND: 'STATUS' }, conf)).code).toBe(0);

      const a = await add(keep, 'cid-keep');
      const b = await add(gone, 'cid-gone');
      expect(a.code, a.stdout).toBe(0);
      expect(b.code, b.stdout).toBe(0);
      // its bridge has its subnet: the network still takes containers when the pool is full, a veth network does not
      await withFullPool(async () => {
        expect(await call({ CNI_COMMAND: 'STATUS' }, conf)).toMatchObject({ code: 0, stdout: '' });
        expect(JSON.parse((await call({ CNI_COMMAND: 'STATUS' }, { ...conf, mode: 'veth' })).stdout)).toMatchObject({ code: 50 });
      });
      expect(JSON.parse(a.stdout)).toMatchObject({ cniVersion: '1.1.0', ips: [expect.objectContaining({ address: expect.stringMatching(/\/24$/) }), expect.anything()] });
      expect(netdState(net.stateDir).links['vz-gcnet']?.reservations.map((r) => r.machine).sort()).toEqual(['cid-gone', 'cid-keep']);

      const noList = await call({ CNI_COMMAND: 'GC' }, conf);
      expect(JSON.parse(noList.stdout)).toMatchObject({ code: 7, msg: expect.stringContaining('cni.dev/valid-attachments') });
      const gc = await call({ CNI_COMMAND: 'GC' }, { ...conf, 'cni.dev/valid-attachments': [{ containerID: 'cid-keep', ifname: 'eth0' }] });
      expect([gc.code, gc.stdout]).toEqual([0, '']);
      expect(netdState(net.stateDir).links['vz-gcnet']?.reservations.map((r) => r.machine)).toEqual(['cid-keep']);
      expect(await gone.tryExec('ip', ['link', 'show', 'eth0'])).toMatchObject({ code: 1 });
      expect(await keep.exec('ip', ['-4', 'addr', 'show', 'dev', 'eth0'])).toContain('inet ');
      // GC again: nothing more to remove, the kept one stays
      expect((await call({ CNI_COMMAND: 'GC' }, { ...conf, 'cni.dev/valid-attachments': [{ containerID: 'cid-keep', ifname: 'eth0' }] })).code).toBe(0);
      expect(await keep.exec('ip', ['-4', 'addr', 'show', 'dev', 'eth0'])).toContain('inet ');
      // GC with nothing valid: the network is empty afterwards
      expect((await call({ CNI_COMMAND: 'GC' }, { ...conf, 'cni.dev/valid-attachments': [] })).code).toBe(0);
      expect(await leftovers(net)).toEqual([]);

      // GC with ipam: host-local (plugins 1.1.1 speak up to 1.0.0: asked again as 1.0.0) gives back what GC removes
      const dataDir = `${work}/host-local-gc`;
      const iconf = { ...conf, name: 'gcipam', ipam: { type: 'host-local', ranges: [[{ subnet: '198.51.100.0/24' }]], dataDir } };
      const iadd = (ns: TestNetns, id: string) => call({ CNI_COMMAND: 'ADD', CNI_CONTAINERID: id, CNI_IFNAME: 'eth0', CNI_NETNS: ns.path }, iconf);
      expect((await iadd(keep, 'cid-ikeep')).code).toBe(0);
      expect((await iadd(gone, 'cid-igone')).code).toBe(0);
      const held = (): string[] => readdirSync(`${dataDir}/gcipam`).filter((f) => /^\d/.test(f)).sort();
      expect(held()).toEqual(['198.51.100.2', '198.51.100.3']);
      const igc = await call({ CNI_COMMAND: 'GC' }, { ...iconf, 'cni.dev/valid-attachments': [{ containerID: 'cid-ikeep', ifname: 'eth0' }] });
      expect([igc.code, igc.stdout]).toEqual([0, '']);
      expect(held()).toEqual(['198.51.100.2']);
      expect(await gone.tryExec('ip', ['link', 'show', 'eth0'])).toMatchObject({ code: 1 });
      expect((await call({ CNI_COMMAND: 'GC' }, { ...iconf, 'cni.dev/valid-attachments': [] })).code).toBe(0);
      expect(held()).toEqual([]);
      expect(await leftovers({ ...net, stateDir: net.stateDir })).toEqual([]);

      // libcni 1.1.2 (podman 4.3's) with a 1.1.0 conflist: it cannot read our 1.1.0 result; as it
      // caches nothing, its DEL reaches the plugin without prevResult and removes what ADD made
      const viaLibcni = await cni(net, 'add', keep, 'cid-libcni');
      expect(viaLibcni.code).not.toBe(0);
      expect(viaLibcni.stderr).toMatch(/1\.1\.0/);
      await ok(cni(net, 'del', keep, 'cid-libcni'));
      expect(await leftovers(net)).toEqual([]);
    } finally {
      await call({ CNI_COMMAND: 'GC' }, { ...conf, 'cni.dev/valid-attachments': [] });
      await call({ CNI_COMMAND: 'GC' }, { ...conf, name: 'gcipam', ipam: { type: 'host-local', ranges: [[{ subnet: '198.51.100.0/24' }]], dataDir: `${work}/host-local-gc` }, 'cni.dev/valid-attachments': [] });
      await keep.destroy();
      await gone.destroy();
    }
  }, 120_000);

  ktest('STATUS: a zone whose every address is reserved is not available; with nspawn-netd running, its --pool= is the pool judged', async () => {
    // the state a sidecar writes for a zone with all 253 client addresses of its /24 reserved
    const stateDir = `${work}/full-zone`;
    const conf = { cniVersion: '1.1.0', name: 'full', type: 'nspawn-cni', stateDir, netdSocket: `${work}/none.sock` };
    const writeState = (n: number) => {
      const reservations = Array.from({ length: n }, (_, i) => ({ machine: `m${i}`, mac: `02:00:00:00:00:${i.toString(16).padStart(2, '0')}`, address: `10.1.2.${i + 2}` }));
      mkdirSync(`${stateDir}/netd`, { recursive: true });
      writeFileSync(`${stateDir}/netd/state.json`, JSON.stringify({
        version: 1, pool: { version: 1, entries: [{ kind: 'zone', key: 'full', subnet: '10.1.2.0/24', active: true, used: 1 }] },
        links: { 'vz-full': { kind: 'zone', key: 'full', ifname: 'vz-full', ifindex: 999, subnet: '10.1.2.0/24', reservations, holders: ['sidecar'] } },
      }));
    };
    writeState(253);
    const full = await call({ CNI_COMMAND: 'STATUS' }, conf);
    expect(JSON.parse(full.stdout)).toMatchObject({ code: 50, msg: expect.stringContaining('network full has no address left for a new container: all of 10.1.2.0/24 (vz-full) is reserved') });
    writeState(252);
    expect(await call({ CNI_COMMAND: 'STATUS' }, conf)).toMatchObject({ code: 0, stdout: '' });

    // a sidecar with a pool of its own: that pool is full, the defaults are not
    const sidecar = startProc(process.execPath, [NETD, `--dns=${TEST_DNS}`, '--pool=203.0.113.0/24']);
    try {
      (await waitFor(() => NetdClient.connect(), 'the sidecar socket', 10_000, 20)).close();
      const side = { cniVersion: '1.1.0', name: 'side', type: 'nspawn-cni' }; // the sidecar's state directory and socket
      expect(await call({ CNI_COMMAND: 'STATUS' }, side)).toMatchObject({ code: 0, stdout: '' });
      await withFullPool(async () => {
        const r = await call({ CNI_COMMAND: 'STATUS' }, side);
        expect(JSON.parse(r.stdout)).toMatchObject({ code: 50, msg: expect.stringContaining('the subnet pool 203.0.113.0/24 has no /24 left for network side') });
        // without the sidecar, ADD would take from the default pools: room there
        expect(await call({ CNI_COMMAND: 'STATUS' }, { ...side, sidecar: 'never' })).toMatchObject({ code: 0, stdout: '' });
      }, ['203.0.113.0/24']);
    } finally {
      sidecar.child.kill('SIGTERM');
      await sidecar.exited;
    }
  }, 60_000);
});

