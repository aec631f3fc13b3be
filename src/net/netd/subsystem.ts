// The network subsystem: on the host side, what systemd-networkd's 80-container-ve.network and
// 80-container-vz.network do for container links — for links our launcher makes and for those a
// real systemd-nspawn makes. One class, used by the sidecar (nspawn-netd, mode 'sidecar': it watches
// every link) and embedded in a launcher when no sidecar runs (mode 'embedded': it serves only the
// links its launcher names, for the life of the container).
//
// A served link (ve-MACHINE: a /28 for the machine; vz-ZONE: a /24 for the zone) gets, in order:
//   1. a subnet from SubnetPool, keyed by machine or zone name (stable across starts), never
//      overlapping an address or route on the host — recorded in the state file;
//   2. net.ipv4.ip_forward=1 (put back when the last served link goes, see sysctl.ts);
//   3. the link up and the host address (subnet|1) on it; other IPv4 addresses on it removed;
//   4. masquerade of the subnet (Firewall, owner "ve:MACHINE" / "vz:ZONE"; forwarding is accepted
//      for masqueraded subnets by the firewall's forward chain);
//   5. the DHCP server on it, routers = the host address, DNS = the host address (our DNS server,
//      src/net/dns: the link's machine names, the rest forwarded to the host's resolvers) or, with
//      the server off (`dns` given), the host's usable resolvers; and a reservation per machine:
//      the container's host0 MAC → its stable address.
// If a step fails, the ones done are undone. When the link goes (or its launcher releases it) all of
// that goes: DHCP interface and its leases, masquerade, pool allocation (remembered for the next
// start), state record — and the address, if the link still exists.
//
// Restart-safety: all decisions live in the state file (subnets, reservations) and in the kernel
// (addresses, nft elements with owners), leases in the DHCP server's journal. A sidecar that starts
// re-serves every ve-/vz- link it finds (same subnet: the pool remembers it, and the address on the
// link is recognised as its own), drops records of links that went while it was down, and reconciles
// the firewall's masquerade entries to exactly the served subnets.
import { ConfigError, NspawnError, errorMessage } from '../../errors.js';
import { processStartTime } from '../../common/proc.js';
import { logger, type Logger } from '../../log.js';
import { Firewall } from '../firewall/index.js';
import { CHAIN_NAMES, ruleCommands, SET_NAMES, TABLE_FAMILY } from '../firewall/rules.js';
import { cleanupStaleZoneBridges, removeZoneBridgeIfEmpty, zoneLock } from '../modes/zone.js';
import { formatMac, generateMac, readMachineId, vethHostIfname, zoneBridgeIfname } from '../naming.js';
import { describeSubnet, SubnetPool, type SubnetAllocation, type SubnetPoolOptions } from '../pool.js';
import { type Link, Rtnl, type RtnlEvent, type RtnlMonitor } from '../rtnl.js';
import { isClientAddress, placeReservation } from './addresses.js';
import {
  DEFAULT_ZONE_LEASES_PER_SOURCE, NetdError, type DhcpBackend, type DhcpInterface, type DhcpLeaseInfo, type MachineLease, type ServedLinkInfo, type SubsystemOptions,
} from './subsystem-types.js';
import { hostDns } from './dns.js';
import { DnsServer, type DnsLink } from '../dns/index.js';
import { watch, type FSWatcher } from 'node:fs';
import { classifyLink, isMasqueradeOwner, masqueradeOwner, type LinkRole, type ServedKind } from './links.js';
import { type Holder, holderAlive, type LinkRecord, type NetdState, processHolder, type ReservationRecord, StateStore } from './state.js';
import { enableForwarding, procSys, restoreForwarding, type SysctlIo } from './sysctl.js';
import { IPV6_FORWARD, Ipv6Links, type LinkIpv6 } from './ipv6.js';
import type { PortForward, RunningMachines } from '../model.js';
import { registryMachines } from './machines.js';
import { PortForwarding } from './port-forwarding.js';
import { hostPortClashes, PortInUseError, portOwner, recordedMappings } from './ports.js';

export * from './subsystem-types.js';
export { placeReservation } from './addresses.js';

interface Served {
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

const ZONE_DHCP_LEASE = 3600;

let instances = 0;

/** 'sidecar', or the embedded instance: PID, start time and a counter (one process may hold several). */
function holderOf(mode: SubsystemOptions['mode']): Holder {
  return mode === 'sidecar' ? 'sidecar' : processHolder(`#${++instances}`);
}

export class NetworkSubsystem {
  readonly mode: SubsystemOptions['mode'];
  readonly holder: Holder;
  private readonly log: Logger;
  private readonly store: StateStore;
  private readonly rtnl: Rtnl;
  private readonly firewall: Firewall;
  private readonly ports: PortForwarding;
  private readonly sysctl: SysctlIo;
  private readonly poolOptions: SubnetPoolOptions;
  private readonly dns: string[];
  private readonly zoneLeasesPerSource: number;
  private readonly machineId: Uint8Array | undefined;
  private readonly machines: RunningMachines;
  private dhcpServer: DhcpBackend | undefined;
  private readonly dnsServer: DnsServer | undefined;
  private readonly v6: Ipv6Links | undefined;
  /** embedded: other launchers' reservations on a shared zone arrive through the state file */
  private stateWatch: FSWatcher | undefined;
  private monitor: RtnlMonitor | undefined;
  private monitorDone: Promise<void> | undefined;
  private readonly served = new Map<string, Served>();
  /** per-link operation queue: events and API requests for one link never interleave */
  private readonly chains = new Map<string, Promise<unknown>>();
  private tablesReady = false;
  private closed = false;

  /** What reservations made here record as their holder: embedded ones die with this process. */
  private get embeddedHolder(): Holder | undefined {
    return this.mode === 'embedded' ? this.holder : undefined;
  }

