// bin/nspawn-cni driven by libcni itself (the driver of cni-env.ts) and by podman. The
// test run's namespace is the host; an "uplink" namespace (e2e-world.ts) is the internet.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { killAndWait, run, runOk, waitFor } from '../helpers/exec.js';
import { TestNetns } from '../helpers/netns.js';
import { FETCH, HOST_UPLINK, HOST_UPLINK6, netdState, REMOTE, startSidecar, World } from './e2e-world.js';
import { busyboxRoot, copyRoot } from '../helpers/rootfs.js';
import { type Call, cni, cniSuite, leftovers, network, ok, PLUGIN, PODMAN_SCRIPT, type Result, work } from './cni-env.js';

cniSuite();

describe('nspawn-cni under libcni', () => {
  ktest('ADD gives two containers addresses on one bridge, masquerade and a port map; CHECK fails once an address is gone; DEL twice leaves nothing', async () => {
    const world = await World.create();
    const c1 = await TestNetns.create('c1');
    const c2 = await TestNetns.create('c2');
    const net = network('1.0.0');
    let server: ReturnType<typeof spawn> | undefined;
    try {
      const r1 = JSON.parse(await ok(cni(net, 'add', c1, 'cid-web', {
        caps: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }] }, args: 'IgnoreUnknown=1;K8S_POD_NAME=web',
      }))) as Result;
      const r2 = JSON.parse(await ok(cni(net, 'add', c2, 'cid-db', { args: 'IgnoreUnknown=1;K8S_POD_NAME=db' }))) as Result;
      expect(r1.cniVersion).toBe('1.0.0');
      expect(r1.ips[0]?.version).toBeUndefined(); // 1.0.0 dropped it
      const [a1, len] = (r1.ips[0]?.address ?? '').split('/');
      const a2 = (r2.ips[0]?.address ?? '').split('/')[0] as string;
      expect(len).toBe('24');
      expect(r1.ips[0]?.gateway).toBe(r2.ips[0]?.gateway);
      expect(r1.interfaces.map((i) => i.name)).toEqual(['vz-podnet', expect.stringMatching(/^nc[0-9a-f]{8}$/), 'eth0']);
      expect(r1.interfaces[2]?.sandbox).toBe(c1.path);
      // the kernel agrees: address and default route in the container, its port on the bridge
      const addrs = await c1.ipJson<Array<{ addr_info: Array<{ local: string }> }>>(['-4', 'addr', 'show', 'dev', 'eth0']);
      expect(addrs[0]?.addr_info.map((a) => a.local)).toEqual([a1]);
      expect(await c1.exec('ip', ['route', 'show', 'default'])).toContain(`via ${r1.ips[0]?.gateway}`);
      // neighbours reach each other; the internet sees the host's address (masquerade)
      await c1.exec('busybox', ['ping', '-c', '1', '-W', '3', a2]);
      // IPv6: the bridge's /64, the address configured and reported, neighbours over it
      const b2 = r2.ips.find((i) => i.address.includes(':'));
      expect(b2?.address).toMatch(/^fd[0-9a-f]{2}:[0-9a-f:]+\/64$/);
      expect(b2?.gateway).toMatch(/^fe80::/);
      await c1.exec('busybox', ['ping', '-c', '1', '-W', '3', (b2?.address ?? '').split('/')[0] ?? '']);
      expect(await c2.exec('sh', ['-c', FETCH.replace('| nc ', '| busybox nc ')])).toContain(`remote-ok ${HOST_UPLINK}`);
      // -p 8080:80: from the internet to the host's address, into the container
      server = spawn('ip', ['netns', 'exec', c1.name, process.execPath, '-e',
        `require('http').createServer((q, r) => r.end('web ' + q.socket.remoteAddress + '\\n')).listen(80, () => console.log('ready'))`], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      server.stdout?.on('data', (d: Buffer) => { out += d.toString(); });
      await waitFor(() => out.includes('ready'), 'the web server in c1', 10_000);
      const page = await world.uplink.exec('sh', ['-c', `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 5 ${HOST_UPLINK} 8080`]);
      expect(page).toContain('web ');

      await ok(cni(net, 'check', c1, 'cid-web', { args: 'IgnoreUnknown=1;K8S_POD_NAME=web' }));
      await ok(cni(net, 'check', c2, 'cid-db', { args: 'IgnoreUnknown=1;K8S_POD_NAME=db' }));
      // someone deletes the container's address: CHECK says so
      await c1.exec('ip', ['addr', 'del', `${a1}/24`, 'dev', 'eth0']);
      const bad = await cni(net, 'check', c1, 'cid-web', { args: 'IgnoreUnknown=1;K8S_POD_NAME=web' });
      expect(bad.code).not.toBe(0);
      expect(bad.stderr + bad.stdout).toMatch(/lost its address/);

      await ok(cni(net, 'del', c1, 'cid-web', { args: 'IgnoreUnknown=1;K8S_POD_NAME=web' }));
      await ok(cni(net, 'del', c1, 'cid-web', { args: 'IgnoreUnknown=1;K8S_POD_NAME=web' }));
      // the bridge stays for db; web's port map went
      expect(netdState(net.stateDir).links['vz-podnet']?.reservations.map((r) => r.machine)).toEqual(['db']);
      expect((await run('nft', ['list', 'map', 'inet', 'nspawn-ts', 'ports4'])).stdout).not.toContain('8080');
      // DEL without prevResult (libcni's cache gone, as after a crash)
      rmSync(net.cache, { recursive: true, force: true });
      await ok(cni(net, 'del', c2, 'cid-db', { args: 'IgnoreUnknown=1;K8S_POD_NAME=db' }));
      await ok(cni(net, 'del', c2, 'cid-db', { args: 'IgnoreUnknown=1;K8S_POD_NAME=db' }));
      expect(await leftovers(net)).toEqual([]);
    } finally {
      if (server) await killAndWait(server);
      // a failed assertion above still leaves nothing behind
      await cni(net, 'del', c1, 'cid-web', { args: 'K8S_POD_NAME=web' });
      await cni(net, 'del', c2, 'cid-db', { args: 'K8S_POD_NAME=db' });
      await c1.destroy();
      await c2.destroy();
      await world.destroy();
    }
  }, 120_000);

  ktest('cniVersion 0.4.0 and 0.3.1 results; DEL after the namespace went; an unknown version or bad config is a CNI error', async () => {
    const c1 = await TestNetns.create('c1');
    const n4 = network('0.4.0', {}, 'net04');
    const n3 = network('0.3.1', {}, 'net031');
    try {
      const r4 = JSON.parse(await ok(cni(n4, 'add', c1, 'cid-a'))) as Result;
      expect(r4.cniVersion).toBe('0.4.0');
      expect(r4.ips[0]?.version).toBe('4');
      await ok(cni(n4, 'check', c1, 'cid-a'));
      await ok(cni(n4, 'del', c1, 'cid-a'));
      expect(await leftovers(n4)).toEqual([]);

      const ns = await TestNetns.create('gone');
      const r3 = JSON.parse(await ok(cni(n3, 'add', ns, 'cid-b'))) as Result;
      expect(r3.cniVersion).toBe('0.3.1');
      expect(r3.ips[0]?.version).toBe('4');
      await ns.destroy(); // the container died: its namespace (and the veth) with it
      await ok(cni(n3, 'del', ns.path, 'cid-b'));
      expect(await leftovers(n3)).toEqual([]);

      // errors: the plugin's own JSON, with the spec's codes
      const call = (env: Record<string, string>, stdin: string) => run(PLUGIN, [], { env: { PATH: process.env.PATH ?? '', ...env }, input: stdin });
      const v12 = await call({ CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'x', CNI_IFNAME: 'eth0', CNI_NETNS: c1.path },
        JSON.stringify({ cniVersion: '1.2.0', name: 'n', type: 'nspawn-cni' }));
      expect(v12.code).toBe(1);
      expect(JSON.parse(v12.stdout)).toMatchObject({ code: 1, msg: expect.stringContaining('1.2.0') });
      const ipam = await call({ CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'x', CNI_IFNAME: 'eth0', CNI_NETNS: c1.path },
        JSON.stringify({ cniVersion: '1.0.0', name: 'n', type: 'nspawn-cni', runtimeConfig: { portMappings: [{ hostPort: 0, containerPort: 80 }] } }));
      expect(JSON.parse(ipam.stdout)).toMatchObject({ cniVersion: '1.0.0', code: 7, msg: expect.stringContaining('hostPort') });
      const noNs = await call({ CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'x', CNI_IFNAME: 'eth0', CNI_NETNS: '/run/netns/none-such' },
        JSON.stringify({ cniVersion: '1.0.0', name: 'n', type: 'nspawn-cni', stateDir: `${work}/errstate` }));
      expect(JSON.parse(noNs.stdout)).toMatchObject({ code: 4, msg: expect.stringContaining('/run/netns/none-such') });
      // what is not a network namespace is refused before anything is made, a FIFO without hanging
      const fifo = `${work}/not-a-netns`;
      await runOk('mkfifo', [fifo]);
      for (const path of [fifo, '/etc/passwd', `/proc/${process.pid}/ns/mnt`]) {
        const notNs = await call({ CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'x', CNI_IFNAME: 'eth0', CNI_NETNS: path },
          JSON.stringify({ cniVersion: '1.0.0', name: 'n', type: 'nspawn-cni', stateDir: `${work}/errstate` }));
        expect(JSON.parse(notNs.stdout), path).toMatchObject({ code: 4, msg: expect.stringContaining('not a network namespace') });
      }
      rmSync(fifo);
      const version = await call({ CNI_COMMAND: 'VERSION' }, '{"cniVersion":"1.0.0"}');
      expect(JSON.parse(version.stdout)).toEqual({ cniVersion: '1.0.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0'] });
      // nothing was made by the refused calls
      expect((await run('ip', ['-n', c1.name, 'link', 'show', 'eth0'])).code).not.toBe(0);
    } finally {
      await c1.destroy();
    }
  }, 120_000);

  ktest('with nspawn-netd running, the plugin asks it (the state is the sidecar\'s) and DEL leaves nothing', async () => {
    const sidecar = await startSidecar();
    const c1 = await TestNetns.create('c1');
    const net = network('1.0.0', { netdSocket: '/run/nspawn-ts/netd.sock' }, 'sidenet');
    try {
      const r = JSON.parse(await ok(cni(net, 'add', c1, 'cid-s', { args: 'K8S_POD_NAME=side' }))) as Result;
      const addr = (r.ips[0]?.address ?? '').split('/')[0];
      // recorded by the sidecar in its state directory, not in the plugin's
      expect(netdState().links['vz-sidenet']?.reservations.map((x) => [x.machine, x.address])).toEqual([['side', addr]]);
      expect(netdState(net.stateDir).links).toEqual({});
      await ok(cni(net, 'check', c1, 'cid-s', { args: 'K8S_POD_NAME=side' }));
      await ok(cni(net, 'del', c1, 'cid-s', { args: 'K8S_POD_NAME=side' }));
      await ok(cni(net, 'del', c1, 'cid-s', { args: 'K8S_POD_NAME=side' }));
      await waitFor(() => netdState().links['vz-sidenet'] === undefined, 'the sidecar to forget vz-sidenet');
      // veth mode through the sidecar: it serves ve-NAME (a /28) and stops with DEL
      const vnet = network('1.0.0', { netdSocket: '/run/nspawn-ts/netd.sock', mode: 'veth' }, 'sideveth');
      const rv = JSON.parse(await ok(cni(vnet, 'add', c1, 'cid-sv', { args: 'K8S_POD_NAME=sidev' }))) as Result;
      expect(rv.ips[0]?.address).toMatch(/\/28$/);
      expect(netdState().links['ve-sidev']?.reservations.map((x) => x.machine)).toEqual(['sidev']);
      await ok(cni(vnet, 'check', c1, 'cid-sv', { args: 'K8S_POD_NAME=sidev' }));
      await ok(cni(vnet, 'del', c1, 'cid-sv', { args: 'K8S_POD_NAME=sidev' }));
      await waitFor(() => netdState().links['ve-sidev'] === undefined, 'the sidecar to forget ve-sidev');
      expect(await c1.tryExec('ip', ['link', 'show', 'eth0'])).toMatchObject({ code: 1 });
      await sidecar.stop();
      expect(await leftovers(net)).toEqual([]);
      expect(await leftovers(vnet)).toEqual([]);
    } finally {
      await sidecar.stop();
      await c1.destroy();
    }
  }, 120_000);
});

