// Element changes of our port maps and hairpin sets as nf_tables netlink messages of our own (one
// NFNL batch = one transaction per change), not through libnftables. Why: before every command
// libnftables refreshes its cache of the ruleset (tables, chains, sets, objects and the elements of
// interval sets: ~8 netlink dumps), and each change bumps the ruleset's generation, so every change
// paid for a full re-read — ~3/4 of an addPortMapping's CPU time (perf, strace -c: 8.4 sendto and
// 13.4 recvmsg per change). Here a change is one sendto and the reading of its ACKs.
//
// The messages are those libnftables sends for the same `create|add|delete element` commands
// (captured with strace; test/unit/net/firewall-nfnl.test.ts holds its element bytes as the golden),
// except that each element message asks for an ACK (so success is an answer, not a silence) and
// carries no NFTA_SET_ELEM_LIST_SET_ID (that names sets made in the same batch; ours exist).
// Interval sets (masq4/masq6) stay with libnftables: their elements need its range and overlap logic.
//
// Lookups by key (lookup(): one NFT_MSG_GETSETELEM per key, as `nft get element` sends) answer "who
// holds this port" and "is this element still ours" in time independent of the number of other
// elements, where a listing (libnftables' `list table`) costs time in proportion to all of them.
import { type NftResult, sys as nativeSys, type NativeAddon } from '../../native.js';
import { beginAttr, beginMessage, decodeAttrs, decodeMessages, endAttr, endMessage, formatIpBytes, type NlMsgHeader, parseIp } from '../netlink/codec.js';
import * as C from '../netlink/constants.js';
import { errnoText } from '../netlink/errno.js';
import { attrs, type WithUnknown } from '../netlink/policy.js';
import { HOST_LE, Writer } from '../netlink/wire.js';
import type { ElementChange, FwElement, SetName } from './model.js';

const NETLINK_NETFILTER = 12;
export const NFNL_SUBSYS_NFTABLES = 10;
const NFNL_MSG_BATCH_BEGIN = 0x10;
const NFNL_MSG_BATCH_END = 0x11;
const NFT_MSG_NEWSETELEM = 12;
export const NFT_MSG_GETSETELEM = 13;
const NFT_MSG_DELSETELEM = 14;
export const NFPROTO_INET = 1;
/** nfgenmsg families of the tables we look into: ours (inet), systemd-nspawn's (ip, ip6) */
const NFPROTO: Record<NfFamily, number> = { inet: NFPROTO_INET, ip: 2, ip6: 10 };
const ENOENT = 2;
// enum nft_set_elem_list_attributes, nft_set_elem_attributes, nft_data_attributes, nft_list_attributes
const NFTA_SET_ELEM_LIST_TABLE = 1;
const NFTA_SET_ELEM_LIST_SET = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS = 3;
const NFTA_LIST_ELEM = 1;
const NFTA_SET_ELEM_KEY = 1;
const NFTA_SET_ELEM_DATA = 2;
const NFTA_SET_ELEM_FLAGS = 3;
const NFTA_SET_ELEM_USERDATA = 6;
const NFTA_DATA_VALUE = 1;
/** libnftnl's NFTNL_UDATA_SET_ELEM_COMMENT: the element's comment (our owner) in its user data */
const UDATA_SET_ELEM_COMMENT = 0;

