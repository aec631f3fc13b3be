// Neighbor Discovery's router messages (RFC 4861 §4.1, §4.2) with the options a router sends to its
// container links: source link-layer address (§4.6.1), prefix information (§4.6.2), MTU (§4.6.4),
// RDNSS and DNSSL (RFC 8106 §5). And the IPv6 header around them: the RA server sends and receives
// whole IPv6 datagrams on a packet socket, as the DHCP server does for IPv4, so every byte is built
// and checked here and pinned by golden tests.
//
// Hand-written rather than taken from npm: no maintained package encodes RAs (the few "ndp" packages
// wrap radvd or only parse), and the message is a fixed header plus TLVs of 8-octet units.

/** ICMPv6 types. */
export const ICMP6 = { ROUTER_SOLICIT: 133, ROUTER_ADVERT: 134 } as const;

/** ND option types. */
export const ND_OPT = { SOURCE_LL: 1, TARGET_LL: 2, PREFIX_INFO: 3, REDIRECTED: 4, MTU: 5, RDNSS: 25, DNSSL: 31 } as const;

/** The 16 bytes of an IPv6 address. */
export type Ipv6Bytes = Uint8Array;

export interface PrefixInformation {
  prefix: Ipv6Bytes;
  length: number;
  /** L flag: the prefix is on this link. */
  onLink: boolean;
  /** A flag: hosts may form addresses in it (SLAAC). */
  autonomous: boolean;
  /** Seconds; 0xffffffff is infinity. */
  validLifetime: number;
  preferredLifetime: number;
}

export interface RouterAdvertisement {
  /** Hop limit hosts should use (0: unspecified). */
  curHopLimit: number;
  /** M and O flags: addresses / other configuration from DHCPv6. */
  managed: boolean;
  other: boolean;
  /** Seconds this router is a default router; 0: not a default router (the final advertisement). */
  routerLifetime: number;
  /** Milliseconds (0: unspecified). */
  reachableTime: number;
  retransTimer: number;
  /** The router's MAC, in the source link-layer address option. */
  sourceMac?: Uint8Array;
  mtu?: number;
  prefixes: PrefixInformation[];
  /** RFC 8106 recursive DNS servers. */
  rdnss?: { lifetime: number; servers: Ipv6Bytes[] };
  /** RFC 8106 DNS search list. */
  dnssl?: { lifetime: number; domains: string[] };
}

export interface RouterSolicitation {
  /** The source link-layer address option, when the solicitor sent one. */
  sourceMac?: Uint8Array;
}

/** Encodes an RA as an ICMPv6 message; its checksum field stays 0 (buildIpv6Icmp fills it). */
export function encodeRouterAdvertisement(ra: RouterAdvertisement): Uint8Array {
  const parts: Uint8Array[] = [];
  const head = new Uint8Array(16);
  const hv = new DataView(head.buffer);
  head[0] = ICMP6.ROUTER_ADVERT;
  head[4] = ra.curHopLimit;
  head[5] = (ra.managed ? 0x80 : 0) | (ra.other ? 0x40 : 0);
  hv.setUint16(6, ra.routerLifetime);
  hv.setUint32(8, ra.reachableTime);
  hv.setUint32(12, ra.retransTimer);
  parts.push(head);
  if (ra.sourceMac) parts.push(linkLayerOption(ND_OPT.SOURCE_LL, ra.sourceMac));
  if (ra.mtu !== undefined) {
    const o = new Uint8Array(8);
    o[0] = ND_OPT.MTU;
    o[1] = 1;
    new DataView(o.buffer).setUint32(4, ra.mtu);
    parts.push(o);
  }
  for (const p of ra.prefixes) parts.push(prefixOption(p));
  if (ra.rdnss && ra.rdnss.servers.length) {
    const o = new Uint8Array(8 + 16 * ra.rdnss.servers.length);
    o[0] = ND_OPT.RDNSS;
    o[1] = o.length / 8;
    new DataView(o.buffer).setUint32(4, ra.rdnss.lifetime);
    ra.rdnss.servers.forEach((s, i) => o.set(checkAddress(s), 8 + 16 * i));
    parts.push(o);
  }
  if (ra.dnssl && ra.dnssl.domains.length) {
    const names = ra.dnssl.domains.map(encodeDomainName);
    const body = names.reduce((n, b) => n + b.length, 0);
    const o = new Uint8Array(8 + Math.ceil(body / 8) * 8); // zero padding to 8 octets (RFC 8106 §5.2)
    o[0] = ND_OPT.DNSSL;
    o[1] = o.length / 8;
    new DataView(o.buffer).setUint32(4, ra.dnssl.lifetime);
    let at = 8;
    for (const n of names) {
      o.set(n, at);
      at += n.length;
    }
    parts.push(o);
  }
  return concat(parts);
}

