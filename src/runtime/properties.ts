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
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { totalmem } from 'node:os';
import { join } from 'node:path';
import { ConfigError, NspawnError } from '../errors.js';
import { readBoundedText } from './bounded-read.js';

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

const UINT64_MAX = (1n << 64n) - 1n;
const INT_MAX = 2 ** 31 - 1;
const USEC_PER_SEC = 1_000_000;
const USEC_PER_MSEC = 1_000;
export const DEFAULT_CPU_PERIOD_USEC = 100 * USEC_PER_MSEC;
const WHITESPACE = ' \t\n\r';

// ---------------------------------------------------------------------------------------------
// systemd's number parsers

type Parsed<T> = { ok: true; value: T } | { ok: false; err: 'EINVAL' | 'ERANGE' };
const EINVAL = { ok: false, err: 'EINVAL' } as const;
const ERANGE = { ok: false, err: 'ERANGE' } as const;

function skipWhitespace(s: string, i: number): number {
  while (i < s.length && WHITESPACE.includes(s[i]!)) i++;
  return i;
}

/**
 * C strtoull/strtol: whitespace, sign, digits in `base` (0 = C's auto-detection: 0x hex, 0 octal).
 * Returns the magnitude, the sign, where parsing stopped, and whether it overflowed 64 bits.
 */
function strtoNum(s: string, start: number, base: number): { value: bigint; negative: boolean; end: number; overflow: boolean } {
  let i = skipWhitespace(s, start);
  let negative = false;
  if (s[i] === '+' || s[i] === '-') {
    negative = s[i] === '-';
    i++;
  }
  let b = base;
  if ((b === 0 || b === 16) && s[i] === '0' && (s[i + 1] === 'x' || s[i + 1] === 'X') && /[0-9a-fA-F]/.test(s[i + 2] ?? '')) {
    i += 2;
    b = 16;
  } else if (b === 0) {
    b = s[i] === '0' ? 8 : 10;
  }
  const digitsStart = i;
  let value = 0n;
  let overflow = false;
  for (; i < s.length; i++) {
    const d = parseInt(s[i]!, 36);
    if (Number.isNaN(d) || d >= b) break;
    value = value * BigInt(b) + BigInt(d);
    if (value > UINT64_MAX) overflow = true;
  }
  if (i === digitsStart) return { value: 0n, negative: false, end: start, overflow: false };
  return { value, negative, end: i, overflow };
}

/** systemd's mangle_base(): "0b"/"0o" prefixes after leading whitespace pick base 2/8. */
function mangleBase(s: string): { rest: string; base: number } {
  if (/^0[bB]/.test(s)) return { rest: s.slice(2), base: 2 };
  if (/^0[oO]/.test(s)) return { rest: s.slice(2), base: 8 };
  return { rest: s, base: 0 };
}

/** safe_atoi(): a whole string as a C int. */
function safeAtoi(input: string): Parsed<number> {
  const { rest, base } = mangleBase(input.slice(skipWhitespace(input, 0)));
  const r = strtoNum(rest, 0, base);
  if (r.end === 0 || r.end !== rest.length) return EINVAL;
  const v = r.negative ? -r.value : r.value;
  if (r.overflow || v > BigInt(INT_MAX) || v < -BigInt(INT_MAX) - 1n) return ERANGE;
  return { ok: true, value: Number(v) };
}

/** safe_atou64(): a whole string as an unsigned 64-bit integer; "-N" (N ≠ 0) is ERANGE. */
function safeAtou64(input: string): Parsed<bigint> {
  const s = input.slice(skipWhitespace(input, 0));
  const { rest, base } = mangleBase(s);
  const r = strtoNum(rest, 0, base);
  if (r.end === 0 || r.end !== rest.length) return EINVAL;
  if (r.overflow) return ERANGE;
  if (r.value !== 0n && rest.startsWith('-')) return ERANGE;
  return { ok: true, value: r.value };
}

const IEC: Array<[string, bigint]> = [
  ['E', 1024n ** 6n], ['P', 1024n ** 5n], ['T', 1024n ** 4n], ['G', 1024n ** 3n],
  ['M', 1024n ** 2n], ['K', 1024n], ['B', 1n], ['', 1n],
];

