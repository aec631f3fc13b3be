// Applies the firewall (rules.ts) through libnftables, in-process: one long-lived libnftables
// context per network namespace (sys().nftRun), one transaction per operation, element by element
// — the table is never reloaded, so established connections and other owners' entries are never
// disturbed. See rules.ts for the layout and why it is shaped so. A port mapping's element changes
// skip libnftables (its cache refresh before every command cost ~3/4 of the time): nfnl.ts sends
// the same nf_tables messages itself.
//
// Ownership lives in the kernel (element comments), so any process — the sidecar, an embedded
// launcher, a sidecar restarted after a crash — sees the same truth; reconcile() turns the table
// into a desired state with no duplicates and no leftovers. The instance also remembers what it
// added (per owner and per target address), so removePortMappings(owner) deletes exactly those
// elements in one transaction without listing the table — a listing costs time in proportion to
// every mapping of every container (≈8 ms with 200 others). A caller whose record names the owner's
// host ports (a DEL in a new process: the reservation, the CNI record) passes them: the elements at
// those keys are looked up (nfnl.ts lookup(), no listing) and those that are the owner's deleted.
// The listing is the fallback: for an owner nobody knows the ports of, for an address another owner
// this instance knows targets too, and when the kernel says otherwise than the record (a recorded
// port not the owner's, an element already gone: what a crash leaves) — the listing then finds
// everything of the owner.
//
// Like systemd (firewall-util-nft.c), an element operation that fails with ENOENT (the table went
// away, e.g. `nft flush ruleset`) re-creates the table and retries once; on top of systemd, this
// instance also re-adds what it had added, so a flush costs the running containers nothing.
//
// Forwarding (net.ipv4.ip_forward / net.ipv6.conf.all.forwarding) and route_localnet for the
// loopback variant are sysctls of links and namespaces, set by the link layer, not here.
import { errorMessage, NspawnError } from '../../errors.js';
import { logger } from '../../log.js';
import { sys, type NftResult } from '../../native.js';
import type { NftCommand, NftDocument, NftListing } from './nft-json.js';
import {
  addMasqueradeDocument, addPortMappingsChanges, assertOwner, changesDocument, knownOwnerRemoval, assertTableName, changeDocument, DEFAULT_TABLE,
  deleteTableDocument, describeMapping, elementId, elementLine, elementsFromListing, layoutDocument, layoutMapsScript, mappingElements,
  masqueradeElement, normaliseMapping, normaliseSubnet, ownerRemoval, portKey, reconcilePlan, removeMasqueradeDocument, replacementPlan,
  stateFromElements, TABLE_FAMILY, type ElementChange, type FirewallState, type FwElement, type MasqueradeEntry, type PortMapping, type Protocol,
  type SetName,
} from './rules.js';
import { directChange, NfnlElements } from './nfnl.js';
import { layoutFromListing, NfnlDump, NfnlDumpError, type TableLayout } from './nfnl-dump.js';
import { settledListing } from './settle.js';

const log = logger('firewall');

/** The kernel's (or libnftables') answer, recognised in its error text. */
export type NftErrno = 'ENOENT' | 'EEXIST' | 'EBUSY' | 'EOPNOTSUPP' | 'EPERM' | 'EINVAL' | 'EOVERFLOW' | 'ENOMEM';

const ERRNO_TEXT: Array<[RegExp, NftErrno]> = [
  [/No such file or directory|does not exist/, 'ENOENT'],
  [/File exists|overlaps with an existing/, 'EEXIST'],
  [/Device or resource busy/, 'EBUSY'],
  [/Operation not supported/, 'EOPNOTSUPP'],
  [/Operation not permitted/, 'EPERM'],
  [/Value too large/, 'EOVERFLOW'],
  [/Cannot allocate memory/, 'ENOMEM'],
  [/Invalid argument/, 'EINVAL'],
];

