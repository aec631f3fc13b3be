// Control groups of machines: where they go, the limits on them (MemoryMax=, CPUQuota=, TasksMax=…
// from src/runtime/properties.ts), their usage, and their removal — on whatever layout the host has:
//
//   unified  cgroup2 only (/sys/fs/cgroup): controllers listed in cgroup.controllers, enabled for
//            children through each ancestor's cgroup.subtree_control.
//   legacy   cgroup v1 only: one hierarchy per controller group (memory, cpu[,cpuacct], pids …),
//            found in /proc/self/mountinfo; a machine gets a directory in each.
//   hybrid   both: v1 hierarchies carry the controllers, a cgroup2 (usually /sys/fs/cgroup/unified)
//            tracks processes. This machine is one: memory, cpu, cpuacct and pids are v1, its cgroup2
//            has only hugetlb; limits go to memory.limit_in_bytes, cpu.cfs_quota_us, pids.max.
//
// Placement. A machine's cgroup is `<base>/nspawn-ts/machine-<NAME>` in every hierarchy we use, and
// <base> is by default the launcher's *own* cgroup in that hierarchy (from /proc/self/cgroup) — what
// `systemd-nspawn --keep-unit` does, and what systemd-nspawn@.service (Delegate=yes) relies on. Why
// not a top-level `nspawn-ts/` subtree next to system.slice: limits set above the launcher (a
// service's MemoryMax=, a session's budget — this machine runs us in memory:/process_api/<id>, with
// its own accounting) must bound the container too; a container started at the root would escape
// them, and we would write into parts of the tree that systemd or the host's supervisor own. With
// `placement: 'root'` the base is the hierarchy's root (for a launcher that is the cgroup manager of
// the host). The `nspawn-ts/` level keeps our directories apart from whatever else lives in <base>.
//
// cgroup v2 forbids processes in a cgroup whose children get controllers ("no internal processes").
// When <base> holds processes (a launcher started from a shell), enabling controllers fails with
// EBUSY; like systemd-nspawn --keep-unit we then move ourselves into `<base>/nspawn-ts/supervisor`
// if we are the only process there, and otherwise say what to do (systemd-run --scope -p Delegate=yes).
//
// v1 mapping (systemd's, plus MemoryHigh): MemoryMax → memory.limit_in_bytes and, when swap
// accounting exists, memory.memsw.limit_in_bytes = MemoryMax + MemorySwapMax (0 by default: no swap
// beyond the limit, as a v2 memory.max + memory.swap.max=0 would do); MemoryHigh → soft_limit_in_bytes,
// an approximation: v1 has no throttling threshold, the soft limit only steers reclaim under global
// memory pressure. MemoryLow has no v1 equivalent and is refused. CPUQuota → cfs_period_us/cfs_quota_us,
// CPUWeight → cpu.shares, TasksMax → pids.max.
//
// Parts: cgroup-layout.ts (finding the hierarchies), cgroup-files.ts (cgroupfs access, enabling
// controllers), cgroup-limits.ts (writing the limits); this file: a machine's cgroups (MachineCgroup).
import { chownSync, rmdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, TeardownError } from '../errors.js';
import { logger } from '../log.js';
import {
  formatProperties, mergeProperties, parseProperties, readHostFacts, resolveProperties, type HostFacts, type ResourceProperties,
} from './properties.js';
import { CONTROLLERS, cgroupFsPath, detectLayout, type CgroupDir, type CgroupLayout, type Controller, type Hierarchy } from './cgroup-layout.js';
import {
  CgroupError, checkPid, enableSubtree, errCode, mkdirIfMissing, readAttr, readBig, readKeyed, readPids, rmdirQuiet, subCgroups, writeAttr,
} from './cgroup-files.js';
import { applyLimits, checkSupported } from './cgroup-limits.js';

const log = logger('cgroups');

export * from './cgroup-layout.js';
export { CgroupError } from './cgroup-files.js';

/**
 * How a new process enters these cgroups without waiting for the kernel. Moving a process by its
 * PID (cgroup.procs) takes cgroup_threadgroup_rwsem for writing, which after a quiet spell waits
 * for an RCU grace period (~10-20 ms on a small VM; the launcher's PID 1 used to wait for it). A
 * thread that writes "0" into a cgroup v1 `tasks` file moves itself alone, and the kernel takes
 * no such lock for it; a child cloned with CLONE_INTO_CGROUP starts in its cgroup2 cgroup. So the
 * container's first process writes "0" into the `tasks` file of each v1 cgroup (plan op
 * joinCgroup, before anything else: it has one thread, so it moves whole) and is cloned into the
 * cgroup2 one. `dirs` in the order they apply (a later cgroup of the same hierarchy wins).
 */
