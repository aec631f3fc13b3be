// Running the real systemd-nspawn (Debian's systemd-container) in tests: with --register=no
// --keep-unit, which makes sub-cgroups in its caller's cgroup, so it is started from cgroups of
// our own (one in each hierarchy it uses) that are removed afterwards.
import { existsSync, mkdirSync, readdirSync, rmdirSync, statSync } from 'node:fs';
import { waitFor } from './exec.js';

const CGROUP_ROOTS = ['/sys/fs/cgroup/systemd', '/sys/fs/cgroup/unified'];

/** How tests run it: no machined, no scope of its own, no status lines. */
export const SYSTEMD_NSPAWN = 'systemd-nspawn --register=no --keep-unit -q';

/** Cgroups named `name` in every hierarchy systemd-nspawn --keep-unit uses (name=systemd, unified). */
export function makeCgroups(name: string): string[] {
  const dirs: string[] = [];
  for (const root of CGROUP_ROOTS) {
    if (!existsSync(`${root}/cgroup.procs`)) continue;
    const dir = `${root}/${name}`;
    mkdirSync(dir, { recursive: true });
    dirs.push(dir);
  }
  if (dirs.length === 0) throw new Error('no name=systemd or unified cgroup hierarchy is mounted at /sys/fs/cgroup');
  return dirs;
}

/** A shell line that moves the shell running it into `cgroups` (then `exec` systemd-nspawn). */
export function joinCgroupsShell(cgroups: readonly string[]): string {
  return `for d in ${cgroups.join(' ')}; do echo $$ > "$d/cgroup.procs"; done`;
}

/** rmdir, children first (systemd-nspawn leaves its payload/supervisor groups empty, not removed). */
export async function removeCgroup(dir: string): Promise<void> {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir)) {
    const p = `${dir}/${e}`;
    if (statSync(p).isDirectory()) await removeCgroup(p);
  }
  await waitFor(() => {
    try {
      rmdirSync(dir);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
      throw err;
    }
  }, `cgroup ${dir} to empty`, 10_000);
}

/** removeCgroup() of each of `cgroups`. */
export async function removeCgroups(cgroups: readonly string[]): Promise<void> {
  for (const d of cgroups) await removeCgroup(d);
}
