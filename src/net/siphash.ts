// SipHash-2-4 (Aumasson & Bernstein, "SipHash: a fast short-input PRF", 2012), as systemd uses it
// for interface-name shortening, MAC generation, DHCP address choice and UID-range picking.
//
// Our own ~40 lines rather than an npm package: the two maintained candidates (`siphash`, which
// takes the key as four u32 words and the message as a JS string, and `siphash24`, untyped with a
// WebAssembly path) would each need an adapter the size of this file, and this one is pinned by
// the reference implementation's 64 test vectors (test/unit/net/siphash.test.ts). Speed is not a
// concern: every input here is under 100 bytes and hashed a handful of times per container.

const MASK = (1n << 64n) - 1n;

function rotl(x: bigint, b: bigint): bigint {
  return ((x << b) | (x >> (64n - b))) & MASK;
}

function readU64LE(bytes: Uint8Array, off: number): bigint {
  let v = 0n;
  for (let i = 7; i >= 0; i--) v = (v << 8n) | BigInt(bytes[off + i] ?? 0);
  return v;
}

/**
 * SipHash-2-4 of `data` under a 16-byte `key` (k0 = LE u64 of bytes 0–7, k1 = bytes 8–15), as the
 * u64 value the reference implementation returns (serialise it little-endian for its bytes).
 */
export function siphash24(data: Uint8Array, key: Uint8Array): bigint {
  if (key.length !== 16) throw new RangeError(`SipHash key must be 16 bytes, got ${key.length}`);
  const k0 = readU64LE(key, 0);
  const k1 = readU64LE(key, 8);
  let v0 = k0 ^ 0x736f6d6570736575n;
  let v1 = k1 ^ 0x646f72616e646f6dn;
  let v2 = k0 ^ 0x6c7967656e657261n;
  let v3 = k1 ^ 0x7465646279746573n;

  const round = (): void => {
    v0 = (v0 + v1) & MASK; v1 = rotl(v1, 13n); v1 ^= v0; v0 = rotl(v0, 32n);
    v2 = (v2 + v3) & MASK; v3 = rotl(v3, 16n); v3 ^= v2;
    v0 = (v0 + v3) & MASK; v3 = rotl(v3, 21n); v3 ^= v0;
    v2 = (v2 + v1) & MASK; v1 = rotl(v1, 17n); v1 ^= v2; v2 = rotl(v2, 32n);
  };

  const len = data.length;
  const full = len - (len % 8);
  for (let off = 0; off < full; off += 8) {
    const m = readU64LE(data, off);
    v3 ^= m;
    round(); round();
    v0 ^= m;
  }
  // last block: the remaining bytes, then the length's low byte in the top byte
  let b = BigInt(len & 0xff) << 56n;
  for (let i = len - 1; i >= full; i--) b |= BigInt(data[i] ?? 0) << BigInt(8 * (i - full));
  v3 ^= b;
  round(); round();
  v0 ^= b;
  v2 ^= 0xffn;
  round(); round(); round(); round();
  return (v0 ^ v1 ^ v2 ^ v3) & MASK;
}

/** The hash as 8 little-endian bytes (how systemd copies it into a MAC address). */
export function siphash24Bytes(data: Uint8Array, key: Uint8Array): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, siphash24(data, key), true);
  return out;
}

/** Parses a key written as hex bytes in order ("e1 90 a4 …" or "e190a4…"). */
export function siphashKey(hex: string): Uint8Array {
  const clean = hex.replace(/[\s:]/g, '');
  if (!/^[0-9a-fA-F]{32}$/.test(clean)) throw new RangeError(`SipHash key must be 32 hex digits, got "${hex}"`);
  return Uint8Array.from(Buffer.from(clean, 'hex'));
}
