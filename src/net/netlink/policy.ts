// What rtnetlink messages contain, declared as tables (after systemd's netlink-types-rtnl.c and
// pyroute2's nla_map): the fixed C structs at the head of each message, and for every attribute set
// a table keyed by the kernel's attribute number giving the key it decodes to and its type.
// IFLA_INFO_DATA is a union chosen by the sibling IFLA_INFO_KIND string. One generic walker in
// codec.ts encodes and decodes them all; attributes not listed pass through as raw bytes.
//
// Sources: <linux/rtnetlink.h> (ifinfomsg, ifaddrmsg, rtmsg, RTA_*), <linux/if_link.h> (IFLA_*,
// IFLA_INFO_*, IFLA_BR_*, IFLA_MACVLAN_*, IFLA_IPVLAN_*), <linux/veth.h>, <linux/if_addr.h> (IFA_*),
// <linux/netlink.h> (NLMSGERR_ATTR_*). Types follow the kernel's own policies (rtnetlink.c
// ifla_policy, veth.c, bridge br_netlink.c, macvlan.c, ipvlan_main.c, devinet.c, fib_frontend.c).
import * as C from './constants.js';

// ---------------------------------------------------------------------------------------------
// Spec types

/** Scalar attribute payloads. Host byte order except be16/be32 (network order per uapi). */
export type ScalarType =
  | 'u8' | 'u16' | 'u32' | 's32' | 'u64' | 'be16' | 'be32'
  /** NUL-terminated UTF-8; `maxLen` bounds its byte length (IFNAMSIZ - 1 for interface names). */
  | 'string'
  /** Link-layer address of any length, as lower-case "aa:bb:cc:dd:ee:ff". */
  | 'lladdr'
  | 'ipv4' | 'ipv6'
  /** IPv4 or IPv6, told apart by length (4 or 16 bytes) / by the text. */
  | 'ip'
  /** Present-or-absent (zero-length payload); decodes to `true`. */
  | 'flag'
  | 'bytes';

export type StructFieldType = 'u8' | 'u16' | 'u32' | 's32' | 'u64' | 'pad8' | 'pad16';

/** A fixed C struct: fields in wire order. Padding fields are written as zeros and not decoded. */
export interface StructSpec<T> {
  readonly name: string;
  readonly fields: ReadonlyArray<readonly [key: string, type: StructFieldType]>;
  readonly size: number;
  /** Present only for typing. */
  readonly _type?: T;
}

interface SpecBase<K extends string> {
  /** The property this attribute decodes to. */
  readonly key: K;
  /** nla_type flag bits (NLA_F_NESTED) to set when encoding; ignored when decoding. */
  readonly nlaFlags?: number;
}

export interface ScalarSpec<K extends string = string> extends SpecBase<K> {
  readonly type: ScalarType;
  /** The attribute may repeat; decodes to an array in wire order. */
  readonly multi?: boolean;
  /** Largest byte length of a string (without its NUL). */
  readonly maxLen?: number;
  /** Strings: send without the terminating NUL (the kernel accepts both; iproute2 sends IFLA_INFO_KIND so). */
  readonly noNul?: boolean;
}

export interface StructAttrSpec<K extends string = string> extends SpecBase<K> {
  readonly type: 'struct';
  readonly struct: StructSpec<object>;
}

export interface NestedSpec<K extends string = string> extends SpecBase<K> {
  readonly type: 'nested';
  /** Lazy, so tables can refer to each other (a veth peer nest contains link attributes). */
  readonly of: () => AttrTable<object>;
  /** A struct that precedes the attributes inside the nest (VETH_INFO_PEER starts with ifinfomsg);
   *  the value is then `{ header, attrs }`. */
  readonly header?: StructSpec<object>;
  readonly multi?: boolean;
}

export interface UnionSpec<K extends string = string> extends SpecBase<K> {
  readonly type: 'union';
  /** The sibling key whose (string) value selects the member table. */
  readonly on: K;
  /** Member tables by selector value; any other selector leaves the payload raw (Uint8Array). */
  readonly by: Readonly<Record<string, () => AttrTable<object>>>;
}

export type AttrSpec<K extends string = string> = ScalarSpec<K> | StructAttrSpec<K> | NestedSpec<K> | UnionSpec<K>;