export function cgroupEntry(dirs: ReadonlyArray<{ version: 1 | 2; path: string }>): { tasksFiles: string[]; cgroup2Dir?: string } {
  const tasksFiles: string[] = [];
  let cgroup2Dir: string | undefined;
  for (const d of dirs) {
    if (d.version === 2) cgroup2Dir = d.path;
    else tasksFiles.push(join(d.path, 'tasks'));
  }
  return cgroup2Dir === undefined ? { tasksFiles } : { tasksFiles, cgroup2Dir };
}

// ---------------------------------------------------------------------------------------------
// machines

export interface CgroupOptions {
  /** default: detectLayout() */
  layout?: CgroupLayout;
  /** 'self' (default): below the launcher's own cgroup in each hierarchy; 'root': below the roots */
  placement?: 'self' | 'root';
  /**
   * Named v1 hierarchies to make the machine a cgroup in too, e.g. ['systemd'] (name=systemd) for a
   * container whose systemd expects its own cgroup there on a legacy/hybrid host (`-b`).
   */
  namedHierarchies?: readonly string[];
  /** what percentages resolve against (default: readHostFacts()) */
  facts?: HostFacts;
}

/** What the registry keeps so that another process (machinectl-ts) can open the machine's cgroup. */
export interface MachineCgroupState {
  name: string;
  dirs: CgroupDir[];
  /** the nspawn-ts/ directories the machine's cgroups are in (removed when they are left empty) */
  parents: string[];
  /** the effective properties, as "NAME=VALUE" lines */
  properties: string[];
}

export interface CgroupUsage {
  /** memory.usage_in_bytes (v1) / memory.current (v2) */
  memoryBytes?: bigint;
  /** memory.max_usage_in_bytes (v1) / memory.peak (v2) */
  memoryPeakBytes?: bigint;
  /** the memory limit in force (undefined: none) */
  memoryLimitBytes?: bigint;
  /** OOM kills in this cgroup (v1 memory.oom_control oom_kill / v2 memory.events oom_kill) */
  oomKills?: number;
  /** CPU time used: cpuacct.usage (v1) / cpu.stat usage_usec × 1000 (v2) */
  cpuNs?: bigint;
  /** times the quota stopped the group (cpu.stat nr_throttled) */
  cpuThrottled?: number;
  /** pids.current */
  tasks?: number;
  /** pids.max (undefined: none) */
  tasksMax?: number;
  /** processes in the cgroup (cgroup.procs) */
  processes: number;
}

const MACHINE_PREFIX = 'machine-';
const SUBTREE = 'nspawn-ts';

function checkMachineName(name: string): void {
  if (!name || name.length > 255 || name.includes('/') || name.includes('\0') || name === '.' || name === '..') {
    throw new ConfigError(`machine name '${name}' cannot name a cgroup (1–255 characters, no '/')`, { code: 'CFG_MACHINE_NAME' });
  }
}

/** A machine's cgroups, created by `create` (launcher) or reopened by `open` (machinectl). */
export class MachineCgroup {
  readonly name: string;
  readonly dirs: readonly CgroupDir[];
  private readonly parents: readonly string[];
  private readonly layout: CgroupLayout;
  private readonly facts: HostFacts;
  private props: ResourceProperties;

  private constructor(name: string, dirs: CgroupDir[], parents: string[], layout: CgroupLayout, facts: HostFacts, props: ResourceProperties) {
    this.name = name;
    this.dirs = dirs;
    this.parents = parents;
    this.layout = layout;
    this.facts = facts;
    this.props = props;
  }

