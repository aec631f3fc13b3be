// Thin builders: which attributes each rtnetlink operation sends, as plain message objects for the
// codec. Pure (no I/O), so golden tests compare them byte for byte with what iproute2 sends for the
// same operation. Attribute order and header fields follow iproute2 6.1 (`ip link add`, `ip link set`,
// `ip addr add`, `ip route add`), which the kernel has accepted for decades; see test/golden/netlink/.
import { Address4, Address6 } from 'ip-address';
import { type Cidr, parseCidrText } from '../../common/cidr.js';
export type { Cidr } from '../../common/cidr.js';
import * as C from './constants.js';
import { type AddrMessage, type LinkMessage, parseIp, type RawMessage, type RouteMessage } from './codec.js';
import { NetlinkEncodeError } from './errors.js';
import type { AddrAttrs, BridgeInfo, IfInfoMsg, IpvlanInfo, LinkAttrs, LinkInfo, MacvlanInfo, RouteAttrs } from './policy.js';
import { utf8Length } from './wire.js';

/** A link by ifindex (number) or by name or alternative name (string). */
export type LinkRef = number | string;

export type MacvlanMode = 'private' | 'vepa' | 'bridge' | 'passthru' | 'source';
export type IpvlanMode = 'l2' | 'l3' | 'l3s';
export type IpvlanFlag = 'bridge' | 'private' | 'vepa';

export const MACVLAN_MODES: Readonly<Record<MacvlanMode, number>> = {
  private: C.MACVLAN_MODE_PRIVATE, vepa: C.MACVLAN_MODE_VEPA, bridge: C.MACVLAN_MODE_BRIDGE,
  passthru: C.MACVLAN_MODE_PASSTHRU, source: C.MACVLAN_MODE_SOURCE,
};
export const IPVLAN_MODES: Readonly<Record<IpvlanMode, number>> = { l2: C.IPVLAN_MODE_L2, l3: C.IPVLAN_MODE_L3, l3s: C.IPVLAN_MODE_L3S };
export const IPVLAN_FLAGS: Readonly<Record<IpvlanFlag, number>> = { bridge: 0, private: C.IPVLAN_F_PRIVATE, vepa: C.IPVLAN_F_VEPA };

/** Attributes every new link may carry. */
export interface CommonLinkOptions {
  /** Interface name, 1–15 bytes. */
  name: string;
  /** MAC address ("02:…"); default: random, chosen by the kernel. */
  mac?: string;
  mtu?: number;
  /** Link group (IFLA_GROUP), e.g. to delete many links in one request. */
  group?: number;
  /** Create the link directly inside this network namespace (fd). */
  netnsFd?: number;
  /** Enslave to this master (ifindex) at creation. */
  master?: number;
  /** Bring it up at creation. */
  up?: boolean;
}

export interface VethPeerOptions {
  name: string;
  mac?: string;
  mtu?: number;
  group?: number;
  /** TX and RX queues of this end (IFLA_NUM_TX_QUEUES / IFLA_NUM_RX_QUEUES); default the kernel's. */
  queues?: number;
  /** Create the peer end directly inside this network namespace (fd). */
  netnsFd?: number;
}

export interface VethOptions extends CommonLinkOptions {
  peer: VethPeerOptions;
  /**
   * TX and RX queues of this end (IFLA_NUM_TX_QUEUES / IFLA_NUM_RX_QUEUES). Without it the kernel
   * allocates one per CPU and at once cuts the active count back to 1 (veth_init_queues), paying an
   * expedited RCU grace period per link; the extra queues serve only XDP after `ethtool -L`.
   */
  queues?: number;
}

export interface BridgeOptions extends CommonLinkOptions {
  /** STP on (1) or off (0); kernel default off. */
  stp?: boolean;
  /** Forward delay in centiseconds (IFLA_BR_FORWARD_DELAY, USER_HZ). */
  forwardDelay?: number;
  vlanFiltering?: boolean;
  /** Extra IFLA_BR_* attributes, raw. */
  data?: BridgeInfo;
}