/** An attribute set: specs by attribute number and by key. */
export interface AttrTable<T> {
  readonly name: string;
  readonly byType: ReadonlyMap<number, AttrSpec>;
  readonly byKey: ReadonlyMap<string, { readonly nla: number; readonly spec: AttrSpec }>;
  /** Present only for typing. */
  readonly _type?: T;
}

/** An attribute no table describes, kept verbatim (type includes its NLA_F_* bits). */
export interface RawAttr {
  type: number;
  data: Uint8Array;
}

/** Every decoded attribute set can carry the attributes its table does not know. */
export interface WithUnknown {
  unknownAttrs?: RawAttr[];
}

type KeyOf<T> = Exclude<Extract<keyof T, string>, 'unknownAttrs'>;

/** Declares an attribute set. Keys must be properties of T, so the table and the type agree. */
export function attrs<T extends WithUnknown>(name: string, spec: { readonly [nla: number]: AttrSpec<KeyOf<T>> }): AttrTable<T> {
  const byType = new Map<number, AttrSpec>();
  const byKey = new Map<string, { nla: number; spec: AttrSpec }>();
  for (const [k, s] of Object.entries(spec)) {
    const nla = Number(k);
    if (!Number.isInteger(nla) || nla <= 0 || nla > C.NLA_TYPE_MASK) throw new Error(`${name}: bad attribute number ${k}`);
    if (byKey.has(s.key)) throw new Error(`${name}: key ${s.key} declared twice`);
    byType.set(nla, s);
    byKey.set(s.key, { nla, spec: s });
  }
  return { name, byType, byKey };
}

const FIELD_SIZE: Record<StructFieldType, number> = { u8: 1, u16: 2, u32: 4, s32: 4, u64: 8, pad8: 1, pad16: 2 };

/** Declares a fixed struct. */
export function struct<T extends object>(name: string, fields: ReadonlyArray<readonly [Extract<keyof T, string> | `_${string}`, StructFieldType]>): StructSpec<T> {
  return { name, fields, size: fields.reduce((n, [, t]) => n + FIELD_SIZE[t], 0) };
}

// ---------------------------------------------------------------------------------------------
// Fixed headers

/** struct ifinfomsg (<linux/rtnetlink.h>): u8 family, u8 pad, u16 type, s32 index, u32 flags, u32 change. */
export interface IfInfoMsg {
  family: number;
  /** ARPHRD_* */
  type: number;
  index: number;
  /** IFF_* */
  flags: number;
  /** Which IFF_* bits a request changes. */
  change: number;
}
export const ifinfomsg = struct<IfInfoMsg>('ifinfomsg', [
  ['family', 'u8'], ['_pad', 'pad8'], ['type', 'u16'], ['index', 's32'], ['flags', 'u32'], ['change', 'u32'],
]);

/** struct ifaddrmsg (<linux/if_addr.h>): u8 family, u8 prefixlen, u8 flags, u8 scope, u32 index. */
export interface IfAddrMsg {
  family: number;
  prefixlen: number;
  /** IFA_F_* (low 8 bits; IFA_FLAGS carries all 32) */
  flags: number;
  scope: number;
  index: number;
}
export const ifaddrmsg = struct<IfAddrMsg>('ifaddrmsg', [
  ['family', 'u8'], ['prefixlen', 'u8'], ['flags', 'u8'], ['scope', 'u8'], ['index', 'u32'],
]);

/** struct rtmsg (<linux/rtnetlink.h>). */
export interface RtMsg {
  family: number;
  dstLen: number;
  srcLen: number;
  tos: number;
  /** RT_TABLE_* (RTA_TABLE carries tables above 255) */
  table: number;
  /** RTPROT_* */
  protocol: number;
  /** RT_SCOPE_* */
  scope: number;
  /** RTN_* */
  type: number;
  /** RTM_F_* */
  flags: number;
}
export const rtmsg = struct<RtMsg>('rtmsg', [
  ['family', 'u8'], ['dstLen', 'u8'], ['srcLen', 'u8'], ['tos', 'u8'], ['table', 'u8'], ['protocol', 'u8'],
  ['scope', 'u8'], ['type', 'u8'], ['flags', 'u32'],
]);

