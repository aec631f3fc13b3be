// Serving one link (ve-MACHINE or vz-ZONE, see subsystem.ts for the steps) and the machines'
// reservations on it; undoing all of it when the link goes or its last holder lets go.
import { NspawnError, errorMessage } from '../../errors.js';
import { describeSubnet, SubnetPool, type SubnetAllocation } from '../pool.js';
import type { Link, Rtnl } from '../rtnl.js';
import { isClientAddress, placeReservation } from './addresses.js';
import type { Served, SubsystemCore } from './core.js';
import type { LinkDns } from './link-dns.js';
import { masqueradeOwner, type LinkRole, type ServedKind } from './links.js';
import type { PortRequest } from './ports.js';
import { holderAlive, type LinkRecord, type NetdState, type ReservationRecord } from './state.js';
import { NetdError, type DhcpInterface } from './subsystem-types.js';
import { forwardingOffIfUnused, forwardingOn } from './sysctl.js';

const ZONE_DHCP_LEASE = 3600;

/** A machine whose address is reserved in the same step as its link is served. */
export interface ServeWant {
  machine: string;
  mac: string;
  /** the sidecar's guess of systemd-nspawn's MAC: never replaces a launcher's reservation */
  soft?: boolean;
  /** its port forwarding, recorded with the reservation (installed by PortForwarding.forward) */
  ports?: PortRequest;
}

/** IPv4 prefixes in use on the host (what the pool must avoid), except on `ifindex` (its own address is its own). */
export async function prefixesInUse(rtnl: Rtnl, ifindex = 0): Promise<string[]> {
  // one dump at a time per socket
  const addrs = await rtnl.listAddresses({ family: 4 });
  // a namespace without a single IPv4 route has no main table yet: the kernel says ENOENT
  const routes = await rtnl.listRoutes({ family: 4 }).catch((err: unknown) => {
    if (err instanceof NspawnError && err.code === 'ENOENT') return [];
    throw err;
  });
  return [
    ...addrs.filter((a) => a.index !== ifindex).map((a) => a.cidr),
    ...routes.filter((r) => r.oif !== ifindex && r.dst !== 'default').map((r) => r.dst),
  ];
}

export class LinkServer {
  constructor(private readonly core: SubsystemCore, private readonly names: LinkDns) {}