export interface MacvlanOptions extends CommonLinkOptions {
  /** The parent (lower) device: ifindex in the namespace the client is bound to. */
  parent: number;
  mode: MacvlanMode;
  /** MACVLAN_FLAG_NOPROMISC etc. */
  flags?: number;
}

export interface IpvlanOptions extends CommonLinkOptions {
  parent: number;
  mode: IpvlanMode;
  /** IPVLAN_F_*: 'bridge' (default, no flag), 'private' or 'vepa'. */
  flag?: IpvlanFlag;
}

/** Any link kind: veth, bridge, macvlan, ipvlan, or another with raw IFLA_INFO_DATA. */
export type LinkSpec =
  | ({ kind: 'veth' } & VethOptions)
  | ({ kind: 'bridge' } & BridgeOptions)
  | ({ kind: 'macvlan' } & MacvlanOptions)
  | ({ kind: 'ipvlan' } & IpvlanOptions)
  | ({ kind: string; parent?: number; data?: Uint8Array } & CommonLinkOptions);

/** Changes to an existing link; each field present is changed. */
export interface LinkChanges {
  up?: boolean;
  mtu?: number;
  /** New master ifindex, or 0 to leave the master. */
  master?: number;
  /** New name (the link must be addressed by ifindex). */
  name?: string;
  group?: number;
  mac?: string;
  /** Move to this network namespace (fd). */
  netnsFd?: number;
}

const NO_HEADER: IfInfoMsg = { family: C.AF_UNSPEC, type: 0, index: 0, flags: 0, change: 0 };

/**
 * Checks an interface name the way the kernel's dev_valid_name() does, with a message that says
 * what is allowed. Throws NetlinkEncodeError (code NL_INVALID).
 */
export function validateIfname(name: string, what = 'interface name'): string {
  if (typeof name !== 'string' || name.length === 0) throw new NetlinkEncodeError(`invalid ${what}: it is empty`);
  const bytes = utf8Length(name);
  if (bytes > C.IFNAMSIZ - 1) {
    throw new NetlinkEncodeError(`invalid ${what} "${name}": ${bytes} bytes long, Linux allows at most ${C.IFNAMSIZ - 1}`);
  }
  if (name === '.' || name === '..' || /[/:\s\0]/.test(name)) {
    throw new NetlinkEncodeError(`invalid ${what} "${name}": it may not be "." or "..", nor contain "/", ":" or whitespace`);
  }
  return name;
}

function validateAltname(name: string): string {
  if (typeof name !== 'string' || name.length === 0) throw new NetlinkEncodeError('invalid alternative name: it is empty');
  const bytes = utf8Length(name);
  if (bytes > C.ALTIFNAMSIZ - 1) {
    throw new NetlinkEncodeError(`invalid alternative name "${name}": ${bytes} bytes long, Linux allows at most ${C.ALTIFNAMSIZ - 1}`);
  }
  if (/[/:\s\0]/.test(name)) throw new NetlinkEncodeError(`invalid alternative name "${name}": it may not contain "/", ":" or whitespace`);
  return name;
}

function checkUint(v: number | undefined, what: string, max = 0xffffffff): void {
  if (v !== undefined && (!Number.isInteger(v) || v < 0 || v > max)) {
    throw new NetlinkEncodeError(`invalid ${what}: ${String(v)} (expected an integer 0..${max})`);
  }
}

function checkQueues(n: number | undefined, what: string): void {
  if (n !== undefined && (!Number.isInteger(n) || n < 1 || n > 4096)) throw new NetlinkEncodeError(`invalid ${what}: ${String(n)} (expected 1..4096)`);
}

function checkMac(mac: string | undefined, what: string): void {
  if (mac !== undefined && !/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(mac)) {
    throw new NetlinkEncodeError(`invalid ${what} "${mac}": expected six hex pairs like 02:00:00:00:00:01`);
  }
}

function checkFd(fd: number | undefined, what: string): void {
  if (fd !== undefined && (!Number.isInteger(fd) || fd < 0)) throw new NetlinkEncodeError(`invalid ${what}: ${String(fd)} is not a file descriptor`);
}

