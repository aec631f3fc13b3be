// Configuration of one served interface: what a caller (the sidecar, the dhcp-serve command) writes,
// and its checked, resolved form the server works with. Every mistake becomes a ConfigError that
// names the interface, the field and what is allowed; nothing is served from a half-valid config.
import { ConfigError } from '../errors.js';
import {
  type Ipv4, fromHex, inSubnet, ipv4ToString, parseIpv4Cidr, parseIpv4, parseMac, prefixMask, toHex,
} from './ipv4.js';
import { type ClasslessRoute, encodeDomainNames, Opt } from './options.js';
import { MAX_POOL_SIZE } from './pool.js';

/** A fixed address for one client, known before it asks (the launcher's container address). */
export interface Reservation {
  /** Hardware address "02:00:00:00:00:42": matches the client's chaddr (and a client id 01‖MAC). */
  mac?: string;
  /** Client identifier (option 61) as hex, type octet first: "01020000000042". */
  clientId?: string;
  address: string;
  /** Host name given to this client (option 12) when it asks for one. */
  hostname?: string;
}

export interface InterfaceConfig {
  /** Kernel interface index (the server matches received frames by it). */
  ifindex: number;
  /** Interface name, for logs and as the lease file's key (it survives a link being re-created). */
  ifname: string;
  /** The server's own address on the link with its prefix ("192.168.37.1/28"): server identifier and subnet. */
  address: string;
  /** Addresses handed out: "FIRST-LAST" or a CIDR inside the subnet. Default: the whole subnet. */
  pool?: string;
  /** Routers (option 3). Default: the server's address; [] sends none. */
  routers?: string[];
  /** DNS servers (option 6). Default: none. */
  dns?: string[];
  /** Domain name (option 15). */
  domain?: string;
  /** Domain search list (option 119). */
  searchDomains?: string[];
  /** Interface MTU (option 26), 68..65535. */
  mtu?: number;
  /** Classless static routes (option 121), e.g. { destination: "0.0.0.0/0", router: "192.0.2.1" }. */
  classlessRoutes?: Array<{ destination: string; router: string }>;
  /** Lease time when the client asks for none; default 3600 s (networkd's DefaultLeaseTimeSec). */
  leaseTime?: number;
  /** Cap on the lease time a client asks for; default 43200 s (networkd's MaxLeaseTimeSec). */
  maxLeaseTime?: number;
  /** Floor on the lease time a client asks for; default 60 s. */
  minLeaseTime?: number;
  /** Addresses never handed out. */
  exclude?: string[];
  reservations?: Reservation[];
  /**
   * Authoritative for the link (default true): a REQUEST for an address this server would not give
   * is NAKed, and a client the server has no record of (lease file lost) gets its address back
   * when it is free. Non-authoritative servers stay silent instead (RFC 2131 §4.3.2).
   */
  authoritative?: boolean;
  /**
   * Answer only clients with a reservation here, ignoring every other message (default false): for
   * several servers sharing one link and server address (embedded launchers on one zone bridge),
   * each answering its own container, none NAKing the others'.
   */
  reservedOnly?: boolean;
  /**
   * At most this many addresses held (offered or bound) at once by clients without a reservation
   * whose frames come from one Ethernet source address (default 0: no cap). On a link shared by
   * several containers (a zone bridge), one container inventing client identities cannot take the
   * whole pool.
   */
  maxLeasesPerSource?: number;
}

export interface ResolvedReservation {
  /** Client key this reservation matches (see clientKey in decide.ts), when it names a client id. */
  clientKey?: string;
  /** Hardware address as lowercase hex, when it names a MAC. */
  macHex?: string;
  address: Ipv4;
  hostname?: string;
}

export interface SubnetConfig {
  ifindex: number;
  ifname: string;
  serverAddress: Ipv4;
  prefixLength: number;
  netmask: Ipv4;
  network: Ipv4;
  broadcast: Ipv4;
  poolFirst: Ipv4;
  poolLast: Ipv4;
  routers: Ipv4[];
  dns: Ipv4[];
  domain?: string;
  searchDomains: string[];
  mtu?: number;
  classlessRoutes: ClasslessRoute[];
  leaseTime: number;
  maxLeaseTime: number;
  minLeaseTime: number;
  /** Never offered: network, broadcast, server, `exclude`. */
  excluded: Set<Ipv4>;
  reservations: ResolvedReservation[];
  authoritative: boolean;
  reservedOnly: boolean;
  /** 0: no cap. */
  maxLeasesPerSource: number;
}

const IFNAME_RE = /^[^\s/:]{1,15}$/;

