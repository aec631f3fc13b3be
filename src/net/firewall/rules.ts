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
//
// Parts: model.ts (names, entries, checks), elements.ts (state ↔ elements ↔ JSON), layout.ts (chains,
// rules, sets and maps); this file: operations as documents and the reconcile plans.
import type { NftDocument } from './nft-json.js';
import {
  DEFAULT_TABLE, describeMapping, MAPS, normaliseMapping, type ElementChange, type FirewallState, type FwElement, type PortMapping, type SetName,
} from './model.js';
import { desiredElements, elementCommands, elementId, mappingElements, masqueradeElement, portKey } from './elements.js';

export * from './model.js';
export * from './elements.js';
export * from './layout.js';

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
  return changesDocument(addPortMappingsChanges(mappings), table);
}

/** The element changes of addPortMappingsDocument: map entries to create, hairpins to add. */
export function addPortMappingsChanges(mappings: readonly PortMapping[]): ElementChange[] {
  const byId = new Map<string, FwElement>();
  for (const e of mappings.flatMap(mappingElements)) if (!byId.has(elementId(e))) byId.set(elementId(e), e);
  const els = [...byId.values()];
  return [{ verb: 'create', elements: els.filter((e) => MAPS.has(e.set)) }, { verb: 'add', elements: els.filter((e) => !MAPS.has(e.set)) }];
}

/** Element changes as one document (one transaction), in order. */
export function changesDocument(changes: readonly ElementChange[], table = DEFAULT_TABLE): NftDocument {
  return { nftables: changes.flatMap((c) => elementCommands(c.verb, c.elements, table)) };
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