/** A link addressed by index (header) or by name (IFLA_IFNAME, or IFLA_ALT_IFNAME when longer than 15 bytes). */
function target(ref: LinkRef): { header: IfInfoMsg; attrs: LinkAttrs } {
  if (typeof ref === 'number') {
    if (!Number.isInteger(ref) || ref <= 0 || ref > 0x7fffffff) throw new NetlinkEncodeError(`invalid ifindex ${ref}`);
    return { header: { ...NO_HEADER, index: ref }, attrs: {} };
  }
  if (utf8Length(ref) > C.IFNAMSIZ - 1) return { header: { ...NO_HEADER }, attrs: { altIfname: validateAltname(ref) } };
  return { header: { ...NO_HEADER }, attrs: { ifname: validateIfname(ref) } };
}

function commonAttrs(o: CommonLinkOptions, parent?: number): LinkAttrs {
  validateIfname(o.name);
  checkMac(o.mac, 'MAC address');
  checkUint(o.mtu, 'MTU');
  checkUint(o.group, 'link group');
  checkUint(o.master, 'master ifindex');
  checkUint(parent, 'parent ifindex');
  checkFd(o.netnsFd, 'network namespace fd');
  const a: LinkAttrs = {};
  if (o.mac !== undefined) a.address = o.mac.toLowerCase();
  if (o.mtu !== undefined) a.mtu = o.mtu;
  if (o.group !== undefined) a.group = o.group;
  if (o.netnsFd !== undefined) a.netNsFd = o.netnsFd;
  if (parent !== undefined) a.link = parent;
  if (o.master !== undefined) a.master = o.master;
  a.ifname = o.name;
  return a;
}

function newLink(o: CommonLinkOptions, attrs: LinkAttrs, linkinfo: LinkInfo): LinkMessage {
  const header = { ...NO_HEADER };
  if (o.up) {
    header.flags = C.IFF_UP;
    header.change = C.IFF_UP;
  }
  return {
    kind: 'link',
    nl: { type: C.RTM_NEWLINK, flags: C.NLM_F_CREATE | C.NLM_F_EXCL, seq: 0, pid: 0 },
    header,
    attrs: { ...attrs, linkinfo },
  };
}

/** RTM_NEWLINK for a veth pair; the peer's struct ifinfomsg and attributes sit in VETH_INFO_PEER. */
export function newVethRequest(o: VethOptions): LinkMessage {
  const p = o.peer;
  if (!p || typeof p !== 'object') throw new NetlinkEncodeError(`veth "${o.name}": the peer needs a name`);
  validateIfname(p.name, 'peer interface name');
  checkMac(p.mac, 'peer MAC address');
  checkUint(p.mtu, 'peer MTU');
  checkUint(p.group, 'peer link group');
  checkFd(p.netnsFd, 'peer network namespace fd');
  checkQueues(p.queues, 'peer queue count');
  checkQueues(o.queues, 'queue count');
  const peer: LinkAttrs = {};
  if (p.mac !== undefined) peer.address = p.mac.toLowerCase();
  if (p.mtu !== undefined) peer.mtu = p.mtu;
  if (p.group !== undefined) peer.group = p.group;
  if (p.queues !== undefined) {
    peer.numTxQueues = p.queues;
    peer.numRxQueues = p.queues;
  }
  if (p.netnsFd !== undefined) peer.netNsFd = p.netnsFd;
  peer.ifname = p.name;
  const attrs = commonAttrs(o);
  if (o.queues !== undefined) {
    attrs.numTxQueues = o.queues;
    attrs.numRxQueues = o.queues;
  }
  return newLink(o, attrs, { kind: 'veth', data: { peer: { header: { ...NO_HEADER }, attrs: peer } } });
}

/** RTM_NEWLINK for a bridge; IFLA_INFO_DATA only when a bridge option is set. */
export function newBridgeRequest(o: BridgeOptions): LinkMessage {
  const data: BridgeInfo = { ...o.data };
  if (o.stp !== undefined) data.stpState = o.stp ? 1 : 0;
  if (o.forwardDelay !== undefined) {
    checkUint(o.forwardDelay, 'forward delay');
    data.forwardDelay = o.forwardDelay;
  }
  if (o.vlanFiltering !== undefined) data.vlanFiltering = o.vlanFiltering ? 1 : 0;
  const info: LinkInfo = { kind: 'bridge' };
  if (Object.keys(data).length) info.data = data;
  return newLink(o, commonAttrs(o), info);
}