/** struct ifa_cacheinfo (<linux/if_addr.h>): lifetimes in seconds, stamps in 1/100 s. */
export interface IfaCacheinfo {
  prefered: number;
  valid: number;
  cstamp: number;
  tstamp: number;
}
export const ifaCacheinfo = struct<IfaCacheinfo>('ifa_cacheinfo', [
  ['prefered', 'u32'], ['valid', 'u32'], ['cstamp', 'u32'], ['tstamp', 'u32'],
]);

/** The head of struct rtnl_link_stats64 (<linux/if_link.h>); later fields are ignored. */
export interface LinkStats64 {
  rxPackets: bigint;
  txPackets: bigint;
  rxBytes: bigint;
  txBytes: bigint;
  rxErrors: bigint;
  txErrors: bigint;
  rxDropped: bigint;
  txDropped: bigint;
  multicast: bigint;
  collisions: bigint;
}
export const linkStats64 = struct<LinkStats64>('rtnl_link_stats64', [
  ['rxPackets', 'u64'], ['txPackets', 'u64'], ['rxBytes', 'u64'], ['txBytes', 'u64'], ['rxErrors', 'u64'],
  ['txErrors', 'u64'], ['rxDropped', 'u64'], ['txDropped', 'u64'], ['multicast', 'u64'], ['collisions', 'u64'],
]);

// ---------------------------------------------------------------------------------------------
// Link attributes (RTM_NEWLINK / RTM_DELLINK / RTM_GETLINK / RTM_SETLINK / RTM_*LINKPROP)

export interface LinkAttrs extends WithUnknown {
  address?: string;
  broadcast?: string;
  ifname?: string;
  mtu?: number;
  /** IFLA_LINK: the lower device (macvlan parent) or, for veth, the peer's ifindex. */
  link?: number;
  qdisc?: string;
  master?: number;
  txqlen?: number;
  operstate?: number;
  linkmode?: number;
  linkinfo?: LinkInfo;
  netNsPid?: number;
  ifalias?: string;
  stats64?: LinkStats64;
  group?: number;
  /** IFLA_NET_NS_FD: a netns fd of the sending process (move or create the link there). */
  netNsFd?: number;
  /** IFLA_EXT_MASK: RTEXT_FILTER_* for GETLINK. */
  extMask?: number;
  promiscuity?: number;
  numTxQueues?: number;
  numRxQueues?: number;
  carrier?: number;
  carrierChanges?: number;
  linkNetnsid?: number;
  protoDown?: number;
  gsoMaxSegs?: number;
  gsoMaxSize?: number;
  event?: number;
  newNetnsid?: number;
  targetNetnsid?: number;
  carrierUpCount?: number;
  carrierDownCount?: number;
  newIfindex?: number;
  minMtu?: number;
  maxMtu?: number;
  /** IFLA_PROP_LIST: the alternative names (RTM_NEWLINKPROP / RTM_DELLINKPROP, and dumps). */
  propList?: PropList;
  /** IFLA_ALT_IFNAME at the top level: look a link up by an alternative name. */
  altIfname?: string;
  permAddress?: string;
  parentDevName?: string;
  parentDevBusName?: string;
  groMaxSize?: number;
  tsoMaxSize?: number;
  tsoMaxSegs?: number;
  allmulti?: number;
}

export interface PropList extends WithUnknown {
  altIfnames?: string[];
}

/** IFLA_LINKINFO. `data` is decoded by `kind`; unknown kinds keep it raw. */
export interface LinkInfo extends WithUnknown {
  kind?: string;
  data?: VethInfo | BridgeInfo | MacvlanInfo | IpvlanInfo | Uint8Array;
  xstats?: Uint8Array;
  slaveKind?: string;
  slaveData?: Uint8Array;
}

/** A struct-headed nest: VETH_INFO_PEER is a struct ifinfomsg followed by link attributes. */
export interface HeadedNest<H, A> {
  header: H;
  attrs: A;
}

export interface VethInfo extends WithUnknown {
  peer?: HeadedNest<IfInfoMsg, LinkAttrs>;
}