/** The IPv4 addresses on a host link. */
async function addrs4(ifname: string): Promise<string[]> {
  const links = JSON.parse(await runOk('ip', ['-j', '-4', 'addr', 'show', 'dev', ifname])) as Array<{ addr_info: Array<{ local: string }> }>;
  return links.flatMap((l) => l.addr_info.map((a) => a.local));
}

describe('nspawn-cni in-process (no sidecar) touches only its own network', () => {
  ktest('ADD and DEL on one network leave another network\'s bridge and record, and a ve- link nobody serves, as they are', async () => {
    const c1 = await TestNetns.create('c1');
    const c2 = await TestNetns.create('c2');
    const stateDir = `${work}/shared-state`;
    const one = network('1.0.0', { stateDir }, 'one');
    const two = network('1.0.0', { stateDir }, 'two');
    try {
      await ok(cni(one, 'add', c1, 'cid-one', { args: 'K8S_POD_NAME=p1' }));
      // what re-serving every link (a sidecar's start) would change: network one's bridge without
      // its address (it would be put back) and a ve- link no one serves (it would be served)
      const recordOne = netdState(stateDir).links['vz-one'];
      expect((recordOne as { holders?: string[] } | undefined)?.holders).toEqual(['sidecar']);
      await runOk('ip', ['addr', 'flush', 'dev', 'vz-one']);
      await runOk('ip', ['link', 'add', 've-stray', 'type', 'veth', 'peer', 'name', 'vs-stray']);
      await runOk('ip', ['link', 'set', 've-stray', 'up']);
      const r = JSON.parse(await ok(cni(two, 'add', c2, 'cid-two', {
        caps: { portMappings: [{ hostPort: 8090, containerPort: 80, protocol: 'tcp' }] }, args: 'K8S_POD_NAME=p2',
      }))) as Result;
      expect(r.interfaces[0]?.name).toBe('vz-two');
      const untouched = async (): Promise<void> => {
        expect(await addrs4('ve-stray')).toEqual([]);
        expect(await addrs4('vz-one')).toEqual([]);
        expect(netdState(stateDir).links['ve-stray']).toBeUndefined();
        expect(netdState(stateDir).links['vz-one']).toEqual(recordOne);
      };
      await untouched();
      await ok(cni(two, 'del', c2, 'cid-two', { args: 'K8S_POD_NAME=p2' }));
      await untouched();
      expect(netdState(stateDir).links['vz-two']).toBeUndefined();
      await ok(cni(one, 'del', c1, 'cid-one', { args: 'K8S_POD_NAME=p1' }));
      await runOk('ip', ['link', 'del', 've-stray']);
      expect(await leftovers(one)).toEqual([]);
    } finally {
      await run('ip', ['link', 'del', 've-stray']);
      await cni(two, 'del', c2, 'cid-two', { args: 'K8S_POD_NAME=p2' });
      await cni(one, 'del', c1, 'cid-one', { args: 'K8S_POD_NAME=p1' });
      await c1.destroy();
      await c2.destroy();
    }
  }, 120_000);
});