/** RTM_NEWLINK for a macvlan on `parent` (IFLA_LINK) in one of the five modes. */
export function newMacvlanRequest(o: MacvlanOptions): LinkMessage {
  const mode = MACVLAN_MODES[o.mode];
  if (mode === undefined || !Object.hasOwn(MACVLAN_MODES, o.mode)) {
    throw new NetlinkEncodeError(`invalid macvlan mode "${String(o.mode)}" (allowed: ${Object.keys(MACVLAN_MODES).join(', ')})`);
  }
  if (o.parent === undefined) throw new NetlinkEncodeError(`macvlan "${o.name}" needs a parent link`);
  const data: MacvlanInfo = { mode };
  if (o.flags !== undefined) {
    checkUint(o.flags, 'macvlan flags', 0xffff);
    data.flags = o.flags;
  }
  return newLink(o, commonAttrs(o, o.parent), { kind: 'macvlan', data });
}

/** RTM_NEWLINK for an ipvlan on `parent`; IFLA_IPVLAN_FLAGS is always sent, as iproute2 does. */
export function newIpvlanRequest(o: IpvlanOptions): LinkMessage {
  const mode = IPVLAN_MODES[o.mode];
  if (mode === undefined || !Object.hasOwn(IPVLAN_MODES, o.mode)) {
    throw new NetlinkEncodeError(`invalid ipvlan mode "${String(o.mode)}" (allowed: ${Object.keys(IPVLAN_MODES).join(', ')})`);
  }
  const flag = o.flag ?? 'bridge';
  if (!Object.hasOwn(IPVLAN_FLAGS, flag)) {
    throw new NetlinkEncodeError(`invalid ipvlan flag "${String(flag)}" (allowed: ${Object.keys(IPVLAN_FLAGS).join(', ')})`);
  }
  if (o.parent === undefined) throw new NetlinkEncodeError(`ipvlan "${o.name}" needs a parent link`);
  const data: IpvlanInfo = { mode, flags: IPVLAN_FLAGS[flag] };
  return newLink(o, commonAttrs(o, o.parent), { kind: 'ipvlan', data });
}

/** RTM_NEWLINK (create) for any LinkSpec. */
export function newLinkRequest(spec: LinkSpec): LinkMessage {
  switch (spec.kind) {
    case 'veth': return newVethRequest(spec as VethOptions);
    case 'bridge': return newBridgeRequest(spec as BridgeOptions);
    case 'macvlan': return newMacvlanRequest(spec as MacvlanOptions);
    case 'ipvlan': return newIpvlanRequest(spec as IpvlanOptions);
    default: {
      const s = spec as CommonLinkOptions & { kind: string; parent?: number; data?: Uint8Array };
      if (typeof s.kind !== 'string' || !/^[a-z0-9_-]{1,31}$/.test(s.kind)) throw new NetlinkEncodeError(`invalid link kind "${String(s.kind)}"`);
      const info: LinkInfo = { kind: s.kind };
      if (s.data !== undefined) info.data = s.data;
      return newLink(s, commonAttrs(s, s.parent), info);
    }
  }
}

/** RTM_NEWLINK (modify) changing what `changes` lists. A rename needs `ref` to be an ifindex. */
export function setLinkRequest(ref: LinkRef, changes: LinkChanges): LinkMessage {
  const t = target(ref);
  if (changes.name !== undefined) {
    if (typeof ref !== 'number') throw new NetlinkEncodeError('renaming a link needs its ifindex, not its name');
    validateIfname(changes.name, 'new interface name');
  }
  checkUint(changes.mtu, 'MTU');
  checkUint(changes.master, 'master ifindex');
  checkUint(changes.group, 'link group');
  checkMac(changes.mac, 'MAC address');
  checkFd(changes.netnsFd, 'network namespace fd');
  // With a name (no ifindex) the name attribute is the lookup key; a rename needs an ifindex (above).
  const attrs: LinkAttrs = { ...t.attrs };
  if (changes.netnsFd !== undefined) attrs.netNsFd = changes.netnsFd;
  if (changes.mtu !== undefined) attrs.mtu = changes.mtu;
  if (changes.group !== undefined) attrs.group = changes.group;
  if (changes.master !== undefined) attrs.master = changes.master;
  if (changes.mac !== undefined) attrs.address = changes.mac.toLowerCase();
  if (changes.name !== undefined) attrs.ifname = changes.name;
  if (changes.up !== undefined) {
    t.header.flags = changes.up ? C.IFF_UP : 0;
    t.header.change = C.IFF_UP;
  }
  return { kind: 'link', nl: { type: C.RTM_NEWLINK, flags: 0, seq: 0, pid: 0 }, header: t.header, attrs };
}

