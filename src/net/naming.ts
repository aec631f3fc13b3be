// Names and MAC addresses exactly as systemd-nspawn (v252) makes them, so that a user who swaps the
// binary sees the same links (`ve-NAME`, `vb-NAME`, `vz-ZONE`, `mv-IF`, `iv-IF`, `host0`), the same
// shortened names for long machine names, and the same MAC addresses — which keeps DHCP leases and
// firewall rules keyed on them stable across the switch. Pure logic; the only I/O is reading the
// host's machine ID (readMachineId), which callers may replace.
//
// References (systemd source tree): src/basic/socket-util.c (ifname_valid_full),
// src/basic/hostname-util.c (hostname_is_valid), src/nspawn/nspawn-network.c (shorten_ifname,
// generate_mac), src/basic/hexdecoct.c (urlsafe_base64char).
import { readFileSync } from 'node:fs';
import { ConfigError, NspawnError } from '../errors.js';
import { siphash24, siphashKey } from './siphash.js';
import { macBytes } from '../common/mac.js';

/** Kernel limit: interface names are shorter than 16 bytes (15 characters + NUL). */
export const IFNAMSIZ = 16;
/** Kernel limit for alternative names (IFLA_ALT_IFNAME). */
export const ALTIFNAMSIZ = 128;
/** HOST_NAME_MAX on Linux: the longest machine name. */
export const HOST_NAME_MAX = 64;
/** The longest `--network-zone=` name: "vz-" + zone must be a valid interface name. */
export const ZONE_NAME_MAX = IFNAMSIZ - 1 - 'vz-'.length;

/** The container side of every veth that nspawn makes. */
export const CONTAINER_IFNAME = 'host0';

/** Key of the interface-name shortening hash (`SHORTEN_IFNAME_HASH_KEY`). */
export const SHORTEN_IFNAME_HASH_KEY = siphashKey('e1 90 a4 04 a8 ef 4b 51 8c cc c3 3a 9f 11 fc a2');

/** Keys of MAC generation, one per kind of link (`generate_mac` callers in nspawn-network.c). */
export const MAC_KEYS = {
  /** host side of `ve-`/`vb-` */
  host: siphashKey('1a 37 6f c7 46 ec 45 0b ad a3 d5 31 06 60 5d b1'),
  /** `host0` */
  container: siphashKey('c3 c4 f9 19 b5 57 b2 1c e6 cf 14 27 03 9c ee a2'),
  /** host side of `--network-veth-extra=` pair #idx */
  extraHost: siphashKey('48 c7 f6 b7 ea 9d 4c 9e b7 28 d4 de 91 d5 bf 66'),
  /** container side of `--network-veth-extra=` pair #idx */
  extraContainer: siphashKey('af 50 17 61 ce f9 4d 35 84 0d 2b 20 54 be ce 59'),
  /** `mv-IF` #idx */
  macvlan: siphashKey('00 13 6d bc 66 83 44 81 bb 0c f9 51 1f 24 a6 6f'),
} as const;
export type MacKind = keyof typeof MAC_KEYS;

// ---------------------------------------------------------------------------------------------
// Interface names

export interface IfnameValidOptions {
  /** Validate as an alternative name (IFLA_ALT_IFNAME): up to 127 bytes, "all"/"default" allowed. */
  alternative?: boolean;
  /** Accept a name that parses as an interface index (systemd's IFNAME_VALID_NUMERIC). */
  numeric?: boolean;
}

/** True when strtol(s, &end, 0) would consume all of `s` (after leading whitespace) and give 1..INT_MAX. */
function parsesAsIfindex(s: string): boolean {
  const m = /^[\t\n\v\f\r ]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(s);
  if (!m) return false;
  const digits = m[2] as string;
  let value: bigint;
  if (/^0[xX]/.test(digits)) value = BigInt(digits);
  else if (digits.length > 1 && digits.startsWith('0')) value = BigInt('0o' + digits.slice(1));
  else value = BigInt(digits);
  if (m[1] === '-') value = -value;
  return value > 0n && value <= 0x7fffffffn;
}

/**
 * systemd's ifname_valid_full(): non-empty, shorter than IFNAMSIZ (or ALTIFNAMSIZ for altnames)
 * bytes, not "." or "..", not "all"/"default" (they collide with /proc/sys/net/…/conf/), only bytes
 * 0x21–0x7E except ':' '/' '%', and not all digits nor anything that parses as an ifindex.
 */
