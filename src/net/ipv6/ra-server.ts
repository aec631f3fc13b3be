// The router advertisement server: what systemd-networkd's IPv6SendRA= does for ve-/vz- links, for
// hosts without networkd and for links the real systemd-nspawn makes (through the sidecar).
//
// Like the DHCP server (src/dhcp/transport.ts), one AF_PACKET socket (SOCK_DGRAM, ETH_P_IPV6) per
// network namespace serves every link in it: a classic BPF filter lets through only ICMPv6 router
// solicitations that this host did not send, each arrives with its interface index, and links the
// server does not serve are ignored. Advertisements are whole IPv6 datagrams built in ndp.ts, sent to
// an explicit MAC on an explicit interface, from the host side's link-local address (RFC 4861 §4.2:
// an RA's source must be link-local; hosts drop others). A solicitation counts only with hop limit
// 255 (it was not forwarded from another link) and a valid checksum and options (§6.1.1).
//
// The kernel never answers solicitations itself, even with forwarding on: only user space sends RAs.
import type { Logger } from '../../log.js';
import { type FdWatcher, POLL_READABLE, sys } from '../../native.js';
import { BPF, PACKET_OUTGOING, SKF_AD_OFF, SKF_AD_PKTTYPE, assemble } from '../../dhcp/bpf.js';
import { sockaddrLl } from '../../dhcp/transport.js';
import {
  ICMP6,
  IPPROTO_ICMPV6,
  type Ipv6Bytes,
  type RouterAdvertisement,
  buildIpv6Icmp,
  decodeRouterSolicitation,
  encodeRouterAdvertisement,
  parseIpv6Icmp,
} from './ndp.js';
import { RA_LIFETIMES, AdvertisementSchedule, type RaTiming, RA_TIMING } from './ra-schedule.js';
import type { Ipv6Prefix } from './prefix.js';

/** What to advertise on one link. */
export interface RaLink {
  ifindex: number;
  /** For log lines. */
  ifname: string;
  /** The host side's MAC (source link-layer address option). */
  mac: Uint8Array;
  /** The host side's link-local address, the advertisements' source. */
  linkLocal: Ipv6Bytes;
  mtu?: number;
  /** On-link, autonomous /64s. */
  prefixes: Ipv6Prefix[];
  /** RDNSS servers and DNSSL domains (RFC 8106); empty: the options are left out. */
  dnsServers: Ipv6Bytes[];
  searchDomains: string[];
}

/** How advertisements reach links; the packet socket by default, a fake in unit tests. */
export interface RaTransport {
  start(onSolicitation: (ifindex: number, srcMac: Uint8Array, datagram: Uint8Array) => void): void;
  send(ifindex: number, dstMac: Uint8Array, datagram: Uint8Array): boolean;
  close(): void;
}

export interface RouterAdvertiserOptions {
  log: Logger;
  /** Sockets inside this network namespace (fd); default the caller's. */
  netnsFd?: number;
  transport?: RaTransport;
  timing?: Readonly<RaTiming>;
  now?: () => number;
  random?: () => number;
}

export interface RaCounters {
  advertisements: number;
  solicitations: number;
  dropped: number;
}

const ALL_NODES = Uint8Array.of(0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1);
const ALL_NODES_MAC = Uint8Array.of(0x33, 0x33, 0, 0, 0, 1);

interface Served {
  link: RaLink;
  schedule: AdvertisementSchedule;
  timer: NodeJS.Timeout | undefined;
  pendingMulticast: NodeJS.Timeout | undefined;
}

export class RouterAdvertiser {
  private readonly links = new Map<number, Served>();
  private readonly transport: RaTransport;
  private readonly log: Logger;
  private readonly timing: Readonly<RaTiming>;
  private readonly now: () => number;
  private readonly random: () => number;
  readonly counters: RaCounters = { advertisements: 0, solicitations: 0, dropped: 0 };

  constructor(opts: RouterAdvertiserOptions) {
    this.log = opts.log;
    this.timing = opts.timing ?? RA_TIMING;
    this.now = opts.now ?? Date.now;
    this.random = opts.random ?? Math.random;
    this.transport = opts.transport ?? new PacketRaTransport(opts.netnsFd);
    this.transport.start((ifindex, mac, datagram) => this.onSolicitation(ifindex, mac, datagram));
  }