function cleanNftError(text: string): string {
  const lines = text.split('\n').map((l) => l.replace(/^internal:\d+:\d+-\d+: /, '').trim()).filter((l) => l && !/^\^+$/.test(l));
  return [...new Set(lines)].join('; ');
}

/** libnftables refused a command: `rc` and its error text (`stderr`), and what we were doing. */
export class NftError extends NspawnError {
  readonly rc: number;
  readonly stderr: string;
  /** errno recognised in the error text, when there is one */
  readonly errno?: NftErrno;

  /**
   * `what`: the operation and its object ("forwarding tcp port 8080 → 10.0.0.2:80 for web in table
   * inet nspawn-ts"); `reason`: our explanation when we know better than the kernel's text.
   */
  constructor(what: string, result: Pick<NftResult, 'rc' | 'error'>, code = 'NFT_FAILED', reason?: string) {
    const detail = cleanNftError(result.error) || `libnftables returned ${result.rc} without a message`;
    super(code, `nftables: ${what} failed: ${reason ? `${reason} (${detail})` : detail}`);
    this.rc = result.rc;
    this.stderr = result.error;
    const errno = ERRNO_TEXT.find(([re]) => re.test(result.error))?.[1];
    if (errno) this.errno = errno;
  }
}

/**
 * How commands reach libnftables; replaceable in tests. A replaced runner also gets the element
 * changes of port mappings (as JSON documents), which otherwise go to the kernel directly (nfnl.ts).
 */
export type NftRunner = (command: string) => NftResult;

export interface FirewallOptions {
  /** The network namespace to work in (default: the caller's). Call close() before closing the fd. */
  netnsFd?: number;
  /** Table name (default "nspawn-ts"); the family is always inet. */
  table?: string;
  runner?: NftRunner;
}

export interface ReconcileOptions {
  /**
   * Which owners this caller speaks for: entries of other owners are left alone even when not in
   * `desired`. Default: every owner (the table is the caller's alone).
   */
  owns?: (owner: string | undefined) => boolean;
  /** the table's elements as the caller just read them (elements()): the first look, not listed again */
  current?: readonly FwElement[];
}

export interface ReconcileResult {
  added: FwElement[];
  removed: FwElement[];
}

/** A base chain of another table that drops what our containers need. */
export interface FirewallBlocker {
  family: string;
  table: string;
  chain: string;
  hook: 'forward' | 'input';
  /** what it means for containers, in words */
  effect: string;
}

/** A host port (protocol and number): where a mapping sits in our maps, whatever its target. */
export interface HostPort {
  protocol: Protocol;
  hostPort: number;
}

type KnownMapping = PortMapping & { family: 4 | 6 };

/** The mappings this instance added and has not removed, indexed by owner and by target address. */
class KnownPorts {
  private readonly byKey = new Map<string, KnownMapping>();
  private readonly byOwner = new Map<string, Set<string>>();
  /** address → owner → number of mappings */
  private readonly byAddress = new Map<string, Map<string, number>>();

  static keyOf(m: KnownMapping): string {
    return `${m.family} ${portKey(m.protocol, m.hostPort)}`;
  }

  values(): IterableIterator<KnownMapping> {
    return this.byKey.values();
  }

  set(m: KnownMapping): void {
    const key = KnownPorts.keyOf(m);
    this.delete(key);
    this.byKey.set(key, m);
    let keys = this.byOwner.get(m.owner);
    if (!keys) this.byOwner.set(m.owner, (keys = new Set()));
    keys.add(key);
    let owners = this.byAddress.get(m.containerAddress);
    if (!owners) this.byAddress.set(m.containerAddress, (owners = new Map()));
    owners.set(m.owner, (owners.get(m.owner) ?? 0) + 1);
  }

