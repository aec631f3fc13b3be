// The resource limits of a machine's cgroups (MemoryMax=, CPUQuota=, TasksMax=… resolved by
// properties.ts): which controllers they need, what a layout cannot do, and writing them on cgroup
// v1 or v2 (the v1 mapping is described in cgroups.ts).
import { join } from 'node:path';
import { ConfigError } from '../errors.js';
import type { CgroupDir, CgroupLayout, Controller } from './cgroup-layout.js';
import { readAttr, readBig, writeAttr } from './cgroup-files.js';
import { cpuWeightToShares, type ResolvedLimits } from './properties.js';

/** Which properties need which controller, for a clear error when one is missing. */
export function neededControllers(limits: ResolvedLimits): Map<Controller, string[]> {
  const need = new Map<Controller, string[]>();
  const add = (c: Controller, p: string): void => {
    need.set(c, [...(need.get(c) ?? []), p]);
  };
  if (limits.memoryMax !== undefined) add('memory', 'MemoryMax');
  if (limits.memoryHigh !== undefined) add('memory', 'MemoryHigh');
  if (limits.memoryLow !== undefined) add('memory', 'MemoryLow');
  if (limits.memorySwapMax !== undefined) add('memory', 'MemorySwapMax');
  if (limits.cpu !== undefined) add('cpu', 'CPUQuota');
  if (limits.cpuWeight !== undefined) add('cpu', 'CPUWeight');
  if (limits.tasksMax !== undefined) add('pids', 'TasksMax');
  return need;
}

/** Refuses what this layout cannot do, before anything is changed. */
export function checkSupported(layout: CgroupLayout, limits: ResolvedLimits): void {
  for (const [c, props] of neededControllers(limits)) {
    if (!layout.controllers[c]) {
      throw new ConfigError(`${props.join('=, ')}= need the ${c} controller, which this host does not offer ` +
        `(no cgroup v1 ${c} hierarchy is mounted and cgroup v2 does not list it in cgroup.controllers)`,
      { code: 'CFG_PROPERTY_UNSUPPORTED_HERE' });
    }
  }
  if (limits.memoryLow !== undefined && layout.controllers.memory?.version === 1) {
    throw new ConfigError('MemoryLow= needs the cgroup v2 memory controller; on this host memory is a cgroup v1 controller, which has no protection threshold',
      { code: 'CFG_PROPERTY_UNSUPPORTED_HERE' });
  }
  if (limits.memorySwapMax !== undefined && limits.memorySwapMax !== 'max' && layout.controllers.memory?.version === 1 && limits.memoryMax === undefined) {
    throw new ConfigError('MemorySwapMax= on cgroup v1 needs MemoryMax= too (v1 limits memory and swap together: memsw = MemoryMax + MemorySwapMax)',
      { code: 'CFG_PROPERTY_UNSUPPORTED_HERE' });
  }
}

/** Writes the limits that are set in `limits` into the machine's directories. */
export function applyLimits(dirs: readonly CgroupDir[], layout: CgroupLayout, limits: ResolvedLimits, previous: ResolvedLimits): void {
  const dirFor = (c: Controller): CgroupDir | undefined => {
    const h = layout.controllers[c];
    if (!h) return undefined;
    return dirs.find((d) => d.version === h.version && (h.version === 2 || d.controllers.includes(c)));
  };
  const num = (v: bigint | 'max', v1: boolean): string => (v === 'max' ? (v1 ? '-1' : 'max') : v.toString());

  const mem = dirFor('memory');
  if (mem && mem.version === 1) {
    if (limits.memoryMax !== undefined || limits.memorySwapMax !== undefined) {
      const max = limits.memoryMax ?? previous.memoryMax ?? 'max';
      const swap = limits.memorySwapMax ?? previous.memorySwapMax ?? 0n;
      const memsw = max === 'max' || swap === 'max' ? 'max' : max + swap;
      const limitFile = join(mem.path, 'memory.limit_in_bytes');
      const memswFile = join(mem.path, 'memory.memsw.limit_in_bytes');
      const hasMemsw = readAttr(memswFile) !== undefined;
      // the kernel keeps limit ≤ memsw at every step: raise memsw first when growing, last when shrinking
      const cur = readBig(limitFile);
      const growing = max === 'max' || cur === undefined || max > cur;
      if (hasMemsw && growing) writeAttr(memswFile, num(memsw, true));
      writeAttr(limitFile, num(max, true), 'MemoryMax');
      if (hasMemsw && !growing) writeAttr(memswFile, num(memsw, true));
    }
    if (limits.memoryHigh !== undefined) writeAttr(join(mem.path, 'memory.soft_limit_in_bytes'), num(limits.memoryHigh, true), 'MemoryHigh');
  } else if (mem) {
    if (limits.memoryLow !== undefined) writeAttr(join(mem.path, 'memory.low'), limits.memoryLow.toString(), 'MemoryLow');
    if (limits.memoryHigh !== undefined) writeAttr(join(mem.path, 'memory.high'), num(limits.memoryHigh, false), 'MemoryHigh');
    if (limits.memoryMax !== undefined) writeAttr(join(mem.path, 'memory.max'), num(limits.memoryMax, false), 'MemoryMax');
    if (limits.memorySwapMax !== undefined) writeAttr(join(mem.path, 'memory.swap.max'), num(limits.memorySwapMax, false), 'MemorySwapMax');
  }

  const cpu = dirFor('cpu');
  if (cpu && cpu.version === 1) {
    if (limits.cpu) {
      // the quota is checked against the current period: clear it, set the period, then the quota
      writeAttr(join(cpu.path, 'cpu.cfs_quota_us'), '-1', 'CPUQuota');
      writeAttr(join(cpu.path, 'cpu.cfs_period_us'), String(limits.cpu.periodUsec), 'CPUQuotaPeriodSec');
      if (limits.cpu.quotaUsec !== 'max') writeAttr(join(cpu.path, 'cpu.cfs_quota_us'), String(limits.cpu.quotaUsec), 'CPUQuota');
    }
    if (limits.cpuWeight !== undefined) writeAttr(join(cpu.path, 'cpu.shares'), String(cpuWeightToShares(limits.cpuWeight)), 'CPUWeight');
  } else if (cpu) {
    if (limits.cpu) writeAttr(join(cpu.path, 'cpu.max'), `${limits.cpu.quotaUsec} ${limits.cpu.periodUsec}`, 'CPUQuota');
    if (limits.cpuWeight !== undefined) {
      const idle = limits.cpuWeight === 'idle';
      if (idle || readAttr(join(cpu.path, 'cpu.idle')) !== undefined) writeAttr(join(cpu.path, 'cpu.idle'), idle ? '1' : '0', 'CPUWeight');
      if (!idle) writeAttr(join(cpu.path, 'cpu.weight'), String(limits.cpuWeight), 'CPUWeight');
    }
  }

  const pids = dirFor('pids');
  if (pids && limits.tasksMax !== undefined) {
    writeAttr(join(pids.path, 'pids.max'), limits.tasksMax === 'max' ? 'max' : limits.tasksMax.toString(), 'TasksMax');
  }
}
