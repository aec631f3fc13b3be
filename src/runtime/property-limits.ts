// Resource-control properties resolved against the host: percentages of memory and tasks become
// numbers the way systemd's src/basic/limits-util.c makes them; the result is what cgroup-limits.ts
// writes.
import { readFileSync } from 'node:fs';
import { totalmem } from 'node:os';
import type { ByteLimit, ResourceProperties } from './properties.js';
import { DEFAULT_CPU_PERIOD_USEC, UINT64_MAX, USEC_PER_MSEC, USEC_PER_SEC } from './systemd-numbers.js';

/** What relative values are measured against (systemd: physical_memory(), system_tasks_max()). */
export interface HostFacts {
  /** bytes of RAM (systemd: min(physical pages × page size, the root cgroup's memory.max)) */
  physicalMemory: bigint;
  pageSize: number;
  /** min(kernel.threads-max, kernel.pid_max − 1, root pids.max) */
  tasksMax: bigint;
}

function readNumber(path: string): bigint | undefined {
  try {
    const t = readFileSync(path, 'utf8').trim();
    return /^[0-9]+$/.test(t) ? BigInt(t) : undefined;
  } catch {
    return undefined;
  }
}

/** The running host's facts, read from /proc (physical memory from the kernel's total RAM). */
export function readHostFacts(): HostFacts {
  const TASKS_MAX = 4_194_303n; // systemd's TASKS_MAX: the kernel's PID_MAX_LIMIT − 1
  const threads = readNumber('/proc/sys/kernel/threads-max') ?? TASKS_MAX;
  const pidMax = readNumber('/proc/sys/kernel/pid_max');
  const pidLimit = pidMax !== undefined && pidMax > 0n ? pidMax - 1n : TASKS_MAX;
  return {
    physicalMemory: BigInt(totalmem()),
    pageSize: 4096,
    tasksMax: threads < pidLimit ? threads : pidLimit,
  };
}

/** The kernel-level limits to write; `undefined` leaves a knob untouched, 'max' removes a limit. */
export interface ResolvedLimits {
  memoryMax?: bigint | 'max';
  memoryHigh?: bigint | 'max';
  memoryLow?: bigint;
  memorySwapMax?: bigint | 'max';
  /** cpu.max / cfs_quota_us+cfs_period_us: present when CPUQuota= or CPUQuotaPeriodSec= is set */
  cpu?: { quotaUsec: number | 'max'; periodUsec: number };
  /** cpu.weight (v2) or the matching cpu.shares (v1); 'idle' → cpu.idle=1 (v2), shares 2 (v1) */
  cpuWeight?: number | 'idle';
  tasksMax?: bigint | 'max';
}

/** physical_memory_scale(): RAM × permyriad / 10000, rounded down to whole pages. */
export function scaleMemory(permyriad: number, facts: HostFacts): bigint {
  if (permyriad === 0) return 0n;
  if (permyriad === 10_000) return facts.physicalMemory;
  const ps = BigInt(facts.pageSize);
  const pages = facts.physicalMemory / ps;
  const m = (pages * BigInt(permyriad)) / 10_000n;
  const r = m * ps;
  return r > UINT64_MAX ? UINT64_MAX : r;
}

/** system_tasks_max_scale(): the system task limit × permyriad / 10000. */
export function scaleTasks(permyriad: number, facts: HostFacts): bigint {
  if (permyriad === 0) return 0n;
  if (permyriad === 10_000) return facts.tasksMax;
  return (facts.tasksMax * BigInt(permyriad)) / 10_000n;
}

function resolveBytes(l: ByteLimit | undefined, facts: HostFacts): bigint | 'max' | undefined {
  if (!l) return undefined;
  if (l.kind === 'infinity') return 'max';
  if (l.kind === 'bytes') return l.bytes;
  return scaleMemory(l.permyriad, facts);
}

/**
 * systemd's cgroup_cpu_adjust_period(): a period long enough that the quota per period is at least
 * 1 ms (the kernel's resolution), at most 1 s. Only applied to the default period or when clamping.
 */
export function adjustCpuPeriod(periodUsec: number, quotaUsecPerSec: number): number {
  const resolution = USEC_PER_MSEC;
  const max = Math.max(periodUsec, resolution, Math.floor((resolution * USEC_PER_SEC) / quotaUsecPerSec));
  return Math.min(max, USEC_PER_SEC);
}

export function resolveProperties(props: ResourceProperties, facts: HostFacts): ResolvedLimits {
  const out: ResolvedLimits = {};
  const memoryMax = resolveBytes(props.MemoryMax, facts);
  if (memoryMax !== undefined) out.memoryMax = memoryMax;
  const memoryHigh = resolveBytes(props.MemoryHigh, facts);
  if (memoryHigh !== undefined) out.memoryHigh = memoryHigh;
  const memoryLow = resolveBytes(props.MemoryLow, facts);
  if (memoryLow !== undefined) out.memoryLow = memoryLow === 'max' ? UINT64_MAX : memoryLow;
  const swap = resolveBytes(props.MemorySwapMax, facts);
  if (swap !== undefined) out.memorySwapMax = swap;
  if (props.CPUQuota || props.CPUQuotaPeriodSec) {
    const quota = props.CPUQuota?.kind === 'quota' ? props.CPUQuota.usecPerSec : undefined;
    const requested = props.CPUQuotaPeriodSec?.kind === 'usec' ? props.CPUQuotaPeriodSec.usec : DEFAULT_CPU_PERIOD_USEC;
    if (quota === undefined) {
      out.cpu = { quotaUsec: 'max', periodUsec: DEFAULT_CPU_PERIOD_USEC };
    } else {
      const period = adjustCpuPeriod(requested, quota);
      out.cpu = { quotaUsec: Math.max(Math.floor((quota * period) / USEC_PER_SEC), USEC_PER_MSEC), periodUsec: period };
    }
  }
  if (props.CPUWeight) {
    out.cpuWeight = props.CPUWeight.kind === 'idle' ? 'idle' : props.CPUWeight.kind === 'weight' ? props.CPUWeight.weight : 100;
  }
  if (props.TasksMax) {
    const t = props.TasksMax;
    out.tasksMax = t.kind === 'infinity' ? 'max' : t.kind === 'count' ? t.count : scaleTasks(t.permyriad, facts);
  }
  return out;
}

/** cgroup v1 cpu.shares for a CPUWeight (systemd's cgroup_cpu_weight_to_shares). */
export function cpuWeightToShares(weight: number | 'idle'): number {
  if (weight === 'idle') return 2;
  return Math.min(Math.max(Math.floor((weight * 1024) / 100), 2), 262_144);
}