// The element attributes we read (<linux/netfilter/nf_tables.h>): the answers of our lookups and of
// nfnl-dump.ts's element dumps; the rest pass as unknownAttrs.
interface NftDataAttrs extends WithUnknown {
  value?: Uint8Array;
}
interface NftElemAttrs extends WithUnknown {
  key?: NftDataAttrs;
  data?: NftDataAttrs;
  flags?: number;
  userdata?: Uint8Array;
}
interface NftElemListAttrs extends WithUnknown {
  elem?: NftElemAttrs[];
}
export interface NftSetElemListAttrs extends WithUnknown {
  table?: string;
  set?: string;
  elements?: NftElemListAttrs;
}
const dataAttrs = attrs<NftDataAttrs>('nft_data', { [NFTA_DATA_VALUE]: { key: 'value', type: 'bytes' } });
const elemAttrs = attrs<NftElemAttrs>('nft_set_elem', {
  [NFTA_SET_ELEM_KEY]: { key: 'key', type: 'nested', nlaFlags: C.NLA_F_NESTED, of: () => dataAttrs },
  [NFTA_SET_ELEM_DATA]: { key: 'data', type: 'nested', nlaFlags: C.NLA_F_NESTED, of: () => dataAttrs },
  [NFTA_SET_ELEM_FLAGS]: { key: 'flags', type: 'be32' },
  [NFTA_SET_ELEM_USERDATA]: { key: 'userdata', type: 'bytes' },
});
const elemListAttrs = attrs<NftElemListAttrs>('nft_list', { [NFTA_LIST_ELEM]: { key: 'elem', type: 'nested', multi: true, nlaFlags: C.NLA_F_NESTED, of: () => elemAttrs } });
export const setElemListAttrs = attrs<NftSetElemListAttrs>('nft_set_elem_list', {
  [NFTA_SET_ELEM_LIST_TABLE]: { key: 'table', type: 'string' },
  [NFTA_SET_ELEM_LIST_SET]: { key: 'set', type: 'string' },
  [NFTA_SET_ELEM_LIST_ELEMENTS]: { key: 'elements', type: 'nested', nlaFlags: C.NLA_F_NESTED, of: () => elemListAttrs },
});

/** The comment libnftnl keeps in an element's user data (TLVs: type, length, value). */
export function commentOf(userdata: Uint8Array | undefined): string | undefined {
  if (!userdata) return undefined;
  for (let i = 0; i + 2 <= userdata.length;) {
    const type = userdata[i] as number;
    const len = userdata[i + 1] as number;
    if (i + 2 + len > userdata.length) return undefined;
    if (type === UDATA_SET_ELEM_COMMENT) {
      const v = userdata.subarray(i + 2, i + 2 + len);
      const nul = v.indexOf(0);
      return Buffer.from(nul < 0 ? v : v.subarray(0, nul)).toString('utf8');
    }
    i += 2 + len;
  }
  return undefined;
}

/** The sets and maps whose elements go this way: hash-typed, keys and data of fixed-size fields. */
const DIRECT_SETS: ReadonlySet<SetName> = new Set(['ports4', 'ports6', 'ports_lo4', 'hairpin4', 'hairpin6']);
/** Keys looked up per sendto: their answers (~150 bytes each) must fit the socket's receive buffer. */
const LOOKUPS_PER_SEND = 128;
/** Elements per message (a netlink attribute's length is 16 bits). */
const PER_MESSAGE = 256;
/** Largest batch sent at once; a bigger change goes through libnftables. */
const MAX_BATCH = 128 * 1024;

type ElementVerb = ElementChange['verb'];

export type NfFamily = 'inet' | 'ip' | 'ip6';

/** An element to look up: its table, set and key (our text form, e.g. "tcp . 8080"). */
export interface ElementQuery {
  /** default inet */
  family?: NfFamily;
  table: string;
  set: string;
  key: string;
}

/** What the kernel holds under a looked-up key: the map's data ("10.0.0.2 . 80") and the comment. */
export interface FoundElement {
  data?: string;
  owner?: string;
}

/** Whether `changes` can be sent this way (hash sets only, each element in our canonical text form). */
export function directChange(changes: readonly ElementChange[]): boolean {
  return changes.every((c) => c.elements.every((e) => DIRECT_SETS.has(e.set) && e.keyExpr === undefined));
}

const PROTOCOLS: Record<string, number> = { tcp: 6, udp: 17 };

/**
 * Writes a key or data in our text form ("tcp . 8080", "10.0.0.2 . 80", "fd00::2 . fd00::2") as the
 * kernel's register bytes: each field in network order, padded to 4 bytes (NFT_REG32 alignment).
 */
function writeField(w: Writer, text: string): void {
  for (const p of text.split(' . ')) {
    const proto = PROTOCOLS[p];
    if (proto !== undefined) {
      w.u8(proto);
      w.zeros(3);
    } else if (/^\d{1,5}$/.test(p) && Number(p) <= 65535) {
      w.be16(Number(p));
      w.zeros(2);
    } else {
      w.bytes(parseIp(p, 'set element field'));
    }
  }
}

/** A key or data as the kernel's register bytes (see writeField). */
export function fieldBytes(text: string): Uint8Array {
  const w = new Writer(64);
  writeField(w, text);
  return w.finish();
}

