// Resource-control properties: `nspawn-ts --property=NAME=VALUE` and `machinectl-ts set-property
// MACHINE NAME=VALUE`. Parses systemd's value syntax the way systemd (v252, src/basic/parse-util.c,
// percent-util.c, time-util.c; src/shared/bus-unit-util.c for set-property) does, and resolves the
// relative forms (percentages) against the host the way src/basic/limits-util.c does:
//
//   MemoryMax=, MemoryHigh=, MemoryLow=, MemorySwapMax=
//       bytes with an optional base-1024 suffix K M G T P E (upper case; `B` = bytes), fractions and
//       sums as parse_size() takes them ("1.5G", "1G 512M"); `infinity`; or a percentage of physical
//       memory (parse_permyriad: "50%", "12.5%", "12.25%", "125‰", "1250‱"; at most 100%), turned into
//       bytes when applied (rounded down to whole pages). MemoryMax/MemoryHigh must be > 0. An empty
//       value resets: `infinity`, and for MemoryLow 0.
//   CPUQuota=N%      per core, above 100% allowed (200% = two cores); one or two decimals; > 0.
//                    Empty resets (no quota).
//   CPUQuotaPeriodSec=   a time span ("100ms", "1s", "2500us"; plain number = seconds) or
//                    `infinity`/empty = default (100 ms); clamped to [1 ms, 1 s] when applied.
//   CPUWeight=       1…10000 or `idle`; empty = default (100).
//   TasksMax=        a count > 0, a percentage of the system's task limit, or `infinity`.
//
// Integers go through systemd's safe_atoi()/safe_atou64(), so its quirks come with them: leading
// whitespace and `+` are accepted, `0x` is hex, `0o`/`0b` octal/binary, and a leading 0 is C octal
// ("010%" is 8%). Byte values are bigint: limits reach 2^64 and must not round.
//
// Parts: systemd-numbers.ts (systemd's number parsers), property-limits.ts (resolution against the
// host), property-store.ts (persistent properties).
import { ConfigError } from '../errors.js';
import {
  parsePermyriad, parsePermyriadUnbounded, parseSize, parseTimespanUsec, safeAtou64, UINT64_MAX, USEC_PER_SEC,
} from './systemd-numbers.js';

export const SUPPORTED_PROPERTIES = [
  'MemoryMax', 'MemoryHigh', 'MemoryLow', 'MemorySwapMax',
  'CPUQuota', 'CPUQuotaPeriodSec', 'CPUWeight', 'TasksMax', 'DeviceAllow',
] as const;
export type PropertyName = (typeof SUPPORTED_PROPERTIES)[number];

/** Resource-control names systemd knows that nspawn-ts does not implement (for a precise message). */
const KNOWN_UNSUPPORTED = new Set([
  'CPUShares', 'StartupCPUShares', 'StartupCPUWeight', 'CPUAccounting', 'MemoryAccounting',
  'MemoryLimit', 'MemoryMin', 'MemoryZSwapMax', 'TasksAccounting', 'IOAccounting', 'IOWeight',
  'StartupIOWeight', 'IODeviceWeight', 'IOReadBandwidthMax', 'IOWriteBandwidthMax', 'IOReadIOPSMax',
  'IOWriteIOPSMax', 'IODeviceLatencyTargetSec', 'BlockIOAccounting', 'BlockIOWeight',
  'BlockIODeviceWeight', 'BlockIOReadBandwidth', 'BlockIOWriteBandwidth', 'AllowedCPUs',
  'AllowedMemoryNodes', 'DevicePolicy', 'IPAccounting', 'IPAddressAllow',
  'IPAddressDeny', 'Delegate', 'Slice', 'ManagedOOMSwap', 'ManagedOOMMemoryPressure',
]);

/** A memory limit as written: absolute, relative to physical memory (permyriad), or none. */
export type ByteLimit =
  | { kind: 'infinity' }
  | { kind: 'bytes'; bytes: bigint }
  | { kind: 'scale'; permyriad: number };

export type TasksLimit =
  | { kind: 'infinity' }
  | { kind: 'count'; count: bigint }
  | { kind: 'scale'; permyriad: number };

/** CPU time per wall-clock second, in µs (CPUQuota=200% → 2 000 000). */
export type CpuQuota = { kind: 'infinity' } | { kind: 'quota'; usecPerSec: number };
export type CpuQuotaPeriod = { kind: 'default' } | { kind: 'usec'; usec: number };
export type CpuWeight = { kind: 'default' } | { kind: 'idle' } | { kind: 'weight'; weight: number };