  /**
   * Serves a link (idempotent). `want`: also reserve that machine's address for that MAC, decided in
   * the same state update as the subnet (one write for a launcher's start).
   */
  async serve(link: Link, role: Exclude<LinkRole, { role: 'port' }>, want?: ServeWant): Promise<Served> {
    const { core } = this;
    const { rtnl, store, v6, sysctl, log } = core;
    if (core.closed) throw new NetdError('NETD_CLOSED', 'the network subsystem is shutting down');
    const kind: ServedKind = role.role;
    const key = role.role === 'veth' ? role.machine : role.zone;
    const existing = core.served.get(link.name);
    if (existing && existing.ifindex === link.index) {
      if (core.mode === 'embedded') await this.addHolder(link.name);
      return existing;
    }
    if (existing) await this.unserve(link.name, true);
    if (core.oneShot) {
      const adopted = await this.adopt(link, kind, key);
      if (adopted) return adopted;
    }

    const inUse = await this.inUse(link.index);
    const routed6 = v6 ? await v6.routedPrefixes(link.index) : new Set<string>();
    let alloc!: SubnetAllocation;
    let prefix6: string | undefined;
    let reservations: ReservationRecord[] = [];
    await store.update((st) => {
      const pool = this.loadPool(st);
      alloc = pool.allocate(kind, key, inUse);
      st.pool = pool.serialize();
      const rec = st.links[link.name];
      const same = rec !== undefined && rec.kind === kind && rec.key === key && rec.subnet === alloc.subnet;
      const holders = same ? rec.holders.filter((h) => h !== core.holder && (h === 'sidecar' || holderAlive(h))) : [];
      reservations = same ? rec.reservations.filter((r) => isClientAddress(alloc, r.address)) : [];
      // a soft wish (the sidecar's guess of systemd-nspawn's MAC) never replaces a launcher's reservation
      if (want && !(want.soft && reservations.some((r) => r.machine === want.machine))) {
        reservations = placeReservation(alloc, reservations, want.machine, want.mac, [], core.embeddedHolder);
      }
      if (v6) {
        // the /64 recorded for this link stays while no one else took it; else the key's own
        const taken = new Set([...routed6, ...Object.values(st.links).flatMap((r) => (r.ifname !== link.name && r.prefix6 ? [r.prefix6] : []))]);
        prefix6 = same && rec.prefix6 !== undefined && !taken.has(rec.prefix6) ? rec.prefix6 : v6.prefixFor(kind, key, taken);
      }
      st.links[link.name] = {
        kind, key, ifname: link.name, ifindex: link.index, subnet: alloc.subnet, reservations, holders: [...holders, core.holder],
        ...(prefix6 !== undefined ? { prefix6 } : {}),
      };
      if (want?.ports && reservations.some((r) => r.machine === want.machine && r.mac === want.mac)) core.ports.record(st, link.name, want.machine, want.ports);
      forwardingOn(st, v6 !== undefined, sysctl);
    });

    const served: Served = { kind, key, ifname: link.name, ifindex: link.index, alloc, masquerade: false, dhcp: false };
    const placed = want ? reservations.find((r) => r.machine === want.machine) : undefined;
    if (placed) served.placed = placed;
    const hostCidr = `${alloc.hostAddress}/${alloc.prefixLength}`;
    try {
      // IPv6 sysctls before the link comes up: its link-local address is usable at once (no DAD)
      if (v6 && prefix6 !== undefined) v6.prepare(link.name);
      if (!link.up) await rtnl.setUp(link.index);
      let present = false;
      for (const a of await rtnl.listAddresses({ link: link.index, family: 4 })) {
        if (a.cidr === hostCidr) {
          present = true;
        } else {
          log.info(`removing stale address ${a.cidr} from ${link.name}`, { ifname: link.name });
          await rtnl.deleteAddress(link.index, a.cidr);
        }
      }
      if (!present) {
        try {
          await rtnl.addAddress(link.index, hostCidr, { broadcast: true });
        } catch (err) {
          if (!(err instanceof NspawnError && err.code === 'EEXIST')) throw err; // added meanwhile: ours
        }
      }
      core.tables.ensure();
      core.firewall.addMasquerade(alloc.subnet, masqueradeOwner(kind, key));
      served.masquerade = true;
      if (v6 && prefix6 !== undefined) {
        served.v6 = await v6.serve(link, prefix6, masqueradeOwner(kind, key), (h) => this.names.servers6(h), this.names.searchDomains);
      }
      if (core.dhcpServer) {
        if (core.mode === 'sidecar') this.dhcpAdd(served, reservations);
        else if (placed) this.dhcpAdd(served, [placed], kind === 'zone' ? placed.address : undefined);
      }
    } catch (err) {
      await this.undoServe(served, link.index);
      throw err;
    }
    core.served.set(link.name, served);
    await this.names.refresh();
    log.info(`serving ${link.name}`, { ifname: link.name, kind, key, subnet: alloc.subnet, host: alloc.hostAddress });
    return served;
  }

  /**
   * A sidecar's one-shot (nspawn-cni without nspawn-netd) takes a link the sidecar serves as recorded
   * as it is — the same link, up, its host addresses on it, its subnet masqueraded in our table: no
   * allocation, state write, address or firewall change, only checks. Anything else (a record of
   * launchers only, whose holder the sidecar must join; something missing) is served afresh, which
   * repairs it. Undefined then.
   */
  async adopt(link: Link, kind: ServedKind, key: string): Promise<Served | undefined> {
    const { core } = this;
    const rec = core.store.peek().links[link.name];
    if (!rec || rec.kind !== kind || rec.key !== key || rec.ifindex !== link.index || !rec.holders.includes(core.holder) || !link.up) return undefined;
    const alloc = describeSubnet(kind, key, rec.subnet);
    const addresses = await core.rtnl.listAddresses({ link: link.index });
    if (!addresses.some((a) => a.family === 4 && a.cidr === `${alloc.hostAddress}/${alloc.prefixLength}`)) return undefined;
    const served: Served = { kind, key, ifname: link.name, ifindex: link.index, alloc, masquerade: true, dhcp: false };
    const masquerade = [alloc.subnet];
    if (core.v6) {
      const v6 = rec.prefix6 === undefined ? undefined : core.v6.adopt(link, rec.prefix6, addresses);
      if (!v6) return undefined;
      served.v6 = v6;
      if (v6.masquerade) masquerade.push(v6.prefixText);
    }
    // the table is ours and complete (else made), and masquerades this link's subnets
    core.tables.ensure();
    const have = new Set(core.tables.masqueraded());
    if (!masquerade.every((m) => have.has(m))) return undefined;
    core.served.set(link.name, served);
    core.log.debug(`${link.name} is served as recorded (${rec.subnet})`, { ifname: link.name });
    return served;
  }

