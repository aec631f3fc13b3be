// IPv4 subnets for container links, as systemd-networkd hands them out for `Address=0.0.0.0/28`
// (ve-*, 80-container-ve.network) and `Address=0.0.0.0/24` (vz-*, 80-container-vz.network) — but
// stable. networkd (src/network/networkd-address-pool.c) walks its pools in the order 192.168.0.0/16,
// 172.16.0.0/12, 10.0.0.0/8 and tries up to 1024 *random* subnets of each until one intersects no
// address it knows; the host takes the first address (subnet|1) and the DHCP server offers the rest
// (PoolOffset=1, PoolSize = 2^(32−len) − 2: every address but the network and broadcast, the
// server's own never handed out). A container's address therefore changes at every start.
//
// Here the candidate is derived from the link's key instead (the machine name for a veth, the zone
// name for a zone bridge): h = the first 8 bytes, big-endian, of SHA-256("nspawn-ts/subnet/v1\0" ‖
// kind ‖ "\0" ‖ key), and in each pool the search starts at subnet number h mod (subnets in pool),
// probing forward (wrapping) past anything in use. SHA-256 is fixed by standard, so the mapping
// holds across releases and Node versions; tests pin it with golden values. Once a key got a subnet
// it keeps it (also after release, while no one else takes it): a key moves only on a collision.
//
// "In use" is what the caller reports (host addresses and routes, any link, any scope) plus this
// pool's own allocations. Unlike networkd, routes count too, so a VPN's 10.0.0.0/8 route pushes us
// to another pool. Prefixes shorter than /8 (0.0.0.0/0, a VPN's 0.0.0.0/1 + 128.0.0.0/1) say where
// default traffic goes, not which subnets exist, and are ignored. Only IPv4: networkd's container
// files ask for no IPv6 pool (they use link-local and RAs). All address arithmetic is ip-address's.
import { Address4, Address6 } from 'ip-address';
import { sha256 } from '../common/sha256.js';
import { ConfigError, NspawnError } from '../errors.js';

export type LinkKind = 'veth' | 'zone';

/** networkd's prefix lengths: `Address=0.0.0.0/28` for ve-*, `/24` for vz-*. */
export const PREFIX_LENGTH: Readonly<Record<LinkKind, number>> = { veth: 28, zone: 24 };

/** networkd's IPv4 pools, in the order it tries them (address_pool_setup_default). */
export const DEFAULT_POOLS: readonly string[] = ['192.168.0.0/16', '172.16.0.0/12', '10.0.0.0/8'];

/** Prefixes shorter than this, reported as in use, are routing defaults, not subnets; ignored. */
export const MIN_IN_USE_PREFIX_LENGTH = 8;

/** The hash input's domain tag; changing it moves every machine's subnet (it is versioned for that). */
const HASH_DOMAIN = 'nspawn-ts/subnet/v1\0';

export interface SubnetAllocation {
  kind: LinkKind;
  key: string;
  /** "10.89.3.16/28" */
  subnet: string;
  network: string;
  prefixLength: number;
  netmask: string;
  /** the host side's address (first address of the subnet), also gateway and DHCP server */
  hostAddress: string;
  broadcast: string;
  /**
   * networkd's DHCPServer defaults for this subnet: addresses subnet+offset … subnet+offset+size−1
   * (the server's own inside but never handed out). sd-dhcp-server picks
   * subnet | (offset + (hash + i) mod size); the DHCP server needs offset and size to do the same.
   */
  dhcpPool: { offset: number; size: number; first: string; last: string };
  /** what clients can actually get: the pool minus the host address */
  clientRange: { first: string; last: string; count: number };
}

/** No free subnet of the requested size in any pool. */
export class SubnetPoolExhaustedError extends NspawnError {
  constructor(message: string) {
    super('POOL_EXHAUSTED', message);
  }
}

/** Persisted pool state that cannot be read back. */
export class PoolStateError extends NspawnError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('POOL_STATE_INVALID', message, options);
  }
}

interface Range {
  start: bigint;
  end: bigint;
}

