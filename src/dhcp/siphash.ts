// SipHash-2-4 (Aumasson & Bernstein) in 32-bit halves, for the DHCP server's DISCOVER path: every new
// client is hashed once to find its stable address slot (with systemd-networkd's key and input, so a
// container gets the address networkd's DHCP server would give it). src/net/siphash.ts is the
// project's reference implementation, in BigInt, for the launcher's few hashes per container; at
// thousands of DISCOVERs a second its allocations show, so this twin exists, and a property test
// holds the two equal (test/unit/dhcp/siphash.test.ts).

/** 64-bit result as [high 32 bits, low 32 bits]. */
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

export function siphash24(key: Uint8Array, msg: Uint8Array): U64 {
  if (key.length !== 16) throw new RangeError('SipHash key must be 16 bytes');
  const v = V;
  const k0l = le32(key, 0), k0h = le32(key, 4), k1l = le32(key, 8), k1h = le32(key, 12);
  v[0] = k0h ^ 0x736f6d65; v[1] = k0l ^ 0x70736575;
  v[2] = k1h ^ 0x646f7261; v[3] = k1l ^ 0x6e646f6d;
  v[4] = k0h ^ 0x6c796765; v[5] = k0l ^ 0x6e657261;
  v[6] = k1h ^ 0x74656462; v[7] = k1l ^ 0x79746573;
  const full = msg.length - (msg.length % 8);
  for (let i = 0; i < full; i += 8) compress(v, le32(msg, i + 4), le32(msg, i));
  // Last block: the remaining bytes, and the length's low byte in the top octet.
  let bl = 0;
  let bh = (msg.length & 0xff) << 24;
  for (let i = full; i < msg.length; i++) {
    const k = i - full;
    if (k < 4) bl |= (msg[i] as number) << (8 * k);
    else bh |= (msg[i] as number) << (8 * (k - 4));
  }
  compress(v, bh >>> 0, bl >>> 0);
  v[5] = (v[5] as number) ^ 0xff;
  sipRound(v); sipRound(v); sipRound(v); sipRound(v);
  return [((v[0] as number) ^ (v[2] as number) ^ (v[4] as number) ^ (v[6] as number)) >>> 0,
    ((v[1] as number) ^ (v[3] as number) ^ (v[5] as number) ^ (v[7] as number)) >>> 0];
}

function le32(b: Uint8Array, off: number): number {
  return ((b[off] as number) | ((b[off + 1] as number) << 8) | ((b[off + 2] as number) << 16) | ((b[off + 3] as number) << 24)) >>> 0;
}

/** (hi·2^32 + lo) mod n, exactly, for n below 2^32. */
export function mod64([hi, lo]: U64, n: number): number {
  // Horner in 16-bit steps: hi·2^32 + lo = ((hi·2^16 + lo_hi)·2^16 + lo_lo); nothing exceeds 2^53.
  const a = hi % n;
  const b = (a * 65536 + (lo >>> 16)) % n;
  return (b * 65536 + (lo & 0xffff)) % n;
}

/** systemd-networkd's key for the DHCP server's address hash (sd-dhcp-server.c, HASH_KEY). */
const NETWORKD_HASH_KEY = Uint8Array.of(0x0d, 0x1d, 0xfe, 0xbd, 0xf1, 0x24, 0xbd, 0xb3, 0x47, 0xf1, 0xdd, 0x6e, 0x73, 0x21, 0x93, 0x30);

/** The hash networkd uses to place a client: SipHash-2-4 over u64_LE(len(id)) ‖ id. */
export function clientIdHash(clientId: Uint8Array): U64 {
  const msg = new Uint8Array(8 + clientId.length);
  let len = clientId.length;
  for (let i = 0; i < 8; i++) {
    msg[i] = len & 0xff;
    len = Math.floor(len / 256);
  }
  msg.set(clientId, 8);
  return siphash24(NETWORKD_HASH_KEY, msg);
}
