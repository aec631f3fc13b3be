// The network subsystem: on the host side, what systemd-networkd's 80-container-ve.network and
// 80-container-vz.network do for container links — for links our launcher makes and for those a
// real systemd-nspawn makes. One facade, used by the sidecar (nspawn-netd, mode 'sidecar': it watches
// every link), embedded in a launcher when no sidecar runs (mode 'embedded': it serves only the
// links its launcher names, for the life of the container), and by the CNI plugin.
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
//
// Its parts, one job each, sharing core.ts: link-server.ts (serving a link and its reservations),
// holder-sweep.ts (what dead holders left), link-watcher.ts (the sidecar's link events),
// firewall-table.ts (our nft table), link-dns.ts (DNS servers and names), port-forwarding.ts.
import { ConfigError, errorMessage } from '../../errors.js';
import type { Firewall } from '../firewall/index.js';
import { vethHostIfname, zoneBridgeIfname } from '../naming.js';
import { DEFAULT_POOLS, describeSubnet, type SubnetAllocation } from '../pool.js';
import type { PortForward } from '../model.js';
import { SubsystemCore } from './core.js';
import type { DnsServer } from '../dns/index.js';
import { HolderSweep } from './holder-sweep.js';
import { LinkDns } from './link-dns.js';
import { LinkServer } from './link-server.js';
import { LinkWatcher } from './link-watcher.js';
import { classifyLink, type ServedKind } from './links.js';
import { hostPortClashes, PortInUseError } from './ports.js';
import type { Holder } from './state.js';
import { NetdError, type DhcpBackend, type DhcpLeaseInfo, type MachineLease, type ServedLinkInfo, type SubsystemOptions } from './subsystem-types.js';

export * from './subsystem-types.js';
export { placeReservation } from './addresses.js';

export class NetworkSubsystem {
  readonly mode: SubsystemOptions['mode'];
  readonly holder: Holder;
  private readonly core: SubsystemCore;
  private readonly names: LinkDns;
  private readonly server: LinkServer;
  private readonly sweep: HolderSweep;
  private readonly watcher: LinkWatcher;

  private constructor(opts: SubsystemOptions, dnsServer: typeof DnsServer | undefined) {
    this.core = new SubsystemCore(opts, dnsServer);
    this.mode = this.core.mode;
    this.holder = this.core.holder;
    this.names = new LinkDns(this.core);
    this.server = new LinkServer(this.core, this.names);
    this.sweep = new HolderSweep(this.core, this.server);
    this.watcher = new LinkWatcher(this.core, this.server, this.sweep);
  }

