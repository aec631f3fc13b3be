// nspawn-cni with nspawn-netd running: each ADD, CHECK and DEL is ONE request on the sidecar's
// socket (the "cni" op; the sidecar counts its requests per op in "status") and the sidecar does the
// work; what either the sidecar or the plugin in-process made, the other removes; a sidecar killed
// in the middle of an ADD leaves the call to be finished in-process, with nothing half made; and
// hostile "cni" requests get clear errors and change nothing.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { killAndWait, runOk, waitFor } from '../helpers/exec.js';
import { type FileLock, lock } from '../../src/common/lock.js';
import { TestNetns } from '../helpers/netns.js';
import { NetdClient } from '../../src/net/netd/client.js';
import type { NetdResponse } from '../../src/net/netd/api.js';
import { NETD, netdState } from './e2e-world.js';
import { type Call, cni, cniSuite, leftovers, network, ok, type Net, type Result, work } from './cni-env.js';

cniSuite();

interface Sidecar {
  child: ChildProcess;
  socket: string;
  log: () => string;
  requests: () => Promise<Record<string, number>>;
  stop: (signal?: NodeJS.Signals) => Promise<void>;
}

/** bin/nspawn-netd on the network's state directory (as the plugin's in-process path uses it) and a socket of its own, logging debug. */
async function startSidecar(net: Net): Promise<Sidecar> {
  const socket = `${net.stateDir}/netd.sock`;
  mkdirSync(net.stateDir, { recursive: true });
  const child = spawn(process.execPath, [NETD, '-v', `--state-dir=${net.stateDir}`, `--socket=${socket}`, '--dns=192.0.2.53'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr?.on('data', (d: Buffer) => { out += d.toString(); });
  (await waitFor(() => NetdClient.connect(socket), 'the sidecar socket', 15_000, 20)).close();
  return {
    child, socket, log: () => out,
    requests: async () => {
      const c = await NetdClient.connect(socket);
      if (!c) throw new Error('the sidecar does not answer');
      try {
        return (await c.request<{ requests: Record<string, number> }>({ op: 'status' })).requests;
      } finally {
        c.close();
      }
    },
    stop: (signal = 'SIGTERM') => killAndWait(child, signal),
  };
}

/** A network whose plugin asks the sidecar on `socket` (state directory shared with it). */
function sidecarNet(name: string, extra: Record<string, unknown> = {}): Net {
  const net = network('1.0.0', extra, name);
  const conf = JSON.parse(readFileSync(net.conflist, 'utf8')) as { plugins: Array<Record<string, unknown>> };
  (conf.plugins[0] as Record<string, unknown>).netdSocket = `${net.stateDir}/netd.sock`;
  return { ...net, conflist: writeConf(net.conflist, conf) };
}

function writeConf(path: string, conf: unknown): string {
  writeFileSync(path, JSON.stringify(conf));
  return path;
}

/** The ops other than status counted since `before`. */
function counted(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [op, n] of Object.entries(after)) if (op !== 'status' && n !== (before[op] ?? 0)) out[op] = n - (before[op] ?? 0);
  return out;
}

async function containerAddrs(ns: TestNetns): Promise<string[]> {
  const links = await ns.ipJson<Array<{ ifname: string; addr_info: Array<{ local: string; family: string }> }>>(['addr', 'show']);
  return links.filter((l) => l.ifname !== 'lo').flatMap((l) => l.addr_info.filter((a) => a.family === 'inet').map((a) => `${l.ifname} ${a.local}`));
}

async function hostLinks(): Promise<string[]> {
  const links = JSON.parse(await runOk('ip', ['-j', 'link'])) as Array<{ ifname: string }>;
  return links.map((l) => l.ifname).filter((n) => /^(nc[0-9a-f]{8}|vz-|ve-)/.test(n)).sort();
}

/** A sidecar's ADD held at the state file's lock (taken here), after the veth pair, before the reservation. */
interface HeldAdd {
  net: Net;
  c1: TestNetns;
  sidecar: Sidecar;
  /** the plugin's call, answered once the lock is released */
  add: Promise<Call>;
  release: () => void;
  /** the lock released, the sidecar killed, the namespace gone */
  cleanup: () => Promise<void>;
}

/** A sidecar on a network of its own that has taken an ADD of `id` (pod `pod`) and waits for the state lock held here. */
async function addAtHeldLock(name: string, id: string, pod: string): Promise<HeldAdd> {
  const net = sidecarNet(name);
  const c1 = await TestNetns.create('c1');
  let sidecar: Sidecar | undefined;
  let holder: FileLock | undefined;
  const cleanup = async (): Promise<void> => {
    holder?.release();
    await sidecar?.stop('SIGKILL');
    await c1.destroy();
  };
  try {
    sidecar = await startSidecar(net);
    holder = await lock(`${net.stateDir}/netd/lock`);
    const add = cni(net, 'add', c1, id, { args: `K8S_POD_NAME=${pod}` });
    const log = sidecar.log;
    await waitFor(() => log().includes(`ADD ${id} eth0 begun`), 'the sidecar to take the ADD', 20_000);
    const held = holder;
    return { net, c1, sidecar, add, release: () => held.release(), cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

describe('nspawn-cni with nspawn-netd running', () => {
  ktest('ADD, CHECK and DEL are one "cni" request each, the sidecar does the work, and DEL leaves nothing', async () => {
    const net = sidecarNet('thin');
    const sidecar = await startSidecar(net);
    const c1 = await TestNetns.create('c1');
    try {
      const before = await sidecar.requests();
      const args = 'IgnoreUnknown=1;K8S_POD_NAME=thin1';
      const r = JSON.parse(await ok(cni(net, 'add', c1, 'cid-thin', { caps: { portMappings: [{ hostPort: 8091, containerPort: 80, protocol: 'tcp' }] }, args }))) as Result;
      expect(counted(before, await sidecar.requests())).toEqual({ cni: 1 });
      const addr = (r.ips[0]?.address ?? '').split('/')[0] ?? '';
      expect(r.interfaces.map((i) => i.name)).toEqual(['vz-thin', expect.stringMatching(/^nc[0-9a-f]{8}$/), 'eth0']);
      expect(await containerAddrs(c1)).toEqual([`eth0 ${addr}`]);
      // the sidecar did it: its log has the call, its state the reservation with the port, the record is there
      expect(sidecar.log()).toMatch(/ADD cid-thin eth0 done in/);
      const reservations = netdState(net.stateDir).links['vz-thin']?.reservations as Array<{ machine: string; address: string; ports?: Array<{ hostPort: number }> }> | undefined;
      expect(reservations?.map((x) => [x.machine, x.address, x.ports?.[0]?.hostPort])).toEqual([['thin1', addr, 8091]]);
      expect(readdirSync(`${net.stateDir}/cni/thin`)).toEqual(['cid-thin-eth0.json']);
      await c1.exec('busybox', ['ping', '-c', '1', '-W', '3', r.ips[0]?.gateway ?? '']);
      await ok(cni(net, 'check', c1, 'cid-thin', { args }));
      expect(counted(before, await sidecar.requests())).toEqual({ cni: 2 });
      // CHECK through the sidecar still finds what changed
      await c1.exec('ip', ['addr', 'del', `${addr}/24`, 'dev', 'eth0']);
      const bad = await cni(net, 'check', c1, 'cid-thin', { args });
      expect(bad.code).not.toBe(0);
      expect(bad.stdout + bad.stderr).toContain('lost its address');
      await ok(cni(net, 'del', c1, 'cid-thin', { args }));
      await ok(cni(net, 'del', c1, 'cid-thin', { args }));
      expect(counted(before, await sidecar.requests())).toEqual({ cni: 5 });
      expect(await hostLinks()).toEqual([]);
      expect(await c1.tryExec('ip', ['link', 'show', 'eth0'])).toMatchObject({ code: 1 });
      // veth mode: ve-NAME with a /28, one request each way
      const v = await startVeth(net, c1);
      expect(v).toMatch(/\/28$/);
      expect(counted(before, await sidecar.requests())).toEqual({ cni: 7 });
      await sidecar.stop();
      expect(await leftovers(net)).toEqual([]);
    } finally {
      await sidecar.stop('SIGKILL');
      await c1.destroy();
    }
  }, 120_000);

  ktest('what the sidecar added an in-process DEL removes once it is gone (its socket stale), and the reverse', async () => {
    const net = sidecarNet('cross');
    const c1 = await TestNetns.create('c1');
    const c2 = await TestNetns.create('c2');
    let sidecar = await startSidecar(net);
    try {
      const before = await sidecar.requests();
      await ok(cni(net, 'add', c1, 'cid-x1', { caps: { portMappings: [{ hostPort: 8092, containerPort: 80, protocol: 'tcp' }] }, args: 'K8S_POD_NAME=x1' }));
      expect(counted(before, await sidecar.requests())).toEqual({ cni: 1 });
      await sidecar.stop('SIGKILL'); // the socket file stays: nobody accepts on it
      expect(existsSync(sidecar.socket)).toBe(true);
      // in-process: the same record, reservation, port mapping and links
      await ok(cni(net, 'del', c1, 'cid-x1', { args: 'K8S_POD_NAME=x1' }));
      expect(await leftovers(net)).toEqual([]);

      // the reverse: added in-process (no sidecar), removed by the sidecar in one request
      await ok(cni(net, 'add', c2, 'cid-x2', { caps: { portMappings: [{ hostPort: 8093, containerPort: 80, protocol: 'tcp' }] }, args: 'K8S_POD_NAME=x2' }));
      sidecar = await startSidecar(net);
      const before2 = await sidecar.requests();
      await ok(cni(net, 'del', c2, 'cid-x2', { args: 'K8S_POD_NAME=x2' }));
      expect(counted(before2, await sidecar.requests())).toEqual({ cni: 1 });
      expect(sidecar.log()).toMatch(/DEL cid-x2 eth0 done in/);
      await sidecar.stop();
      expect(await leftovers(net)).toEqual([]);
      expect(await c2.tryExec('ip', ['link', 'show', 'eth0'])).toMatchObject({ code: 1 });
    } finally {
      await sidecar.stop('SIGKILL');
      await c1.destroy();
      await c2.destroy();
    }
  }, 120_000);

  ktest('a sidecar killed in the middle of an ADD: the plugin finishes it in-process, nothing half made', async () => {
    const { net, c1, sidecar, add, release, cleanup } = await addAtHeldLock('killed', 'cid-k', 'killed1');
    try {
      // the sidecar is in the middle of it: the request arrived and the container's link exists
      await waitFor(async () => (await containerLinks(c1)).includes('eth0'), 'the sidecar to make the veth pair', 20_000);
      await sidecar.stop('SIGKILL');
      release();
      const r = JSON.parse(await ok(add)) as Result;
      const addr = (r.ips[0]?.address ?? '').split('/')[0] ?? '';
      // one container link, configured, and one host side: the one in the result
      expect(await containerAddrs(c1)).toEqual([`eth0 ${addr}`]);
      expect(await hostLinks()).toEqual([r.interfaces[1]?.name, 'vz-killed'].sort());
      await c1.exec('busybox', ['ping', '-c', '1', '-W', '3', r.ips[0]?.gateway ?? '']);
      await ok(cni(net, 'del', c1, 'cid-k', { args: 'K8S_POD_NAME=killed1' }));
      expect(await leftovers(net)).toEqual([]);
    } finally {
      await cleanup();
    }
  }, 120_000);

  ktest('a sidecar stopped (SIGTERM) in the middle of an ADD answers it before it exits', async () => {
    const { net, c1, sidecar, add, release, cleanup } = await addAtHeldLock('stopped', 'cid-st', 'stopped1');
    try {
      const exited = new Promise<number | null>((resolve) => sidecar.child.once('exit', (code) => resolve(code)));
      sidecar.child.kill('SIGTERM');
      // stopping: the socket goes at once (new calls find no sidecar), the ADD waits for the lock
      await waitFor(() => !existsSync(sidecar.socket), 'the socket to go');
      expect(sidecar.child.exitCode).toBeNull();
      release();
      const r = JSON.parse(await ok(add)) as Result;
      expect(await exited).toBe(0);
      expect(sidecar.log()).toMatch(/ADD cid-st eth0 done in/);
      expect(await containerAddrs(c1)).toEqual([`eth0 ${(r.ips[0]?.address ?? '').split('/')[0] ?? ''}`]);
      await ok(cni(net, 'del', c1, 'cid-st', { args: 'K8S_POD_NAME=stopped1' }));
      expect(await leftovers(net)).toEqual([]);
    } finally {
      await cleanup();
    }
  }, 120_000);

  ktest('hostile "cni" requests get clear errors and change nothing', async () => {
    const net = sidecarNet('hostile');
    const sidecar = await startSidecar(net);
    const c1 = await TestNetns.create('c1');
    const client = await NetdClient.connect(sidecar.socket);
    if (!client) throw new Error('no sidecar');
    const fifo = `${work}/a-fifo`;
    await runOk('mkfifo', [fifo]);
    const config = (extra: Record<string, unknown> = {}): string => JSON.stringify({ cniVersion: '1.0.0', name: 'hostile', type: 'nspawn-cni', stateDir: net.stateDir, ...extra });
    const req = (o: Record<string, unknown>): string => JSON.stringify({ op: 'cni', command: 'ADD', containerId: 'cid-h', netns: c1.path, ifname: 'eth0', args: '', config: config(), ...o });
    const ask = async (o: Record<string, unknown>): Promise<NetdResponse> => client.raw(req(o));
    try {
      const stateBefore = existsSync(`${net.stateDir}/netd/state.json`) ? readFileSync(`${net.stateDir}/netd/state.json`, 'utf8') : '';
      // shapes: refused by the API, naming the field
      for (const [o, field] of [
        [{ netns: 'run/netns/x' }, '"netns"'], [{ netns: '' }, '"netns"'], [{ ifname: 'eth/0' }, '"ifname"'], [{ ifname: 'a'.repeat(16) }, '"ifname"'],
        [{ containerId: '../../etc' }, '"containerId"'], [{ containerId: 'a/b' }, '"containerId"'], [{ command: 'VERSION' }, '"command"'],
        [{ config: 42 }, '"config"'], [{ extra: 1 }, 'unknown field "extra"'],
      ] as Array<[Record<string, unknown>, string]>) {
        const res = await ask(o);
        expect(res, JSON.stringify(o)).toMatchObject({ ok: false, error: { code: 'NETD_BAD_REQUEST', message: expect.stringContaining(field) } });
      }
      // too long: the line limit, with the reason (on a connection of its own: the sidecar may end it)
      const other = await NetdClient.connect(sidecar.socket);
      const huge = await other?.raw(req({ config: config({ pad: 'x'.repeat(20_000) }) }));
      other?.close();
      expect(huge).toMatchObject({ ok: false, error: { code: 'NETD_BAD_REQUEST', message: expect.stringContaining('at most 16384 bytes') } });
      // what only the CNI plugin can judge: a CNI error as the answer (code 4: not a namespace, bad CNI_ARGS; 7: bad configuration)
      for (const [o, code, text] of [
        [{ netns: '/etc/passwd' }, 4, 'not a network namespace'],
        [{ netns: fifo }, 4, 'not a network namespace'],
        [{ netns: '/run/netns/none-such' }, 4, 'cannot be opened'],
        [{ netns: `/proc/${process.pid}/ns/mnt` }, 4, 'not a network namespace'],
        [{ config: config({ zone: 'a/b' }) }, 7, '"zone"'],
        [{ config: config({ ipam: { type: 'host-local' } }) }, 7, 'ipam'],
        [{ config: '{"cniVersion":"1.0.0"' }, 6, 'not JSON'],
        [{ args: 'K8S_POD_NAME' }, 4, 'CNI_ARGS'],
      ] as Array<[Record<string, unknown>, number, string]>) {
        const res = await ask(o);
        expect(res, JSON.stringify(o)).toMatchObject({ ok: true, result: { error: { code, msg: expect.stringContaining(text) } } });
      }
      // the sidecar still answers (the FIFO did not hang it), and nothing changed
      expect((await sidecar.requests()).cni).toBe(8);
      expect(await hostLinks()).toEqual([]);
      expect(await containerLinks(c1)).toEqual(['lo']);
      expect(existsSync(`${net.stateDir}/cni`)).toBe(false);
      const stateAfter = existsSync(`${net.stateDir}/netd/state.json`) ? readFileSync(`${net.stateDir}/netd/state.json`, 'utf8') : '';
      expect(stateAfter).toBe(stateBefore);
      await sidecar.stop();
      expect(await leftovers(net)).toEqual([]);
    } finally {
      client.close();
      await sidecar.stop('SIGKILL');
      await c1.destroy();
    }
  }, 120_000);
});

async function containerLinks(ns: TestNetns): Promise<string[]> {
  return (await ns.ipJson<Array<{ ifname: string }>>(['link', 'show'])).map((l) => l.ifname);
}

/** ADD and DEL in veth mode on the same sidecar; the address ADD gave. */
async function startVeth(net: Net, ns: TestNetns): Promise<string> {
  const vnet = sidecarNet('thinveth', { mode: 'veth' });
  // the same sidecar: its socket and state directory
  const conf = JSON.parse(readFileSync(vnet.conflist, 'utf8')) as { plugins: Array<Record<string, unknown>> };
  Object.assign(conf.plugins[0] as Record<string, unknown>, { netdSocket: `${net.stateDir}/netd.sock`, stateDir: net.stateDir });
  writeConf(vnet.conflist, conf);
  const r = JSON.parse(await ok(cni(vnet, 'add', ns, 'cid-tv', { args: 'K8S_POD_NAME=thinv' }))) as Result;
  expect(r.interfaces.map((i) => i.name)).toEqual(['ve-thinv', 'eth0']);
  await ok(cni(vnet, 'del', ns, 'cid-tv', { args: 'K8S_POD_NAME=thinv' }));
  return r.ips[0]?.address ?? '';
}
