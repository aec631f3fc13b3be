// Signals to machines, as systemd-machined sends them (src/machine/machine.c, machinectl.c):
//   poweroff   SIGRTMIN+4 to the leader (systemd's "halt and power off")
//   reboot     SIGINT to the leader (systemd's and sysvinit's ctrl-alt-del)
//   kill       --signal= (SIGTERM) to every process of the machine, or with --kill-whom=leader to
//              the leader only
//   terminate  stops the machine's unit; here: SIGKILL to the leader and SIGTERM to the nspawn-ts
//              launcher, which removes what it set up (SIGKILL to it too if it has not ended in time).
//
// One deviation, for containers machined never sees: busybox init (a common -b init in small
// containers) powers off on SIGUSR2 and reboots on SIGTERM, so those are sent to it instead. And
// because a container's PID 1 only receives the signals it handles (or blocks), a poweroff or
// reboot that its init would silently drop is refused with an error naming the PID 1, rather than
// reported as done.
//
// Processes are addressed through pidfds opened and then checked against the PID's start time,
// so a PID that was reused meanwhile is never signalled.
import { basename } from 'node:path';
import { readlinkSync } from 'node:fs';
import { NspawnError } from '../errors.js';
import { POLL_READABLE, sys, SysError } from '../native.js';
import { signalName } from '../runtime/signals.js';
import { HintedConfigError, machineNameProblem, MACHINE_NAME_RULES } from '../runtime/machine-name.js';
import type { MachineRecord, MachineRegistry, ProcessRef } from '../runtime/registry.js';
import { maskHas, Proc } from './procfs.js';

export class MachineError extends NspawnError {}

const SIGINT = 2;
const SIGKILL = 9;
const SIGUSR2 = 12;
const SIGTERM = 15;
const SIGRTMIN_4 = 38;

/** Checks NAME as systemd does and finds its running machine; clear errors otherwise. */
export function lookupMachine(registry: MachineRegistry, name: string): MachineRecord {
  const problem = machineNameProblem(name);
  if (problem !== undefined) throw new HintedConfigError(`Invalid machine name: ${name}`, `${problem}; ${MACHINE_NAME_RULES}`, 'CFG_MACHINE_NAME');
  const r = registry.get(name);
  if (!r) {
    throw new MachineError('MACHINE_NOT_FOUND', `No machine '${name}' known`);
  }
  return r;
}

/** A pidfd for a recorded process, or undefined if it is gone (or its PID now names another). */
export function openProcess(ref: ProcessRef, proc = new Proc()): number | undefined {
  let fd: number;
  try {
    fd = sys().pidfdOpen(ref.pid);
  } catch (err) {
    if (err instanceof SysError && err.code === 'ESRCH') return undefined;
    throw err;
  }
  // the pidfd pins the process it was opened for: if that one started when recorded, it is ours
  if (proc.startTime(ref.pid) !== ref.startTime) {
    sys().close(fd);
    return undefined;
  }
  return fd;
}

/** Sends `signal` to a recorded process; false if it is gone. */
export function signalProcess(ref: ProcessRef, signal: number, proc = new Proc()): boolean {
  const fd = openProcess(ref, proc);
  if (fd === undefined) return false;
  try {
    sys().pidfdSendSignal(fd, signal);
    return true;
  } catch (err) {
    if (err instanceof SysError && err.code === 'ESRCH') return false;
    throw err;
  } finally {
    sys().close(fd);
  }
}

export type ShutdownAction = 'poweroff' | 'reboot';

export interface LeaderFacts {
  pid: number;
  comm: string;
  /** SigCgt | SigBlk: what reaches a PID 1 from outside its namespace */
  deliverable: bigint;
  /**
   * Waiting in rt_sigtimedwait() (busybox init, our stub init): the signals it waits for are
   * unblocked meanwhile and /proc cannot tell which they are, so any may be taken.
   */
  sigwait: boolean;
  busyboxInit: boolean;
}

/** rt_sigtimedwait's number where we know it. */
const SIGTIMEDWAIT: Partial<Record<string, number>> = { x64: 128, arm64: 137 };

/** The signal that makes this leader power off / reboot, or why there is none. */
export function shutdownSignal(action: ShutdownAction, leader: LeaderFacts): { signal: number } | { error: string } {
  const can = (n: number): boolean => leader.sigwait || maskHas(leader.deliverable, n);
  const machined = action === 'poweroff' ? SIGRTMIN_4 : SIGINT;
  if (leader.busyboxInit) {
    const bb = action === 'poweroff' ? SIGUSR2 : SIGTERM;
    if (can(bb)) return { signal: bb };
  }
  if (can(machined)) return { signal: machined };
  return {
    error: `its PID 1 (${leader.comm}, PID ${leader.pid}) does not handle ${signalName(machined)}, the signal machinectl uses to ` +
      `${action === 'poweroff' ? 'power off' : 'reboot'} a container, so nothing would happen; nothing was sent`,
  };
}

export function leaderFacts(pid: number, proc = new Proc()): LeaderFacts | undefined {
  const masks = proc.signalMasks(pid);
  if (!masks) return undefined;
  const comm = proc.comm(pid) ?? '?';
  let exe = '';
  try {
    exe = basename(readlinkSync(`${proc.root}/${pid}/exe`));
  } catch { /* a kernel thread or gone */ }
  const waitNr = SIGTIMEDWAIT[process.arch];
  const sigwait = waitNr !== undefined && proc.syscall(pid) === waitNr;
  return { pid, comm, deliverable: masks.caught | masks.blocked, sigwait, busyboxInit: exe.startsWith('busybox') && comm === 'init' };
}