/** The properties given for one machine; absent = not configured (the kernel's default stays). */
export interface ResourceProperties {
  MemoryMax?: ByteLimit;
  MemoryHigh?: ByteLimit;
  MemoryLow?: ByteLimit;
  MemorySwapMax?: ByteLimit;
  CPUQuota?: CpuQuota;
  CPUQuotaPeriodSec?: CpuQuotaPeriod;
  CPUWeight?: CpuWeight;
  TasksMax?: TasksLimit;
  DeviceAllow?: DeviceAllowList;
}

/**
 * DeviceAllow= as systemd takes it: each assignment adds a device (a /dev path, or a class
 * char-NAME / block-NAME from /proc/devices, globs allowed) with access r, w, m (default rwm); an
 * empty assignment resets the list (back to the devices every container gets).
 */
export interface DeviceAllowList {
  reset: boolean;
  entries: Array<{ node: string; access: string }>;
}

// ---------------------------------------------------------------------------------------------
// property values

function supportedList(): string {
  return SUPPORTED_PROPERTIES.join(', ');
}

/** Checks a property name; unknown or unsupported → ConfigError naming it and listing what works. */
export function checkPropertyName(name: string, where = '--property'): PropertyName {
  if ((SUPPORTED_PROPERTIES as readonly string[]).includes(name)) return name as PropertyName;
  const near = SUPPORTED_PROPERTIES.find((p) => p.toLowerCase() === name.toLowerCase());
  if (near) {
    throw new ConfigError(`${where}: unknown property '${name}' (property names are case-sensitive: did you mean '${near}'?)`,
      { code: 'CFG_PROPERTY_UNKNOWN' });
  }
  if (KNOWN_UNSUPPORTED.has(name)) {
    throw new ConfigError(`${where}: property '${name}' is not supported by nspawn-ts; supported: ${supportedList()}`,
      { code: 'CFG_PROPERTY_UNSUPPORTED' });
  }
  throw new ConfigError(`${where}: unknown property '${name}'; supported: ${supportedList()}`,
    { code: 'CFG_PROPERTY_UNKNOWN' });
}

function valueError(name: string, value: string, why: string, allowed: string, where: string): ConfigError {
  return new ConfigError(`${where}: invalid value '${value}' for ${name}=: ${why}; allowed: ${allowed}`,
    { code: 'CFG_PROPERTY_VALUE' });
}

const BYTES_ALLOWED = 'a size in bytes with an optional K, M, G, T, P or E suffix (base 1024, e.g. 512M, 1.5G), ' +
  'a percentage of physical memory (e.g. 50%), or "infinity"';
const TASKS_ALLOWED = 'a number of tasks (e.g. 512), a percentage of the system limit (e.g. 10%), or "infinity"';
const CPU_QUOTA_ALLOWED = 'a percentage of one CPU above 0, e.g. 50% or 200% for two CPUs (at most two decimals), or empty to remove the quota';
const PERIOD_ALLOWED = 'a time span from 1ms to 1s, e.g. 10ms or 100ms, or "infinity"/empty for the default (100ms)';
const WEIGHT_ALLOWED = 'an integer from 1 to 10000, or "idle"';

function why(err: 'EINVAL' | 'ERANGE'): string {
  return err === 'ERANGE' ? 'out of range' : 'not understood';
}

function parseByteLimit(name: PropertyName, value: string, where: string): ByteLimit {
  const zeroAllowed = name === 'MemoryLow' || name === 'MemorySwapMax';
  if (value === '') return name === 'MemoryLow' ? { kind: 'bytes', bytes: 0n } : { kind: 'infinity' };
  if (value === 'infinity') return { kind: 'infinity' };
  const pct = parsePermyriad(value);
  if (pct.ok) {
    if (pct.value === 0 && !zeroAllowed) throw valueError(name, value, 'the limit must be above 0', BYTES_ALLOWED, where);
    return { kind: 'scale', permyriad: pct.value };
  }
  if (/[%‰‱]$/.test(value)) {
    throw valueError(name, value, pct.err === 'ERANGE' ? 'a percentage of memory cannot exceed 100%' : 'not a percentage systemd accepts',
      BYTES_ALLOWED, where);
  }
  const size = parseSize(value);
  if (!size.ok) throw valueError(name, value, size.err === 'ERANGE' ? 'too large (at most 16E)' : why(size.err), BYTES_ALLOWED, where);
  if (size.value >= UINT64_MAX) throw valueError(name, value, 'too large (at most 16E)', BYTES_ALLOWED, where);
  if (size.value === 0n && !zeroAllowed) throw valueError(name, value, 'the limit must be above 0', BYTES_ALLOWED, where);
  return { kind: 'bytes', bytes: size.value };
}

