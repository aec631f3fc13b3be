// Elements of the firewall's sets and maps: from the wanted state, from nft's listing (the kernel
// holds the truth, owners in comments), and as add/delete commands (rules.ts has the layout).
import type { NftCommand, NftElemWrapper, NftExpr, NftListing, NftMapElem } from './nft-json.js';
import { ConfigError } from '../../errors.js';
import {
  addressFamily, assertOwner, canonicalAddress, DEFAULT_TABLE, MAPS, normaliseMapping, normaliseSubnet, SET_NAMES, TABLE_FAMILY,
  type FirewallState, type FwElement, type PortMapping, type Protocol, type SetName,
} from './model.js';

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

export function elementId(e: FwElement): string {
  return `${e.set} ${e.key}`;
}

/** Everything of an element as one line ("ports4 tcp . 80 : 10.0.0.2 . 80 web"), for comparing listings. */
export function elementLine(e: FwElement): string {
  return `${e.set} ${e.key}${e.data === undefined ? '' : ` : ${e.data}`} ${e.owner ?? '-'}${e.keyExpr === undefined ? '' : ` ${JSON.stringify(e.keyExpr)}`}`;
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
