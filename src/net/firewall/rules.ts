// Pure builders of the firewall's nftables JSON, the parser of its listing, and the diff that
// reconciles the two. No I/O: everything here is pinned by test/golden/nft/*.json; nft.ts applies it.
//
// Layout (one table of our own, `table inet nspawn-ts`; an inet table so one set of chains serves
// both families — NAT in inet tables needs Linux ≥ 5.2). Modelled on systemd's io.systemd.nat
// (reference §4.3) with the same hooks and priorities, plus what systemd-networkd would otherwise
// add (masquerade) and what users asked for (hairpin, loopback):
//
//   set masq4/masq6          interval sets of container subnets        (networkd's masq_saddr)
//   map ports4/ports6        l4proto . dport  →  addr . port           (nspawn's map_port_ipport)
//   map ports_lo4            same, for mappings that opted into 127.0.0.1:HOSTPORT
//   set hairpin4/hairpin6    C . C for every forwarding target C
//   chain prerouting  nat   dstnat+1 (-99)  fib daddr type local  dnat via ports4 / ports6
//   chain output      nat   -99             oif lo, daddr not loopback: dnat via ports4 / ports6;
//                                            daddr 127.0.0.1: dnat via ports_lo4
//   chain postrouting nat   srcnat+1 (101)  saddr in masq4/masq6, not via lo: masquerade;
//                                            DNATed and saddr . daddr in hairpin: masquerade;
//                                            DNATed, saddr 127/8, leaving by another link: masquerade
//   chain forward     filter 0, policy accept: accepts from/to our subnets and DNATed connections
//   chain input       filter 0, policy accept: drops new connections to 127.0.0.0/8 arriving on a
//                                            link other than lo that no DNAT rewrote (CVE-2020-8558)
//
// One lookup per packet whatever the number of mappings (the concatenated key `meta l4proto .
// th dport` selects protocol and port together). Hairpin: a container reaching its own published
// port via a host address is DNATed back to itself; without a new source it would see its own
// address as the source and drop the packet as a martian, so such connections are masqueraded (to
// the host-side address of its link). The masq sets already cover containers whose subnet is
// masqueraded; the hairpin set covers the rest (bridged containers, IPv6). Loopback: 127.0.0.1 as a
// source cannot leave the host, so those connections are masqueraded too; the host-side link of
// the container must have net.ipv4.conf.LINK.route_localnet=1 (the caller sets it on that link
// only), or the kernel drops the rerouted packet and its replies as martians. That sysctl also lets
// the container itself send to 127.0.0.1 via that link (route_localnet on its own side, 127.0.0.1
// routed via its gateway) and so reach every service bound to the host's loopback: the input
// chain drops such packets unless a DNAT made them (the rule Kubernetes added for CVE-2020-8558);
// replies of the host's own 127.0.0.1:HOSTPORT connections are established and DNATed, and pass.
//
// The forward chain: nftables evaluates every base chain of a hook and a drop anywhere is final,
// while an accept only ends the chain it is in. So this chain never blocks anything (policy accept)
// and cannot override another table's drop policy; it documents intent, and forwardBlockers() in
// nft.ts finds the foreign chains that would drop container traffic, so the user can be told.
//
// Ownership: every element carries its owner (the machine name, or e.g. "zone:NAME") as its nft
// comment. The kernel thus holds the whole truth — a restarted sidecar reads it back, and
// "add A, add B, delete A" deletes exactly the elements whose comment is A, in one transaction.
import { Address4, Address6 } from 'ip-address';
import { ConfigError } from '../../errors.js';
import type {
  NftChain, NftCommand, NftDocument, NftElemWrapper, NftExpr, NftListing, NftMap, NftMapElem, NftRule, NftStatement,
} from './nft-json.js';

export const DEFAULT_TABLE = 'nspawn-ts';
export const TABLE_FAMILY = 'inet';
/** Layout version, in the table's comment; bump when chains or sets change shape. */
export const LAYOUT_VERSION = 2;

export type Protocol = 'tcp' | 'udp';
export type SetName = 'masq4' | 'masq6' | 'ports4' | 'ports6' | 'ports_lo4' | 'hairpin4' | 'hairpin6';
export const SET_NAMES: readonly SetName[] = ['masq4', 'masq6', 'ports4', 'ports6', 'ports_lo4', 'hairpin4', 'hairpin6'];
const MAPS: ReadonlySet<SetName> = new Set(['ports4', 'ports6', 'ports_lo4']);
export const CHAIN_NAMES = ['prerouting', 'output', 'postrouting', 'forward', 'input'] as const;