  delete(key: string): void {
    const m = this.byKey.get(key);
    if (!m) return;
    this.byKey.delete(key);
    const keys = this.byOwner.get(m.owner);
    keys?.delete(key);
    if (keys?.size === 0) this.byOwner.delete(m.owner);
    const owners = this.byAddress.get(m.containerAddress);
    const n = (owners?.get(m.owner) ?? 0) - 1;
    if (n > 0) owners?.set(m.owner, n);
    else owners?.delete(m.owner);
    if (owners?.size === 0) this.byAddress.delete(m.containerAddress);
  }

  ofOwner(owner: string): KnownMapping[] {
    return [...(this.byOwner.get(owner) ?? [])].map((k) => this.byKey.get(k) as KnownMapping);
  }

  /** Whether an owner other than `owner` has a mapping to `address`. */
  sharedWithOthers(address: string, owner: string): boolean {
    const owners = this.byAddress.get(address);
    return owners !== undefined && (owners.size > 1 || !owners.has(owner));
  }

  deleteOwner(owner: string): void {
    for (const k of [...(this.byOwner.get(owner) ?? [])]) this.delete(k);
  }

  clear(): void {
    this.byKey.clear();
    this.byOwner.clear();
    this.byAddress.clear();
  }
}

/** A mapping as callers gave it (without the family we keep alongside). */
function plainMapping(m: KnownMapping): PortMapping {
  const out: PortMapping = { protocol: m.protocol, hostPort: m.hostPort, containerAddress: m.containerAddress, containerPort: m.containerPort, owner: m.owner };
  if (m.loopback) out.loopback = true;
  return out;
}

export class Firewall {
  readonly table: string;
  private readonly run: NftRunner;
  private readonly netnsFd: number | undefined;
  /** Port mappings' element changes sent as netlink messages of our own (none with a test runner). */
  private readonly direct: NfnlElements | undefined;
  /** The layout and masquerade checks as nf_tables dumps of our own (none with a test runner). */
  private readonly dumps: NfnlDump | undefined;
  /** What this instance added and has not removed: replayed after the table vanished. */
  private readonly knownMasq = new Map<string, string | undefined>();
  private readonly knownPorts = new KnownPorts();

  constructor(opts: FirewallOptions = {}) {
    this.table = opts.table ?? DEFAULT_TABLE;
    assertTableName(this.table);
    this.netnsFd = opts.netnsFd;
    const netnsFd = opts.netnsFd;
    this.run = opts.runner ?? ((cmd) => sys().nftRun(cmd, netnsFd === undefined ? {} : { netnsFd }));
    this.direct = opts.runner ? undefined : new NfnlElements(netnsFd);
    this.dumps = opts.runner ? undefined : new NfnlDump(netnsFd);
  }

  private get where(): string {
    return `table ${TABLE_FAMILY} ${this.table}`;
  }

  private exec(command: string | NftDocument, what: string, code?: string): string {
    const text = typeof command === 'string' ? command : JSON.stringify(command);
    let r = this.run(text);
    // a signal (SIGCHLD of a container's end) can interrupt libnftables' netlink receive; its
    // operations are element adds and deletes, so running the command again is safe
    for (let i = 0; i < 3 && r.rc !== 0 && /Interrupted system call/.test(r.error); i++) r = this.run(text);
    if (r.rc !== 0) throw new NftError(what, r, code);
    return r.output;
  }

  /**
   * Element changes of port maps and hairpin sets in one transaction: as our own netlink batch
   * (no cache refresh by libnftables before it: see nfnl.ts), else as a document through libnftables.
   */
  private change(changes: readonly ElementChange[], what: string): void {
    const r = this.direct && directChange(changes) ? this.direct.apply(changes, this.table) : undefined;
    if (r === undefined) this.exec(changesDocument(changes, this.table), what);
    else if (r.rc !== 0) throw new NftError(what, r);
  }

  /**
   * Creates the table, chains, sets and maps if missing and (re)writes our chains' rules, keeping
   * every element. Idempotent; safe at every start and while other processes use the table.
   */
  ensureTables(): void {
    this.exec(layoutMapsScript(this.table), `creating the maps of ${this.where}`);
    this.exec(layoutDocument(this.table), `setting up chains, sets and rules of ${this.where}`);
  }

