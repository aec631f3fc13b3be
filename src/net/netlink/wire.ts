// Byte-level reading and writing of netlink data: host byte order (netlink is host-endian except where
// the uapi says network order), 4-byte alignment of messages and attributes (NLMSG_ALIGN, NLA_ALIGN in
// <linux/netlink.h>). The Reader checks every bound itself and raises NetlinkDecodeError, never a
// RangeError from DataView.
import { HOST_LE } from '../../common/endian.js';
import { NLA_ALIGNTO } from './constants.js';
import { NetlinkDecodeError, NetlinkEncodeError } from './errors.js';

export { HOST_LE };

/** NLMSG_ALIGN / NLA_ALIGN: rounds up to a multiple of 4. */
export function align4(n: number): number {
  return (n + NLA_ALIGNTO - 1) & ~(NLA_ALIGNTO - 1);
}

const utf8 = new TextDecoder('utf-8');
const utf8Encoder = new TextEncoder();

/** UTF-8 bytes of a string. */
export function encodeUtf8(s: string): Uint8Array {
  return utf8Encoder.encode(s);
}

/** The UTF-8 byte length of a string, without encoding it. */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4; // a surrogate pair
      i++;
    } else n += 3; // (a lone surrogate becomes U+FFFD: 3 bytes)
  }
  return n;
}

/** Reads a bounded window of a buffer. Offsets are absolute (into the original buffer) for error messages. */
export class Reader {
  private readonly view: DataView;
  private pos: number;

  constructor(readonly bytes: Uint8Array, start = 0, readonly end = bytes.length, view?: DataView) {
    this.view = view ?? new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = start;
  }

  get offset(): number {
    return this.pos;
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  private need(n: number, what: string): number {
    if (n < 0 || this.pos + n > this.end) {
      throw new NetlinkDecodeError(`${what} needs ${n} byte(s), ${this.end - this.pos} left`, this.pos);
    }
    const at = this.pos;
    this.pos += n;
    return at;
  }

  u8(what = 'u8'): number {
    return this.view.getUint8(this.need(1, what));
  }
  u16(what = 'u16'): number {
    return this.view.getUint16(this.need(2, what), HOST_LE);
  }
  u32(what = 'u32'): number {
    return this.view.getUint32(this.need(4, what), HOST_LE);
  }
  s32(what = 's32'): number {
    return this.view.getInt32(this.need(4, what), HOST_LE);
  }
  u64(what = 'u64'): bigint {
    return this.view.getBigUint64(this.need(8, what), HOST_LE);
  }
  be16(what = 'be16'): number {
    return this.view.getUint16(this.need(2, what), false);
  }
  be32(what = 'be32'): number {
    return this.view.getUint32(this.need(4, what), false);
  }
  /** A view (not a copy) of the next n bytes. */
  view8(n: number, what = 'bytes'): Uint8Array {
    const at = this.need(n, what);
    return this.bytes.subarray(at, at + n);
  }
  skip(n: number, what = 'padding'): void {
    this.need(n, what);
  }
  /** Moves to `to`, which must lie within the window (used after reading a length-prefixed item). */
  seek(to: number): void {
    if (to < this.pos || to > this.end) throw new NetlinkDecodeError(`bad offset ${to}`, this.pos);
    this.pos = to;
  }
}

/** A growable output buffer. */
export class Writer {
  private buf: Uint8Array;
  private view: DataView;
  private len = 0;

  constructor(initial = 512) {
    this.buf = new Uint8Array(initial);
    this.view = new DataView(this.buf.buffer);
  }

  get length(): number {
    return this.len;
  }

  private grow(n: number): number {
    const at = this.len;
    if (at + n > this.buf.length) {
      let size = this.buf.length * 2;
      while (size < at + n) size *= 2;
      const next = new Uint8Array(size);
      next.set(this.buf.subarray(0, at));
      this.buf = next;
      this.view = new DataView(next.buffer);
    }
    this.len += n;
    return at;
  }

