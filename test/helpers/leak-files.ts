// The file part of the leak check (leaks.ts): what a test leaves below the directories the product
// writes by default and the scratch directories tests use. Bounded, to stay fast: each root is walked
// only to a fixed depth, without following symlinks or entering other file systems, and a new
// directory is named once, not entry by entry.
import { lstatSync, readdirSync } from 'node:fs';

export interface FileRoot {
  dir: string;
  /** How deep below `dir` entries are listed (1: its entries only). */
  depth: number;
  /**
   * The depth for the check of a single test, when less: a scratch directory a test file makes in
   * beforeAll, shares among its tests and removes in afterAll is checked for the whole file.
   */
  testDepth?: number;
}

/** A single test (ktest) or a whole test file (leaks-per-file.ts). */
export type LeakScope = 'test' | 'file';

export const FILE_ROOTS: readonly FileRoot[] = [
  // Runtime state: /run/nspawn-ts (machine records, notify sockets, netd.sock, locks), /run/netns,
  // /run/systemd/nspawn and nspawn-uid, what tools the tests drive keep there. npm test mounts an
  // empty tmpfs on /run, so every entry is the run's.
  { dir: '/run', depth: 4 },
  // Persistent state (netd and CNI state, leases, ephemeral layers): a tmpfs of the run.
  { dir: '/var/lib/nspawn-ts', depth: 4 },
  // Tests' scratch (mkdtemp, copyRoot): private tmpfs mounts of the run (scripts/test-in-netns.sh).
  { dir: '/tmp', depth: 3, testDepth: 1 },
  { dir: '/var/tmp', depth: 3, testDepth: 1 },
  // The host's directories the product writes when no variable points elsewhere: images, .nspawn
  // settings, properties, units, logs, podman's CNI cache and configs; the cache's own entries only
  // (the test roots in it are built by setup, the busybox one on demand by test/helpers/rootfs.ts).
  { dir: '/var/lib/machines', depth: 2 },
  { dir: '/etc/machines', depth: 2 },
  { dir: '/etc/systemd/nspawn', depth: 2 },
  { dir: '/etc/systemd/nspawn-ts', depth: 2 },
  { dir: '/etc/systemd/system', depth: 2 },
  { dir: '/var/log/nspawn-ts', depth: 2 },
  { dir: '/var/lib/cni', depth: 3 },
  { dir: '/etc/cni', depth: 3 },
  { dir: '/var/cache/nspawn-ts', depth: 1 },
];

/**
 * What stays by design. A new file or directory matching one of these is no leak, nor is a new
 * directory that holds one (its parent). Keep each as narrow as the product's own path.
 */
export const KEPT_FILES: readonly RegExp[] = [
  // Directories the product makes once and keeps, like systemd's /run/systemd/machines: the runtime
  // directory, machine records, notify sockets, ephemeral layers, -U's UID-range locks. Only the
  // directories: what is in them goes with each machine.
  /^\/run\/nspawn-ts\/((machines|notify)\/)?$/,
  /^\/var\/lib\/nspawn-ts\/ephemeral\/$/,
  /^\/run\/systemd\/(nspawn-uid\/)?$/,
  // the same of the real systemd-nspawn the tests run: its propagation and lock directories (each machine's
  // goes with it)
  /^\/run\/systemd\/nspawn\/((propagate|locks)\/)?$/,
  // nspawn-cni's records, by network (src/cni/records.ts; a network's directory goes with its last record)
  /^\/var\/lib\/nspawn-ts\/cni\/$/,
  // The sidecar's (and the in-process library's) state: the pool's remembered subnets and
  // reservations, the DHCP lease journal, and their flock files (src/net/netd/state.ts, core.ts,
  // src/cni/plugin.ts).
  /^\/var\/lib\/nspawn-ts\/netd\/(state\.json|lock|leases|leases\.lock|cni\.lock)$/,
  // flock(2) files stay (unlinking one races with the next locker; src/common/lock.ts): the machine
  // records', the zone's (the sidecar's are above)
  /^\/run\/nspawn-ts\/machines\/\.lock$/,
  /^\/run\/nspawn-ts\/network-zone\.lock$/,
  // vitest's own: the transformed modules it caches while it runs (/tmp/NANOID/ssr/SHA1), removed at its exit
  /^\/tmp\/[\w-]{21}\/(ssr\/([0-9a-f]{40})?)?$/,
];

/** Every path below `roots` (directories with a trailing slash), to each root's depth. */
export function files(scope: LeakScope = 'file', roots: readonly FileRoot[] = FILE_ROOTS): Set<string> {
  const out = new Set<string>();
  const walk = (dir: string, dev: number, left: number): void => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return; // no such directory, or removed while we looked
    }
    for (const e of entries) {
      const path = `${dir}/${e.name}`;
      if (!e.isDirectory()) {
        out.add(path);
        continue;
      }
      out.add(`${path}/`);
      if (left <= 1) continue;
      let sub: number;
      try {
        sub = lstatSync(path).dev;
      } catch {
        continue;
      }
      // another file system (a container's /proc, a test's own mount) is the mount check's
      if (sub === dev) walk(path, dev, left - 1);
    }
  };
  for (const r of roots) {
    let dev: number;
    try {
      dev = lstatSync(r.dir).dev;
    } catch {
      continue;
    }
    walk(r.dir, dev, scope === 'test' ? Math.min(r.depth, r.testDepth ?? r.depth) : r.depth);
  }
  return out;
}

/**
 * The paths in `after` that are not in `before` and not kept by design, each named once: a new
 * directory stands for what is below it ("dir/ (+N below)").
 */
export function fileLeaks(before: Set<string>, after: Set<string>, kept: readonly RegExp[] = KEPT_FILES): string[] {
  const added = [...after].filter((p) => !before.has(p)).sort();
  const isKept = (p: string): boolean => kept.some((k) => k.test(p));
  const leaked = added.filter((p) => {
    if (isKept(p)) return false;
    // the directory of a kept file is kept with it
    return !(p.endsWith('/') && added.some((q) => q.startsWith(p) && q !== p && isKept(q)));
  });
  const out: string[] = [];
  for (const p of leaked) {
    if (!out.some((o) => o.endsWith('/') && p.startsWith(o))) out.push(p);
  }
  return out.map((o) => {
    const below = leaked.filter((p) => p !== o && p.startsWith(o)).length;
    return below > 0 ? `${o} (+${below} below)` : o;
  });
}
