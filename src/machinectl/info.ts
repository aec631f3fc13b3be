// What list, status and show report about a running machine, gathered from its registry record
// and from the machine itself: its OS (os-release read inside its root, via /proc/LEADER/root),
// its addresses, processes (those in its PID namespace), user-namespace shift and cgroup usage.
import { detectLayout, MachineCgroup, parseProcCgroup, cgroupFsPath, type CgroupLayout, type CgroupUsage, type MachineCgroupState } from '../runtime/cgroups.js';
import { readOsRelease } from '../runtime/images.js';
import { formatProperties, mergeProperties, parseProperties } from '../runtime/properties.js';
import { loadProperties } from '../runtime/property-store.js';
import type { MachineRecord } from '../runtime/registry.js';
import type { PortForward } from '../runtime/spec.js';
import { sys } from '../native.js';
import { Rtnl } from '../net/rtnl.js';
import { logger } from '../log.js';
import { Proc, type ProcessInfo } from './procfs.js';

const log = logger('machinectl');

export const SERVICE = 'nspawn-ts';

export interface MachineAddress {
  family: 4 | 6;
  address: string;
  ifname?: string;
  ifindex?: number;
}

export interface MachineInfo {
  name: string;
  class: 'container';
  service: string;
  rootDirectory: string;
  /** µs since the epoch */
  since: number;
  leader?: { pid: number; comm?: string };
  launcherPid: number;
  os: Record<string, string>;
  /** host-side links of the machine (ve-foo, vb-foo …) */
  interfaces: string[];
  addresses: MachineAddress[];
  ports: PortForward[];
  subnets: string[];
  uidShift?: number;
  processes: ProcessInfo[];
  usage?: CgroupUsage;
  /** effective resource properties as NAME=VALUE */
  properties: string[];
}

/** IPv4 before IPv6, then by interface and address: the order machined lists addresses in. */
export function sortAddresses(list: MachineAddress[]): MachineAddress[] {
  const key = (a: MachineAddress): string => `${a.family}|${String(a.ifindex ?? 0).padStart(10, '0')}|${a.ifname ?? ''}`;
  return [...list].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
}

const RT_SCOPE_HOST = 254;
const IFA_F_DEPRECATED = 0x20;

/**
 * The addresses of the container's interfaces, read from its network namespace (/proc/LEADER/ns/net)
 * over rtnetlink, as machined's GetMachineAddresses does: every address but host-scope (loopback)
 * and deprecated ones. Undefined when the namespace cannot be read.
 */
export async function namespaceAddresses(nsPath: string): Promise<MachineAddress[] | undefined> {
  let fd: number;
  try {
    fd = sys().openNamespace(nsPath);
  } catch {
    return undefined;
  }
  let rtnl: Rtnl | undefined;
  try {
    rtnl = Rtnl.open({ netnsFd: fd });
    const links = await rtnl.listLinks();
    const addrs = await rtnl.listAddresses();
    const names = new Map(links.map((l) => [l.index, l.name]));
    const out: MachineAddress[] = [];
    for (const a of addrs) {
      if (a.scope >= RT_SCOPE_HOST || (a.flags & IFA_F_DEPRECATED) !== 0) continue;
      const ifname = names.get(a.index);
      out.push({ family: a.family, address: a.address, ifindex: a.index, ...(ifname !== undefined ? { ifname } : {}) });
    }
    return sortAddresses(out);
  } catch (err) {
    log.debug('cannot read the addresses of a machine', { netns: nsPath, error: (err as Error).message });
    return undefined;
  } finally {
    rtnl?.close();
    sys().close(fd);
  }
}

/** The container's addresses as the record has them (what the network subsystem configured). */
export function recordAddresses(r: MachineRecord): MachineAddress[] {
  const out: MachineAddress[] = [];
  for (const a of r.network?.addresses ?? []) {
    if (a.side !== 'container') continue;
    out.push({ family: a.address.includes(':') ? 6 : 4, address: a.address, ifname: a.ifname });
  }
  return sortAddresses(out);
}

/** Where the properties a machine runs with come from: its cgroup state, else start-time ones. */
function effectiveProperties(r: MachineRecord, propertiesDir?: string): string[] {
  const c = r.cgroup;
  if (c) return [...c.properties];
  try {
    const start = mergeProperties(parseProperties(r.spec.properties ?? []), loadProperties(r.name, propertiesDir ? { dir: propertiesDir } : {}));
    return formatProperties(start);
  } catch {
    return (r.spec.properties ?? []).map((p) => `${p.name}=${p.value}`);
  }
}

