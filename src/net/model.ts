// The network library's model: what a client (the launcher, the sidecar's API, and next the CNI
// plugin) tells the library about one container's network, and what the library needs to know of
// the machines that run. The library defines these types; clients convert their own into them
// (the launcher: src/runtime/net/request.ts, from its LaunchSpec). Plain data, no I/O.
//
// The sidecar's wire protocol (netd/api.ts) carries these types; it changes only when they do.

/** One -p/--port= forward: host port (range) → container port (range), as systemd-nspawn's expose_port. */
export interface PortForward {
  protocol: 'tcp' | 'udp';
  /** first host port, 1-65535 */
  hostPort: number;
  /** last port of a range (hostPort..hostPortEnd); equals hostPort for a single port */
  hostPortEnd: number;
  /** first container port, 1-65535 */
  containerPort: number;
  /** last container port; the range is as long as the host's */
  containerPortEnd: number;
}

/** --network-veth-extra=HOST:CONTAINER: one more veth pair, neither side configured. */
export interface VethExtra {
  /** the host side's name */
  hostIfname: string;
  /** the container side's name */
  containerIfname: string;
}

/**
 * The container's links: the network options of systemd-nspawn, one field each. Any link option
 * implies `private`. The link layer (network-plan.ts planNetwork) names and orders the links.
 */
export interface NetworkSpec {
  /** --private-network: a network namespace of its own (only loopback unless links are asked for) */
  private: boolean;
  /** -n/--network-veth: a veth pair ve-MACHINE ↔ host0 (served: subnet, address, DHCP, NAT) */
  veth: boolean;
  /** --network-veth-extra= pairs, in the order given */
  vethExtra: VethExtra[];
  /** --network-bridge=: the host side vb-MACHINE joins this (an administrator's) bridge; not served */
  bridge?: string;
  /** --network-zone=: the host side vb-MACHINE joins bridge vz-ZONE, made on demand and served */
  zone?: string;
  /** --network-macvlan= parents: a macvlan mv-PARENT in the container per parent */
  macvlan: string[];
  /** --network-ipvlan= parents: an ipvlan iv-PARENT in the container per parent */
  ipvlan: string[];
  /** --network-interface=: host interfaces moved into the container (and back at its end) */
  interfaces: string[];
  /** `--network-namespace-path=`: join this namespace instead of making one */
  namespacePath?: string;
  /** -p/--port= forwards */
  ports: PortForward[];
  /** beyond systemd-nspawn: also forward 127.0.0.1:HOSTPORT */
  portLoopback: boolean;
  /** beyond systemd-nspawn: configure host0 before the command starts, or leave it to DHCP */
  config: 'auto' | 'static' | 'dhcp';
}

/** --resolv-conf=: systemd-nspawn's modes (resolv.ts decides and applies them). */
export type ResolvConfMode =
  | 'off' | 'copy-host' | 'copy-static' | 'copy-uplink' | 'copy-stub'
  | 'replace-host' | 'replace-static' | 'replace-uplink' | 'replace-stub'
  | 'bind-host' | 'bind-static' | 'bind-uplink' | 'bind-stub'
  | 'delete' | 'auto';

/** How host0 gets its address: configured by us before the payload starts, or by a DHCP client inside. */
export type AddressConfig = 'static' | 'dhcp';

/**
 * One container as the network library sees it: everything a client hands the library about the
 * container's network. The launcher builds it from its LaunchSpec in one place
 * (src/runtime/net/request.ts containerNetworkRequest).
 */
export interface ContainerNetworkRequest {
  /** the machine name: names links (ve-MACHINE), keys its subnet and reservation */
  machine: string;
  /** its links and ports */
  network: NetworkSpec;
  /** what /etc/resolv.conf in the container becomes */
  resolvConf: ResolvConfMode;
  /** static or dhcp (--network-config=, `auto` already resolved: dhcp when the container boots an init) */
  addressConfig: AddressConfig;
  /** the container's root directory on disk (where a resolv.conf bind's target is looked up) */
  directory: string;
}

/** A process named beyond its PID (see src/common/proc.ts). */
export interface ProcessIdentity {
  pid: number;
  /** clock ticks since boot, /proc/PID/stat field 22 */
  startTime: string;
}

/**
 * The machines that run, as far as the network library must know them: whose port mappings a
 * restarted sidecar keeps (a running machine's launcher may have mapped them itself). Implemented
 * over the machine registry's records (netd/machines.ts reads them, without a lock: records are
 * replaced atomically).
 */
export interface RunningMachines {
  /** the launcher of machine `name` if that machine runs, else undefined */
  launcher(name: string): ProcessIdentity | undefined;
}