  /**
   * Creates the machine's cgroup in every hierarchy that carries memory, cpu, cpuacct or pids, plus
   * the cgroup2 (process tracking, cgroup.kill), and applies `props`. Refuses properties the host
   * cannot enforce before touching anything; a failure halfway removes what was made.
   */
  static create(name: string, props: ResourceProperties = {}, opts: CgroupOptions = {}): MachineCgroup {
    checkMachineName(name);
    const layout = opts.layout ?? detectLayout();
    const facts = opts.facts ?? readHostFacts();
    const limits = resolveProperties(props, facts);
    checkSupported(layout, limits);
    if (layout.mode === 'none') {
      throw new CgroupError('CGROUP_UNAVAILABLE', 'no cgroup hierarchy is mounted (or visible) on this host', '/proc/self/mountinfo');
    }

    // the hierarchies we use: every v1 one with one of our controllers, and the cgroup2
    const used: Hierarchy[] = [];
    for (const h of layout.hierarchies) {
      if (h.version === 2 || h.controllers.some((c) => (CONTROLLERS as readonly string[]).includes(c))) used.push(h);
      else if (h.name !== undefined && opts.namedHierarchies?.includes(h.name)) used.push(h);
    }
    for (const n of opts.namedHierarchies ?? []) {
      if (!layout.hierarchies.some((h) => h.name === n)) {
        throw new CgroupError('CGROUP_UNAVAILABLE', `no cgroup v1 hierarchy name=${n} is mounted`, '/proc/self/mountinfo');
      }
    }
    const v2Controllers = CONTROLLERS.filter((c) => layout.controllers[c]?.version === 2);

    const created: string[] = [];
    const parents: string[] = [];
    const dirs: CgroupDir[] = [];
    try {
      for (const h of used) {
        const basePath = opts.placement === 'root' ? h.mountRoot : h.ownPath;
        const base = basePath === undefined ? undefined : cgroupFsPath(h, basePath);
        if (base === undefined) {
          throw new CgroupError('CGROUP_UNAVAILABLE',
            `this process's cgroup in the ${h.version === 2 ? 'cgroup2' : h.controllers.join(',')} hierarchy (${basePath ?? 'not listed in /proc/self/cgroup'}) ` +
            `is not reachable below its mount at ${h.mountPoint}`, h.mountPoint);
        }
        const subtree = join(base, SUBTREE);
        const dir = join(subtree, MACHINE_PREFIX + name);
        if (h.version === 2) enableSubtree(base, v2Controllers, created);
        for (let attempt = 0; ; attempt++) {
          mkdirIfMissing(subtree, created);
          if (h.version === 2) enableSubtree(subtree, v2Controllers, created);
          try {
            mkdirIfMissing(dir, created);
            break;
          } catch (err) {
            // another launcher removed the empty nspawn-ts/ between our two mkdirs
            if (!(err instanceof CgroupError) || err.errnoCode !== 'ENOENT' || attempt >= 3) throw err;
          }
        }
        parents.push(subtree);
        if (!created.includes(dir)) {
          const pids = readPids(dir);
          if (pids.length > 0) {
            throw new CgroupError('CGROUP_EXISTS', `machine '${name}' already has a cgroup with processes (${pids.slice(0, 5).join(' ')}): ${dir}; is it running?`, dir);
          }
          log.debug('reusing a leftover empty cgroup', { dir });
          created.push(dir); // ours now: removed with the machine
        }
        dirs.push({
          version: h.version, controllers: h.version === 2 ? v2Controllers : h.controllers, path: dir,
          ...(h.name !== undefined ? { name: h.name } : {}),
        });
      }
      applyLimits(dirs, layout, limits, {});
    } catch (err) {
      for (const d of [...created].reverse()) {
        try {
          rmdirSync(d);
        } catch {
          // left for the error message's reader; nothing in it
        }
      }
      throw err;
    }
    log.debug('machine cgroup created', { machine: name, dirs: dirs.map((d) => d.path) });
    return new MachineCgroup(name, dirs, parents, layout, facts, props);
  }

  /** Reopens a machine's cgroup from the registry's record (machinectl-ts status/set-property/poweroff). */
  static open(state: MachineCgroupState, opts: Omit<CgroupOptions, 'placement'> = {}): MachineCgroup {
    checkMachineName(state.name);
    const layout = opts.layout ?? detectLayout();
    const facts = opts.facts ?? readHostFacts();
    for (const d of state.dirs) {
      try {
        statSync(d.path);
      } catch (err) {
        throw CgroupError.io(`machine '${state.name}': cgroup missing:`, d.path, err);
      }
    }
    return new MachineCgroup(state.name, state.dirs.map((d) => ({ ...d })), [...state.parents], layout, facts,
      parseProperties(state.properties, 'machine record'));
  }