/**
 * An in-process ADD and then DEL of one container (pod `pod`), each plugin process with `preload`
 * (JavaScript) required first; `each` makes a call (the default: it must succeed). Nothing may be
 * left after — on a network of the caller's (`keepNetwork`, with containers of its own), the caller checks.
 */
async function addDelWithPreload(pod: string, preload: string, opts: { caps?: unknown; each?: (call: () => Promise<Call>) => Promise<void>; keepNetwork?: ReturnType<typeof network>; env?: Record<string, string> } = {}): Promise<void> {
  const c1 = await TestNetns.create('c1');
  const net = opts.keepNetwork ?? network('1.0.0');
  const file = `${work}/${pod}.cjs`;
  writeFileSync(file, preload);
  const env = { ...opts.env, NODE_OPTIONS: `--require ${file}` };
  const each = opts.each ?? (async (call) => { await ok(call()); });
  try {
    for (const cmd of ['add', 'del'] as const) {
      await each(() => cni(net, cmd, c1, `cid-${pod}`, { ...(opts.caps === undefined ? {} : { caps: opts.caps }), args: `K8S_POD_NAME=${pod}`, env }));
    }
    if (opts.keepNetwork === undefined) expect(await leftovers(net)).toEqual([]); // else the caller's containers are still on it
  } finally {
    await cni(net, 'del', c1, `cid-${pod}`, { args: `K8S_POD_NAME=${pod}` });
    await c1.destroy();
  }
}

