// IPv6 on served links: what systemd-networkd's 80-container-ve/vz.network do with IPv6SendRA= and
// IPMasquerade=both, plus a prefix of our own so containers get global (ULA) addresses and NAT66:
//
//   - each served link gets a /64 of the host's ULA /48 (or of an administrator's global prefix),
//     chosen from its key like the IPv4 subnet (ipv6/prefix.ts), recorded in the state file;
//   - the host side takes ::1 of it (no DAD: the DNS server binds it at once) and keeps its
//     link-local address, the source of our router advertisements and the containers' gateway;
//   - router advertisements (ipv6/ra-server.ts) carry the /64 (on-link, autonomous), the MTU and,
//     when our DNS server answers there, RDNSS/DNSSL;
//   - a ULA /64 is masqueraded (masq6); a global one is routed as it is;
//   - accept_ra=0 on the host side: the host never learns a route from what a container sends;
//   - net.ipv6.conf.all.forwarding=1 while links are served, put back after the last (sysctl.ts).
//     Like networkd's IPMasquerade=, this makes the host a router: its own uplink then ignores RAs
//     unless accept_ra=2 there (the README's IPv6 notes say so).
// A container's address is the EUI-64 SLAAC address of its MAC in the /64 — what its kernel forms
// from the RA, and what the launcher configures on host0 at start (the same address either way).
import { ConfigError, errorMessage, NspawnError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { Firewall } from '../firewall/index.js';
import { macBytes } from '../../common/mac.js';
import { addressBytes, addressInPrefix, formatAddress, formatPrefix, hostUlaPrefix, type Ipv6Prefix, linkLocalAddress, linkPrefix, parseIpv6Prefix, slaacAddress } from '../ipv6/prefix.js';
import { RouterAdvertiser } from '../ipv6/ra-server.js';
import type { Address, Link } from '../netlink/views.js';
import * as C from '../netlink/constants.js';
import { readMachineId } from '../naming.js';
import type { Rtnl } from '../rtnl.js';
import type { SysctlIo } from './sysctl.js';


/** IPv6 of the network subsystem: on (host ULA), a global prefix, or off. */
export interface Ipv6Settings {
  /** false: no IPv6 on served links */
  enabled: boolean;
  /** an administrator's global prefix (/48–/64 … /63); undefined: the host's ULA /48 */
  prefix?: string;
}

/** What one served link has of IPv6. */
export interface LinkIpv6 {
  prefix: Ipv6Prefix;
  /** "fd12:3456:789a:1::/64" */
  prefixText: string;
  /** the host side's "…::1" */
  hostAddress: string;
  /** the host side's link-local address: RA source and the containers' gateway */
  linkLocal: string;
  masquerade: boolean;
}

/** What host0 is configured with (the launcher) or forms by SLAAC. */
export interface MachineIpv6 {
  address: string;
  prefixLength: 64;
  gateway: string;
  dns: string[];
}

/** Reads an IPv6 setting: "no" (off), a prefix (global, routed), or nothing/"yes" (the host's ULA). */
export function ipv6Settings(value: string | undefined, what = '--ipv6'): Ipv6Settings {
  const v = value?.trim();
  if (v === undefined || v === '' || v === 'yes' || v === 'ula') return { enabled: true };
  if (v === 'no' || v === 'off' || v === '0' || v === 'false') return { enabled: false };
  try {
    parseIpv6Prefix(v);
  } catch (err) {
    throw new ConfigError(`${what}: ${errorMessage(err)}; or "no" to turn IPv6 off`, { code: 'CFG_IPV6_PREFIX' });
  }
  return { enabled: true, prefix: v };
}

export class Ipv6Links {
  private ra: RouterAdvertiser | undefined;

  private constructor(
    private readonly base: Ipv6Prefix,
    private readonly nat: boolean,
    /** advertise: false — a process that exits right after serving (a one-shot) sends no advertisements */
    private readonly deps: { rtnl: Rtnl; firewall: () => Firewall; sysctl: SysctlIo; log: Logger; advertise?: boolean },
  ) {}

  /** The subsystem's IPv6, or undefined when off (or no machine ID to derive the ULA from). */
  static create(settings: Ipv6Settings, machineId: Uint8Array | undefined, deps: Ipv6Links['deps']): Ipv6Links | undefined {
    if (!settings.enabled) return undefined;
    if (settings.prefix !== undefined) return new Ipv6Links(parseIpv6Prefix(settings.prefix), false, deps);
    let id = machineId;
    if (id === undefined) {
      try {
        id = readMachineId();
      } catch (err) {
        deps.log.warn(`containers get no IPv6 prefix: ${errorMessage(err)}; give one with --ipv6=PREFIX`);
        return undefined;
      }
    }
    return new Ipv6Links(hostUlaPrefix(Buffer.from(id).toString('hex')), true, deps);
  }

  /** Whether link prefixes are masqueraded (the host's ULA) or routed (an administrator's prefix). */
  get masquerades(): boolean {
    return this.nat;
  }

  /** The /64 for a link, past those in `taken` (other records, routes of the host). */
  prefixFor(kind: 'veth' | 'zone', key: string, taken: ReadonlySet<string>): string {
    return formatPrefix(linkPrefix(this.base, kind, key, taken));
  }

  /** /64s that routes of this host already use (another link's, a VPN's): a link's prefix avoids them. */
  async routedPrefixes(exceptIfindex: number): Promise<Set<string>> {
    const out = new Set<string>();
    for (const r of await this.deps.rtnl.listRoutes({ family: 6 })) {
      if (r.oif !== exceptIfindex && r.dst.endsWith('/64') && !r.dst.startsWith('fe80:')) out.add(r.dst);
    }
    return out;
  }

  /**
   * Configures a served link: the host address, masquerade, advertisements (its sysctls are
   * prepare()'s, called first, before the link comes up). `dns`: the RDNSS servers (IPv6 addresses)
   * the containers get. Rolls back what it did when a step fails.
   */
  async serve(link: Link, prefixText: string, owner: string, dns: (hostAddress: string) => string[], searchDomains: string[]): Promise<LinkIpv6> {
    const { rtnl, log } = this.deps;
    const prefix = parseIpv6Prefix(prefixText);
    const hostAddress = formatAddress(addressInPrefix(prefix, 1n));
    const v6: LinkIpv6 = { prefix, prefixText, hostAddress, linkLocal: '', masquerade: false };
    try {
      for (const a of await rtnl.listAddresses({ link: link.index, family: 6 })) {
        if (a.scope === 0 && a.prefixlen === 64 && a.cidr !== `${hostAddress}/64` && this.inBase(a.address)) {
          log.info(`removing stale address ${a.cidr} from ${link.name}`, { ifname: link.name });
          await rtnl.deleteAddress(link.index, a.cidr);
        }
      }
      try {
        await rtnl.addAddress(link.index, `${hostAddress}/64`, { nodad: true });
      } catch (err) {
        if (!(err instanceof NspawnError && err.code === 'EEXIST')) throw err;
      }
      const ll = (await rtnl.listAddresses({ link: link.index, family: 6 })).find((a) => a.address.startsWith('fe80:'));
      if (ll && ll.flags & C.IFA_F_TENTATIVE) {
        // up before prepare() (systemd-nspawn's link, a sidecar restart): made usable now, or
        // containers wait seconds for the gateway to answer neighbour solicitations
        await rtnl.deleteAddress(link.index, ll.cidr);
        await rtnl.addAddress(link.index, ll.cidr, { nodad: true, scope: C.RT_SCOPE_LINK });
      }
      const mac = link.kind === 'bridge' ? await this.pinBridgeMac(link) : macOf(link.mac);
      v6.linkLocal = ll?.address ?? (mac ? formatAddress(linkLocalAddress(mac)) : '');
      if (this.nat) {
        this.deps.firewall().addMasquerade(prefixText, owner);
        v6.masquerade = true;
      }
      if (mac && v6.linkLocal && this.deps.advertise !== false) {
        this.ra ??= new RouterAdvertiser({ log });
        const servers = dns(hostAddress);
        this.ra.serve({
          ifindex: link.index, ifname: link.name, mac, linkLocal: addressBytes(v6.linkLocal),
          ...(link.mtu !== undefined ? { mtu: link.mtu } : {}),
          prefixes: [prefix], dnsServers: servers.map(addressBytes), searchDomains: servers.length ? searchDomains : [],
        });
      }
    } catch (err) {
      await this.unserve(link.index, link.name, v6, false);
      throw err;
    }
    return v6;
  }

  /**
   * A link's IPv6 as recorded, when it is in place (`addresses`: the link's): its /64's host address
   * and a usable link-local address; undefined otherwise (then it is to be served).
   */
  adopt(link: Link, prefixText: string, addresses: readonly Address[]): LinkIpv6 | undefined {
    const prefix = parseIpv6Prefix(prefixText);
    const hostAddress = formatAddress(addressInPrefix(prefix, 1n));
    const mine = addresses.filter((a) => a.index === link.index && a.family === 6);
    const ll = mine.find((a) => a.address.startsWith('fe80:') && !(a.flags & C.IFA_F_TENTATIVE));
    if (!ll || !mine.some((a) => a.cidr === `${hostAddress}/64`)) return undefined;
    return { prefix, prefixText, hostAddress, linkLocal: ll.address, masquerade: this.nat };
  }

  /**
   * Sysctls of a link about to be served, best before it comes up: no router or prefix taken from
   * a container's advertisements (accept_ra=0); IPv6 on; no DAD for the host's addresses there, so
   * the link-local address — the containers' gateway — answers at once (the host's addresses on a
   * link it made cannot collide: the container's kernel sees them before it has any of its own).
   */
  prepare(ifname: string): void {
    const at = (name: string): string => `/proc/sys/net/ipv6/conf/${ifname}/${name}`;
    try {
      this.deps.sysctl.write(at('accept_ra'), '0');
      this.deps.sysctl.write(at('disable_ipv6'), '0');
      this.deps.sysctl.write(at('accept_dad'), '0');
    } catch (err) {
      // no directory for it: the link went meanwhile (a container ending), as rtnetlink says ENODEV
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NspawnError('ENODEV', `link ${ifname} is gone`, { cause: err });
      throw err;
    }
  }

  /**
   * A zone bridge's MAC, fixed at what it is now. A bridge whose MAC nobody set takes the lowest MAC
   * of its ports, so it changed whenever a container joined or left (systemd-nspawn and we make
   * zone bridges without one): the router advertisements' source link-layer address would then name
   * a MAC the bridge no longer answers to, and containers that took it from an advertisement lose
   * their gateway until neighbour unreachability detection notices. Setting the MAC, even to the same
   * value, makes the kernel keep it (addr_assign_type "set"), as Docker does for its bridges.
   */
  private async pinBridgeMac(link: Link): Promise<Uint8Array | undefined> {
    const now = (await this.deps.rtnl.getLink(link.index))?.mac ?? link.mac;
    if (now === undefined) return undefined;
    await this.deps.rtnl.setMac(link.index, now);
    return macOf(now);
  }

  /**
   * Undoes serve(): a final advertisement (unless the link is gone), masquerade, host address. The
   * advertiser's socket goes with the last link: a sidecar without containers holds none.
   */
  async unserve(ifindex: number, ifname: string, v6: LinkIpv6, gone: boolean): Promise<void> {
    this.ra?.stop(ifindex, { linkGone: gone });
    if (this.ra?.idle) this.close();
    try {
      if (v6.masquerade) this.deps.firewall().removeMasquerade(v6.prefixText);
      v6.masquerade = false;
      if (!gone) await this.deps.rtnl.deleteAddress(ifindex, `${v6.hostAddress}/64`);
    } catch (err) {
      this.deps.log.warn(`removing IPv6 from ${ifname} failed: ${errorMessage(err)}`);
    }
  }

  /**
   * Stops advertising on a link that stays served by others (a shared zone's other launchers): no
   * final advertisement, and its address and masquerade stay theirs.
   */
  stopAdvertising(ifindex: number): void {
    this.ra?.stop(ifindex, { linkGone: true });
  }

  /** What a machine with host0 MAC `mac` gets on a link. */
  machine(v6: LinkIpv6, mac: string, dns: string[]): MachineIpv6 | undefined {
    const m = macOf(mac);
    if (!m || !v6.linkLocal) return undefined;
    return { address: formatAddress(slaacAddress(v6.prefix, m)), prefixLength: 64, gateway: v6.linkLocal, dns };
  }

  close(): void {
    this.ra?.close();
    this.ra = undefined;
  }

  private inBase(address: string): boolean {
    try {
      return formatPrefix({ bytes: addressBytes(address), length: this.base.length }) === formatPrefix(this.base);
    } catch {
      return false;
    }
  }
}

/** The container's IPv6 address for a MAC in a recorded /64 (port forwarding's target). */
export function machineAddress6(prefixText: string, mac: string): string | undefined {
  const m = macOf(mac);
  return m ? formatAddress(slaacAddress(parseIpv6Prefix(prefixText), m)) : undefined;
}

function macOf(text: string | undefined): Uint8Array | undefined {
  return text === undefined ? undefined : macBytes(text);
}
