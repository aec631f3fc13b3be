// The container's file system, as systemd-nspawn (v252, src/nspawn/nspawn-mount.c mount_all(),
// nspawn.c setup_dev/copy_devnodes/setup_pts) lays it out — as a list of plan ops (plan.ts). Pure:
// every decision is made here from the inputs, so it is unit-tested as data.
//
// Two groups: `outer` ops need the host's privileges (device nodes, sysfs of the host network
// namespace, the root and bind mounts); `inner` ops need the container's own namespaces (procfs
// of its PID namespace, devpts, mqueue, sysfs of a private network namespace, cgroups of its
// cgroup namespace). Without a user namespace one process runs both; with one, `outer` runs in a
// helper that still has the host's user namespace and `inner` in the container's first process.
import { posix } from 'node:path';
import type { BindMount } from './spec.js';
import {
  MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY,
  MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_REC, MS_SLAVE, MS_STRICTATIME,
  S_IFCHR, type PlanOp,
} from './plan.js';
import type { CgroupLayout } from './cgroups.js';
import { cgroupMountOps } from './container-cgroup.js';

const S_IFIFO = 0o010000;

/** Where the root comes from: the directory itself, or an overlay over it (--ephemeral). */
export type RootSource =
  | { kind: 'directory'; directory: string }
  | {
    kind: 'overlay'; lower: string; upper: string; work: string;
    /** -U -x: `lower` is bound ID-mapped through `userns` at `mountPoint` and the overlay stacked on that */
    lowerIdmap?: { mountPoint: string; userns: string; fstype?: string };
  };

/** A bind mount with its host source and container destination already resolved. */
export interface ResolvedBind {
  source: string;
  /** host path of the destination inside the (mounted) root */
  target: string;
  readOnly: boolean;
  recursive: boolean;
  /** a file (the target is created as an empty file) or a directory */
  file: boolean;
  /** idmap/rootidmap/owneridmap: mapped through the user namespace at `userns` (/proc/PID/ns/user) */
  idmap?: { option: IdmapOption; userns: string; fstype?: string };
}

export interface ResolvedTmpfs {
  target: string;
  options: string;
}

export interface MountPlanInput {
  /** host path where the container's root is mounted (the directory itself, or the overlay's mount point) */
  root: string;
  /** where the root is when the inner ops run (default: root; "/" once a user-namespace helper moved it there) */
  innerRoot?: string;
  rootSource: RootSource;
  privateNetwork: boolean;
  /** with a user namespace: the host UID/GID that is root inside */
  uidShift?: number;
  /** a pty for the console (/dev/console links to it) */
  console: boolean;
  binds: ResolvedBind[];
  tmpfs: ResolvedTmpfs[];
  cgroups: CgroupLayout;
  /** the container's UUID (/run/host/container-uuid) */
  uuid: string;
  /** host os-release to show at /run/host/os-release, if any */
  hostOsRelease?: string;
  /** contents of /run/host/container-manager */
  manager: string;
  /** --private-users-ownership=map: the root directory is bound ID-mapped through this user namespace */
  rootIdmap?: { userns: string; fstype?: string };
  /** host path of the launcher's notify socket, bound at /run/host/notify */
  notifySocket?: string;
}

export interface MountPlan {
  outer: PlanOp[];
  inner: PlanOp[];
}

/** tmpfs limits systemd-nspawn uses (TMPFS_LIMITS_*, src/basic/mountpoint-util.h). */
export const TMPFS_LIMITS = {
  dev: 'size=4m,nr_inodes=64k',
  devShm: 'size=10%,nr_inodes=400k',
  run: 'size=20%,nr_inodes=800k',
  tmp: 'size=10%,nr_inodes=400k',
} as const;

/** The device nodes of a container's /dev (copy_devnodes). */
export const DEV_NODES: ReadonlyArray<{ name: string; major: number; minor: number }> = [
  { name: 'null', major: 1, minor: 3 },
  { name: 'zero', major: 1, minor: 5 },
  { name: 'full', major: 1, minor: 7 },
  { name: 'random', major: 1, minor: 8 },
  { name: 'urandom', major: 1, minor: 9 },
  { name: 'tty', major: 5, minor: 0 },
  { name: 'net/tun', major: 10, minor: 200 },
];

/** /proc entries made read-only (nspawn's MOUNT_APPLY_APIVFS_RO list) and ones made empty. */
export const PROC_READ_ONLY = ['sys', 'acpi', 'apm', 'asound', 'bus', 'fs', 'irq', 'scsi', 'sysrq-trigger'];
export const PROC_INACCESSIBLE = ['kallsyms', 'kcore', 'keys', 'timer_list'];

