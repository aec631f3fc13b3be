// SipHash-2-4 (Aumasson & Bernstein, "SipHash: a fast short-input PRF", 2012), as systemd uses it
// for interface-name shortening, MAC generation, UID-range picking and the DHCP server's address
// choice. One implementation for all of them, in 32-bit halves: the DHCP server hashes every new
// client on its DISCOVER path, where BigInt arithmetic would allocate at every step; the
// launcher's few hashes per container take the same path and get the result as a bigint.
//
// Our own code rather than an npm package: the two maintained candidates (`siphash`, which takes
// the key as four u32 words and the message as a JS string, and `siphash24`, untyped with a
// WebAssembly path) would each need an adapter the size of this file. Pinned by the reference
// implementation's 64 test vectors and by systemd's own outputs (test/unit/net/siphash.test.ts).

/** A 64-bit value as [high 32 bits, low 32 bits]. */
export type U64 = [number, number];

// State v0..v3 as (high, low) pairs in one typed array: [v0h, v0l, v1h, v1l, v2h, v2l, v3h, v3l].
const V = new Uint32Array(8);

function sipRound(v: Uint32Array): void {
  let lo: number, t: number;
  // v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32)
  lo = ((v[1] as number) + (v[3] as number)) >>> 0;
  v[0] = (v[0] as number) + (v[2] as number) + (lo < (v[1] as number) ? 1 : 0);
  v[1] = lo;
  t = ((v[2] as number) << 13) | ((v[3] as number) >>> 19);
  v[3] = ((v[3] as number) << 13) | ((v[2] as number) >>> 19);
  v[2] = t;
  v[2] = (v[2] as number) ^ (v[0] as number);
  v[3] = (v[3] as number) ^ (v[1] as number);
  t = v[0] as number; v[0] = v[1] as number; v[1] = t;
  // v2 += v3; v3 = rotl(v3, 16); v3 ^= v2
  lo = ((v[5] as number) + (v[7] as number)) >>> 0;
  v[4] = (v[4] as number) + (v[6] as number) + (lo < (v[5] as number) ? 1 : 0);
  v[5] = lo;
  t = ((v[6] as number) << 16) | ((v[7] as number) >>> 16);
  v[7] = ((v[7] as number) << 16) | ((v[6] as number) >>> 16);
  v[6] = t;
  v[6] = (v[6] as number) ^ (v[4] as number);
  v[7] = (v[7] as number) ^ (v[5] as number);
  // v0 += v3; v3 = rotl(v3, 21); v3 ^= v0
  lo = ((v[1] as number) + (v[7] as number)) >>> 0;
  v[0] = (v[0] as number) + (v[6] as number) + (lo < (v[1] as number) ? 1 : 0);
  v[1] = lo;
  t = ((v[6] as number) << 21) | ((v[7] as number) >>> 11);
  v[7] = ((v[7] as number) << 21) | ((v[6] as number) >>> 11);
  v[6] = t;
  v[6] = (v[6] as number) ^ (v[0] as number);
  v[7] = (v[7] as number) ^ (v[1] as number);
  // v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32)
  lo = ((v[5] as number) + (v[3] as number)) >>> 0;
  v[4] = (v[4] as number) + (v[2] as number) + (lo < (v[5] as number) ? 1 : 0);
  v[5] = lo;
  t = ((v[2] as number) << 17) | ((v[3] as number) >>> 15);
  v[3] = ((v[3] as number) << 17) | ((v[2] as number) >>> 15);
  v[2] = t;
  v[2] = (v[2] as number) ^ (v[4] as number);
  v[3] = (v[3] as number) ^ (v[5] as number);
  t = v[4] as number; v[4] = v[5] as number; v[5] = t;
}

function compress(v: Uint32Array, mh: number, ml: number): void {
  v[6] = (v[6] as number) ^ mh;
  v[7] = (v[7] as number) ^ ml;
  sipRound(v);
  sipRound(v);
  v[0] = (v[0] as number) ^ mh;
  v[1] = (v[1] as number) ^ ml;
}

