// The container plan: the list of operations the native clone child executes between clone() and
// exec() (native/src/container.cc interprets it; it knows no policy). Everything here is plain
// data, so which mounts, capabilities and IDs a container gets is decided — and unit-tested — in
// TypeScript. Constants are the kernel's (uapi linux/sched.h, linux/mount.h, sys/mount.h).

export const CLONE_NEWNS = 0x00020000;
export const CLONE_NEWCGROUP = 0x02000000;
export const CLONE_NEWUTS = 0x04000000;
export const CLONE_NEWIPC = 0x08000000;
export const CLONE_NEWUSER = 0x10000000;
export const CLONE_NEWPID = 0x20000000;
export const CLONE_NEWNET = 0x40000000;

export const MS_RDONLY = 0x1;
export const MS_NOSUID = 0x2;
export const MS_NODEV = 0x4;
export const MS_NOEXEC = 0x8;
export const MS_REMOUNT = 0x20;
export const MS_BIND = 0x1000;
export const MS_MOVE = 0x2000;
export const MS_REC = 0x4000;
export const MS_PRIVATE = 0x40000;
export const MS_SLAVE = 0x80000;
export const MS_SHARED = 0x100000;
export const MS_RELATIME = 0x200000;
export const MS_STRICTATIME = 0x1000000;

export const MOUNT_ATTR_RDONLY = 0x1;
export const MOUNT_ATTR_NOSUID = 0x2;
export const MOUNT_ATTR_NODEV = 0x4;
export const MOUNT_ATTR_NOEXEC = 0x8;

export const MNT_DETACH = 2;

export const S_IFCHR = 0o020000;

/** One step of the clone child. `optional` steps may fail with ENOENT/ENODEV/ENOTDIR. */
export type PlanOp = (
  | { op: 'mount'; source?: string; target: string; fstype?: string; flags: number; data?: string }
  /** mount_setattr(): change flags of a mount (and, with recursive, its submounts) without restating locked ones */
  | { op: 'setattr'; path: string; set?: number; clear?: number; recursive?: boolean; propagation?: number }
  | { op: 'umount'; path: string; flags?: number }
  /** mkdir, EEXIST is fine; with parents, missing parents are made first (mode 0755) */
  | { op: 'mkdir'; path: string; mode: number; parents?: boolean }
  /** creates an empty file to bind a file over (an existing directory is fine too) */
  | { op: 'touch'; path: string; mode: number; parents?: boolean }
  | { op: 'mknod'; path: string; mode: number; major: number; minor: number }
  | { op: 'symlink'; target: string; path: string }
  | { op: 'writeFile'; path: string; content: string; mode: number }
  | { op: 'chown'; path: string; uid: number; gid: number }
  | { op: 'chmod'; path: string; mode: number }
  /** makes `path` the root; the old root is detached */
  | { op: 'pivotRoot'; path: string }
  /** moves the mount at `path` over "/" and chroots into it (the old root stays below) */
  | { op: 'moveRoot'; path: string }
  | { op: 'sethostname'; name: string }
  | { op: 'chdir'; path: string }
  | { op: 'unshare'; flags: number }
  | { op: 'setns'; path: string; nstype: number }
  /** reports READY and waits until the launcher says go (see Launcher's sync handlers) */
  | { op: 'sync' }
  | { op: 'setgroups'; gids: number[] }
  | { op: 'setresgid'; gid: number }
  | { op: 'setresuid'; uid: number }
  /** drops every capability not in `keep` from the bounding set */
  | { op: 'capbset'; keep: bigint }
  | { op: 'capset'; effective: bigint; permitted: bigint; inheritable: bigint; ambient: bigint }
  | { op: 'seccomp'; program: Uint8Array }
  | { op: 'noNewPrivs' }
  | { op: 'loopbackUp' }
  /** opens a pty in the container's devpts, hands the master to the launcher, makes the slave fds 0-2 */
  | { op: 'pty'; ptmx: string; consoleLink?: string }
  /** new session with fd 0 as controlling terminal */
  | { op: 'ctty' }
  | { op: 'setsid' }
  /** forks: this process stays as a stub init (PID 1), the child goes on with the next op */
  | { op: 'stubInit' }
  /** clones an inner child with `flags` (CLONE_PARENT); the inner goes on, this one reports its pid and exits */
  | { op: 'cloneInner'; flags: number }
  | { op: 'pdeathsig'; signal: number }
  /**
   * bind-mounts `source` on `target` with its IDs mapped through the user namespace at `userns`
   * (open_tree + mount_setattr(MOUNT_ATTR_IDMAP) + move_mount); for messages: `what` asked for it
   * (the option), `instead` what works without, `fstype` the source's file system
   */
  | { op: 'bindIdmapped'; source: string; target: string; userns: string; recursive: boolean; what: string; instead: string; fstype?: string }
  /**
   * writes "0" into a cgroup v1 `tasks` file: the (single-threaded) process moves itself there,
   * without the wait a move by PID costs (cgroups.ts, cgroupEntry)
   */
  | { op: 'joinCgroup'; tasks: string }
  /** execve() of the first candidate that exists */
  | { op: 'exec'; candidates: string[]; argv: string[]; envp: string[] }
) & { optional?: boolean };