  private inUse(ifindex: number): Promise<string[]> {
    return prefixesInUse(this.core.rtnl, ifindex);
  }

  private loadPool(state: NetdState): SubnetPool {
    const opts = this.core.poolOptions;
    return state.pool ? SubnetPool.restore(state.pool, opts) : new SubnetPool(opts);
  }

  /** Gives the DHCP server a served link with its reservations; `restrict`: answer only that address. */
  dhcpAdd(served: Served, reservations: readonly ReservationRecord[], restrict?: string): void {
    const { dhcpServer } = this.core;
    if (!dhcpServer) return;
    const cfg: DhcpInterface = {
      ifindex: served.ifindex, ifname: served.ifname, address: `${served.alloc.hostAddress}/${served.alloc.prefixLength}`,
      dns: this.names.servers(served), reservations: reservations.map((r) => ({ mac: r.mac, address: r.address, hostname: r.machine })),
    };
    if (served.kind === 'zone') {
      cfg.leaseTime = ZONE_DHCP_LEASE;
      cfg.maxLeasesPerSource = this.core.zoneLeasesPerSource;
    }
    if (restrict !== undefined) {
      // an embedded launcher on a shared zone bridge answers only its own container
      cfg.pool = `${restrict}-${restrict}`;
      cfg.authoritative = false;
      cfg.reservedOnly = true;
    }
    dhcpServer.addInterface(cfg);
    served.dhcp = true;
  }

  private async undoServe(served: Served, ifindex: number): Promise<void> {
    const { core } = this;
    try {
      if (served.dhcp) core.dhcpServer?.removeInterface(served.ifname);
      if (served.masquerade) core.firewall.removeMasquerade(served.alloc.subnet);
      if (served.v6) await core.v6?.unserve(ifindex, served.ifname, served.v6, false);
      await core.rtnl.deleteAddress(ifindex, `${served.alloc.hostAddress}/${served.alloc.prefixLength}`);
    } catch (err) {
      core.log.warn(`rolling back ${served.ifname} failed: ${errorMessage(err)}`);
    }
    await core.store.update((st) => {
      const rec = st.links[served.ifname];
      if (rec) rec.holders = rec.holders.filter((h) => h !== core.holder);
      if (rec && rec.holders.length === 0) {
        this.forgetRecord(st, rec);
        // a record taken over from holders that are gone (a killed launcher) goes with its entries
        for (const r of rec.reservations) if (r.ports?.length) core.ports.unforward(r);
        if (!served.masquerade) this.removeRecordMasquerade(rec);
      }
    });
  }

  private async addHolder(ifname: string): Promise<void> {
    const { holder } = this.core;
    await this.core.store.update((st) => {
      const rec = st.links[ifname];
      if (rec && !rec.holders.includes(holder)) rec.holders.push(holder);
    });
  }

  /** Removes a record's masquerade entries (its IPv4 subnet, its IPv6 /64); never throws (teardown). */
  removeRecordMasquerade(rec: LinkRecord): void {
    for (const subnet of [rec.subnet, ...(rec.prefix6 !== undefined ? [rec.prefix6] : [])]) {
      try {
        this.core.firewall.removeMasquerade(subnet);
      } catch (err) {
        this.core.log.warn(`removing the masquerade of ${subnet} failed: ${errorMessage(err)}`);
      }
    }
  }

  /** Releases the pool entry and the record; puts forwarding back after the last link (when nothing else needs it). */
  forgetRecord(st: NetdState, rec: LinkRecord): void {
    const { sysctl, log } = this.core;
    const pool = this.loadPool(st);
    pool.release(rec.kind, rec.key);
    st.pool = pool.serialize();
    delete st.links[rec.ifname];
    for (const done of forwardingOffIfUnused(st, sysctl)) log.info(done);
  }