/** One forwarded port. */
export interface PortMapping {
  protocol: Protocol;
  hostPort: number;
  /** the container's address (IPv4 or IPv6): the family picks the map */
  containerAddress: string;
  containerPort: number;
  /** who owns it: the machine name (removePortMappings(owner) removes all of them) */
  owner: string;
  /** also forward 127.0.0.1:hostPort from the host itself (IPv4 only; ignored for IPv6) */
  loopback?: boolean;
}

export interface MasqueradeEntry {
  /** "10.0.0.16/28", normalised to the network address */
  subnet: string;
  owner?: string;
}

/** What the table holds (or should hold), in our terms. */
export interface FirewallState {
  masquerade: MasqueradeEntry[];
  ports: PortMapping[];
}

/** One element of one of our sets/maps, in canonical text form (comparable with ===). */
export interface FwElement {
  set: SetName;
  /** "10.0.0.16/28", "tcp . 8080", "10.0.0.2 . 10.0.0.2" */
  key: string;
  /** maps only: "10.0.0.2 . 80" */
  data?: string;
  owner?: string;
  /** the key exactly as listed, when it is not in our canonical form (deleted as found) */
  keyExpr?: NftExpr;
}

// ---------------------------------------------------------------------------------------------
// Validation and normalisation

const OWNER_RE = /^[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,99}$/;

/** Owners become nft comments: 1–100 characters, letters, digits and . _ : @ / + - */
export function assertOwner(owner: string): void {
  if (!OWNER_RE.test(owner)) {
    throw new ConfigError(`invalid firewall owner "${owner}": 1–100 characters of letters, digits and . _ : @ / + -, starting with a letter or digit`,
      { code: 'NFT_INVALID_OWNER' });
  }
}

export function addressFamily(address: string): 4 | 6 | undefined {
  if (Address4.isValid(address) && !address.includes('/')) return 4;
  if (Address6.isValid(address) && !address.includes('/') && !address.includes('%')) return 6;
  return undefined;
}

/** Canonical text of an address: dotted quad, or RFC 5952 lower-case compressed IPv6. */
export function canonicalAddress(address: string): string {
  const fam = addressFamily(address);
  if (fam === 4) return new Address4(address).correctForm();
  if (fam === 6) return new Address6(address).correctForm();
  throw new ConfigError(`"${address}" is not an IPv4 or IPv6 address`, { code: 'NFT_INVALID_ADDRESS' });
}

/** "10.0.0.17/28" → {family 4, subnet "10.0.0.16/28"}; a bare address is a /32 or /128. */
export function normaliseSubnet(subnet: string): { family: 4 | 6; subnet: string; network: string; len: number } {
  const [addr = '', lenText, extra] = subnet.split('/');
  const fam = addressFamily(addr);
  const max = fam === 4 ? 32 : 128;
  const len = lenText === undefined ? max : /^\d{1,3}$/.test(lenText) ? Number(lenText) : NaN;
  if (!fam || extra !== undefined || !(len >= 0 && len <= max)) {
    throw new ConfigError(`"${subnet}" is not a subnet (expected ADDRESS/PREFIXLEN, e.g. 10.0.0.16/28 or fd00:1::/64)`,
      { code: 'NFT_INVALID_SUBNET' });
  }
  const network = fam === 4 ? new Address4(`${addr}/${len}`).startAddress().correctForm() : new Address6(`${addr}/${len}`).startAddress().correctForm();
  return { family: fam, subnet: `${network}/${len}`, network, len };
}

function assertPort(what: string, port: number): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new ConfigError(`invalid ${what} ${String(port)}: ports are 1–65535`, { code: 'NFT_INVALID_PORT' });
  }
}

/** Validates a mapping and returns it with its address in canonical form. */
export function normaliseMapping(m: PortMapping): PortMapping & { family: 4 | 6 } {
  if (m.protocol !== 'tcp' && m.protocol !== 'udp') {
    throw new ConfigError(`invalid protocol "${String(m.protocol)}" for port ${m.hostPort}: only tcp and udp can be forwarded`, { code: 'NFT_INVALID_PROTOCOL' });
  }
  assertPort('host port', m.hostPort);
  assertPort('container port', m.containerPort);
  assertOwner(m.owner);
  const family = addressFamily(m.containerAddress);
  if (!family) throw new ConfigError(`invalid container address "${m.containerAddress}" for ${m.protocol} port ${m.hostPort}`, { code: 'NFT_INVALID_ADDRESS' });
  const out: PortMapping & { family: 4 | 6 } = {
    protocol: m.protocol, hostPort: m.hostPort, containerAddress: canonicalAddress(m.containerAddress),
    containerPort: m.containerPort, owner: m.owner, family,
  };
  if (m.loopback && family === 4) out.loopback = true;
  return out;
}

/** Most ports one range may forward (each port is one map element). */
export const MAX_RANGE_PORTS = 4096;