function parseTasksMax(value: string, where: string): TasksLimit {
  if (value === '' || value === 'infinity') return { kind: 'infinity' };
  const pct = parsePermyriad(value);
  if (pct.ok) {
    if (pct.value === 0) throw valueError('TasksMax', value, 'the limit must be above 0', TASKS_ALLOWED, where);
    return { kind: 'scale', permyriad: pct.value };
  }
  if (/[%‰‱]$/.test(value)) {
    throw valueError('TasksMax', value, pct.err === 'ERANGE' ? 'a percentage cannot exceed 100%' : why(pct.err), TASKS_ALLOWED, where);
  }
  const n = safeAtou64(value);
  if (!n.ok) throw valueError('TasksMax', value, why(n.err), TASKS_ALLOWED, where);
  if (n.value <= 0n || n.value >= UINT64_MAX) throw valueError('TasksMax', value, 'out of range', TASKS_ALLOWED, where);
  return { kind: 'count', count: n.value };
}

function parseCpuQuota(value: string, where: string): CpuQuota {
  if (value === '') return { kind: 'infinity' };
  const r = parsePermyriadUnbounded(value);
  if (!r.ok) throw valueError('CPUQuota', value, why(r.err), CPU_QUOTA_ALLOWED, where);
  if (r.value === 0) throw valueError('CPUQuota', value, 'the quota must be above 0%', CPU_QUOTA_ALLOWED, where);
  // (r * USEC_PER_SEC) / 10000 in integer arithmetic
  return { kind: 'quota', usecPerSec: Math.floor((r.value * USEC_PER_SEC) / 10_000) };
}

function parseCpuQuotaPeriod(value: string, where: string): CpuQuotaPeriod {
  if (value === '' || value === 'infinity') return { kind: 'default' };
  const r = parseTimespanUsec(value);
  if (!r.ok) throw valueError('CPUQuotaPeriodSec', value, why(r.err), PERIOD_ALLOWED, where);
  if (r.value === 0) throw valueError('CPUQuotaPeriodSec', value, 'the period must be above 0', PERIOD_ALLOWED, where);
  return { kind: 'usec', usec: r.value };
}

function parseCpuWeight(value: string, where: string): CpuWeight {
  if (value === '') return { kind: 'default' };
  if (value === 'idle') return { kind: 'idle' };
  const n = safeAtou64(value);
  if (!n.ok) throw valueError('CPUWeight', value, why(n.err), WEIGHT_ALLOWED, where);
  if (n.value < 1n || n.value > 10_000n) throw valueError('CPUWeight', value, 'out of range', WEIGHT_ALLOWED, where);
  return { kind: 'weight', weight: Number(n.value) };
}

/** One parsed `NAME=VALUE`. */
export type PropertyAssignment = {
  [K in PropertyName]: { name: K; value: NonNullable<ResourceProperties[K]> };
}[PropertyName];

/** Parses the value of one property. `where` prefixes error messages (e.g. "set-property"). */
export function parsePropertyValue(name: string, value: string, where = '--property'): PropertyAssignment {
  const n = checkPropertyName(name, where);
  switch (n) {
    case 'MemoryMax':
    case 'MemoryHigh':
    case 'MemoryLow':
    case 'MemorySwapMax':
      return { name: n, value: parseByteLimit(n, value, where) };
    case 'TasksMax':
      return { name: n, value: parseTasksMax(value, where) };
    case 'CPUQuota':
      return { name: n, value: parseCpuQuota(value, where) };
    case 'CPUQuotaPeriodSec':
      return { name: n, value: parseCpuQuotaPeriod(value, where) };
    case 'CPUWeight':
      return { name: n, value: parseCpuWeight(value, where) };
    case 'DeviceAllow':
      return { name: n, value: parseDeviceAllow(value, where) };
  }
}

function parseDeviceAllow(value: string, where: string): DeviceAllowList {
  const v = value.trim();
  if (v === '') return { reset: true, entries: [] };
  const parts = v.split(/\s+/);
  const node = parts[0] as string;
  const access = parts[1] ?? 'rwm';
  const allowed = "a device node under /dev (e.g. '/dev/fuse rw'), or char-NAME / block-NAME from /proc/devices (e.g. 'char-pts'), then access r, w, m";
  if (parts.length > 2) throw valueError('DeviceAllow', value, 'too many words', allowed, where);
  if (!/^(\/dev\/[^\0]+|(char|block)-[^\s/]+)$/.test(node) || node.split('/').includes('..')) throw valueError('DeviceAllow', value, `'${node}' is not a device`, allowed, where);
  if (!/^[rwm]{1,3}$/.test(access) || new Set(access).size !== access.length) throw valueError('DeviceAllow', value, `bad access '${access}'`, allowed, where);
  return { reset: false, entries: [{ node, access }] };
}

