// The container's plan: the ops the native side runs between clone() and exec() (plan.ts), built
// from the spec and what the host-side preparation made (preparation.ts). A pure function — every
// fact about the host and the root (users, groups, /bin/bash, the bounding set, seccomp support)
// comes in with its input — pinned by golden tests (test/unit/runtime/container-plan.test.ts).
import { containerCaps } from './caps.js';
import { cgroupEntry, type CgroupLayout } from './cgroups.js';
import type { ConsoleMode } from './console.js';
import { execCandidates, type InitInfo, type PasswdEntry } from './container-root.js';
import { containerEnvironment } from './launch-policy.js';
import { buildMountPlan, type ResolvedBind, type ResolvedTmpfs, type RootSource } from './mounts.js';
import { containerCloneFlags, type UidRange } from './namespaces.js';
import { CLONE_NEWCGROUP, CLONE_NEWNET, CLONE_NEWNS, type PlanOp } from './plan.js';
import { buildSeccompFilter } from './seccomp.js';
import type { LaunchSpec } from './spec.js';

export interface PlanInput {
  spec: LaunchSpec;
  /** where the root is mounted (the directory, or the ephemeral overlay's mount point) and what it is */
  root: string;
  rootSource: RootSource;
  userns?: UidRange;
  /** -u/--user=, looked up in the container's passwd */
  user?: PasswdEntry;
  /** the user's supplementary groups in the container (with `user`) */
  groups: number[];
  /** -b: the init to run */
  init?: InitInfo;
  layout: CgroupLayout;
  /** the machine's and the container's cgroups PID 1 enters (MachineCgroup.dirs, SupportCgroups.entryDirs()) */
  cgroupDirs: ReadonlyArray<{ version: 1 | 2; path: string }>;
  /** the host side of the container's sd_notify socket */
  notifySocket: string;
  uuid: string;
  /** the host's os-release: where it is (bound into the container) and its fields */
  hostOs: { path?: string; fields: Record<string, string> };
  consoleMode: ConsoleMode;
  /** $TERM of the launcher (interactive consoles pass it on) */
  term?: string;
  binds: ResolvedBind[];
  tmpfs: ResolvedTmpfs[];
  /** --private-users-ownership=map: the ID-mapped root's user namespace */
  rootIdmap?: { userns: string; fstype?: string };
  /** the launcher's own capability bounding set (the container's cannot exceed it) */
  ownBoundingSet?: bigint;
  /** whether this architecture gets the seccomp filter */
  seccomp: boolean;
  /** the hooks' planMounts ops */
  hookMounts: PlanOp[];
  /** a hook waits before exec: a sync point before the payload */
  beforeExecSync: boolean;
  /** the hooks' planAfterHooks ops: run inside the container once the beforeExec hooks are done */
  afterHookOps: PlanOp[];
  /** where the payload starts (--chdir=, else workingDirectory()) */
  workingDirectory: string;
  /** the root has /bin/bash (the default shell; else /bin/sh) */
  hasBash: boolean;
}

export interface BuiltPlan {
  cloneFlags: number;
  ops: PlanOp[];
  /** the cgroup2 directory PID 1 is cloned into (CLONE_INTO_CGROUP) */
  cgroupDir?: string;
}

function execOp(input: PlanInput, env: string[]): PlanOp {
  const { spec } = input;
  if (spec.mode === 'boot') {
    const init = input.init as InitInfo;
    return { op: 'exec', candidates: [init.path], argv: [init.path, ...spec.command], envp: env };
  }
  if (spec.command.length > 0) return { op: 'exec', candidates: execCandidates(spec.command[0] as string), argv: spec.command, envp: env };
  // no command: a login shell, /bin/bash as "-bash", else /bin/sh as "-sh" — systemd-nspawn's
  // DEFAULT_USER_SHELL whatever the user's passwd entry says (252 gives -u daemon, whose shell
  // is nologin, a bash as well)
  return { op: 'exec', candidates: input.hasBash ? ['/bin/bash'] : ['/bin/sh'], argv: [input.hasBash ? '-bash' : '-sh'], envp: env };
}