  /**
   * Stops serving a link. `gone`: the link no longer exists. Other holders of a shared zone bridge
   * (embedded launchers) keep it served; the last one takes everything down.
   */
  async unserve(ifname: string, gone: boolean): Promise<void> {
    const { core } = this;
    const s = core.served.get(ifname);
    if (!s) return;
    core.served.delete(ifname);
    let last = true;
    let forwarded: ReservationRecord[] = [];
    await core.store.update((st) => {
      const rec = st.links[ifname];
      if (!rec) return;
      rec.holders = rec.holders.filter((h) => h !== core.holder && (h === 'sidecar' || holderAlive(h)));
      last = gone || rec.holders.length === 0;
      if (last) {
        forwarded = rec.reservations.filter((r) => r.ports?.length);
        this.forgetRecord(st, rec);
      }
    });
    for (const r of forwarded) core.ports.unforward(r);
    await this.names.refresh();
    if (s.dhcp) core.dhcpServer?.removeInterface(ifname);
    if (!last) {
      // the others advertise there too (and keep its address and masquerade): no final advertisement
      if (s.v6) core.v6?.stopAdvertising(s.ifindex);
      core.log.info(`leaving ${ifname} to its other holders`, { ifname });
      return;
    }
    if (s.v6) await core.v6?.unserve(s.ifindex, ifname, s.v6, gone);
    try {
      if (s.masquerade) core.firewall.removeMasquerade(s.alloc.subnet);
    } catch (err) {
      core.log.warn(`removing the masquerade of ${s.alloc.subnet} failed: ${errorMessage(err)}`);
    }
    if (!gone) await core.rtnl.deleteAddress(s.ifindex, `${s.alloc.hostAddress}/${s.alloc.prefixLength}`);
    await core.tables.dropIfEmpty();
    core.log.info(`stopped serving ${ifname}`, { ifname, subnet: s.alloc.subnet, reason: gone ? 'link gone' : 'released' });
  }

  /**
   * Records and applies machine → (mac, address) on a served link, with its ports when given (one
   * state write; PortForwarding.forward installs them); returns the reservation.
   */
  async reserveOn(ifname: string, machine: string, mac: string, ports?: PortRequest): Promise<ReservationRecord> {
    const { core } = this;
    const s = core.served.get(ifname);
    if (!s) throw new NetdError('NETD_NOT_SERVED', `link ${ifname} is not served`);
    const leases = core.dhcpServer && s.dhcp ? core.dhcpServer.leases(ifname) : [];
    let res!: ReservationRecord;
    await core.store.update((st) => {
      const rec = st.links[ifname];
      if (!rec) throw new NetdError('NETD_NOT_SERVED', `link ${ifname} has no record (was it removed meanwhile?)`);
      const bound = leases.filter((l) => l.state === 'bound' && l.expiresAt > Date.now() && l.mac.toLowerCase() !== mac).map((l) => l.address);
      rec.reservations = placeReservation(s.alloc, rec.reservations, machine, mac, bound, core.embeddedHolder);
      if (ports) core.ports.record(st, ifname, machine, ports);
      res = rec.reservations.find((r) => r.machine === machine) as ReservationRecord;
    });
    if (core.mode === 'embedded') s.placed = res;
    await this.names.refresh();
    if (core.dhcpServer) {
      if (!s.dhcp) this.dhcpAdd(s, [res], core.mode === 'embedded' && s.kind === 'zone' ? res.address : undefined);
      else core.dhcpServer.reserve(ifname, { mac, address: res.address, hostname: machine });
    }
    core.log.info(`reserved ${res.address} for ${machine}`, { ifname, machine, mac, address: res.address });
    return res;
  }

  /** Drops `machine`'s reservation on a link (its ports and DHCP reservation with it); false if it had none. */
  async unreserveOn(ifname: string, machine: string): Promise<boolean> {
    const { core } = this;
    let removed: ReservationRecord | undefined;
    await core.store.update((st) => {
      const rec = st.links[ifname];
      removed = rec?.reservations.find((r) => r.machine === machine);
      if (rec && removed) rec.reservations = rec.reservations.filter((r) => r !== removed);
    });
    if (!removed) return false;
    await this.names.refresh();
    if (removed.ports?.length) core.ports.unforward(removed, ifname);
    const s = core.served.get(ifname);
    if (core.dhcpServer && s?.dhcp) {
      core.dhcpServer.unreserve(ifname, { mac: removed.mac });
    }
    core.log.info(`released ${removed.address} of ${machine}`, { ifname, machine });
    return true;
  }
}