/** parse_size(t, 1024): "2G", "1.5G", "1G 512M", "512" (bytes). */
export function parseSize(t: string): Parsed<bigint> {
  let total = 0n;
  let p = 0;
  let startPos = 0;
  do {
    p = skipWhitespace(t, p);
    const n = strtoNum(t, p, 10);
    if (n.end === p) return EINVAL;
    if (n.overflow) return ERANGE;
    if (t[p] === '-') return ERANGE;
    if (n.negative) return ERANGE; // "+-" never parses; a negative value wraps in C and is refused above
    let e = n.end;
    let frac = 0;
    if (t[e] === '.') {
      e++;
      if (/[0-9]/.test(t[e] ?? '')) {
        const f = strtoNum(t, e, 10);
        if (f.overflow) return ERANGE;
        frac = Number(f.value);
        for (; e < f.end; e++) frac /= 10;
      }
    }
    e = skipWhitespace(t, e);
    let i = startPos;
    for (; i < IEC.length; i++) if (t.startsWith(IEC[i]![0], e)) break;
    if (i >= IEC.length) return EINVAL;
    const [suffix, factor] = IEC[i]!;
    if (n.value + (frac > 0 ? 1n : 0n) > UINT64_MAX / factor) return ERANGE;
    // (unsigned long long)(frac * factor): the double product, truncated
    const tmp = n.value * factor + BigInt(Math.trunc(frac * Number(factor)));
    if (tmp > UINT64_MAX - total) return ERANGE;
    total += tmp;
    p = e + suffix.length;
    startPos = i + 1;
  } while (p < t.length);
  return { ok: true, value: total };
}

/** parse_permyriad_unbounded(): "N%", "N.N%", "N.NN%", "N‰", "N.N‰", "N‱" → permyriad. */
export function parsePermyriadUnbounded(p: string): Parsed<number> {
  if (p.endsWith('‱')) return partsWhole(p.slice(0, -1));
  if (p.endsWith('‰')) return partsDecimal(p.slice(0, -1), 1, 10);
  if (p.endsWith('%')) return partsDecimal(p.slice(0, -1), 2, 100);
  return EINVAL;
}

export function parsePermyriad(p: string): Parsed<number> {
  const r = parsePermyriadUnbounded(p);
  if (r.ok && r.value > 10_000) return ERANGE;
  return r;
}

function partsWhole(n: string): Parsed<number> {
  const r = safeAtoi(n);
  if (!r.ok) return r;
  if (r.value < 0) return ERANGE;
  return r;
}

/** The integer part and up to `places` decimals, scaled by `scale` (= 10^places). */
function partsDecimal(body: string, places: number, scale: number): Parsed<number> {
  const dot = body.indexOf('.');
  let q = 0;
  let whole = body;
  if (dot >= 0) {
    const decimals = body.slice(dot + 1);
    if (decimals.length < 1 || decimals.length > places || !/^[0-9]+$/.test(decimals)) return EINVAL;
    q = Number(decimals.padEnd(places, '0'));
    whole = body.slice(0, dot);
  }
  const r = safeAtoi(whole);
  if (!r.ok) return r;
  if (r.value < 0) return ERANGE;
  if (r.value > Math.floor((INT_MAX - q) / scale)) return ERANGE;
  return { ok: true, value: r.value * scale + q };
}

const TIME_UNITS: Array<[string, number]> = [
  // longest first, as systemd's table is searched by prefix
  ['seconds', USEC_PER_SEC], ['second', USEC_PER_SEC], ['sec', USEC_PER_SEC], ['s', USEC_PER_SEC],
  ['minutes', 60 * USEC_PER_SEC], ['minute', 60 * USEC_PER_SEC], ['min', 60 * USEC_PER_SEC],
  ['months', 2_629_800 * USEC_PER_SEC], ['month', 2_629_800 * USEC_PER_SEC],
  ['msec', USEC_PER_MSEC], ['ms', USEC_PER_MSEC], ['m', 60 * USEC_PER_SEC],
  ['hours', 3600 * USEC_PER_SEC], ['hour', 3600 * USEC_PER_SEC], ['hr', 3600 * USEC_PER_SEC], ['h', 3600 * USEC_PER_SEC],
  ['days', 86_400 * USEC_PER_SEC], ['day', 86_400 * USEC_PER_SEC], ['d', 86_400 * USEC_PER_SEC],
  ['weeks', 604_800 * USEC_PER_SEC], ['week', 604_800 * USEC_PER_SEC], ['w', 604_800 * USEC_PER_SEC],
  ['years', 31_557_600 * USEC_PER_SEC], ['year', 31_557_600 * USEC_PER_SEC], ['y', 31_557_600 * USEC_PER_SEC],
  ['usec', 1], ['us', 1], ['µs', 1], ['μs', 1],
];

