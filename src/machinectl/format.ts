// Output as machinectl prints it: systemd's format-table (columns one space apart, upper-case
// header, "-" for an empty cell, rows sorted by the first column, multi-line cells cut to a height
// with "…", trailing blanks of the last column dropped) and its JSON form (an array of objects keyed
// by the lower-case column names, null for empty cells, sizes and timestamps as numbers), plus
// systemd's byte sizes (format_bytes: "1.5G") and timestamps ("Tue 2024-06-04 10:00:00 UTC",
// "5min ago").
import { isJsonMode, type OutputMode } from './args.js';

export type Cell =
  | { kind: 'string'; value: string | undefined }
  | { kind: 'boolean'; value: boolean }
  /** bytes; undefined = unknown */
  | { kind: 'size'; value: bigint | number | undefined }
  /** microseconds since the epoch; undefined = unknown */
  | { kind: 'timestamp'; value: number | undefined };

export const str = (value: string | undefined): Cell => ({ kind: 'string', value: value === '' ? undefined : value });
export const bool = (value: boolean): Cell => ({ kind: 'boolean', value });
export const size = (value: bigint | number | undefined): Cell => ({ kind: 'size', value });
export const timestamp = (value: number | undefined): Cell => ({ kind: 'timestamp', value });

export interface Column {
  /** lower case, as systemd names columns (the JSON key; upper-cased for the header) */
  name: string;
  /** right-align (systemd's table_set_align_percent(…, 100)) */
  alignRight?: boolean;
}

export interface TableOptions {
  legend: boolean;
  /** at most this many lines of a multi-line cell (machinectl's --max-addresses) */
  cellHeightMax?: number;
  /** for timestamps */
  now?: number;
  timeZone?: string;
}

/** strverscmp_improved()-like ordering: digit runs compare as numbers. */
export function versionCompare(a: string, b: string): number {
  const re = /(\d+|\D+)/g;
  const pa = a.match(re) ?? [];
  const pb = b.match(re) ?? [];
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    const x = pa[i] as string;
    const y = pb[i] as string;
    if (x === y) continue;
    const nx = /^\d/.test(x);
    const ny = /^\d/.test(y);
    if (nx && ny) {
      const d = BigInt(x) - BigInt(y);
      if (d !== 0n) return d < 0n ? -1 : 1;
      return x.length - y.length;
    }
    return x < y ? -1 : 1;
  }
  return pa.length - pb.length;
}

function cellText(c: Cell, opts: TableOptions): string | undefined {
  switch (c.kind) {
    case 'string': return c.value;
    case 'boolean': return c.value ? 'yes' : 'no';
    case 'size': return c.value === undefined ? undefined : formatBytes(BigInt(c.value));
    case 'timestamp': return c.value === undefined ? undefined : formatTimestamp(c.value, opts.timeZone);
  }
}

function cellJson(c: Cell): unknown {
  switch (c.kind) {
    case 'string': return c.value ?? null;
    case 'boolean': return c.value;
    case 'size': return c.value === undefined ? null : Number(c.value);
    case 'timestamp': return c.value === undefined ? null : c.value;
  }
}

function sortKey(c: Cell): string {
  return c.kind === 'string' ? c.value ?? '' : String(cellJson(c));
}

/** Display width: code points (the texts here hold no wide characters). */
function width(s: string): number {
  return [...s].length;
}

/** A table as text, with its "N machines listed." / "No machines." footer when legend is on. */
export function renderTable(columns: readonly Column[], rows: readonly Cell[][], word: string, opts: TableOptions): string {
  const sorted = [...rows].sort((a, b) => versionCompare(sortKey(a[0] ?? str(undefined)), sortKey(b[0] ?? str(undefined))));
  let out = '';
  if (sorted.length > 0) {
    const text: string[][][] = sorted.map((r) => columns.map((_, j) => {
      const t = cellText(r[j] ?? str(undefined), opts) ?? '-';
      let lines = t.split('\n');
      const max = opts.cellHeightMax;
      if (max !== undefined && max > 0 && lines.length > max) {
        lines = lines.slice(0, max);
        lines[max - 1] += '…';
      }
      return lines;
    }));
    const widths = columns.map((c, j) => Math.max(
      opts.legend ? width(c.name) : 0,
      ...text.map((r) => Math.max(...(r[j] ?? ['']).map(width))),
    ));
    const line = (cells: string[]): string => {
      const parts = cells.map((c, j) => {
        const w = widths[j] ?? 0;
        const pad = ' '.repeat(Math.max(0, w - width(c)));
        return columns[j]?.alignRight ? pad + c : c + pad;
      });
      return parts.join(' ').replace(/\s+$/, '') + '\n';
    };
    if (opts.legend) out += line(columns.map((c) => c.name.toUpperCase()));
    for (const r of text) {
      const height = Math.max(...r.map((c) => c.length));
      for (let k = 0; k < height; k++) out += line(r.map((c) => c[k] ?? ''));
    }
  }
  if (opts.legend) out += sorted.length > 0 ? `\n${sorted.length} ${word} listed.\n` : `No ${word}.\n`;
  return out;
}

/** The table as JSON in the output mode's framing (json: one line, json-pretty: indented, …). */
export function renderTableJson(columns: readonly Column[], rows: readonly Cell[][], mode: OutputMode): string {
  const sorted = [...rows].sort((a, b) => versionCompare(sortKey(a[0] ?? str(undefined)), sortKey(b[0] ?? str(undefined))));
  const data = sorted.map((r) => Object.fromEntries(columns.map((c, j) => [c.name, cellJson(r[j] ?? str(undefined))])));
  return formatJson(data, mode);
}