/** The plan of one start. */
export function buildContainerPlan(input: PlanInput): BuiltPlan {
  const { spec, root, userns, user, layout } = input;
  const joinNetns = spec.network.namespacePath;
  const ownNetns = spec.network.private && joinNetns === undefined;
  const wantConsole = input.consoleMode !== 'pipe';
  const mountPlan = buildMountPlan({
    root, rootSource: input.rootSource, privateNetwork: ownNetns, console: wantConsole,
    binds: input.binds, tmpfs: input.tmpfs,
    cgroups: layout, uuid: input.uuid, manager: 'systemd-nspawn', ...(userns ? { innerRoot: '/' } : {}),
    ...(input.hostOs.path ? { hostOsRelease: input.hostOs.path } : {}),
    ...(userns ? { uidShift: userns.shift } : {}),
    notifySocket: input.notifySocket,
    ...(input.rootIdmap ? { rootIdmap: input.rootIdmap } : {}),
  });
  const env = containerEnvironment({ spec, uuid: input.uuid, user, term: input.consoleMode === 'interactive' ? input.term : undefined, hostOs: input.hostOs.fields });
  let bounding = containerCaps({ privateNetwork: spec.network.private });
  if (input.ownBoundingSet !== undefined) bounding &= input.ownBoundingSet;

  const inner: PlanOp[] = [{ op: 'sync' }];
  if (userns) {
    inner.push({ op: 'setgroups', gids: [] }, { op: 'setresgid', gid: 0 }, { op: 'setresuid', uid: 0 });
  }
  if (layout.mode !== 'none') inner.push({ op: 'unshare', flags: CLONE_NEWCGROUP });
  const tail: PlanOp[] = [...mountPlan.inner];
  const hookMounts = input.hookMounts;
  if (!userns) tail.push(...hookMounts);
  if (ownNetns) tail.push({ op: 'loopbackUp' });
  // with a user namespace the helper moved the root to "/" already (pivot_root would refuse
  // the root mount, locked in the user namespace's mount namespace)
  if (!userns) tail.push({ op: 'pivotRoot', path: root });
  tail.push({ op: 'sethostname', name: spec.hostname ?? spec.machine });
  if (input.beforeExecSync) tail.push({ op: 'sync' });
  tail.push(...input.afterHookOps);
  if (input.seccomp) tail.push({ op: 'seccomp', program: buildSeccompFilter(bounding) });
  tail.push({ op: 'capbset', keep: bounding });
  if (spec.mode === 'as-pid2') tail.push({ op: 'stubInit' });
  tail.push(wantConsole ? { op: 'ctty' } : { op: 'setsid' });
  if (user) {
    tail.push({ op: 'setgroups', gids: input.groups });
    tail.push({ op: 'setresgid', gid: user.gid }, { op: 'setresuid', uid: user.uid });
  } else {
    tail.push({ op: 'capset', effective: bounding, permitted: bounding, inheritable: bounding, ambient: 0n });
  }
  tail.push({ op: 'chdir', path: input.workingDirectory });
  if (spec.mode !== 'as-pid2') tail.push({ op: 'pdeathsig', signal: 9 });
  tail.push(execOp(input, env));

  const flags = containerCloneFlags({ privateNetwork: ownNetns, userns: userns !== undefined });
  // PID 1 is cloned into its cgroup2 cgroup and moves itself into its v1 ones first thing (with a
  // user namespace the outer process does, with host privileges, and the inner one inherits
  // them): no move waits for the kernel's grace period (cgroups.ts, cgroupEntry), and the
  // cgroup namespace (after the first sync) is rooted there
  const entry = cgroupEntry(input.cgroupDirs);
  const enter: PlanOp[] = entry.tasksFiles.map((tasks) => ({ op: 'joinCgroup', tasks }));
  const into = entry.cgroup2Dir !== undefined ? { cgroupDir: entry.cgroup2Dir } : {};
  // joining comes first: the hooks at the first sync point see the namespace the container uses
  const join: PlanOp[] = joinNetns !== undefined ? [{ op: 'setns', path: joinNetns, nstype: CLONE_NEWNET }] : [];
  if (userns) {
    // outer: host privileges in a new mount namespace; inner: the container, in a user namespace
    const ops: PlanOp[] = [...enter, ...join, ...mountPlan.outer, ...hookMounts, { op: 'moveRoot', path: root }, { op: 'cloneInner', flags: flags | CLONE_NEWNS }, ...inner, ...tail];
    return { cloneFlags: CLONE_NEWNS, ops, ...into };
  }
  return { cloneFlags: flags, ops: [...enter, ...join, ...inner, ...mountPlan.outer, ...tail], ...into };
}