  u8(v: number): void {
    const x = checkInt(v, 0, 0xff, 'u8');
    const at = this.grow(1);
    this.view.setUint8(at, x);
  }
  u16(v: number): void {
    const x = checkInt(v, 0, 0xffff, 'u16');
    const at = this.grow(2);
    this.view.setUint16(at, x, HOST_LE);
  }
  u32(v: number): void {
    const x = checkInt(v, 0, 0xffffffff, 'u32');
    const at = this.grow(4);
    this.view.setUint32(at, x, HOST_LE);
  }
  s32(v: number): void {
    const x = checkInt(v, -0x80000000, 0x7fffffff, 's32');
    const at = this.grow(4);
    this.view.setInt32(at, x, HOST_LE);
  }
  u64(v: bigint): void {
    if (typeof v !== 'bigint' || v < 0n || v > 0xffffffffffffffffn) throw new NetlinkEncodeError(`u64 out of range: ${String(v)}`);
    const at = this.grow(8);
    this.view.setBigUint64(at, v, HOST_LE);
  }
  be16(v: number): void {
    const x = checkInt(v, 0, 0xffff, 'be16');
    const at = this.grow(2);
    this.view.setUint16(at, x, false);
  }
  be32(v: number): void {
    const x = checkInt(v, 0, 0xffffffff, 'be32');
    const at = this.grow(4);
    this.view.setUint32(at, x, false);
  }
  /** Writes a string as UTF-8 (ASCII directly, the rest through TextEncoder). */
  utf8(s: string): void {
    for (let i = 0; i < s.length; i++) {
      if (s.charCodeAt(i) > 0x7f) {
        this.bytes(encodeUtf8(s));
        return;
      }
    }
    const at = this.grow(s.length);
    for (let i = 0; i < s.length; i++) this.buf[at + i] = s.charCodeAt(i);
  }
  bytes(b: Uint8Array): void {
    const at = this.grow(b.length);
    this.buf.set(b, at);
  }
  zeros(n: number): void {
    const at = this.grow(n);
    this.buf.fill(0, at, at + n);
  }
  /** Pads with zeros to a 4-byte boundary. */
  pad(): void {
    this.zeros(align4(this.len) - this.len);
  }
  patchU16(at: number, v: number): void {
    this.view.setUint16(at, checkInt(v, 0, 0xffff, 'length'), HOST_LE);
  }
  patchU32(at: number, v: number): void {
    this.view.setUint32(at, checkInt(v, 0, 0xffffffff, 'length'), HOST_LE);
  }
  /** The bytes written so far (a copy, so the writer can be reused). */
  finish(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
  /** The bytes written so far, without copying; valid until the next write or reset. */
  peek(): Uint8Array {
    return this.buf.subarray(0, this.len);
  }
  reset(): void {
    this.len = 0;
  }
  /** Drops everything written after byte `at`. */
  truncate(at: number): void {
    if (at < this.len) this.len = Math.max(0, at);
  }
}

function checkInt(v: number, min: number, max: number, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new NetlinkEncodeError(`${what} out of range: ${String(v)} (allowed ${min}..${max})`);
  }
  return v;
}

/** A DataView over exactly the bytes of `b`. */
export function viewOf(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/** Decodes a NUL-terminated (or unterminated, as the kernel tolerates) string in [start, end). */
export function decodeStringAt(bytes: Uint8Array, start: number, end: number): string {
  let stop = start;
  let ascii = true;
  while (stop < end) {
    const c = bytes[stop] as number;
    if (c === 0) break;
    if (c > 0x7f) ascii = false;
    stop++;
  }
  // Interface names and kinds are short ASCII: skip TextDecoder for them.
  if (ascii && stop - start <= 64) return String.fromCharCode.apply(null, bytes.subarray(start, stop) as unknown as number[]);
  return utf8.decode(bytes.subarray(start, stop));
}
