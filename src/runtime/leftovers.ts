// What launchers killed with SIGKILL leave behind (they never run their teardown): their machine
// records, the machines' cgroup directories and their sd_notify sockets
// (<run dir>/notify/NAME.PID). Every launcher start clears them before it makes anything of its
// own, so they do not wait for the same name to start again — or stay forever.
//
// Only what is provably dead goes: a record whose leader and launcher are both gone (registry.ts:
// PID and start time), a cgroup of such a machine that holds no process (rmdir of a cgroup with
// processes or children in use fails, and it is left), a notify socket whose launcher PID is gone
// or is now a process that started after the socket was made (a reused PID).
import { readFileSync, readdirSync, rmdirSync, statSync, unlinkSync } from 'node:fs';
import { posix } from 'node:path';
import { errorMessage } from '../errors.js';
import { logger } from '../log.js';
import type { CgroupLayout } from './cgroups.js';
import { machineCgroupDir, removeCgroupTree } from './container-cgroup.js';
import { defaultRunDir, ProcFs, type MachineRecord, type MachineRegistry } from './registry.js';

const log = logger('leftovers');

/** /proc/PID/stat's start time is in USER_HZ ticks since boot; USER_HZ is 100 on every Linux ABI. */
const USER_HZ = 100;

function bootTimeMs(): number | undefined {
  const m = /^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'));
  return m ? Number(m[1]) * 1000 : undefined;
}

/** When process PID started (ms since the epoch), or undefined if there is no such process. */
export function processStartMs(pid: number, proc = new ProcFs()): number | undefined {
  const ref = proc.process(pid);
  const boot = bootTimeMs();
  if (!ref || boot === undefined) return undefined;
  return boot + (Number(ref.startTime) * 1000) / USER_HZ;
}

/**
 * Removes the notify sockets NAME.PID in `dir` whose launcher is gone: no process PID, or one that
 * started after the socket was made (more than a second of slack: btime is whole seconds).
 * Returns the names removed.
 */
export function sweepNotifySockets(dir = `${defaultRunDir()}/notify`): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const proc = new ProcFs();
  const out: string[] = [];
  for (const name of names) {
    const m = /\.(\d+)$/.exec(name);
    if (!m) continue;
    const path = `${dir}/${name}`;
    try {
      const st = statSync(path);
      if (!st.isSocket()) continue;
      const started = processStartMs(Number(m[1]), proc);
      if (started !== undefined && started <= st.mtimeMs + 1_000) continue;
      unlinkSync(path);
      out.push(name);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log.debug(`cannot clear the notify socket ${path}: ${errorMessage(err)}`);
    }
  }
  return out;
}

/** Removes a cgroup tree that holds no process; false when it is busy (or gone). */
function removeIdleCgroup(dir: string): boolean {
  try {
    statSync(dir);
  } catch {
    return false;
  }
  try {
    removeCgroupTree(dir);
  } catch (err) {
    // a process still in it (EBUSY): not ours to take
    log.debug(`left the cgroup ${dir}: ${errorMessage(err)}`);
    return false;
  }
  try {
    rmdirSync(posix.dirname(dir)); // nspawn-ts/, when no other machine is in it
  } catch { /* another machine is in it */ }
  return true;
}

/** The machines with a notify socket of a live launcher in `notifyDir` (run after sweepNotifySockets). */
function machinesWithLauncher(notifyDir: string): Set<string> {
  try {
    return new Set(readdirSync(notifyDir).map((n) => n.replace(/\.\d+$/, '')));
  } catch {
    return new Set();
  }
}

/**
 * Clears what dead launchers left: their records, their notify sockets, and the cgroups of the
 * machines they ran. A launcher makes its notify socket before its cgroups and removes it last,
 * so a killed one always leaves its socket: the names of the sockets swept (and of the dead
 * records) are the machines whose cgroups go — where the record says, and where this launcher
 * would put them — unless a live launcher runs that name now (a live record or notify socket),
 * or a process is still in them.
 */
export async function sweepDeadLaunchers(registry: MachineRegistry | null, layout: CgroupLayout, notifyDir = `${defaultRunDir()}/notify`): Promise<void> {
  let dead: MachineRecord[] = [];
  try {
    dead = await registry?.pruneDead() ?? [];
  } catch (err) {
    log.warn(`looking for machines of killed launchers failed: ${errorMessage(err)}`);
  }
  const sockets = sweepNotifySockets(notifyDir);
  if (sockets.length) log.debug('removed notify sockets of killed launchers', { sockets });
  if (layout.mode === 'none') return;
  const candidates = new Map<string, Set<string>>();
  const add = (name: string, dir: string | undefined): void => {
    if (dir !== undefined) candidates.set(name, (candidates.get(name) ?? new Set<string>()).add(dir));
  };
  for (const r of dead) for (const d of r.cgroup?.dirs ?? []) add(r.name, d.path);
  for (const name of [...dead.map((r) => r.name), ...sockets.map((n) => n.replace(/\.\d+$/, ''))]) {
    for (const h of layout.hierarchies) add(name, machineCgroupDir(h, name));
  }
  for (const [name, dirs] of candidates) {
    // checked right before the removal: a launcher starting meanwhile made its socket first
    if (machinesWithLauncher(notifyDir).has(name)) continue;
    if (registry?.get(name) !== undefined) continue;
    const removed = [...dirs].filter(removeIdleCgroup);
    if (removed.length) log.debug(`removed the cgroups of machine ${name}: its launcher is gone`, { machine: name, cgroups: removed });
  }
}
