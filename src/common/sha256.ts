// SHA-256 and HMAC-SHA-256 in JavaScript (@noble/hashes), for the names, subnets and addresses the
// network library derives from keys: short-lived commands (nspawn-cni per container, the launcher)
// hash a few short strings each, and loading node:crypto for that (three dozen of Node's modules,
// its stream among them) took more of their start-up than the hashing of a lifetime.
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js';

const encoder = new TextEncoder();

function bytes(part: string | Uint8Array): Uint8Array {
  return typeof part === 'string' ? encoder.encode(part) : part;
}

function asBuffer(u: Uint8Array): Buffer {
  return Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

/** SHA-256 of the parts one after another (strings as UTF-8), as node:crypto's createHash('sha256').update(…).digest(). */
export function sha256(...parts: ReadonlyArray<string | Uint8Array>): Buffer {
  if (parts.length === 1) return asBuffer(nobleSha256(bytes(parts[0] as string | Uint8Array)));
  const h = nobleSha256.create();
  for (const p of parts) h.update(bytes(p));
  return asBuffer(h.digest());
}

/** HMAC-SHA-256 of `data` under `key`. */
export function hmacSha256(key: Uint8Array, data: string | Uint8Array): Buffer {
  return asBuffer(hmac(nobleSha256, key, bytes(data)));
}