  /** Deletes our table with everything in it (other tables are never touched). Absent is fine. */
  removeTables(): void {
    try {
      this.exec(deleteTableDocument(this.table), `deleting ${this.where}`);
    } catch (err) {
      if (!(err instanceof NftError && err.errno === 'ENOENT')) throw err;
    }
    this.knownMasq.clear();
    this.knownPorts.clear();
  }

  /** Releases the namespace's libnftables context and our netlink socket (before the caller closes netnsFd). */
  close(): void {
    this.direct?.close();
    this.dumps?.close();
    if (this.netnsFd !== undefined) sys().nftForget(this.netnsFd);
  }

  /**
   * The table's elements ([] when the table does not exist), from a listing a second read agrees
   * with — our own dumps of the sets, or else the next listing: a single listing taken while the
   * kernel resizes a hash set can be torn (settle.ts). Every read of the elements that the firewall
   * acts on comes here.
   */
  elements(): FwElement[] {
    const dumps = this.dumps;
    return settledListing(() => this.listElements(), {
      idOf: elementId, lineOf: elementLine, what: `the elements of ${this.where}`,
      ...(dumps ? { confirm: (listed: readonly FwElement[]) => this.dumpsAgree(dumps, listed) } : {}),
    });
  }

  /**
   * Whether our own dumps of the sets, read now, hold what `listed` holds (the second read of
   * elements(), far cheaper than a listing). Undefined where they cannot tell — a map element not
   * in our shape, a dump that failed: the next listing is the second read then.
   */
  private dumpsAgree(dumps: NfnlDump, listed: readonly FwElement[]): boolean | undefined {
    // a range that is no prefix (added by hand) is not among the masquerade dumps' subnets
    const isRange = (e: FwElement): boolean => e.keyExpr !== undefined && (e.set === 'masq4' || e.set === 'masq6');
    if (listed.some((e) => e.keyExpr !== undefined && !isRange(e))) return undefined;
    let dumped: FwElement[] | undefined;
    try {
      dumped = dumps.elements(this.table);
    } catch (err) {
      if (err instanceof NfnlDumpError) return undefined;
      throw err;
    }
    if (!dumped) return undefined;
    const want = listed.filter((e) => !isRange(e));
    return dumped.length === want.length && dumped.map(elementLine).sort().join('\n') === want.map(elementLine).sort().join('\n');
  }

  /** One listing of the table's elements (possibly torn: see elements()). */
  private listElements(): FwElement[] {
    const r = this.run(`list table ${TABLE_FAMILY} ${this.table}`);
    if (r.rc !== 0) {
      const err = new NftError(`listing ${this.where}`, r);
      if (err.errno === 'ENOENT') return [];
      throw err;
    }
    return elementsFromListing(JSON.parse(r.output) as NftListing, this.table);
  }

  /**
   * The elements at these (set, key) places, looked up key by key (time independent of the table's
   * size); none where the table is absent. Undefined with a test runner (no netlink of our own).
   */
  private elementsAt(places: ReadonlyArray<{ set: SetName; key: string }>): FwElement[] | undefined {
    if (!this.direct) return undefined;
    if (places.length === 0) return [];
    const r = this.direct.lookup(places.map((p) => ({ table: this.table, set: p.set, key: p.key })));
    if ('failed' in r) throw new NftError(`looking up ${places.length} element(s) of ${this.where}`, r.failed);
    return places.flatMap((p, i) => {
      const f = r.found[i];
      if (!f) return [];
      const e: FwElement = { set: p.set, key: p.key };
      if (f.data !== undefined) e.data = f.data;
      if (f.owner !== undefined) e.owner = f.owner;
      return [e];
    });
  }