export function ifnameValid(name: string, opts: IfnameValidOptions = {}): boolean {
  if (name.length === 0) return false;
  if (parsesAsIfindex(name)) return opts.numeric === true;
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes >= (opts.alternative ? ALTIFNAMSIZ : IFNAMSIZ)) return false;
  if (name === '.' || name === '..') return false;
  if (!opts.alternative && (name === 'all' || name === 'default')) return false;
  let numeric = true;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f || c === 0x3a /* : */ || c === 0x2f /* / */ || c === 0x25 /* % */) return false;
    if (c < 0x30 || c > 0x39) numeric = false;
  }
  return !numeric;
}

/** Why `name` is not a valid interface name, for error messages; undefined if it is valid. */
export function ifnameProblem(name: string, opts: IfnameValidOptions = {}): string | undefined {
  if (ifnameValid(name, opts)) return undefined;
  const max = (opts.alternative ? ALTIFNAMSIZ : IFNAMSIZ) - 1;
  if (name.length === 0) return 'it is empty';
  if (Buffer.byteLength(name, 'utf8') > max) return `it is longer than ${max} bytes`;
  if (parsesAsIfindex(name) || /^[0-9]+$/.test(name)) return 'it is a number (it would be taken for an interface index)';
  if (name === '.' || name === '..' || name === 'all' || name === 'default') return `"${name}" is reserved`;
  return "only printable ASCII characters other than space, ':', '/' and '%' are allowed";
}

/** URL-safe base64 alphabet (RFC 4648 §5), as urlsafe_base64char() indexes it. */
const URLSAFE_BASE64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

export interface ShortenOptions {
  /**
   * systemd's naming-scheme flag NAMING_NSPAWN_LONG_HASH (schemes v245 and later, the default).
   * false: plain truncation to 15 characters, as with `net.naming-scheme=v243` or older.
   */
  longHash?: boolean;
}

export interface ShortenedIfname {
  /** The name to create the link with (≤ 15 bytes). */
  name: string;
  /**
   * The unshortened name to add as an alternative name (RTM_NEWLINKPROP), when the name was
   * shortened and the full name is a valid altname (< 128 bytes); undefined otherwise.
   */
  altname?: string;
  /** The name as built before shortening. */
  full: string;
  shortened: boolean;
}

/**
 * shorten_ifname(): a name of IFNAMSIZ (16) bytes or more becomes its first 11 characters plus 4
 * URL-safe base64 characters of the low 24 bits of SipHash-2-4(name, SHORTEN_IFNAME_HASH_KEY).
 * Names are ASCII here (machine names and interface names are), so characters are bytes.
 */
export function shortenIfname(full: string, opts: ShortenOptions = {}): ShortenedIfname {
  const bytes = Buffer.from(full, 'utf8');
  if (bytes.length < IFNAMSIZ) return { name: full, full, shortened: false };
  let name: string;
  if (opts.longHash ?? true) {
    const h = siphash24(bytes, SHORTEN_IFNAME_HASH_KEY);
    const c = (shift: bigint): string => URLSAFE_BASE64[Number((h >> shift) & 63n)] as string;
    name = bytes.subarray(0, IFNAMSIZ - 5).toString('latin1') + c(18n) + c(12n) + c(6n) + c(0n);
  } else {
    name = bytes.subarray(0, IFNAMSIZ - 1).toString('latin1');
  }
  const altname = ifnameValid(full, { alternative: true }) ? full : undefined;
  return altname === undefined ? { name, full, shortened: true } : { name, altname, full, shortened: true };
}

/**
 * Whether the naming scheme in force has NAMING_NSPAWN_LONG_HASH, from `net.naming-scheme=` on the
 * kernel command line (which wins) or $NET_NAMING_SCHEME, as systemd's naming_scheme() reads them.
 * Unknown or absent → the default scheme, which has it.
 */
