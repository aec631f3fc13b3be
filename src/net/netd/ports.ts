// Port forwarding in the network subsystem (-p/--port=, Port=, --port-loopback): what the launcher
// asks for travels with the machine's reservation, so the subsystem maps the host ports to the
// address it is about to hand out — the rule is in place before the container's DHCP exchange (or
// its static configuration) finishes, unlike systemd-nspawn, which waits for the address to appear.
//
// The ports are recorded in the reservation (state file) and installed in the firewall with the
// machine name as owner. They go when the reservation goes (release, the link's removal, a zone
// member's port leaving) and a restarted sidecar reconciles the firewall to exactly the recorded
// ones. Before anything is made, checkPortClashes() refuses host ports another machine forwards —
// ours (the firewall table, and recorded reservations not yet installed), a real systemd-nspawn's
// (its io.systemd.nat tables) or nspawn-cni's ipam networks' (table inet nspawn-cni): two DNAT maps
// answering one port would make either one win.
//
// Pure helpers here; the subsystem (subsystem.ts) calls them and applies the result.
import { ConfigError } from '../../errors.js';
import { sys, type NftResult } from '../../native.js';
import { Firewall, portForwardMappings, type PortMapping } from '../firewall/index.js';
import { formatPortSpec, parsePortSpec, PortSpecError } from '../port-spec.js';
import type { PortForward } from '../model.js';
import type { NetdState, ReservationRecord } from './state.js';
import { machineAddress6 } from './ipv6.js';

/** What a machine forwards: its -p list and whether 127.0.0.1 is forwarded too. */
export interface PortRequest {
  ports: PortForward[];
  loopback: boolean;
}

/** The firewall owner of a machine's mappings (its name, as systemd-nspawn's machines are named). */
export function portOwner(machine: string): string {
  return machine;
}

/**
 * The mappings of a reservation with ports: to its IPv4 address, and with the link's IPv6 /64
 * (`prefix6`) also to its IPv6 address there (systemd-nspawn forwards IPv6 too, since v245).
 */
export function reservationMappings(r: Pick<ReservationRecord, 'machine' | 'address' | 'mac' | 'ports' | 'portLoopback'>, prefix6?: string): PortMapping[] {
  const v6 = prefix6 !== undefined ? machineAddress6(prefix6, r.mac) : undefined;
  return (r.ports ?? []).flatMap((p) => [
    ...portForwardMappings(p, r.address, portOwner(r.machine), r.portLoopback ?? false),
    ...(v6 !== undefined ? portForwardMappings(p, v6, portOwner(r.machine), false) : []),
  ]);
}

/** Every recorded mapping of the state (all links, all holders): what the firewall must hold. */
export function recordedMappings(state: NetdState): PortMapping[] {
  const seen = new Set<string>();
  return Object.values(state.links).flatMap((l) => l.reservations.flatMap((r) => {
    let ms: PortMapping[];
    try {
      ms = reservationMappings(r, l.prefix6);
    } catch {
      return []; // a hand-edited record: its ports are dropped, not fatal
    }
    // one host port, one target: a second claim (a hand-edited file) loses
    return ms.filter((m) => {
      const k = `${m.containerAddress.includes(':') ? 6 : 4} ${m.protocol} ${m.hostPort}`;
      if (seen.has(k)) return false;
      seen.add(k);
      return true;
    });
  }));
}