  /**
   * The mappings at these host ports (both families), read key by key — no listing: a port check's
   * cost does not grow with the mappings of other containers. The loopback flag is not looked up.
   */
  portMappingsAt(ports: readonly HostPort[]): PortMapping[] {
    const keys = [...new Set(ports.map((p) => portKey(p.protocol, p.hostPort)))];
    if (keys.length === 0) return [];
    const found = this.elementsAt(keys.flatMap((key) => [{ set: 'ports4' as const, key }, { set: 'ports6' as const, key }]));
    if (found === undefined) {
      const want = new Set(keys);
      return this.state().ports.filter((m) => want.has(portKey(m.protocol, m.hostPort)));
    }
    return stateFromElements(found).ports;
  }

  /**
   * The table's chains, sets and maps and its rules per chain (undefined when it does not exist),
   * read without any element (nfnl-dump.ts): its cost does not grow with the port mappings.
   */
  layout(): TableLayout | undefined {
    if (!this.dumps) {
      const r = this.run(`list table ${TABLE_FAMILY} ${this.table}`);
      if (r.rc === 0) return layoutFromListing(JSON.parse(r.output) as NftListing, this.table);
      const err = new NftError(`listing ${this.where}`, r);
      if (err.errno === 'ENOENT') return undefined;
      throw err;
    }
    try {
      return this.dumps.layout(this.table);
    } catch (err) {
      throw err instanceof NfnlDumpError ? new NftError(`listing ${this.where}`, { rc: -1, error: err.message }) : err;
    }
  }

  /** The masquerade entries (the masq4 and masq6 sets alone, not a listing of the table). */
  masquerade(): MasqueradeEntry[] {
    const dumps = this.dumps;
    if (!dumps) return this.state().masquerade;
    try {
      return [...dumps.intervals(this.table, 'masq4'), ...dumps.intervals(this.table, 'masq6')];
    } catch (err) {
      throw err instanceof NfnlDumpError ? new NftError(`listing the masquerade sets of ${this.where}`, { rc: -1, error: err.message }) : err;
    }
  }

  /** What the table holds: masqueraded subnets and port mappings with their owners. */
  state(): FirewallState {
    return stateFromElements(this.elements());
  }

  /** Runs an adding operation; if the table vanished, re-creates it, re-adds what we knew, retries. */
  private withRecovery<T>(op: () => T): T {
    try {
      return op();
    } catch (err) {
      if (!(err instanceof NftError && err.errno === 'ENOENT')) throw err;
      log.warn(`${this.where} is gone (was the ruleset flushed?); re-creating it`, { error: err.message });
      this.ensureTables();
      this.replayKnown();
      return op();
    }
  }

  private replayKnown(): void {
    const els: FwElement[] = [
      ...[...this.knownMasq].map(([subnet, owner]) => masqueradeElement(subnet, owner)),
      ...[...this.knownPorts.values()].flatMap(mappingElements),
    ];
    if (els.length) this.exec(changeDocument([], els, this.table), `restoring ${els.length} element(s) of ${this.where}`);
  }

  /** Masquerades traffic from `subnet` (network address and prefix; host bits are cleared). */
  addMasquerade(subnet: string, owner?: string): void {
    const el = masqueradeElement(subnet, owner);
    try {
      this.withRecovery(() => this.exec(addMasqueradeDocument(el.key, owner, this.table), `adding masquerade for ${el.key} to ${this.where}`));
    } catch (err) {
      if (err instanceof NftError && err.errno === 'EEXIST') {
        const clash = this.elements().filter((e) => e.set === el.set).map((e) => `${e.key}${e.owner ? ` (${e.owner})` : ''}`);
        throw new NftError(`adding masquerade for ${el.key}${owner ? ` (${owner})` : ''} to ${this.where}`,
          { rc: err.rc, error: err.stderr }, 'NFT_CONFLICT', `it overlaps the masqueraded subnets ${clash.join(', ')}`);
      }
      throw err;
    }
    this.knownMasq.set(el.key, owner);
  }

