// The names the DNS server answers itself: per served link, the machines that have an address on it.
// What a container can resolve is exactly what its link holds — a zone's containers see each other
// (one link, vz-ZONE, holds all of them); a veth container (ve-MACHINE, a /28 of its own) sees its
// own name only: it cannot reach other machines' subnets by their addresses either, so their names
// would be of no use and only tell it who else runs on the host.
//
// The table is fed from the network subsystem's record of served links and reservations (never by a
// container: DHCP host names and DNS updates do not touch it). Names are matched without regard to
// case, as `NAME` and `NAME.<domain>` (domain "machine" by default, like nss-mymachines), and PTR
// answers for the link's addresses give `NAME.<domain>`.
//
// IPv6: a link with a /64 has a second host address (its ::1, also listened on, mapping to the same
// names), its machines' IPv6 addresses answer AAAA, and reverse names inside the /64 are answered
// here (a ULA's reverse zone means nothing upstream, RFC 6303). Any source in the /64 is on the link
// (a container may use privacy or RFC 7217 addresses besides the one we know); for the rate limit,
// though, only the machines' known addresses get a bucket each — every other source in the /64
// shares one per link, so a container cycling through its 2^64 addresses can neither fill the
// limiter's table nor outrun the limit.
import { Address4, Address6 } from 'ip-address';

/** One served link as the DNS server sees it. */
export interface DnsLink {
  ifname: string;
  /** for registering with systemd-resolved (optional: tests and the bench have none) */
  ifindex?: number;
  /** the host-side address the server listens on for this link */
  hostAddress: string;
  /** the link's IPv4 subnet, "192.168.37.16/28": reverse lookups inside it are answered here */
  subnet: string;
  /** the host side's IPv6 address on the link (its /64's ::1): listened on too */
  hostAddress6?: string;
  /** the link's IPv6 /64, "fd12:3456:789a:1::/64" */
  prefix6?: string;
  /** `address6`: the machine's IPv6 address on the link (AAAA) */
  machines: ReadonlyArray<{ name: string; address: string; address6?: string }>;
}

/** The answers for one link, precomputed: lookups on the query path are two Map reads. */
export interface LinkNames {
  /** lower-case name (both `NAME` and `NAME.domain`) → IPv4 addresses */
  readonly forward: ReadonlyMap<string, readonly string[]>;
  /** the same for IPv6 addresses (a name may be in either map or both) */
  readonly forward6: ReadonlyMap<string, readonly string[]>;
  /** `d.c.b.a.in-addr.arpa` and ip6.arpa nibble names (lower case) → `NAME.domain` */
  readonly reverse: ReadonlyMap<string, string>;
  /** whether a reverse name is inside the link's subnet or /64 (answered here, never forwarded) */
  ownsReverse(name: string): boolean;
  /** whether a source address is on the link (its subnet or /64): nobody else is answered */
  onLink(source: string): boolean;
  /** the rate limiter's key for an on-link source (see the head of this file) */
  limitKey(source: string): string;
}

export const DEFAULT_MACHINE_DOMAIN = 'machine';

/** A machine name we can publish: DNS labels of letters, digits, '-' and '_' (what our names allow). */
const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;

export function validDnsName(name: string): boolean {
  if (name.length === 0 || name.length > 253) return false;
  return name.toLowerCase().split('.').every((l) => LABEL.test(l));
}

/** A domain for machines: one or more labels, no leading or trailing dot. */
export function validMachineDomain(domain: string): boolean {
  return validDnsName(domain) && !/^\d+$/.test(domain.split('.').pop() ?? '');
}

export function reverseName(address: string): string {
  return `${address.split('.').reverse().join('.')}.in-addr.arpa`;
}

/** The ip6.arpa name of an IPv6 address: 32 nibbles, least significant first. */
export function reverseName6(address: string): string {
  const hex = new Address6(address).canonicalForm().replace(/:/g, '');
  return `${[...hex].reverse().join('.')}.ip6.arpa`;
}

/** The 32 hex digits of an ip6.arpa name of a whole address, most significant first, or undefined. */
function nibblesOfReverse6(name: string): string | undefined {
  const m = /^((?:[0-9a-f]\.){32})ip6\.arpa$/.exec(name.toLowerCase());
  return m ? [...(m[1] as string).replace(/\./g, '')].reverse().join('') : undefined;
}

const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;

/**
 * The first 16 hex digits (the /64) of an IPv6 address, or undefined (IPv4, embedded IPv4, scoped,
 * junk). On the query path for every new source, before the rate limit: a container cycling
 * through its /64 makes it the cost of every packet, so it is parsed by hand — about 15 times
 * faster than ip-address's parser (2.8 µs against 42 µs per address on the loaded 2-core test
 * machine).
 */
export function prefix64Of(address: string): string | undefined {
  if (address.length > 39 || address.length < 2) return undefined;
  const cut = address.indexOf('::');
  let groups: string[];
  if (cut < 0) {
    groups = address.split(':');
    if (groups.length !== 8) return undefined;
  } else {
    if (address.indexOf('::', cut + 1) >= 0) return undefined;
    const head = cut === 0 ? [] : address.slice(0, cut).split(':');
    const tail = cut + 2 === address.length ? [] : address.slice(cut + 2).split(':');
    if (head.length + tail.length > 7) return undefined;
    groups = [...head, ...new Array<string>(8 - head.length - tail.length).fill('0'), ...tail];
  }
  let out = '';
  for (let i = 0; i < 8; i++) {
    const g = groups[i] as string;
    if (!HEX_GROUP.test(g)) return undefined;
    if (i < 4) out += g.toLowerCase().padStart(4, '0');
  }
  return out;
}