function withOwner(data: string, uidShift: number | undefined): string {
  return uidShift === undefined ? data : `${data},uid=${uidShift},gid=${uidShift}`;
}

function p(root: string, path: string): string {
  return posix.join(root, path);
}

export function buildMountPlan(input: MountPlanInput): MountPlan {
  const { root, uidShift } = input;
  const outer: PlanOp[] = [];
  const inner: PlanOp[] = [];
  const chownToRoot = (path: string): void => {
    if (uidShift !== undefined) outer.push({ op: 'chown', path, uid: uidShift, gid: uidShift });
  };

  // Nothing done in here may propagate back to the host; host mounts still propagate in.
  outer.push({ op: 'mount', target: '/', flags: MS_SLAVE | MS_REC });

  // The root: a mount point of its own, so that pivot_root can make it "/".
  if (input.rootSource.kind === 'directory' && input.rootIdmap) {
    // --private-users-ownership=map: the tree as it is, its IDs shown through the user namespace's range
    outer.push({ op: 'bindIdmapped', source: input.rootSource.directory, target: root, userns: input.rootIdmap.userns, recursive: true,
      what: '--private-users-ownership=map', instead: 'use --private-users-ownership=chown', ...(input.rootIdmap.fstype ? { fstype: input.rootIdmap.fstype } : {}) });
  } else if (input.rootSource.kind === 'directory') {
    outer.push({ op: 'mount', source: input.rootSource.directory, target: root, flags: MS_BIND | MS_REC });
  } else {
    const { upper, work, lowerIdmap } = input.rootSource;
    let lower = input.rootSource.lower;
    if (lowerIdmap) {
      outer.push({ op: 'bindIdmapped', source: lower, target: lowerIdmap.mountPoint, userns: lowerIdmap.userns, recursive: false,
        what: 'a user namespace with --ephemeral (the overlay\'s ID-mapped lower layer)',
        instead: `shift the tree once with --private-users-chown (without --ephemeral), then use -x`, ...(lowerIdmap.fstype ? { fstype: lowerIdmap.fstype } : {}) });
      lower = lowerIdmap.mountPoint;
    }
    outer.push({ op: 'mount', source: 'overlay', target: root, fstype: 'overlay', flags: 0,
      data: `lowerdir=${escapeOverlay(lower)},upperdir=${escapeOverlay(upper)},workdir=${escapeOverlay(work)}` });
  }

  // /tmp
  outer.push({ op: 'mkdir', path: p(root, 'tmp'), mode: 0o1777 });
  outer.push({ op: 'mount', source: 'tmpfs', target: p(root, 'tmp'), fstype: 'tmpfs',
    flags: MS_NOSUID | MS_NODEV | MS_STRICTATIME, data: withOwner(`mode=1777,${TMPFS_LIMITS.tmp}`, uidShift) });

  // /sys: the host's view is right only when the container shares the host's network namespace
  // (sysfs shows the links of the namespace that mounts it); with a private one it is mounted inside.
  const sysOps = (into: PlanOp[], base: string): void => {
    into.push({ op: 'mkdir', path: p(base, 'sys'), mode: 0o555 });
    into.push({ op: 'mount', source: 'sysfs', target: p(base, 'sys'), fstype: 'sysfs',
      flags: MS_NOSUID | MS_NODEV | MS_NOEXEC | 1 /* MS_RDONLY */ });
  };
  if (!input.privateNetwork) sysOps(outer, root);

  // /dev: a small tmpfs with the standard pseudo devices; everything else is absent.
  const dev = p(root, 'dev');
  outer.push({ op: 'mkdir', path: dev, mode: 0o755 });
  outer.push({ op: 'mount', source: 'tmpfs', target: dev, fstype: 'tmpfs', flags: MS_NOSUID | MS_STRICTATIME,
    data: withOwner(`mode=755,${TMPFS_LIMITS.dev}`, uidShift) });
  outer.push({ op: 'mkdir', path: p(dev, 'net'), mode: 0o755 });
  chownToRoot(p(dev, 'net'));
  for (const n of DEV_NODES) {
    outer.push({ op: 'mknod', path: p(dev, n.name), mode: S_IFCHR | 0o666, major: n.major, minor: n.minor });
    chownToRoot(p(dev, n.name));
  }
  for (const [name, target] of [['fd', '/proc/self/fd'], ['stdin', '/proc/self/fd/0'], ['stdout', '/proc/self/fd/1'],
    ['stderr', '/proc/self/fd/2'], ['ptmx', 'pts/ptmx']] as const) {
    outer.push({ op: 'symlink', target, path: p(dev, name) });
  }
  // /dev/char/MAJOR:MINOR links, as udev would make them (systemd looks devices up there)
  outer.push({ op: 'mkdir', path: p(dev, 'char'), mode: 0o755 });
  chownToRoot(p(dev, 'char'));
  for (const n of DEV_NODES) outer.push({ op: 'symlink', target: `../${n.name}`, path: p(dev, `char/${n.major}:${n.minor}`) });
  outer.push({ op: 'mkdir', path: p(dev, 'shm'), mode: 0o1777 });
  outer.push({ op: 'mount', source: 'tmpfs', target: p(dev, 'shm'), fstype: 'tmpfs',
    flags: MS_NOSUID | MS_NODEV | MS_STRICTATIME, data: withOwner(`mode=1777,${TMPFS_LIMITS.devShm}`, uidShift) });
  outer.push({ op: 'mkdir', path: p(dev, 'pts'), mode: 0o755 });
  outer.push({ op: 'mkdir', path: p(dev, 'mqueue'), mode: 0o755 });

  // /run, with /run/host: what systemd in the container reads about its host
  const run = p(root, 'run');
  outer.push({ op: 'mkdir', path: run, mode: 0o755 });
  outer.push({ op: 'mount', source: 'tmpfs', target: run, fstype: 'tmpfs', flags: MS_NOSUID | MS_NODEV | MS_STRICTATIME,
    data: withOwner(`mode=755,${TMPFS_LIMITS.run}`, uidShift) });
  const host = p(run, 'host');
  outer.push({ op: 'mkdir', path: host, mode: 0o755 });
  outer.push({ op: 'writeFile', path: p(host, 'container-manager'), content: `${input.manager}\n`, mode: 0o444 });
  outer.push({ op: 'writeFile', path: p(host, 'container-uuid'), content: `${input.uuid}\n`, mode: 0o444 });
  const inaccessible = p(host, 'inaccessible');
  outer.push({ op: 'mkdir', path: inaccessible, mode: 0o755 });
  outer.push({ op: 'mkdir', path: p(inaccessible, 'dir'), mode: 0 });
  outer.push({ op: 'writeFile', path: p(inaccessible, 'reg'), content: '', mode: 0 });
  outer.push({ op: 'mknod', path: p(inaccessible, 'fifo'), mode: S_IFIFO, major: 0, minor: 0 });
  if (input.hostOsRelease) {
    outer.push({ op: 'touch', path: p(host, 'os-release'), mode: 0o444 });
    outer.push({ op: 'mount', source: input.hostOsRelease, target: p(host, 'os-release'), flags: MS_BIND });
  }
  if (input.notifySocket) {
    // the socket inode itself is bound over a placeholder: sd_notify() in the container reaches the launcher
    outer.push({ op: 'touch', path: p(host, 'notify'), mode: 0o600 });
    outer.push({ op: 'mount', source: input.notifySocket, target: p(host, 'notify'), flags: MS_BIND });
  }
  for (const x of [host, inaccessible, p(inaccessible, 'dir'), p(inaccessible, 'reg'), p(inaccessible, 'fifo'),
    p(host, 'container-manager'), p(host, 'container-uuid')]) chownToRoot(x);
  outer.push({ op: 'mount', source: host, target: host, flags: MS_BIND | MS_REC });
  outer.push({ op: 'setattr', path: host, set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, recursive: true });

  // user bind mounts and tmpfs (after the API file systems, so they may go on top of /run or /tmp)
  for (const b of input.binds) {
    if (b.file) outer.push({ op: 'touch', path: b.target, mode: 0o644, parents: true });
    else outer.push({ op: 'mkdir', path: b.target, mode: 0o755, parents: true });
    if (b.idmap) {
      outer.push({ op: 'bindIdmapped', source: b.source, target: b.target, userns: b.idmap.userns, recursive: b.recursive,
        what: `--bind=${b.source}:…:${b.idmap.option}`, instead: `bind it without ${b.idmap.option}, or from a file system that does`,
        ...(b.idmap.fstype ? { fstype: b.idmap.fstype } : {}) });
    } else {
      outer.push({ op: 'mount', source: b.source, target: b.target, flags: MS_BIND | (b.recursive ? MS_REC : 0) });
    }
    if (b.readOnly) outer.push({ op: 'setattr', path: b.target, set: MOUNT_ATTR_RDONLY, recursive: b.recursive });
  }
  for (const t of input.tmpfs) {
    outer.push({ op: 'mkdir', path: t.target, mode: 0o755, parents: true });
    outer.push({ op: 'mount', source: 'tmpfs', target: t.target, fstype: 'tmpfs', flags: MS_NODEV | MS_STRICTATIME,
      data: withOwner(t.options, uidShift) });
  }

  // --- inside the container's namespaces ---
  // (with a user namespace the root has been moved to "/" by then: innerRoot is "/")
  const ir = input.innerRoot ?? root;
  const idev = p(ir, 'dev');
  const iinaccessible = p(ir, 'run/host/inaccessible');
  // /proc of the container's PID namespace, with the kernel's knobs read-only
  const proc = p(ir, 'proc');
  inner.push({ op: 'mkdir', path: proc, mode: 0o555 });
  inner.push({ op: 'mount', source: 'proc', target: proc, fstype: 'proc', flags: MS_NOSUID | MS_NODEV | MS_NOEXEC });
  for (const e of PROC_READ_ONLY) {
    const path = p(proc, e);
    inner.push({ op: 'mount', source: path, target: path, flags: MS_BIND | MS_REC, optional: true });
    inner.push({ op: 'setattr', path, set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, recursive: true, optional: true });
    if (e === 'sys' && input.privateNetwork) {
      // the container's own network namespace stays configurable (networkd, sysctl net.*)
      const net = p(proc, 'sys/net');
      inner.push({ op: 'mount', source: net, target: net, flags: MS_BIND | MS_REC, optional: true });
      inner.push({ op: 'setattr', path: net, clear: MOUNT_ATTR_RDONLY, recursive: true, optional: true });
    }
  }
  for (const e of PROC_INACCESSIBLE) {
    inner.push({ op: 'mount', source: p(iinaccessible, 'reg'), target: p(proc, e), flags: MS_BIND, optional: true });
  }
  if (input.privateNetwork) sysOps(inner, ir);
  inner.push(...cgroupMountOps(input.cgroups, p(ir, 'sys/fs/cgroup')));

  // devpts of its own (ptys made inside are the container's), and POSIX message queues
  inner.push({ op: 'mount', source: 'devpts', target: p(idev, 'pts'), fstype: 'devpts', flags: MS_NOSUID | MS_NOEXEC,
    data: 'newinstance,ptmxmode=0666,mode=620,gid=5' });
  inner.push({ op: 'mount', source: 'mqueue', target: p(idev, 'mqueue'), fstype: 'mqueue', flags: MS_NOSUID | MS_NODEV | MS_NOEXEC, optional: true });
  if (input.console) inner.push({ op: 'pty', ptmx: p(idev, 'pts/ptmx'), consoleLink: p(idev, 'console') });
  return { outer, inner };
}