/**
 * An ADD and a DEL (addDelWithPreload) whose preload runs `setup` (JavaScript) first and, at the
 * plugin process's exit (`code` its exit code), records the JavaScript expression `value`: per
 * call, "COMMAND VALUE".
 */
async function atExit(pod: string, setup: string, value: string, opts: Parameters<typeof addDelWithPreload>[2] = {}): Promise<string[]> {
  const list = `${work}/${pod}-at-exit.txt`;
  await addDelWithPreload(pod, `${setup}\nprocess.on('exit', (code) => require('fs').appendFileSync(${JSON.stringify(list)}, process.env.CNI_COMMAND + ' ' + (${value}) + '\\n'));\n`, opts);
  return readFileSync(list, 'utf8').trim().split('\n');
}

describe('nspawn-cni: start-up', () => {
  ktest('an in-process ADD and DEL load none of Node\'s net, dgram, stream, crypto, child_process, module (its ES module loader, source maps), os or rimraf modules (only what they use)', async () => {
    const lines = await atExit('lean', '', "process.moduleLoadList.filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice(13)).join(',')",
      { caps: { portMappings: [{ hostPort: 8085, containerPort: 80, protocol: 'tcp' }] } });
    expect(lines.map((l) => l.split(' ')[0])).toEqual(['ADD', 'DEL']);
    for (const l of lines) {
      const loaded = (l.split(' ')[1] ?? '').split(',');
      expect(loaded).toContain('fs'); // the list is real
      // each is compiled from source in every call (bin/nspawn-cni's V8 flags make Node refuse its own
      // code cache for modules loaded after start-up): node:module alone brings the ES module loader
      // and source maps, ~1 ms
      const unwanted = ['net', 'dgram', 'stream', 'crypto', 'child_process', 'module', 'internal/modules/esm/loader',
        'internal/source_map/source_map', 'os', 'internal/fs/rimraf'];
      expect(loaded.filter((m) => unwanted.includes(m))).toEqual([]);
    }
  }, 60_000);
});

