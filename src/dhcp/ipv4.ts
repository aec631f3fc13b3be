// IPv4 addresses and MAC addresses as the DHCP server handles them. On the hot path an address is a
// plain unsigned 32-bit number (network order read as big-endian): cheap to compare, to hash and to
// use as a Map key. Text is parsed (with ip-address, the project's address library) only where it
// comes from a user: flags, API calls, the lease file.
import { Address4 } from 'ip-address';
import { parseCidrText } from '../common/cidr.js';

/** An IPv4 address as an unsigned 32-bit integer (192.0.2.1 = 0xc0000201). */
export type Ipv4 = number;

export function ipv4ToString(a: Ipv4): string {
  return `${a >>> 24}.${(a >>> 16) & 0xff}.${(a >>> 8) & 0xff}.${a & 0xff}`;
}

/** Parses a dotted-quad address (no prefix); undefined when it is not one. */
export function parseIpv4(text: string): Ipv4 | undefined {
  if (text.includes('/') || !Address4.isValid(text)) return undefined;
  const b = new Address4(text).toArray();
  return (((b[0] ?? 0) << 24) | ((b[1] ?? 0) << 16) | ((b[2] ?? 0) << 8) | (b[3] ?? 0)) >>> 0;
}

export interface Ipv4Cidr {
  /** The address as written (host bits may be set: 192.0.2.1/24). */
  address: Ipv4;
  prefixLength: number;
  network: Ipv4;
  broadcast: Ipv4;
}

/** Parses "A.B.C.D/N" into numbers (the shared parser, src/common/cidr.ts); undefined when it is not one. */
export function parseIpv4Cidr(text: string): Ipv4Cidr | undefined {
  const c = parseCidrText(text, { requirePrefix: true });
  if (typeof c !== 'object' || c.family !== 4) return undefined;
  const address = parseIpv4(c.address) as Ipv4;
  const mask = prefixMask(c.prefixlen);
  const network = (address & mask) >>> 0;
  return { address, prefixLength: c.prefixlen, network, broadcast: (network | ~mask) >>> 0 };
}

/** The netmask of a prefix length (24 → 255.255.255.0). */
export function prefixMask(prefixLength: number): Ipv4 {
  return prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0;
}

export function inSubnet(a: Ipv4, network: Ipv4, prefixLength: number): boolean {
  return ((a & prefixMask(prefixLength)) >>> 0) === network;
}

export function readIpv4(b: Uint8Array, off: number): Ipv4 {
  return (((b[off] ?? 0) << 24) | ((b[off + 1] ?? 0) << 16) | ((b[off + 2] ?? 0) << 8) | (b[off + 3] ?? 0)) >>> 0;
}

export function writeIpv4(b: Uint8Array, off: number, a: Ipv4): void {
  b[off] = a >>> 24;
  b[off + 1] = (a >>> 16) & 0xff;
  b[off + 2] = (a >>> 8) & 0xff;
  b[off + 3] = a & 0xff;
}

/**
 * Where toHex and macToString build their text, to make it one flat string: a string built with `+=`
 * is a tree of its pieces (V8 cons strings), and one that lives long (a lease's key, its MAC) would
 * keep the whole tree: 32 bytes per piece, 8 KiB for the hex of a 255-octet client identifier.
 */
const scratch = Buffer.allocUnsafe(1024);
const DIGITS = Buffer.from('0123456789abcdef', 'latin1');

/** `prefix` (ASCII) followed by the bytes in lowercase hex, as one flat string. */
export function toHex(b: Uint8Array, prefix = ''): string {
  const n = prefix.length + 2 * b.length;
  const out = n <= scratch.length ? scratch : Buffer.allocUnsafe(n);
  let o = prefix ? out.write(prefix, 0, 'latin1') : 0;
  for (let i = 0; i < b.length; i++) {
    const v = b[i] as number;
    out[o++] = DIGITS[v >> 4] as number;
    out[o++] = DIGITS[v & 15] as number;
  }
  return out.toString('latin1', 0, o);
}

/** Parses an even-length hex string; undefined when it is not one. */
export function fromHex(text: string): Uint8Array | undefined {
  if (text.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(text)) return undefined;
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** "02:00:00:00:00:42" of the first `len` bytes. */
export function macToString(b: Uint8Array, len = b.length): string {
  if (len <= 0) return '';
  const out = 3 * len <= scratch.length ? scratch : Buffer.allocUnsafe(3 * len);
  let o = 0;
  for (let i = 0; i < len; i++) {
    const v = b[i] ?? 0;
    if (i) out[o++] = 0x3a; // ':'
    out[o++] = DIGITS[v >> 4] as number;
    out[o++] = DIGITS[v & 15] as number;
  }
  return out.toString('latin1', 0, o);
}

/** Parses a 6-byte MAC written with ':' or '-' separators (src/common/mac.ts); undefined when it is not one. */
export { macBytes as parseMac } from '../common/mac.js';
