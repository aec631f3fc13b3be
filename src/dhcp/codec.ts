// The DHCP message (RFC 2131 §2, RFC 2132 options): decode from and encode to the bytes of a UDP
// payload. Decoding reads through bounds-checked offsets and fails only with DhcpDecodeError (which
// says at which offset and why); everything it allocates is bounded by the input's length. Option
// overload (52) is followed on decode (options, then file, then sname, RFC 2131 §4.1) and repeated
// options are concatenated (RFC 3396). Encoding honours a size limit (the client's option 57): options
// that do not fit the options field overflow into file and sname with option 52, and an option that
// fits nowhere is left out and reported, never truncated.
import { NspawnError } from '../errors.js';
import { type Ipv4, readIpv4, writeIpv4 } from './ipv4.js';
import { DhcpOptions, Opt } from './options.js';
import { replyBytes } from './reply-slabs.js';

export const BOOTREQUEST = 1;
export const BOOTREPLY = 2;
export const MAGIC_COOKIE = 0x63825363;
/** The broadcast bit of `flags` (RFC 2131 §2, figure 2). */
export const FLAG_BROADCAST = 0x8000;
/** Fixed header (236) plus the magic cookie. */
export const HEADER_SIZE = 240;
/** RFC 2131 §2: a client accepts at least a 312-octet options field: 236 + 312. */
export const DEFAULT_MAX_MESSAGE = 548;
/** RFC 1542 §2.1: BOOTP relays and old clients expect at least 300 octets. */
export const MIN_MESSAGE = 300;
/** UDP and IPv4 headers, which option 57 counts (RFC 2132 §9.10). */
export const IP_UDP_OVERHEAD = 28;

export interface DhcpPacket {
  op: number;
  htype: number;
  hlen: number;
  hops: number;
  xid: number;
  secs: number;
  flags: number;
  ciaddr: Ipv4;
  yiaddr: Ipv4;
  siaddr: Ipv4;
  giaddr: Ipv4;
  /** 16 octets; the first `hlen` are the hardware address. */
  chaddr: Uint8Array;
  /** 64 octets (holds options when 52 says so). */
  sname: Uint8Array;
  /** 128 octets (holds options when 52 says so). */
  file: Uint8Array;
  options: DhcpOptions;
}

/** Bytes that are not a DHCP message; `offset` is where decoding stopped. */
export class DhcpDecodeError extends NspawnError {
  readonly offset: number;
  constructor(offset: number, message: string) {
    super('DHCP_DECODE', `DHCP message: ${message} (at offset ${offset})`);
    this.offset = offset;
  }
}

const ZERO_CHADDR = new Uint8Array(16);
const ZERO_SNAME = new Uint8Array(64);
const ZERO_FILE = new Uint8Array(128);

/**
 * A reply to fill in: its chaddr, sname and file are zeros shared by every reply (assign arrays
 * of its own to fill them, never write into these).
 */
export function blankReply(): DhcpPacket {
  return {
    op: BOOTREPLY, htype: 1, hlen: 6, hops: 0, xid: 0, secs: 0, flags: 0,
    ciaddr: 0, yiaddr: 0, siaddr: 0, giaddr: 0,
    chaddr: ZERO_CHADDR, sname: ZERO_SNAME, file: ZERO_FILE,
    options: new DhcpOptions(),
  };
}

export function emptyPacket(op: number): DhcpPacket {
  return {
    op, htype: 1, hlen: 6, hops: 0, xid: 0, secs: 0, flags: 0,
    ciaddr: 0, yiaddr: 0, siaddr: 0, giaddr: 0,
    chaddr: new Uint8Array(16), sname: new Uint8Array(64), file: new Uint8Array(128),
    options: new DhcpOptions(),
  };
}

/**
 * Decodes a DHCP message. The packet's byte fields (chaddr, sname, file, option values) are views
 * into `bytes`: keep `bytes` unchanged while the packet is in use, or copy.
 */