  /** Stops masquerading `subnet`. Absent (or no table) is fine. */
  removeMasquerade(subnet: string): void {
    const { subnet: key } = normaliseSubnet(subnet);
    this.knownMasq.delete(key);
    try {
      this.exec(removeMasqueradeDocument(key, this.table), `removing masquerade for ${key} from ${this.where}`);
    } catch (err) {
      if (!(err instanceof NftError && err.errno === 'ENOENT')) throw err;
    }
  }

  /**
   * Forwards hostPort to containerAddress:containerPort. The same mapping again is a no-op; the
   * same owner with a new target (the container's address changed) replaces it atomically; a port
   * another owner holds is refused (NftError NFT_PORT_IN_USE), never overwritten.
   */
  addPortMapping(mapping: PortMapping): void {
    const m = normaliseMapping(mapping);
    const what = `forwarding ${describeMapping(m)} for ${m.owner} in ${this.where}`;
    try {
      this.withRecovery(() => this.change(addPortMappingsChanges([m]), what));
    } catch (err) {
      if (!(err instanceof NftError && err.errno === 'EEXIST')) throw err;
      this.replaceMapping(m, what, err);
    }
    this.knownPorts.set(m);
  }

  /**
   * Adds several mappings in one transaction (a container's -p list): all of them or none. A port
   * another owner holds is refused (NFT_PORT_IN_USE naming every such port) and nothing changes;
   * entries of the same owner (a previous run, a changed address) are replaced, as addPortMapping.
   */
  addPortMappings(mappings: readonly PortMapping[]): void {
    const ms = mappings.map(normaliseMapping);
    if (ms.length === 0) return;
    if (ms.length === 1) {
      this.addPortMapping(ms[0] as PortMapping);
      return;
    }
    const what = `forwarding ${ms.length} ports (${ms.map((m) => `${m.protocol} ${m.hostPort}`).join(', ')}) for ${[...new Set(ms.map((m) => m.owner))].join(', ')} in ${this.where}`;
    try {
      this.withRecovery(() => this.change(addPortMappingsChanges(ms), what));
      for (const m of ms) this.knownPorts.set(m);
      return;
    } catch (err) {
      if (!(err instanceof NftError && err.errno === 'EEXIST')) throw err;
      // some port is there already: whose?
      const current = this.elements();
      const clashes = ms.flatMap((m) => {
        const holder = current.find((e) => e.set === (m.family === 4 ? 'ports4' : 'ports6') && e.key === portKey(m.protocol, m.hostPort));
        return holder && holder.owner !== m.owner
          ? [`${m.protocol} port ${m.hostPort} is already forwarded to ${(holder.data ?? '?').replace(' . ', ':')} for ${holder.owner ?? '(no owner)'}`] : [];
      });
      if (clashes.length) throw new NftError(what, { rc: err.rc, error: err.stderr }, 'NFT_PORT_IN_USE', clashes.join('; '));
    }
    // only the same owners' entries are in the way: replace them one by one, undoing on failure
    const done: PortMapping[] = [];
    try {
      for (const m of ms) {
        this.addPortMapping(m);
        done.push(m);
      }
    } catch (err) {
      for (const owner of new Set(done.map((m) => m.owner))) {
        try {
          this.removePortMappings(owner);
        } catch (undoErr) {
          log.warn(`undoing the port mappings of ${owner} failed: ${errorMessage(undoErr)}`);
        }
      }
      throw err;
    }
  }

