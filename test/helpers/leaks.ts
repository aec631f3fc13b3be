// Leak check for kernel tests: what a test leaves behind in the run's network namespace — links,
// named network namespaces, nft tables, mounts, child processes — in the host's cgroup hierarchies
// (which no namespace of ours hides) and in the directories the product and the tests write
// (leak-files.ts) fails the test.
import { readFileSync, readdirSync } from 'node:fs';
import { runOk } from './exec.js';
import { fileLeaks, files, type LeakScope } from './leak-files.js';

export interface Snapshot {
  links: Set<string>;
  netns: Set<string>;
  nftTables: Set<string>;
  mounts: Set<string>;
  processes: Set<string>;
  cgroups: Set<string>;
  files: Set<string>;
  scope: LeakScope;
}

const CGROUP_ROOT = '/sys/fs/cgroup';

function subdirs(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => `${dir}/${e.name}`);
  } catch {
    return []; // removed while we looked, or no such hierarchy
  }
}

/** Whether a cgroup or one below it holds a process. */
function populated(dir: string): boolean {
  try {
    if (readFileSync(`${dir}/cgroup.procs`, 'utf8').trim() !== '') return true;
  } catch {
    return false;
  }
  return subdirs(dir).some(populated);
}

/**
 * Every cgroup directory below each hierarchy. A cgroup that holds a process is left out: that
 * process is a leak the process check names if it is ours, and another run's otherwise (the
 * hierarchies are the host's, shared with whatever else runs) — an empty cgroup left behind is ours.
 */
function cgroups(): Set<string> {
  const out = new Set<string>();
  const walk = (dir: string, depth: number): void => {
    for (const d of subdirs(dir)) {
      out.add(d);
      if (depth < 6) walk(d, depth + 1);
    }
  };
  for (const h of subdirs(CGROUP_ROOT)) walk(h, 0);
  return out;
}

async function links(): Promise<Set<string>> {
  const out = JSON.parse(await runOk('ip', ['-j', 'link', 'show'])) as Array<{ ifname: string }>;
  return new Set(out.map((l) => l.ifname));
}

async function netns(): Promise<Set<string>> {
  const out = (await runOk('ip', ['-j', 'netns', 'list'])).trim();
  const list = out ? (JSON.parse(out) as Array<{ name: string }>) : [];
  return new Set(list.map((n) => n.name));
}

async function nftTables(): Promise<Set<string>> {
  const out = JSON.parse(await runOk('nft', ['-j', 'list', 'tables'])) as {
    nftables: Array<{ table?: { family: string; name: string } }>;
  };
  return new Set(out.nftables.flatMap((o) => (o.table ? [`${o.table.family} ${o.table.name}`] : [])));
}

function mounts(): Set<string> {
  return new Set(readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean)
    .map((l) => l.split(' ')[4] ?? ''));
}

/** Descendants of this process, as "pid comm". */
function processes(): Set<string> {
  const parent = new Map<number, number>();
  const comm = new Map<number, string>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const fields = stat.slice(close + 2).split(' ');
      parent.set(Number(entry), Number(fields[1]));
      comm.set(Number(entry), stat.slice(stat.indexOf('(') + 1, close));
    } catch {
      // exited while we looked
    }
  }
  const out = new Set<string>();
  for (const [pid] of parent) {
    for (let p = parent.get(pid); p !== undefined && p > 1; p = parent.get(p)) {
      if (p === process.pid) {
        // ip/nft/ps run by this very check are not leaks
        const c = comm.get(pid) ?? '?';
        if (!['ip', 'nft'].includes(c)) out.add(`${pid} ${c}`);
        break;
      }
    }
  }
  return out;
}

/** What is there now; `scope` says whether a single test or a whole test file will be compared. */
export async function snapshot(scope: LeakScope = 'test'): Promise<Snapshot> {
  return { links: await links(), netns: await netns(), nftTables: await nftTables(), mounts: mounts(), processes: processes(), cgroups: cgroups(), files: files(scope), scope };
}

function added(before: Set<string>, after: Set<string>): string[] {
  return [...after].filter((x) => !before.has(x));
}

/** Waits up to `graceMs` for leftovers to go (namespaces die asynchronously), then throws a list. */
export async function assertNoLeaks(before: Snapshot, graceMs = 3_000): Promise<void> {
  const deadline = Date.now() + graceMs;
  for (;;) {
    const now = await snapshot(before.scope);
    const leaks: string[] = [];
    const kinds: Array<[string, Set<string>, Set<string>]> = [
      ['link', before.links, now.links], ['netns', before.netns, now.netns],
      ['nft table', before.nftTables, now.nftTables], ['mount', before.mounts, now.mounts],
      ['process', before.processes, now.processes],
      // the launcher's parent group (nspawn-ts, as systemd's machine.slice) stays by design
      ['cgroup', before.cgroups, new Set([...now.cgroups].filter((c) => !before.cgroups.has(c) && !c.endsWith('/nspawn-ts') && !populated(c)))],
    ];
    for (const [kind, b, a] of kinds) for (const x of added(b, a)) leaks.push(`${kind} ${x}`);
    for (const f of fileLeaks(before.files, now.files)) leaks.push(`file ${f}`);
    if (leaks.length === 0) return;
    if (Date.now() > deadline) throw new Error(`test leaked: ${leaks.join(', ')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