  toJSON(): MachineCgroupState {
    return { name: this.name, dirs: this.dirs.map((d) => ({ ...d })), parents: [...this.parents], properties: formatProperties(this.props) };
  }

  /** The effective properties. */
  get properties(): ResourceProperties {
    return { ...this.props };
  }

  /** Moves `pid` (a whole process) into the machine's cgroup in every hierarchy. */
  attach(pid: number): void {
    checkPid(pid);
    for (const f of this.procsFiles()) writeAttr(f, String(pid), `attach process ${pid}`);
  }

  /** The cgroup.procs file of each of the machine's cgroups (what attach() writes). */
  procsFiles(): string[] {
    return this.dirs.map((d) => join(d.path, 'cgroup.procs'));
  }

  /**
   * Changes limits on the running machine (set-property): `props` on top of the current ones. The
   * refused-before-changed rule holds: an unsupported property changes nothing.
   */
  update(props: ResourceProperties): void {
    const merged = mergeProperties(this.props, props);
    const all = resolveProperties(merged, this.facts);
    checkSupported(this.layout, all);
    const changed = resolveProperties(props, this.facts);
    // CPUQuota and CPUQuotaPeriodSec are written together: a change of one recomputes both
    if (changed.cpu) changed.cpu = all.cpu;
    if (props.MemorySwapMax || props.MemoryMax) {
      changed.memoryMax = all.memoryMax;
      changed.memorySwapMax = all.memorySwapMax;
    }
    applyLimits(this.dirs, this.layout, changed, resolveProperties(this.props, this.facts));
    this.props = merged;
  }

  /**
   * Delegates the machine's cgroups to the container's root user (`-U`), as systemd does for
   * Delegate=yes: the directories and, in them, cgroup.procs, cgroup.threads, cgroup.subtree_control
   * (v2) or tasks/cgroup.procs (v1) change owner, so the container can make and manage sub-cgroups.
   */
  delegate(uid: number, gid: number): void {
    for (const d of this.dirs) {
      const files = d.version === 2 ? ['cgroup.procs', 'cgroup.threads', 'cgroup.subtree_control'] : ['cgroup.procs', 'tasks'];
      for (const p of [d.path, ...files.map((f) => join(d.path, f))]) {
        try {
          chownSync(p, uid, gid);
        } catch (err) {
          if (p !== d.path && errCode(err) === 'ENOENT') continue;
          throw CgroupError.io(`chown ${uid}:${gid}`, p, err);
        }
      }
    }
  }

  /** Process IDs in the machine's cgroup (the union over hierarchies). */
  processes(): number[] {
    const all = new Set<number>();
    for (const d of this.dirs) {
      for (const dir of [d.path, ...subCgroups(d.path)]) for (const p of readPids(dir)) all.add(p);
    }
    return [...all].sort((a, b) => a - b);
  }

  /** Current usage for `machinectl-ts status`. Missing files leave fields undefined. */
  usage(): CgroupUsage {
    const out: CgroupUsage = { processes: this.processes().length };
    const dirOf = (c: Controller): CgroupDir | undefined => {
      const h = this.layout.controllers[c];
      return h ? this.dirs.find((d) => d.version === h.version && (h.version === 2 || d.controllers.includes(c))) : undefined;
    };
    const mem = dirOf('memory');
    if (mem?.version === 1) {
      const cur = readBig(join(mem.path, 'memory.usage_in_bytes'));
      if (cur !== undefined) out.memoryBytes = cur;
      const peak = readBig(join(mem.path, 'memory.max_usage_in_bytes'));
      if (peak !== undefined) out.memoryPeakBytes = peak;
      const lim = readBig(join(mem.path, 'memory.limit_in_bytes'));
      // v1 reports "no limit" as PAGE_COUNTER_MAX × page size (9223372036854771712 on x86-64)
      if (lim !== undefined && lim < 1n << 62n) out.memoryLimitBytes = lim;
      const oom = readKeyed(join(mem.path, 'memory.oom_control')).get('oom_kill');
      if (oom !== undefined) out.oomKills = Number(oom);
    } else if (mem) {
      const cur = readBig(join(mem.path, 'memory.current'));
      if (cur !== undefined) out.memoryBytes = cur;
      const peak = readBig(join(mem.path, 'memory.peak'));
      if (peak !== undefined) out.memoryPeakBytes = peak;
      const lim = readBig(join(mem.path, 'memory.max'));
      if (lim !== undefined) out.memoryLimitBytes = lim;
      const oom = readKeyed(join(mem.path, 'memory.events')).get('oom_kill');
      if (oom !== undefined) out.oomKills = Number(oom);
    }
    const acct = dirOf('cpuacct');
    const v2 = this.dirs.find((d) => d.version === 2);
    if (acct) {
      const ns = readBig(join(acct.path, 'cpuacct.usage'));
      if (ns !== undefined) out.cpuNs = ns;
    } else if (v2) {
      const usec = readKeyed(join(v2.path, 'cpu.stat')).get('usage_usec');
      if (usec !== undefined) out.cpuNs = usec * 1000n;
    }
    const cpu = dirOf('cpu');
    if (cpu) {
      const thr = readKeyed(join(cpu.path, 'cpu.stat')).get('nr_throttled');
      if (thr !== undefined) out.cpuThrottled = Number(thr);
    }
    const pids = dirOf('pids');
    if (pids) {
      const cur = readBig(join(pids.path, 'pids.current'));
      if (cur !== undefined) out.tasks = Number(cur);
      const max = readBig(join(pids.path, 'pids.max'));
      if (max !== undefined) out.tasksMax = Number(max);
    }
    return out;
  }

