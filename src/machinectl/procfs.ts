// What machinectl-ts reads of processes in /proc: a process's identity (PID + start time, as the
// registry records it), its name and command line, the signals it catches or blocks, its
// namespaces, its user-namespace mapping and its cgroups. `root` is "/proc" except in tests.
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { parseProcStat } from '../common/proc.js';

export interface ProcessInfo {
  pid: number;
  ppid: number;
  comm: string;
  /** argv joined by spaces; empty for kernel threads and zombies */
  cmdline: string;
}

export class Proc {
  constructor(readonly root = '/proc') {}

  read(pid: number, file: string): string | undefined {
    try {
      return readFileSync(`${this.root}/${pid}/${file}`, 'utf8');
    } catch {
      return undefined;
    }
  }

  startTime(pid: number): string | undefined {
    const t = this.read(pid, 'stat');
    const st = t === undefined ? undefined : parseProcStat(t);
    return st && st.state !== 'Z' && st.state !== 'X' ? st.startTime : undefined;
  }

  comm(pid: number): string | undefined {
    return this.read(pid, 'comm')?.replace(/\n$/, '');
  }

  info(pid: number): ProcessInfo | undefined {
    const stat = this.read(pid, 'stat');
    if (stat === undefined) return undefined;
    const open = stat.indexOf('(');
    const close = stat.lastIndexOf(')');
    if (open < 0 || close < 0) return undefined;
    const fields = stat.slice(close + 2).split(' ');
    const cmdline = (this.read(pid, 'cmdline') ?? '').replace(/\0+$/, '').split('\0').join(' ');
    return { pid, ppid: Number(fields[1]), comm: stat.slice(open + 1, close), cmdline };
  }

  /** readlink /proc/PID/ns/KIND ("pid:[4026531836]"), undefined if gone. */
  namespace(pid: number, kind: string): string | undefined {
    try {
      return readlinkSync(`${this.root}/${pid}/ns/${kind}`);
    } catch {
      return undefined;
    }
  }

  /** Every PID in /proc. */
  pids(): number[] {
    let entries: string[];
    try {
      entries = readdirSync(this.root);
    } catch {
      return [];
    }
    return entries.filter((e) => /^[0-9]+$/.test(e)).map(Number).sort((a, b) => a - b);
  }

  /** The processes in the same PID namespace as `leader` (the container's), leader included. */
  namespaceMembers(leader: number): number[] {
    const ns = this.namespace(leader, 'pid');
    if (ns === undefined) return [];
    return this.pids().filter((p) => p === leader || this.namespace(p, 'pid') === ns);
  }

  /** SigCgt | SigBlk of /proc/PID/status: the signals the process handles or holds blocked. */
  signalMasks(pid: number): { caught: bigint; blocked: bigint; ignored: bigint } | undefined {
    const status = this.read(pid, 'status');
    if (status === undefined) return undefined;
    const field = (name: string): bigint => {
      const m = new RegExp(`^${name}:\\s*([0-9a-fA-F]+)$`, 'm').exec(status);
      return m ? BigInt(`0x${m[1]}`) : 0n;
    };
    return { caught: field('SigCgt'), blocked: field('SigBlk'), ignored: field('SigIgn') };
  }

  /** The system call the process is blocked in (/proc/PID/syscall), undefined when running or unknown. */
  syscall(pid: number): number | undefined {
    const t = this.read(pid, 'syscall')?.trim();
    const nr = t?.split(' ')[0];
    return nr !== undefined && /^[0-9]+$/.test(nr) ? Number(nr) : undefined;
  }

  /** A field of /proc/PID/status ("CapBnd", "NoNewPrivs"), as text. */
  statusField(pid: number, name: string): string | undefined {
    const status = this.read(pid, 'status');
    const m = status === undefined ? null : new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(status);
    return m ? (m[1] as string).trim() : undefined;
  }

  /** The first line of uid_map: host UID that container UID 0 maps to, and the range. */
  uidShift(pid: number): { base: number; range: number } | undefined {
    const t = this.read(pid, 'uid_map');
    const first = t?.split('\n')[0]?.trim().split(/\s+/);
    if (!first || first.length < 3) return undefined;
    const [inside, outside, range] = first.map(Number);
    if (inside !== 0 || outside === undefined || range === undefined) return undefined;
    return { base: outside, range };
  }
}

/** Whether signal `n` (1-64) is in a /proc/PID/status mask. */
export function maskHas(mask: bigint, n: number): boolean {
  return ((mask >> BigInt(n - 1)) & 1n) === 1n;
}