  private replaceMapping(m: PortMapping & { family: 4 | 6 }, what: string, cause: NftError): void {
    for (let attempt = 0; ; attempt++) {
      const current = this.elements();
      const key = portKey(m.protocol, m.hostPort);
      const holder = current.find((e) => e.set === (m.family === 4 ? 'ports4' : 'ports6') && e.key === key);
      if (holder && holder.owner !== m.owner) {
        throw new NftError(what, { rc: cause.rc, error: cause.stderr }, 'NFT_PORT_IN_USE',
          `${m.protocol} port ${m.hostPort} is already forwarded to ${(holder.data ?? '?').replace(' . ', ':')} for ${holder.owner ?? '(no owner)'}`);
      }
      const plan = replacementPlan(current, m);
      if (plan.add.length === 0 && plan.remove.length === 0) return;
      try {
        this.exec(changeDocument(plan.remove, plan.add, this.table), `${what} (replacing ${holder?.data?.replace(' . ', ':') ?? 'a stale entry'})`);
        return;
      } catch (err) {
        // another process changed the table between our listing and our change: look again
        if (attempt < 2 && err instanceof NftError && (err.errno === 'ENOENT' || err.errno === 'EEXIST')) continue;
        throw err;
      }
    }
  }

  /**
   * Removes every mapping of `owner` (map, loopback and hairpin entries) in one transaction and
   * returns them. Nothing of other owners is touched; no mappings (or no table) is fine.
   * `recorded`: the host ports the caller's record says the owner forwards ([] : none), when it has
   * a record — the removal then looks up those keys instead of listing the table (see the header).
   */
  removePortMappings(owner: string, recorded?: readonly HostPort[]): PortMapping[] {
    assertOwner(owner);
    const mine = this.knownPorts.ofOwner(owner);
    const known = knownOwnerRemoval(mine, (address) => this.knownPorts.sharedWithOthers(address, owner));
    this.knownPorts.deleteOwner(owner);
    const what = `removing the port mappings of ${owner} from ${this.where}`;
    if (known) {
      // what we added, deleted as we know it: no listing
      try {
        this.change([{ verb: 'delete', elements: known }], what);
        return mine.map(plainMapping);
      } catch (err) {
        if (!(err instanceof NftError && err.errno === 'ENOENT')) throw err;
        log.debug(`some port mappings of ${owner} were already gone from ${this.where}; removing what is left`);
      }
    } else if (recorded && mine.length === 0) {
      const removed = this.removeRecorded(owner, recorded, what);
      if (removed) return removed;
      log.debug(`the port mappings of ${owner} in ${this.where} differ from its record; removing what the table holds`);
    }
    for (let attempt = 0; ; attempt++) {
      const current = this.elements();
      const plan = ownerRemoval(current, owner);
      if (plan.remove.length === 0) return [];
      try {
        this.exec(changeDocument(plan.remove, plan.add, this.table), `removing the port mappings of ${owner} from ${this.where}`);
        return stateFromElements(plan.remove).ports;
      } catch (err) {
        if (attempt < 2 && err instanceof NftError && err.errno === 'ENOENT') continue;
        throw err;
      }
    }
  }

  /**
   * removePortMappings by the owner's recorded host ports: the map entries there (both families,
   * loopback) that are the owner's, and the hairpin entries of their targets that are the owner's,
   * deleted in one transaction. Undefined when the kernel differs from the record — a recorded port
   * without an entry of the owner, an entry gone meanwhile — or cannot be read key by key (a test
   * runner): the caller lists the table then.
   */
  private removeRecorded(owner: string, recorded: readonly HostPort[], what: string): PortMapping[] | undefined {
    const keys = [...new Set(recorded.map((p) => portKey(p.protocol, p.hostPort)))];
    if (keys.length === 0) return [];
    const sets: SetName[] = ['ports4', 'ports6', 'ports_lo4'];
    const maps = this.elementsAt(keys.flatMap((key) => sets.map((set) => ({ set, key }))))?.filter((e) => e.owner === owner);
    if (!maps || !keys.every((k) => maps.some((e) => e.key === k && e.set !== 'ports_lo4'))) return undefined;
    // a hairpin entry names the first owner that targeted its address: ours go with us (an address
    // another owner targets too is not ours alone, and allocations give an address once)
    const targets = [...new Set(maps.map((e) => (e.data ?? '').split(' . ')[0] ?? ''))];
    const hairpins = (this.elementsAt(targets.map((a) => ({ set: a.includes(':') ? 'hairpin6' : 'hairpin4', key: `${a} . ${a}` }))) ?? [])
      .filter((e) => e.owner === owner);
    if (hairpins.some((e) => this.knownPorts.sharedWithOthers(e.key.split(' . ')[0] ?? '', owner))) return undefined;
    const remove = [...maps, ...hairpins];
    try {
      this.change([{ verb: 'delete', elements: remove }], what);
    } catch (err) {
      if (err instanceof NftError && err.errno === 'ENOENT') return undefined;
      throw err;
    }
    return stateFromElements(remove).ports;
  }