function requireLeader(r: MachineRecord): ProcessRef {
  if (!r.leader) throw new MachineError('MACHINE_STARTING', `Machine '${r.name}' has no leader yet (it is starting); try again in a moment`);
  return r.leader;
}

/** poweroff/reboot: the init's signal to the leader. Returns the signal sent. */
export function shutdown(r: MachineRecord, action: ShutdownAction, proc = new Proc()): number {
  const leader = requireLeader(r);
  const facts = leaderFacts(leader.pid, proc);
  if (!facts) throw new MachineError('MACHINE_GONE', `Machine '${r.name}' ended meanwhile`);
  const choice = shutdownSignal(action, facts);
  if ('error' in choice) {
    throw new MachineError('MACHINE_SIGNAL_IGNORED', `Cannot ${action === 'poweroff' ? 'power off' : 'reboot'} machine '${r.name}': ${choice.error}. ` +
      `Use 'machinectl-ts terminate ${r.name}' to stop it, or 'machinectl-ts kill ${r.name} --signal=…'.`);
  }
  if (!signalProcess(leader, choice.signal, proc)) throw new MachineError('MACHINE_GONE', `Machine '${r.name}' ended meanwhile`);
  return choice.signal;
}

/** kill: `signal` to the leader, or to every process in the machine's PID namespace. Returns how many got it. */
export function killMachine(r: MachineRecord, whom: 'leader' | 'all', signal: number, proc = new Proc()): number {
  const leader = requireLeader(r);
  if (whom === 'leader') {
    if (!signalProcess(leader, signal, proc)) throw new MachineError('MACHINE_GONE', `Machine '${r.name}' ended meanwhile`);
    return 1;
  }
  const fd = openProcess(leader, proc);
  if (fd === undefined) throw new MachineError('MACHINE_GONE', `Machine '${r.name}' ended meanwhile`);
  let sent = 0;
  try {
    // the leader's pidfd keeps its PID namespace (and so the membership test) stable meanwhile
    for (const pid of proc.namespaceMembers(leader.pid)) {
      const start = proc.startTime(pid);
      if (start === undefined) continue;
      if (signalProcess({ pid, startTime: start }, signal, proc)) sent++;
    }
  } finally {
    sys().close(fd);
  }
  return sent;
}

/** Resolves once every process has exited (true), or after timeoutMs (false). */
export function waitForExit(refs: readonly ProcessRef[], timeoutMs: number, proc = new Proc()): Promise<boolean> {
  const s = sys();
  const fds: number[] = [];
  for (const ref of refs) {
    const fd = openProcess(ref, proc);
    if (fd !== undefined) fds.push(fd);
  }
  if (fds.length === 0) return Promise.resolve(true);
  return new Promise((resolve) => {
    let left = fds.length;
    const watchers: Array<{ stop(): void }> = [];
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      for (const w of watchers) w.stop();
      for (const fd of fds) s.close(fd);
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    for (const fd of fds) {
      // a pidfd turns readable when its process exits (even one that is not our child)
      const w = new s.FdWatcher(fd, POLL_READABLE, () => {
        w.stop();
        if (--left === 0) done(true);
      });
      watchers.push(w);
    }
  });
}

export interface TerminateResult {
  /** it ended after SIGTERM to its launcher */
  graceful: boolean;
  /** SIGKILL was needed */
  killed: boolean;
  /** what the launcher was doing when it was killed (its state and kernel wait channel) */
  stuck?: string;
}

/** "state S, waiting in do_wait": what /proc says a process is doing, for a message about it. */
function doing(ref: ProcessRef, proc: Proc): string | undefined {
  const stat = proc.read(ref.pid, 'stat');
  if (stat === undefined || proc.startTime(ref.pid) !== ref.startTime) return undefined;
  const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0] ?? '?';
  const wchan = proc.read(ref.pid, 'wchan')?.trim();
  return `state ${state}${wchan && wchan !== '0' ? `, waiting in ${wchan}` : ''}`;
}

/**
 * terminate: kill, not ask (poweroff asks). machined stops the machine's unit; systemd-nspawn
 * kills a container that has no kill signal at once on SIGTERM. Here: SIGKILL to the leader (the
 * whole PID namespace) and SIGTERM to the launcher, which then removes what it set up; SIGKILL to
 * the launcher too if it has not ended within `timeoutMs`. Without a launcher, the leader only.
 */
export async function terminate(r: MachineRecord, opts: { timeoutMs?: number; proc?: Proc } = {}): Promise<TerminateResult> {
  const proc = opts.proc ?? new Proc();
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const refs = [r.launcher, ...(r.leader ? [r.leader] : [])];
  if (r.leader) signalProcess(r.leader, SIGKILL, proc);
  // a launcher gone already (it ended with its container) needs no SIGTERM: the leader's end is waited for
  const asked = signalProcess(r.launcher, SIGTERM, proc);
  if (await waitForExit(refs, asked ? timeoutMs : 5_000, proc)) return { graceful: true, killed: false };
  const stuck = doing(r.launcher, proc);
  if (r.leader) signalProcess(r.leader, SIGKILL, proc);
  signalProcess(r.launcher, SIGKILL, proc);
  if (await waitForExit(refs, 5_000, proc)) return { graceful: false, killed: true, ...(stuck ? { stuck } : {}) };
  throw new MachineError('MACHINE_STUCK', `Machine '${r.name}' did not end even after SIGKILL (leader ${r.leader?.pid ?? '-'}, launcher ${r.launcher.pid})`);
}

export const SIGNALS = { SIGINT, SIGKILL, SIGUSR2, SIGTERM, SIGRTMIN_4 };