interface Entry {
  kind: LinkKind;
  key: string;
  subnet: string;
  /** allocated now (a link exists) or only remembered for the next start */
  active: boolean;
  /** logical clock of the last allocate; the least recent remembered entries are forgotten first */
  used: number;
}

/** The JSON the sidecar stores and hands to SubnetPool.restore(). */
export interface PoolState {
  version: 1;
  entries: Array<{ kind: LinkKind; key: string; subnet: string; active: boolean; used: number }>;
}

export interface SubnetPoolOptions {
  /** IPv4 CIDR pools in the order tried; default networkd's (DEFAULT_POOLS) */
  pools?: readonly string[];
  /** how many released keys keep their subnet reserved for their return (default 4096) */
  rememberLimit?: number;
}

function id(kind: LinkKind, key: string): string {
  return `${kind}\0${key}`;
}

function rangeOf(a: Address4): Range {
  return { start: a.startAddress().bigInt(), end: a.endAddress().bigInt() };
}

function overlaps(a: Range, b: Range): boolean {
  return a.start <= b.end && b.start <= a.end;
}

/** The 64-bit start value for a key (exported for golden tests and diagnostics). */
export function keyHash(kind: LinkKind, key: string): bigint {
  const digest = sha256(HASH_DOMAIN + kind + '\0' + key);
  return digest.readBigUInt64BE(0);
}

function parsePool(pool: string): Address4 {
  let a: Address4;
  try {
    a = new Address4(pool);
  } catch {
    throw new ConfigError(`address pool '${pool}' is not an IPv4 prefix (e.g. 10.0.0.0/8)`, { code: 'CFG_POOL' });
  }
  if (!pool.includes('/')) {
    throw new ConfigError(`address pool '${pool}' has no prefix length (e.g. 10.0.0.0/8)`, { code: 'CFG_POOL' });
  }
  if (a.startAddress().correctForm() !== a.correctForm()) {
    throw new ConfigError(`address pool '${pool}' has host bits set; did you mean ${a.networkForm()}?`, { code: 'CFG_POOL' });
  }
  return a;
}

/** Describes `subnet` (a network in CIDR form) the way networkd would configure it. */
export function describeSubnet(kind: LinkKind, key: string, subnet: string): SubnetAllocation {
  const net = new Address4(subnet);
  const len = net.subnetMask;
  const size = 1n << BigInt(32 - len);
  const first = net.startAddress();
  const host = first.offset(1);
  const poolSize = Number(size) - 2;
  return {
    kind,
    key,
    subnet: net.networkForm(),
    network: first.correctForm(),
    prefixLength: len,
    netmask: net.subnetMaskAddress().correctForm(),
    hostAddress: host.correctForm(),
    broadcast: net.endAddress().correctForm(),
    dhcpPool: { offset: 1, size: poolSize, first: host.correctForm(), last: net.endAddressExclusive().correctForm() },
    clientRange: { first: first.offset(2).correctForm(), last: net.endAddressExclusive().correctForm(), count: poolSize - 1 },
  };
}

/** Parses what the caller reports as in use; IPv6 entries and routing defaults are dropped. */
function inUseRanges(inUse: readonly string[]): Array<Range & { text: string }> {
  const out: Array<Range & { text: string }> = [];
  for (const text of inUse) {
    if (Address4.isValid(text)) {
      const a = new Address4(text);
      if (a.subnetMask < MIN_IN_USE_PREFIX_LENGTH) continue;
      out.push({ ...rangeOf(a), text });
    } else if (!Address6.isValid(text)) {
      throw new NspawnError('POOL_BAD_PREFIX', `in-use prefix '${text}' is neither an IPv4 nor an IPv6 address/prefix`);
    }
  }
  return out;
}

/**
 * Allocates, remembers and releases subnets. Pure: it never looks at the host; the caller passes
 * what is in use and persists `serialize()`.
 */
export class SubnetPool {
  private readonly pools: Address4[];
  private readonly rememberLimit: number;
  private readonly entries = new Map<string, Entry>();
  private clock = 0;

  constructor(options: SubnetPoolOptions = {}) {
    const pools = options.pools ?? DEFAULT_POOLS;
    if (pools.length === 0) throw new ConfigError('no address pools configured', { code: 'CFG_POOL' });
    this.pools = pools.map(parsePool);
    this.rememberLimit = options.rememberLimit ?? 4096;
  }