export function decodePacket(bytes: Uint8Array): DhcpPacket {
  if (bytes.length < HEADER_SIZE) throw new DhcpDecodeError(bytes.length, `${bytes.length} bytes is shorter than the ${HEADER_SIZE}-byte header`);
  if (bytes.length > 65535) throw new DhcpDecodeError(65535, `${bytes.length} bytes is longer than a UDP datagram`);
  const op = bytes[0] as number;
  if (op !== BOOTREQUEST && op !== BOOTREPLY) throw new DhcpDecodeError(0, `op ${op} is neither BOOTREQUEST (1) nor BOOTREPLY (2)`);
  const hlen = bytes[2] as number;
  if (hlen > 16) throw new DhcpDecodeError(2, `hardware address length ${hlen} is above 16`);
  const cookie = readIpv4(bytes, 236);
  if (cookie !== MAGIC_COOKIE) throw new DhcpDecodeError(236, `magic cookie 0x${cookie.toString(16).padStart(8, '0')} is not 0x63825363 (not DHCP)`);
  const p: DhcpPacket = {
    op,
    htype: bytes[1] as number,
    hlen,
    hops: bytes[3] as number,
    xid: readIpv4(bytes, 4),
    secs: ((bytes[8] as number) << 8) | (bytes[9] as number),
    flags: ((bytes[10] as number) << 8) | (bytes[11] as number),
    ciaddr: readIpv4(bytes, 12),
    yiaddr: readIpv4(bytes, 16),
    siaddr: readIpv4(bytes, 20),
    giaddr: readIpv4(bytes, 24),
    chaddr: bytes.subarray(28, 44),
    sname: bytes.subarray(44, 108),
    file: bytes.subarray(108, 236),
    options: new DhcpOptions(),
  };
  parseOptionArea(bytes, HEADER_SIZE, bytes.length, p.options, true);
  const overload = overloadValue(p.options);
  if (overload & 1) parseOptionArea(bytes, 108, 236, p.options, false);
  if (overload & 2) parseOptionArea(bytes, 44, 108, p.options, false);
  return p;
}

function overloadValue(options: DhcpOptions): number {
  const v = options.get(Opt.OVERLOAD);
  if (!v) return 0;
  if (v.length !== 1 || (v[0] as number) < 1 || (v[0] as number) > 3) {
    // Where 52 sits is not kept; point at the options field.
    throw new DhcpDecodeError(HEADER_SIZE, `option overload (52) must be one octet of 1, 2 or 3, got ${Buffer.from(v).toString('hex') || 'nothing'}`);
  }
  return v[0] as number;
}

/**
 * Reads options from [start, end). In the options field a missing END is tolerated at the very end
 * of the datagram (several clients omit it); an option running past the end is an error.
 */
function parseOptionArea(bytes: Uint8Array, start: number, end: number, out: DhcpOptions, main: boolean): void {
  let i = start;
  while (i < end) {
    const code = bytes[i] as number;
    if (code === Opt.PAD) {
      i++;
      continue;
    }
    if (code === Opt.END) return;
    if (i + 1 >= end) throw new DhcpDecodeError(i, `option ${code} has no length octet`);
    const len = bytes[i + 1] as number;
    if (i + 2 + len > end) throw new DhcpDecodeError(i, `option ${code} of length ${len} runs past the end of the ${main ? 'options field' : 'overloaded field'}`);
    if (!main && code === Opt.OVERLOAD) throw new DhcpDecodeError(i, 'option overload (52) inside an overloaded field');
    const value = bytes.subarray(i + 2, i + 2 + len);
    // `out` is this message's own: what it has already came earlier in this message
    if (out.has(code)) out.append(code, value);
    else out.set(code, value);
    i += 2 + len;
  }
}

export interface EncodeOptions {
  /** Largest DHCP message (UDP payload) allowed; default 548 (RFC 2131 §2). */
  maxSize?: number;
  /**
   * Bytes to leave free in front of the message in its buffer (the result is a view after them),
   * so IP and UDP headers can be written there without a copy.
   */
  headroom?: number;
  /** Codes of options that fit nowhere are pushed here (they are left out, never cut). */
  dropped?: number[];
}

/** Largest UDP payload a client accepts, from its option 57 (which counts IP and UDP headers). */
export function maxPayloadFor(request: DhcpPacket): number {
  let maxIp: number | undefined;
  try {
    maxIp = request.options.maxMessageSize();
  } catch {
    maxIp = undefined; // a malformed 57 is ignored: fall back to the default every client accepts
  }
  return maxIp === undefined ? DEFAULT_MAX_MESSAGE : Math.min(65535, Math.max(DEFAULT_MAX_MESSAGE, maxIp - IP_UDP_OVERHEAD));
}

/** Serialised options: each a list of TLV chunks of at most 255 value bytes (RFC 3396 split). */
function serialise(code: number, value: Uint8Array): Uint8Array {
  const chunks = Math.max(1, Math.ceil(value.length / 255));
  const out = new Uint8Array(value.length + 2 * chunks);
  let o = 0;
  for (let c = 0; c < chunks; c++) {
    const part = value.subarray(c * 255, Math.min(value.length, (c + 1) * 255));
    out[o++] = code;
    out[o++] = part.length;
    out.set(part, o);
    o += part.length;
  }
  return out;
}