function le32(b: Uint8Array, off: number): number {
  return ((b[off] as number) | ((b[off + 1] as number) << 8) | ((b[off + 2] as number) << 16) | ((b[off + 3] as number) << 24)) >>> 0;
}

/**
 * SipHash-2-4 of `data` under a 16-byte `key` (k0 = LE u64 of bytes 0–7, k1 = bytes 8–15), as the
 * u64 the reference implementation returns, in halves. Allocates nothing but the result.
 */
export function siphash24Halves(data: Uint8Array, key: Uint8Array): U64 {
  if (key.length !== 16) throw new RangeError(`SipHash key must be 16 bytes, got ${key.length}`);
  const v = V;
  const k0l = le32(key, 0), k0h = le32(key, 4), k1l = le32(key, 8), k1h = le32(key, 12);
  v[0] = k0h ^ 0x736f6d65; v[1] = k0l ^ 0x70736575;
  v[2] = k1h ^ 0x646f7261; v[3] = k1l ^ 0x6e646f6d;
  v[4] = k0h ^ 0x6c796765; v[5] = k0l ^ 0x6e657261;
  v[6] = k1h ^ 0x74656462; v[7] = k1l ^ 0x79746573;
  const full = data.length - (data.length % 8);
  for (let i = 0; i < full; i += 8) compress(v, le32(data, i + 4), le32(data, i));
  // Last block: the remaining bytes, and the length's low byte in the top octet.
  let bl = 0;
  let bh = (data.length & 0xff) << 24;
  for (let i = full; i < data.length; i++) {
    const k = i - full;
    if (k < 4) bl |= (data[i] as number) << (8 * k);
    else bh |= (data[i] as number) << (8 * (k - 4));
  }
  compress(v, bh >>> 0, bl >>> 0);
  v[5] = (v[5] as number) ^ 0xff;
  sipRound(v); sipRound(v); sipRound(v); sipRound(v);
  return [((v[0] as number) ^ (v[2] as number) ^ (v[4] as number) ^ (v[6] as number)) >>> 0,
    ((v[1] as number) ^ (v[3] as number) ^ (v[5] as number) ^ (v[7] as number)) >>> 0];
}

/** SipHash-2-4 of `data` under a 16-byte `key`, as a u64 (serialise it little-endian for its bytes). */
export function siphash24(data: Uint8Array, key: Uint8Array): bigint {
  const [hi, lo] = siphash24Halves(data, key);
  return (BigInt(hi) << 32n) | BigInt(lo);
}

/** The hash as 8 little-endian bytes (how systemd copies it into a MAC address). */
export function siphash24Bytes(data: Uint8Array, key: Uint8Array): Uint8Array {
  const [hi, lo] = siphash24Halves(data, key);
  const out = new Uint8Array(8);
  const view = new DataView(out.buffer);
  view.setUint32(0, lo, true);
  view.setUint32(4, hi, true);
  return out;
}

/** Parses a key written as hex bytes in order ("e1 90 a4 …" or "e190a4…"). */
export function siphashKey(hex: string): Uint8Array {
  const clean = hex.replace(/[\s:]/g, '');
  if (!/^[0-9a-fA-F]{32}$/.test(clean)) throw new RangeError(`SipHash key must be 32 hex digits, got "${hex}"`);
  return Uint8Array.from(Buffer.from(clean, 'hex'));
}

/** (hi·2^32 + lo) mod n, exactly, for n below 2^32. */
export function mod64([hi, lo]: U64, n: number): number {
  // Horner in 16-bit steps: hi·2^32 + lo = ((hi·2^16 + lo_hi)·2^16 + lo_lo); nothing exceeds 2^53.
  const a = hi % n;
  const b = (a * 65536 + (lo >>> 16)) % n;
  return (b * 65536 + (lo & 0xffff)) % n;
}