/** An attribute whose value `value` writes (framed by the netlink codec: length, type, padding). */
function attr(w: Writer, type: number, value: () => void): void {
  const at = beginAttr(w, type);
  value();
  endAttr(w, at);
}

/** A nested attribute: `body` writes its members. */
function nest(w: Writer, type: number, body: () => void): void {
  attr(w, type | C.NLA_F_NESTED, body);
}

function stringAttr(w: Writer, type: number, s: string): void {
  attr(w, type, () => {
    w.utf8(s);
    w.u8(0);
  });
}

/** A netlink message with an nfgenmsg (family, NFNETLINK_V0, res_id in network order); `body` writes its attributes. */
export function message(w: Writer, nl: NlMsgHeader, family: number, resId: number, body: () => void): void {
  const at = beginMessage(w, nl);
  w.u8(family);
  w.u8(0); // NFNETLINK_V0
  w.be16(resId);
  body();
  endMessage(w, at);
}

function encodeElement(w: Writer, e: FwElement, withData: boolean): void {
  nest(w, NFTA_LIST_ELEM, () => {
    nest(w, NFTA_SET_ELEM_KEY, () => attr(w, NFTA_DATA_VALUE, () => writeField(w, e.key)));
    if (withData && e.data !== undefined) nest(w, NFTA_SET_ELEM_DATA, () => attr(w, NFTA_DATA_VALUE, () => writeField(w, e.data as string)));
    if (withData && e.owner !== undefined) {
      const owner = e.owner;
      // libnftnl's user data: a TLV per item, the comment NUL-terminated
      attr(w, NFTA_SET_ELEM_USERDATA, () => {
        w.u8(UDATA_SET_ELEM_COMMENT);
        w.u8(Buffer.byteLength(owner) + 1);
        w.utf8(owner);
        w.u8(0);
      });
    }
  });
}

/** The NFTA_SET_ELEM_LIST_ELEMENTS attribute of some elements (what libnftables sends; for the golden). */
export function elementListBytes(elements: readonly FwElement[], verb: ElementVerb): Uint8Array {
  const w = new Writer(1024);
  nest(w, NFTA_SET_ELEM_LIST_ELEMENTS, () => {
    for (const e of elements) encodeElement(w, e, verb !== 'delete');
  });
  return w.finish();
}

/** One batch: BEGIN, a NEWSETELEM/DELSETELEM message per set and verb (ACK asked), END. */
export function elementBatch(changes: readonly ElementChange[], table: string, firstSeq: number): { bytes: Uint8Array; acked: number[] } {
  const w = new Writer(1024);
  let seq = firstSeq;
  const acked: number[] = [];
  message(w, { type: NFNL_MSG_BATCH_BEGIN, flags: C.NLM_F_REQUEST, seq: seq++, pid: 0 }, 0, NFNL_SUBSYS_NFTABLES, () => undefined);
  for (const { verb, elements } of changes) {
    const type = (NFNL_SUBSYS_NFTABLES << 8) | (verb === 'delete' ? NFT_MSG_DELSETELEM : NFT_MSG_NEWSETELEM);
    const flags = C.NLM_F_REQUEST | C.NLM_F_ACK | (verb === 'delete' ? 0 : C.NLM_F_CREATE) | (verb === 'create' ? C.NLM_F_EXCL : 0);
    const bySet = new Map<SetName, FwElement[]>();
    for (const e of elements) bySet.set(e.set, [...(bySet.get(e.set) ?? []), e]);
    for (const [set, els] of bySet) {
      for (let i = 0; i < els.length; i += PER_MESSAGE) {
        acked.push(seq);
        message(w, { type, flags, seq: seq++, pid: 0 }, NFPROTO_INET, 0, () => {
          stringAttr(w, NFTA_SET_ELEM_LIST_TABLE, table);
          stringAttr(w, NFTA_SET_ELEM_LIST_SET, set);
          nest(w, NFTA_SET_ELEM_LIST_ELEMENTS, () => {
            for (const e of els.slice(i, i + PER_MESSAGE)) encodeElement(w, e, verb !== 'delete');
          });
        });
      }
    }
  }
  message(w, { type: NFNL_MSG_BATCH_END, flags: C.NLM_F_REQUEST, seq, pid: 0 }, 0, NFNL_SUBSYS_NFTABLES, () => undefined);
  return { bytes: w.finish(), acked };
}

