// Reads our table's layout (chains, sets and maps, rules per chain) and the masquerade sets'
// elements with nf_tables netlink dumps of our own, filtered to our table — not through
// libnftables. Why: `list table` (and even `list chain` or a terse listing) makes libnftables fetch
// every element of every set, so checking the layout cost time in proportion to the port mappings
// (~600 KB of JSON and hundreds of ms at 10,000), and ~2-3 ms of CPU on a small table (context,
// cache refresh, JSON). These dumps carry no map elements: their size does not grow with mappings.
// elements() reads every set's elements, as the second read that confirms a listing (settle.ts):
// it decodes our own shapes only, so libnftables' listing stays what the firewall acts on.
//
// The requests are those libnftables 1.0.6 sends (strace of `nft list table`, `nft list set`; the
// unit golden): GETSET and GETRULE dumps filtered by NFTA_*_TABLE, GETSETELEM dumps naming set and
// table. The chain dump (which nft sends unfiltered) asks for family inet and names our table as
// `nft list chain` does; the kernel filters chain dumps by family only (6.18), so chains of other
// inet tables are skipped here.
import { POLL_READABLE, type NativeAddon, sys as nativeSys } from '../../native.js';
import { decodeAttrs, decodeMessages, encodeAttrs, formatIpBytes } from '../netlink/codec.js';
import * as C from '../netlink/constants.js';
import { errnoText } from '../netlink/errno.js';
import { attrs, type AttrTable, type WithUnknown } from '../netlink/policy.js';
import { Writer } from '../netlink/wire.js';
import { SET_NAMES, type FwElement, type MasqueradeEntry, type SetName } from './model.js';
import type { NftListing } from './nft-json.js';
import {
  addressPairText, commentOf, dataText, message, NFNL_SUBSYS_NFTABLES, NFPROTO_INET, NFT_MSG_GETSETELEM, openNfnlSocket, portKeyText, setElemListAttrs,
} from './nfnl.js';

const NFT_MSG_GETCHAIN = 4;
const NFT_MSG_GETRULE = 7;
const NFT_MSG_GETSET = 10;
/** enum nft_set_flags: a rule's inline set (`{ established, related }`), not listed as a set */
const NFT_SET_ANONYMOUS = 1;
/** enum nft_set_elem_flags: this element ends an interval (the key is the first address after it) */
const NFT_SET_ELEM_INTERVAL_END = 1;

// The attributes we send and read (<linux/netfilter/nf_tables.h>); the rest pass as unknownAttrs.
interface NftChainAttrs extends WithUnknown {
  table?: string;
  name?: string;
}
interface NftRuleAttrs extends WithUnknown {
  table?: string;
  chain?: string;
}
interface NftSetAttrs extends WithUnknown {
  table?: string;
  name?: string;
  flags?: number;
}

const chainAttrs = attrs<NftChainAttrs>('nft_chain', { 1: { key: 'table', type: 'string' }, 3: { key: 'name', type: 'string' } });
const ruleAttrs = attrs<NftRuleAttrs>('nft_rule', { 1: { key: 'table', type: 'string' }, 2: { key: 'chain', type: 'string' } });
const setAttrs = attrs<NftSetAttrs>('nft_set', { 1: { key: 'table', type: 'string' }, 2: { key: 'name', type: 'string' }, 3: { key: 'flags', type: 'be32' } });

/** One dump request: nlmsghdr (NLM_F_REQUEST|NLM_F_DUMP), nfgenmsg, the filter's attributes. */
function dumpRequest<T>(msgType: number, family: number, table: AttrTable<T>, filter: T, seq: number): Uint8Array {
  const w = new Writer(96);
  message(w, { type: (NFNL_SUBSYS_NFTABLES << 8) | msgType, flags: C.NLM_F_REQUEST | C.NLM_F_DUMP, seq, pid: 0 }, family, 0, () => encodeAttrs(table, w, filter));
  return w.finish();
}