export function namingSchemeHasLongHash(env: NodeJS.ProcessEnv = process.env, cmdline?: string): boolean {
  let kcmd = cmdline;
  if (kcmd === undefined) {
    try {
      kcmd = readFileSync('/proc/cmdline', 'utf8');
    } catch {
      kcmd = '';
    }
  }
  const fromCmdline = /(?:^|\s)net\.naming[-_]scheme=(\S+)/.exec(kcmd)?.[1];
  const scheme = fromCmdline ?? env.NET_NAMING_SCHEME?.replace(/^:/, '');
  const m = scheme ? /^v(\d+)$/.exec(scheme) : null;
  // the schemes systemd knows before v245: v238, v239, v240, v241, v243
  return !(m && Number(m[1]) < 245 && Number(m[1]) >= 238);
}

function prefixed(prefix: string, name: string, opts: ShortenOptions): ShortenedIfname {
  return shortenIfname(prefix + name, opts);
}

/** `--network-veth`: host side `ve-MACHINE`, shortened when long (container side: host0). */
export function vethHostIfname(machine: string, opts: ShortenOptions = {}): ShortenedIfname {
  return prefixed('ve-', machine, opts);
}

/** `--network-bridge=`/`--network-zone=`: host side `vb-MACHINE`, shortened when long. */
export function bridgeVethHostIfname(machine: string, opts: ShortenOptions = {}): ShortenedIfname {
  return prefixed('vb-', machine, opts);
}

/** `--network-macvlan=IF`: container-side link `mv-IF`, shortened when long. */
export function macvlanIfname(parent: string, opts: ShortenOptions = {}): ShortenedIfname {
  return prefixed('mv-', parent, opts);
}

/** `--network-ipvlan=IF`: container-side link `iv-IF`, shortened when long. */
export function ipvlanIfname(parent: string, opts: ShortenOptions = {}): ShortenedIfname {
  return prefixed('iv-', parent, opts);
}

/** A zone name is valid when "vz-" + zone is a valid interface name (so at most 12 characters). */
export function zoneNameValid(zone: string): boolean {
  return zone.length > 0 && ifnameValid('vz-' + zone);
}

/** `--network-zone=ZONE` → bridge `vz-ZONE`; never shortened, so a bad zone is a ConfigError. */
export function zoneBridgeIfname(zone: string): string {
  if (!zoneNameValid(zone)) {
    const why = zone.length === 0 ? 'it is empty'
      : zone.length > ZONE_NAME_MAX ? `it is longer than ${ZONE_NAME_MAX} characters ("vz-" + zone must fit in 15)`
        : ifnameProblem('vz-' + zone) ?? 'it is not valid';
    throw new ConfigError(`Invalid network zone name "${zone}": ${why}.`, { code: 'CFG_INVALID_ZONE' });
  }
  return 'vz-' + zone;
}

// ---------------------------------------------------------------------------------------------
// MAC addresses

/** A MAC address: 6 bytes, in wire order. */
export type MacAddress = Uint8Array;

/**
 * generate_mac(): SipHash-2-4(machineId (16 raw bytes) ‖ machine name ‖ [idx as u64 LE, only if
 * idx > 0]) under the link kind's key; the hash's first 6 little-endian bytes, with the multicast
 * bit cleared and the locally-administered bit set.
 */
export function generateMac(machineId: Uint8Array, machineName: string, kind: MacKind, idx = 0): MacAddress {
  if (machineId.length !== 16) throw new RangeError(`machine ID must be 16 bytes, got ${machineId.length}`);
  if (!Number.isSafeInteger(idx) || idx < 0) throw new RangeError(`MAC index must be a non-negative integer, got ${idx}`);
  const name = Buffer.from(machineName, 'utf8');
  const input = new Uint8Array(16 + name.length + (idx > 0 ? 8 : 0));
  input.set(machineId, 0);
  input.set(name, 16);
  if (idx > 0) new DataView(input.buffer).setBigUint64(16 + name.length, BigInt(idx), true);
  const h = siphash24(input, MAC_KEYS[kind]);
  const mac = new Uint8Array(6);
  for (let i = 0; i < 6; i++) mac[i] = Number((h >> BigInt(8 * i)) & 0xffn);
  mac[0] = ((mac[0] as number) & 0xfe) | 0x02;
  return mac;
}

/** The two ends of the main veth (`ve-`/`vb-` host side and `host0`). */
export function vethMacs(machineId: Uint8Array, machineName: string): { host: MacAddress; container: MacAddress } {
  return { host: generateMac(machineId, machineName, 'host'), container: generateMac(machineId, machineName, 'container') };
}