  /** Starts advertising on a link (an advertisement at once), or updates what a served link gets. */
  serve(link: RaLink): void {
    const old = this.links.get(link.ifindex);
    if (old) {
      old.link = link;
      this.sendMulticast(old);
      return;
    }
    const s: Served = { link, schedule: new AdvertisementSchedule(this.now(), this.timing, this.random), timer: undefined, pendingMulticast: undefined };
    this.links.set(link.ifindex, s);
    this.sendMulticast(s);
  }

  serves(ifindex: number): boolean {
    return this.links.has(ifindex);
  }

  /** Whether it serves no link (its owner may close it). */
  get idle(): boolean {
    return this.links.size === 0;
  }

  /** Stops serving a link, with a final advertisement of router lifetime 0 (§6.2.5) unless it is gone. */
  stop(ifindex: number, opts: { linkGone?: boolean } = {}): void {
    const s = this.links.get(ifindex);
    if (!s) return;
    this.links.delete(ifindex);
    clearTimeout(s.timer);
    clearTimeout(s.pendingMulticast);
    if (!opts.linkGone) this.send(s.link, ALL_NODES_MAC, ALL_NODES, 0);
  }

  /** Stops every link (final advertisements) and closes the socket. */
  close(): void {
    for (const ifindex of [...this.links.keys()]) this.stop(ifindex);
    this.transport.close();
  }

  /** The advertisement a link gets; `routerLifetime` 0 for the final one. */
  advertisement(link: RaLink, routerLifetime: number = RA_LIFETIMES.router): RouterAdvertisement {
    return {
      curHopLimit: 64,
      managed: false,
      other: false,
      routerLifetime,
      reachableTime: 0,
      retransTimer: 0,
      sourceMac: link.mac,
      ...(link.mtu !== undefined ? { mtu: link.mtu } : {}),
      prefixes: link.prefixes.map((p) => ({
        prefix: p.bytes,
        length: p.length,
        onLink: true,
        autonomous: true,
        validLifetime: RA_LIFETIMES.prefixValid,
        preferredLifetime: RA_LIFETIMES.prefixPreferred,
      })),
      ...(link.dnsServers.length ? { rdnss: { lifetime: RA_LIFETIMES.dns, servers: link.dnsServers } } : {}),
      ...(link.searchDomains.length ? { dnssl: { lifetime: RA_LIFETIMES.dns, domains: link.searchDomains } } : {}),
    };
  }

  private sendMulticast(s: Served): void {
    clearTimeout(s.timer);
    clearTimeout(s.pendingMulticast);
    s.pendingMulticast = undefined;
    this.send(s.link, ALL_NODES_MAC, ALL_NODES);
    const delay = s.schedule.sentMulticast(this.now());
    s.timer = setTimeout(() => this.sendMulticast(s), delay);
    s.timer.unref();
  }

  private send(link: RaLink, dstMac: Uint8Array, dst: Ipv6Bytes, routerLifetime?: number): void {
    const datagram = buildIpv6Icmp(link.linkLocal, dst, 255, encodeRouterAdvertisement(this.advertisement(link, routerLifetime)));
    if (this.transport.send(link.ifindex, dstMac, datagram)) this.counters.advertisements++;
    else this.log.debug('the kernel refused a router advertisement', { link: link.ifname });
  }

  private onSolicitation(ifindex: number, srcMac: Uint8Array, datagram: Uint8Array): void {
    const s = this.links.get(ifindex);
    if (!s) return; // a link someone else serves, or none
    const drop = (reason: string): void => {
      this.counters.dropped++;
      this.log.debug('router solicitation dropped', { link: s.link.ifname, reason });
    };
    const ip = parseIpv6Icmp(datagram);
    if (typeof ip === 'string') return drop(ip);
    if (ip.hopLimit !== 255) return drop(`hop limit ${ip.hopLimit} (not from this link)`);
    if (ip.icmp[0] !== ICMP6.ROUTER_SOLICIT) return drop(`ICMPv6 type ${ip.icmp[0]}`);
    const unspecified = ip.src.every((b) => b === 0);
    const rs = decodeRouterSolicitation(ip.icmp, unspecified);
    if (typeof rs === 'string') return drop(rs);
    this.counters.solicitations++;
    const answer = s.schedule.solicited(this.now(), unspecified);
    if (answer.kind === 'none') return drop(answer.reason);
    if (answer.kind === 'unicast') {
      this.send(s.link, srcMac.length === 6 ? srcMac : (rs.sourceMac ?? ALL_NODES_MAC), Uint8Array.from(ip.src));
      return;
    }
    if (s.pendingMulticast) return; // one is already on its way
    s.pendingMulticast = setTimeout(() => this.sendMulticast(s), Math.max(0, answer.atMs - this.now()));
    s.pendingMulticast.unref();
  }
}