/**
 * A -p/Port= entry (src/runtime/spec.ts PortForward, possibly a range HOST..HOSTEND →
 * CONT..CONTEND of equal length) as the mappings of one container address.
 */
export function portForwardMappings(pf: { protocol: Protocol; hostPort: number; hostPortEnd?: number; containerPort: number; containerPortEnd?: number },
  containerAddress: string, owner: string, loopback = false): PortMapping[] {
  const hostEnd = pf.hostPortEnd ?? pf.hostPort;
  const contEnd = pf.containerPortEnd ?? pf.containerPort + (hostEnd - pf.hostPort);
  const n = hostEnd - pf.hostPort + 1;
  if (n < 1 || contEnd - pf.containerPort + 1 !== n) {
    throw new ConfigError(`invalid port range ${pf.protocol}:${pf.hostPort}-${hostEnd}:${pf.containerPort}-${contEnd}: the host and container ranges must be non-empty and of equal length`,
      { code: 'NFT_INVALID_PORT' });
  }
  if (n > MAX_RANGE_PORTS) throw new ConfigError(`port range ${pf.hostPort}-${hostEnd} is too large: at most ${MAX_RANGE_PORTS} ports`, { code: 'NFT_INVALID_PORT' });
  const out: PortMapping[] = [];
  for (let i = 0; i < n; i++) {
    const m: PortMapping = { protocol: pf.protocol, hostPort: pf.hostPort + i, containerAddress, containerPort: pf.containerPort + i, owner };
    if (loopback) m.loopback = true;
    out.push(normaliseMapping(m));
  }
  return out.map(({ protocol, hostPort, containerAddress: a, containerPort, owner: o, loopback: l }) => (l ? { protocol, hostPort, containerAddress: a, containerPort, owner: o, loopback: l } : { protocol, hostPort, containerAddress: a, containerPort, owner: o }));
}

/** "tcp 8080 → 10.0.0.2:80" for messages. */
export function describeMapping(m: Pick<PortMapping, 'protocol' | 'hostPort' | 'containerAddress' | 'containerPort'>): string {
  const addr = m.containerAddress.includes(':') ? `[${m.containerAddress}]` : m.containerAddress;
  return `${m.protocol} port ${m.hostPort} → ${addr}:${m.containerPort}`;
}

// ---------------------------------------------------------------------------------------------
// Elements: state ↔ elements ↔ JSON

export function portKey(protocol: Protocol, hostPort: number): string {
  return `${protocol} . ${hostPort}`;
}

function portData(address: string, port: number): string {
  return `${address} . ${port}`;
}

/** The elements one mapping needs: its map entry, its loopback entry, its hairpin entry. */
export function mappingElements(mapping: PortMapping): FwElement[] {
  const m = normaliseMapping(mapping);
  const key = portKey(m.protocol, m.hostPort);
  const data = portData(m.containerAddress, m.containerPort);
  const out: FwElement[] = [{ set: m.family === 4 ? 'ports4' : 'ports6', key, data, owner: m.owner }];
  if (m.loopback) out.push({ set: 'ports_lo4', key, data, owner: m.owner });
  out.push({ set: m.family === 4 ? 'hairpin4' : 'hairpin6', key: `${m.containerAddress} . ${m.containerAddress}`, owner: m.owner });
  return out;
}

export function masqueradeElement(subnet: string, owner?: string): FwElement {
  const n = normaliseSubnet(subnet);
  if (owner !== undefined) assertOwner(owner);
  return owner === undefined ? { set: n.family === 4 ? 'masq4' : 'masq6', key: n.subnet } : { set: n.family === 4 ? 'masq4' : 'masq6', key: n.subnet, owner };
}

function elementId(e: FwElement): string {
  return `${e.set} ${e.key}`;
}

/**
 * Every element a desired state needs, deduplicated by (set, key). Two mappings with one
 * (protocol, host port) in one family are a conflict (ConfigError); a hairpin entry shared by two
 * owners (one address, two owners: a stale record) goes to the first in sort order.
 */
export function desiredElements(state: FirewallState): FwElement[] {
  const byId = new Map<string, FwElement>();
  for (const e of state.masquerade.map((m) => masqueradeElement(m.subnet, m.owner))) {
    const prev = byId.get(elementId(e));
    if (prev && prev.owner !== e.owner) {
      throw new ConfigError(`subnet ${e.key} is masqueraded for both ${prev.owner ?? '(no owner)'} and ${e.owner ?? '(no owner)'}`, { code: 'NFT_CONFLICT' });
    }
    byId.set(elementId(e), e);
  }
  const ports = [...state.ports].sort((a, b) => a.owner.localeCompare(b.owner) || a.hostPort - b.hostPort || a.protocol.localeCompare(b.protocol));
  for (const p of ports) {
    for (const e of mappingElements(p)) {
      const id = elementId(e);
      const prev = byId.get(id);
      if (prev && MAPS.has(e.set) && (prev.data !== e.data || prev.owner !== e.owner)) {
        throw new ConfigError(`${p.protocol} port ${p.hostPort} is forwarded twice: to ${prev.data ?? '?'} for ${prev.owner ?? '?'} and to ${e.data ?? '?'} for ${e.owner ?? '?'}`,
          { code: 'NFT_CONFLICT' });
      }
      if (!prev) byId.set(id, e);
    }
  }
  return [...byId.values()];
}