/** "aa:bb:cc:dd:ee:ff" */
export function formatMac(mac: Uint8Array): string {
  return Array.from(mac, (b) => b.toString(16).padStart(2, '0')).join(':');
}

/** Parses "aa:bb:cc:dd:ee:ff" (or with '-'); throws a RangeError on anything else. */
export function parseMac(text: string): MacAddress {
  const mac = macBytes(text);
  if (!mac) throw new RangeError(`"${text}" is not a MAC address (expected six hex bytes like 02:00:5e:10:00:01)`);
  return mac;
}

/** Parses the text of /etc/machine-id: 32 hex digits (a trailing newline allowed), not all zero. */
export function parseMachineId(text: string): Uint8Array {
  const t = text.trim();
  if (!/^[0-9a-fA-F]{32}$/.test(t)) throw new RangeError('a machine ID is 32 hexadecimal digits');
  if (/^0+$/.test(t)) throw new RangeError('the machine ID is all zeros (unset)');
  return Uint8Array.from(Buffer.from(t, 'hex'));
}

/**
 * The host's machine ID as 16 raw bytes, as sd_id128_get_machine() reads it from /etc/machine-id.
 * Hosts without systemd often have only D-Bus's copy, so /var/lib/dbus/machine-id is tried second.
 * Throws NspawnError NET_NO_MACHINE_ID naming the files when neither holds a valid ID.
 */
export function readMachineId(paths: readonly string[] = ['/etc/machine-id', '/var/lib/dbus/machine-id']): Uint8Array {
  const problems: string[] = [];
  for (const p of paths) {
    let text: string;
    try {
      text = readFileSync(p, 'utf8');
    } catch (err) {
      problems.push(`${p}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
      continue;
    }
    try {
      return parseMachineId(text);
    } catch (err) {
      problems.push(`${p}: ${(err as Error).message}`);
    }
  }
  throw new NspawnError('NET_NO_MACHINE_ID',
    `no machine ID to derive stable MAC addresses from (${problems.join('; ')}); run "systemd-machine-id-setup" or "dbus-uuidgen --ensure=/etc/machine-id"`);
}

// ---------------------------------------------------------------------------------------------
// Machine names

/**
 * systemd's hostname_is_valid(name, 0), which nspawn applies to -M/--machine=: 1–64 characters of
 * [A-Za-z0-9.-], dot-separated labels that are non-empty and neither start nor end with '-', no
 * leading or trailing dot; ".host" (the host itself in machined) is refused. The user-facing error
 * ("Invalid machine name: NAME") is src/runtime/machine-name.ts's requireMachineName().
 */
export function machineNameValid(name: string): boolean {
  if (name.length === 0 || name === '.host') return false;
  let dot = true;
  let hyphen = true;
  for (let i = 0; i < name.length; i++) {
    const c = name[i] as string;
    if (c === '.') {
      if (dot || hyphen) return false;
      dot = true;
      hyphen = false;
    } else if (c === '-') {
      if (dot) return false;
      dot = false;
      hyphen = true;
    } else {
      if (!/^[A-Za-z0-9]$/.test(c)) return false;
      dot = false;
      hyphen = false;
    }
  }
  if (dot || hyphen) return false;
  return name.length <= HOST_NAME_MAX;
}

/**
 * systemd's hostname_cleanup(), which nspawn applies to a machine name derived from a directory or
 * image name: drops characters other than [A-Za-z0-9.-], dots and hyphens where a label cannot
 * have them, stops at 64 characters and strips trailing '-'/'.'. May return "" (then the caller
 * has no usable name and must say so).
 */
export function hostnameCleanup(s: string): string {
  let out = '';
  let dot = true;
  let hyphen = true;
  for (const c of s) {
    if (out.length >= HOST_NAME_MAX) break;
    if (c === '.') {
      if (dot || hyphen) continue;
      out += '.';
      dot = true;
      hyphen = false;
    } else if (c === '-') {
      if (dot) continue;
      out += '-';
      dot = false;
      hyphen = true;
    } else if (/^[A-Za-z0-9]$/.test(c)) {
      out += c;
      dot = false;
      hyphen = false;
    }
  }
  while (out.endsWith('-') || out.endsWith('.')) out = out.slice(0, -1);
  return out;
}