  /**
   * Makes the table hold exactly `desired` (for the owners this caller speaks for): creates the
   * table if needed, then adds what is missing, replaces what differs and removes leftovers, in
   * one transaction. For a sidecar that restarted: its records are `desired`.
   */
  reconcile(desired: FirewallState, opts: ReconcileOptions = {}): ReconcileResult {
    this.ensureTables();
    let done: ReconcileResult = { added: [], removed: [] };
    for (let attempt = 0; ; attempt++) {
      const plan = reconcilePlan(attempt === 0 && opts.current ? opts.current : this.elements(), desired, opts.owns);
      if (plan.add.length === 0 && plan.remove.length === 0) break;
      try {
        this.exec(changeDocument(plan.remove, plan.add, this.table),
          `reconciling ${this.where} (${plan.add.length} to add, ${plan.remove.length} to remove)`);
        done = { added: [...done.added, ...plan.add], removed: [...done.removed, ...plan.remove] };
        // another process may have changed the table meanwhile: a second look must find nothing
        if (attempt < 2) continue;
        break;
      } catch (err) {
        if (attempt < 2 && err instanceof NftError && (err.errno === 'ENOENT' || err.errno === 'EEXIST')) continue;
        throw err;
      }
    }
    this.knownMasq.clear();
    this.knownPorts.clear();
    for (const m of desired.masquerade) this.knownMasq.set(normaliseSubnet(m.subnet).subnet, m.owner);
    for (const p of desired.ports) this.knownPorts.set(normaliseMapping(p));
    return done;
  }

  /**
   * Base chains of other tables whose drop policy (an accept in our table cannot override a drop
   * elsewhere: every base chain of a hook is evaluated) would drop containers' forwarded traffic
   * or their DHCP/DNS to the host. For a warning that tells the user what to allow.
   */
  blockers(): FirewallBlocker[] {
    const r = this.run('list chains');
    if (r.rc !== 0) throw new NftError('listing chains', r);
    const out: FirewallBlocker[] = [];
    for (const o of (JSON.parse(r.output) as NftListing).nftables) {
      if (!('chain' in o)) continue;
      const c = o.chain;
      if (c.table === this.table && c.family === TABLE_FAMILY) continue;
      if (c.policy !== 'drop' || (c.hook !== 'forward' && c.hook !== 'input')) continue;
      if (!['ip', 'ip6', 'inet'].includes(c.family)) continue;
      out.push({
        family: c.family, table: c.table, chain: c.name, hook: c.hook,
        effect: c.hook === 'forward'
          ? `traffic forwarded to and from containers is dropped unless chain "${c.name}" of table ${c.family} ${c.table} accepts it (e.g. iifname "ve-*" accept; oifname "ve-*" ct state established,related accept)`
          : `DHCP and DNS from containers to the host are dropped unless chain "${c.name}" of table ${c.family} ${c.table} accepts them (e.g. iifname { "ve-*", "vz-*" } udp dport { 53, 67 } accept)`,
      });
    }
    return out;
  }

  /** Runs raw commands in this instance's namespace (for diagnostics and tests). */
  raw(commands: NftCommand[] | string): string {
    return this.exec(typeof commands === 'string' ? commands : { nftables: commands }, 'running commands');
  }
}
