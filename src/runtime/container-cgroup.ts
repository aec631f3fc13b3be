// What the container sees of cgroups, and the cgroup it needs besides those of
// src/runtime/cgroups.ts (MachineCgroup: memory, cpu, cpuacct, pids, the cgroup2 and name=systemd):
// one in the v1 devices controller for systemd-nspawn@.service's DevicePolicy=closed +
// DeviceAllow= — the standard pseudo devices, ptys and /dev/net/tun may be made and opened, no
// other device node. It lives where MachineCgroup puts a machine: `<launcher's cgroup>/nspawn-ts/machine-NAME`.
// The container gets a cgroup namespace rooted at these cgroups (made after the launcher moved
// it in), and /sys/fs/cgroup laid out like the host's: every v1 controller read-only, name=systemd
// and the cgroup2 writable (cgroupMountOps).
import { mkdirSync, readFileSync, readdirSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { posix } from 'node:path';
import { NspawnError, TeardownError } from '../errors.js';
import { cgroupFsPath, type CgroupLayout, type Hierarchy } from './cgroups.js';
import { MOUNT_ATTR_RDONLY, MS_NODEV, MS_NOEXEC, MS_NOSUID, type PlanOp } from './plan.js';
import type { DeviceAllowList } from './properties.js';
import type { BindMount } from './spec.js';

/** systemd-nspawn@.service's DevicePolicy=closed + DeviceAllow=, as devices.allow lines. */
export const DEVICE_ALLOW = [
  'c 1:3 rwm', 'c 1:5 rwm', 'c 1:7 rwm', 'c 1:8 rwm', 'c 1:9 rwm', // null zero full random urandom
  'c 5:0 rwm', 'c 5:1 rwm', 'c 5:2 rwm', // tty console ptmx
  'c 136:* rw', // pts
  'c 10:200 rwm', // net/tun
];

/** Majors by driver name from /proc/devices ("Character devices:" / "Block devices:" sections). */
export function parseProcDevices(text: string): { char: Array<[number, string]>; block: Array<[number, string]> } {
  const out = { char: [] as Array<[number, string]>, block: [] as Array<[number, string]> };
  let section: 'char' | 'block' | undefined;
  for (const line of text.split('\n')) {
    if (/^Character devices:/.test(line)) section = 'char';
    else if (/^Block devices:/.test(line)) section = 'block';
    else {
      const m = /^\s*(\d+)\s+(\S+)\s*$/.exec(line);
      if (m && section) out[section].push([Number(m[1]), m[2] as string]);
    }
  }
  return out;
}

function globMatch(pattern: string, name: string): boolean {
  const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
  return re.test(name);
}

/**
 * devices.allow lines for DeviceAllow= entries, as systemd's cgroup_add_device_allow() and
 * whitelist_major() make them: a /dev path by its node's type and number (stat() on the host), a
 * class by the majors /proc/devices lists for it ("c 10:* rw"). What does not exist is skipped with
 * a warning, as systemd skips it.
 */
export function deviceAllowRules(list: DeviceAllowList | undefined, procDevices = '/proc/devices'): { rules: string[]; warnings: string[] } {
  const rules: string[] = [];
  const warnings: string[] = [];
  if (!list) return { rules, warnings };
  let majors: ReturnType<typeof parseProcDevices> | undefined;
  for (const { node, access } of list.entries) {
    const cls = /^(char|block)-(.+)$/.exec(node);
    if (cls) {
      majors ??= parseProcDevices(readFileSync(procDevices, 'utf8'));
      const kind = cls[1] === 'char' ? 'char' : 'block';
      const found = majors[kind].filter(([, name]) => globMatch(cls[2] as string, name));
      if (found.length === 0) warnings.push(`DeviceAllow=${node}: no such ${kind === 'char' ? 'character' : 'block'} device class in ${procDevices}; ignored`);
      for (const [major] of found) rules.push(`${kind === 'char' ? 'c' : 'b'} ${major}:* ${access}`);
      continue;
    }
    const rule = deviceNodeRule(node, access);
    if (rule) rules.push(rule);
    else warnings.push(`DeviceAllow=${node}: not a device node on this host; ignored`);
  }
  return { rules, warnings };
}

/** "c MAJOR:MINOR ACCESS" for a device node path on the host; undefined if it is none. */
export function deviceNodeRule(path: string, access: string): string | undefined {
  try {
    const st = statSync(path);
    if (!st.isCharacterDevice() && !st.isBlockDevice()) return undefined;
    const major = Number((BigInt(st.rdev) >> 8n) & 0xfffn) | Number((BigInt(st.rdev) >> 32n) & ~0xfffn);
    const minor = Number(BigInt(st.rdev) & 0xffn) | Number((BigInt(st.rdev) >> 12n) & ~0xffn);
    return `${st.isCharacterDevice() ? 'c' : 'b'} ${major}:${minor} ${access}`;
  } catch {
    return undefined;
  }
}

/**
 * Device nodes bound in (--bind=/dev/fuse): allowed as systemd-nspawn's append_machine_properties()
 * does it, rw (r for --bind-ro).
 */
export function boundDeviceRules(binds: readonly BindMount[]): string[] {
  const out: string[] = [];
  for (const b of binds) {
    if (b.sourceInRoot) continue;
    const rule = deviceNodeRule(b.source, b.readOnly ? 'r' : 'rw');
    if (rule) out.push(rule);
  }
  return out;
}

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
  static create(layout: CgroupLayout, machine: string, extraDevices: readonly string[] = []): SupportCgroups {
    const made: string[] = [];
    try {
      for (const h of supportHierarchies(layout)) {
        const dir = machineCgroupDir(h, machine);
        if (dir === undefined) continue; // this process is not below the hierarchy's mount
        mkdirSync(dir, { recursive: true });
        made.push(dir);
        if (h.controllers.includes('devices')) {
          writeFileSync(`${dir}/devices.deny`, 'a');
          for (const rule of [...DEVICE_ALLOW, ...extraDevices]) writeFileSync(`${dir}/devices.allow`, rule);
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
