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
import { Firewall, NftError, portForwardMappings, type HostPort, type PortMapping } from '../firewall/index.js';
import { portKey } from '../firewall/elements.js';
import { NfnlElements } from '../firewall/nfnl.js';
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

function hostPortNumbers(p: PortForward): number[] {
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
  const want = new Set(ports.flatMap((p) => hostPortNumbers(p).map((h) => `${p.protocol} ${h}`)));
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

/** systemd-nspawn's port maps (reference §4.3): `map map_port_ipport` of `table ip|ip6 io.systemd.nat`, keyed like ours. */
export const SYSTEMD_NAT_MAPS = [
  { family: 'ip', table: 'io.systemd.nat', set: 'map_port_ipport' },
  { family: 'ip6', table: 'io.systemd.nat', set: 'map_port_ipport' },
] as const;

/** The host ports of port specs, as the firewall's keys (a range gives each of its ports). */
export function hostPortsOf(ports: readonly PortForward[]): HostPort[] {
  return ports.flatMap((p) => hostPortNumbers(p).map((hostPort) => ({ protocol: p.protocol, hostPort })));
}

/**
 * The table of nspawn-cni's networks whose addresses an ipam plugin gives (src/cni/ipam-net.ts): their
 * masquerade and port mappings, apart from ours. Its ADD checks our table and state under our state
 * lock; we check its ports likewise (foreignPortClashes), so a host port is given once.
 */
export const CNI_IPAM_TABLE = 'nspawn-cni';

/**
 * Who forwards `ports` outside our table: systemd-nspawn's maps, and our layout's other `tables`
 * (default: nspawn-cni's), in the caller's network namespace or `netnsFd`'s. Read key by key (nfnl lookups, one sendto): the cost follows the ports asked, not
 * the mappings those tables hold. Absent tables hold nothing.
 */
export function foreignPortClashes(ports: readonly PortForward[], opts: { tables?: readonly string[]; netnsFd?: number } = {}): PortClash[] {
  const tables = opts.tables ?? [CNI_IPAM_TABLE];
  const keys = [...new Set(hostPortsOf(ports).map((p) => portKey(p.protocol, p.hostPort)))];
  if (keys.length === 0) return [];
  const places = [
    ...SYSTEMD_NAT_MAPS.map((m) => ({ ...m, holder: `a systemd-nspawn container (table ${m.family} ${m.table})`, owned: false })),
    ...tables.flatMap((table) => (['ports4', 'ports6'] as const).map((set) => ({ family: 'inet' as const, table, set, holder: table, owned: true }))),
  ];
  const queries = keys.flatMap((key) => places.map((p) => ({ ...p, key })));
  const nfnl = new NfnlElements(opts.netnsFd);
  let r: ReturnType<NfnlElements['lookup']>;
  try {
    r = nfnl.lookup(queries);
  } finally {
    nfnl.close();
  }
  if ('failed' in r) throw new NftError(`looking up who forwards ${keys.join(', ')}`, r.failed);
  return queries.flatMap((q, i) => {
    const f = r.found[i];
    if (!f) return [];
    const [protocol = '', hostPort = ''] = q.key.split(' . ');
    const [addr = '?', port = '?'] = (f.data ?? '').split(' . ');
    return [{
      protocol: protocol as PortClash['protocol'], hostPort: Number(hostPort), target: `${addr.includes(':') ? `[${addr}]` : addr}:${port}`,
      holder: q.owned ? `${f.owner ?? '(no owner)'} (table inet ${q.holder})` : q.holder,
    }];
  });
}

/**
 * Every clash of `ports` on this host (this network namespace): the firewall's mappings at those
 * ports (looked up key by key), the recorded reservations (`state`: also those not installed yet),
 * systemd-nspawn's maps and nspawn-cni's table. What the sidecar's check-ports answers, and what a
 * launcher without a sidecar asks itself.
 */
export function hostPortClashes(machine: string, ports: readonly PortForward[], firewall: Pick<Firewall, 'portMappingsAt'>, state: NetdState): PortClash[] {
  if (ports.length === 0) return [];
  return findPortClashes(machine, ports, { current: firewall.portMappingsAt(hostPortsOf(ports)), state, foreign: foreignPortClashes(ports) });
}

/** route_localnet of a link: --port-loopback needs it on the container's host-side link only. */
export function routeLocalnetPath(ifname: string): string {
  return `/proc/sys/net/ipv4/conf/${ifname}/route_localnet`;
}
