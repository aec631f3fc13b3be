// What the container sees of cgroups, and the cgroup it needs besides those of
// src/runtime/cgroups.ts (MachineCgroup: memory, cpu, cpuacct, pids, the cgroup2 and name=systemd):
// one in the v1 devices controller for systemd-nspawn@.service's DevicePolicy=closed +
// DeviceAllow= — the standard pseudo devices, ptys and /dev/net/tun may be made and opened, no
// other device node. It lives where MachineCgroup puts a machine: `<launcher's cgroup>/nspawn-ts/machine-NAME`.
// The container gets a cgroup namespace rooted at these cgroups (made after the launcher moved
// it in), and /sys/fs/cgroup laid out like the host's: every v1 controller read-only, name=systemd
// and the cgroup2 writable (cgroupMountOps).
import { mkdirSync, readdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { posix } from 'node:path';
import { NspawnError, TeardownError } from '../errors.js';
import { cgroupFsPath, type CgroupLayout, type Hierarchy } from './cgroups.js';
import { MOUNT_ATTR_RDONLY, MS_NODEV, MS_NOEXEC, MS_NOSUID, type PlanOp } from './plan.js';

/** systemd-nspawn@.service's DevicePolicy=closed + DeviceAllow=, as devices.allow lines. */
export const DEVICE_ALLOW = [
  'c 1:3 rwm', 'c 1:5 rwm', 'c 1:7 rwm', 'c 1:8 rwm', 'c 1:9 rwm', // null zero full random urandom
  'c 5:0 rwm', 'c 5:1 rwm', 'c 5:2 rwm', // tty console ptmx
  'c 136:* rw', // pts
  'c 10:200 rwm', // net/tun
];

/** The same place src/runtime/cgroups.ts uses for a machine. */
export function machineCgroupDir(h: Hierarchy, machine: string): string | undefined {
  if (h.ownPath === undefined) return undefined;
  const base = cgroupFsPath(h, h.ownPath);
  return base === undefined ? undefined : posix.join(base, 'nspawn-ts', `machine-${machine}`);
}

/** The hierarchies this module makes the machine's cgroup in (devices). */
export function supportHierarchies(layout: CgroupLayout): Hierarchy[] {
  return layout.hierarchies.filter((h) => h.version === 1 && h.controllers.includes('devices'));
}

/**
 * The container's /sys/fs/cgroup as mount ops run inside its cgroup namespace (each hierarchy then
 * shows the container's cgroup as its root). `target` is the host path of the container's
 * /sys/fs/cgroup before pivot_root.
 */
export function cgroupMountOps(layout: CgroupLayout, target: string): PlanOp[] {
  const flags = MS_NOSUID | MS_NODEV | MS_NOEXEC;
  if (layout.mode === 'none') return [];
  if (layout.mode === 'unified') return [{ op: 'mount', source: 'cgroup', target, fstype: 'cgroup2', flags }];
  const ops: PlanOp[] = [
    { op: 'mount', source: 'tmpfs', target, fstype: 'tmpfs', flags, data: 'mode=755,size=4m,nr_inodes=1k' },
  ];
  const readOnly: string[] = [];
  for (const h of layout.hierarchies) {
    const dir = h.version === 2 ? 'unified' : posix.basename(h.mountPoint);
    const path = `${target}/${dir}`;
    ops.push({ op: 'mkdir', path, mode: 0o755 });
    if (h.version === 2) {
      ops.push({ op: 'mount', source: 'cgroup', target: path, fstype: 'cgroup2', flags });
      continue;
    }
    const data = h.name ? `none,name=${h.name}` : h.controllers.join(',');
    ops.push({ op: 'mount', source: 'cgroup', target: path, fstype: 'cgroup', flags, data });
    if (h.name !== 'systemd') readOnly.push(path);
    // combined controllers ("cpu,cpuacct") also answer to each name, as on the host
    if (h.controllers.length > 1) {
      for (const c of h.controllers) if (c !== dir) ops.push({ op: 'symlink', target: dir, path: `${target}/${c}` });
    }
  }
  for (const p of readOnly) ops.push({ op: 'setattr', path: p, set: MOUNT_ATTR_RDONLY });
  ops.push({ op: 'setattr', path: target, set: MOUNT_ATTR_RDONLY });
  return ops;
}

/** The machine's devices cgroup; made before it starts, removed after it ends. */
export class SupportCgroups {
  private constructor(readonly dirs: readonly string[]) {}

  /** An empty leftover of a killed launcher is reused; a failure removes what was made. */
  static create(layout: CgroupLayout, machine: string): SupportCgroups {
    const made: string[] = [];
    try {
      for (const h of supportHierarchies(layout)) {
        const dir = machineCgroupDir(h, machine);
        if (dir === undefined) continue; // this process is not below the hierarchy's mount
        mkdirSync(dir, { recursive: true });
        made.push(dir);
        if (h.controllers.includes('devices')) {
          writeFileSync(`${dir}/devices.deny`, 'a');
          for (const rule of DEVICE_ALLOW) writeFileSync(`${dir}/devices.allow`, rule);
        }
      }
    } catch (err) {
      for (const d of made.reverse()) {
        try { removeCgroupTree(d); } catch { /* nothing in it */ }
      }
      throw new NspawnError('CGROUP_SETUP', `failed to create the cgroups of machine ${machine}: ${(err as Error).message}`, { cause: err });
    }
    return new SupportCgroups(made);
  }

  /** The cgroups PID 1 joins (all cgroup v1: see supportHierarchies; cgroupEntry() in cgroups.ts). */
  entryDirs(): Array<{ version: 1; path: string }> {
    return this.dirs.map((path) => ({ version: 1, path }));
  }

  /** Removes them (and what the container made below), then the nspawn-ts/ parent if empty. */
  async remove(timeoutMs = 3000): Promise<void> {
    const errors: unknown[] = [];
    for (const d of this.dirs) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        try {
          removeCgroupTree(d);
          break;
        } catch (err) {
          // an exiting process keeps a v1 cgroup busy for a moment
          if ((err as NodeJS.ErrnoException).code !== 'EBUSY' || Date.now() > deadline) {
            errors.push(err);
            break;
          }
          await new Promise((r) => setTimeout(r, 10));
        }
      }
      try {
        rmdirSync(posix.dirname(d));
      } catch { /* another machine is in it */ }
    }
    if (errors.length) throw new TeardownError('removing the container cgroups', errors);
  }
}

/** rmdir of a cgroup and its descendants, deepest first; missing is fine. */
export function removeCgroupTree(path: string): void {
  let entries: string[];
  try {
    entries = readdirSync(path, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  for (const e of entries) removeCgroupTree(`${path}/${e}`);
  try {
    rmdirSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