/** RTM_DELLINK for one link. */
export function delLinkRequest(ref: LinkRef): LinkMessage {
  const t = target(ref);
  return { kind: 'link', nl: { type: C.RTM_DELLINK, flags: 0, seq: 0, pid: 0 }, header: t.header, attrs: t.attrs };
}

/** RTM_DELLINK with ifindex 0 and IFLA_GROUP: the kernel deletes every link of the group at once. */
export function delLinkGroupRequest(group: number): LinkMessage {
  checkUint(group, 'link group');
  if (group === 0) throw new NetlinkEncodeError('refusing to delete link group 0: it is the default group of every link');
  return { kind: 'link', nl: { type: C.RTM_DELLINK, flags: 0, seq: 0, pid: 0 }, header: { ...NO_HEADER }, attrs: { group } };
}

/** RTM_GETLINK for one link. Statistics are skipped unless asked for. */
export function getLinkRequest(ref: LinkRef, opts: { stats?: boolean } = {}): LinkMessage {
  const t = target(ref);
  return {
    kind: 'link', nl: { type: C.RTM_GETLINK, flags: 0, seq: 0, pid: 0 }, header: t.header,
    attrs: { extMask: C.RTEXT_FILTER_VF | (opts.stats ? 0 : C.RTEXT_FILTER_SKIP_STATS), ...t.attrs },
  };
}

/** RTM_GETLINK dump, optionally filtered by the kernel to one master or one kind (strict checking). */
export function dumpLinksRequest(opts: { master?: number; kind?: string; stats?: boolean } = {}): LinkMessage {
  const attrs: LinkAttrs = { extMask: C.RTEXT_FILTER_VF | (opts.stats ? 0 : C.RTEXT_FILTER_SKIP_STATS) };
  if (opts.master !== undefined) {
    checkUint(opts.master, 'master ifindex');
    attrs.master = opts.master;
  }
  if (opts.kind !== undefined) attrs.linkinfo = { kind: opts.kind };
  return { kind: 'link', nl: { type: C.RTM_GETLINK, flags: 0, seq: 0, pid: 0 }, header: { ...NO_HEADER }, attrs };
}

/** RTM_NEWLINKPROP / RTM_DELLINKPROP adding or removing alternative names. */
export function altnameRequest(op: 'add' | 'delete', ref: LinkRef, names: readonly string[]): LinkMessage {
  if (!names.length) throw new NetlinkEncodeError('no alternative name given');
  names.forEach(validateAltname);
  const t = target(ref);
  return {
    kind: 'link',
    nl: op === 'add'
      ? { type: C.RTM_NEWLINKPROP, flags: C.NLM_F_CREATE | C.NLM_F_EXCL | C.NLM_F_APPEND, seq: 0, pid: 0 }
      : { type: C.RTM_DELLINKPROP, flags: 0, seq: 0, pid: 0 },
    header: t.header,
    attrs: { ...t.attrs, propList: { altIfnames: [...names] } },
  };
}

// ---------------------------------------------------------------------------------------------
// Addresses

