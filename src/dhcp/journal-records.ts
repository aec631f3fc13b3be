// The lease journal's records: the file format, encoding and decoding of a line, and replay of
// records into per-interface state. The store that writes them is journal.ts, reading a file
// journal-file.ts.
//
// File format (version 1; text, one record per line, UTF-8):
//
//     nspawn-ts-dhcp-leases 1
//     <crc> <json>
//     <crc> <json>
//     ...
//
// <crc> is the CRC-32 (zlib) of the JSON text as 8 lowercase hex digits. <json> is one object:
//   {"op":"bind","if":IFNAME,"c":CLIENT,"mac":MAC,"ip":ADDRESS,"exp":MS[,"host":NAME]}
//        CLIENT holds ADDRESS on IFNAME until MS (ms since the epoch). CLIENT is "id:<hex of option 61>"
//        or "hw:<htype>:<hex of chaddr>". A later record for the same address or client replaces it.
//   {"op":"release","if":IFNAME,"c":CLIENT,"mac":MAC,"ip":ADDRESS,"exp":MS}
//        CLIENT gave ADDRESS back; it is remembered as the client's preferred address until MS.
//   {"op":"decline","if":IFNAME,"ip":ADDRESS,"until":MS}   ADDRESS is quarantined until MS.
//   {"op":"drop","if":IFNAME}                              IFNAME went away: forget all of its leases.
// Reading replays the records in order. A line whose CRC or JSON or fields are wrong is skipped with a
// warning (a torn last line after a crash is the expected case); a file that is not ours at all is
// set aside as PATH.corrupt-<time>, never a reason not to start.
import { createRequire } from 'node:module';
import { ipv4ToString, parseIpv4 } from './ipv4.js';

export const JOURNAL_HEADER = 'nspawn-ts-dhcp-leases 1';

export type JournalEntry =
  | { op: 'bind'; if: string; c: string; mac: string; ip: string; exp: number; host?: string }
  | { op: 'release'; if: string; c: string; mac: string; ip: string; exp: number }
  | { op: 'decline'; if: string; ip: string; until: number }
  | { op: 'drop'; if: string };

/** What the journal says about one interface after replay. */
export interface StoredInterface {
  /** Client key → its last bind or release record. */
  clients: Map<string, Extract<JournalEntry, { op: 'bind' | 'release' }>>;
  /** Address → quarantined until (ms). */
  declined: Map<string, number>;
}
// node:zlib is loaded when a journal is first read or written: an embedded launcher's server keeps
// its leases in memory, and zlib would be ~1.5 ms more on its container's start-up path
let zlibCrc32: ((data: string) => number) | undefined;
function crc32(data: string): number {
  zlibCrc32 ??= (createRequire(import.meta.url)('node:zlib') as typeof import('node:zlib')).crc32;
  return zlibCrc32(data);
}

export function encodeLine(e: JournalEntry): string {
  const json = JSON.stringify(e);
  return `${crc32(json).toString(16).padStart(8, '0')} ${json}\n`;
}

/** Parses one line; undefined when it is not a valid record. */
export function decodeLine(line: string): JournalEntry | undefined {
  if (line.length < 10 || line[8] !== ' ') return undefined;
  const crc = line.slice(0, 8);
  const json = line.slice(9);
  if (!/^[0-9a-f]{8}$/.test(crc) || parseInt(crc, 16) !== crc32(json)) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch {
    return undefined;
  }
  return validEntry(v) ? v : undefined;
}

function validEntry(v: unknown): v is JournalEntry {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  const str = (k: string): boolean => typeof o[k] === 'string' && (o[k] as string).length > 0 && (o[k] as string).length < 512;
  const time = (k: string): boolean => typeof o[k] === 'number' && Number.isFinite(o[k]) && (o[k] as number) >= 0;
  const ip = (k: string): boolean => str(k) && parseIpv4(o[k] as string) !== undefined;
  if (!str('if')) return false;
  switch (o.op) {
    case 'bind':
      return str('c') && typeof o.mac === 'string' && ip('ip') && time('exp') && (o.host === undefined || str('host'));
    case 'release':
      return str('c') && typeof o.mac === 'string' && ip('ip') && time('exp');
    case 'decline':
      return ip('ip') && time('until');
    case 'drop':
      return true;
    default:
      return false;
  }
}

/** Replays records into per-interface state. */
export function replay(entries: Iterable<JournalEntry>, into = new Map<string, StoredInterface>()): Map<string, StoredInterface> {
  const get = (ifname: string): StoredInterface => {
    let s = into.get(ifname);
    if (!s) {
      s = { clients: new Map(), declined: new Map() };
      into.set(ifname, s);
    }
    return s;
  };
  // address → client holding it, per interface, so a later record for an address replaces the earlier holder
  const holders = new Map<string, Map<string, string>>();
  const holdersOf = (ifname: string): Map<string, string> => {
    let h = holders.get(ifname);
    if (!h) {
      h = new Map();
      for (const [c, r] of get(ifname).clients) if (r.op === 'bind') h.set(r.ip, c);
      holders.set(ifname, h);
    }
    return h;
  };
  for (const e of entries) {
    if (e.op === 'drop') {
      into.delete(e.if);
      holders.delete(e.if);
      continue;
    }
    const s = get(e.if);
    const h = holdersOf(e.if);
    if (e.op === 'decline') {
      const c = h.get(e.ip);
      if (c !== undefined) {
        s.clients.delete(c);
        h.delete(e.ip);
      }
      s.declined.set(e.ip, e.until);
      continue;
    }
    const prev = s.clients.get(e.c);
    if (prev && prev.op === 'bind' && h.get(prev.ip) === e.c) h.delete(prev.ip);
    if (e.op === 'bind') {
      const other = h.get(e.ip);
      if (other !== undefined && other !== e.c) s.clients.delete(other);
      h.set(e.ip, e.c);
      s.declined.delete(e.ip);
    }
    s.clients.set(e.c, e);
  }
  return into;
}

/** Drops what has ended by `now`; bindings that ran out become memories for `rememberMs`. */
export function pruneExpired(state: Map<string, StoredInterface>, now: number, rememberMs: number): void {
  for (const s of state.values()) {
    for (const [c, r] of s.clients) {
      if (r.exp > now) continue;
      if (r.op === 'bind' && r.exp + rememberMs > now) {
        s.clients.set(c, { op: 'release', if: r.if, c: r.c, mac: r.mac, ip: r.ip, exp: r.exp + rememberMs });
      } else {
        s.clients.delete(c);
      }
    }
    for (const [a, until] of s.declined) if (until <= now) s.declined.delete(a);
  }
}

/** Every record that restates the state. */
export function* stateEntries(state: Map<string, StoredInterface>): Generator<JournalEntry> {
  for (const [ifname, s] of state) {
    for (const r of s.clients.values()) yield r;
    for (const [ip, until] of s.declined) yield { op: 'decline', if: ifname, ip, until };
  }
}

/** The record of a binding, from a table entry. */
export function bindEntry(ifname: string, l: { clientKey: string; mac: string; address: number; expiresAt: number; hostname?: string }): JournalEntry {
  const e: JournalEntry = { op: 'bind', if: ifname, c: l.clientKey, mac: l.mac, ip: ipv4ToString(l.address), exp: l.expiresAt };
  if (l.hostname) e.host = l.hostname;
  return e;
}