/** "tcp:8080:80" specs (the API's form) → PortForward[], refusing bad and duplicate entries. */
export function parsePortList(field: string, value: unknown): PortForward[] {
  if (!Array.isArray(value)) throw new ConfigError(`"${field}" must be a list of port specs like "tcp:8080:80"`, { code: 'NETD_BAD_REQUEST' });
  const out: PortForward[] = [];
  for (const [i, v] of value.entries()) {
    if (typeof v !== 'string') throw new ConfigError(`"${field}"[${i}] must be a string like "tcp:8080:80", got ${v === null ? 'null' : typeof v}`, { code: 'NETD_BAD_REQUEST' });
    let p: PortForward;
    try {
      p = parsePortSpec(v);
    } catch (err) {
      throw new ConfigError(`"${field}"[${i}]: ${(err as PortSpecError).message}`, { code: 'NETD_BAD_REQUEST' });
    }
    if (out.some((q) => q.protocol === p.protocol && q.hostPort === p.hostPort)) {
      throw new ConfigError(`"${field}"[${i}]: Duplicate port specification: ${v} (${p.protocol} port ${p.hostPort} is listed twice)`, { code: 'NETD_BAD_REQUEST' });
    }
    out.push(p);
  }
  return out;
}

/** PortForward[] → the API's "tcp:8080:80" form. */
export function formatPortList(ports: readonly PortForward[]): string[] {
  return ports.map(formatPortSpec);
}

/** A host port someone else forwards. */
export interface PortClash {
  protocol: 'tcp' | 'udp';
  hostPort: number;
  /** "10.0.0.34:80" */
  target: string;
  /** the machine holding it, or e.g. "systemd-nspawn (table ip io.systemd.nat)" */
  holder: string;
}

/** Thrown when a machine asks for host ports that are taken: names each one and its holder. */
export class PortInUseError extends ConfigError {
  readonly clashes: PortClash[];

  constructor(machine: string, clashes: PortClash[]) {
    super(`cannot forward ${clashes.map((c) => `${c.protocol} port ${c.hostPort}`).join(', ')} to ${machine}: `
      + clashes.map((c) => `${c.protocol} port ${c.hostPort} is already forwarded to ${c.target} for ${c.holder}`).join('; ')
      + ' (stop that machine or pick another host port)', { code: 'NETD_PORT_IN_USE' });
    this.clashes = clashes;
  }
}

function hostPortsOf(p: PortForward): number[] {
  const out: number[] = [];
  for (let h = p.hostPort; h <= p.hostPortEnd; h++) out.push(h);
  return out;
}

/**
 * The host ports of `ports` that another machine forwards: in the firewall (`current`, any family),
 * in the state file's reservations (recorded, maybe not yet installed), or in systemd-nspawn's
 * tables (`foreign`). The machine's own entries (a previous run) are no clash.
 */
export function findPortClashes(machine: string, ports: readonly PortForward[], sources: {
  current: readonly PortMapping[];
  state?: NetdState;
  foreign?: readonly PortClash[];
}): PortClash[] {
  const owner = portOwner(machine);
  const want = new Set(ports.flatMap((p) => hostPortsOf(p).map((h) => `${p.protocol} ${h}`)));
  const out = new Map<string, PortClash>();
  const consider = (c: PortClash): void => {
    const k = `${c.protocol} ${c.hostPort}`;
    if (want.has(k) && !out.has(k)) out.set(k, c);
  };
  for (const m of sources.current) {
    if (m.owner === owner) continue;
    const addr = m.containerAddress.includes(':') ? `[${m.containerAddress}]` : m.containerAddress;
    consider({ protocol: m.protocol, hostPort: m.hostPort, target: `${addr}:${m.containerPort}`, holder: m.owner || '(no owner)' });
  }
  if (sources.state) {
    for (const m of recordedMappings(sources.state)) {
      if (m.owner === owner) continue;
      consider({ protocol: m.protocol, hostPort: m.hostPort, target: `${m.containerAddress}:${m.containerPort}`, holder: m.owner });
    }
  }
  for (const c of sources.foreign ?? []) consider(c);
  return [...out.values()].sort((a, b) => a.hostPort - b.hostPort || a.protocol.localeCompare(b.protocol));
}

