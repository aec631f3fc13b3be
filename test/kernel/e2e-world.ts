// A small world for end-to-end network tests. The test run's private network namespace is the
// host; an "uplink" namespace holds the remote HTTP server at 203.0.113.1, reached from the host
// over up-host (203.0.113.2/24). The remote has no route to container subnets: a container reaches
// it only through the host's masquerade, and the server answers with the address it sees.
//
//   container host0 ── ve-/vz- [host] up-host 203.0.113.2 ── up0 203.0.113.1 [uplink: HTTP :80]
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Address4 } from 'ip-address';
import { killAndWait, run, runOk, waitFor } from '../helpers/exec.js';
import { TestNetns } from '../helpers/netns.js';
import { NSPAWN_TS, consoled } from '../helpers/nspawn.js';
import { joinCgroupsShell, SYSTEMD_NSPAWN } from '../helpers/systemd-nspawn.js';
import { NetdClient } from '../../src/net/netd/client.js';
import { readMachineId, vethMacs } from '../../src/net/naming.js';

export const REMOTE = '203.0.113.1';
export const HOST_UPLINK = '203.0.113.2';
/** The same two ends over IPv6 (a documentation prefix). */
export const REMOTE6 = '2001:db8:ffff::1';
export const HOST_UPLINK6 = '2001:db8:ffff::2';
export const NETD = fileURLToPath(new URL('../../bin/nspawn-netd', import.meta.url));
/** DNS handed to containers in these tests (a documentation address). */
export const TEST_DNS = '192.0.2.53';

const SERVER = `
const http = require('http');
const handle = (q, r) => r.end('remote-ok ' + q.socket.remoteAddress.replace(/^::ffff:/, '') + '\\n');
http.createServer(handle).listen(80, '${REMOTE}', () =>
  http.createServer(handle).listen(80, '${REMOTE6}', () => console.log('ready')));`;

/** Shell for the container: fetch from the remote with busybox nc (its wget needs glibc's NSS). */
export const FETCH = `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 ${REMOTE} 80`;
export const FETCH6 = `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 ${REMOTE6} 80`;

export class World {
  private server: ChildProcess | undefined;
  private constructor(readonly uplink: TestNetns) {}

  static async create(): Promise<World> {
    const uplink = await TestNetns.create('uplink');
    const w = new World(uplink);
    try {
      await runOk('ip', ['link', 'add', 'up-host', 'type', 'veth', 'peer', 'name', 'up0', 'netns', uplink.name]);
      await runOk('ip', ['addr', 'add', `${HOST_UPLINK}/24`, 'dev', 'up-host']);
      await runOk('ip', ['addr', 'add', `${HOST_UPLINK6}/64`, 'dev', 'up-host', 'nodad']);
      await runOk('ip', ['link', 'set', 'up-host', 'up']);
      await uplink.exec('ip', ['addr', 'add', `${REMOTE}/24`, 'dev', 'up0']);
      await uplink.exec('ip', ['addr', 'add', `${REMOTE6}/64`, 'dev', 'up0', 'nodad']);
      await uplink.exec('ip', ['link', 'set', 'up0', 'up']);
      const server = spawn('ip', ['netns', 'exec', uplink.name, process.execPath, '-e', SERVER], { stdio: ['ignore', 'pipe', 'pipe'] });
      w.server = server;
      let out = '';
      server.stdout?.on('data', (d: Buffer) => { out += d.toString(); });
      await waitFor(() => out.includes('ready'), 'the remote HTTP server', 10_000);
    } catch (err) {
      await w.destroy();
      throw err;
    }
    return w;
  }

  async destroy(): Promise<void> {
    if (this.server) await killAndWait(this.server);
    await run('ip', ['link', 'del', 'up-host']);
    await this.uplink.destroy();
  }
}

export interface Proc {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

export function startProc(cmd: string, args: readonly string[], env: NodeJS.ProcessEnv = {}): Proc {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr?.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, output: () => out, exited };
}

/** bin/nspawn-ts with the test DNS; `args` before the command. */
export function nspawnTs(args: readonly string[], env: NodeJS.ProcessEnv = {}): Proc {
  return startProc(process.execPath, [NSPAWN_TS, '-q', ...consoled(args)], { NSPAWN_NETD_DNS: TEST_DNS, ...env });
}

/** The sidecar on the default socket and state directory (the test run's tmpfs ones). */
export async function startSidecar(): Promise<{ proc: Proc; client: () => Promise<NetdClient>; stop: () => Promise<void> }> {
  const proc = startProc(process.execPath, [NETD, `--dns=${TEST_DNS}`]);
  const client = (): Promise<NetdClient> => waitFor(() => NetdClient.connect(), 'the sidecar socket', 10_000, 20);
  (await client()).close();
  return {
    proc,
    client,
    stop: async () => {
      if (proc.child.exitCode === null && proc.child.signalCode === null) {
        proc.child.kill('SIGTERM');
        await proc.exited;
      }
    },
  };
}