  /**
   * The subnet for (`kind`, `key`): its current or remembered one if still free, else the first free
   * one from the key's hash. `inUse`: the host's addresses and routes ("192.0.2.5/24", "10.0.0.0/8");
   * an entry equal to the key's own previous subnet, or an address inside it with its prefix length
   * (what the link carried before a restart), counts as the key's own. Throws SubnetPoolExhaustedError.
   */
  allocate(kind: LinkKind, key: string, inUse: readonly string[] = []): SubnetAllocation {
    if (kind !== 'veth' && kind !== 'zone') throw new NspawnError('POOL_BAD_KIND', `unknown link kind '${String(kind)}' (veth or zone)`);
    if (key.length === 0) throw new NspawnError('POOL_BAD_KEY', 'an allocation key (machine or zone name) must not be empty');
    const len = PREFIX_LENGTH[kind];
    const myId = id(kind, key);
    const previous = this.entries.get(myId);
    const prevNet = previous ? new Address4(previous.subnet) : undefined;
    const used = inUseRanges(inUse).filter((r) => {
      if (!prevNet) return true;
      const a = new Address4(r.text);
      return !(a.subnetMask === prevNet.subnetMask && a.isInSubnet(prevNet));
    });
    const active: Range[] = [];
    const remembered: Range[] = [];
    for (const [eid, e] of this.entries) {
      if (eid === myId) continue;
      (e.active ? active : remembered).push(rangeOf(new Address4(e.subnet)));
    }
    const hard: Range[] = [...used, ...active];

    let chosen: Address4 | undefined;
    if (prevNet && prevNet.subnetMask === len && this.inPools(prevNet)) {
      const r = rangeOf(prevNet);
      if (!hard.some((h) => overlaps(h, r))) chosen = prevNet;
    }
    const h = keyHash(kind, key);
    chosen ??= this.probe(len, h, [...hard, ...remembered]) ?? this.probe(len, h, hard);
    if (!chosen) {
      throw new SubnetPoolExhaustedError(
        `no free /${len} subnet for ${kind === 'veth' ? 'machine' : 'zone'} '${key}' in ${this.pools.map((p) => p.networkForm()).join(', ')}: ` +
        `${used.length} host prefix(es) and ${active.length} allocation(s) cover them; release links or configure another pool`);
    }
    this.entries.set(myId, { kind, key, subnet: chosen.networkForm(), active: true, used: ++this.clock });
    this.forgetOld();
    return describeSubnet(kind, key, chosen.networkForm());
  }

  /** Marks the key's subnet free; it stays reserved for the key unless someone else needs it. */
  release(kind: LinkKind, key: string): boolean {
    const e = this.entries.get(id(kind, key));
    if (!e || !e.active) return false;
    e.active = false;
    this.forgetOld();
    return true;
  }

  /** Drops every trace of the key (e.g. the machine was removed for good). */
  forget(kind: LinkKind, key: string): boolean {
    return this.entries.delete(id(kind, key));
  }

  /** The key's active allocation. */
  get(kind: LinkKind, key: string): SubnetAllocation | undefined {
    const e = this.entries.get(id(kind, key));
    return e?.active ? describeSubnet(e.kind, e.key, e.subnet) : undefined;
  }

  /** Every active allocation, in subnet order. */
  allocations(): SubnetAllocation[] {
    return [...this.entries.values()].filter((e) => e.active)
      .sort((a, b) => Number(new Address4(a.subnet).bigInt() - new Address4(b.subnet).bigInt()))
      .map((e) => describeSubnet(e.kind, e.key, e.subnet));
  }

  serialize(): PoolState {
    return {
      version: 1,
      entries: [...this.entries.values()].map((e) => ({ kind: e.kind, key: e.key, subnet: e.subnet, active: e.active, used: e.used })),
    };
  }