/** systemd-nspawn's port map (reference §4.3): `table ip|ip6 io.systemd.nat`, map map_port_ipport. */
export const SYSTEMD_NAT_MAPS = [
  { family: 'ip', command: 'list map ip io.systemd.nat map_port_ipport' },
  { family: 'ip6', command: 'list map ip6 io.systemd.nat map_port_ipport' },
] as const;

interface ListedMap {
  nftables: Array<{ map?: { family: string; elem?: Array<[unknown, unknown]> } }>;
}

function concatParts(e: unknown): unknown[] {
  if (typeof e === 'object' && e !== null && 'elem' in e) return concatParts((e as { elem: { val: unknown } }).elem.val);
  if (typeof e === 'object' && e !== null && 'concat' in e) return (e as { concat: unknown[] }).concat;
  return [e];
}

/**
 * The ports systemd-nspawn forwards, from `nft -j list map … map_port_ipport` outputs (absent
 * tables: rc ≠ 0, ignored). Its entries carry no owner: the holder says whose they are.
 */
export function systemdPortClashes(listings: ReadonlyArray<Pick<NftResult, 'rc' | 'output'>>): PortClash[] {
  const out: PortClash[] = [];
  for (const r of listings) {
    if (r.rc !== 0 || !r.output) continue;
    let doc: ListedMap;
    try {
      doc = JSON.parse(r.output) as ListedMap;
    } catch {
      continue;
    }
    for (const o of doc.nftables) {
      if (!o.map) continue;
      for (const [k, v] of o.map.elem ?? []) {
        const [proto, port] = concatParts(k);
        const [addr, cport] = concatParts(v);
        if ((proto !== 'tcp' && proto !== 'udp') || typeof port !== 'number') continue;
        const a = String(addr);
        out.push({
          protocol: proto, hostPort: port, target: `${a.includes(':') ? `[${a}]` : a}:${String(cport)}`,
          holder: `a systemd-nspawn container (table ${o.map.family} io.systemd.nat)`,
        });
      }
    }
  }
  return out;
}

/**
 * The table of nspawn-cni's networks whose addresses an ipam plugin gives (src/cni/ipam-net.ts): their
 * masquerade and port mappings, apart from ours. Its ADD checks our table and state under our state
 * lock; we check its ports likewise (foreignPortClashes), so a host port is given once.
 */
export const CNI_IPAM_TABLE = 'nspawn-cni';

/** The host ports forwarded outside our table: systemd-nspawn's maps, and those of our layout's other `tables` (nspawn-cni's). */
export function foreignPortClashes(tables: readonly string[] = [CNI_IPAM_TABLE]): PortClash[] {
  const out = systemdPortClashes(SYSTEMD_NAT_MAPS.map((m) => sys().nftRun(m.command)));
  for (const table of tables) {
    const fw = new Firewall({ table });
    for (const m of fw.state().ports) {
      const addr = m.containerAddress.includes(':') ? `[${m.containerAddress}]` : m.containerAddress;
      out.push({ protocol: m.protocol, hostPort: m.hostPort, target: `${addr}:${m.containerPort}`, holder: `${m.owner} (table inet ${table})` });
    }
  }
  return out;
}

/**
 * Every clash of `ports` on this host (this network namespace): the firewall's mappings (one listing
 * of our table), the recorded reservations (`state`: also those not installed yet), systemd-nspawn's
 * maps and nspawn-cni's table. What the sidecar's check-ports answers, and what a launcher without a
 * sidecar asks itself.
 */
export function hostPortClashes(machine: string, ports: readonly PortForward[], firewall: Pick<Firewall, 'state'>, state: NetdState): PortClash[] {
  if (ports.length === 0) return [];
  return findPortClashes(machine, ports, { current: firewall.state().ports, state, foreign: foreignPortClashes() });
}

/** route_localnet of a link: --port-loopback needs it on the container's host-side link only. */
export function routeLocalnetPath(ifname: string): string {
  return `/proc/sys/net/ipv4/conf/${ifname}/route_localnet`;
}