describe('nspawn-cni: libnftables only when used', () => {
  ktest('an in-process ADD and DEL on a network that exists do not load libnftables (their firewall work is nf_tables netlink)', async () => {
    // the network's first ADD makes its firewall table (through libnftables); a container kept on it
    const keep = await TestNetns.create('ck');
    const net = network('1.0.0');
    try {
      await ok(cni(net, 'add', keep, 'cid-keep', { args: 'K8S_POD_NAME=keep' }));
      // whether the plugin's maps hold the addon (the list is real) and libnftables
      const maps = "require('fs').readFileSync('/proc/self/maps', 'utf8')";
      expect(await atExit('nolib', '', `(${maps}.includes('nspawn_native.node') ? 'addon' : 'no-addon') + ' ' + (${maps}.includes('libnftables') ? 'libnftables' : 'no-libnftables')`,
        { caps: { portMappings: [{ hostPort: 8087, containerPort: 80, protocol: 'tcp' }] }, keepNetwork: net }))
        .toEqual(['ADD addon no-libnftables', 'DEL addon no-libnftables']);
    } finally {
      await cni(net, 'del', keep, 'cid-keep', { args: 'K8S_POD_NAME=keep' });
      await keep.destroy();
    }
    expect(await leftovers(net)).toEqual([]);
  }, 60_000);
});