function exprText(e: NftExpr): string {
  if (typeof e === 'string') return addressFamily(e) ? canonicalAddress(e) : e;
  if (typeof e === 'number' || typeof e === 'boolean') return String(e);
  if (Array.isArray(e)) return e.map(exprText).join(', ');
  if ('concat' in e) return e.concat.map(exprText).join(' . ');
  if ('prefix' in e) return `${exprText(e.prefix.addr)}/${e.prefix.len}`;
  if ('range' in e) return `${exprText(e.range[0])}-${exprText(e.range[1])}`;
  if ('elem' in e) return exprText(e.elem.val);
  return JSON.stringify(e);
}

function keyExprOf(e: FwElement): NftExpr {
  if (e.keyExpr !== undefined) return e.keyExpr;
  if (e.set === 'masq4' || e.set === 'masq6') {
    const [addr = '', len] = e.key.split('/');
    return { prefix: { addr, len: Number(len) } };
  }
  const [a = '', b = ''] = e.key.split(' . ');
  if (e.set === 'hairpin4' || e.set === 'hairpin6') return { concat: [a, b] };
  return { concat: [a, Number(b)] };
}

function dataExprOf(e: FwElement): NftExpr {
  const [addr = '', port = ''] = (e.data ?? '').split(' . ');
  return { concat: [addr, Number(port)] };
}

/** Reads our sets and maps out of `nft -j list table inet nspawn-ts`. */
export function elementsFromListing(listing: NftListing, table = DEFAULT_TABLE): FwElement[] {
  const out: FwElement[] = [];
  const known = new Set<string>(SET_NAMES);
  for (const obj of listing.nftables) {
    const s = 'set' in obj ? obj.set : 'map' in obj ? obj.map : undefined;
    if (!s || s.table !== table || s.family !== TABLE_FAMILY || !known.has(s.name)) continue;
    const set = s.name as SetName;
    for (const raw of (s.elem ?? []) as NftExpr[]) {
      let keyRaw: NftExpr = raw;
      let dataRaw: NftExpr | undefined;
      if (MAPS.has(set) && Array.isArray(raw)) [keyRaw = '', dataRaw] = raw as NftMapElem;
      let owner: string | undefined;
      let val = keyRaw;
      if (typeof keyRaw === 'object' && keyRaw !== null && !Array.isArray(keyRaw) && 'elem' in keyRaw) {
        owner = (keyRaw.elem as NftElemWrapper).comment;
        val = keyRaw.elem.val;
      }
      let key = exprText(val);
      // a /32 (or /128) in an interval set is listed as a bare address
      if ((set === 'masq4' || set === 'masq6') && typeof val === 'string') key = `${key}/${set === 'masq4' ? 32 : 128}`;
      const el: FwElement = { set, key };
      if (dataRaw !== undefined) el.data = exprText(dataRaw);
      if (owner !== undefined) el.owner = owner;
      // anything not in the shape we write (e.g. a range someone added by hand) is deleted as found
      const ours = set === 'masq4' || set === 'masq6'
        ? typeof val === 'string' || (typeof val === 'object' && val !== null && !Array.isArray(val) && 'prefix' in val)
        : typeof val === 'object' && val !== null && !Array.isArray(val) && 'concat' in val;
      if (!ours) el.keyExpr = val;
      out.push(el);
    }
  }
  return out;
}

/** Turns elements back into our terms (mappings with their loopback flag; masquerade entries). */
export function stateFromElements(elements: readonly FwElement[]): FirewallState {
  const lo = new Set(elements.filter((e) => e.set === 'ports_lo4').map((e) => `${e.key} : ${e.data ?? ''}`));
  const state: FirewallState = { masquerade: [], ports: [] };
  for (const e of elements) {
    // elements not in our shape (added by hand) are not ours to report; reconcile removes them
    if (e.keyExpr !== undefined) continue;
    if (e.set === 'masq4' || e.set === 'masq6') {
      state.masquerade.push(e.owner === undefined ? { subnet: e.key } : { subnet: e.key, owner: e.owner });
    } else if (e.set === 'ports4' || e.set === 'ports6') {
      const [protocol = '', hostPort = ''] = e.key.split(' . ');
      const [containerAddress = '', containerPort = ''] = (e.data ?? '').split(' . ');
      const m: PortMapping = {
        protocol: protocol as Protocol, hostPort: Number(hostPort), containerAddress, containerPort: Number(containerPort), owner: e.owner ?? '',
      };
      if (lo.has(`${e.key} : ${e.data ?? ''}`)) m.loopback = true;
      state.ports.push(m);
    }
  }
  return state;
}