export interface BridgeInfo extends WithUnknown {
  forwardDelay?: number;
  helloTime?: number;
  maxAge?: number;
  ageingTime?: number;
  stpState?: number;
  priority?: number;
  vlanFiltering?: number;
  /** ETH_P_8021Q (0x8100) or ETH_P_8021AD (0x88a8), network order on the wire. */
  vlanProtocol?: number;
  groupFwdMask?: number;
  rootId?: Uint8Array;
  bridgeId?: Uint8Array;
  rootPort?: number;
  rootPathCost?: number;
  topologyChange?: number;
  topologyChangeDetected?: number;
  helloTimer?: bigint;
  tcnTimer?: bigint;
  topologyChangeTimer?: bigint;
  gcTimer?: bigint;
  groupAddr?: string;
  fdbFlush?: true;
  mcastRouter?: number;
  mcastSnooping?: number;
  mcastQuerier?: number;
  nfCallIptables?: number;
  nfCallIp6tables?: number;
  vlanDefaultPvid?: number;
  vlanStatsEnabled?: number;
  mcastStatsEnabled?: number;
  mcastIgmpVersion?: number;
  mcastMldVersion?: number;
  multiBoolopt?: Uint8Array;
}

export interface MacvlanInfo extends WithUnknown {
  /** MACVLAN_MODE_* */
  mode?: number;
  /** MACVLAN_FLAG_* */
  flags?: number;
  /** MACVLAN_MACADDR_* (source mode's address list operation) */
  macaddrMode?: number;
  macaddr?: string;
  macaddrData?: MacvlanMacaddrData;
  macaddrCount?: number;
  bcQueueLen?: number;
  bcQueueLenUsed?: number;
  bcCutoff?: number;
}

export interface MacvlanMacaddrData extends WithUnknown {
  macaddrs?: string[];
}

export interface IpvlanInfo extends WithUnknown {
  /** IPVLAN_MODE_* (u16) */
  mode?: number;
  /** IPVLAN_F_* (u16) */
  flags?: number;
}

/** IFLA_PROP_LIST: repeated IFLA_ALT_IFNAME. */
export const propList: AttrTable<PropList> = attrs<PropList>('IFLA_PROP_LIST', {
  [C.IFLA_ALT_IFNAME]: { key: 'altIfnames', type: 'string', multi: true, maxLen: C.ALTIFNAMSIZ - 1 },
});

/** IFLA_INFO_DATA of kind veth (drivers/net/veth.c). */
export const vethInfo: AttrTable<VethInfo> = attrs<VethInfo>('veth', {
  [C.VETH_INFO_PEER]: { key: 'peer', type: 'nested', header: ifinfomsg, of: () => link },
});

/** IFLA_INFO_DATA of kind bridge (net/bridge/br_netlink.c); the many other IFLA_BR_* stay raw. */
export const bridgeInfo: AttrTable<BridgeInfo> = attrs<BridgeInfo>('bridge', {
  [C.IFLA_BR_FORWARD_DELAY]: { key: 'forwardDelay', type: 'u32' },
  [C.IFLA_BR_HELLO_TIME]: { key: 'helloTime', type: 'u32' },
  [C.IFLA_BR_MAX_AGE]: { key: 'maxAge', type: 'u32' },
  [C.IFLA_BR_AGEING_TIME]: { key: 'ageingTime', type: 'u32' },
  [C.IFLA_BR_STP_STATE]: { key: 'stpState', type: 'u32' },
  [C.IFLA_BR_PRIORITY]: { key: 'priority', type: 'u16' },
  [C.IFLA_BR_VLAN_FILTERING]: { key: 'vlanFiltering', type: 'u8' },
  [C.IFLA_BR_VLAN_PROTOCOL]: { key: 'vlanProtocol', type: 'be16' },
  [C.IFLA_BR_GROUP_FWD_MASK]: { key: 'groupFwdMask', type: 'u16' },
  [C.IFLA_BR_ROOT_ID]: { key: 'rootId', type: 'bytes' },
  [C.IFLA_BR_BRIDGE_ID]: { key: 'bridgeId', type: 'bytes' },
  [C.IFLA_BR_ROOT_PORT]: { key: 'rootPort', type: 'u16' },
  [C.IFLA_BR_ROOT_PATH_COST]: { key: 'rootPathCost', type: 'u32' },
  [C.IFLA_BR_TOPOLOGY_CHANGE]: { key: 'topologyChange', type: 'u8' },
  [C.IFLA_BR_TOPOLOGY_CHANGE_DETECTED]: { key: 'topologyChangeDetected', type: 'u8' },
  [C.IFLA_BR_HELLO_TIMER]: { key: 'helloTimer', type: 'u64' },
  [C.IFLA_BR_TCN_TIMER]: { key: 'tcnTimer', type: 'u64' },
  [C.IFLA_BR_TOPOLOGY_CHANGE_TIMER]: { key: 'topologyChangeTimer', type: 'u64' },
  [C.IFLA_BR_GC_TIMER]: { key: 'gcTimer', type: 'u64' },
  [C.IFLA_BR_GROUP_ADDR]: { key: 'groupAddr', type: 'lladdr' },
  [C.IFLA_BR_FDB_FLUSH]: { key: 'fdbFlush', type: 'flag' },
  [C.IFLA_BR_MCAST_ROUTER]: { key: 'mcastRouter', type: 'u8' },
  [C.IFLA_BR_MCAST_SNOOPING]: { key: 'mcastSnooping', type: 'u8' },
  [C.IFLA_BR_MCAST_QUERIER]: { key: 'mcastQuerier', type: 'u8' },
  [C.IFLA_BR_NF_CALL_IPTABLES]: { key: 'nfCallIptables', type: 'u8' },
  [C.IFLA_BR_NF_CALL_IP6TABLES]: { key: 'nfCallIp6tables', type: 'u8' },
  [C.IFLA_BR_VLAN_DEFAULT_PVID]: { key: 'vlanDefaultPvid', type: 'u16' },
  [C.IFLA_BR_VLAN_STATS_ENABLED]: { key: 'vlanStatsEnabled', type: 'u8' },
  [C.IFLA_BR_MCAST_STATS_ENABLED]: { key: 'mcastStatsEnabled', type: 'u8' },
  [C.IFLA_BR_MCAST_IGMP_VERSION]: { key: 'mcastIgmpVersion', type: 'u8' },
  [C.IFLA_BR_MCAST_MLD_VERSION]: { key: 'mcastMldVersion', type: 'u8' },
  [C.IFLA_BR_MULTI_BOOLOPT]: { key: 'multiBoolopt', type: 'bytes' },
});