  /**
   * Reads back `serialize()` output (parsed JSON). Entries from other pools are kept while active and
   * moved on at their next allocate. Throws PoolStateError on anything malformed or inconsistent.
   */
  static restore(state: unknown, options: SubnetPoolOptions = {}): SubnetPool {
    const pool = new SubnetPool(options);
    if (typeof state !== 'object' || state === null || (state as { version?: unknown }).version !== 1 ||
        !Array.isArray((state as { entries?: unknown }).entries)) {
      throw new PoolStateError('subnet pool state is not a version 1 {entries: [...]} object');
    }
    const activeRanges: Array<Range & { key: string }> = [];
    for (const [i, raw] of ((state as { entries: unknown[] }).entries).entries()) {
      const where = `subnet pool state entry ${i}`;
      if (typeof raw !== 'object' || raw === null) throw new PoolStateError(`${where} is not an object`);
      const r = raw as Record<string, unknown>;
      if (r.kind !== 'veth' && r.kind !== 'zone') throw new PoolStateError(`${where}: kind must be veth or zone`);
      if (typeof r.key !== 'string' || r.key === '') throw new PoolStateError(`${where}: key must be a non-empty string`);
      if (typeof r.subnet !== 'string' || !Address4.isValid(r.subnet) || !r.subnet.includes('/')) {
        throw new PoolStateError(`${where}: subnet must be an IPv4 prefix`);
      }
      const net = new Address4(r.subnet);
      if (net.subnetMask !== PREFIX_LENGTH[r.kind] || net.startAddress().correctForm() !== net.correctForm()) {
        throw new PoolStateError(`${where}: ${r.subnet} is not an aligned /${PREFIX_LENGTH[r.kind]} for a ${r.kind}`);
      }
      if (typeof r.active !== 'boolean') throw new PoolStateError(`${where}: active must be a boolean`);
      const used = typeof r.used === 'number' && Number.isSafeInteger(r.used) && r.used >= 0 ? r.used : 0;
      const k = id(r.kind, r.key);
      if (pool.entries.has(k)) throw new PoolStateError(`${where}: ${r.kind} '${r.key}' appears twice`);
      if (r.active) {
        const range = rangeOf(net);
        const clash = activeRanges.find((a) => overlaps(a, range));
        if (clash) throw new PoolStateError(`${where}: ${r.subnet} of '${r.key}' overlaps the allocation of '${clash.key}'`);
        activeRanges.push({ ...range, key: r.key });
      }
      pool.entries.set(k, { kind: r.kind, key: r.key, subnet: net.networkForm(), active: r.active, used });
      pool.clock = Math.max(pool.clock, used);
    }
    pool.forgetOld();
    return pool;
  }

  private inPools(net: Address4): boolean {
    return this.pools.some((p) => net.isInSubnet(p));
  }

  /** First free /len in pool order, starting each pool at the hash's subnet and wrapping. */
  private probe(len: number, h: bigint, blocked: readonly Range[]): Address4 | undefined {
    for (const pool of this.pools) {
      if (pool.subnetMask > len) continue;
      const count = 1n << BigInt(len - pool.subnetMask);
      const size = 1n << BigInt(32 - len);
      const base = pool.startAddress();
      const baseInt = base.bigInt();
      const start = h % count;
      // [start, count) then [0, start): on a collision jump past the blocker's last address
      for (const [from, to] of [[start, count], [0n, start]] as const) {
        let i = from;
        while (i < to) {
          const cand = new Address4(`${base.offset(i * size).correctForm()}/${len}`);
          const r = rangeOf(cand);
          let furthest: bigint | undefined;
          for (const b of blocked) if (overlaps(b, r) && (furthest === undefined || b.end > furthest)) furthest = b.end;
          if (furthest === undefined) return cand;
          // the blocker overlaps this candidate, so it ends at or after its start: always progress
          i = (furthest - baseInt) / size + 1n;
        }
      }
    }
    return undefined;
  }

  private forgetOld(): void {
    const remembered = [...this.entries.entries()].filter(([, e]) => !e.active);
    if (remembered.length <= this.rememberLimit) return;
    remembered.sort((a, b) => a[1].used - b[1].used);
    for (const [k] of remembered.slice(0, remembered.length - this.rememberLimit)) this.entries.delete(k);
  }
}