describe('nspawn-cni: one load of the addon', () => {
  ktest('an in-process ADD and DEL load the native addon once, though both of nspawn-cni\'s bundles carry its loader', async () => {
    const count = 'const dlopen = process.dlopen; let n = 0; process.dlopen = function (...a) { n += 1; return dlopen.apply(this, a); };';
    expect(await atExit('dlopen', count, 'n')).toEqual(['ADD 1', 'DEL 1']);
  }, 60_000);
});

describe('nspawn-cni: the exit', () => {
  // "_exit" when process.reallyExit, what process.exit calls last, is no longer Node's own at the
  // 'exit' event (whose listeners still run: a code cache may be written there)
  const how = "code + ' ' + (/\\[native code\\]/.test(String(process.reallyExit)) ? 'node-teardown' : '_exit')";

  ktest('ADD and DEL end with _exit once the \'exit\' listeners have run, not with Node\'s teardown', async () => {
    expect(await atExit('exit', '', how)).toEqual(['ADD 0 _exit', 'DEL 0 _exit']);
  }, 60_000);

  ktest('with NODE_V8_COVERAGE set, Node\'s teardown runs and writes the coverage', async () => {
    const coverage = `${work}/coverage`;
    expect(await atExit('exitcov', '', how, { env: { NODE_V8_COVERAGE: coverage } })).toEqual(['ADD 0 node-teardown', 'DEL 0 node-teardown']);
    expect(readdirSync(coverage).filter((f) => f.endsWith('.json')).length).toBeGreaterThanOrEqual(2);
  }, 60_000);
});

describe('nspawn-cni: no garbage collection', () => {
  ktest('an in-process ADD and DEL collect no garbage: bin/nspawn-cni gives V8 young-generation room for all a call allocates', async () => {
    // V8's GCProfiler sees every scavenge and mark-compact of the plugin process; node:v8 loads
    // node:stream, so not in the start-up test above
    expect(await atExit('gc', "const gc = new (require('v8').GCProfiler)(); gc.start();", "'[' + gc.stop().statistics.map((s) => s.gcType).join(',') + ']'",
      { caps: { portMappings: [{ hostPort: 8086, containerPort: 80, protocol: 'tcp' }] } })).toEqual(['ADD []', 'DEL []']);
  }, 60_000);
});

describe('nspawn-cni: the end of a call', () => {
  ktest('the plugin exits as soon as its answer is written: a handle left open (a 20 s timer) holds neither ADD nor DEL', async () => {
    await addDelWithPreload('end', 'setTimeout(() => {}, 20_000);\n', {
      each: async (call) => {
        const t0 = Date.now();
        await ok(call());
        expect(Date.now() - t0).toBeLessThan(10_000);
      },
    });
  }, 60_000);
});

describe('nspawn-cni: an address that moves to a new container', () => {
  ktest('a container started anew with the address of one just gone answers the host at once (the host forgets the old MAC)', async () => {
    const keep = await TestNetns.create('k');
    const c1 = await TestNetns.create('c1');
    const c2 = await TestNetns.create('c2');
    const net = network('1.0.0', {}, 'reuse');
    try {
      await ok(cni(net, 'add', keep, 'cid-keep', { args: 'K8S_POD_NAME=keep' })); // the bridge stays
      const r1 = JSON.parse(await ok(cni(net, 'add', c1, 'cid-1', { args: 'K8S_POD_NAME=web' }))) as Result;
      const addr = (r1.ips[0]?.address ?? '').split('/')[0] as string;
      await runOk('busybox', ['ping', '-c', '1', '-W', '2', addr]); // the host learns c1's MAC
      await ok(cni(net, 'del', c1, 'cid-1', { args: 'K8S_POD_NAME=web' }));
      const r2 = JSON.parse(await ok(cni(net, 'add', c2, 'cid-2', { args: 'K8S_POD_NAME=web' }))) as Result;
      expect(r2.ips[0]?.address.split('/')[0]).toBe(addr); // stable per pod name, another MAC
      expect(r2.interfaces[2]?.mac).not.toBe(r1.interfaces[2]?.mac);
      // within the old entry's reachable time: without forgetting it the host sends to c1's MAC
      expect((await run('busybox', ['ping', '-c', '1', '-W', '1', addr])).code).toBe(0);
      await ok(cni(net, 'del', c2, 'cid-2', { args: 'K8S_POD_NAME=web' }));
      await ok(cni(net, 'del', keep, 'cid-keep', { args: 'K8S_POD_NAME=keep' }));
      expect(await leftovers(net)).toEqual([]);
    } finally {
      await cni(net, 'del', c1, 'cid-1', { args: 'K8S_POD_NAME=web' });
      await cni(net, 'del', c2, 'cid-2', { args: 'K8S_POD_NAME=web' });
      await cni(net, 'del', keep, 'cid-keep', { args: 'K8S_POD_NAME=keep' });
      await keep.destroy();
      await c1.destroy();
      await c2.destroy();
    }
  }, 120_000);
});

