// Typed, camelCase views of decoded rtnetlink messages: a Link, an Address, a Route. They carry the
// fields callers branch on; `message` keeps everything the kernel said for the rest.
import * as C from './constants.js';
import type { AddrMessage, LinkMessage, RouteMessage } from './codec.js';
import type { BridgeInfo, IpvlanInfo, MacvlanInfo } from './policy.js';
import { IPVLAN_FLAGS, IPVLAN_MODES, MACVLAN_MODES, type IpvlanFlag, type IpvlanMode, type MacvlanMode } from './requests.js';

export type OperState = 'unknown' | 'notpresent' | 'down' | 'lowerlayerdown' | 'testing' | 'dormant' | 'up';
const OPERSTATES: readonly OperState[] = ['unknown', 'notpresent', 'down', 'lowerlayerdown', 'testing', 'dormant', 'up'];

export interface Link {
  index: number;
  name: string;
  /** IFLA_INFO_KIND: 'veth', 'bridge', 'macvlan', 'ipvlan', …; undefined for physical devices and lo. */
  kind: string | undefined;
  /** ARPHRD_* */
  type: number;
  /** IFF_* */
  flags: number;
  /** Administratively up (IFF_UP). */
  up: boolean;
  /** Carrier present (IFF_LOWER_UP). */
  lowerUp: boolean;
  operstate: OperState;
  mtu: number | undefined;
  /** Link-layer address, "aa:bb:cc:dd:ee:ff". */
  mac: string | undefined;
  /** ifindex of the master (bridge) this link is enslaved to. */
  master: number | undefined;
  group: number;
  altnames: string[];
  /** IFLA_LINK: a veth's peer or a macvlan/ipvlan's parent ifindex (in `linkNetnsid`'s namespace when set). */
  parent: number | undefined;
  /** The peer/parent lives in another namespace with this id (relative to ours). */
  linkNetnsid: number | undefined;
  /** Set for kind 'macvlan'. */
  macvlan?: { mode: MacvlanMode | number; flags: number };
  /** Set for kind 'ipvlan'. */
  ipvlan?: { mode: IpvlanMode | number; flag: IpvlanFlag | number };
  /** Set for kind 'bridge'. */
  bridge?: BridgeInfo;
  /** The whole decoded message. */
  message: LinkMessage;
}

function reverse<K extends string>(table: Readonly<Record<K, number>>, value: number): K | number {
  for (const [k, v] of Object.entries(table) as Array<[K, number]>) if (v === value) return k;
  return value;
}

/** The Link view of an RTM_NEWLINK / RTM_DELLINK message. */
export function toLink(m: LinkMessage): Link {
  const a = m.attrs;
  const info = a.linkinfo;
  const link: Link = {
    index: m.header.index,
    name: a.ifname ?? '',
    kind: info?.kind,
    type: m.header.type,
    flags: m.header.flags,
    up: (m.header.flags & C.IFF_UP) !== 0,
    lowerUp: (m.header.flags & C.IFF_LOWER_UP) !== 0,
    operstate: OPERSTATES[a.operstate ?? 0] ?? 'unknown',
    mtu: a.mtu,
    mac: a.address,
    master: a.master || undefined,
    group: a.group ?? 0,
    altnames: a.propList?.altIfnames ?? [],
    parent: a.link || undefined,
    linkNetnsid: a.linkNetnsid,
    message: m,
  };
  const data = info?.data;
  if (data && !(data instanceof Uint8Array)) {
    if (info.kind === 'macvlan' || info.kind === 'macvtap') {
      const d = data as MacvlanInfo;
      link.macvlan = { mode: reverse(MACVLAN_MODES, d.mode ?? 0), flags: d.flags ?? 0 };
    } else if (info.kind === 'ipvlan' || info.kind === 'ipvtap') {
      const d = data as IpvlanInfo;
      link.ipvlan = { mode: reverse(IPVLAN_MODES, d.mode ?? 0), flag: reverse(IPVLAN_FLAGS, d.flags ?? 0) };
    } else if (info.kind === 'bridge') {
      link.bridge = data as BridgeInfo;
    }
  }
  return link;
}

export interface Address {
  family: 4 | 6;
  /** ifindex of the link it is on. */
  index: number;
  /** The local address (IFA_LOCAL, else IFA_ADDRESS). */
  address: string;
  prefixlen: number;
  /** "address/prefixlen" */
  cidr: string;
  /** The point-to-point peer, when it differs from the local address. */
  peer: string | undefined;
  broadcast: string | undefined;
  label: string | undefined;
  /** RT_SCOPE_* */
  scope: number;
  /** IFA_F_* (all 32 bits) */
  flags: number;
  /** Seconds; 0xffffffff = forever. */
  validLft: number | undefined;
  preferredLft: number | undefined;
  message: AddrMessage;
}

/** The Address view of an RTM_NEWADDR / RTM_DELADDR message. */
export function toAddress(m: AddrMessage): Address {
  const a = m.attrs;
  const local = a.local ?? a.address ?? '';
  return {
    family: m.header.family === C.AF_INET6 ? 6 : 4,
    index: m.header.index,
    address: local,
    prefixlen: m.header.prefixlen,
    cidr: `${local}/${m.header.prefixlen}`,
    peer: a.local !== undefined && a.address !== undefined && a.address !== a.local ? a.address : undefined,
    broadcast: a.broadcast,
    label: a.label,
    scope: m.header.scope,
    flags: a.flags ?? m.header.flags,
    validLft: a.cacheinfo?.valid,
    preferredLft: a.cacheinfo?.prefered,
    message: m,
  };
}

export interface Route {
  family: 4 | 6;
  /** "default" or "prefix/len". */
  dst: string;
  gateway: string | undefined;
  /** Output ifindex. */
  oif: number | undefined;
  /** Metric (RTA_PRIORITY). */
  metric: number | undefined;
  prefsrc: string | undefined;
  table: number;
  /** RTPROT_* */
  protocol: number;
  /** RT_SCOPE_* */
  scope: number;
  /** RTN_* */
  type: number;
  message: RouteMessage;
}

/** The Route view of an RTM_NEWROUTE / RTM_DELROUTE message. */
export function toRoute(m: RouteMessage): Route {
  const a = m.attrs;
  return {
    family: m.header.family === C.AF_INET6 ? 6 : 4,
    dst: m.header.dstLen === 0 ? 'default' : `${a.dst ?? ''}/${m.header.dstLen}`,
    gateway: a.gateway,
    oif: a.oif,
    metric: a.priority,
    prefsrc: a.prefsrc,
    table: a.table ?? m.header.table,
    protocol: m.header.protocol,
    scope: m.header.scope,
    type: m.header.type,
    message: m,
  };
}
