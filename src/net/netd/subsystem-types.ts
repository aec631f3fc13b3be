// What the network subsystem (subsystem.ts) is given and gives: its options, the DHCP server's
// part it uses, a machine's lease, a served link as listed, and its error.
import { NspawnError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { DnsServerOptions } from '../dns/index.js';
import type { RunningMachines } from '../model.js';
import type { SubnetPoolOptions } from '../pool.js';
import type { ServedKind } from './links.js';
import type { Holder, ReservationRecord } from './state.js';
import type { SysctlIo } from './sysctl.js';
import type { Ipv6Settings, MachineIpv6 } from './ipv6.js';

/** The part of the DHCP server (src/dhcp) the subsystem uses. */
export interface DhcpBackend {
  start(): void;
  stop(): Promise<void>;
  addInterface(cfg: DhcpInterface): void;
  removeInterface(ifname: string): unknown;
  reserve(ifname: string, r: { mac: string; address: string; hostname?: string }): void;
  unreserve(ifname: string, which: { mac?: string; address?: string }): boolean;
  interfaces(): string[];
  leases(ifname?: string): DhcpLeaseInfo[];
}

export interface DhcpInterface {
  ifindex: number;
  ifname: string;
  /** the server's address with prefix: "192.168.37.1/28" */
  address: string;
  pool?: string;
  dns?: string[];
  reservations?: Array<{ mac: string; address: string; hostname?: string }>;
  authoritative?: boolean;
  reservedOnly?: boolean;
  leaseTime?: number;
  /** dynamic addresses held per Ethernet source, at most (0: no cap) */
  maxLeasesPerSource?: number;
}

export interface DhcpLeaseInfo {
  ifname: string;
  address: string;
  mac: string;
  state: 'offered' | 'bound' | 'released';
  expiresAt: number;
  hostname?: string;
}

export interface SubsystemOptions {
  /** 'sidecar': serve every ve-/vz- link (watching); 'embedded': only links asked for */
  mode: 'sidecar' | 'embedded';
  /**
   * With mode 'sidecar': a process that makes one reservation or release in the sidecar's name and
   * exits (nspawn-cni when no nspawn-netd runs). It watches nothing and re-serves nothing: no resync
   * of the host's links, no firewall reconcile, no router advertisements; a link served as recorded
   * (same link, its addresses and masquerade in place) is taken as it is; it touches only the link
   * it is asked about.
   */
  oneShot?: boolean;
  /** state directory (default /var/lib/nspawn-ts); the subsystem uses <dir>/netd/ */
  stateDir: string;
  /**
   * DNS servers handed to containers as they are (the embedded DNS server stays off): IPv4 ones by
   * DHCP, IPv6 ones in router advertisements (RDNSS). Default: the DNS server runs on each served
   * link's host addresses and those are handed out.
   */
  dns?: string[];
  /** the embedded DNS server's options, or false: off (then containers get the host's resolvers) */
  dnsServer?: DnsServerOptions | false;
  pools?: SubnetPoolOptions['pools'];
  firewallTable?: string;
  /**
   * Makes the DHCP server; given the lease file (sidecar) or undefined (embedded: leases in memory,
   * the reservation is what makes the address stable). Without it, no DHCP is served.
   */
  dhcp?: (leaseFile: string | undefined) => DhcpBackend;
  /** the host's machine ID, to compute the host0 MAC of systemd-nspawn's containers; null: don't */
  machineId?: Uint8Array | null;
  sysctl?: SysctlIo;
  log?: Logger;
  /**
   * On a zone (a bridge shared by several machines), at most this many DHCP addresses are held at
   * once by clients without a reservation behind one Ethernet source (default 8; 0: no cap): one
   * machine inventing clients cannot take its neighbours' pool.
   */
  zoneLeasesPerSource?: number;
  /** which machines run (whose port mappings a sweep keeps); default: the machine registry's records (registryMachines()) */
  machines?: RunningMachines;
  /** IPv6 on served links (ipv6.ts); default on, with the host's ULA /48 */
  ipv6?: Ipv6Settings;
}

/** Dynamic DHCP leases per Ethernet source on a zone: a machine with several clients of its own, not a pool. */
export const DEFAULT_ZONE_LEASES_PER_SOURCE = 8;

/** What a machine gets on its link: what the launcher configures host0 with. */
export interface MachineLease {
  machine: string;
  kind: ServedKind;
  /** the served link: ve-MACHINE or vz-ZONE */
  ifname: string;
  zone?: string;
  subnet: string;
  address: string;
  prefixLength: number;
  gateway: string;
  dns: string[];
  mac: string;
  /** host0's IPv6 (its SLAAC address, the host's link-local gateway), when the link has IPv6 */
  ipv6?: MachineIpv6;
}

export interface ServedLinkInfo {
  ifname: string;
  ifindex: number;
  kind: ServedKind;
  key: string;
  subnet: string;
  hostAddress: string;
  /** the link's IPv6 /64 and the host's address in it, when it has IPv6 */
  prefix6?: string;
  hostAddress6?: string;
  masquerade: boolean;
  dhcp: boolean;
  reservations: ReservationRecord[];
  holders: Holder[];
}

export class NetdError extends NspawnError {}