describe('nspawn-cni under podman (CNI backend)', () => {
  for (const mode of ['zone', 'veth'] as const) ktest(`${mode} mode: two busybox containers on a network: addresses, default routes, each other, the internet through masquerade, -p 8080:80 from a client; rm -f leaves nothing`, async () => {
    const world = await World.create();
    const root = await copyRoot(await busyboxRoot());
    const dir = mkdtempSync(`${work}/podman-`);
    try {
      const r = await run('unshare', ['-m', '--propagation', 'private', 'bash', PODMAN_SCRIPT, dir, PLUGIN, root.dir, REMOTE, HOST_UPLINK, world.uplink.name, mode, HOST_UPLINK6], { timeoutMs: 240_000 });
      const got = Object.fromEntries(r.stdout.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
      if (r.code !== 0 || got.DONE !== '1') throw new Error(`the podman scenario failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
      const web = got.ADDR_web ?? '';
      const other = got.ADDR_other ?? '';
      expect(web).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
      expect(other).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
      expect(web).not.toBe(other);
      // zone: the bridge's .1; veth: the first address of the container's /28
      expect(got.ROUTE_web).toMatch(mode === 'zone' ? /^default via \d+\.\d+\.\d+\.1 dev eth0/ : /^default via \d+\.\d+\.\d+\.\d+ dev eth0/);
      expect(got.PING_other_web).toBe('ok');
      expect(got.NEIGHBOUR).toBe('web-ok');
      expect(got.REMOTE).toBe(`remote-ok ${HOST_UPLINK}`);
      expect(got.PORT).toBe('web-ok');
      // IPv6 from our result as podman shows it, and -p over IPv6
      expect(got.ADDR6_web).toMatch(/^fd[0-9a-f]{2}:[0-9a-f:]+$/);
      expect(got.PORT6).toBe('web-ok');
      // while they ran: both reservations, web's port, recorded in the plugin's state directory
      const up = JSON.parse(got.STATE_UP ?? '{}') as { links: Record<string, { reservations: Array<{ machine: string; ports?: unknown[] }> }> };
      if (mode === 'zone') {
        expect(got.LINKS_UP).toContain('vz-podnet');
        expect(up.links['vz-podnet']?.reservations.map((x) => [x.machine, x.ports?.length ?? 0]).sort()).toEqual([['other', 0], ['web', 1]]);
      } else {
        // a point-to-point link and a /28 each
        expect(got.LINKS_UP).toMatch(/ve-web.*ve-other|ve-other.*ve-web/);
        expect(Object.entries(up.links).map(([l, r]) => [l, r.reservations.map((x) => [x.machine, x.ports?.length ?? 0])]).sort()).toEqual([['ve-other', [['other', 0]]], ['ve-web', [['web', 1]]]]);
      }
      expect(await leftovers({ conflist: '', stateDir: `${dir}/state`, cache: '' })).toEqual([]);
    } finally {
      root.remove();
      await world.destroy();
    }
  }, 300_000);
});