/** Another DeviceAllow= on top of `base`: a reset replaces the list, else the entries add up. */
function addDeviceAllow(base: DeviceAllowList | undefined, over: DeviceAllowList): DeviceAllowList {
  if (!base || over.reset) return { reset: over.reset, entries: [...over.entries] };
  const entries = [...base.entries];
  for (const e of over.entries) if (!entries.some((x) => x.node === e.node && x.access === e.access)) entries.push(e);
  return { reset: base.reset, entries };
}

/** Parses "NAME=VALUE" (the form of --property= and set-property arguments). */
export function parsePropertyAssignment(assignment: string, where = '--property'): PropertyAssignment {
  const eq = assignment.indexOf('=');
  if (eq <= 0) {
    throw new ConfigError(`${where}: '${assignment}' is not of the form NAME=VALUE (e.g. MemoryMax=2G); supported names: ${supportedList()}`,
      { code: 'CFG_PROPERTY_SYNTAX' });
  }
  return parsePropertyValue(assignment.slice(0, eq), assignment.slice(eq + 1), where);
}

export function setAssignment(out: ResourceProperties, a: PropertyAssignment): void {
  if (a.name === 'DeviceAllow') out.DeviceAllow = addDeviceAllow(out.DeviceAllow, a.value);
  else (out as Record<string, unknown>)[a.name] = a.value;
}

/**
 * Parses a list of assignments (LaunchSpec.properties, or set-property's arguments): strings
 * "NAME=VALUE" or {name, value}. A later assignment of the same name wins, as in systemd.
 */
export function parseProperties(list: ReadonlyArray<string | { name: string; value: string }>, where = '--property'): ResourceProperties {
  const out: ResourceProperties = {};
  for (const item of list) {
    setAssignment(out, typeof item === 'string' ? parsePropertyAssignment(item, where) : parsePropertyValue(item.name, item.value, where));
  }
  return out;
}

/** `over` on top of `base` (set-property on a machine that already has properties). */
export function mergeProperties(base: ResourceProperties, over: ResourceProperties): ResourceProperties {
  const out = { ...base, ...over };
  if (base.DeviceAllow && over.DeviceAllow) out.DeviceAllow = addDeviceAllow(base.DeviceAllow, over.DeviceAllow);
  return out;
}

function formatPermyriad(p: number): string {
  const whole = Math.floor(p / 100);
  const frac = p % 100;
  return frac === 0 ? `${whole}%` : `${whole}.${String(frac).padStart(2, '0')}%`;
}

/** The canonical text of a value; parsePropertyValue(name, formatPropertyValue(a)) gives `a` back. */
export function formatPropertyValue(a: PropertyAssignment): string {
  if (a.name === 'DeviceAllow') return a.value.entries.map((e) => `${e.node} ${e.access}`).join(', ');
  const v = a.value;
  switch (v.kind) {
    // CPUQuota= has no "infinity" in systemd: the empty assignment removes the quota
    case 'infinity': return a.name === 'CPUQuota' ? '' : 'infinity';
    case 'default': return '';
    case 'idle': return 'idle';
    case 'bytes': return v.bytes.toString();
    case 'count': return v.count.toString();
    case 'scale': return formatPermyriad(v.permyriad);
    case 'weight': return String(v.weight);
    case 'usec': return `${v.usec}us`;
    // usecPerSec = permyriad × 100 (parseCpuQuota): back to a percentage with two decimals
    case 'quota': return formatPermyriad(Math.floor(v.usecPerSec / 100));
  }
}

/** "NAME=VALUE" lines in a stable order (SUPPORTED_PROPERTIES order). */
export function formatProperties(props: ResourceProperties): string[] {
  const out: string[] = [];
  for (const name of SUPPORTED_PROPERTIES) {
    const value = props[name];
    if (value === undefined) continue;
    if (name === 'DeviceAllow') {
      const d = value as DeviceAllowList;
      if (d.reset) out.push('DeviceAllow=');
      for (const e of d.entries) out.push(`DeviceAllow=${e.node} ${e.access}`);
      continue;
    }
    out.push(`${name}=${formatPropertyValue({ name, value } as PropertyAssignment)}`);
  }
  return out;
}

export * from './property-limits.js';
export { DEFAULT_CPU_PERIOD_USEC, parsePermyriad, parsePermyriadUnbounded, parseSize, parseTimespanUsec } from './systemd-numbers.js';