/** parse_sec(): "100ms", "1s 500ms", "0.5s", "2" (seconds) → µs. */
export function parseTimespanUsec(t: string): Parsed<number> {
  let total = 0;
  let p = skipWhitespace(t, 0);
  if (p >= t.length) return EINVAL;
  while (p < t.length) {
    const m = /^([0-9]+)(?:\.([0-9]*))?/.exec(t.slice(p));
    if (!m) return EINVAL;
    p += m[0].length;
    p = skipWhitespace(t, p);
    let factor = USEC_PER_SEC;
    const unit = TIME_UNITS.find(([u]) => t.startsWith(u, p) && !/[a-zA-Zµμ]/.test(t[p + u.length] ?? ''));
    if (unit) {
      factor = unit[1];
      p += unit[0].length;
    } else if (p < t.length && !WHITESPACE.includes(t[p]!)) {
      return EINVAL;
    }
    const whole = Number(m[1]);
    const frac = m[2] ? Number(`0.${m[2]}`) : 0;
    total += whole * factor + Math.floor(frac * factor);
    if (!Number.isSafeInteger(total)) return ERANGE;
    p = skipWhitespace(t, p);
  }
  return { ok: true, value: total };
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

function setAssignment(out: ResourceProperties, a: PropertyAssignment): void {
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

// ---------------------------------------------------------------------------------------------
// resolution against the host

/** What relative values are measured against (systemd: physical_memory(), system_tasks_max()). */
export interface HostFacts {
  /** bytes of RAM (systemd: min(physical pages × page size, the root cgroup's memory.max)) */
  physicalMemory: bigint;
  pageSize: number;
  /** min(kernel.threads-max, kernel.pid_max − 1, root pids.max) */
  tasksMax: bigint;
}

function readNumber(path: string): bigint | undefined {
  try {
    const t = readFileSync(path, 'utf8').trim();
    return /^[0-9]+$/.test(t) ? BigInt(t) : undefined;
  } catch {
    return undefined;
  }
}

/** The running host's facts, read from /proc (physical memory from the kernel's total RAM). */
export function readHostFacts(): HostFacts {
  const TASKS_MAX = 4_194_303n; // systemd's TASKS_MAX: the kernel's PID_MAX_LIMIT − 1
  const threads = readNumber('/proc/sys/kernel/threads-max') ?? TASKS_MAX;
  const pidMax = readNumber('/proc/sys/kernel/pid_max');
  const pidLimit = pidMax !== undefined && pidMax > 0n ? pidMax - 1n : TASKS_MAX;
  return {
    physicalMemory: BigInt(totalmem()),
    pageSize: 4096,
    tasksMax: threads < pidLimit ? threads : pidLimit,
  };
}

/** The kernel-level limits to write; `undefined` leaves a knob untouched, 'max' removes a limit. */
export interface ResolvedLimits {
  memoryMax?: bigint | 'max';
  memoryHigh?: bigint | 'max';
  memoryLow?: bigint;
  memorySwapMax?: bigint | 'max';
  /** cpu.max / cfs_quota_us+cfs_period_us: present when CPUQuota= or CPUQuotaPeriodSec= is set */
  cpu?: { quotaUsec: number | 'max'; periodUsec: number };
  /** cpu.weight (v2) or the matching cpu.shares (v1); 'idle' → cpu.idle=1 (v2), shares 2 (v1) */
  cpuWeight?: number | 'idle';
  tasksMax?: bigint | 'max';
}

/** physical_memory_scale(): RAM × permyriad / 10000, rounded down to whole pages. */
export function scaleMemory(permyriad: number, facts: HostFacts): bigint {
  if (permyriad === 0) return 0n;
  if (permyriad === 10_000) return facts.physicalMemory;
  const ps = BigInt(facts.pageSize);
  const pages = facts.physicalMemory / ps;
  const m = (pages * BigInt(permyriad)) / 10_000n;
  const r = m * ps;
  return r > UINT64_MAX ? UINT64_MAX : r;
}

/** system_tasks_max_scale(): the system task limit × permyriad / 10000. */
export function scaleTasks(permyriad: number, facts: HostFacts): bigint {
  if (permyriad === 0) return 0n;
  if (permyriad === 10_000) return facts.tasksMax;
  return (facts.tasksMax * BigInt(permyriad)) / 10_000n;
}

function resolveBytes(l: ByteLimit | undefined, facts: HostFacts): bigint | 'max' | undefined {
  if (!l) return undefined;
  if (l.kind === 'infinity') return 'max';
  if (l.kind === 'bytes') return l.bytes;
  return scaleMemory(l.permyriad, facts);
}

/**
 * systemd's cgroup_cpu_adjust_period(): a period long enough that the quota per period is at least
 * 1 ms (the kernel's resolution), at most 1 s. Only applied to the default period or when clamping.
 */
export function adjustCpuPeriod(periodUsec: number, quotaUsecPerSec: number): number {
  const resolution = USEC_PER_MSEC;
  const max = Math.max(periodUsec, resolution, Math.floor((resolution * USEC_PER_SEC) / quotaUsecPerSec));
  return Math.min(max, USEC_PER_SEC);
}

export function resolveProperties(props: ResourceProperties, facts: HostFacts): ResolvedLimits {
  const out: ResolvedLimits = {};
  const memoryMax = resolveBytes(props.MemoryMax, facts);
  if (memoryMax !== undefined) out.memoryMax = memoryMax;
  const memoryHigh = resolveBytes(props.MemoryHigh, facts);
  if (memoryHigh !== undefined) out.memoryHigh = memoryHigh;
  const memoryLow = resolveBytes(props.MemoryLow, facts);
  if (memoryLow !== undefined) out.memoryLow = memoryLow === 'max' ? UINT64_MAX : memoryLow;
  const swap = resolveBytes(props.MemorySwapMax, facts);
  if (swap !== undefined) out.memorySwapMax = swap;
  if (props.CPUQuota || props.CPUQuotaPeriodSec) {
    const quota = props.CPUQuota?.kind === 'quota' ? props.CPUQuota.usecPerSec : undefined;
    const requested = props.CPUQuotaPeriodSec?.kind === 'usec' ? props.CPUQuotaPeriodSec.usec : DEFAULT_CPU_PERIOD_USEC;
    if (quota === undefined) {
      out.cpu = { quotaUsec: 'max', periodUsec: DEFAULT_CPU_PERIOD_USEC };
    } else {
      const period = adjustCpuPeriod(requested, quota);
      out.cpu = { quotaUsec: Math.max(Math.floor((quota * period) / USEC_PER_SEC), USEC_PER_MSEC), periodUsec: period };
    }
  }
  if (props.CPUWeight) {
    out.cpuWeight = props.CPUWeight.kind === 'idle' ? 'idle' : props.CPUWeight.kind === 'weight' ? props.CPUWeight.weight : 100;
  }
  if (props.TasksMax) {
    const t = props.TasksMax;
    out.tasksMax = t.kind === 'infinity' ? 'max' : t.kind === 'count' ? t.count : scaleTasks(t.permyriad, facts);
  }
  return out;
}

/** cgroup v1 cpu.shares for a CPUWeight (systemd's cgroup_cpu_weight_to_shares). */
export function cpuWeightToShares(weight: number | 'idle'): number {
  if (weight === 'idle') return 2;
  return Math.min(Math.max(Math.floor((weight * 1024) / 100), 2), 262_144);
}

// ---------------------------------------------------------------------------------------------
// persistent properties (`machinectl-ts set-property NAME …` without --runtime)

/**
 * Where persistent properties live: $NSPAWN_TS_PROPERTIES_DIR, else /etc/systemd/nspawn-ts (next
 * to systemd's /etc/systemd/nspawn/*.nspawn; systemd keeps its own in /etc/systemd/system.control).
 * One file per machine, NAME.properties, in unit-file syntax under [Resources].
 */
export function propertiesDir(dir?: string): string {
  return dir ?? process.env.NSPAWN_TS_PROPERTIES_DIR ?? '/etc/systemd/nspawn-ts';
}

function propertiesFile(name: string, dir?: string): string {
  if (!name || name.length > 255 || name.includes('/') || name.includes('\0') || name === '.' || name === '..') {
    throw new ConfigError(`machine name '${name}' cannot name a properties file (1–255 characters, no '/')`, { code: 'CFG_MACHINE_NAME' });
  }
  return join(propertiesDir(dir), `${name}.properties`);
}

/** Reads a machine's persistent properties ({} when it has none). A bad file is a ConfigError naming the line. */
export function loadProperties(name: string, opts: { dir?: string } = {}): ResourceProperties {
  const file = propertiesFile(name, opts.dir);
  let text: string | undefined;
  try {
    // bounded: a symlink, FIFO or device there, or a huge file or line, is refused (bounded-read.ts)
    text = readBoundedText(file, { what: 'properties file' });
  } catch (err) {
    throw new NspawnError('PROPERTIES_READ', `cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  if (text === undefined) return {};
  const out: ResourceProperties = {};
  let section = '';
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) return;
    const where = `${file}:${i + 1}`;
    const sec = /^\[(.*)\]$/.exec(line);
    if (sec) {
      section = sec[1]!;
      if (section !== 'Resources') throw new ConfigError(`${where}: unknown section [${section}] (only [Resources])`, { code: 'CFG_PROPERTY_FILE' });
      return;
    }
    if (section !== 'Resources') throw new ConfigError(`${where}: assignment outside [Resources]`, { code: 'CFG_PROPERTY_FILE' });
    const eq = line.indexOf('=');
    if (eq <= 0) throw new ConfigError(`${where}: expected NAME=VALUE, got '${line}'`, { code: 'CFG_PROPERTY_FILE' });
    setAssignment(out, parsePropertyValue(line.slice(0, eq).trim(), line.slice(eq + 1).trim(), where));
  });
  return out;
}

/**
 * Stores `props` on top of the machine's persistent properties (set-property semantics: each named
 * property replaced, the others kept), atomically (temporary file + rename). Returns the result.
 */
export function saveProperties(name: string, props: ResourceProperties, opts: { dir?: string } = {}): ResourceProperties {
  const file = propertiesFile(name, opts.dir);
  const merged = mergeProperties(loadProperties(name, opts), props);
  const text = [
    `# Resource properties of machine ${name}, written by machinectl-ts set-property.`,
    '# Applied at every start of the machine, over --property= options.',
    '[Resources]',
    ...formatProperties(merged),
    '',
  ].join('\n');
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    mkdirSync(propertiesDir(opts.dir), { recursive: true, mode: 0o755 });
    writeFileSync(tmp, text, { mode: 0o644 });
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw new NspawnError('PROPERTIES_WRITE', `cannot write ${file}: ${(err as Error).message}`, { cause: err });
  }
  return merged;
}

/** Forgets a machine's persistent properties (true if there were any). */
export function removeProperties(name: string, opts: { dir?: string } = {}): boolean {
  const file = propertiesFile(name, opts.dir);
  try {
    rmSync(file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw new NspawnError('PROPERTIES_WRITE', `cannot remove ${file}: ${(err as Error).message}`, { cause: err });
  }
}

/** Moves a machine's persistent properties to a new name (an image rename); false if it had none. */
export function renameProperties(name: string, newName: string, opts: { dir?: string } = {}): boolean {
  const from = propertiesFile(name, opts.dir);
  const to = propertiesFile(newName, opts.dir);
  try {
    renameSync(from, to);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw new NspawnError('PROPERTIES_WRITE', `cannot rename ${from} to ${to}: ${(err as Error).message}`, { cause: err });
  }
}

/** What a start applies: the command line's --property= values, then the persistent ones over them. */
export function startProperties(name: string, cli: ReadonlyArray<string | { name: string; value: string }>, opts: { dir?: string } = {}): ResourceProperties {
  return mergeProperties(parseProperties(cli), loadProperties(name, opts));
}