/** Parses "192.0.2.1/24" or "2001:db8::1/64" (a bare address gets /32 or /128); throws naming `what`. */
export function parseCidr(text: string, what = 'address'): Cidr {
  if (typeof text !== 'string') throw new NetlinkEncodeError(`invalid ${what}: expected a string like 192.0.2.1/24`);
  const c = parseCidrText(text);
  if (typeof c === 'object') return c;
  const why = {
    syntax: 'expected ADDRESS/PREFIXLEN like 192.0.2.1/24 or 2001:db8::1/64',
    prefix4: 'an IPv4 prefix length is 0..32',
    prefix6: 'an IPv6 prefix length is 0..128',
    address: `"${text.split('/')[0]}" is not an IPv4 or IPv6 address`,
  }[c];
  throw new NetlinkEncodeError(`invalid ${what} "${text}": ${why}`);
}

export interface AddressOptions {
  /** IPv4 broadcast: an address, or true for the prefix's last address (iproute2's "broadcast +"). */
  broadcast?: string | true;
  /** Point-to-point peer (IFA_ADDRESS); then the address is IFA_LOCAL only. */
  peer?: string;
  label?: string;
  /** RT_SCOPE_* (default universe). */
  scope?: number;
  /** IPv6: skip duplicate address detection (IFA_F_NODAD). */
  nodad?: boolean;
  /** Do not add the prefix route (IFA_F_NOPREFIXROUTE). */
  noPrefixRoute?: boolean;
  /** Lifetimes in seconds (IFA_CACHEINFO); default forever. */
  validLft?: number;
  preferredLft?: number;
}

/** RTM_NEWADDR (op 'add') or RTM_DELADDR (op 'delete') on ifindex. */
export function addrRequest(op: 'add' | 'replace' | 'delete', index: number, cidr: string, opts: AddressOptions = {}): AddrMessage {
  checkUint(index, 'ifindex');
  const c = parseCidr(cidr);
  let flags = 0;
  if (opts.nodad) flags |= C.IFA_F_NODAD;
  if (opts.noPrefixRoute) flags |= C.IFA_F_NOPREFIXROUTE;
  checkUint(opts.scope, 'address scope', 255);
  const attrs: AddrAttrs = { local: c.address };
  if (opts.peer !== undefined) {
    const p = parseCidr(opts.peer, 'peer address');
    if (p.family !== c.family) throw new NetlinkEncodeError(`peer ${opts.peer} is not of the same family as ${cidr}`);
    attrs.address = p.address;
  } else {
    attrs.address = c.address;
  }
  if (opts.broadcast !== undefined) {
    if (c.family !== 4) throw new NetlinkEncodeError(`a broadcast address applies to IPv4 only, not ${cidr}`);
    attrs.broadcast = opts.broadcast === true
      ? new Address4(`${c.address}/${c.prefixlen}`).endAddress().correctForm()
      : parseCidr(opts.broadcast, 'broadcast address').address;
  }
  if (opts.label !== undefined) {
    // "ve-web:dhcp" style labels: like an interface name, but ':' is allowed.
    if (!/^[^\s/\0]{1,15}$/.test(opts.label) || utf8Length(opts.label) > C.IFNAMSIZ - 1) {
      throw new NetlinkEncodeError(`invalid address label "${opts.label}": 1 to ${C.IFNAMSIZ - 1} bytes without whitespace or "/"`);
    }
    attrs.label = opts.label;
  }
  if (flags > 0xff) attrs.flags = flags;
  if (opts.validLft !== undefined || opts.preferredLft !== undefined) {
    const valid = opts.validLft ?? C.INFINITY_LIFE_TIME;
    const prefered = opts.preferredLft ?? valid;
    checkUint(valid, 'valid lifetime');
    checkUint(prefered, 'preferred lifetime');
    attrs.cacheinfo = { prefered, valid, cstamp: 0, tstamp: 0 };
  }
  const nlFlags = op === 'add' ? C.NLM_F_CREATE | C.NLM_F_EXCL : op === 'replace' ? C.NLM_F_CREATE | C.NLM_F_REPLACE : 0;
  return {
    kind: 'addr',
    nl: { type: op === 'delete' ? C.RTM_DELADDR : C.RTM_NEWADDR, flags: nlFlags, seq: 0, pid: 0 },
    header: { family: c.family === 4 ? C.AF_INET : C.AF_INET6, prefixlen: c.prefixlen, flags: flags & 0xff, scope: opts.scope ?? C.RT_SCOPE_UNIVERSE, index },
    attrs,
  };
}