function isZero(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

export function encodePacket(p: DhcpPacket, opts: EncodeOptions = {}): Uint8Array {
  const maxSize = Math.max(DEFAULT_MAX_MESSAGE, Math.min(65535, opts.maxSize ?? DEFAULT_MAX_MESSAGE));
  const headroom = opts.headroom ?? 0;
  // The common case, in one pass and one allocation: every option fits the options field.
  let total = 0;
  for (const [code, value] of p.options.entries()) {
    if (code !== Opt.OVERLOAD) total += value.length + 2 * (value.length > 255 ? Math.ceil(value.length / 255) : 1);
  }
  if (total + 1 <= maxSize - HEADER_SIZE) {
    const size = headroom + Math.max(MIN_MESSAGE, HEADER_SIZE + total + 1);
    // with headroom: a datagram the server sends, carved from a reply slab (reply-slabs.ts)
    const buf = headroom ? replyBytes(size) : new Uint8Array(size);
    const out = headroom ? buf.subarray(headroom) : buf;
    writeHeader(out, p);
    let o = HEADER_SIZE;
    for (const [code, value] of p.options.entries()) {
      if (code === Opt.OVERLOAD) continue;
      if (value.length <= 255) {
        out[o] = code;
        out[o + 1] = value.length;
        out.set(value, o + 2);
        o += 2 + value.length;
      } else {
        const t = serialise(code, value);
        out.set(t, o);
        o += t.length;
      }
    }
    out[o] = Opt.END;
    out.set(p.sname.subarray(0, 64), 44);
    out.set(p.file.subarray(0, 128), 108);
    return out;
  }
  const slow = encodeOverloaded(p, maxSize, opts);
  if (!headroom) return slow;
  const buf = new Uint8Array(headroom + slow.length);
  buf.set(slow, headroom);
  return buf.subarray(headroom);
}

function writeHeader(out: Uint8Array, p: DhcpPacket): void {
  out[0] = p.op;
  out[1] = p.htype;
  out[2] = p.hlen;
  out[3] = p.hops;
  writeIpv4(out, 4, p.xid >>> 0);
  out[8] = (p.secs >>> 8) & 0xff;
  out[9] = p.secs & 0xff;
  out[10] = (p.flags >>> 8) & 0xff;
  out[11] = p.flags & 0xff;
  writeIpv4(out, 12, p.ciaddr);
  writeIpv4(out, 16, p.yiaddr);
  writeIpv4(out, 20, p.siaddr);
  writeIpv4(out, 24, p.giaddr);
  out.set(p.chaddr.subarray(0, 16), 28);
  writeIpv4(out, 236, MAGIC_COOKIE);
}

/** Options do not all fit the options field: overflow into file and sname (option 52). */
function encodeOverloaded(p: DhcpPacket, maxSize: number, opts: EncodeOptions): Uint8Array {
  const tlvs: Array<[number, Uint8Array]> = [];
  let total = 0;
  for (const [code, value] of p.options.entries()) {
    if (code === Opt.OVERLOAD) continue; // decided here, not by the caller
    const t = serialise(code, value);
    tlvs.push([code, t]);
    total += t.length;
  }
  const mainCap = maxSize - HEADER_SIZE;
  let main: Uint8Array[] = [];
  const file: Uint8Array[] = [];
  const sname: Uint8Array[] = [];
  let overload = 0;
  if (total + 1 <= mainCap) {
    main = tlvs.map(([, t]) => t);
  } else {
    // Overflow: main keeps room for 52 (3) and END (1); file and sname end with END when used.
    const areas = [
      { list: main, free: mainCap - 4, bit: 0 },
      { list: file, free: isZero(p.file) ? 127 : 0, bit: 1 },
      { list: sname, free: isZero(p.sname) ? 63 : 0, bit: 2 },
    ];
    for (const [code, t] of tlvs) {
      const area = areas.find((a) => a.free >= t.length);
      if (!area) {
        opts.dropped?.push(code);
        continue;
      }
      area.list.push(t);
      area.free -= t.length;
      overload |= area.bit;
    }
    overload &= 3;
  }
  let mainLen = 1;
  for (const t of main) mainLen += t.length;
  if (overload) mainLen += 3;
  const size = Math.max(MIN_MESSAGE, HEADER_SIZE + mainLen);
  const out = new Uint8Array(size);
  writeHeader(out, p);
  let o = HEADER_SIZE;
  if (overload) {
    out[o++] = Opt.OVERLOAD;
    out[o++] = 1;
    out[o++] = overload;
  }
  for (const t of main) {
    out.set(t, o);
    o += t.length;
  }
  out[o] = Opt.END;
  writeArea(out, 44, 64, p.sname, overload & 2 ? sname : undefined);
  writeArea(out, 108, 128, p.file, overload & 1 ? file : undefined);
  return out;
}

function writeArea(out: Uint8Array, at: number, size: number, raw: Uint8Array, options: Uint8Array[] | undefined): void {
  if (!options) {
    out.set(raw.subarray(0, size), at);
    return;
  }
  let o = at;
  for (const t of options) {
    out.set(t, o);
    o += t.length;
  }
  out[o] = Opt.END; // the rest stays zero (PAD)
}