/** IFLA_MACVLAN_MACADDR_DATA: the source-mode address list. */
export const macvlanMacaddrData: AttrTable<MacvlanMacaddrData> = attrs<MacvlanMacaddrData>('IFLA_MACVLAN_MACADDR_DATA', {
  [C.IFLA_MACVLAN_MACADDR]: { key: 'macaddrs', type: 'lladdr', multi: true },
});

/** IFLA_INFO_DATA of kinds macvlan and macvtap (drivers/net/macvlan.c). */
export const macvlanInfo: AttrTable<MacvlanInfo> = attrs<MacvlanInfo>('macvlan', {
  [C.IFLA_MACVLAN_MODE]: { key: 'mode', type: 'u32' },
  [C.IFLA_MACVLAN_FLAGS]: { key: 'flags', type: 'u16' },
  [C.IFLA_MACVLAN_MACADDR_MODE]: { key: 'macaddrMode', type: 'u32' },
  [C.IFLA_MACVLAN_MACADDR]: { key: 'macaddr', type: 'lladdr' },
  [C.IFLA_MACVLAN_MACADDR_DATA]: { key: 'macaddrData', type: 'nested', of: () => macvlanMacaddrData },
  [C.IFLA_MACVLAN_MACADDR_COUNT]: { key: 'macaddrCount', type: 'u32' },
  [C.IFLA_MACVLAN_BC_QUEUE_LEN]: { key: 'bcQueueLen', type: 'u32' },
  [C.IFLA_MACVLAN_BC_QUEUE_LEN_USED]: { key: 'bcQueueLenUsed', type: 'u32' },
  [C.IFLA_MACVLAN_BC_CUTOFF]: { key: 'bcCutoff', type: 's32' },
});

/** IFLA_INFO_DATA of kinds ipvlan and ipvtap (drivers/net/ipvlan/ipvlan_main.c). */
export const ipvlanInfo: AttrTable<IpvlanInfo> = attrs<IpvlanInfo>('ipvlan', {
  [C.IFLA_IPVLAN_MODE]: { key: 'mode', type: 'u16' },
  [C.IFLA_IPVLAN_FLAGS]: { key: 'flags', type: 'u16' },
});

