// IPv6 prefixes for container links. Each host has a ULA /48 (RFC 4193) whose 40-bit global ID is
// derived from /etc/machine-id — stable across reboots, different between hosts — or an administrator
// gives a global prefix (then nothing is NATed for it). A link gets a /64 of it chosen from its key
// (the machine name for a ve- link, the zone name for a vz- bridge) like the IPv4 subnets in pool.ts:
// the same machine gets the same /64 at every start, and moves only when another key holds it.
//
// The global ID is HMAC-SHA256(machine-id, app id) truncated, the way systemd derives app-specific
// IDs (sd_id128_get_machine_app_specific): the machine ID itself cannot be read back out of the
// prefix, which containers and anyone they talk to see. RFC 4193 §3.2.2's SHA-1 of the time and an
// EUI-64 would give a prefix that changes on every install, which is what a stable ID avoids.
import { hmacSha256, sha256 } from '../../common/sha256.js';
import { Address6 } from 'ip-address';
import { ConfigError } from '../../errors.js';
import type { Ipv6Bytes } from './ndp.js';

/** Application ID for the ULA global ID (a fixed random 128-bit value; changing it moves every host). */
const ULA_APP_ID = Buffer.from('5b3c0d5a8e2f4f61a7c2e4d1f09b6a37', 'hex');
/** The hash input's domain tag for /64 choice; versioned, as pool.ts's is. */
const PREFIX_DOMAIN = 'nspawn-ts/prefix6/v1\0';

export type PrefixKind = 'veth' | 'zone';

/** A parsed prefix: its network bytes and length. */
export interface Ipv6Prefix {
  bytes: Ipv6Bytes;
  length: number;
}

/** Reads "fd12:3456:789a::/48"; the address must have no bits set past the length. */
export function parseIpv6Prefix(text: string): Ipv6Prefix {
  const m = /^([0-9a-fA-F:.]+)\/(\d{1,3})$/.exec(text.trim());
  if (!m || !Address6.isValid(m[1] as string)) throw new ConfigError(`"${text}" is not an IPv6 prefix (expected e.g. 2001:db8:42::/48)`, { code: 'CFG_IPV6_PREFIX' });
  const length = Number(m[2]);
  if (length > 64) throw new ConfigError(`IPv6 prefix ${text} is longer than /64: container links need a /64 each (SLAAC)`, { code: 'CFG_IPV6_PREFIX' });
  const bytes = addressBytes(m[1] as string);
  for (let bit = length; bit < 128; bit++) {
    if (((bytes[bit >> 3] as number) >> (7 - (bit & 7))) & 1) {
      throw new ConfigError(`IPv6 prefix ${text} has bits set past /${length}; did you mean ${formatPrefix({ bytes: maskBytes(bytes, length), length })}?`, { code: 'CFG_IPV6_PREFIX' });
    }
  }
  return { bytes, length };
}

/** This host's ULA /48: fd00::/8 + a 40-bit global ID from the machine ID (32 hex digits). */
export function hostUlaPrefix(machineId: string): Ipv6Prefix {
  const id = machineId.trim().toLowerCase();
  if (!/^[0-9a-f]{32}$/.test(id)) throw new ConfigError(`the machine ID "${machineId.trim()}" is not 32 hexadecimal digits (/etc/machine-id)`, { code: 'CFG_MACHINE_ID' });
  const mac = hmacSha256(Buffer.from(id, 'hex'), ULA_APP_ID);
  const bytes = new Uint8Array(16);
  bytes[0] = 0xfd;
  bytes.set(mac.subarray(0, 5), 1);
  return { bytes, length: 48 };
}

/**
 * The /64 of `base` for a link: subnet number SHA-256(domain ‖ kind ‖ 0 ‖ key) mod 2^(64 − base
 * length), probing forward (wrapping) past the /64s in `inUse` (formatted as formatPrefix writes
 * them). Subnet 0 is never chosen: a global /48 often routes its first /64 elsewhere.
 */
export function linkPrefix(base: Ipv6Prefix, kind: PrefixKind, key: string, inUse: ReadonlySet<string> = new Set()): Ipv6Prefix {
  const bits = 64 - base.length;
  const count = 2n ** BigInt(bits);
  if (count < 2n) throw new ConfigError(`IPv6 prefix ${formatPrefix(base)} has no room for container /64s`, { code: 'CFG_IPV6_PREFIX' });
  const h = sha256(PREFIX_DOMAIN, kind, '\0', key).readBigUInt64BE(0);
  const baseValue = toBigInt(base.bytes) >> 64n;
  for (let i = 0n; i < count; i++) {
    const n = (h + i) % count;
    if (n === 0n) continue;
    const p = { bytes: fromBigInt((baseValue | n) << 64n), length: 64 };
    if (!inUse.has(formatPrefix(p))) return p;
    if (i > 65536n) break;
  }
  throw new ConfigError(`no free /64 left in IPv6 prefix ${formatPrefix(base)}`, { code: 'CFG_IPV6_PREFIX' });
}

/** The address `suffix` (e.g. 1n for the host's ::1) inside a /64. */
export function addressInPrefix(prefix: Ipv6Prefix, suffix: bigint): Ipv6Bytes {
  return fromBigInt((toBigInt(prefix.bytes) & ~((1n << 64n) - 1n)) | suffix);
}

/** The modified EUI-64 interface identifier of a MAC (RFC 4291 §2.5.1, appendix A). */
export function eui64InterfaceId(mac: Uint8Array): bigint {
  if (mac.length !== 6) throw new RangeError(`a MAC has 6 bytes, not ${mac.length}`);
  const b = [(mac[0] as number) ^ 0x02, mac[1], mac[2], 0xff, 0xfe, mac[3], mac[4], mac[5]] as number[];
  return b.reduce((v, x) => (v << 8n) | BigInt(x), 0n);
}

/** The address SLAAC forms with EUI-64 from `mac` in a /64 (what the kernel does with addr_gen_mode 0). */
export function slaacAddress(prefix: Ipv6Prefix, mac: Uint8Array): Ipv6Bytes {
  return addressInPrefix(prefix, eui64InterfaceId(mac));
}

/** fe80::/64 with the EUI-64 of `mac`: a link's link-local address as the kernel makes it by default. */
export function linkLocalAddress(mac: Uint8Array): Ipv6Bytes {
  return addressInPrefix({ bytes: addressBytes('fe80::'), length: 64 }, eui64InterfaceId(mac));
}

export function addressBytes(text: string): Ipv6Bytes {
  if (!Address6.isValid(text)) throw new ConfigError(`"${text}" is not an IPv6 address`, { code: 'CFG_IPV6_ADDRESS' });
  return fromBigInt(BigInt(`0x${new Address6(text).canonicalForm().replace(/:/g, '')}`));
}

export function formatAddress(b: Ipv6Bytes): string {
  return Address6.fromBigInt(toBigInt(b)).correctForm();
}

export function formatPrefix(p: Ipv6Prefix): string {
  return `${formatAddress(maskBytes(p.bytes, p.length))}/${p.length}`;
}

function maskBytes(a: Ipv6Bytes, length: number): Ipv6Bytes {
  return fromBigInt(toBigInt(a) & (length === 0 ? 0n : ((1n << 128n) - 1n) ^ ((1n << BigInt(128 - length)) - 1n)));
}

function toBigInt(b: Ipv6Bytes): bigint {
  return b.reduce((v, x) => (v << 8n) | BigInt(x), 0n);
}

function fromBigInt(v: bigint): Ipv6Bytes {
  const out = new Uint8Array(16);
  for (let i = 15; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}