const AF_PACKET = 17;
const SOCK_DGRAM = 2;
const ETH_P_IPV6 = 0x86dd;
const SLOT = 2048;
const BATCH = 16;
/** recvmmsg calls per wake-up before yielding to the event loop (a flood cannot hold it). */
const ROUNDS = 4;
const ADDR = 20;

/**
 * The filter for a SOCK_DGRAM AF_PACKET socket of ETH_P_IPV6 (data starts at the IPv6 header):
 * ICMPv6 (no extension headers) router solicitations this host did not send.
 */
export function routerSolicitationFilter(): Uint8Array {
  const { LD, JMP, RET, W, B, ABS, JEQ, K } = BPF;
  return assemble([
    { code: LD | W | ABS, k: SKF_AD_OFF + SKF_AD_PKTTYPE },
    { code: JMP | JEQ | K, k: PACKET_OUTGOING, jt: 'drop', jf: 0 },
    { code: LD | B | ABS, k: 6 }, // next header
    { code: JMP | JEQ | K, k: IPPROTO_ICMPV6, jt: 0, jf: 'drop' },
    { code: LD | B | ABS, k: 40 }, // ICMPv6 type
    { code: JMP | JEQ | K, k: ICMP6.ROUTER_SOLICIT, jt: 0, jf: 'drop' },
    { code: RET | K, k: SLOT },
    { label: 'drop' },
    { code: RET | K, k: 0 },
  ]);
}

/** One packet socket per namespace for every served link (see the top of this file). */
export class PacketRaTransport implements RaTransport {
  private readonly fd: number;
  private watcher: FdWatcher | undefined;
  private readonly rx = new Uint8Array(BATCH * SLOT);
  private readonly lengths = new Int32Array(BATCH);
  private readonly addrs = new Uint8Array(BATCH * ADDR);

  constructor(netnsFd?: number) {
    const s = sys();
    // Protocol 0 receives nothing until bind(): the filter is in place before the first frame.
    this.fd = s.socket(AF_PACKET, SOCK_DGRAM, 0, netnsFd);
    try {
      s.attachFilter(this.fd, routerSolicitationFilter());
      s.bind(this.fd, sockaddrLl(0, undefined, ETH_P_IPV6));
    } catch (err) {
      s.close(this.fd);
      throw err;
    }
  }

  start(onSolicitation: (ifindex: number, srcMac: Uint8Array, datagram: Uint8Array) => void): void {
    const s = sys();
    const { rx, lengths, addrs } = this;
    const av = new DataView(addrs.buffer);
    this.watcher = new s.FdWatcher(this.fd, POLL_READABLE, () => {
      for (let round = 0; round < ROUNDS; round++) {
        const n = s.recvBatch(this.fd, rx, SLOT, lengths, addrs);
        if (n < 0) return;
        for (let i = 0; i < n; i++) {
          const len = lengths[i] as number;
          if (len < 0) continue;
          const a = i * ADDR;
          onSolicitation(av.getInt32(a + 4, true), addrs.slice(a + 12, a + 12 + Math.min(8, addrs[a + 11] as number)), rx.subarray(i * SLOT, i * SLOT + len));
        }
        if (n < BATCH) return;
      }
    });
  }

  send(ifindex: number, dstMac: Uint8Array, datagram: Uint8Array): boolean {
    try {
      return sys().sendBatch(this.fd, [datagram], [sockaddrLl(ifindex, dstMac, ETH_P_IPV6)]) === 1;
    } catch {
      return false;
    }
  }

  close(): void {
    this.watcher?.stop();
    this.watcher = undefined;
    sys().close(this.fd);
  }
}