export function chainDumpRequest(table: string, seq: number): Uint8Array {
  return dumpRequest(NFT_MSG_GETCHAIN, NFPROTO_INET, chainAttrs, { table }, seq);
}
export function ruleDumpRequest(table: string, seq: number): Uint8Array {
  return dumpRequest(NFT_MSG_GETRULE, NFPROTO_INET, ruleAttrs, { table }, seq);
}
export function setDumpRequest(table: string, seq: number): Uint8Array {
  return dumpRequest(NFT_MSG_GETSET, NFPROTO_INET, setAttrs, { table }, seq);
}
/** Attribute order as libnftnl writes it: the set, then the table. */
export function setElemDumpRequest(table: string, set: string, seq: number): Uint8Array {
  return dumpRequest(NFT_MSG_GETSETELEM, NFPROTO_INET, setElemListAttrs, { set, table }, seq);
}

/** What one dump answered: each message's attribute bytes (after its nfgenmsg), or the kernel's errno. */
export interface DumpAnswer {
  /** attribute areas of the answer's messages, in order */
  messages: Uint8Array[];
  done: boolean;
  /** errno of an NLMSG_ERROR (or of NLMSG_DONE) answering the dump */
  errno?: number;
  /** NLM_F_DUMP_INTR: the ruleset changed while it was dumped */
  interrupted: boolean;
}

/** Adds the messages of one received datagram (those of sequence `seq`) to `into`. */
export function readDumpDatagram(bytes: Uint8Array, seq: number, into: DumpAnswer): void {
  for (const m of decodeMessages(bytes, { share: true })) {
    if (m.nl.seq !== seq) continue;
    if (m.nl.flags & C.NLM_F_DUMP_INTR) into.interrupted = true;
    if (m.kind === 'done') {
      into.done = true;
      if (m.error !== 0) into.errno = -m.error;
    } else if (m.kind === 'error') {
      into.done = true;
      if (m.error !== 0) into.errno = -m.error;
    } else if (m.kind === 'raw' && m.payload.length >= 4) {
      into.messages.push(m.payload.subarray(4));
    }
  }
}

/** Our table's layout as the kernel holds it. */
export interface TableLayout {
  chains: Set<string>;
  /** sets and maps */
  sets: Set<string>;
  /** number of rules per chain */
  rules: Map<string, number>;
}

/** The same from libnftables' listing of the table (a Firewall with a test runner). */
export function layoutFromListing(listing: NftListing, table: string): TableLayout {
  const layout: TableLayout = { chains: new Set(), sets: new Set(), rules: new Map() };
  for (const o of listing.nftables) {
    if ('chain' in o && o.chain.table === table) layout.chains.add(o.chain.name);
    else if ('set' in o && o.set.table === table) layout.sets.add(o.set.name);
    else if ('map' in o && o.map.table === table) layout.sets.add(o.map.name);
    else if ('rule' in o && o.rule.table === table) layout.rules.set(o.rule.chain, (layout.rules.get(o.rule.chain) ?? 0) + 1);
  }
  return layout;
}

export function chainNames(messages: readonly Uint8Array[], table: string): Set<string> {
  const out = new Set<string>();
  for (const m of messages) {
    const a = decodeAttrs(chainAttrs, m);
    if (a.table === table && a.name !== undefined) out.add(a.name);
  }
  return out;
}

export function setNames(messages: readonly Uint8Array[], table: string): Set<string> {
  const out = new Set<string>();
  for (const m of messages) {
    const a = decodeAttrs(setAttrs, m);
    if (a.table === table && a.name !== undefined && !((a.flags ?? 0) & NFT_SET_ANONYMOUS)) out.add(a.name);
  }
  return out;
}

export function rulesPerChain(messages: readonly Uint8Array[], table: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of messages) {
    const a = decodeAttrs(ruleAttrs, m);
    if (a.table === table && a.chain !== undefined) out.set(a.chain, (out.get(a.chain) ?? 0) + 1);
  }
  return out;
}

function toBig(b: Uint8Array): bigint {
  let n = 0n;
  for (const x of b) n = (n << 8n) | BigInt(x);
  return n;
}