/** IFLA_LINKINFO: the kind, and its data as a union on the kind. */
export const linkInfo: AttrTable<LinkInfo> = attrs<LinkInfo>('IFLA_LINKINFO', {
  [C.IFLA_INFO_KIND]: { key: 'kind', type: 'string', noNul: true },
  [C.IFLA_INFO_DATA]: {
    key: 'data', type: 'union', on: 'kind',
    by: { veth: () => vethInfo, bridge: () => bridgeInfo, macvlan: () => macvlanInfo, macvtap: () => macvlanInfo, ipvlan: () => ipvlanInfo, ipvtap: () => ipvlanInfo },
  },
  [C.IFLA_INFO_XSTATS]: { key: 'xstats', type: 'bytes' },
  [C.IFLA_INFO_SLAVE_KIND]: { key: 'slaveKind', type: 'string' },
  [C.IFLA_INFO_SLAVE_DATA]: { key: 'slaveData', type: 'bytes' },
});

/** Attributes of link messages (net/core/rtnetlink.c ifla_policy). */
export const link: AttrTable<LinkAttrs> = attrs<LinkAttrs>('link', {
  [C.IFLA_ADDRESS]: { key: 'address', type: 'lladdr' },
  [C.IFLA_BROADCAST]: { key: 'broadcast', type: 'lladdr' },
  [C.IFLA_IFNAME]: { key: 'ifname', type: 'string', maxLen: C.IFNAMSIZ - 1 },
  [C.IFLA_MTU]: { key: 'mtu', type: 'u32' },
  [C.IFLA_LINK]: { key: 'link', type: 'u32' },
  [C.IFLA_QDISC]: { key: 'qdisc', type: 'string' },
  [C.IFLA_MASTER]: { key: 'master', type: 'u32' },
  [C.IFLA_TXQLEN]: { key: 'txqlen', type: 'u32' },
  [C.IFLA_OPERSTATE]: { key: 'operstate', type: 'u8' },
  [C.IFLA_LINKMODE]: { key: 'linkmode', type: 'u8' },
  [C.IFLA_LINKINFO]: { key: 'linkinfo', type: 'nested', of: () => linkInfo },
  [C.IFLA_NET_NS_PID]: { key: 'netNsPid', type: 'u32' },
  [C.IFLA_IFALIAS]: { key: 'ifalias', type: 'string' },
  [C.IFLA_STATS64]: { key: 'stats64', type: 'struct', struct: linkStats64 },
  [C.IFLA_GROUP]: { key: 'group', type: 'u32' },
  [C.IFLA_NET_NS_FD]: { key: 'netNsFd', type: 'u32' },
  [C.IFLA_EXT_MASK]: { key: 'extMask', type: 'u32' },
  [C.IFLA_PROMISCUITY]: { key: 'promiscuity', type: 'u32' },
  [C.IFLA_NUM_TX_QUEUES]: { key: 'numTxQueues', type: 'u32' },
  [C.IFLA_NUM_RX_QUEUES]: { key: 'numRxQueues', type: 'u32' },
  [C.IFLA_CARRIER]: { key: 'carrier', type: 'u8' },
  [C.IFLA_CARRIER_CHANGES]: { key: 'carrierChanges', type: 'u32' },
  [C.IFLA_LINK_NETNSID]: { key: 'linkNetnsid', type: 's32' },
  [C.IFLA_PROTO_DOWN]: { key: 'protoDown', type: 'u8' },
  [C.IFLA_GSO_MAX_SEGS]: { key: 'gsoMaxSegs', type: 'u32' },
  [C.IFLA_GSO_MAX_SIZE]: { key: 'gsoMaxSize', type: 'u32' },
  [C.IFLA_EVENT]: { key: 'event', type: 'u32' },
  [C.IFLA_NEW_NETNSID]: { key: 'newNetnsid', type: 's32' },
  [C.IFLA_TARGET_NETNSID]: { key: 'targetNetnsid', type: 's32' },
  [C.IFLA_CARRIER_UP_COUNT]: { key: 'carrierUpCount', type: 'u32' },
  [C.IFLA_CARRIER_DOWN_COUNT]: { key: 'carrierDownCount', type: 'u32' },
  [C.IFLA_NEW_IFINDEX]: { key: 'newIfindex', type: 's32' },
  [C.IFLA_MIN_MTU]: { key: 'minMtu', type: 'u32' },
  [C.IFLA_MAX_MTU]: { key: 'maxMtu', type: 'u32' },
  // Sent with NLA_F_NESTED, as the kernel (nla_nest_start) and iproute2 do.
  [C.IFLA_PROP_LIST]: { key: 'propList', type: 'nested', of: () => propList, nlaFlags: C.NLA_F_NESTED },
  [C.IFLA_ALT_IFNAME]: { key: 'altIfname', type: 'string', maxLen: C.ALTIFNAMSIZ - 1 },
  [C.IFLA_PERM_ADDRESS]: { key: 'permAddress', type: 'lladdr' },
  [C.IFLA_PARENT_DEV_NAME]: { key: 'parentDevName', type: 'string' },
  [C.IFLA_PARENT_DEV_BUS_NAME]: { key: 'parentDevBusName', type: 'string' },
  [C.IFLA_GRO_MAX_SIZE]: { key: 'groMaxSize', type: 'u32' },
  [C.IFLA_TSO_MAX_SIZE]: { key: 'tsoMaxSize', type: 'u32' },
  [C.IFLA_TSO_MAX_SEGS]: { key: 'tsoMaxSegs', type: 'u32' },
  [C.IFLA_ALLMULTI]: { key: 'allmulti', type: 'u32' },
});

