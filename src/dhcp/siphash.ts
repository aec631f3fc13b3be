// SipHash-2-4 (Aumasson & Bernstein) in 32-bit halves, for the DHCP server's DISCOVER path: every new
// client is hashed once to find its stable address slot (with systemd-networkd's key and input, so a
// container gets the address networkd's DHCP server would give it). src/net/siphash.ts is the
// project's reference implementation, in BigInt, for the launcher's few hashes per container; at
// thousands of DISCOVERs a second its allocations show, so this twin exists, and a property test
// holds the two equal (test/unit/dhcp/siphash.test.ts).

/** 64-bit result as [high 32 bits, low 32 bits]. */
export type U64 = [number, number];

export function siphash24(key: Uint8Array, msg: Uint8Array): U64 {
  if (key.length !== 16) throw new RangeError('SipHash key must be 16 bytes');
  const k0l = le32(key, 0), k0h = le32(key, 4), k1l = le32(key, 8), k1h = le32(key, 12);
  let v0h = (k0h ^ 0x736f6d65) >>> 0, v0l = (k0l ^ 0x70736575) >>> 0;
  let v1h = (k1h ^ 0x646f7261) >>> 0, v1l = (k1l ^ 0x6e646f6d) >>> 0;
  let v2h = (k0h ^ 0x6c796765) >>> 0, v2l = (k0l ^ 0x6e657261) >>> 0;
  let v3h = (k1h ^ 0x74656462) >>> 0, v3l = (k1l ^ 0x79746573) >>> 0;

  const round = (): void => {
    let lo: number, t: number;
    // v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32)
    lo = (v0l + v1l) >>> 0; v0h = (v0h + v1h + (lo < v0l ? 1 : 0)) >>> 0; v0l = lo;
    t = ((v1h << 13) | (v1l >>> 19)) >>> 0; v1l = ((v1l << 13) | (v1h >>> 19)) >>> 0; v1h = t;
    v1h = (v1h ^ v0h) >>> 0; v1l = (v1l ^ v0l) >>> 0;
    t = v0h; v0h = v0l; v0l = t;
    // v2 += v3; v3 = rotl(v3, 16); v3 ^= v2
    lo = (v2l + v3l) >>> 0; v2h = (v2h + v3h + (lo < v2l ? 1 : 0)) >>> 0; v2l = lo;
    t = ((v3h << 16) | (v3l >>> 16)) >>> 0; v3l = ((v3l << 16) | (v3h >>> 16)) >>> 0; v3h = t;
    v3h = (v3h ^ v2h) >>> 0; v3l = (v3l ^ v2l) >>> 0;
    // v0 += v3; v3 = rotl(v3, 21); v3 ^= v0
    lo = (v0l + v3l) >>> 0; v0h = (v0h + v3h + (lo < v0l ? 1 : 0)) >>> 0; v0l = lo;
    t = ((v3h << 21) | (v3l >>> 11)) >>> 0; v3l = ((v3l << 21) | (v3h >>> 11)) >>> 0; v3h = t;
    v3h = (v3h ^ v0h) >>> 0; v3l = (v3l ^ v0l) >>> 0;
    // v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32)
    lo = (v2l + v1l) >>> 0; v2h = (v2h + v1h + (lo < v2l ? 1 : 0)) >>> 0; v2l = lo;
    t = ((v1h << 17) | (v1l >>> 15)) >>> 0; v1l = ((v1l << 17) | (v1h >>> 15)) >>> 0; v1h = t;
    v1h = (v1h ^ v2h) >>> 0; v1l = (v1l ^ v2l) >>> 0;
    t = v2h; v2h = v2l; v2l = t;
  };

  const full = msg.length - (msg.length % 8);
  for (let i = 0; i < full; i += 8) {
    const ml = le32(msg, i), mh = le32(msg, i + 4);
    v3l = (v3l ^ ml) >>> 0; v3h = (v3h ^ mh) >>> 0;
    round(); round();
    v0l = (v0l ^ ml) >>> 0; v0h = (v0h ^ mh) >>> 0;
  }
  // Last block: the remaining bytes, and the length's low byte in the top octet.
  const tail = new Uint8Array(8);
  tail.set(msg.subarray(full), 0);
  tail[7] = msg.length & 0xff;
  const bl = le32(tail, 0), bh = le32(tail, 4);
  v3l = (v3l ^ bl) >>> 0; v3h = (v3h ^ bh) >>> 0;
  round(); round();
  v0l = (v0l ^ bl) >>> 0; v0h = (v0h ^ bh) >>> 0;
  v2l = (v2l ^ 0xff) >>> 0;
  round(); round(); round(); round();
  return [(v0h ^ v1h ^ v2h ^ v3h) >>> 0, (v0l ^ v1l ^ v2l ^ v3l) >>> 0];
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