/**
 * The machine's cgroup directories: the record's when the launcher stored them, else found from
 * the leader's cgroups (`…/nspawn-ts/machine-NAME` above it in each hierarchy). Undefined when the
 * machine has none (a launcher without resource control).
 */
export function machineCgroupState(r: MachineRecord, opts: { proc?: Proc; layout?: CgroupLayout; propertiesDir?: string } = {}): MachineCgroupState | undefined {
  const stored = r.cgroup;
  if (stored) return stored;
  if (!r.leader) return undefined;
  const proc = opts.proc ?? new Proc();
  const text = proc.read(r.leader.pid, 'cgroup');
  if (text === undefined) return undefined;
  const layout = opts.layout ?? detectLayout();
  const entries = parseProcCgroup(text);
  const marker = `/nspawn-ts/machine-${r.name}`;
  const dirs: MachineCgroupState['dirs'] = [];
  const parents: string[] = [];
  for (const h of layout.hierarchies) {
    const mine = h.version === 2 || h.controllers.some((c) => ['memory', 'cpu', 'cpuacct', 'pids'].includes(c));
    if (!mine) continue;
    const e = h.version === 2
      ? entries.find((x) => x.id === 0)
      : entries.find((x) => x.id !== 0 && h.controllers.every((c) => x.controllers.includes(c)) && x.controllers.length > 0);
    if (!e) continue;
    const at = e.path.indexOf(marker);
    if (at < 0 || (e.path.length > at + marker.length && e.path[at + marker.length] !== '/')) continue;
    const dir = cgroupFsPath(h, e.path.slice(0, at + marker.length));
    const parent = cgroupFsPath(h, e.path.slice(0, at + '/nspawn-ts'.length));
    if (dir === undefined || parent === undefined) continue;
    const controllers = h.version === 2
      ? (['memory', 'cpu', 'pids'] as const).filter((c) => layout.controllers[c]?.version === 2)
      : h.controllers;
    dirs.push({ version: h.version, controllers: [...controllers], path: dir });
    parents.push(parent);
  }
  if (dirs.length === 0) return undefined;
  return { name: r.name, dirs, parents, properties: effectiveProperties(r, opts.propertiesDir) };
}

export function openMachineCgroup(r: MachineRecord, opts: { proc?: Proc; layout?: CgroupLayout } = {}): MachineCgroup | undefined {
  const state = machineCgroupState(r, opts);
  if (!state) return undefined;
  try {
    return MachineCgroup.open(state, opts.layout ? { layout: opts.layout } : {});
  } catch {
    return undefined;
  }
}

export interface GatherOptions {
  proc?: Proc;
  /** read the cgroup's usage (status, show); list does not need it */
  usage?: boolean;
  /** the processes in the container (status) */
  processes?: boolean;
}

export async function gatherInfo(r: MachineRecord, opts: GatherOptions = {}): Promise<MachineInfo> {
  const proc = opts.proc ?? new Proc();
  const leaderPid = r.leader?.pid;
  const alive = r.leader !== undefined && proc.startTime(r.leader.pid) === r.leader.startTime;
  const info: MachineInfo = {
    name: r.name,
    class: 'container',
    service: SERVICE,
    rootDirectory: r.rootDirectory,
    since: Date.parse(r.startedAt) * 1000,
    launcherPid: r.launcher.pid,
    os: alive && leaderPid !== undefined ? readOsRelease(`${proc.root}/${leaderPid}/root`) : {},
    interfaces: (r.network?.links ?? []).filter((l) => l.side === 'host').map((l) => l.name),
    addresses: recordAddresses(r),
    ports: r.network?.ports ?? r.spec.network?.ports ?? [],
    subnets: r.network?.subnets ?? [],
    processes: [],
    properties: effectiveProperties(r),
  };
  if (alive && leaderPid !== undefined) {
    const comm = proc.comm(leaderPid);
    info.leader = comm === undefined ? { pid: leaderPid } : { pid: leaderPid, comm };
    const live = await namespaceAddresses(`${proc.root}/${leaderPid}/ns/net`);
    if (live !== undefined) info.addresses = live;
    const shift = proc.uidShift(leaderPid);
    if (shift && shift.base !== 0) info.uidShift = shift.base;
    if (opts.processes) {
      info.processes = proc.namespaceMembers(leaderPid).map((p) => proc.info(p)).filter((p): p is ProcessInfo => p !== undefined);
    }
  }
  if (opts.usage) {
    const cg = openMachineCgroup(r, { proc });
    if (cg) {
      info.usage = cg.usage();
      info.properties = formatProperties(cg.properties);
    }
  }
  return info;
}