/** Waits until a container's command says "ready" (a line); fails with its output if it exits first. */
export async function untilReady(p: Proc, what: string): Promise<Proc> {
  await waitFor(() => p.output().includes('ready\n') || p.child.exitCode !== null, `${what} to start`, 30_000);
  if (!p.output().includes('ready\n')) throw new Error(`${what} did not start: ${p.output()}`);
  return p;
}

/** Ends a container whose command waits for a line on stdin (`read x`); its launcher's exit code. */
export async function stopByLine(p: Proc): Promise<number | null> {
  p.child.stdin?.end('go\n');
  return exitOf(p);
}

export async function exitOf(p: Proc, timeoutMs = 60_000): Promise<number | null> {
  let t: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    t = setTimeout(() => reject(new Error(`process did not exit within ${timeoutMs} ms; output:\n${p.output()}`)), timeoutMs);
  });
  try {
    return await Promise.race([p.exited, timeout]);
  } finally {
    clearTimeout(t);
  }
}

// --- systemd-nspawn --------------------------------------------------------------------------

/** The real systemd-nspawn, started from `cgroups` (test/helpers/systemd-nspawn.ts), in this namespace. */
export function systemdNspawn(cgroups: readonly string[], args: readonly string[]): Proc {
  const script = `${joinCgroupsShell(cgroups)}\nexec ${SYSTEMD_NSPAWN} "$@"`;
  return startProc('sh', ['-c', script, 'sh', ...args]);
}

/** IPv4 prefixes of the masquerade set of our table ([] when there is no table). */
export async function masqueraded(): Promise<string[]> {
  const r = await run('nft', ['-j', 'list', 'set', 'inet', 'nspawn-ts', 'masq4']);
  if (r.code !== 0) return [];
  const set = (JSON.parse(r.stdout) as { nftables: Array<{ set?: { elem?: unknown[] } }> }).nftables.find((o) => o.set)?.set;
  return (set?.elem ?? []).map((e) => {
    const v = ((e as { elem?: { val: unknown } }).elem?.val ?? e) as { prefix?: { addr: string; len: number } };
    return v.prefix ? `${v.prefix.addr}/${v.prefix.len}` : String(v);
  });
}

export interface NetdStateFile {
  pool?: { entries: Array<{ key: string; subnet: string; active: boolean }> };
  links: Record<string, { key: string; subnet: string; reservations: Array<{ machine: string; address: string }> }>;
}

export function netdState(dir = '/var/lib/nspawn-ts'): NetdStateFile {
  try {
    return JSON.parse(readFileSync(`${dir}/netd/state.json`, 'utf8')) as NetdStateFile;
  } catch {
    return { links: {} };
  }
}

/** Nothing of `machine` left: no served link, no active subnet, no host address, no masquerade entry. */
export async function assertNothingLeftFor(machine: string, subnet: string): Promise<string[]> {
  const problems: string[] = [];
  const st = netdState();
  for (const [ifname, l] of Object.entries(st.links)) {
    if (l.key === machine || l.reservations.some((r) => r.machine === machine)) problems.push(`state still serves ${ifname} for ${machine}`);
  }
  if (st.pool?.entries.some((e) => e.key === machine && e.active)) problems.push(`subnet of ${machine} still allocated`);
  const addrs = JSON.parse((await runOk('ip', ['-j', '-4', 'addr'])) || '[]') as Array<{ ifname: string; addr_info: Array<{ local: string }> }>;
  const net = new Address4(subnet);
  for (const l of addrs) for (const a of l.addr_info) if (new Address4(a.local).isInSubnet(net)) problems.push(`address ${a.local} still on ${l.ifname}`);
  if ((await masqueraded()).includes(subnet)) problems.push(`masquerade of ${subnet} still there`);
  return problems;
}

// --- IPv6 ------------------------------------------------------------------------------------

/** Shell for a container: prints host0's global IPv6 address, its flags and the IPv6 default route. */
export const SHOW6 = 'echo "addr6=$(ip -6 -o addr show dev host0 scope global | awk \'{print $4}\')"; echo "flags6=$(ip -6 -o addr show dev host0 scope global)"; echo "route6=$(ip -6 route show default | head -1)"';
/** Waits (up to 10 s) for host0 to have a global IPv6 address and an IPv6 default route. */
export const WAIT_SLAAC = 'ip link set host0 up; i=0; while [ $i -lt 100 ] && ! { ip -6 -o addr show dev host0 scope global | grep -qv tentative && ip -6 route show default | grep -q .; }; do sleep 0.1; i=$((i+1)); done';