/** The IPv4 address a reverse name stands for, or undefined (partial names, IPv6, junk). */
export function addressOfReverse(name: string): string | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.in-addr\.arpa$/.exec(name.toLowerCase());
  if (!m) return undefined;
  const octets = [m[4], m[3], m[2], m[1]].map(Number);
  return octets.every((o) => o <= 255) ? octets.join('.') : undefined;
}

/** A dotted quad as an unsigned 32-bit integer (IPv4-mapped IPv6 "::ffff:a.b.c.d" too), or undefined. */
export function ipv4ToInt(address: string): number | undefined {
  const a = address.startsWith('::ffff:') ? address.slice(7) : address;
  const parts = a.split('.');
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) return undefined;
    n = n * 256 + Number(p);
  }
  return n >>> 0;
}

function parseSubnet(cidr: string): { base: number; mask: number } | undefined {
  const [addr, len] = cidr.split('/');
  const n = addr === undefined ? undefined : ipv4ToInt(addr);
  const l = Number(len);
  if (n === undefined || !Number.isInteger(l) || l < 0 || l > 32) return undefined;
  const mask = l === 0 ? 0 : (0xffffffff << (32 - l)) >>> 0;
  return { base: (n & mask) >>> 0, mask };
}

function buildLink(link: DnsLink, domain: string): LinkNames {
  const forward = new Map<string, string[]>();
  const forward6 = new Map<string, string[]>();
  const reverse = new Map<string, string>();
  const add = (map: Map<string, string[]>, name: string, address: string): void => {
    const list = map.get(name);
    if (!list) map.set(name, [address]);
    else if (!list.includes(address)) list.push(address);
  };
  const prefix64 = link.prefix6 === undefined ? undefined : prefix64Of(link.prefix6.replace(/\/64$/, ''));
  const known6 = new Set<string>();
  for (const m of link.machines) {
    const name = m.name.toLowerCase();
    // a machine name that is no DNS name (or already ends in the domain) is not published
    if (!validDnsName(name) || name === domain || name.endsWith(`.${domain}`)) continue;
    if (!Address4.isValid(m.address)) continue;
    add(forward, name, m.address);
    add(forward, `${name}.${domain}`, m.address);
    reverse.set(reverseName(m.address), `${m.name}.${domain}`);
    // an IPv6 address is published only inside the link's /64 (what the container can have there)
    if (m.address6 !== undefined && prefix64 !== undefined && prefix64Of(m.address6) === prefix64) {
      const a6 = new Address6(m.address6).correctForm();
      add(forward6, name, a6);
      add(forward6, `${name}.${domain}`, a6);
      reverse.set(reverseName6(a6), `${m.name}.${domain}`);
      known6.add(a6);
    }
  }
  const net = parseSubnet(link.subnet);
  const inSubnet = (a: string): boolean => {
    const n = ipv4ToInt(a);
    if (n !== undefined) return net !== undefined && ((n & net.mask) >>> 0) === net.base;
    return prefix64 !== undefined && prefix64Of(a) === prefix64;
  };
  const ownsReverse = (name: string): boolean => {
    const a = addressOfReverse(name);
    if (a !== undefined) return inSubnet(a);
    const nibbles = prefix64 === undefined ? undefined : nibblesOfReverse6(name);
    return nibbles !== undefined && nibbles.startsWith(prefix64 as string);
  };
  // sources repeat (a link has a handful of containers): remembered, bounded
  const seen = new Map<string, boolean>();
  const onLink = (source: string): boolean => {
    let v = seen.get(source);
    if (v === undefined) {
      v = inSubnet(source);
      if (seen.size >= 1024) seen.clear();
      seen.set(source, v);
    }
    return v;
  };
  // Node reports IPv6 sources in the compressed form correctForm() gives
  const shared6 = `${link.prefix6 ?? ''}#others`;
  const limitKey = (source: string): string => (!source.includes(':') || source.startsWith('::ffff:') || known6.has(source) ? source : shared6);
  return { forward, forward6, reverse, ownsReverse, onLink, limitKey };
}

/** Every served link's names, keyed by the host-side address the query came to. */
export class NameTable {
  readonly domain: string;
  private byAddress = new Map<string, LinkNames>();
  /** changes with every set(): cached local answers carry it */
  generation = 0;

  constructor(domain = DEFAULT_MACHINE_DOMAIN) {
    const d = domain.toLowerCase().replace(/\.$/, '');
    if (!validMachineDomain(d)) throw new TypeError(`"${domain}" is not a usable DNS domain for machines`);
    this.domain = d;
  }

  /** Replaces the whole table (the subsystem's record is small; rebuilding is simpler than diffing). */
  set(links: readonly DnsLink[]): void {
    const next = new Map<string, LinkNames>();
    for (const l of links) {
      const names = buildLink(l, this.domain);
      next.set(l.hostAddress, names);
      if (l.hostAddress6 !== undefined) next.set(l.hostAddress6, names);
    }
    this.byAddress = next;
    this.generation++;
  }

  /** The names visible to a query that arrived on `hostAddress`; undefined: not a served link. */
  forLink(hostAddress: string): LinkNames | undefined {
    return this.byAddress.get(hostAddress);
  }

  addresses(): string[] {
    return [...this.byAddress.keys()];
  }

  /** Whether a (lower-case) name is ours to answer: the machine domain, or a single label. */
  isLocalName(name: string): boolean {
    return name === this.domain || name.endsWith(`.${this.domain}`) || (name.length > 0 && !name.includes('.'));
  }
}