// ---------------------------------------------------------------------------------------------
// Address attributes (RTM_NEWADDR / RTM_DELADDR / RTM_GETADDR)

export interface AddrAttrs extends WithUnknown {
  /** IFA_ADDRESS: the prefix address (the peer on point-to-point links). */
  address?: string;
  /** IFA_LOCAL: the local address (IPv4). */
  local?: string;
  label?: string;
  broadcast?: string;
  anycast?: string;
  cacheinfo?: IfaCacheinfo;
  multicast?: string;
  /** IFA_FLAGS: all 32 IFA_F_* bits. */
  flags?: number;
  rtPriority?: number;
  targetNetnsid?: number;
  proto?: number;
}

/** Attributes of address messages (net/ipv4/devinet.c ifa_ipv4_policy, net/ipv6/addrconf.c). */
export const addr: AttrTable<AddrAttrs> = attrs<AddrAttrs>('addr', {
  [C.IFA_ADDRESS]: { key: 'address', type: 'ip' },
  [C.IFA_LOCAL]: { key: 'local', type: 'ip' },
  [C.IFA_LABEL]: { key: 'label', type: 'string', maxLen: C.IFNAMSIZ - 1 },
  [C.IFA_BROADCAST]: { key: 'broadcast', type: 'ipv4' },
  [C.IFA_ANYCAST]: { key: 'anycast', type: 'ip' },
  [C.IFA_CACHEINFO]: { key: 'cacheinfo', type: 'struct', struct: ifaCacheinfo },
  [C.IFA_MULTICAST]: { key: 'multicast', type: 'ip' },
  [C.IFA_FLAGS]: { key: 'flags', type: 'u32' },
  [C.IFA_RT_PRIORITY]: { key: 'rtPriority', type: 'u32' },
  [C.IFA_TARGET_NETNSID]: { key: 'targetNetnsid', type: 's32' },
  [C.IFA_PROTO]: { key: 'proto', type: 'u8' },
});

// ---------------------------------------------------------------------------------------------
// Route attributes (RTM_NEWROUTE / RTM_DELROUTE / RTM_GETROUTE)

export interface RouteMetrics extends WithUnknown {
  lock?: number;
  mtu?: number;
  window?: number;
  rtt?: number;
  advmss?: number;
  hoplimit?: number;
  initcwnd?: number;
  initrwnd?: number;
  ccAlgo?: string;
}

/** RTA_METRICS: RTAX_* values. */
export const routeMetrics: AttrTable<RouteMetrics> = attrs<RouteMetrics>('RTA_METRICS', {
  [C.RTAX_LOCK]: { key: 'lock', type: 'u32' },
  [C.RTAX_MTU]: { key: 'mtu', type: 'u32' },
  [C.RTAX_WINDOW]: { key: 'window', type: 'u32' },
  [C.RTAX_RTT]: { key: 'rtt', type: 'u32' },
  [C.RTAX_ADVMSS]: { key: 'advmss', type: 'u32' },
  [C.RTAX_HOPLIMIT]: { key: 'hoplimit', type: 'u32' },
  [C.RTAX_INITCWND]: { key: 'initcwnd', type: 'u32' },
  [C.RTAX_INITRWND]: { key: 'initrwnd', type: 'u32' },
  [C.RTAX_CC_ALGO]: { key: 'ccAlgo', type: 'string' },
});