/** overlayfs option values: ',' ':' and '\' must be escaped. */
export function escapeOverlay(path: string): string {
  return path.replace(/[\\,:]/g, (c) => `\\${c}`);
}

export type IdmapOption = 'idmap' | 'rootidmap' | 'owneridmap';

/** The ID mapping a bind asks for (the last of idmap, rootidmap, owneridmap, noidmap wins), if any. */
export function bindIdmap(b: BindMount): IdmapOption | undefined {
  const last = b.options.filter((o) => o === 'idmap' || o === 'noidmap' || o === 'rootidmap' || o === 'owneridmap').pop();
  return last === undefined || last === 'noidmap' ? undefined : last as IdmapOption;
}

/**
 * The uid_map (and, with gids, gid_map) of the user namespace an ID-mapped bind goes through, as
 * systemd's make_userns(): `idmap` shows the host's IDs 0..count-1 as the container's (its user
 * namespace's range), with host root kept at 2147483646 so it can still write there; `rootidmap`
 * shows the source's owner as the container's root and nothing else; `owneridmap` shows it as the
 * owner of the destination (`destOwner`, a host ID). IDs not mapped appear as nobody.
 */
export function idmapLines(option: IdmapOption, range: { shift: number; range: number }, sourceOwner: number, destOwner: number): string {
  switch (option) {
    case 'idmap':
      return `0 ${range.shift} ${range.range}\n${range.shift > 0 ? `${UID_MAPPED_ROOT} 0 1\n` : ''}`;
    case 'rootidmap':
      return `${sourceOwner} ${range.shift} 1\n`;
    case 'owneridmap':
      return `${sourceOwner} ${destOwner} 1\n`;
  }
}

/** systemd's UID_MAPPED_ROOT: where host root lands on an `idmap` bind. */
export const UID_MAPPED_ROOT = 2147483646;

/** `--bind=…:norbind` binds only the top mount; the default (rbind) takes submounts along. */
export function bindRecursive(b: BindMount): boolean {
  return !b.options.includes('norbind');
}
