// bin/nspawn-netd as a process: readiness through $NOTIFY_SOCKET, the JSON API on its socket, a
// container on a ve- link leased by busybox udhcpc, kill -9 and a restart (same subnet, same
// lease, firewall without duplicates), the link's end, and SIGTERM.
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { killAndWait, run, runOk, waitFor } from '../helpers/exec.js';
import type { TestNetns } from '../helpers/netns.js';
import { sys } from '../../src/native.js';
import { formatMac, generateMac, readMachineId } from '../../src/net/naming.js';
import { NetdClient } from '../../src/net/netd/client.js';
import { sockaddrUn } from '../../src/net/netd/notify.js';
import type { MachineLease, ServedLinkInfo } from '../../src/net/netd/subsystem.js';

const NETD = fileURLToPath(new URL('../../bin/nspawn-netd', import.meta.url));

interface Daemon {
  child: ChildProcess;
  log: () => string;
}

function startDaemon(dir: string, extraEnv: NodeJS.ProcessEnv = {}): Daemon {
  const child = spawn(process.execPath, [NETD, `--state-dir=${dir}/state`, `--socket=${dir}/netd.sock`, '--dns=192.0.2.53'], {
    stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...extraEnv },
  });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr?.on('data', (d: Buffer) => { out += d.toString(); });
  return { child, log: () => out };
}

async function client(dir: string): Promise<NetdClient> {
  return waitFor(() => NetdClient.connect(`${dir}/netd.sock`), 'the sidecar socket', 10_000, 20);
}