export function resolveInterfaceConfig(c: InterfaceConfig): SubnetConfig {
  const where = `DHCP interface ${typeof c.ifname === 'string' && c.ifname ? `"${c.ifname}"` : '(unnamed)'}`;
  const bad = (field: string, msg: string): never => {
    throw new ConfigError(`${where}: ${field}: ${msg}`, { code: 'CFG_DHCP' });
  };
  if (typeof c.ifname !== 'string' || !IFNAME_RE.test(c.ifname)) bad('ifname', `"${String(c.ifname)}" is not an interface name (1-15 characters, no spaces, "/" or ":")`);
  if (!Number.isInteger(c.ifindex) || c.ifindex <= 0) bad('ifindex', `${String(c.ifindex)} is not a positive integer`);
  const cidr = typeof c.address === 'string' ? parseIpv4Cidr(c.address) : undefined;
  if (!cidr) return bad('address', `"${String(c.address)}" is not an IPv4 address with prefix length, like 192.168.37.1/28`);
  if (cidr.prefixLength > 30) bad('address', `prefix /${cidr.prefixLength} leaves no address for clients; use /30 or shorter`);
  if (cidr.prefixLength < 8) bad('address', `prefix /${cidr.prefixLength} is too large a subnet; use /8 or longer`);
  if (cidr.address === cidr.network || cidr.address === cidr.broadcast) bad('address', `${ipv4ToString(cidr.address)} is the network or broadcast address of its subnet`);
  const inNet = (a: Ipv4): boolean => inSubnet(a, cidr.network, cidr.prefixLength);
  const subnetText = `${ipv4ToString(cidr.network)}/${cidr.prefixLength}`;
  const addr = (field: string, text: unknown, mustBeInSubnet: boolean): Ipv4 => {
    const a = typeof text === 'string' ? parseIpv4(text) : undefined;
    if (a === undefined) return bad(field, `"${String(text)}" is not an IPv4 address`);
    if (mustBeInSubnet && !inNet(a)) bad(field, `${text} is outside the subnet ${subnetText}`);
    return a;
  };

  let poolFirst = (cidr.network + 1) >>> 0;
  let poolLast = (cidr.broadcast - 1) >>> 0;
  if (c.pool !== undefined) {
    const text = String(c.pool);
    const range = text.match(/^([^-\s]+)-([^-\s]+)$/);
    if (range) {
      poolFirst = addr('pool', range[1], true);
      poolLast = addr('pool', range[2], true);
      if (poolLast < poolFirst) bad('pool', `"${text}": the last address is before the first`);
    } else {
      const p = parseIpv4Cidr(text);
      if (!p) bad('pool', `"${text}" is neither FIRST-LAST nor a CIDR like ${subnetText}`);
      else {
        if (!inNet(p.network) || p.prefixLength < cidr.prefixLength) bad('pool', `${text} is not inside the subnet ${subnetText}`);
        poolFirst = p.network;
        poolLast = p.broadcast;
      }
    }
    if (poolFirst === cidr.network) poolFirst = (poolFirst + 1) >>> 0;
    if (poolLast === cidr.broadcast) poolLast = (poolLast - 1) >>> 0;
    if (poolLast < poolFirst) bad('pool', `"${text}" holds no usable address`);
  }
  if (poolLast - poolFirst + 1 > MAX_POOL_SIZE) bad('pool', `more than ${MAX_POOL_SIZE} addresses`);

  const list = (field: string, v: unknown): unknown[] => {
    if (v === undefined) return [];
    if (!Array.isArray(v)) return bad(field, 'must be a list');
    return v;
  };
  const routers = c.routers === undefined ? [cidr.address] : list('routers', c.routers).map((r) => addr('routers', r, true));
  const dns = list('dns', c.dns).map((d) => addr('dns', d, false));
  let domain: string | undefined;
  if (c.domain !== undefined) {
    if (typeof c.domain !== 'string' || !validDomain(c.domain)) bad('domain', `"${String(c.domain)}" is not a domain name`);
    domain = c.domain.replace(/\.$/, '');
  }
  const searchDomains = list('searchDomains', c.searchDomains).map((d) => {
    if (typeof d !== 'string' || !validDomain(d)) return bad('searchDomains', `"${String(d)}" is not a domain name`);
    return d.replace(/\.$/, '');
  });
  try {
    encodeDomainNames(searchDomains, Opt.DOMAIN_SEARCH);
  } catch (err) {
    bad('searchDomains', (err as Error).message);
  }
  let mtu: number | undefined;
  if (c.mtu !== undefined) {
    if (!Number.isInteger(c.mtu) || c.mtu < 68 || c.mtu > 65535) bad('mtu', `${String(c.mtu)} is not an MTU (68..65535)`);
    mtu = c.mtu;
  }
  const classlessRoutes = list('classlessRoutes', c.classlessRoutes).map((r): ClasslessRoute => {
    const o = r as { destination?: unknown; router?: unknown };
    const d = typeof o?.destination === 'string' ? parseIpv4Cidr(o.destination) : undefined;
    if (!d) return bad('classlessRoutes', `destination "${String(o?.destination)}" is not a CIDR like 0.0.0.0/0`);
    return { destination: d.network, prefixLength: d.prefixLength, router: addr('classlessRoutes', o.router, true) };
  });
  const seconds = (field: string, v: unknown, def: number): number => {
    if (v === undefined) return def;
    if (!Number.isInteger(v) || (v as number) < 1 || (v as number) > 0xfffffffe) return bad(field, `${String(v)} is not a number of seconds (1..4294967294)`);
    return v as number;
  };
  const leaseTime = seconds('leaseTime', c.leaseTime, 3600);
  const maxLeaseTime = seconds('maxLeaseTime', c.maxLeaseTime, Math.max(43200, leaseTime));
  const minLeaseTime = seconds('minLeaseTime', c.minLeaseTime, Math.min(60, leaseTime));
  if (leaseTime > maxLeaseTime) bad('leaseTime', `${leaseTime} s is above maxLeaseTime ${maxLeaseTime} s`);
  if (minLeaseTime > leaseTime) bad('minLeaseTime', `${minLeaseTime} s is above leaseTime ${leaseTime} s`);

  const maxLeasesPerSource = c.maxLeasesPerSource ?? 0;
  if (!Number.isInteger(maxLeasesPerSource) || maxLeasesPerSource < 0) {
    bad('maxLeasesPerSource', `${String(c.maxLeasesPerSource)} is not a number of leases (0: no cap)`);
  }

  const excluded = new Set<Ipv4>([cidr.network, cidr.broadcast, cidr.address]);
  for (const e of list('exclude', c.exclude)) excluded.add(addr('exclude', e, true));

  const reservations: ResolvedReservation[] = [];
  const reservedAt = new Map<Ipv4, string>();
  for (const r of list('reservations', c.reservations) as Reservation[]) {
    const label = `reservation ${r?.mac ?? r?.clientId ?? '?'}`;
    const a = addr(label, r?.address, true);
    if (excluded.has(a)) bad(label, `${r.address} is the network, broadcast, server or an excluded address`);
    const res: ResolvedReservation = { address: a };
    if (r.mac !== undefined) {
      const mac = typeof r.mac === 'string' ? parseMac(r.mac) : undefined;
      if (!mac) bad(label, `"${String(r.mac)}" is not a MAC address like 02:00:00:00:00:42`);
      else res.macHex = toHex(mac);
    }
    if (r.clientId !== undefined) {
      const id = typeof r.clientId === 'string' ? fromHex(r.clientId) : undefined;
      if (!id || id.length < 2) bad(label, `client id "${String(r.clientId)}" is not hex of at least 2 octets`);
      else res.clientKey = toHex(id, 'id:');
    }
    if (res.macHex === undefined && res.clientKey === undefined) bad(label, 'needs a mac or a clientId');
    if (r.hostname !== undefined) {
      if (typeof r.hostname !== 'string' || !validDomain(r.hostname)) bad(label, `host name "${String(r.hostname)}" is not valid`);
      res.hostname = r.hostname;
    }
    const other = reservedAt.get(a);
    if (other !== undefined) bad(label, `${r.address} is already reserved for ${other}`);
    reservedAt.set(a, r.mac ?? r.clientId ?? '?');
    reservations.push(res);
  }
  return {
    ifindex: c.ifindex,
    ifname: c.ifname,
    serverAddress: cidr.address,
    prefixLength: cidr.prefixLength,
    netmask: prefixMask(cidr.prefixLength),
    network: cidr.network,
    broadcast: cidr.broadcast,
    poolFirst,
    poolLast,
    routers,
    dns,
    domain,
    searchDomains,
    mtu,
    classlessRoutes,
    leaseTime,
    maxLeaseTime,
    minLeaseTime,
    excluded,
    reservations,
    authoritative: c.authoritative ?? true,
    reservedOnly: c.reservedOnly ?? false,
    maxLeasesPerSource,
  };
}

function validDomain(name: string): boolean {
  const n = name.replace(/\.$/, '');
  if (!n || n.length > 253) return false;
  return n.split('.').every((l) => /^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/.test(l));
}
