// nspawn-cni's per-attachment records: STATE/cni/NETWORK/CONTAINERID-IFNAME.json, written before
// ADD makes anything, so that DEL (without CNI_ARGS or prevResult, after a crash) and GC (which
// knows only the attachments the runtime still has) find what to remove.
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmdirSync, unlinkSync, writeSync } from 'node:fs';
import type { HostPort } from '../net/firewall/index.js';
import { vethHostIfname } from '../net/naming.js';
import { type CniConfig, type CniEnv, type CniMode, hostIfnameFor, machineFor } from './config.js';

/** What one container's ADD recorded. */
export interface ContainerRecord {
  containerId: string;
  ifname: string;
  /** the reservation's name (the pool's key) */
  machine: string;
  mode: CniMode;
  zone: string;
  /** the host side of the container's veth */
  hostIfname: string;
  /** addresses came from this ipam plugin (its DEL gives them back) */
  ipam?: string;
  /** ipam: the subnets masqueraded for the network (removed with its last container) */
  subnets?: string[];
  /** ipam: the host ports forwarded (written before their mappings are made; absent in older records) */
  ports?: HostPort[];
}

function networkDir(cfg: Pick<CniConfig, 'stateDir' | 'name'>): string {
  return `${cfg.stateDir}/cni/${cfg.name.replace(/[^A-Za-z0-9_.-]/g, '_')}`;
}

export function recordPath(cfg: Pick<CniConfig, 'stateDir' | 'name'>, containerId: string, ifname: string): string {
  return `${networkDir(cfg)}/${containerId}-${ifname}.json`;
}

export function writeRecord(path: string, rec: ContainerRecord): void {
  const tmp = `${path}.${process.pid}`;
  let fd = -1;
  // the network's directory goes with its last record (removeRecord): made again if a DEL of the
  // network's last container took it between our mkdir and open
  for (let tries = 0; fd < 0; tries++) {
    mkdirSync(networkDirOf(path), { recursive: true, mode: 0o700 });
    try {
      fd = openSync(tmp, 'w', 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || tries >= 3) throw err;
    }
  }
  try {
    writeSync(fd, JSON.stringify(rec) + '\n');
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

function isHostPort(p: unknown): p is HostPort {
  if (typeof p !== 'object' || p === null) return false;
  const { protocol, hostPort } = p as Partial<HostPort>;
  return (protocol === 'tcp' || protocol === 'udp') && Number.isInteger(hostPort) && (hostPort as number) >= 1 && (hostPort as number) <= 65535;
}

/** The record at `path`; undefined when there is none or it is not one of ours. */
export function readRecord(path: string): ContainerRecord | undefined {
  try {
    const r = JSON.parse(readFileSync(path, 'utf8')) as Partial<ContainerRecord>;
    if (typeof r.containerId !== 'string' || typeof r.ifname !== 'string' || typeof r.machine !== 'string' || typeof r.zone !== 'string'
      || typeof r.hostIfname !== 'string' || (r.mode !== 'zone' && r.mode !== 'veth')) return undefined;
    return {
      containerId: r.containerId, ifname: r.ifname, machine: r.machine, mode: r.mode, zone: r.zone, hostIfname: r.hostIfname,
      ...(typeof r.ipam === 'string' ? { ipam: r.ipam } : {}),
      ...(Array.isArray(r.subnets) ? { subnets: r.subnets.filter((x): x is string => typeof x === 'string') } : {}),
      // one bad entry and the list is not trusted: DEL then finds the mappings by listing the table
      ...(Array.isArray(r.ports) && r.ports.every(isHostPort) ? { ports: r.ports.map((p) => ({ protocol: p.protocol, hostPort: p.hostPort })) } : {}),
    };
  } catch { /* none, or unreadable: DEL falls back to what the call says */ }
  return undefined;
}

/** Removes the record, and the network's directory with its last one (nothing stays once all are gone). */
export function removeRecord(path: string): void {
  // unlinkSync, not rmSync: rmSync loads (and compiles) Node's rimraf in every call that gets here
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  try {
    rmdirSync(networkDirOf(path));
  } catch { /* other records (or a record being written) are still there, or it is gone already */ }
}

function networkDirOf(path: string): string {
  return path.slice(0, path.lastIndexOf('/'));
}

/** Every record of the network (GC), with its path. */
export function listRecords(cfg: Pick<CniConfig, 'stateDir' | 'name'>): Array<{ path: string; rec: ContainerRecord }> {
  const dir = networkDir(cfg);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const out: Array<{ path: string; rec: ContainerRecord }> = [];
  for (const n of names) {
    if (!n.endsWith('.json')) continue;
    const rec = readRecord(`${dir}/${n}`);
    if (rec) out.push({ path: `${dir}/${n}`, rec });
  }
  return out;
}

/** The record ADD writes: the reservation's name, and the host side (ve-MACHINE in veth mode, where the subsystem serves it). */
export function recordFor(env: CniEnv, cfg: CniConfig): ContainerRecord {
  const machine = machineFor(env, cfg.mode);
  const hostIfname = cfg.mode === 'veth' && !cfg.ipam ? vethHostIfname(machine).name : hostIfnameFor(env.containerId, env.ifname);
  return { containerId: env.containerId, ifname: env.ifname, machine, mode: cfg.mode, zone: cfg.zone, hostIfname, ...(cfg.ipam ? { ipam: cfg.ipam.type } : {}) };
}