function wrapKey(e: FwElement, withComment: boolean): NftExpr {
  const val = keyExprOf(e);
  return withComment && e.owner !== undefined ? { elem: { val, comment: e.owner } } : val;
}

/**
 * One command per set touched, elements in the given order. `create` fails (EEXIST) if a key is
 * already there — used for map entries so a port taken by another owner is never overwritten.
 */
export function elementCommands(verb: 'add' | 'create' | 'delete', elements: readonly FwElement[], table = DEFAULT_TABLE): NftCommand[] {
  const bySet = new Map<SetName, FwElement[]>();
  for (const e of elements) bySet.set(e.set, [...(bySet.get(e.set) ?? []), e]);
  const out: NftCommand[] = [];
  for (const set of SET_NAMES) {
    const list = bySet.get(set);
    if (!list?.length) continue;
    const withComment = verb !== 'delete';
    const elem = list.map((e): NftExpr => (MAPS.has(set) && verb !== 'delete' ? [wrapKey(e, withComment), dataExprOf(e)] : wrapKey(e, withComment)));
    const element = { family: TABLE_FAMILY, table, name: set, elem } as const;
    out.push(verb === 'add' ? { add: { element } } : verb === 'create' ? { create: { element } } : { delete: { element } });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The table layout

function rule(table: string, chain: string, expr: NftStatement[]): NftCommand {
  return { add: { rule: { family: TABLE_FAMILY, table, chain, expr } satisfies NftRule } };
}

const match = (left: NftExpr, right: NftExpr, op: '==' | '!=' | 'in' | '!' = '=='): NftStatement => ({ match: { op, left, right } });
const nfproto = (p: 'ipv4' | 'ipv6'): NftStatement => match({ meta: { key: 'nfproto' } }, p);
const payload = (protocol: string, field: string): NftExpr => ({ payload: { protocol, field } });
const portKeyExpr: NftExpr = { concat: [{ meta: { key: 'l4proto' } }, { payload: { protocol: 'th', field: 'dport' } }] };
const dnatVia = (family: 'ip' | 'ip6', map: string): NftStatement => ({ dnat: { family, addr: { map: { key: portKeyExpr, data: `@${map}` } } } });
const ctDnat: NftStatement = match({ ct: { key: 'status' } }, 'dnat', 'in');

/** The chains with their hooks and priorities (systemd's: dstnat+1 / -99 / srcnat+1). */
export function chainObjects(table = DEFAULT_TABLE): NftChain[] {
  const base = { family: TABLE_FAMILY, table } as const;
  return [
    { ...base, name: 'prerouting', type: 'nat', hook: 'prerouting', prio: -99, policy: 'accept' },
    { ...base, name: 'output', type: 'nat', hook: 'output', prio: -99, policy: 'accept' },
    { ...base, name: 'postrouting', type: 'nat', hook: 'postrouting', prio: 101, policy: 'accept' },
    { ...base, name: 'forward', type: 'filter', hook: 'forward', prio: 0, policy: 'accept' },
    { ...base, name: 'input', type: 'filter', hook: 'input', prio: 0, policy: 'accept' },
  ];
}

/** The rules of each chain, in order. */
export function ruleCommands(table = DEFAULT_TABLE): NftCommand[] {
  const loopback4: NftExpr = { prefix: { addr: '127.0.0.0', len: 8 } };
  return [
    rule(table, 'prerouting', [nfproto('ipv4'), match({ fib: { result: 'type', flags: ['daddr'] } }, 'local'), dnatVia('ip', 'ports4')]),
    rule(table, 'prerouting', [nfproto('ipv6'), match({ fib: { result: 'type', flags: ['daddr'] } }, 'local'), dnatVia('ip6', 'ports6')]),
    rule(table, 'output', [nfproto('ipv4'), match({ meta: { key: 'oif' } }, 'lo'), match(payload('ip', 'daddr'), loopback4, '!='), dnatVia('ip', 'ports4')]),
    rule(table, 'output', [nfproto('ipv6'), match({ meta: { key: 'oif' } }, 'lo'), match(payload('ip6', 'daddr'), '::1', '!='), dnatVia('ip6', 'ports6')]),
    rule(table, 'output', [nfproto('ipv4'), match({ meta: { key: 'oif' } }, 'lo'), match(payload('ip', 'daddr'), '127.0.0.1'), dnatVia('ip', 'ports_lo4')]),
    // not through lo: the host talking to its own link address (a query to the DNS server there) has
    // no address to be masqueraded to on lo, and the kernel would drop it
    rule(table, 'postrouting', [match({ meta: { key: 'oif' } }, 'lo', '!='), match(payload('ip', 'saddr'), '@masq4'), { masquerade: null }]),
    rule(table, 'postrouting', [match({ meta: { key: 'oif' } }, 'lo', '!='), match(payload('ip6', 'saddr'), '@masq6'), { masquerade: null }]),
    rule(table, 'postrouting', [ctDnat, match({ concat: [payload('ip', 'saddr'), payload('ip', 'daddr')] }, '@hairpin4'), { masquerade: null }]),
    rule(table, 'postrouting', [ctDnat, match({ concat: [payload('ip6', 'saddr'), payload('ip6', 'daddr')] }, '@hairpin6'), { masquerade: null }]),
    rule(table, 'postrouting', [ctDnat, match({ meta: { key: 'oif' } }, 'lo', '!='), match(payload('ip', 'saddr'), loopback4), { masquerade: null }]),
    rule(table, 'forward', [match(payload('ip', 'saddr'), '@masq4'), { accept: null }]),
    rule(table, 'forward', [match(payload('ip', 'daddr'), '@masq4'), { accept: null }]),
    rule(table, 'forward', [match(payload('ip6', 'saddr'), '@masq6'), { accept: null }]),
    rule(table, 'forward', [match(payload('ip6', 'daddr'), '@masq6'), { accept: null }]),
    rule(table, 'forward', [ctDnat, { accept: null }]),
    rule(table, 'input', [nfproto('ipv4'), match({ meta: { key: 'iif' } }, 'lo', '!='), match(payload('ip', 'daddr'), loopback4),
      match({ ct: { key: 'state' } }, { set: ['established', 'related'] }, '!='), match({ ct: { key: 'status' } }, 'dnat', '!'), { drop: null }]),
  ];
}

const TABLE_NAME_RE = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;

export function assertTableName(table: string): void {
  if (!TABLE_NAME_RE.test(table)) {
    throw new ConfigError(`invalid nft table name "${table}": a letter, then up to 63 letters, digits, '_', '.', '-'`, { code: 'NFT_INVALID_TABLE' });
  }
}

/** Our three maps (their data is a concatenation). */
export function mapObjects(table = DEFAULT_TABLE): NftMap[] {
  const base = { family: TABLE_FAMILY, table } as const;
  return [
    { ...base, name: 'ports4', type: ['inet_proto', 'inet_service'], map: ['ipv4_addr', 'inet_service'] },
    { ...base, name: 'ports6', type: ['inet_proto', 'inet_service'], map: ['ipv6_addr', 'inet_service'] },
    { ...base, name: 'ports_lo4', type: ['inet_proto', 'inet_service'], map: ['ipv4_addr', 'inet_service'] },
  ];
}

const typeText = (t: string | string[]): string => (Array.isArray(t) ? t.join(' . ') : t);

/**
 * libnftables ≤ 1.0.6 cannot parse a concatenated map data type in JSON ("Invalid map type
 * 'ipv4_addr . inet_service'"; added in 1.0.7), and Debian 12 ships 1.0.6: so the maps are created
 * with the equivalent nft statements, rendered from the same typed objects. Everything else —
 * including elements of these maps — goes through JSON.
 */
export function renderAddMap(map: NftMap): string {
  assertTableName(map.table);
  if (!/^[A-Za-z][A-Za-z0-9_]*$/.test(map.name)) throw new ConfigError(`invalid map name "${map.name}"`, { code: 'NFT_INVALID_TABLE' });
  const flags = map.flags?.length ? ` flags ${map.flags.join(',')};` : '';
  return `add map ${map.family} ${map.table} ${map.name} { type ${typeText(map.type)} : ${typeText(map.map)};${flags} }`;
}

/** Step 1 of ensure-tables: the table and the maps, as nft statements (see renderAddMap). */
export function layoutMapsScript(table = DEFAULT_TABLE): string {
  assertTableName(table);
  return [`add table ${TABLE_FAMILY} ${table}`, ...mapObjects(table).map(renderAddMap)].join('\n') + '\n';
}

/**
 * Step 2 of ensure-tables, one transaction: add table, chains and sets (no-ops when present), then
 * flush our chains and add their rules. Idempotent (never duplicates a rule), atomic (no packet
 * sees a half-built chain), repairs a chain someone edited, and keeps every element (sets and
 * maps are never flushed) — so running it at every start, or after ENOENT, is safe.
 */
export function layoutDocument(table = DEFAULT_TABLE): NftDocument {
  assertTableName(table);
  const base = { family: TABLE_FAMILY, table } as const;
  const cmds: NftCommand[] = [
    { add: { table: { family: TABLE_FAMILY, name: table, comment: `nspawn-ts container NAT and port forwarding, layout ${LAYOUT_VERSION}` } } },
    ...chainObjects(table).map((chain): NftCommand => ({ add: { chain } })),
    { add: { set: { ...base, name: 'masq4', type: 'ipv4_addr', flags: ['interval'] } } },
    { add: { set: { ...base, name: 'masq6', type: 'ipv6_addr', flags: ['interval'] } } },
    { add: { set: { ...base, name: 'hairpin4', type: ['ipv4_addr', 'ipv4_addr'] } } },
    { add: { set: { ...base, name: 'hairpin6', type: ['ipv6_addr', 'ipv6_addr'] } } },
    ...CHAIN_NAMES.map((name): NftCommand => ({ flush: { chain: { ...base, name } } })),
    ...ruleCommands(table),
  ];
  return { nftables: cmds };
}

export function deleteTableDocument(table = DEFAULT_TABLE): NftDocument {
  return { nftables: [{ delete: { table: { family: TABLE_FAMILY, name: table } } }] };
}

// ---------------------------------------------------------------------------------------------
// Operations as documents

export function addMasqueradeDocument(subnet: string, owner?: string, table = DEFAULT_TABLE): NftDocument {
  return { nftables: elementCommands('add', [masqueradeElement(subnet, owner)], table) };
}

export function removeMasqueradeDocument(subnet: string, table = DEFAULT_TABLE): NftDocument {
  return { nftables: elementCommands('delete', [masqueradeElement(subnet)], table) };
}

/**
 * Adds one mapping: the map entry with `create` (fails with EEXIST if the port is taken — never
 * silently overwritten), the loopback and hairpin entries with `add` (shared by the owner's other
 * mappings of the same address).
 */
export function addPortMappingDocument(mapping: PortMapping, table = DEFAULT_TABLE): NftDocument {
  return addPortMappingsDocument([mapping], table);
}

/** Several mappings in one transaction (each map entry with `create`; shared hairpins once). */
export function addPortMappingsDocument(mappings: readonly PortMapping[], table = DEFAULT_TABLE): NftDocument {
  const byId = new Map<string, FwElement>();
  for (const e of mappings.flatMap(mappingElements)) if (!byId.has(elementId(e))) byId.set(elementId(e), e);
  const els = [...byId.values()];
  const maps = els.filter((e) => MAPS.has(e.set));
  const rest = els.filter((e) => !MAPS.has(e.set));
  return { nftables: [...elementCommands('create', maps, table), ...elementCommands('add', rest, table)] };
}

/** Deletes the given elements and adds others, in one transaction. */
export function changeDocument(remove: readonly FwElement[], add: readonly FwElement[], table = DEFAULT_TABLE): NftDocument {
  return { nftables: [...elementCommands('delete', remove, table), ...elementCommands('add', add, table)] };
}

/**
 * The elements to delete so that none of an owner's mappings remain, computed from what the caller
 * itself added (`mine`: that owner's live mappings, normalised) instead of a listing of the table:
 * the map and loopback entries, and the hairpin entry of each address they target. Undefined when
 * that cannot be decided without the kernel's view: there are no known mappings, or another
 * owner's mapping targets one of these addresses too (`shared`; the hairpin entry then passes to
 * an heir — ownerRemoval() on a listing does that).
 */
export function knownOwnerRemoval(mine: readonly PortMapping[], shared: (address: string) => boolean): FwElement[] | undefined {
  if (mine.length === 0) return undefined;
  const remove: FwElement[] = [];
  const seen = new Set<string>();
  for (const m of mine) {
    if (shared(m.containerAddress)) return undefined;
    for (const e of mappingElements(m)) {
      const id = elementId(e);
      if (seen.has(id)) continue;
      seen.add(id);
      remove.push(e);
    }
  }
  return remove;
}

/**
 * What to change so that none of `owner`'s mappings remain: its map and loopback entries go; a
 * hairpin entry goes when no remaining mapping targets its address, and passes to the owner of a
 * remaining mapping that still does (so no element keeps naming a removed owner).
 */
export function ownerRemoval(current: readonly FwElement[], owner: string): ReconcilePlan {
  const gone = current.filter((e) => MAPS.has(e.set) && e.owner === owner);
  const goneIds = new Set(gone.map(elementId));
  const remaining = current.filter((e) => (e.set === 'ports4' || e.set === 'ports6') && !goneIds.has(elementId(e)));
  const targetOwner = new Map<string, string | undefined>();
  for (const e of remaining) {
    const addr = (e.data ?? '').split(' . ')[0] ?? '';
    if (!targetOwner.has(addr)) targetOwner.set(addr, e.owner);
  }
  const goneTargets = new Set(gone.map((e) => (e.data ?? '').split(' . ')[0]));
  const remove: FwElement[] = [...gone];
  const add: FwElement[] = [];
  for (const e of current) {
    if (e.set !== 'hairpin4' && e.set !== 'hairpin6') continue;
    const addr = e.key.split(' . ')[0] ?? '';
    if (!targetOwner.has(addr)) {
      if (goneTargets.has(addr) || e.owner === owner) remove.push(e);
    } else if (e.owner === owner) {
      remove.push(e);
      const heir = targetOwner.get(addr);
      add.push(heir === undefined ? { set: e.set, key: e.key } : { set: e.set, key: e.key, owner: heir });
    }
  }
  return { remove, add };
}

/**
 * Replaces whatever the table maps (protocol, host port) to, in the mapping's family, by `mapping`:
 * the old map and loopback entries go, the old target's hairpin entry goes unless another
 * remaining mapping still targets it, the new entries come. Empty when the table already holds
 * exactly this mapping. The caller checks ownership first.
 */
export function replacementPlan(current: readonly FwElement[], mapping: PortMapping): ReconcilePlan {
  const m = normaliseMapping(mapping);
  const want = mappingElements(m);
  const key = portKey(m.protocol, m.hostPort);
  const mapSet: SetName = m.family === 4 ? 'ports4' : 'ports6';
  const old = current.filter((e) => e.key === key && (e.set === mapSet || (m.family === 4 && e.set === 'ports_lo4')));
  const same = (a: FwElement, b: FwElement): boolean => a.set === b.set && a.key === b.key && a.data === b.data && a.owner === b.owner;
  const wantMaps = want.filter((e) => MAPS.has(e.set));
  const hairpin = want.find((e) => !MAPS.has(e.set)) as FwElement;
  if (old.length === wantMaps.length && old.every((o) => wantMaps.some((w) => same(o, w))) && current.some((e) => e.set === hairpin.set && e.key === hairpin.key)) {
    return { remove: [], add: [] };
  }
  const oldTargets = new Set(old.map((e) => (e.data ?? '').split(' . ')[0]));
  const oldIds = new Set(old.map(elementId));
  const stillTargeted = new Set(current.filter((e) => (e.set === 'ports4' || e.set === 'ports6') && !oldIds.has(elementId(e)))
    .map((e) => (e.data ?? '').split(' . ')[0]));
  stillTargeted.add(m.containerAddress);
  const staleHairpins = current.filter((e) => (e.set === 'hairpin4' || e.set === 'hairpin6')
    && oldTargets.has(e.key.split(' . ')[0]) && !stillTargeted.has(e.key.split(' . ')[0] ?? ''));
  return { remove: [...old, ...staleHairpins], add: want };
}

export interface ReconcilePlan {
  remove: FwElement[];
  add: FwElement[];
}

/**
 * The changes that turn `current` into `desired`: elements missing or different are (re)added,
 * elements not desired are removed — but only those whose owner `owns` (default: all), so a
 * sidecar reconciling its containers leaves other owners' entries alone. Hairpin entries follow
 * the mappings: an unwanted hairpin whose address no desired mapping targets is removed.
 */
export function reconcilePlan(current: readonly FwElement[], desired: FirewallState, owns: (owner: string | undefined) => boolean = () => true): ReconcilePlan {
  const want = desiredElements(desired);
  const wantById = new Map(want.map((e) => [elementId(e), e]));
  const curById = new Map(current.map((e) => [elementId(e), e]));
  const remove: FwElement[] = [];
  const add: FwElement[] = [];
  for (const c of current) {
    const w = wantById.get(elementId(c));
    if (w) {
      if (w.data !== c.data || w.owner !== c.owner || c.keyExpr !== undefined) {
        remove.push(c);
        add.push(w);
      }
    } else if (owns(c.owner)) {
      remove.push(c);
    }
  }
  for (const w of want) if (!curById.has(elementId(w))) add.push(w);
  return { remove, add };
}

/** The whole state as an `nft -f`-like text, for logs and `--verbose`. */
export function describeState(state: FirewallState): string {
  const lines = [
    ...state.masquerade.map((m) => `masquerade ${m.subnet}${m.owner ? ` (${m.owner})` : ''}`),
    ...state.ports.map((p) => `${describeMapping(p)}${p.loopback ? ' +127.0.0.1' : ''} (${p.owner})`),
  ];
  return lines.join('\n');
}
