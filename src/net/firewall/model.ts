// The firewall's model: the table's names, what it holds (port mappings, masquerade entries, their
// elements and owners), and the checks every input passes (rules.ts has the whole picture).
import { Address4, Address6 } from 'ip-address';
import { ConfigError } from '../../errors.js';
import type { NftExpr } from './nft-json.js';

export const DEFAULT_TABLE = 'nspawn-ts';
export const TABLE_FAMILY = 'inet';
/** Layout version, in the table's comment; bump when chains or sets change shape. */
export const LAYOUT_VERSION = 2;

export type Protocol = 'tcp' | 'udp';
export type SetName = 'masq4' | 'masq6' | 'ports4' | 'ports6' | 'ports_lo4' | 'hairpin4' | 'hairpin6';
export const SET_NAMES: readonly SetName[] = ['masq4', 'masq6', 'ports4', 'ports6', 'ports_lo4', 'hairpin4', 'hairpin6'];
export const MAPS: ReadonlySet<SetName> = new Set(['ports4', 'ports6', 'ports_lo4']);
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

/** Elements to create (EEXIST if present), add (no error if the same is present) or delete. */
export interface ElementChange {
  verb: 'create' | 'add' | 'delete';
  elements: readonly FwElement[];
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
  // IPv6 text has a colon and IPv4 text none: only the parser that can accept it is asked (ip-address
  // throws, with a stack trace, for each text it refuses; several per call of nspawn-cni)
  if (address.includes('/')) return undefined;
  if (!address.includes(':')) return Address4.isValid(address) ? 4 : undefined;
  return !address.includes('%') && Address6.isValid(address) ? 6 : undefined;
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
