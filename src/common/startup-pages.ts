// Pages of node's binary (and of the libraries) that only start-up touched. A node process maps
// ~30 MB of /usr/bin/node by the time it runs its first line — the dynamic symbol tables the loader
// searched, V8's snapshot it deserialised, the code of bootstrap, module loading and compilation —
// and the kernel maps the file 64 KiB around each page touched. A long-running server keeps all of
// it in its resident set though it touches little of it again: `nspawn-netd dhcp-serve` had 37.6 MB
// of file-backed pages idle and 41.8 under load; with the start-up's dropped once it is serving,
// 13 MB idle and 21.6 under the same load (docs/design/dhcp-performance.md). What serving touches
// comes back on its first touch, from the page cache, as it was.
//
// Only read-only private file mappings without anonymous pages are dropped: their pages are the
// file's, so MADV_DONTNEED only unmaps them (a written, copied-on-write page would be lost: those
// mappings — relocated data, anything made writable — are left alone).
import { readFileSync } from 'node:fs';
import { sys } from '../native.js';

export interface DroppableMapping {
  start: number;
  length: number;
  path: string;
  /** Resident now (bytes). */
  rss: number;
}

/** The mappings of a /proc/PID/smaps text whose pages may be dropped (see above). */
export function droppableMappings(smaps: string): DroppableMapping[] {
  const out: DroppableMapping[] = [];
  let cur: { start: number; end: number; perms: string; path: string; rss: number; anon: number; locked: boolean } | undefined;
  const finish = (): void => {
    if (cur && cur.path.startsWith('/') && !cur.perms.includes('w') && cur.perms.endsWith('p') && cur.anon === 0 && !cur.locked && cur.rss > 0) {
      out.push({ start: cur.start, length: cur.end - cur.start, path: cur.path, rss: cur.rss });
    }
    cur = undefined;
  };
  for (const line of smaps.split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (m) {
      finish();
      // an unreadable field (anon, locked) keeps the mapping out until it is read
      cur = { start: parseInt(m[1] as string, 16), end: parseInt(m[2] as string, 16), perms: m[3] as string, path: m[4] as string, rss: 0, anon: -1, locked: true };
      continue;
    }
    if (!cur) continue;
    const f = /^(\w+):\s+(.*)$/.exec(line);
    if (!f) continue;
    const [, key, value] = f as unknown as [string, string, string];
    if (key === 'Rss') cur.rss = parseInt(value, 10) * 1024;
    else if (key === 'Anonymous') cur.anon = parseInt(value, 10);
    else if (key === 'VmFlags') cur.locked = /\b(lo|io|pf)\b/.test(value);
  }
  finish();
  return out;
}

/**
 * Drops the start-up's pages of read-only file mappings (see above); returns the bytes that were
 * resident. Best effort: a mapping the kernel refuses is left as it is.
 */
export function dropStartupPages(smapsPath = '/proc/self/smaps'): number {
  let dropped = 0;
  let smaps: string;
  try {
    smaps = readFileSync(smapsPath, 'utf8');
  } catch {
    return 0; // no procfs: nothing is dropped
  }
  for (const m of droppableMappings(smaps)) {
    try {
      sys().dropPages(m.start, m.length);
      dropped += m.rss;
    } catch {
      // (EINVAL for a mapping that cannot be advised): it stays resident
    }
  }
  return dropped;
}
