// systemd's number parsers, as properties.ts's values need them (v252, src/basic/parse-util.c,
// percent-util.c, time-util.c): safe_atoi()/safe_atou64() with their quirks (leading whitespace and
// `+`, 0x hex, 0o/0b, a leading 0 is C octal), parse_size(), parse_permyriad(), parse_sec().

export const UINT64_MAX = (1n << 64n) - 1n;
const INT_MAX = 2 ** 31 - 1;
export const USEC_PER_SEC = 1_000_000;
export const USEC_PER_MSEC = 1_000;
export const DEFAULT_CPU_PERIOD_USEC = 100 * USEC_PER_MSEC;
const WHITESPACE = ' \t\n\r';

export type Parsed<T> = { ok: true; value: T } | { ok: false; err: 'EINVAL' | 'ERANGE' };
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
export function safeAtou64(input: string): Parsed<bigint> {
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