/** GETSETELEM messages, one per query (the kernel ends a message's answers at its first missing key). */
export function lookupMessages(queries: readonly ElementQuery[], firstSeq: number): Uint8Array {
  const w = new Writer(1024);
  let seq = firstSeq;
  for (const q of queries) {
    message(w, { type: (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETSETELEM, flags: C.NLM_F_REQUEST | C.NLM_F_ACK, seq: seq++, pid: 0 }, NFPROTO[q.family ?? 'inet'], 0, () => {
      stringAttr(w, NFTA_SET_ELEM_LIST_TABLE, q.table);
      stringAttr(w, NFTA_SET_ELEM_LIST_SET, q.set);
      nest(w, NFTA_SET_ELEM_LIST_ELEMENTS, () => encodeElement(w, { set: q.set as SetName, key: q.key }, false));
    });
  }
  return w.finish();
}

const PROTOCOL_NAMES: Record<number, string> = Object.fromEntries(Object.entries(PROTOCOLS).map(([name, n]) => [n, name]));

/** A port map's key bytes in our text form ("tcp . 8080"); undefined for another shape or protocol. */
export function portKeyText(b: Uint8Array): string | undefined {
  const protocol = b.length === 8 ? PROTOCOL_NAMES[b[0] as number] : undefined;
  return protocol === undefined ? undefined : `${protocol} . ${((b[4] as number) << 8) | (b[5] as number)}`;
}

/** A hairpin set's key bytes in our text form ("10.0.0.2 . 10.0.0.2"); undefined for another shape. */
export function addressPairText(b: Uint8Array): string | undefined {
  if (b.length !== 8 && b.length !== 32) return undefined;
  const half = b.length / 2;
  return `${formatIpBytes(b.subarray(0, half))} . ${formatIpBytes(b.subarray(half))}`;
}

/** Map data as register bytes (address, then port in the first 2 bytes of its 4) → "10.0.0.2 . 80". */
export function dataText(b: Uint8Array): string | undefined {
  if (b.length !== 8 && b.length !== 20) return undefined;
  const a = b.length - 4;
  return `${formatIpBytes(b.subarray(0, a))} . ${((b[a] as number) << 8) | (b[a + 1] as number)}`;
}

/**
 * A NEWSETELEM answer's (first) element: its data and its comment; nothing of an answer that does
 * not decode (cut short).
 */
export function parseFoundElement(payload: Uint8Array): FoundElement {
  let e: NftElemAttrs | undefined;
  try {
    e = decodeAttrs(setElemListAttrs, payload, 4).elements?.elem?.[0]; // after the nfgenmsg
  } catch {
    return {};
  }
  const out: FoundElement = {};
  const text = e?.data?.value && dataText(e.data.value);
  if (text !== undefined) out.data = text;
  const owner = commentOf(e?.userdata);
  if (owner !== undefined) out.owner = owner;
  return out;
}

/** The kernel's refusal in libnftables' words, so that errors read (and are recognised: NftError.errno) alike. */
function failedResult(failure: { errno: number; msg?: string }): NftResult {
  const detail = failure.msg ? `${errnoText(failure.errno)} (${failure.msg})` : errnoText(failure.errno);
  return { rc: -1, output: '', error: `Error: Could not process rule: ${detail}` };
}

type NfnlSys = Pick<NativeAddon, 'socket' | 'setsockoptInt' | 'bind' | 'sendto' | 'recv' | 'close'>;

/**
 * A NETLINK_NETFILTER socket (in a network namespace) that applies element changes, answering as
 * libnftables would ({rc, error}) so callers treat both alike. The kernel runs a batch inside
 * sendto() and queues its answers before returning: they are read at once, without waiting.
 */
export class NfnlElements {
  private fd = -1;
  private seq = 1;
  private readonly buf = new Uint8Array(64 * 1024);

  constructor(private readonly netnsFd?: number, private readonly sys: NfnlSys = nativeSys()) {}

  /** Applies the changes in one transaction; undefined when they are too large to send this way. */
  apply(changes: readonly ElementChange[], table: string): NftResult | undefined {
    const { bytes, acked } = elementBatch(changes, table, this.seq);
    if (bytes.length > MAX_BATCH) return undefined;
    this.seq = (this.seq + acked.length + 2) % 0x7fffffff || 1;
    const fd = this.open();
    this.sys.sendto(fd, bytes);
    const pending = new Set(acked);
    let failure: { errno: number; msg?: string } | undefined;
    for (;;) {
      const n = this.sys.recv(fd, this.buf, C.MSG_TRUNC);
      if (n < 0) break;
      for (const m of decodeMessages(this.buf.subarray(0, Math.min(n, this.buf.length)), { share: true })) {
        if (m.kind !== 'error') continue;
        if (m.error === 0) pending.delete(m.nl.seq);
        else failure ??= { errno: -m.error, ...(m.extack?.msg ? { msg: m.extack.msg } : {}) };
      }
    }
    if (failure) return failedResult(failure);
    if (pending.size) return { rc: -1, output: '', error: `Error: the kernel did not answer ${pending.size} element change(s)` };
    return { rc: 0, output: '', error: '' };
  }

  /**
   * Looks the queries' keys up: what each holds, undefined where the key (or its set, or its table)
   * is absent; the kernel's other refusals as libnftables would word them.
   */
  lookup(queries: readonly ElementQuery[]): { found: Array<FoundElement | undefined> } | { failed: NftResult } {
    const found: Array<FoundElement | undefined> = [];
    for (let i = 0; i < queries.length; i += LOOKUPS_PER_SEND) {
      const part = queries.slice(i, i + LOOKUPS_PER_SEND);
      if (this.seq + part.length >= 0x7fffffff) this.seq = 1;
      const base = this.seq;
      this.seq += part.length;
      const fd = this.open();
      this.sys.sendto(fd, lookupMessages(part, base));
      const answers: Array<FoundElement | undefined> = new Array<FoundElement | undefined>(part.length);
      const pending = new Set(part.map((_, j) => base + j));
      let failure: { errno: number; msg?: string } | undefined;
      for (;;) {
        const n = this.sys.recv(fd, this.buf, C.MSG_TRUNC);
        if (n < 0) break;
        for (const m of decodeMessages(this.buf.subarray(0, Math.min(n, this.buf.length)), { share: true })) {
          const j = m.nl.seq - base;
          if (j < 0 || j >= part.length) continue;
          if (m.kind === 'raw' && m.nl.type === ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSETELEM)) {
            answers[j] = parseFoundElement(m.payload);
          } else if (m.kind === 'error') {
            pending.delete(m.nl.seq);
            if (m.error !== 0 && m.error !== -ENOENT) failure ??= { errno: -m.error, ...(m.extack?.msg ? { msg: m.extack.msg } : {}) };
          }
        }
      }
      if (failure) return { failed: failedResult(failure) };
      if (pending.size) return { failed: { rc: -1, output: '', error: `Error: the kernel did not answer ${pending.size} element lookup(s)` } };
      found.push(...answers);
    }
    return { found };
  }

  close(): void {
    if (this.fd >= 0) this.sys.close(this.fd);
    this.fd = -1;
  }

  private open(): number {
    if (this.fd < 0) this.fd = openNfnlSocket(this.sys, this.netnsFd);
    return this.fd;
  }
}

/** A bound NETLINK_NETFILTER socket in `netnsFd`'s namespace (or ours), for batches and dumps (nfnl-dump.ts). */
export function openNfnlSocket(sys: Pick<NativeAddon, 'socket' | 'setsockoptInt' | 'bind' | 'close'>, netnsFd?: number): number {
  const fd = sys.socket(C.AF_NETLINK, C.SOCK_RAW, NETLINK_NETFILTER, netnsFd);
  try {
    // error answers carry the kernel's text and not a copy of our request
    sys.setsockoptInt(fd, C.SOL_NETLINK, C.NETLINK_EXT_ACK, 1);
    sys.setsockoptInt(fd, C.SOL_NETLINK, C.NETLINK_CAP_ACK, 1);
    const addr = new Uint8Array(12);
    new DataView(addr.buffer).setUint16(0, C.AF_NETLINK, HOST_LE);
    sys.bind(fd, addr);
  } catch (err) {
    sys.close(fd);
    throw err;
  }
  return fd;
}