export interface ContainerPlan {
  /** namespaces of the first clone */
  cloneFlags: number;
  ops: PlanOp[];
  /** the cgroup2 directory the first process is cloned into (CLONE_INTO_CGROUP) */
  cgroupDir?: string;
}

/** What an op was doing, for "failed to …" messages. */
export function describeOp(op: PlanOp): string {
  switch (op.op) {
    case 'mount':
      if (op.flags & MS_BIND) return `bind-mount ${op.source} on ${op.target}`;
      if (op.flags & MS_REMOUNT) return `remount ${op.target}`;
      if (op.fstype) return `mount ${op.fstype} on ${op.target}`;
      return `change propagation of ${op.target}`;
    case 'setattr': return `change mount flags of ${op.path}`;
    case 'umount': return `unmount ${op.path}`;
    case 'mkdir': return `create directory ${op.path}`;
    case 'touch': return `create ${op.path}`;
    case 'mknod': return `create device node ${op.path}`;
    case 'symlink': return `create symlink ${op.path}`;
    case 'writeFile': return `write ${op.path}`;
    case 'chown': return `change owner of ${op.path}`;
    case 'chmod': return `change mode of ${op.path}`;
    case 'pivotRoot':
    case 'moveRoot': return `make ${op.path} the root directory`;
    case 'sethostname': return `set hostname to ${op.name}`;
    case 'chdir': return `change to directory ${op.path}`;
    case 'unshare': return 'create namespaces';
    case 'setns': return `join namespace ${op.path}`;
    case 'sync': return 'wait for the launcher';
    case 'setgroups': return 'set supplementary groups';
    case 'setresgid': return `change to group ID ${op.gid}`;
    case 'setresuid': return `change to user ID ${op.uid}`;
    case 'capbset': return 'drop capabilities from the bounding set';
    case 'capset': return 'set capabilities';
    case 'seccomp': return 'install the system call filter';
    case 'noNewPrivs': return 'set no_new_privs';
    case 'loopbackUp': return 'bring up the loopback interface';
    case 'pty': return 'allocate the console pty';
    case 'ctty': return 'acquire the controlling terminal';
    case 'setsid': return 'start a new session';
    case 'stubInit': return 'start the stub init';
    case 'cloneInner': return 'create the container namespaces';
    case 'pdeathsig': return 'set the parent-death signal';
    case 'bindIdmapped': return `bind-mount ${op.source} on ${op.target} with an ID mapping`;
    case 'joinCgroup': return `join the cgroup of ${op.tasks}`;
    case 'exec': return `execute ${op.argv[0] ?? op.candidates[0]}`;
  }
}