/** Parses an RA (an ICMPv6 message), validating as a host would (RFC 4861 §6.1.2, options). */
export function decodeRouterAdvertisement(b: Uint8Array): RouterAdvertisement | string {
  if (b.length < 16) return `${b.length} bytes is too short for a router advertisement`;
  if (b[0] !== ICMP6.ROUTER_ADVERT) return `ICMPv6 type ${b[0]} is not a router advertisement`;
  if (b[1] !== 0) return `ICMPv6 code ${b[1]}`;
  const dv = view(b);
  const ra: RouterAdvertisement = {
    curHopLimit: b[4] as number,
    managed: ((b[5] as number) & 0x80) !== 0,
    other: ((b[5] as number) & 0x40) !== 0,
    routerLifetime: dv.getUint16(6),
    reachableTime: dv.getUint32(8),
    retransTimer: dv.getUint32(12),
    prefixes: [],
  };
  const err = forEachOption(b, 16, (type, o) => {
    const ov = view(o);
    if (type === ND_OPT.SOURCE_LL) ra.sourceMac = o.slice(2, 8);
    else if (type === ND_OPT.MTU) ra.mtu = ov.getUint32(4);
    else if (type === ND_OPT.PREFIX_INFO) {
      if (o.length !== 32) return `a prefix information option of ${o.length} bytes`;
      ra.prefixes.push({
        length: o[2] as number,
        onLink: ((o[3] as number) & 0x80) !== 0,
        autonomous: ((o[3] as number) & 0x40) !== 0,
        validLifetime: ov.getUint32(4),
        preferredLifetime: ov.getUint32(8),
        prefix: o.slice(16, 32),
      });
    } else if (type === ND_OPT.RDNSS) {
      if (o.length < 24 || (o.length - 8) % 16) return `an RDNSS option of ${o.length} bytes`;
      const servers: Ipv6Bytes[] = [];
      for (let at = 8; at < o.length; at += 16) servers.push(o.slice(at, at + 16));
      ra.rdnss = { lifetime: ov.getUint32(4), servers };
    } else if (type === ND_OPT.DNSSL) {
      const domains = decodeDomainNames(o.subarray(8));
      if (typeof domains === 'string') return domains;
      ra.dnssl = { lifetime: ov.getUint32(4), domains };
    }
    return undefined;
  });
  return err ?? ra;
}

/** Parses an RS (an ICMPv6 message) as a router must before answering it (RFC 4861 §6.1.1). */
export function decodeRouterSolicitation(b: Uint8Array, srcUnspecified: boolean): RouterSolicitation | string {
  if (b.length < 8) return `${b.length} bytes is too short for a router solicitation`;
  if (b[0] !== ICMP6.ROUTER_SOLICIT) return `ICMPv6 type ${b[0]} is not a router solicitation`;
  if (b[1] !== 0) return `ICMPv6 code ${b[1]}`;
  const rs: RouterSolicitation = {};
  const err = forEachOption(b, 8, (type, o) => {
    if (type === ND_OPT.SOURCE_LL) {
      if (srcUnspecified) return 'a source link-layer address option from the unspecified address';
      if (o.length !== 8) return `a source link-layer address option of ${o.length} bytes`;
      rs.sourceMac = o.slice(2, 8);
    }
    return undefined;
  });
  return err ?? rs;
}

function forEachOption(b: Uint8Array, from: number, fn: (type: number, option: Uint8Array) => string | undefined): string | undefined {
  for (let at = from; at < b.length; ) {
    if (at + 2 > b.length) return 'a truncated option';
    const len = (b[at + 1] as number) * 8;
    if (len === 0) return `option ${b[at]} has length 0`;
    if (at + len > b.length) return `option ${b[at]} runs past the message`;
    const err = fn(b[at] as number, b.subarray(at, at + len));
    if (err) return err;
    at += len;
  }
  return undefined;
}

function linkLayerOption(type: number, mac: Uint8Array): Uint8Array {
  if (mac.length !== 6) throw new RangeError(`a link-layer address option carries a 6-byte MAC, not ${mac.length} bytes`);
  const o = new Uint8Array(8);
  o[0] = type;
  o[1] = 1;
  o.set(mac, 2);
  return o;
}

function prefixOption(p: PrefixInformation): Uint8Array {
  if (!Number.isInteger(p.length) || p.length < 0 || p.length > 128) throw new RangeError(`prefix length ${p.length}`);
  const o = new Uint8Array(32);
  const ov = new DataView(o.buffer);
  o[0] = ND_OPT.PREFIX_INFO;
  o[1] = 4;
  o[2] = p.length;
  o[3] = (p.onLink ? 0x80 : 0) | (p.autonomous ? 0x40 : 0);
  ov.setUint32(4, p.validLifetime);
  ov.setUint32(8, p.preferredLifetime);
  o.set(maskPrefix(checkAddress(p.prefix), p.length), 16); // bits past the length must be 0 (§4.6.2)
  return o;
}

/** The first `length` bits of an address, the rest zeroed. */
export function maskPrefix(a: Ipv6Bytes, length: number): Ipv6Bytes {
  const out = new Uint8Array(16);
  for (let i = 0; i < 16; i++) {
    const bits = Math.max(0, Math.min(8, length - i * 8));
    out[i] = (a[i] as number) & ((0xff00 >> bits) & 0xff);
  }
  return out;
}