export function formatJson(data: unknown, mode: OutputMode): string {
  if (!isJsonMode(mode)) throw new Error(`not a JSON output mode: ${mode}`);
  switch (mode) {
    case 'json-pretty': return JSON.stringify(data, null, 8) + '\n';
    case 'json-seq': return '\x1e' + JSON.stringify(data) + '\n';
    case 'json-sse': return 'data: ' + JSON.stringify(data) + '\n\n';
    default: return JSON.stringify(data) + '\n';
  }
}

// ---------------------------------------------------------------------------------------------
// sizes and times

const IEC: ReadonlyArray<[string, bigint]> = [
  ['E', 1024n ** 6n], ['P', 1024n ** 5n], ['T', 1024n ** 4n], ['G', 1024n ** 3n], ['M', 1024n ** 2n], ['K', 1024n],
];

/** systemd's FORMAT_BYTES(): IEC factors, one decimal, "B" below 1K ("1.5G", "512B"). */
export function formatBytes(t: bigint): string {
  for (let i = 0; i < IEC.length; i++) {
    const [suffix, factor] = IEC[i] as [string, bigint];
    if (t < factor) continue;
    const last = IEC[IEC.length - 1]?.[1] ?? 1024n;
    const next = IEC[i + 1]?.[1];
    const decimal = next !== undefined ? (t / next * 10n / last) % 10n : (t * 10n / factor) % 10n;
    return `${t / factor}.${decimal}${suffix}`;
  }
  return `${t}B`;
}

const WEEKDAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];

/** format_timestamp(): "Tue 2024-06-04 10:00:00 UTC" in local time (or `timeZone`). */
export function formatTimestamp(usec: number, timeZone?: string): string {
  const d = new Date(Math.floor(usec / 1000));
  const fmt = new Intl.DateTimeFormat('en-US', {
    timeZone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit',
    second: '2-digit', weekday: 'short', timeZoneName: 'short',
  });
  const p: Record<string, string> = {};
  for (const part of fmt.formatToParts(d)) p[part.type] = part.value;
  const wd = WEEKDAYS.includes(p.weekday ?? '') ? p.weekday : WEEKDAYS[d.getDay()];
  return `${wd} ${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second} ${p.timeZoneName ?? ''}`.trimEnd();
}

const USEC_PER_SEC = 1_000_000;
const USEC_PER_MINUTE = 60 * USEC_PER_SEC;
const USEC_PER_HOUR = 60 * USEC_PER_MINUTE;
const USEC_PER_DAY = 24 * USEC_PER_HOUR;
const USEC_PER_WEEK = 7 * USEC_PER_DAY;
const USEC_PER_MONTH = 2_629_800 * USEC_PER_SEC;
const USEC_PER_YEAR = 31_557_600 * USEC_PER_SEC;

const plural = (n: number, one: string, many: string): string => `${n} ${n === 1 ? one : many}`;

/** format_timestamp_relative(): "5min 3s ago", "1 day 2h ago", "now". */
export function formatRelative(usec: number, nowUsec: number): string {
  let d = nowUsec - usec;
  const suffix = d >= 0 ? ' ago' : ' left';
  d = Math.abs(d);
  const f = Math.floor;
  let s: string;
  if (d >= USEC_PER_YEAR) {
    const months = f((d % USEC_PER_YEAR) / USEC_PER_MONTH);
    s = plural(f(d / USEC_PER_YEAR), 'year', 'years') + (months > 0 ? ' ' + plural(months, 'month', 'months') : '');
  } else if (d >= USEC_PER_MONTH) {
    const days = f((d % USEC_PER_MONTH) / USEC_PER_DAY);
    s = plural(f(d / USEC_PER_MONTH), 'month', 'months') + (days > 0 ? ' ' + plural(days, 'day', 'days') : '');
  } else if (d >= USEC_PER_WEEK) {
    const days = f((d % USEC_PER_WEEK) / USEC_PER_DAY);
    s = plural(f(d / USEC_PER_WEEK), 'week', 'weeks') + (days > 0 ? ' ' + plural(days, 'day', 'days') : '');
  } else if (d >= 2 * USEC_PER_DAY) {
    s = `${f(d / USEC_PER_DAY)} days`;
  } else if (d >= 25 * USEC_PER_HOUR) {
    s = `1 day ${f((d - USEC_PER_DAY) / USEC_PER_HOUR)}h`;
  } else if (d >= 6 * USEC_PER_HOUR) {
    s = `${f(d / USEC_PER_HOUR)}h`;
  } else if (d >= USEC_PER_HOUR) {
    s = `${f(d / USEC_PER_HOUR)}h ${f((d % USEC_PER_HOUR) / USEC_PER_MINUTE)}min`;
  } else if (d >= 5 * USEC_PER_MINUTE) {
    s = `${f(d / USEC_PER_MINUTE)}min`;
  } else if (d >= USEC_PER_MINUTE) {
    s = `${f(d / USEC_PER_MINUTE)}min ${f((d % USEC_PER_MINUTE) / USEC_PER_SEC)}s`;
  } else if (d >= USEC_PER_SEC) {
    s = `${f(d / USEC_PER_SEC)}s`;
  } else if (d >= 1000) {
    s = `${f(d / 1000)}ms`;
  } else if (d > 0) {
    s = `${d}us`;
  } else {
    return 'now';
  }
  return s + suffix;
}