/** RTM_GETADDR dump, optionally one family and (filtered by the kernel) one ifindex. */
export function dumpAddrsRequest(opts: { family?: 4 | 6; index?: number } = {}): AddrMessage {
  checkUint(opts.index, 'ifindex');
  return {
    kind: 'addr', nl: { type: C.RTM_GETADDR, flags: 0, seq: 0, pid: 0 },
    header: { family: familyNumber(opts.family), prefixlen: 0, flags: 0, scope: 0, index: opts.index ?? 0 },
    attrs: {},
  };
}

function familyNumber(f: 4 | 6 | undefined): number {
  if (f === undefined) return C.AF_UNSPEC;
  if (f === 4) return C.AF_INET;
  if (f === 6) return C.AF_INET6;
  throw new NetlinkEncodeError(`invalid address family ${String(f)} (expected 4 or 6)`);
}

// ---------------------------------------------------------------------------------------------
// Routes

export type RouteType = 'unicast' | 'blackhole' | 'unreachable' | 'prohibit' | 'local' | 'throw';
const ROUTE_TYPES: Readonly<Record<RouteType, number>> = {
  unicast: C.RTN_UNICAST, blackhole: C.RTN_BLACKHOLE, unreachable: C.RTN_UNREACHABLE,
  prohibit: C.RTN_PROHIBIT, local: C.RTN_LOCAL, throw: C.RTN_THROW,
};

export interface RouteSpec {
  /** "default" or a prefix like "198.51.100.0/24" / "2001:db8:1::/48". */
  dst: string;
  /** Address family when `dst` is "default" and there is no gateway to tell (default 4). */
  family?: 4 | 6;
  gateway?: string;
  /** Output device (ifindex). */
  oif?: number;
  /** Route metric (RTA_PRIORITY). */
  metric?: number;
  /** Routing table (default main). */
  table?: number;
  /** RTPROT_* (default RTPROT_BOOT, as iproute2). */
  protocol?: number;
  /** RT_SCOPE_* (default: universe with a gateway, link without). */
  scope?: number;
  type?: RouteType;
  /** Preferred source address (RTA_PREFSRC). */
  src?: string;
  /** Gateway reachable on the link even if no prefix covers it (RTNH_F_ONLINK). */
  onlink?: boolean;
  /** Path MTU (RTA_METRICS RTAX_MTU). */
  mtu?: number;
}

