// What every part of the network subsystem shares: its settings, the state file, the kernel and
// firewall handles, the DHCP and DNS servers, the links it serves and their operation queue. The
// parts (link-server.ts serves one link, holder-sweep.ts clears what dead holders left,
// link-watcher.ts follows the kernel's links, firewall-table.ts keeps our nft table, link-dns.ts
// names the machines) take this object; subsystem.ts is their facade.
import { logger, type Logger } from '../../log.js';
import { Firewall } from '../firewall/index.js';
import { addressFamily } from '../firewall/model.js';
import { readMachineId } from '../naming.js';
import type { SubnetAllocation, SubnetPoolOptions } from '../pool.js';
import { Rtnl } from '../rtnl.js';
import type { DnsServer } from '../dns/index.js';
import type { RunningMachines } from '../model.js';
import { hostDns } from './dns.js';
import { FirewallTable } from './firewall-table.js';
import { Ipv6Links, type LinkIpv6 } from './ipv6.js';
import type { ServedKind } from './links.js';
import { registryMachines } from './machines.js';
import { PortForwarding } from './port-forwarding.js';
import { type Holder, processHolder, type ReservationRecord, StateStore } from './state.js';
import { DEFAULT_ZONE_LEASES_PER_SOURCE, type DhcpBackend, type SubsystemOptions } from './subsystem-types.js';
import { procSys, type SysctlIo } from './sysctl.js';

/** A link this process serves. */
export interface Served {
  kind: ServedKind;
  key: string;
  ifname: string;
  ifindex: number;
  alloc: SubnetAllocation;
  masquerade: boolean;
  dhcp: boolean;
  /** the reservation made together with serving it (serve()'s `want`) */
  placed?: ReservationRecord;
  v6?: LinkIpv6;
}

let instances = 0;

/** Whether the subsystem runs our DNS server (not when told not to, nor when given servers to hand out). */
export function servesDns(opts: Pick<SubsystemOptions, 'dnsServer' | 'dns'>): boolean {
  return opts.dnsServer !== false && !(opts.dnsServer === undefined && opts.dns);
}

/** 'sidecar', or the embedded instance: PID, start time and a counter (one process may hold several). */
function holderOf(mode: SubsystemOptions['mode']): Holder {
  return mode === 'sidecar' ? 'sidecar' : processHolder(`#${++instances}`);
}

export class SubsystemCore {
  readonly mode: SubsystemOptions['mode'];
  /** a sidecar's one call (SubsystemOptions.oneShot) */
  readonly oneShot: boolean;
  readonly holder: Holder;
  readonly log: Logger;
  readonly store: StateStore;
  readonly rtnl: Rtnl;
  readonly firewall: Firewall;
  readonly tables: FirewallTable;
  readonly ports: PortForwarding;
  readonly sysctl: SysctlIo;
  readonly poolOptions: SubnetPoolOptions;
  /** IPv4 DNS servers handed out as they are, by DHCP (none while our DNS server answers) */
  readonly dns: string[];
  /** IPv6 ones, by router advertisements (RDNSS) */
  readonly dns6: string[];
  readonly zoneLeasesPerSource: number;
  readonly machineId: Uint8Array | undefined;
  readonly machines: RunningMachines;
  /** set at open, or later by startDhcp() */
  dhcpServer: DhcpBackend | undefined;
  readonly dnsServer: DnsServer | undefined;
  readonly v6: Ipv6Links | undefined;
  readonly served = new Map<string, Served>();
  /** per-link operation queue: events and API requests for one link never interleave */
  readonly chains = new Map<string, Promise<unknown>>();
  closed = false;

  /** `dnsServer`: the DNS server's class when it serves (servesDns), loaded by the caller only then */
  constructor(opts: SubsystemOptions, dnsServer?: typeof DnsServer) {
    this.mode = opts.mode;
    this.oneShot = opts.mode === 'sidecar' && opts.oneShot === true;
    this.machines = opts.machines ?? registryMachines();
    this.holder = holderOf(opts.mode);
    const base = opts.log ?? logger('netd');
    // inside a launcher, routine events are detail (--verbose); the sidecar logs them
    this.log = opts.mode === 'embedded' ? { ...base, info: base.debug } : base;
    // a sidecar's state must survive a power cut (fsync); an embedded launcher's dies with its container
    this.store = new StateStore(opts.stateDir, { durable: opts.mode === 'sidecar' });
    this.sysctl = opts.sysctl ?? procSys;
    this.poolOptions = opts.pools ? { pools: opts.pools } : {};
    this.zoneLeasesPerSource = opts.zoneLeasesPerSource ?? DEFAULT_ZONE_LEASES_PER_SOURCE;
    if (servesDns(opts)) {
      if (!dnsServer) throw new Error('the subsystem serves DNS: its caller must pass the DNS server class');
      this.dnsServer = new dnsServer({ log: logger('dns'), ...(opts.dnsServer || {}) });
    }
    if (opts.dns) {
      this.dns = opts.dns.filter((d) => addressFamily(d) === 4);
      this.dns6 = opts.dns.filter((d) => addressFamily(d) === 6);
    } else if (this.dnsServer) {
      this.dns = [];
      this.dns6 = [];
    } else {
      const found = hostDns();
      this.dns = found.servers;
      this.dns6 = found.servers6;
      if (found.servers.length + found.servers6.length === 0) this.log.warn(`containers get no DNS server: ${found.source}`);
    }
    if (opts.machineId !== undefined) {
      this.machineId = opts.machineId ?? undefined;
    } else {
      try {
        this.machineId = readMachineId();
      } catch {
        this.machineId = undefined;
      }
    }
    this.rtnl = Rtnl.open();
    this.firewall = new Firewall(opts.firewallTable ? { table: opts.firewallTable } : {});
    this.tables = new FirewallTable(this);
    this.v6 = Ipv6Links.create(opts.ipv6 ?? { enabled: true }, this.machineId, {
      rtnl: this.rtnl, sysctl: this.sysctl, log: this.log, advertise: !this.oneShot, firewall: () => {
        this.tables.ensure();
        return this.firewall;
      },
    });
    this.ports = new PortForwarding({ firewall: this.firewall, store: this.store, sysctl: this.sysctl, log: this.log, ensureTables: () => this.tables.ensure() });
    try {
      this.dhcpServer = opts.dhcp?.(this.leaseFile);
      this.dhcpServer?.start();
    } catch (err) {
      this.rtnl.close();
      throw err;
    }
  }

  /** The DHCP server's lease journal: a sidecar's survives it; an embedded server keeps leases in memory. */
  get leaseFile(): string | undefined {
    return this.mode === 'sidecar' ? `${this.store.dir}/leases` : undefined;
  }

  /** What reservations made here record as their holder: embedded ones die with this process. */
  get embeddedHolder(): Holder | undefined {
    return this.mode === 'embedded' ? this.holder : undefined;
  }

  /** Runs `fn` after every earlier operation on `ifname` (whatever their outcome). */
  queue<T>(ifname: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.chains.get(ifname) ?? Promise.resolve();
    const p = prev.then(fn, fn);
    const tail = p.catch(() => undefined);
    this.chains.set(ifname, tail);
    void tail.then(() => {
      if (this.chains.get(ifname) === tail) this.chains.delete(ifname);
    });
    return p;
  }
}