/** A domain name in DNS wire format, uncompressed (RFC 1035 §3.1), as DNSSL carries them. */
export function encodeDomainName(name: string): Uint8Array {
  const labels = name.replace(/\.$/, '').split('.').filter((l) => l.length);
  const out: number[] = [];
  for (const l of labels) {
    const bytes = new TextEncoder().encode(l);
    if (bytes.length > 63) throw new RangeError(`DNS label "${l}" is longer than 63 bytes`);
    out.push(bytes.length, ...bytes);
  }
  out.push(0);
  if (out.length > 255) throw new RangeError(`domain name "${name}" is longer than 255 bytes`);
  return Uint8Array.from(out);
}

function decodeDomainNames(b: Uint8Array): string[] | string {
  const names: string[] = [];
  let labels: string[] = [];
  for (let at = 0; at < b.length; ) {
    const len = b[at] as number;
    if (len === 0) {
      if (labels.length) names.push(labels.join('.'));
      else if (names.length === 0 && at === 0) return 'an empty DNSSL option';
      labels = [];
      at++;
      continue;
    }
    if (len > 63) return `a DNS label of length ${len} (compression is not allowed in DNSSL)`;
    if (at + 1 + len > b.length) return 'a DNS label runs past the option';
    labels.push(new TextDecoder().decode(b.subarray(at + 1, at + 1 + len)));
    at += 1 + len;
  }
  if (labels.length) return 'a domain name without its terminating zero';
  return names;
}

// --- IPv6 header ---------------------------------------------------------------------------------

export const IPPROTO_ICMPV6 = 58;
export const IPV6_HEADER = 40;

export interface Ipv6Icmp {
  src: Ipv6Bytes;
  dst: Ipv6Bytes;
  hopLimit: number;
  /** The ICMPv6 message (a view into the received buffer). */
  icmp: Uint8Array;
}

/** An IPv6 datagram (no extension headers) carrying one ICMPv6 message, checksum filled in. */
export function buildIpv6Icmp(src: Ipv6Bytes, dst: Ipv6Bytes, hopLimit: number, icmp: Uint8Array): Uint8Array {
  const b = new Uint8Array(IPV6_HEADER + icmp.length);
  const dv = view(b);
  b[0] = 0x60;
  dv.setUint16(4, icmp.length);
  b[6] = IPPROTO_ICMPV6;
  b[7] = hopLimit;
  b.set(checkAddress(src), 8);
  b.set(checkAddress(dst), 24);
  b.set(icmp, IPV6_HEADER);
  b[IPV6_HEADER + 2] = 0;
  b[IPV6_HEADER + 3] = 0;
  dv.setUint16(IPV6_HEADER + 2, icmpv6Checksum(src, dst, b.subarray(IPV6_HEADER)));
  return b;
}

/**
 * Parses an IPv6 datagram whose next header is ICMPv6 and checks the ICMPv6 checksum (the kernel
 * computes ND messages' checksums in full before they cross a veth). Extension headers are not
 * followed: ND messages never carry them in practice, and a router may drop what it cannot check.
 */
export function parseIpv6Icmp(b: Uint8Array): Ipv6Icmp | string {
  if (b.length < IPV6_HEADER + 4) return `${b.length} bytes is too short for IPv6 and ICMPv6 headers`;
  if ((b[0] as number) >> 4 !== 6) return `IP version ${(b[0] as number) >> 4}`;
  const payload = view(b).getUint16(4);
  if (IPV6_HEADER + payload > b.length || payload < 4) return `IPv6 payload length ${payload} does not fit ${b.length} bytes received`;
  if (b[6] !== IPPROTO_ICMPV6) return `IPv6 next header ${b[6]}`;
  const src = b.subarray(8, 24);
  const dst = b.subarray(24, 40);
  const icmp = b.subarray(IPV6_HEADER, IPV6_HEADER + payload);
  if (icmpv6Checksum(src, dst, icmp) !== 0) return 'bad ICMPv6 checksum';
  return { src, dst, hopLimit: b[7] as number, icmp };
}

/** The ICMPv6 checksum over the pseudo-header (RFC 8200 §8.1) and the message; 0 when it verifies. */
export function icmpv6Checksum(src: Ipv6Bytes, dst: Ipv6Bytes, icmp: Uint8Array): number {
  let sum = 0;
  const add = (bytes: Uint8Array): void => {
    for (let i = 0; i < bytes.length; i += 2) sum += ((bytes[i] as number) << 8) | (i + 1 < bytes.length ? (bytes[i + 1] as number) : 0);
  };
  add(src);
  add(dst);
  sum += (icmp.length >>> 16) + (icmp.length & 0xffff) + IPPROTO_ICMPV6;
  add(icmp);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function checkAddress(a: Ipv6Bytes): Ipv6Bytes {
  if (a.length !== 16) throw new RangeError(`an IPv6 address has 16 bytes, not ${a.length}`);
  return a;
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
