// Table-driven encoding and decoding of rtnetlink messages: struct nlmsghdr, the fixed header of the
// message family (ifinfomsg, ifaddrmsg, rtmsg, nlmsgerr), then attributes walked by the tables in
// policy.ts. Layout per <linux/netlink.h>:
//
//   struct nlmsghdr { u32 nlmsg_len; u16 nlmsg_type; u16 nlmsg_flags; u32 nlmsg_seq; u32 nlmsg_pid; }
//   [ family header, NLMSG_ALIGNed ] [ struct nlattr { u16 nla_len; u16 nla_type; } payload, NLA_ALIGNed ]...
//
// Decoding is defensive: every length is checked against its container, nesting depth is bounded,
// allocation is bounded by the input size, and the only error it raises is NetlinkDecodeError.
// Encoding raises NetlinkEncodeError for values that cannot go on the wire.
import { Address6 } from 'ip-address';
import * as C from './constants.js';
import { NetlinkDecodeError, NetlinkEncodeError } from './errors.js';
import {
  type AddrAttrs, type AttrSpec, type AttrTable, type ExtAckAttrs, type IfAddrMsg, type IfInfoMsg, type LinkAttrs,
  type RawAttr, type RouteAttrs, type RtMsg, type ScalarType, type StructSpec, type UnionSpec,
  addr, extAck, ifaddrmsg, ifinfomsg, link, route, rtmsg,
} from './policy.js';
import { HOST_LE, Reader, Writer, align4, decodeStringAt, utf8Length, viewOf } from './wire.js';

/** The nlmsghdr fields a caller sets; nlmsg_len is computed. */
export interface NlMsgHeader {
  type: number;
  flags: number;
  seq: number;
  pid: number;
}

export interface LinkMessage {
  kind: 'link';
  nl: NlMsgHeader;
  header: IfInfoMsg;
  attrs: LinkAttrs;
}

export interface AddrMessage {
  kind: 'addr';
  nl: NlMsgHeader;
  header: IfAddrMsg;
  attrs: AddrAttrs;
}

export interface RouteMessage {
  kind: 'route';
  nl: NlMsgHeader;
  header: RtMsg;
  attrs: RouteAttrs;
}

/** NLMSG_ERROR: an ACK when `error` is 0, else the kernel's negative errno. */
export interface ErrorMessage {
  kind: 'error';
  nl: NlMsgHeader;
  /** 0 (ACK) or -errno. */
  error: number;
  /** The header of the request this answers (its nlmsg_len is the request's full length). */
  request: NlMsgHeader & { len: number };
  /** The request's payload, echoed unless NLM_F_CAPPED (NETLINK_CAP_ACK) is set. */
  requestPayload: Uint8Array;
  /** Extended ACK attributes, present when NLM_F_ACK_TLVS is set. */
  extack?: ExtAckAttrs;
}

/** NLMSG_DONE: the end of a dump; `error` is 0 or the -errno the dump ended with. */
export interface DoneMessage {
  kind: 'done';
  nl: NlMsgHeader;
  error: number;
  extack?: ExtAckAttrs;
}

/** Any other message type (NLMSG_NOOP, NLMSG_OVERRUN, families we do not decode), payload raw. */
export interface RawMessage {
  kind: 'raw';
  nl: NlMsgHeader;
  payload: Uint8Array;
}

export type RtnlMessage = LinkMessage | AddrMessage | RouteMessage | ErrorMessage | DoneMessage | RawMessage;

/** Which family header and attribute table a message type uses. */
export function messageKind(type: number): RtnlMessage['kind'] {
  if (type === C.NLMSG_ERROR) return 'error';
  if (type === C.NLMSG_DONE) return 'done';
  if ((type >= C.RTM_NEWLINK && type <= C.RTM_SETLINK) || (type >= C.RTM_NEWLINKPROP && type <= C.RTM_GETLINKPROP)) return 'link';
  if (type >= C.RTM_NEWADDR && type <= C.RTM_GETADDR) return 'addr';
  if (type >= C.RTM_NEWROUTE && type <= C.RTM_GETROUTE) return 'route';
  return 'raw';
}

/** Deepest nesting the decoder follows (real messages stay below 6: a veth peer's linkinfo data is 4). */
const MAX_DEPTH = 16;

// ---------------------------------------------------------------------------------------------
// Scalars

const HEX2 = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