export interface RouteAttrs extends WithUnknown {
  dst?: string;
  src?: string;
  iif?: number;
  oif?: number;
  gateway?: string;
  priority?: number;
  prefsrc?: string;
  metrics?: RouteMetrics;
  multipath?: Uint8Array;
  flow?: number;
  cacheinfo?: Uint8Array;
  table?: number;
  mark?: number;
  via?: Uint8Array;
  pref?: number;
  encapType?: number;
  encap?: Uint8Array;
  expires?: number;
  uid?: number;
  ttlPropagate?: number;
  ipProto?: number;
  sport?: number;
  dport?: number;
  nhId?: number;
}

/** Attributes of route messages (net/ipv4/fib_frontend.c rtm_ipv4_policy). */
export const route: AttrTable<RouteAttrs> = attrs<RouteAttrs>('route', {
  [C.RTA_DST]: { key: 'dst', type: 'ip' },
  [C.RTA_SRC]: { key: 'src', type: 'ip' },
  [C.RTA_IIF]: { key: 'iif', type: 'u32' },
  [C.RTA_OIF]: { key: 'oif', type: 'u32' },
  [C.RTA_GATEWAY]: { key: 'gateway', type: 'ip' },
  [C.RTA_PRIORITY]: { key: 'priority', type: 'u32' },
  [C.RTA_PREFSRC]: { key: 'prefsrc', type: 'ip' },
  [C.RTA_METRICS]: { key: 'metrics', type: 'nested', of: () => routeMetrics },
  [C.RTA_MULTIPATH]: { key: 'multipath', type: 'bytes' },
  [C.RTA_FLOW]: { key: 'flow', type: 'u32' },
  [C.RTA_CACHEINFO]: { key: 'cacheinfo', type: 'bytes' },
  [C.RTA_TABLE]: { key: 'table', type: 'u32' },
  [C.RTA_MARK]: { key: 'mark', type: 'u32' },
  [C.RTA_VIA]: { key: 'via', type: 'bytes' },
  [C.RTA_PREF]: { key: 'pref', type: 'u8' },
  [C.RTA_ENCAP_TYPE]: { key: 'encapType', type: 'u16' },
  [C.RTA_ENCAP]: { key: 'encap', type: 'bytes' },
  [C.RTA_EXPIRES]: { key: 'expires', type: 'u32' },
  [C.RTA_UID]: { key: 'uid', type: 'u32' },
  [C.RTA_TTL_PROPAGATE]: { key: 'ttlPropagate', type: 'u8' },
  [C.RTA_IP_PROTO]: { key: 'ipProto', type: 'u8' },
  [C.RTA_SPORT]: { key: 'sport', type: 'be16' },
  [C.RTA_DPORT]: { key: 'dport', type: 'be16' },
  [C.RTA_NH_ID]: { key: 'nhId', type: 'u32' },
});

// ---------------------------------------------------------------------------------------------
// Extended ACK attributes (after struct nlmsgerr when NLM_F_ACK_TLVS is set)

export interface ExtAckAttrs extends WithUnknown {
  msg?: string;
  offset?: number;
  cookie?: Uint8Array;
  policy?: Uint8Array;
  missType?: number;
  missNest?: number;
}

/** The extended ACK after struct nlmsgerr (NLMSGERR_ATTR_*). */
export const extAck: AttrTable<ExtAckAttrs> = attrs<ExtAckAttrs>('nlmsgerr', {
  [C.NLMSGERR_ATTR_MSG]: { key: 'msg', type: 'string' },
  [C.NLMSGERR_ATTR_OFFS]: { key: 'offset', type: 'u32' },
  [C.NLMSGERR_ATTR_COOKIE]: { key: 'cookie', type: 'bytes' },
  [C.NLMSGERR_ATTR_POLICY]: { key: 'policy', type: 'bytes' },
  [C.NLMSGERR_ATTR_MISS_TYPE]: { key: 'missType', type: 'u32' },
  [C.NLMSGERR_ATTR_MISS_NEST]: { key: 'missNest', type: 'u32' },
});