function fromBig(n: bigint, bytes: number): Uint8Array {
  const out = new Uint8Array(bytes);
  for (let i = bytes - 1; i >= 0; i--) {
    out[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return out;
}

/**
 * The subnets of an interval set's dump (masq4/masq6): the kernel keeps an interval as a start
 * element (with the comment) and an end element (NFT_SET_ELEM_INTERVAL_END, key = the first address
 * after it; none when the interval reaches the top of the address space). An interval that is not
 * one prefix (a range someone added by hand) is left out, as stateFromElements leaves it out.
 */
export function intervalSubnets(messages: readonly Uint8Array[], table: string, set: string): MasqueradeEntry[] {
  const els: Array<{ key: bigint; size: number; end: boolean; owner?: string }> = [];
  for (const m of messages) {
    const a = decodeAttrs(setElemListAttrs, m);
    if (a.table !== table || a.set !== set) continue;
    for (const e of a.elements?.elem ?? []) {
      const key = e.key?.value;
      if (!key || (key.length !== 4 && key.length !== 16)) continue;
      const owner = commentOf(e.userdata);
      els.push({ key: toBig(key), size: key.length, end: ((e.flags ?? 0) & NFT_SET_ELEM_INTERVAL_END) !== 0, ...(owner === undefined ? {} : { owner }) });
    }
  }
  els.sort((x, y) => (x.key < y.key ? -1 : x.key > y.key ? 1 : Number(y.end) - Number(x.end)));
  const out: MasqueradeEntry[] = [];
  els.forEach((start, i) => {
    if (start.end) return;
    const next = els[i + 1];
    const bits = BigInt(start.size * 8);
    const end = next?.end ? next.key : 1n << bits;
    const span = end - start.key;
    // a prefix: a power-of-two span starting at a multiple of it
    if (span <= 0n || (span & (span - 1n)) !== 0n || start.key % span !== 0n) return;
    let len = bits;
    for (let s = span; s > 1n; s >>= 1n) len--;
    const subnet = `${formatIpBytes(fromBig(start.key, start.size))}/${len}`;
    out.push(start.owner === undefined ? { subnet } : { subnet, owner: start.owner });
  });
  return out;
}

/**
 * The elements of a hash set's or map's dump (ports4/6, ports_lo4: protocol . port → address . port;
 * hairpin4/6: address . address) in our text form, as a listing gives them; undefined when one is
 * not in that shape (another protocol, added by hand).
 */
export function hashSetElements(messages: readonly Uint8Array[], table: string, set: SetName): FwElement[] | undefined {
  const out: FwElement[] = [];
  const keyText = set === 'hairpin4' || set === 'hairpin6' ? addressPairText : portKeyText;
  for (const m of messages) {
    const a = decodeAttrs(setElemListAttrs, m);
    if (a.table !== table || a.set !== set) continue;
    for (const e of a.elements?.elem ?? []) {
      const key = e.key?.value && keyText(e.key.value);
      const data = e.data?.value && dataText(e.data.value);
      if (key === undefined || (e.data?.value !== undefined && data === undefined)) return undefined;
      const el: FwElement = { set, key };
      if (data !== undefined) el.data = data;
      const owner = commentOf(e.userdata);
      if (owner !== undefined) el.owner = owner;
      out.push(el);
    }
  }
  return out;
}

type NfnlSys = Pick<NativeAddon, 'socket' | 'setsockoptInt' | 'bind' | 'sendto' | 'recv' | 'close' | 'pollFd'>;

/** A dump the kernel refused (errno); ENOENT: the table or set does not exist. */
export class NfnlDumpError extends Error {
  constructor(readonly errno: number, what: string) {
    super(`reading ${what} failed: ${errnoText(errno)}`);
  }
}

const ENOENT = 2;
/** How long to wait for the rest of a dump the kernel did not queue at once (it normally does). */
const DUMP_WAIT_MS = 2000;

/**
 * A NETLINK_NETFILTER socket (in a network namespace) for our dumps. The kernel queues a dump's
 * first part inside sendto() and each further part inside the recv() that reads the previous one,
 * so a dump is read without waiting.
 */
export class NfnlDump {
  private fd = -1;
  private seq = 1;
  private readonly buf = new Uint8Array(64 * 1024);

  constructor(private readonly netnsFd?: number, private readonly sys: NfnlSys = nativeSys()) {}

  /** Chains, sets and maps, and rules per chain of `table`; undefined when it does not exist. */
  layout(table: string): TableLayout | undefined {
    const chains = this.dump((seq) => chainDumpRequest(table, seq), `the chains of table inet ${table}`);
    const found = chainNames(chains ?? [], table);
    const sets = this.dump((seq) => setDumpRequest(table, seq), `the sets of table inet ${table}`);
    if (sets === undefined) return undefined; // no table (the set dump names it: ENOENT)
    const rules = this.dump((seq) => ruleDumpRequest(table, seq), `the rules of table inet ${table}`);
    return { chains: found, sets: setNames(sets, table), rules: rulesPerChain(rules ?? [], table) };
  }

  /** The subnets (and owners) of an interval set; [] when it or the table does not exist. */
  intervals(table: string, set: string): MasqueradeEntry[] {
    const messages = this.dump((seq) => setElemDumpRequest(table, set, seq), `set ${set} of table inet ${table}`);
    return messages ? intervalSubnets(messages, table, set) : [];
  }

  /**
   * Every element of our sets and maps, as a listing of the table gives them — except ranges that
   * are no prefix in the masquerade sets (intervals()); undefined when an element of a hash set or
   * map is not in our shape. [] when the table does not exist.
   */
  elements(table: string): FwElement[] | undefined {
    const out: FwElement[] = [];
    for (const set of SET_NAMES) {
      if (set === 'masq4' || set === 'masq6') {
        for (const m of this.intervals(table, set)) out.push(m.owner === undefined ? { set, key: m.subnet } : { set, key: m.subnet, owner: m.owner });
        continue;
      }
      const messages = this.dump((seq) => setElemDumpRequest(table, set, seq), `set ${set} of table inet ${table}`);
      const els = messages ? hashSetElements(messages, table, set) : [];
      if (!els) return undefined;
      out.push(...els);
    }
    return out;
  }

  close(): void {
    if (this.fd >= 0) this.sys.close(this.fd);
    this.fd = -1;
  }

  /** One dump's messages; undefined on ENOENT. Run again when the ruleset changed meanwhile. */
  private dump(request: (seq: number) => Uint8Array, what: string): Uint8Array[] | undefined {
    for (let attempt = 0; ; attempt++) {
      const seq = this.seq;
      this.seq = (this.seq + 1) % 0x7fffffff || 1;
      let answer: DumpAnswer;
      try {
        answer = this.exchange(request(seq), seq, what);
      } catch (err) {
        this.close(); // a dump left half read would make the next one EBUSY: start afresh
        throw err;
      }
      if (answer.errno === ENOENT) return undefined;
      if (answer.errno !== undefined) throw new NfnlDumpError(answer.errno, what);
      if (!answer.interrupted || attempt >= 3) return answer.messages;
    }
  }

  private exchange(bytes: Uint8Array, seq: number, what: string): DumpAnswer {
    const fd = this.open();
    this.sys.sendto(fd, bytes);
    const answer: DumpAnswer = { messages: [], done: false, interrupted: false };
    while (!answer.done) {
      const n = this.sys.recv(fd, this.buf, C.MSG_TRUNC);
      if (n < 0) {
        if (this.sys.pollFd(fd, POLL_READABLE, DUMP_WAIT_MS) === 0) throw new Error(`reading ${what}: the kernel did not finish its answer`);
        continue;
      }
      if (n > this.buf.length) throw new Error(`reading ${what}: an answer of ${n} bytes exceeds ${this.buf.length}`);
      // the messages are decoded before the next recv reuses the buffer: copy what is kept
      const before = answer.messages.length;
      readDumpDatagram(this.buf.subarray(0, n), seq, answer);
      for (let i = before; i < answer.messages.length; i++) answer.messages[i] = (answer.messages[i] as Uint8Array).slice();
    }
    return answer;
  }

  private open(): number {
    if (this.fd < 0) this.fd = openNfnlSocket(this.sys, this.netnsFd);
    return this.fd;
  }
}