/** RTM_NEWROUTE ('add': create, fails if it exists; 'replace': create or replace) or RTM_DELROUTE. */
export function routeRequest(op: 'add' | 'replace' | 'delete', spec: RouteSpec): RouteMessage {
  let family: 4 | 6;
  let dst: Cidr | undefined;
  if (spec.dst === 'default') {
    family = spec.family ?? (spec.gateway !== undefined ? parseCidr(spec.gateway, 'gateway').family : 4);
  } else {
    dst = parseCidr(spec.dst, 'route destination');
    family = dst.family;
    if (spec.family !== undefined && spec.family !== family) throw new NetlinkEncodeError(`route destination ${spec.dst} is not IPv${spec.family}`);
  }
  const attrs: RouteAttrs = {};
  // iproute2 sends :: as the IPv6 default destination and nothing for IPv4's 0.0.0.0/0.
  if (dst) attrs.dst = networkAddress(dst);
  else if (family === 6) attrs.dst = '::';
  if (spec.gateway !== undefined) {
    const gw = parseCidr(spec.gateway, 'gateway');
    if (gw.family !== family) throw new NetlinkEncodeError(`gateway ${spec.gateway} is not IPv${family} like ${spec.dst}`);
    attrs.gateway = gw.address;
  }
  checkUint(spec.metric, 'route metric');
  checkUint(spec.table, 'routing table');
  checkUint(spec.oif, 'output ifindex');
  checkUint(spec.protocol, 'route protocol', 255);
  checkUint(spec.scope, 'route scope', 255);
  checkUint(spec.mtu, 'route MTU');
  if (spec.metric !== undefined) attrs.priority = spec.metric;
  if (spec.src !== undefined) {
    const s = parseCidr(spec.src, 'preferred source');
    if (s.family !== family) throw new NetlinkEncodeError(`source ${spec.src} is not IPv${family}`);
    attrs.prefsrc = s.address;
  }
  if (spec.mtu !== undefined) attrs.metrics = { mtu: spec.mtu };
  const table = spec.table ?? C.RT_TABLE_MAIN;
  if (table > 255) attrs.table = table;
  if (spec.oif !== undefined) attrs.oif = spec.oif;
  if (spec.type !== undefined && !Object.hasOwn(ROUTE_TYPES, spec.type)) {
    throw new NetlinkEncodeError(`invalid route type "${String(spec.type)}" (allowed: ${Object.keys(ROUTE_TYPES).join(', ')})`);
  }
  const type = ROUTE_TYPES[spec.type ?? 'unicast'];
  const del = op === 'delete';
  const scope = spec.scope ?? (del ? C.RT_SCOPE_NOWHERE
    : type === C.RTN_LOCAL ? C.RT_SCOPE_HOST
    : type === C.RTN_UNICAST && spec.gateway === undefined ? C.RT_SCOPE_LINK : C.RT_SCOPE_UNIVERSE);
  return {
    kind: 'route',
    nl: {
      type: del ? C.RTM_DELROUTE : C.RTM_NEWROUTE,
      flags: op === 'add' ? C.NLM_F_CREATE | C.NLM_F_EXCL : op === 'replace' ? C.NLM_F_CREATE | C.NLM_F_REPLACE : 0,
      seq: 0, pid: 0,
    },
    header: {
      family: family === 4 ? C.AF_INET : C.AF_INET6,
      dstLen: dst?.prefixlen ?? 0, srcLen: 0, tos: 0,
      table: table > 255 ? C.RT_TABLE_UNSPEC : table,
      protocol: del ? (spec.protocol ?? C.RTPROT_UNSPEC) : (spec.protocol ?? C.RTPROT_BOOT),
      scope,
      type: del && spec.type === undefined ? C.RTN_UNSPEC : type,
      flags: spec.onlink ? C.RTNH_F_ONLINK : 0,
    },
    attrs,
  };
}

/** The network address of a prefix ("198.51.100.7/24" → "198.51.100.0"), as the kernel wants it. */
function networkAddress(c: Cidr): string {
  if (c.family === 4) return new Address4(`${c.address}/${c.prefixlen}`).startAddress().correctForm();
  return new Address6(`${c.address}/${c.prefixlen}`).startAddress().correctForm();
}

/** RTM_GETROUTE dump of one family (default both) in one table (filtered by the kernel). */
export function dumpRoutesRequest(opts: { family?: 4 | 6; table?: number } = {}): RouteMessage {
  checkUint(opts.table, 'routing table');
  const attrs: RouteAttrs = {};
  if (opts.table !== undefined) attrs.table = opts.table;
  return {
    kind: 'route', nl: { type: C.RTM_GETROUTE, flags: 0, seq: 0, pid: 0 },
    header: { family: familyNumber(opts.family), dstLen: 0, srcLen: 0, tos: 0, table: 0, protocol: 0, scope: 0, type: 0, flags: 0 },
    attrs,
  };
}

/**
 * RTM_DELNEIGH of `address`'s entry on ifindex (its MAC as last learnt). No codec of its own: the
 * message is small and only ever sent — struct ndmsg { u8 family; u8 pad1; u16 pad2; s32 ifindex;
 * u16 state; u8 flags; u8 type; } and NDA_DST.
 */
export function delNeighRequest(index: number, address: string): RawMessage {
  checkUint(index, 'ifindex');
  const dst = parseIp(address, 'neighbour address');
  const payload = new Uint8Array(12 + 4 + dst.length);
  const v = new DataView(payload.buffer);
  payload[0] = dst.length === 4 ? C.AF_INET : C.AF_INET6;
  v.setInt32(4, index, true);
  v.setUint16(12, 4 + dst.length, true);
  v.setUint16(14, C.NDA_DST, true);
  payload.set(dst, 16);
  return { kind: 'raw', nl: { type: C.RTM_DELNEIGH, flags: 0, seq: 0, pid: 0 }, payload };
}