async function udhcpc(ns: TestNetns, dir: string): Promise<Record<string, string>> {
  const script = `${dir}/udhcpc.sh`;
  writeFileSync(script, `#!/bin/sh\ncase "$1" in bound|renew) env | sort > ${dir}/lease.env; ip addr replace "$ip/$mask" dev "$interface"; ip route replace default via "$router" ;; deconfig) ip link set "$interface" up ;; esac\nexit 0\n`);
  chmodSync(script, 0o755);
  rmSync(`${dir}/lease.env`, { force: true });
  await ns.exec('busybox', ['udhcpc', '-i', 'host0', '-f', '-q', '-n', '-t', '5', '-T', '1', '-s', script], { timeoutMs: 20_000 });
  const text = readFileSync(`${dir}/lease.env`, 'utf8');
  return Object.fromEntries(text.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

async function masqCount(): Promise<number> {
  const r = await run('nft', ['-j', 'list', 'set', 'inet', 'nspawn-ts', 'masq4']);
  if (r.code !== 0) return 0;
  const set = (JSON.parse(r.stdout) as { nftables: Array<{ set?: { elem?: unknown[] } }> }).nftables.find((o) => o.set)?.set;
  return set?.elem?.length ?? 0;
}

describe('nspawn-netd', () => {
  ktest('ready via NOTIFY_SOCKET; serves a systemd-nspawn link; survives kill -9 with the same subnet and lease; cleans up after the link; exits on SIGTERM', async ({ netns }) => {
    const dir = mkdtempSync('/var/lib/nspawn-ts/netd-daemon-');
    const s = sys();
    const notifyFd = s.socket(1 /* AF_UNIX */, 2 /* SOCK_DGRAM */, 0);
    let daemon: Daemon | undefined;
    try {
      s.bind(notifyFd, sockaddrUn(`${dir}/notify`));
      const mac = formatMac(generateMac(readMachineId(), 'svc', 'container'));
      await runOk('ip', ['link', 'add', 've-svc', 'type', 'veth', 'peer', 'name', 'host0', 'netns', netns.name]);
      await netns.exec('ip', ['link', 'set', 'host0', 'address', mac]);

      daemon = startDaemon(dir, { NOTIFY_SOCKET: `${dir}/notify` });
      const buf = new Uint8Array(4096);
      const ready = await waitFor(() => {
        const n = s.recv(notifyFd, buf);
        return n > 0 ? Buffer.from(buf.subarray(0, n)).toString() : undefined;
      }, 'READY=1 on the notify socket', 15_000);
      expect(ready).toMatch(/^READY=1$/m);
      expect(statSync(`${dir}/netd.sock`).mode & 0o777).toBe(0o600);

      let c = await client(dir);
      const status = await c.request<{ mode: string; pid: number; dns: string[] }>({ op: 'status' });
      expect(status).toMatchObject({ mode: 'sidecar', pid: daemon.child.pid, dns: ['192.0.2.53'], dhcp: true });
      const links = await c.request<ServedLinkInfo[]>({ op: 'list' });
      expect(links).toHaveLength(1);
      const first = links[0] as ServedLinkInfo;
      expect(first).toMatchObject({ ifname: 've-svc', kind: 'veth', key: 'svc' });
      const reserved = first.reservations.find((r) => r.mac === mac)?.address;
      expect(reserved).toBeDefined();

      // a bad request is refused and changes nothing
      expect(await c.raw('{"op":"reserve","machine":"svc","mac":"ff:ff:ff:ff:ff:ff","kind":"veth"}'))
        .toMatchObject({ ok: false, error: { code: 'NETD_BAD_REQUEST' } });
      expect(await c.raw('{"op":"reserve","machine":"nolink","mac":"02:00:00:00:00:01","kind":"veth"}'))
        .toMatchObject({ ok: false, error: { code: 'NETD_NO_LINK' } });
      expect(await c.request({ op: 'list' })).toEqual(links);

      const env = await udhcpc(netns, dir);
      expect(env.ip).toBe(reserved);
      expect(env.router).toBe(first.hostAddress);
      await netns.exec('busybox', ['ping', '-c', '1', '-W', '2', first.hostAddress]);
      expect(await c.request({ op: 'leases', ifname: 've-svc' })).toMatchObject([{ address: reserved, mac, state: 'bound' }]);
      // the launcher's reservation for the same machine returns the same address
      const lease = await c.request<MachineLease>({ op: 'reserve', machine: 'svc', mac, kind: 'veth' });
      expect(lease).toMatchObject({ address: reserved, gateway: first.hostAddress, prefixLength: 28, subnet: first.subnet });
      c.close();

      // kill -9, start again
      await killAndWait(daemon.child, 'SIGKILL');
      expect(existsSync(`${dir}/netd.sock`)).toBe(true); // stale
      daemon = startDaemon(dir);
      c = await client(dir);
      const again = (await c.request<ServedLinkInfo[]>({ op: 'list' }))[0];
      expect(again?.subnet).toBe(first.subnet);
      expect(await c.request({ op: 'leases', ifname: 've-svc' })).toMatchObject([{ address: reserved, mac, state: 'bound' }]);
      expect(await masqCount()).toBe(1);
      // the container kept its address; its client renews it
      expect((await udhcpc(netns, dir)).ip).toBe(reserved);

      // the container ends
      await runOk('ip', ['link', 'del', 've-svc']);
      await waitFor(async () => (await c.request<unknown[]>({ op: 'list' })).length === 0, 'the link no longer served');
      expect(await c.request({ op: 'leases' })).toEqual([]);
      expect(await masqCount()).toBe(0);
      const state = JSON.parse(readFileSync(`${dir}/state/netd/state.json`, 'utf8')) as { links: object };
      expect(state.links).toEqual({});
      c.close();

      daemon.child.kill('SIGTERM');
      const code = await new Promise<number | null>((resolve) => daemon?.child.once('exit', (c2) => resolve(c2)));
      expect(code).toBe(0);
      expect(existsSync(`${dir}/netd.sock`)).toBe(false);
      // the empty table goes with the sidecar (it keeps it while it runs)
      expect((await run('nft', ['list', 'table', 'inet', 'nspawn-ts'])).code).not.toBe(0);
      // JSON log lines
      const lines = daemon.log().split('\n').filter(Boolean);
      expect(lines.length).toBeGreaterThan(0);
      for (const l of lines) expect(JSON.parse(l)).toHaveProperty('msg');
    } finally {
      if (daemon) await killAndWait(daemon.child);
      s.close(notifyFd);
      await run('ip', ['link', 'del', 've-svc']);
      await run('nft', ['delete', 'table', 'inet', 'nspawn-ts']);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  ktest('a second sidecar on the same socket refuses to start', async () => {
    const dir = mkdtempSync('/var/lib/nspawn-ts/netd-daemon-');
    const first = startDaemon(dir);
    try {
      (await client(dir)).close();
      const second = startDaemon(dir);
      const code = await new Promise<number | null>((resolve) => second.child.once('exit', (c) => resolve(c)));
      expect(code).toBe(1);
      expect(second.log()).toMatch(/another nspawn-netd is answering/);
    } finally {
      await killAndWait(first.child, 'SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