export interface Seen6 { addr: string | undefined; route: string | undefined; remote: string | undefined }

/** What SHOW6 and FETCH6 printed (the first SHOW6 in `out`). */
export function parse6(out: string): Seen6 {
  const get = (k: string): string | undefined => new RegExp(`^${k}=(.*)$`, 'm').exec(out)?.[1]?.trim() || undefined;
  return { addr: get('addr6'), route: get('route6'), remote: /remote-ok (\S+)/.exec(out)?.[1] };
}

/**
 * Two machine names for one zone, the second's bridge port (vb-) with the lower MAC: a bridge whose
 * MAC nobody set takes its lowest port MAC, so it changes when the second joins (the names are
 * searched: the MACs are a hash of the name and the machine ID).
 */
export function zoneNamesSecondLower(prefix: string): [string, string] {
  const id = readMachineId();
  const hex = (name: string): string => Buffer.from(vethMacs(id, name).host).toString('hex');
  const first = `${prefix}a`;
  for (let i = 0; ; i++) {
    const second = `${prefix}b${i}`;
    if (hex(second) < hex(first)) return [first, second];
  }
}

/** IPv6 prefixes of our masquerade set ([] when there is no table). */
export async function masq6(): Promise<string[]> {
  const r = await run('nft', ['-j', 'list', 'set', 'inet', 'nspawn-ts', 'masq6']);
  if (r.code !== 0) return [];
  const set = (JSON.parse(r.stdout) as { nftables: Array<{ set?: { elem?: unknown[] } }> }).nftables.find((o) => o.set)?.set;
  return (set?.elem ?? []).map((e) => {
    const v = ((e as { elem?: { val: unknown } }).elem?.val ?? e) as { prefix?: { addr: string; len: number } };
    return v.prefix ? `${v.prefix.addr}/${v.prefix.len}` : String(v);
  });
}

/** ULA addresses (fd00::/8) left on any link of the host namespace. */
export async function ulaAddresses(): Promise<string[]> {
  const addrs = JSON.parse((await runOk('ip', ['-j', '-6', 'addr'])) || '[]') as Array<{ ifname: string; addr_info: Array<{ local: string }> }>;
  return addrs.flatMap((l) => l.addr_info.filter((a) => a.local.startsWith('fd')).map((a) => `${a.local} on ${l.ifname}`));
}

/** Packet sockets bound to ETH_P_IPV6 in this network namespace: the RA server's (/proc/net/packet). */
export function raSockets(): string[] {
  const lines = readFileSync('/proc/net/packet', 'utf8').trim().split('\n').slice(1);
  // sk RefCnt Type Proto Iface R Rmem User Inode
  return lines.filter((l) => l.trim().split(/\s+/)[3]?.toLowerCase() === '86dd');
}

/**
 * Everything of a served link's IPv6 this host could be left with after its containers exit: a ULA
 * address or route, a masq6 or ports6 element, a /64 in the sidecar's state, an RA socket, IPv6
 * forwarding left on. [] when clean.
 */
export async function ipv6Leftovers(opts: { forwardingBefore?: string } = {}): Promise<string[]> {
  const problems = (await ulaAddresses()).map((a) => `address ${a}`);
  const routes = JSON.parse((await runOk('ip', ['-j', '-6', 'route', 'show', 'table', 'all'])) || '[]') as Array<{ dst: string; dev?: string }>;
  for (const r of routes) if (r.dst.startsWith('fd')) problems.push(`route ${r.dst} dev ${r.dev}`);
  for (const p of await masq6()) problems.push(`masq6 element ${p}`);
  const ports = await run('nft', ['list', 'map', 'inet', 'nspawn-ts', 'ports6']);
  if (ports.code === 0 && /elements\s*=/.test(ports.stdout)) problems.push(`ports6 elements: ${ports.stdout}`);
  for (const [ifname, l] of Object.entries(netdState().links) as Array<[string, { prefix6?: string }]>) {
    if (l.prefix6) problems.push(`state still has ${l.prefix6} for ${ifname}`);
  }
  for (const s of raSockets()) problems.push(`RA socket ${s}`);
  if (opts.forwardingBefore !== undefined) {
    const now = readFileSync('/proc/sys/net/ipv6/conf/all/forwarding', 'utf8').trim();
    if (now !== opts.forwardingBefore) problems.push(`net.ipv6.conf.all.forwarding is ${now}, was ${opts.forwardingBefore}`);
  }
  return problems;
}
