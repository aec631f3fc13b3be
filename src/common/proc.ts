// Processes identified beyond their PID: a PID plus its start time (clock ticks since boot,
// /proc/PID/stat field 22) names one process for its whole life, so a reused PID never passes for
// a dead one. Shared by the machine registry, the ephemeral-layer sweep, the network subsystem's
// holders and the locks.
import { readFileSync } from 'node:fs';

/** A process identified beyond its PID: start time in clock ticks since boot (/proc/PID/stat #22). */
export interface ProcessRef {
  pid: number;
  startTime: string;
}

/** State and start time from the text of /proc/PID/stat (comm may hold spaces and parentheses). */
export function parseProcStat(text: string): { state: string; startTime: string } | undefined {
  const close = text.lastIndexOf(')');
  if (close < 0) return undefined;
  const fields = text.slice(close + 2).trim().split(' ');
  // fields[0] is field 3 (state); starttime is field 22
  const state = fields[0];
  const startTime = fields[19];
  if (state === undefined || startTime === undefined || !/^[0-9]+$/.test(startTime)) return undefined;
  return { state, startTime };
}

/** Start time of a running process (not a zombie), or undefined if it is gone. `proc`: the procfs mount. */
export function processStartTime(pid: number, proc = '/proc'): string | undefined {
  let text: string;
  try {
    text = readFileSync(`${proc}/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  const st = parseProcStat(text);
  if (!st || st.state === 'Z' || st.state === 'X') return undefined;
  return st.startTime;
}

/** Whether the process `ref` names still runs (same PID, same start time). */
export function processAlive(ref: ProcessRef, proc = '/proc'): boolean {
  return processStartTime(ref.pid, proc) === ref.startTime;
}