  /** SIGKILLs every process in the machine's cgroups (cgroup.kill where the kernel has it). */
  kill(): void {
    const v2 = this.dirs.find((d) => d.version === 2);
    if (v2 && readAttr(join(v2.path, 'cgroup.events')) !== undefined) {
      try {
        writeAttr(join(v2.path, 'cgroup.kill'), '1');
        return;
      } catch (err) {
        if (!(err instanceof CgroupError) || err.errnoCode !== 'ENOENT') throw err; // before Linux 5.14: no cgroup.kill
      }
    }
    for (const pid of this.processes()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch (err) {
        if (errCode(err) !== 'ESRCH') throw new CgroupError('CGROUP_IO', `kill ${pid}: ${errCode(err) ?? String(err)}`, String(pid), { cause: err });
      }
    }
  }

  /**
   * Removes the machine's cgroups in every hierarchy, sub-cgroups first, then our empty parents.
   * With `kill` (default) remaining processes are SIGKILLed (repeatedly: forks race) until the
   * cgroups are empty or `timeoutMs` passes; without it, processes left → CGROUP_BUSY, nothing removed.
   */
  async remove(opts: { kill?: boolean; timeoutMs?: number } = {}): Promise<void> {
    const kill = opts.kill ?? true;
    const deadline = Date.now() + (opts.timeoutMs ?? 5_000);
    let left = this.processes();
    if (left.length > 0 && !kill) {
      throw new CgroupError('CGROUP_BUSY', `machine '${this.name}' still has processes (${left.slice(0, 10).join(' ')}); stop them or remove with kill`,
        this.dirs[0]?.path ?? '');
    }
    while (left.length > 0) {
      this.kill();
      await new Promise((r) => setTimeout(r, 20)); // lets the event loop reap our own children
      left = this.processes();
      if (left.length > 0 && Date.now() > deadline) {
        throw new CgroupError('CGROUP_BUSY', `machine '${this.name}': processes ${left.slice(0, 10).join(' ')} survived SIGKILL for ${opts.timeoutMs ?? 5_000} ms`,
          this.dirs[0]?.path ?? '');
      }
    }
    const errors: unknown[] = [];
    for (const d of this.dirs) {
      for (const dir of [...subCgroups(d.path), d.path]) {
        for (;;) {
          try {
            rmdirSync(dir);
            break;
          } catch (err) {
            const c = errCode(err);
            if (c === 'ENOENT') break;
            // an exiting process can keep a v1 cgroup busy for a moment after cgroup.procs is empty
            if (c === 'EBUSY' && Date.now() < deadline) {
              await new Promise((r) => setTimeout(r, 10));
              continue;
            }
            errors.push(CgroupError.io('rmdir', dir, err));
            break;
          }
        }
      }
    }
    // nspawn-ts/ if no other machine is left in it (a supervisor leaf stays: we may live in it)
    for (const p of this.parents) {
      try {
        rmdirQuiet(p);
      } catch (err) {
        errors.push(err);
      }
    }
    if (errors.length > 0) throw new TeardownError(`removing the cgroups of machine '${this.name}'`, errors);
    log.debug('machine cgroup removed', { machine: this.name });
  }
}