  private constructor(opts: SubsystemOptions) {
    this.mode = opts.mode;
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
    const serveDns = opts.dnsServer !== false && !(opts.dnsServer === undefined && opts.dns);
    if (serveDns) this.dnsServer = new DnsServer({ log: logger('dns'), ...(opts.dnsServer || {}) });
    if (opts.dns) {
      this.dns = [...opts.dns];
    } else if (this.dnsServer) {
      this.dns = [];
    } else {
      const found = hostDns();
      this.dns = found.servers;
      if (found.servers.length === 0) this.log.warn(`containers get no DNS server: ${found.source}`);
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
    this.v6 = Ipv6Links.create(opts.ipv6 ?? { enabled: true }, this.machineId, {
      rtnl: this.rtnl, sysctl: this.sysctl, log: this.log, firewall: () => {
        this.ensureTables();
        return this.firewall;
      },
    });
    this.ports = new PortForwarding({ firewall: this.firewall, store: this.store, sysctl: this.sysctl, log: this.log, ensureTables: () => this.ensureTables() });
    try {
      this.dhcpServer = opts.dhcp?.(opts.mode === 'sidecar' ? `${this.store.dir}/leases` : undefined);
      this.dhcpServer?.start();
    } catch (err) {
      this.rtnl.close();
      throw err;
    }
  }

  /**
   * Opens the subsystem. A sidecar then serves every ve-/vz- link already there, reconciles state
   * and firewall, and watches for links coming and going.
   */
  static async open(opts: SubsystemOptions): Promise<NetworkSubsystem> {
    const s = new NetworkSubsystem(opts);
    if (opts.mode === 'sidecar') {
      try {
        await s.startSidecar();
      } catch (err) {
        await s.close();
        throw err;
      }
    } else {
      // the next launcher start clears what killed launchers left (no sidecar may ever run)
      try {
        await s.sweepDeadHolders(() => true);
      } catch (err) {
        s.log.warn(`clearing what stopped launchers left behind failed: ${errorMessage(err)}`);
      }
    }
    return s;
  }

  // -----------------------------------------------------------------------------------------
  // Sidecar: watch and reconcile

  private async startSidecar(): Promise<void> {
    // the monitor first, so nothing that happens while we look goes unseen
    this.monitor = this.rtnl.monitor({ groups: ['link'] });
    // zone bridges of launchers killed before they could remove them (no container on them any
    // more): removed, under the zone lock that creating and joining take (src/net/modes/zone.ts)
    try {
      const stale = await cleanupStaleZoneBridges({ host: this.rtnl });
      if (stale.length) this.log.info(`removed stale zone bridges ${stale.join(', ')}`);
    } catch (err) {
      this.log.warn(`looking for stale zone bridges failed: ${errorMessage(err)}`);
    }
    await this.resync();
    await this.reconcileFirewall();
    const mon = this.monitor;
    this.monitorDone = (async () => {
      for await (const ev of mon) {
        try {
          await this.onEvent(ev);
        } catch (err) {
          // a link that went while it was being served (a container ending): rolled back, and its
          // dellink follows; not an error of ours
          if (err instanceof NspawnError && err.code === 'ENODEV') this.log.debug(`a link went while being served: ${errorMessage(err)}`, { event: ev.type });
          else this.log.error(`handling a link event failed: ${errorMessage(err)}`, { event: ev.type });
        }
      }
    })();
  }

  private async onEvent(ev: RtnlEvent): Promise<void> {
    if (ev.type === 'overrun') {
      this.log.warn('link notifications were lost; re-reading every link');
      await this.resync();
      return;
    }
    if (ev.type !== 'newlink' && ev.type !== 'dellink') return;
    const link = ev.link;
    // a served link renamed away from its name: it is no longer ours to serve
    for (const s of this.served.values()) {
      if (s.ifindex === link.index && s.ifname !== link.name) await this.queue(s.ifname, () => this.unserve(s.ifname, true));
    }
    const role = classifyLink(link);
    if (ev.type === 'dellink') {
      if (this.served.has(link.name)) await this.queue(link.name, () => this.unserve(link.name, true));
      if (role?.role === 'port') await this.portGone(role.machine, link);
      // a link left to an embedded launcher (heldByOther) went with its killed launcher
      else if (!this.served.has(link.name)) await this.sweepDeadHolders((ifname) => ifname === link.name);
      return;
    }
    if (!role) return;
    if (role.role === 'port') {
      await this.portSeen(role.machine, link);
      return;
    }
    const cur = this.served.get(link.name);
    if (cur && cur.ifindex === link.index) return;
    if (await this.heldByOther(link.name)) return;
    // a veth's machine gets its address reserved in the same step (systemd-nspawn's host0 MAC)
    await this.queue(link.name, () => this.serve(link, role, this.nspawnWant(role)));
    if (role.role === 'zone') await this.reserveZonePorts(link);
  }

  /** Serves every ve-/vz- link there is, unserves what went; drops records of vanished links. */
  private async resync(): Promise<void> {
    const links = await this.rtnl.listLinks();
    const byName = new Map(links.map((l) => [l.name, l]));
    for (const s of [...this.served.values()]) {
      const l = byName.get(s.ifname);
      if (!l || l.index !== s.ifindex) await this.queue(s.ifname, () => this.unserve(s.ifname, !l));
    }
    // records of links that are gone (they went while no sidecar ran) are released, as are
    // reservations of launchers that are gone
    await this.sweepDeadHolders((ifname) => {
      const l = byName.get(ifname);
      const role = l ? classifyLink(l) : undefined;
      return !l || !role || role.role === 'port';
    });
    for (const l of links) {
      const role = classifyLink(l);
      if (!role || role.role === 'port') continue;
      if (this.served.get(l.name)?.ifindex === l.index) continue;
      if (await this.heldByOther(l.name)) continue;
      try {
        await this.queue(l.name, () => this.serve(l, role, this.nspawnWant(role)));
      } catch (err) {
        this.log.error(`cannot serve ${l.name}: ${errorMessage(err)}`, { ifname: l.name });
      }
    }
    for (const l of links) {
      if (l.kind === 'bridge' && this.served.has(l.name)) await this.reserveZonePorts(l);
    }
  }

  /** A link an embedded launcher is serving: a sidecar leaves it to that launcher. */
  private async heldByOther(ifname: string): Promise<boolean> {
    if (this.mode !== 'sidecar') return false;
    const rec = this.store.peek().links[ifname];
    return rec !== undefined && rec.holders.some((h) => h !== 'sidecar' && holderAlive(h));
  }

  /** The firewall holds exactly the masquerade entries of the links in the state file. */
  private async reconcileFirewall(): Promise<void> {
    const state = this.store.peek();
    const masquerade = Object.values(state.links).flatMap((r) => [
      { subnet: r.subnet, owner: masqueradeOwner(r.kind, r.key) },
      ...(r.prefix6 !== undefined && this.v6?.masquerades ? [{ subnet: r.prefix6, owner: masqueradeOwner(r.kind, r.key) }] : []),
    ]);
    // port forwarding (ports.ts): exactly the ports recorded with the reservations
    const ports = recordedMappings(state);
    const current = this.firewall.state(); // empty when the table does not exist
    if (masquerade.length === 0 && current.masquerade.length === 0 && ports.length === 0 && current.ports.length === 0) return;
    // mappings without a record belong to launchers that watch their machine's address
    // (ports-watch.ts): left alone while that launcher (state's portWatchers) or machine runs,
    // removed when it is gone
    const recorded = new Set(ports.map((p) => p.owner));
    const watched = new Set(Object.keys(state.portWatchers ?? {})); // their launchers run (the sweep before this took the others)
    const owns = (o: string | undefined): boolean => isMasqueradeOwner(o) || o === undefined || recorded.has(o) ||
      (!watched.has(o) && this.machines.launcher(o) === undefined);
    const done = this.firewall.reconcile({ masquerade, ports }, { owns });
    this.tablesReady = true;
    if (done.added.length || done.removed.length) {
      this.log.info('firewall reconciled', { added: done.added.map((e) => e.key), removed: done.removed.map((e) => e.key) });
    }
  }

  // -----------------------------------------------------------------------------------------
  // Serving one link

  private queue<T>(ifname: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.chains.get(ifname) ?? Promise.resolve();
    const p = prev.then(fn, fn);
    const tail = p.catch(() => undefined);
    this.chains.set(ifname, tail);
    void tail.then(() => {
      if (this.chains.get(ifname) === tail) this.chains.delete(ifname);
    });
    return p;
  }

  /** IPv4 prefixes in use on the host, except on `ifindex` (its own address is its own). */
  private async inUse(ifindex: number): Promise<string[]> {
    // one dump at a time per socket
    const addrs = await this.rtnl.listAddresses({ family: 4 });
    // a namespace without a single IPv4 route has no main table yet: the kernel says ENOENT
    const routes = await this.rtnl.listRoutes({ family: 4 }).catch((err: unknown) => {
      if (err instanceof NspawnError && err.code === 'ENOENT') return [];
      throw err;
    });
    return [
      ...addrs.filter((a) => a.index !== ifindex).map((a) => a.cidr),
      ...routes.filter((r) => r.oif !== ifindex && r.dst !== 'default').map((r) => r.dst),
    ];
  }

  private loadPool(state: NetdState): SubnetPool {
    return state.pool ? SubnetPool.restore(state.pool, this.poolOptions) : new SubnetPool(this.poolOptions);
  }

  /**
   * Serves a link (idempotent). `want`: also reserve that machine's address for that MAC, decided in
   * the same state update as the subnet (one write for a launcher's start).
   */
  private async serve(link: Link, role: Exclude<LinkRole, { role: 'port' }>, want?: { machine: string; mac: string; soft?: boolean }): Promise<Served> {
    if (this.closed) throw new NetdError('NETD_CLOSED', 'the network subsystem is shutting down');
    const kind: ServedKind = role.role;
    const key = role.role === 'veth' ? role.machine : role.zone;
    const existing = this.served.get(link.name);
    if (existing && existing.ifindex === link.index) {
      if (this.mode === 'embedded') await this.addHolder(link.name);
      return existing;
    }
    if (existing) await this.unserve(link.name, true);

    const inUse = await this.inUse(link.index);
    const routed6 = this.v6 ? await this.v6.routedPrefixes(link.index) : new Set<string>();
    let alloc!: SubnetAllocation;
    let prefix6: string | undefined;
    let reservations: ReservationRecord[] = [];
    await this.store.update((st) => {
      const pool = this.loadPool(st);
      alloc = pool.allocate(kind, key, inUse);
      st.pool = pool.serialize();
      const rec = st.links[link.name];
      const same = rec !== undefined && rec.kind === kind && rec.key === key && rec.subnet === alloc.subnet;
      const holders = same ? rec.holders.filter((h) => h !== this.holder && (h === 'sidecar' || holderAlive(h))) : [];
      reservations = same ? rec.reservations.filter((r) => isClientAddress(alloc, r.address)) : [];
      // a soft wish (the sidecar's guess of systemd-nspawn's MAC) never replaces a launcher's reservation
      if (want && !(want.soft && reservations.some((r) => r.machine === want.machine))) {
        reservations = placeReservation(alloc, reservations, want.machine, want.mac, [], this.embeddedHolder);
      }
      if (this.v6) {
        // the /64 recorded for this link stays while no one else took it; else the key's own
        const taken = new Set([...routed6, ...Object.values(st.links).flatMap((r) => (r.ifname !== link.name && r.prefix6 ? [r.prefix6] : []))]);
        prefix6 = same && rec.prefix6 !== undefined && !taken.has(rec.prefix6) ? rec.prefix6 : this.v6.prefixFor(kind, key, taken);
      }
      st.links[link.name] = {
        kind, key, ifname: link.name, ifindex: link.index, subnet: alloc.subnet, reservations, holders: [...holders, this.holder],
        ...(prefix6 !== undefined ? { prefix6 } : {}),
      };
      const before = enableForwarding(this.sysctl);
      if (before !== undefined && st.ipForwardBefore === undefined) st.ipForwardBefore = before;
      if (this.v6) {
        const before6 = enableForwarding(this.sysctl, IPV6_FORWARD);
        if (before6 !== undefined && st.ip6ForwardBefore === undefined) st.ip6ForwardBefore = before6;
      }
    });

    const served: Served = { kind, key, ifname: link.name, ifindex: link.index, alloc, masquerade: false, dhcp: false };
    const placed = want ? reservations.find((r) => r.machine === want.machine) : undefined;
    if (placed) served.placed = placed;
    const hostCidr = `${alloc.hostAddress}/${alloc.prefixLength}`;
    try {
      // IPv6 sysctls before the link comes up: its link-local address is usable at once (no DAD)
      if (this.v6 && prefix6 !== undefined) this.v6.prepare(link.name);
      if (!link.up) await this.rtnl.setUp(link.index);
      let present = false;
      for (const a of await this.rtnl.listAddresses({ link: link.index, family: 4 })) {
        if (a.cidr === hostCidr) {
          present = true;
        } else {
          this.log.info(`removing stale address ${a.cidr} from ${link.name}`, { ifname: link.name });
          await this.rtnl.deleteAddress(link.index, a.cidr);
        }
      }
      if (!present) {
        try {
          await this.rtnl.addAddress(link.index, hostCidr, { broadcast: true });
        } catch (err) {
          if (!(err instanceof NspawnError && err.code === 'EEXIST')) throw err; // added meanwhile: ours
        }
      }
      this.ensureTables();
      this.firewall.addMasquerade(alloc.subnet, masqueradeOwner(kind, key));
      served.masquerade = true;
      if (this.v6 && prefix6 !== undefined) {
        served.v6 = await this.v6.serve(link, prefix6, masqueradeOwner(kind, key), (h) => this.dns6For(h), this.dnsServer ? [this.dnsServer.domain] : []);
      }
      if (this.dhcpServer) {
        if (this.mode === 'sidecar') this.dhcpAdd(served, reservations);
        else if (placed) this.dhcpAdd(served, [placed], kind === 'zone' ? placed.address : undefined);
      }
    } catch (err) {
      await this.undoServe(served, link.index);
      throw err;
    }
    this.served.set(link.name, served);
    await this.refreshDns();
    this.log.info(`serving ${link.name}`, { ifname: link.name, kind, key, subnet: alloc.subnet, host: alloc.hostAddress });
    return served;
  }

  private dhcpAdd(served: Served, reservations: readonly ReservationRecord[], restrict?: string): void {
    if (!this.dhcpServer) return;
    const cfg: DhcpInterface = {
      ifindex: served.ifindex, ifname: served.ifname, address: `${served.alloc.hostAddress}/${served.alloc.prefixLength}`,
      dns: this.dnsFor(served), reservations: reservations.map((r) => ({ mac: r.mac, address: r.address, hostname: r.machine })),
    };
    if (served.kind === 'zone') {
      cfg.leaseTime = ZONE_DHCP_LEASE;
      cfg.maxLeasesPerSource = this.zoneLeasesPerSource;
    }
    if (restrict !== undefined) {
      // an embedded launcher on a shared zone bridge answers only its own container
      cfg.pool = `${restrict}-${restrict}`;
      cfg.authoritative = false;
      cfg.reservedOnly = true;
    }
    this.dhcpServer.addInterface(cfg);
    served.dhcp = true;
  }

  private async undoServe(served: Served, ifindex: number): Promise<void> {
    try {
      if (served.dhcp) this.dhcpServer?.removeInterface(served.ifname);
      if (served.masquerade) this.firewall.removeMasquerade(served.alloc.subnet);
      if (served.v6) await this.v6?.unserve(ifindex, served.ifname, served.v6, false);
      await this.rtnl.deleteAddress(ifindex, `${served.alloc.hostAddress}/${served.alloc.prefixLength}`);
    } catch (err) {
      this.log.warn(`rolling back ${served.ifname} failed: ${errorMessage(err)}`);
    }
    await this.store.update((st) => {
      const rec = st.links[served.ifname];
      if (rec) rec.holders = rec.holders.filter((h) => h !== this.holder);
      if (rec && rec.holders.length === 0) {
        this.forgetRecord(st, rec);
        // a record taken over from holders that are gone (a killed launcher) goes with its entries
        for (const r of rec.reservations) if (r.ports?.length) this.ports.unforward(r);
        if (!served.masquerade) this.removeRecordMasquerade(rec);
      }
    });
  }

  /** IPv6 DNS servers for a link's advertisements (RDNSS): the host's address there when our server answers on it. */
  private dns6For(hostAddress6: string): string[] {
    if (this.dnsServer) return this.dnsServer.answersIpv6 ? [hostAddress6] : [];
    return this.dns.filter((d) => d.includes(':'));
  }

  /** What containers on a served link get as DNS server: the link's host address when we answer there. */
  private dnsFor(s: Served): string[] {
    return this.dnsServer ? [s.alloc.hostAddress] : [...this.dns];
  }

  /**
   * Gives the DNS server the served links and their machines, as recorded (reservations of launchers
   * that are gone excepted); resolves when it listens on each link (or stands by for another
   * launcher holding a shared zone's address). Names thus exist before a container runs and are gone
   * when its reservation is.
   */
  private async refreshDns(): Promise<void> {
    if (!this.dnsServer || this.closed) return;
    const state = this.store.peek();
    const links: DnsLink[] = [...this.served.values()].map((s) => ({
      ifname: s.ifname, ifindex: s.ifindex, hostAddress: s.alloc.hostAddress, subnet: s.alloc.subnet,
      machines: (state.links[s.ifname]?.reservations ?? [])
        .filter((r) => r.holder === undefined || holderAlive(r.holder))
        .map((r) => ({ name: r.machine, address: r.address })),
    }));
    this.dnsServer.setLinks(links);
    if (this.mode === 'embedded') this.watchState(links.some((l) => this.served.get(l.ifname)?.kind === 'zone'));
    await this.dnsServer.ready();
  }

  /** Embedded on a zone: other launchers add and remove machines there; their changes come through the state file. */
  private watchState(on: boolean): void {
    if (!on) {
      this.stateWatch?.close();
      this.stateWatch = undefined;
      return;
    }
    if (this.stateWatch) return;
    let timer: NodeJS.Timeout | undefined;
    try {
      this.stateWatch = watch(this.store.dir, (_event, file) => {
        if (file !== 'state.json' || timer) return;
        timer = setTimeout(() => {
          timer = undefined;
          this.refreshDns().catch((err: unknown) => this.log.warn(`updating DNS names failed: ${errorMessage(err)}`));
        }, 10);
      });
      this.stateWatch.unref();
      this.stateWatch.on('error', () => this.watchState(false));
    } catch (err) {
      this.log.warn(`cannot follow other launchers' machines for DNS: ${errorMessage(err)}`);
    }
  }

  private ensureTables(): void {
    if (this.tablesReady) return;
    // (re)writing the layout costs ~10 ms of nft work; a launcher finding it complete only adds its
    // elements (the sidecar rewrites it at every start, which also upgrades an old layout)
    if (this.mode !== 'embedded' || !this.layoutComplete()) this.firewall.ensureTables();
    this.tablesReady = true;
  }

  /** Whether our table has every chain, set and map and each chain its rules (one listing). */
  private layoutComplete(): boolean {
    let doc: { nftables: Array<Record<string, { name?: string; chain?: string; table?: string; family?: string }>> };
    try {
      doc = JSON.parse(this.firewall.raw(`list table ${TABLE_FAMILY} ${this.firewall.table}`)) as typeof doc;
    } catch {
      return false; // no table
    }
    const have = new Set<string>();
    let rules = 0;
    for (const o of doc.nftables) {
      if (o.chain?.name) have.add(`chain ${o.chain.name}`);
      if (o.set?.name) have.add(`set ${o.set.name}`);
      if (o.map?.name) have.add(`set ${o.map.name}`);
      if (o.rule) rules++;
    }
    return CHAIN_NAMES.every((c) => have.has(`chain ${c}`)) && SET_NAMES.every((n) => have.has(`set ${n}`)) &&
      rules === ruleCommands(this.firewall.table).length;
  }

  private async addHolder(ifname: string): Promise<void> {
    await this.store.update((st) => {
      const rec = st.links[ifname];
      if (rec && !rec.holders.includes(this.holder)) rec.holders.push(this.holder);
    });
  }

  /** Removes a record's masquerade entries (its IPv4 subnet, its IPv6 /64); never throws (teardown). */
  private removeRecordMasquerade(rec: LinkRecord): void {
    for (const subnet of [rec.subnet, ...(rec.prefix6 !== undefined ? [rec.prefix6] : [])]) {
      try {
        this.firewall.removeMasquerade(subnet);
      } catch (err) {
        this.log.warn(`removing the masquerade of ${subnet} failed: ${errorMessage(err)}`);
      }
    }
  }

  /** Releases the pool entry and the record; puts ip_forward back after the last link. */
  private forgetRecord(st: NetdState, rec: LinkRecord): void {
    const pool = this.loadPool(st);
    pool.release(rec.kind, rec.key);
    st.pool = pool.serialize();
    delete st.links[rec.ifname];
    if (Object.keys(st.links).length === 0 && st.ipForwardBefore !== undefined) {
      if (restoreForwarding(st.ipForwardBefore, this.sysctl)) this.log.info(`net.ipv4.ip_forward set back to ${st.ipForwardBefore}`);
      delete st.ipForwardBefore;
    }
    if (Object.keys(st.links).length === 0 && st.ip6ForwardBefore !== undefined) {
      if (restoreForwarding(st.ip6ForwardBefore, this.sysctl, IPV6_FORWARD)) this.log.info(`net.ipv6.conf.all.forwarding set back to ${st.ip6ForwardBefore}`);
      delete st.ip6ForwardBefore;
    }
  }

  /**
   * Stops serving a link. `gone`: the link no longer exists. Other holders of a shared zone bridge
   * (embedded launchers) keep it served; the last one takes everything down.
   */
  private async unserve(ifname: string, gone: boolean): Promise<void> {
    const s = this.served.get(ifname);
    if (!s) return;
    this.served.delete(ifname);
    let last = true;
    let forwarded: ReservationRecord[] = [];
    await this.store.update((st) => {
      const rec = st.links[ifname];
      if (!rec) return;
      rec.holders = rec.holders.filter((h) => h !== this.holder && (h === 'sidecar' || holderAlive(h)));
      last = gone || rec.holders.length === 0;
      if (last) {
        forwarded = rec.reservations.filter((r) => r.ports?.length);
        this.forgetRecord(st, rec);
      }
    });
    for (const r of forwarded) this.ports.unforward(r);
    await this.refreshDns();
    if (s.dhcp) this.dhcpServer?.removeInterface(ifname);
    if (!last) {
      // the others advertise there too: no final advertisement
      if (s.v6) await this.v6?.unserve(s.ifindex, ifname, { ...s.v6, masquerade: false }, true);
      this.log.info(`leaving ${ifname} to its other holders`, { ifname });
      return;
    }
    if (s.v6) await this.v6?.unserve(s.ifindex, ifname, s.v6, gone);
    try {
      if (s.masquerade) this.firewall.removeMasquerade(s.alloc.subnet);
    } catch (err) {
      this.log.warn(`removing the masquerade of ${s.alloc.subnet} failed: ${errorMessage(err)}`);
    }
    if (!gone) await this.rtnl.deleteAddress(s.ifindex, `${s.alloc.hostAddress}/${s.alloc.prefixLength}`);
    await this.dropTablesIfEmpty();
    this.log.info(`stopped serving ${ifname}`, { ifname, subnet: s.alloc.subnet, reason: gone ? 'link gone' : 'released' });
  }

  /**
   * Clears what holders that are gone left behind — launchers killed before their afterExit (kill
   * -9), a sidecar's records of links that went while it was down: records of links no live
   * process holds (and, in sidecar mode, the sidecar only when `linkGone` says the link went), and
   * reservations whose embedded launcher is gone; with them their masquerade entries, port
   * mappings, DHCP interfaces and (embedded) empty zone bridges. A holder is a process identified
   * by PID and start time, so nothing of a running launcher is taken; 'sidecar' records are left
   * to the sidecar (its next start reconciles them), and so are the links it serves for
   * systemd-nspawn. The firewall is changed under the state lock: no launcher can meanwhile
   * record, and then install, an entry this removes.
   */
  private async sweepDeadHolders(linkGone: (ifname: string) => boolean): Promise<void> {
    const live = (h: Holder): boolean => (h === 'sidecar' ? this.mode === 'embedded' : holderAlive(h));
    const deadRecord = (rec: LinkRecord): boolean => !rec.holders.some(live) && (this.mode === 'embedded' || linkGone(rec.ifname));
    const deadReservation = (r: ReservationRecord): boolean => r.holder !== undefined && !holderAlive(r.holder);
    const deadWatchers = (st: NetdState): string[] => Object.entries(st.portWatchers ?? {}).filter(([, h]) => !holderAlive(h)).map(([owner]) => owner);
    const anything = (st: NetdState): boolean =>
      Object.values(st.links).some((rec) => deadRecord(rec) || rec.reservations.some(deadReservation)) || deadWatchers(st).length > 0;
    // the common case (nothing left behind) costs one read of the state file
    if (!anything(this.store.peek())) return;
    const zones: string[] = [];
    await this.store.update((st) => {
      const dropped: Array<{ rec: LinkRecord; reservations: ReservationRecord[] }> = [];
      for (const rec of Object.values(st.links)) {
        if (deadRecord(rec)) {
          this.forgetRecord(st, rec);
          dropped.push({ rec, reservations: rec.reservations });
          if (rec.kind === 'zone' && this.mode === 'embedded') zones.push(rec.ifname);
          continue;
        }
        const gone = rec.reservations.filter(deadReservation);
        if (gone.length === 0) continue;
        rec.reservations = rec.reservations.filter((r) => !gone.includes(r));
        rec.holders = rec.holders.filter((h) => h === 'sidecar' || holderAlive(h));
        dropped.push({ rec, reservations: gone });
      }
      // a machine name another record or another running launcher claims keeps its port mappings
      // (same owner): they are that launcher's now. This launcher's own machine (a new start after
      // a kill) installs its mappings afresh right after.
      const me = `${process.pid}:${processStartTime(process.pid) ?? ''}`;
      const claimed = new Set(Object.values(st.links).flatMap((l) => l.reservations.map((r) => r.machine)));
      const runsElsewhere = (machine: string): boolean => {
        const launcher = this.machines.launcher(machine);
        return launcher !== undefined && !(this.mode === 'embedded' && `${launcher.pid}:${launcher.startTime}` === me);
      };
      // launchers that mapped their machine's ports themselves (ports-watch.ts)
      for (const owner of deadWatchers(st)) {
        delete st.portWatchers?.[owner];
        if (claimed.has(owner) || runsElsewhere(owner)) continue;
        try {
          const gone = this.firewall.removePortMappings(portOwner(owner));
          if (gone.length) this.log.info(`stopped forwarding ${gone.length} port(s) to ${owner}: its launcher is gone`, { machine: owner });
        } catch (err) {
          this.log.warn(`removing the port mappings of ${owner} failed: ${errorMessage(err)}`);
        }
      }
      if (st.portWatchers && Object.keys(st.portWatchers).length === 0) delete st.portWatchers;
      for (const { rec, reservations } of dropped) {
        const whole = st.links[rec.ifname] === undefined;
        for (const r of reservations) {
          if (r.ports?.length && !claimed.has(r.machine) && !runsElsewhere(r.machine)) this.ports.unforward(r, whole ? undefined : rec.ifname);
          if (!whole && this.dhcpServer && this.served.get(rec.ifname)?.dhcp) this.dhcpServer.unreserve(rec.ifname, { mac: r.mac });
          this.log.info(`released ${r.address} of ${r.machine}: its launcher is gone`, { ifname: rec.ifname, machine: r.machine });
        }
        if (!whole) continue;
        this.removeRecordMasquerade(rec);
        if (!this.served.has(rec.ifname)) this.dhcpServer?.removeInterface(rec.ifname);
        this.log.info(`forgot ${rec.ifname} (${rec.subnet}): ${this.mode === 'embedded' ? 'its launcher is gone' : 'its link is gone'}`, { ifname: rec.ifname });
      }
    });
    // a zone bridge its killed launchers left: removed if no container is on it (zone.ts, under the zone lock)
    for (const bridge of zones) {
      try {
        if (await removeZoneBridgeIfEmpty(this.rtnl, zoneLock(), bridge)) this.log.info(`removed the zone bridge ${bridge}: its launchers are gone`, { ifname: bridge });
      } catch (err) {
        this.log.warn(`removing the zone bridge ${bridge} failed: ${errorMessage(err)}`);
      }
    }
  }

  /**
   * Our table goes when nothing at all is left in it (no link served by anyone, no port mapping):
   * after an embedded launcher's last container, and when a sidecar stops — a running sidecar keeps
   * it, so the next container costs no re-creation (`stopping`: the sidecar's close()).
   */
  private async dropTablesIfEmpty(stopping = false): Promise<void> {
    if (this.mode === 'sidecar' && !stopping) return;
    await this.store.update((st) => {
      if (Object.keys(st.links).length > 0) return;
      try {
        if (this.firewall.elements().length === 0) {
          this.firewall.removeTables();
          this.tablesReady = false;
        }
      } catch (err) {
        this.log.warn(`removing the empty firewall table failed: ${errorMessage(err)}`);
      }
    });
  }

  // -----------------------------------------------------------------------------------------
  // Reservations

  /** The host0 MAC systemd-nspawn gives `machine`'s container (host machine ID + name). */
  private nspawnContainerMac(machine: string): string | undefined {
    return this.machineId ? formatMac(generateMac(this.machineId, machine, 'container')) : undefined;
  }

  /** What a sidecar reserves for a ve- link's machine before its DHCP client asks (systemd-nspawn's host0 MAC). */
  private nspawnWant(role: Exclude<LinkRole, { role: 'port' }>): { machine: string; mac: string; soft: true } | undefined {
    if (role.role !== 'veth') return undefined;
    const mac = this.nspawnContainerMac(role.machine);
    return mac ? { machine: role.machine, mac, soft: true } : undefined;
  }

  /** vb-MACHINE joined (or is in) a zone bridge we serve: reserve that machine's address there. */
  private async portSeen(machine: string, port: Link): Promise<void> {
    if (port.master === undefined) return;
    const zone = [...this.served.values()].find((s) => s.ifindex === port.master && s.kind === 'zone');
    if (!zone) return;
    const rec = this.store.peek().links[zone.ifname];
    if (rec?.reservations.some((r) => r.machine === machine)) return;
    const mac = this.nspawnContainerMac(machine);
    if (!mac) return;
    try {
      await this.queue(zone.ifname, () => this.reserveOn(zone.ifname, machine, mac));
    } catch (err) {
      this.log.warn(`reserving an address for ${machine} on ${zone.ifname} failed: ${errorMessage(err)}`);
    }
  }

  private async portGone(machine: string, port: Link): Promise<void> {
    for (const s of this.served.values()) {
      if (s.kind !== 'zone' || (port.master !== undefined && s.ifindex !== port.master)) continue;
      const rec = this.store.peek().links[s.ifname];
      if (rec?.reservations.some((r) => r.machine === machine)) await this.queue(s.ifname, () => this.unreserveOn(s.ifname, machine));
    }
  }

  private async reserveZonePorts(bridge: Link): Promise<void> {
    if (!this.served.has(bridge.name)) return;
    for (const p of await this.rtnl.listLinks({ master: bridge.index })) {
      const role = classifyLink(p);
      if (role?.role === 'port') await this.portSeen(role.machine, p);
    }
  }

  /** Records and applies machine → (mac, address) on a served link; returns the reservation. */
  private async reserveOn(ifname: string, machine: string, mac: string): Promise<ReservationRecord> {
    const s = this.served.get(ifname);
    if (!s) throw new NetdError('NETD_NOT_SERVED', `link ${ifname} is not served`);
    const leases = this.dhcpServer && s.dhcp ? this.dhcpServer.leases(ifname) : [];
    let res!: ReservationRecord;
    await this.store.update((st) => {
      const rec = st.links[ifname];
      if (!rec) throw new NetdError('NETD_NOT_SERVED', `link ${ifname} has no record (was it removed meanwhile?)`);
      const bound = leases.filter((l) => l.state === 'bound' && l.expiresAt > Date.now() && l.mac.toLowerCase() !== mac).map((l) => l.address);
      rec.reservations = placeReservation(s.alloc, rec.reservations, machine, mac, bound, this.embeddedHolder);
      res = rec.reservations.find((r) => r.machine === machine) as ReservationRecord;
    });
    if (this.mode === 'embedded') s.placed = res;
    await this.refreshDns();
    if (this.dhcpServer) {
      if (!s.dhcp) this.dhcpAdd(s, [res], this.mode === 'embedded' && s.kind === 'zone' ? res.address : undefined);
      else this.dhcpServer.reserve(ifname, { mac, address: res.address, hostname: machine });
    }
    this.log.info(`reserved ${res.address} for ${machine}`, { ifname, machine, mac, address: res.address });
    return res;
  }

  private async unreserveOn(ifname: string, machine: string): Promise<boolean> {
    let removed: ReservationRecord | undefined;
    await this.store.update((st) => {
      const rec = st.links[ifname];
      removed = rec?.reservations.find((r) => r.machine === machine);
      if (rec && removed) rec.reservations = rec.reservations.filter((r) => r !== removed);
    });
    if (!removed) return false;
    await this.refreshDns();
    if (removed.ports?.length) this.ports.unforward(removed, ifname);
    const s = this.served.get(ifname);
    if (this.dhcpServer && s?.dhcp) {
      this.dhcpServer.unreserve(ifname, { mac: removed.mac });
    }
    this.log.info(`released ${removed.address} of ${machine}`, { ifname, machine });
    return true;
  }

  // -----------------------------------------------------------------------------------------
  // The API (sidecar socket and embedded launcher)

  private linkFor(machine: string, kind: ServedKind, zone?: string): string {
    if (kind === 'zone') {
      if (zone === undefined) throw new ConfigError('a zone reservation needs the zone name', { code: 'NETD_BAD_REQUEST' });
      return zoneBridgeIfname(zone);
    }
    return vethHostIfname(machine).name;
  }

  /**
   * Serves the machine's link (ve-MACHINE, or the zone's vz-ZONE bridge) if not yet served and
   * reserves the machine's address for `mac` there; returns what host0 should be configured with.
   * The link must exist (the launcher creates it first).
   */
  async reserve(req: { machine: string; mac: string; kind: ServedKind; zone?: string; ports?: PortForward[]; portLoopback?: boolean }): Promise<MachineLease> {
    const ifname = this.linkFor(req.machine, req.kind, req.zone);
    const mac = req.mac.toLowerCase();
    return this.queue(ifname, async () => {
      const link = await this.rtnl.getLink(ifname);
      if (!link) throw new NetdError('NETD_NO_LINK', `link ${ifname} does not exist (the container's links are created before the reservation)`);
      const role = classifyLink(link);
      if (!role || role.role === 'port') {
        throw new NetdError('NETD_NOT_SERVABLE', `link ${ifname} is a ${link.kind ?? 'physical'} link, not a ${req.kind === 'zone' ? 'bridge' : 'veth'}: it is not served`);
      }
      const previous = this.store.peek().links[ifname]?.reservations.find((r) => r.machine === req.machine);
      const fresh = this.served.get(ifname)?.ifindex !== link.index;
      const s = await this.serve(link, role, { machine: req.machine, mac });
      const placed = fresh && s.placed?.mac === mac ? s.placed : undefined;
      const res = placed ?? await this.reserveOn(ifname, req.machine, mac);
      if (placed) this.log.info(`reserved ${placed.address} for ${req.machine}`, { ifname, machine: req.machine, mac, address: placed.address });
      // port forwarding: mapped to the address just reserved, before the container asks for it
      try {
        await this.ports.forward(ifname, res, { ports: req.ports ?? [], loopback: req.portLoopback ?? false }, previous);
      } catch (err) {
        // a refused request leaves nothing it made: the new reservation, and a link this request
        // started to serve in-process (a sidecar keeps serving the links it watches)
        try {
          if (!previous) await this.unreserveOn(ifname, req.machine);
          if (fresh && this.mode === 'embedded') await this.unserve(ifname, false);
        } catch (undoErr) {
          this.log.warn(`undoing the reservation of ${req.machine} failed: ${errorMessage(undoErr)}`);
        }
        throw err;
      }
      const out: MachineLease = {
        machine: req.machine, kind: req.kind, ifname, subnet: s.alloc.subnet, address: res.address,
        prefixLength: s.alloc.prefixLength, gateway: s.alloc.hostAddress, dns: this.dnsFor(s), mac,
      };
      const v6 = s.v6 && this.v6?.machine(s.v6, mac, this.dns6For(s.v6.hostAddress));
      if (v6) out.ipv6 = v6;
      if (req.zone !== undefined) out.zone = req.zone;
      return out;
    });
  }

  /**
   * The machine is done: its reservation goes; a veth link stops being served (its link is going);
   * a zone bridge stays served while others hold it.
   */
  async release(req: { machine: string; kind: ServedKind; zone?: string }): Promise<boolean> {
    const ifname = this.linkFor(req.machine, req.kind, req.zone);
    return this.queue(ifname, async () => {
      const had = await this.unreserveOn(ifname, req.machine);
      if (req.kind === 'veth' || this.mode === 'embedded') {
        const link = await this.rtnl.getLink(ifname);
        await this.unserve(ifname, !link);
      }
      return had;
    });
  }

  /**
   * Starts DHCP later (an embedded launcher that configured host0 itself starts its server after
   * the container runs, off the start-up path): every served link with its reservations.
   */
  startDhcp(factory: (leaseFile: string | undefined) => DhcpBackend): void {
    if (this.dhcpServer || this.closed) return;
    const server = factory(this.mode === 'sidecar' ? `${this.store.dir}/leases` : undefined);
    server.start();
    this.dhcpServer = server;
    const state = this.store.peek();
    for (const s of this.served.values()) {
      const rec = state.links[s.ifname];
      if (this.mode === 'sidecar') {
        this.dhcpAdd(s, rec?.reservations ?? []);
      } else {
        const mine = s.placed;
        if (mine) this.dhcpAdd(s, [mine], s.kind === 'zone' ? mine.address : undefined);
      }
    }
  }

  // -----------------------------------------------------------------------------------------
  // Port forwarding (ports.ts): recorded with the reservation, installed with the machine as owner

  /**
   * Refuses host ports another machine forwards (ours: the firewall and the recorded reservations;
   * a real systemd-nspawn's: its io.systemd.nat maps) with PortInUseError naming each one. Changes
   * nothing of a live machine: the launcher asks before it makes anything. What launchers killed
   * with SIGKILL left (their reservations and mappings) is cleared first, so their ports are free.
   */
  async checkPorts(machine: string, ports: readonly PortForward[]): Promise<{ checked: number }> {
    if (ports.length > 0) {
      const links = this.mode === 'sidecar' ? new Set((await this.rtnl.listLinks()).map((l) => l.name)) : undefined;
      try {
        await this.sweepDeadHolders((ifname) => links?.has(ifname) === false);
      } catch (err) {
        this.log.warn(`clearing what stopped launchers left behind failed: ${errorMessage(err)}`);
      }
    }
    const clashes = hostPortClashes(machine, ports, this.firewall, this.store.peek());
    if (clashes.length) throw new PortInUseError(machine, clashes);
    return { checked: ports.length };
  }

  /** The links served by this process. */
  list(): ServedLinkInfo[] {
    const state = this.store.peek();
    return [...this.served.values()].map((s) => {
      const rec = state.links[s.ifname];
      return {
        ifname: s.ifname, ifindex: s.ifindex, kind: s.kind, key: s.key, subnet: s.alloc.subnet, hostAddress: s.alloc.hostAddress,
        ...(s.v6 ? { prefix6: s.v6.prefixText, hostAddress6: s.v6.hostAddress } : {}),
        masquerade: s.masquerade, dhcp: s.dhcp, reservations: rec?.reservations ?? [], holders: rec?.holders ?? [],
      };
    });
  }

  leases(ifname?: string): DhcpLeaseInfo[] {
    if (!this.dhcpServer) return [];
    if (ifname !== undefined && !this.dhcpServer.interfaces().includes(ifname)) return [];
    return this.dhcpServer.leases(ifname);
  }

  status(): { mode: string; links: number; dns: string[]; dnsServer: string[] | false; dhcp: boolean; stateDir: string; forwarding: string | undefined } {
    let forwarding: string | undefined;
    try {
      forwarding = this.sysctl.read('/proc/sys/net/ipv4/ip_forward');
    } catch {
      forwarding = undefined;
    }
    return { mode: this.mode, links: this.served.size, dns: [...this.dns], dnsServer: this.dnsServer?.bound() ?? false, dhcp: this.dhcpServer !== undefined, stateDir: this.store.dir, forwarding };
  }

  /** The subnet a served link has (for the port-forward issue and machinectl). */
  allocation(ifname: string): SubnetAllocation | undefined {
    const s = this.served.get(ifname);
    return s ? describeSubnet(s.kind, s.key, s.alloc.subnet) : undefined;
  }

  /** The shared firewall (port forwarding uses the same table). */
  get fw(): Firewall {
    return this.firewall;
  }

  /**
   * Stops. Embedded: everything this process served is taken down (its container has ended). A
   * sidecar leaves the links configured — containers keep their addresses and their traffic — and
   * only stops answering; its next start picks everything up again.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.monitor?.close();
    await this.monitorDone?.catch(() => undefined);
    await Promise.all([...this.chains.values()]);
    if (this.mode === 'embedded') {
      for (const [ifname, s] of [...this.served.entries()]) {
        try {
          // our machine leaves a shared zone now (its name with it), not at the next launcher's sweep
          if (s.placed) await this.unreserveOn(ifname, s.placed.machine);
          const link = await this.rtnl.getLink(ifname);
          await this.unserve(ifname, !link);
        } catch (err) {
          this.log.warn(`taking down ${ifname} failed: ${errorMessage(err)}`);
        }
      }
    } else {
      await this.dropTablesIfEmpty(true);
    }
    await this.dhcpServer?.stop();
    // a stopping sidecar leaves its links configured for its next start: no final advertisements
    this.v6?.close();
    this.stateWatch?.close();
    await this.dnsServer?.close();
    this.firewall.close();
    this.rtnl.close();
  }
}