function formatLladdr(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i++) s += (i ? ':' : '') + HEX2[b[i] as number];
  return s;
}

function parseLladdr(s: string, key: string): Uint8Array {
  if (s === '') return new Uint8Array(0);
  const parts = s.split(':');
  if (parts.length > 32 || !parts.every((p) => /^[0-9a-fA-F]{2}$/.test(p))) {
    throw new NetlinkEncodeError(`${key}: "${s}" is not a link-layer address (expected hex pairs like 02:00:00:00:00:01)`);
  }
  return Uint8Array.from(parts, (p) => parseInt(p, 16));
}

function formatIp(b: Uint8Array): string {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  return Address6.fromUnsignedByteArray(Array.from(b)).correctForm();
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** Parses an IPv4 or IPv6 address (no prefix length) to its 4 or 16 bytes. */
export function parseIp(s: string, key = 'address'): Uint8Array {
  if (typeof s !== 'string') throw new NetlinkEncodeError(`${key}: expected an IP address, got ${typeof s}`);
  if (IPV4.test(s)) return Uint8Array.from(s.split('.'), Number);
  if (s.includes(':') && !s.includes('/') && !s.includes('%')) {
    try {
      return Uint8Array.from(padTo16(new Address6(s).toUnsignedByteArray()));
    } catch {
      // fall through to the error below
    }
  }
  throw new NetlinkEncodeError(`${key}: "${s}" is not an IPv4 or IPv6 address`);
}

function padTo16(bytes: number[]): number[] {
  // toUnsignedByteArray() drops leading zero bytes (it comes from a big integer): restore them.
  return Array<number>(16 - bytes.length).fill(0).concat(bytes);
}

/** Formats 4 or 16 address bytes as text (IPv6 in RFC 5952 form). */
export function formatIpBytes(b: Uint8Array): string {
  if (b.length !== 4 && b.length !== 16) throw new NetlinkEncodeError(`an IP address has 4 or 16 bytes, not ${b.length}`);
  return formatIp(b);
}

const SCALAR_SIZE: Partial<Record<ScalarType, number>> = { u8: 1, u16: 2, u32: 4, s32: 4, u64: 8, be16: 2, be32: 4, ipv4: 4, ipv6: 16 };

/** What the decoder reads from: the bytes, a view of them, and whether results may alias them. */
interface Src {
  bytes: Uint8Array;
  view: DataView;
  /** Raw payloads are views into `bytes` instead of copies (the caller hands the buffer over). */
  share: boolean;
}

function raw(src: Src, s: number, e: number): Uint8Array {
  return src.share ? src.bytes.subarray(s, e) : src.bytes.slice(s, e);
}

function decodeScalar(type: ScalarType, src: Src, s: number, e: number, key: string): unknown {
  const { bytes, view } = src;
  const len = e - s;
  const size = SCALAR_SIZE[type];
  if (size !== undefined && len !== size) {
    throw new NetlinkDecodeError(`attribute ${key} (${type}) has ${len} byte(s), expected ${size}`, s - C.NLA_HDRLEN);
  }
  switch (type) {
    case 'u8': return view.getUint8(s);
    case 'u16': return view.getUint16(s, HOST_LE);
    case 'u32': return view.getUint32(s, HOST_LE);
    case 's32': return view.getInt32(s, HOST_LE);
    case 'u64': return view.getBigUint64(s, HOST_LE);
    case 'be16': return view.getUint16(s, false);
    case 'be32': return view.getUint32(s, false);
    case 'string': return decodeStringAt(bytes, s, e);
    case 'lladdr': return formatLladdr(bytes.subarray(s, e));
    case 'ipv4':
    case 'ipv6': return formatIp(bytes.subarray(s, e));
    case 'ip':
      if (len !== 4 && len !== 16) throw new NetlinkDecodeError(`attribute ${key} (ip) has ${len} byte(s), expected 4 or 16`, s - C.NLA_HDRLEN);
      return formatIp(bytes.subarray(s, e));
    case 'flag': return true;
    case 'bytes': return raw(src, s, e);
  }
}

function encodeScalar(w: Writer, spec: { type: ScalarType; maxLen?: number; noNul?: boolean }, value: unknown, key: string): void {
  const num = (): number => {
    if (typeof value !== 'number') throw new NetlinkEncodeError(`${key}: expected a number, got ${typeof value}`);
    return value;
  };
  switch (spec.type) {
    case 'u8': return w.u8(num());
    case 'u16': return w.u16(num());
    case 'u32': return w.u32(num());
    case 's32': return w.s32(num());
    case 'be16': return w.be16(num());
    case 'be32': return w.be32(num());
    case 'u64':
      if (typeof value !== 'bigint') throw new NetlinkEncodeError(`${key}: expected a bigint, got ${typeof value}`);
      return w.u64(value);
    case 'string': {
      if (typeof value !== 'string') throw new NetlinkEncodeError(`${key}: expected a string, got ${typeof value}`);
      if (value.includes('\0')) throw new NetlinkEncodeError(`${key}: "${value}" contains a NUL byte`);
      const len = utf8Length(value);
      if (spec.maxLen !== undefined && len > spec.maxLen) {
        throw new NetlinkEncodeError(`${key}: "${value}" is ${len} bytes long, the kernel allows at most ${spec.maxLen}`);
      }
      w.utf8(value);
      if (!spec.noNul) w.u8(0);
      return;
    }
    case 'lladdr':
      if (typeof value !== 'string') throw new NetlinkEncodeError(`${key}: expected a link-layer address string, got ${typeof value}`);
      return w.bytes(parseLladdr(value, key));
    case 'ipv4':
    case 'ipv6':
    case 'ip': {
      const b = parseIp(value as string, key);
      if ((spec.type === 'ipv4' && b.length !== 4) || (spec.type === 'ipv6' && b.length !== 16)) {
        throw new NetlinkEncodeError(`${key}: "${String(value)}" is not an ${spec.type === 'ipv4' ? 'IPv4' : 'IPv6'} address`);
      }
      return w.bytes(b);
    }
    case 'flag':
      if (value !== true) throw new NetlinkEncodeError(`${key}: a flag attribute is true or absent`);
      return;
    case 'bytes':
      if (!(value instanceof Uint8Array)) throw new NetlinkEncodeError(`${key}: expected a Uint8Array`);
      return w.bytes(value);
  }
}

// ---------------------------------------------------------------------------------------------
// Structs

/** Decodes a fixed struct from r (which must hold at least its size; bytes past it are left). */
export function decodeStruct<T>(spec: StructSpec<T>, r: Reader): T {
  if (r.remaining < spec.size) throw new NetlinkDecodeError(`struct ${spec.name} needs ${spec.size} bytes, ${r.remaining} left`, r.offset);
  const out: Record<string, number | bigint> = {};
  for (const [key, type] of spec.fields) {
    switch (type) {
      case 'u8': out[key] = r.u8(); break;
      case 'u16': out[key] = r.u16(); break;
      case 'u32': out[key] = r.u32(); break;
      case 's32': out[key] = r.s32(); break;
      case 'u64': out[key] = r.u64(); break;
      case 'pad8': r.skip(1); break;
      case 'pad16': r.skip(2); break;
    }
  }
  return out as T;
}

/** Writes a fixed struct (missing fields as 0, padding as zeros). */
export function encodeStruct<T>(spec: StructSpec<T>, w: Writer, value: T): void {
  const v = value as Record<string, unknown>;
  if (typeof v !== 'object' || v === null) throw new NetlinkEncodeError(`struct ${spec.name}: expected an object`);
  for (const [key, type] of spec.fields) {
    const f = v[key] ?? (type === 'u64' ? 0n : 0);
    const where = `${spec.name}.${key}`;
    switch (type) {
      case 'pad8': w.zeros(1); break;
      case 'pad16': w.zeros(2); break;
      case 'u64':
        if (typeof f !== 'bigint') throw new NetlinkEncodeError(`${where}: expected a bigint`);
        w.u64(f);
        break;
      default:
        if (typeof f !== 'number') throw new NetlinkEncodeError(`${where}: expected a number`);
        try {
          if (type === 'u8') w.u8(f);
          else if (type === 'u16') w.u16(f);
          else if (type === 'u32') w.u32(f);
          else w.s32(f);
        } catch (err) {
          throw new NetlinkEncodeError(`${where}: ${(err as Error).message}`);
        }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Attribute sets

/** Decodes the attributes in [start, end) of `bytes` with `table`. */
export function decodeAttrs<T>(table: AttrTable<T>, bytes: Uint8Array, start = 0, end = bytes.length): T {
  if (start < 0 || end > bytes.length || start > end) throw new NetlinkDecodeError(`bad attribute range ${start}..${end}`, start);
  return walk(table, { bytes, view: viewOf(bytes), share: false }, start, end, 0);
}

/**
 * The attribute walker. Like the kernel's nla_ok(), the last attribute may lack its padding and
 * fewer than NLA_HDRLEN trailing bytes are ignored; an attribute overrunning its container is an error.
 */
function walk<T>(table: AttrTable<T>, src: Src, start: number, end: number, depth: number): T {
  const { bytes, view } = src;
  if (depth > MAX_DEPTH) throw new NetlinkDecodeError(`attributes nested deeper than ${MAX_DEPTH} levels`, start);
  const out: Record<string, unknown> = {};
  let unknown: RawAttr[] | undefined;
  let unions: Array<[UnionSpec, number, number]> | undefined;
  let at = start;
  while (end - at >= C.NLA_HDRLEN) {
    const len = view.getUint16(at, HOST_LE);
    const rawType = view.getUint16(at + 2, HOST_LE);
    if (len < C.NLA_HDRLEN) throw new NetlinkDecodeError(`attribute length ${len} is shorter than its header`, at);
    if (len > end - at) {
      throw new NetlinkDecodeError(`attribute type ${rawType & C.NLA_TYPE_MASK} of length ${len} overruns its container (${end - at} byte(s) left)`, at);
    }
    const s = at + C.NLA_HDRLEN;
    const e = at + len;
    at += align4(len);
    const spec = table.byType.get(rawType & C.NLA_TYPE_MASK);
    if (!spec) {
      (unknown ??= []).push({ type: rawType, data: raw(src, s, e) });
      continue;
    }
    if (spec.type === 'union') {
      (unions ??= []).push([spec, s, e]);
      continue;
    }
    let value: unknown;
    if (spec.type === 'nested') {
      if (spec.header) {
        const header = decodeStruct(spec.header, new Reader(bytes, s, e, view));
        value = { header, attrs: walk(spec.of(), src, Math.min(s + align4(spec.header.size), e), e, depth + 1) };
      } else {
        value = walk(spec.of(), src, s, e, depth + 1);
      }
    } else if (spec.type === 'struct') {
      if (e - s < spec.struct.size) {
        throw new NetlinkDecodeError(`attribute ${spec.key} (struct ${spec.struct.name}) has ${e - s} byte(s), expected ${spec.struct.size}`, s - C.NLA_HDRLEN);
      }
      value = decodeStruct(spec.struct, new Reader(bytes, s, e, view));
    } else {
      value = decodeScalar(spec.type, src, s, e, spec.key);
    }
    if (spec.type !== 'struct' && spec.multi) {
      const list = out[spec.key] as unknown[] | undefined;
      if (list) list.push(value);
      else out[spec.key] = [value];
    } else {
      out[spec.key] = value;
    }
  }
  // A union member is decoded once every sibling is known: the selector may come after it.
  if (unions) {
    for (const [spec, s, e] of unions) {
      const selector = out[spec.on];
      const member = typeof selector === 'string' && Object.hasOwn(spec.by, selector) ? spec.by[selector] : undefined;
      out[spec.key] = member ? walk(member(), src, s, e, depth + 1) : raw(src, s, e);
    }
  }
  if (unknown) out.unknownAttrs = unknown;
  return out as T;
}

/** Encodes `value` with `table`, attributes in the order of the object's own keys. */
export function encodeAttrs<T>(table: AttrTable<T>, w: Writer, value: T): void {
  const v = value as Record<string, unknown>;
  if (typeof v !== 'object' || v === null) throw new NetlinkEncodeError(`${table.name}: expected an object of attributes`);
  for (const key of Object.keys(v)) {
    const item = v[key];
    if (item === undefined || key === 'unknownAttrs') continue;
    const entry = table.byKey.get(key);
    if (!entry) throw new NetlinkEncodeError(`${table.name}: no attribute is called "${key}"`);
    const { nla, spec } = entry;
    if ('multi' in spec && spec.multi) {
      if (!Array.isArray(item)) throw new NetlinkEncodeError(`${table.name}.${key}: expected an array`);
      for (const one of item) encodeAttr(w, nla, spec, one, v, table.name);
    } else {
      encodeAttr(w, nla, spec, item, v, table.name);
    }
  }
  const unknown = v.unknownAttrs;
  if (unknown !== undefined) {
    if (!Array.isArray(unknown)) throw new NetlinkEncodeError(`${table.name}.unknownAttrs: expected an array`);
    for (const raw of unknown as RawAttr[]) {
      const at = beginAttr(w, raw.type);
      if (!(raw.data instanceof Uint8Array)) throw new NetlinkEncodeError(`${table.name}.unknownAttrs: data must be a Uint8Array`);
      w.bytes(raw.data);
      endAttr(w, at);
    }
  }
}

/**
 * Starts an attribute of `type` (with its NLA_F_* bits) at the writer's end and returns where;
 * endAttr(w, at) then sets its length from what was written and pads. For attribute sets no
 * table describes (nf_tables' set elements, firewall/nfnl.ts).
 */
export function beginAttr(w: Writer, type: number): number {
  const at = w.length;
  w.u16(0);
  w.u16(type);
  return at;
}

export function endAttr(w: Writer, at: number): void {
  const len = w.length - at;
  if (len > 0xffff) throw new NetlinkEncodeError(`attribute of ${len} bytes exceeds the 65535-byte netlink limit`);
  w.patchU16(at, len);
  w.pad();
}

function encodeAttr(w: Writer, nla: number, spec: AttrSpec, value: unknown, siblings: Record<string, unknown>, tableName: string): void {
  const key = `${tableName}.${spec.key}`;
  const at = beginAttr(w, nla | (spec.nlaFlags ?? 0));
  switch (spec.type) {
    case 'struct':
      encodeStruct(spec.struct, w, value as object);
      break;
    case 'nested':
      if (spec.header) {
        const v = value as { header?: object; attrs?: object };
        if (typeof v !== 'object' || v === null) throw new NetlinkEncodeError(`${key}: expected { header, attrs }`);
        encodeStruct(spec.header, w, v.header ?? {});
        w.pad();
        encodeAttrs(spec.of(), w, v.attrs ?? {});
      } else {
        encodeAttrs(spec.of(), w, value as object);
      }
      break;
    case 'union': {
      const selector = siblings[spec.on];
      const member = typeof selector === 'string' && Object.hasOwn(spec.by, selector) ? spec.by[selector] : undefined;
      if (value instanceof Uint8Array) w.bytes(value);
      else if (member) encodeAttrs(member(), w, value as object);
      else throw new NetlinkEncodeError(`${key}: no attribute table for ${spec.on} "${String(selector)}"; pass the payload as a Uint8Array`);
      break;
    }
    default:
      encodeScalar(w, spec, value, key);
  }
  endAttr(w, at);
}

// ---------------------------------------------------------------------------------------------
// Messages

/**
 * Starts a message at the writer's end (struct nlmsghdr, its length left open) and returns where;
 * endMessage(w, at) pads it and sets nlmsg_len. The body in between is the caller's.
 */
export function beginMessage(w: Writer, nl: NlMsgHeader): number {
  const start = w.length;
  w.u32(0);
  w.u16(nl.type);
  w.u16(nl.flags);
  w.u32(nl.seq >>> 0);
  w.u32(nl.pid >>> 0);
  return start;
}

export function endMessage(w: Writer, start: number): void {
  w.pad();
  w.patchU32(start, w.length - start);
}

/** Appends one message to `w` (its nlmsg_len computed, padded to 4 bytes). */
export function encodeMessageInto(w: Writer, msg: RtnlMessage): void {
  const start = beginMessage(w, msg.nl);
  switch (msg.kind) {
    case 'link':
      encodeStruct(ifinfomsg, w, msg.header);
      encodeAttrs(link, w, msg.attrs);
      break;
    case 'addr':
      encodeStruct(ifaddrmsg, w, msg.header);
      encodeAttrs(addr, w, msg.attrs);
      break;
    case 'route':
      encodeStruct(rtmsg, w, msg.header);
      encodeAttrs(route, w, msg.attrs);
      break;
    case 'error':
      w.s32(msg.error);
      w.u32(msg.request.len);
      w.u16(msg.request.type);
      w.u16(msg.request.flags);
      w.u32(msg.request.seq >>> 0);
      w.u32(msg.request.pid >>> 0);
      w.bytes(msg.requestPayload);
      w.pad();
      if (msg.extack) encodeAttrs(extAck, w, msg.extack);
      break;
    case 'done':
      w.s32(msg.error);
      if (msg.extack) encodeAttrs(extAck, w, msg.extack);
      break;
    case 'raw':
      w.bytes(msg.payload);
      break;
  }
  endMessage(w, start);
}

/** Encodes one message. */
export function encodeMessage(msg: RtnlMessage): Uint8Array {
  const w = new Writer();
  encodeMessageInto(w, msg);
  return w.finish();
}

/** Encodes several messages back to back (one datagram the kernel processes in order). */
export function encodeMessages(msgs: readonly RtnlMessage[]): Uint8Array {
  const w = new Writer();
  for (const m of msgs) encodeMessageInto(w, m);
  return w.finish();
}

/**
 * Decodes every message in a datagram. Throws NetlinkDecodeError on malformed input, nothing else.
 * With `share`, raw payloads (unknown attributes, bytes) are views into `bytes` rather than copies:
 * for a buffer the caller will not reuse.
 */
export function decodeMessages(bytes: Uint8Array, opts: { share?: boolean } = {}): RtnlMessage[] {
  const out: RtnlMessage[] = [];
  const view = viewOf(bytes);
  const src: Src = { bytes, view, share: opts.share ?? false };
  let at = 0;
  while (bytes.length - at >= C.NLMSG_HDRLEN) {
    const r = new Reader(bytes, at, bytes.length, view);
    const len = r.u32('nlmsg_len');
    if (len < C.NLMSG_HDRLEN) throw new NetlinkDecodeError(`nlmsg_len ${len} is shorter than the header`, at);
    if (len > bytes.length - at) throw new NetlinkDecodeError(`nlmsg_len ${len} overruns the datagram (${bytes.length - at} byte(s) left)`, at);
    const nl: NlMsgHeader = { type: r.u16(), flags: r.u16(), seq: r.u32(), pid: r.u32() };
    out.push(decodeBody(nl, src, at + C.NLMSG_HDRLEN, at + len));
    at += align4(len);
  }
  if (at < bytes.length && bytes.subarray(at).some((b) => b !== 0)) {
    throw new NetlinkDecodeError(`${bytes.length - at} trailing byte(s) after the last message`, at);
  }
  return out;
}

function decodeBody(nl: NlMsgHeader, src: Src, start: number, end: number): RtnlMessage {
  const r = new Reader(src.bytes, start, end, src.view);
  switch (messageKind(nl.type)) {
    case 'link': {
      const header = decodeStruct(ifinfomsg, r);
      return { kind: 'link', nl, header, attrs: walk(link, src, start + align4(ifinfomsg.size), end, 0) };
    }
    case 'addr': {
      const header = decodeStruct(ifaddrmsg, r);
      return { kind: 'addr', nl, header, attrs: walk(addr, src, start + align4(ifaddrmsg.size), end, 0) };
    }
    case 'route': {
      const header = decodeStruct(rtmsg, r);
      return { kind: 'route', nl, header, attrs: walk(route, src, start + align4(rtmsg.size), end, 0) };
    }
    case 'error': {
      const error = r.s32('nlmsgerr.error');
      const request = { len: r.u32('nlmsgerr.msg.nlmsg_len'), type: r.u16(), flags: r.u16(), seq: r.u32(), pid: r.u32() };
      let payloadLen = 0;
      if (!(nl.flags & C.NLM_F_CAPPED) && request.len > C.NLMSG_HDRLEN) {
        payloadLen = Math.min(request.len - C.NLMSG_HDRLEN, r.remaining);
      }
      const requestPayload = src.share ? r.view8(payloadLen, 'echoed request') : r.view8(payloadLen, 'echoed request').slice();
      const tlvStart = Math.min(start + C.NLMSGERR_LEN + align4(payloadLen), end);
      const msg: ErrorMessage = { kind: 'error', nl, error, request, requestPayload };
      if (nl.flags & C.NLM_F_ACK_TLVS) msg.extack = walk(extAck, src, tlvStart, end, 0);
      return msg;
    }
    case 'done': {
      const error = r.remaining >= 4 ? r.s32() : 0;
      const msg: DoneMessage = { kind: 'done', nl, error };
      if (nl.flags & C.NLM_F_ACK_TLVS) msg.extack = walk(extAck, src, r.offset, end, 0);
      return msg;
    }
    case 'raw':
      return { kind: 'raw', nl, payload: raw(src, start, end) };
  }
}