  /**
   * Opens the subsystem. A sidecar then serves every ve-/vz- link already there, reconciles state
   * and firewall, and watches for links coming and going. `dnsServer`: the DNS server's class when
   * `opts` serve DNS (servesDns), from dnsServerClass() (dns-class.ts): the caller loads it, so that
   * nspawn-cni's one-shot, which never serves DNS, carries none of it.
   */
  static async open(opts: SubsystemOptions, dnsServer?: typeof DnsServer): Promise<NetworkSubsystem> {
    const s = new NetworkSubsystem(opts, dnsServer);
    if (s.core.oneShot) {
      // one call in the sidecar's name: it serves (and checks) only the link it is asked about
    } else if (opts.mode === 'sidecar') {
      try {
        await s.watcher.start();
      } catch (err) {
        await s.close();
        throw err;
      }
    } else {
      // the next launcher start clears what killed launchers left (no sidecar may ever run)
      try {
        await s.sweep.sweep(() => true);
      } catch (err) {
        s.core.log.warn(`clearing what stopped launchers left behind failed: ${errorMessage(err)}`);
      }
    }
    return s;
  }

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
    const { core, server } = this;
    const ifname = this.linkFor(req.machine, req.kind, req.zone);
    const mac = req.mac.toLowerCase();
    return core.queue(ifname, async () => {
      const link = await core.rtnl.getLink(ifname);
      if (!link) throw new NetdError('NETD_NO_LINK', `link ${ifname} does not exist (the container's links are created before the reservation)`);
      const role = classifyLink(link);
      if (!role || role.role === 'port') {
        throw new NetdError('NETD_NOT_SERVABLE', `link ${ifname} is a ${link.kind ?? 'physical'} link, not a ${req.kind === 'zone' ? 'bridge' : 'veth'}: it is not served`);
      }
      const previous = core.store.peek().links[ifname]?.reservations.find((r) => r.machine === req.machine);
      const fresh = core.served.get(ifname)?.ifindex !== link.index;
      // the ports are recorded with the reservation (one state write), then mapped to its address
      // before the container asks for it
      const ports = { ports: req.ports ?? [], loopback: req.portLoopback ?? false };
      const s = await server.serve(link, role, { machine: req.machine, mac, ports });
      const placed = fresh && s.placed?.mac === mac ? s.placed : undefined;
      const res = placed ?? await server.reserveOn(ifname, req.machine, mac, ports);
      if (placed) core.log.info(`reserved ${placed.address} for ${req.machine}`, { ifname, machine: req.machine, mac, address: placed.address });
      try {
        await core.ports.forward(ifname, res, ports, previous);
      } catch (err) {
        // a refused request leaves nothing it made: the new reservation, and a link this request
        // started to serve in-process (a sidecar keeps serving the links it watches)
        try {
          if (!previous) await server.unreserveOn(ifname, req.machine);
          if (fresh && core.mode === 'embedded') await server.unserve(ifname, false);
        } catch (undoErr) {
          core.log.warn(`undoing the reservation of ${req.machine} failed: ${errorMessage(undoErr)}`);
        }
        throw err;
      }
      const out: MachineLease = {
        machine: req.machine, kind: req.kind, ifname, subnet: s.alloc.subnet, address: res.address,
        prefixLength: s.alloc.prefixLength, gateway: s.alloc.hostAddress, dns: this.names.servers(s), mac,
      };
      const v6 = s.v6 && core.v6?.machine(s.v6, mac, this.names.servers6(s.v6.hostAddress));
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
    const { core, server } = this;
    const ifname = this.linkFor(req.machine, req.kind, req.zone);
    return core.queue(ifname, async () => {
      const had = await server.unreserveOn(ifname, req.machine);
      if (req.kind === 'veth' || core.mode === 'embedded' || core.oneShot) {
        const link = await core.rtnl.getLink(ifname);
        if (core.oneShot) {
          // this process served nothing yet: a veth link as recorded is taken to be taken down; the
          // record of a link that went (a zone's bridge after its last container) is cleared as the
          // sidecar's resync would, of that link only
          if (!link) await this.sweep.sweep((gone) => gone === ifname);
          const role = link ? classifyLink(link) : undefined;
          if (link && role?.role === 'veth' && !core.served.has(ifname)) await server.adopt(link, 'veth', role.machine);
        }
        if (req.kind === 'veth' || core.mode === 'embedded') await server.unserve(ifname, !link);
      }
      return had;
    });
  }

  /**
   * Starts DHCP later (an embedded launcher that configured host0 itself starts its server after
   * the container runs, off the start-up path): every served link with its reservations.
   */
  startDhcp(factory: (leaseFile: string | undefined) => DhcpBackend): void {
    const { core } = this;
    if (core.dhcpServer || core.closed) return;
    const server = factory(core.leaseFile);
    server.start();
    core.dhcpServer = server;
    const state = core.store.peek();
    for (const s of core.served.values()) {
      const rec = state.links[s.ifname];
      if (core.mode === 'sidecar') {
        this.server.dhcpAdd(s, rec?.reservations ?? []);
      } else {
        const mine = s.placed;
        if (mine) this.server.dhcpAdd(s, [mine], s.kind === 'zone' ? mine.address : undefined);
      }
    }
  }

  /**
   * Refuses host ports another machine forwards (ours: the firewall and the recorded reservations;
   * a real systemd-nspawn's: its io.systemd.nat maps) with PortInUseError naming each one. Changes
   * nothing of a live machine: the launcher asks before it makes anything. What launchers killed
   * with SIGKILL left (their reservations and mappings) is cleared first, so their ports are free.
   */
  async checkPorts(machine: string, ports: readonly PortForward[]): Promise<{ checked: number }> {
    const { core } = this;
    if (ports.length > 0) {
      const links = core.mode === 'sidecar' ? new Set((await core.rtnl.listLinks()).map((l) => l.name)) : undefined;
      try {
        await this.sweep.sweep((ifname) => links?.has(ifname) === false);
      } catch (err) {
        core.log.warn(`clearing what stopped launchers left behind failed: ${errorMessage(err)}`);
      }
    }
    const clashes = hostPortClashes(machine, ports, core.firewall, core.store.peek());
    if (clashes.length) throw new PortInUseError(machine, clashes);
    return { checked: ports.length };
  }

  /** The links served by this process. */
  list(): ServedLinkInfo[] {
    const state = this.core.store.peek();
    return [...this.core.served.values()].map((s) => {
      const rec = state.links[s.ifname];
      return {
        ifname: s.ifname, ifindex: s.ifindex, kind: s.kind, key: s.key, subnet: s.alloc.subnet, hostAddress: s.alloc.hostAddress,
        ...(s.v6 ? { prefix6: s.v6.prefixText, hostAddress6: s.v6.hostAddress } : {}),
        masquerade: s.masquerade, dhcp: s.dhcp, reservations: rec?.reservations ?? [], holders: rec?.holders ?? [],
      };
    });
  }

  leases(ifname?: string): DhcpLeaseInfo[] {
    const { dhcpServer } = this.core;
    if (!dhcpServer) return [];
    if (ifname !== undefined && !dhcpServer.interfaces().includes(ifname)) return [];
    return dhcpServer.leases(ifname);
  }

  status(): { mode: string; links: number; dns: string[]; dnsServer: string[] | false; dhcp: boolean; stateDir: string; forwarding: string | undefined; pools: string[] } {
    const { core } = this;
    let forwarding: string | undefined;
    try {
      forwarding = core.sysctl.read('/proc/sys/net/ipv4/ip_forward');
    } catch {
      forwarding = undefined;
    }
    return {
      mode: core.mode, links: core.served.size, dns: [...core.dns], dnsServer: core.dnsServer?.bound() ?? false, dhcp: core.dhcpServer !== undefined,
      stateDir: core.store.dir, forwarding, pools: [...(core.poolOptions.pools ?? DEFAULT_POOLS)],
    };
  }

  /** The subnet a served link has (for the port-forward issue and machinectl). */
  allocation(ifname: string): SubnetAllocation | undefined {
    const s = this.core.served.get(ifname);
    return s ? describeSubnet(s.kind, s.key, s.alloc.subnet) : undefined;
  }

  /** The shared firewall (port forwarding uses the same table). */
  get fw(): Firewall {
    return this.core.firewall;
  }

  /**
   * Stops. Embedded: everything this process served is taken down (its container has ended). A
   * sidecar leaves the links configured — containers keep their addresses and their traffic — and
   * only stops answering; its next start picks everything up again.
   */
  async close(): Promise<void> {
    const { core, server } = this;
    if (core.closed) return;
    core.closed = true;
    await this.watcher.close();
    await Promise.all([...core.chains.values()]);
    if (core.mode === 'embedded') {
      for (const [ifname, s] of [...core.served.entries()]) {
        try {
          // our machine leaves a shared zone now (its name with it), not at the next launcher's sweep
          if (s.placed) await server.unreserveOn(ifname, s.placed.machine);
          const link = await core.rtnl.getLink(ifname);
          await server.unserve(ifname, !link);
        } catch (err) {
          core.log.warn(`taking down ${ifname} failed: ${errorMessage(err)}`);
        }
      }
    } else {
      await core.tables.dropIfEmpty(true);
    }
    await core.dhcpServer?.stop();
    // a stopping sidecar leaves its links configured for its next start: no final advertisements
    core.v6?.close();
    await this.names.close();
    core.firewall.close();
    core.rtnl.close();
  }
}
