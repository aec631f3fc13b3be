// Starting a process inside a running machine (shell, login): which namespaces to join (every one
// of the leader's that differs from ours, user first), which cgroups (the leader's), the root
// (/proc/LEADER/root), the user (from the container's own /etc/passwd and /etc/group), the
// capabilities (the leader's: bounding set, and for root its effective/permitted/inheritable sets)
// and no_new_privs — then native/src/enter.cc does it. Waiting happens through pidfds and
// FdWatcher, never blocking the event loop.
import { closeSync, constants as fsConstants, openSync, readlinkSync } from 'node:fs';
import { NspawnError } from '../errors.js';
import { logger } from '../log.js';
import { POLL_READABLE, sys, SysError, type EnterPlan } from '../native.js';
import { cgroupFsPath, detectLayout, parseProcCgroup, type CgroupLayout } from '../runtime/cgroups.js';
import { readFileInRoot, resolveInRoot } from '../runtime/images.js';
import type { ProcessRef } from '../runtime/registry.js';
import { openProcess } from './control.js';
import { Proc } from './procfs.js';

const log = logger('enter');

export class EnterError extends NspawnError {}

/** Namespaces in the order they are joined (the user namespace first: it owns the others). */
export const NAMESPACE_ORDER: ReadonlyArray<[string, number]> = [
  ['user', 0x10000000], ['mnt', 0x00020000], ['pid', 0x20000000], ['uts', 0x04000000], ['ipc', 0x08000000],
  ['net', 0x40000000], ['cgroup', 0x02000000], ['time', 0x00000080],
];

// ---------------------------------------------------------------------------------------------
// users

export interface UserEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
}

export interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

/** passwd(5) lines; malformed ones are skipped. */
export function parsePasswd(text: string): UserEntry[] {
  const out: UserEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length < 7 || !/^[0-9]+$/.test(f[2] ?? '') || !/^[0-9]+$/.test(f[3] ?? '')) continue;
    out.push({ name: f[0] as string, uid: Number(f[2]), gid: Number(f[3]), home: f[5] as string, shell: f[6] as string });
  }
  return out;
}

/** group(5) lines; malformed ones are skipped. */
export function parseGroup(text: string): GroupEntry[] {
  const out: GroupEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length < 4 || !/^[0-9]+$/.test(f[2] ?? '')) continue;
    out.push({ name: f[0] as string, gid: Number(f[2]), members: (f[3] as string).split(',').filter(Boolean) });
  }
  return out;
}

export interface ResolvedUser extends UserEntry {
  groups: number[];
}

/**
 * USER (a name or a number) as the machine knows it, from the files under `root`. Root works
 * without a passwd file (uid 0, /root, /bin/sh), as systemd's User=root does.
 */
export function resolveUser(root: string, spec: string | undefined, where: string): ResolvedUser {
  const wanted = spec ?? 'root';
  const users = parsePasswd(readFileInRoot(root, '/etc/passwd') ?? '');
  const numeric = /^[0-9]+$/.test(wanted) ? Number(wanted) : undefined;
  let u = users.find((e) => (numeric !== undefined ? e.uid === numeric : e.name === wanted));
  if (!u) {
    if (wanted === 'root' || numeric === 0) u = { name: 'root', uid: 0, gid: 0, home: '/root', shell: '/bin/sh' };
    else if (numeric !== undefined && numeric < 0xffffffff) u = { name: String(numeric), uid: numeric, gid: numeric, home: '/', shell: '/bin/sh' };
    else throw new EnterError('ENTER_NO_USER', `User '${wanted}' does not exist in ${where} (looked in its /etc/passwd)`);
  }
  const groups = parseGroup(readFileInRoot(root, '/etc/group') ?? '');
  const gids = new Set<number>([u.gid]);
  for (const g of groups) if (g.members.includes(u.name)) gids.add(g.gid);
  return { ...u, groups: [...gids] };
}

/** Where a command name is found: an absolute path as is, else each PATH directory inside `root`. */
export function commandCandidates(root: string, command: string, path: string): string[] {
  if (command.includes('/')) return [command];
  const dirs = path.split(':').filter((d) => d.startsWith('/'));
  const found = dirs.map((d) => `${d.replace(/\/+$/, '')}/${command}`).filter((p) => resolveInRoot(root, p) !== undefined);
  return found.length > 0 ? found : dirs.map((d) => `${d.replace(/\/+$/, '')}/${command}`);
}

// ---------------------------------------------------------------------------------------------
// spawning

const STEPS: Record<number, string> = {
  1: 'join the cgroups',
  2: 'join the namespace',
  3: 'fork into the PID namespace',
  4: 'change root to the root directory',
  5: 'allocate a pty (/dev/ptmx)',
  6: 'make the pty the controlling terminal',
  7: 'set the supplementary groups',
  8: 'change the group ID',
  9: 'drop capabilities from the bounding set',
  10: 'change the user ID',
  11: 'set capabilities',
  12: 'set no_new_privs',
  13: 'execute',
  14: 'keep standard input and output',
};

export interface EnterRequest {
  /** the machine's leader; undefined: the host itself (machine ".host") */
  leader?: ProcessRef;
  /** for messages: "machine 'foo'" */
  what: string;
  user: ResolvedUser;
  argv: string[];
  candidates: string[];
  env: string[];
  pty: boolean;
  proc?: Proc;
  layout?: CgroupLayout;
}

export interface Entered {
  pid: number;
  pidfd: number;
  /** the pty master (non-blocking is up to the caller) */
  master?: number;
  ptyNumber?: number;
}

function hexField(proc: Proc, pid: number, name: string): bigint | undefined {
  const v = proc.statusField(pid, name);
  return v !== undefined && /^[0-9a-fA-F]+$/.test(v) ? BigInt(`0x${v}`) : undefined;
}

/** The leader's cgroup.procs in every hierarchy we can see, opened for writing. */
function openLeaderCgroups(pid: number, proc: Proc, layout: CgroupLayout): number[] {
  const text = proc.read(pid, 'cgroup');
  if (text === undefined) return [];
  const entries = parseProcCgroup(text);
  const fds: number[] = [];
  for (const h of layout.hierarchies) {
    const e = h.version === 2
      ? entries.find((x) => x.id === 0)
      : entries.find((x) => x.id !== 0 && (h.name ? x.controllers.includes(`name=${h.name}`)
        : h.controllers.length > 0 && h.controllers.every((c) => x.controllers.includes(c))));
    if (!e) continue;
    const dir = cgroupFsPath(h, e.path);
    if (dir === undefined) continue;
    try {
      fds.push(openSync(`${dir}/cgroup.procs`, fsConstants.O_WRONLY));
    } catch (err) {
      log.debug('not joining a cgroup of the leader', { dir, error: (err as Error).message });
    }
  }
  return fds;
}

/**
 * Starts `argv` inside the machine (or on the host for `.host`). Resolves once the command runs
 * (end-of-file on the channel after exec); rejects with what failed, at which step, with errno.
 */
export async function enter(req: EnterRequest): Promise<Entered> {
  const s = sys();
  const proc = req.proc ?? new Proc();
  const opened: number[] = [];
  const plan: EnterPlan = {
    namespaces: [], uid: req.user.uid, gid: req.user.gid, groups: req.user.groups, cwd: req.user.home,
    candidates: req.candidates, argv: req.argv, envp: req.env, pty: req.pty, ptmx: '/dev/ptmx',
  };
  let leaderFd: number | undefined;
  const joined: string[] = [];
  try {
    if (req.leader) {
      const leader = req.leader;
      // the pidfd pins the leader: /proc/PID below is the recorded process while we hold it
      leaderFd = openProcess(leader, proc);
      if (leaderFd === undefined) throw new EnterError('MACHINE_GONE', `${req.what} ended meanwhile`);
      const namespaces: Array<{ fd: number; nstype: number }> = [];
      joined.length = 0;
      for (const [kind, nstype] of NAMESPACE_ORDER) {
        const theirs = proc.namespace(leader.pid, kind);
        if (theirs === undefined) continue;
        let ours: string | undefined;
        try {
          ours = readlinkSync(`/proc/self/ns/${kind}`);
        } catch { /* kernel without it */ }
        if (theirs === ours) continue; // setns() into our own user namespace is EINVAL; the others are no-ops
        const fd = s.openNamespace(`${proc.root}/${leader.pid}/ns/${kind}`);
        opened.push(fd);
        namespaces.push({ fd, nstype });
        joined.push(kind);
      }
      plan.namespaces = namespaces;
      const root = openSync(`${proc.root}/${leader.pid}/root`, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY);
      opened.push(root);
      plan.rootFd = root;
      const cg = openLeaderCgroups(leader.pid, proc, req.layout ?? detectLayout());
      opened.push(...cg);
      plan.cgroupFds = cg;
      // the container's privileges, not ours
      const bnd = hexField(proc, leader.pid, 'CapBnd');
      if (bnd !== undefined) plan.boundingKeep = bnd;
      if (req.user.uid === 0) {
        const eff = hexField(proc, leader.pid, 'CapEff');
        const prm = hexField(proc, leader.pid, 'CapPrm');
        const inh = hexField(proc, leader.pid, 'CapInh');
        if (eff !== undefined && prm !== undefined && inh !== undefined) plan.caps = { effective: eff, permitted: prm, inheritable: inh };
      }
      plan.noNewPrivs = proc.statusField(leader.pid, 'NoNewPrivs') === '1';
    }
    const child = s.enterSpawn(plan);
    for (const fd of opened.splice(0)) closeSync(fd);
    return await collect(child.pid, child.pidfd, child.channel, req, joined);
  } finally {
    for (const fd of opened) closeSync(fd);
    if (leaderFd !== undefined) s.close(leaderFd);
  }
}

/** Reads the channel until exec (end-of-file) or an error; reaps the intermediate child. */
function collect(outerPid: number, outerPidfd: number, channel: number, req: EnterRequest, joined: readonly string[]): Promise<Entered> {
  const s = sys();
  return new Promise((resolve, reject) => {
    let pid: number | undefined;
    let master: number | undefined;
    let ptyNumber: number | undefined;
    let failure: Error | undefined;
    let eof = false;
    let outerDone = false;
    const finish = (): void => {
      if (!eof || !outerDone) return;
      s.close(channel);
      s.close(outerPidfd);
      if (failure || pid === undefined) {
        if (master !== undefined) s.close(master);
        const err = failure ?? new EnterError('ENTER_FAILED', `could not start a process in ${req.what} (the helper process ended without a word)`);
        // the inner process reported its failure and exits: it is our child (CLONE_PARENT). Reap it
        // before we go on (and maybe exit): else the machine's PID 1 inherits a zombie
        let pidfd: number | undefined;
        try {
          if (pid !== undefined) pidfd = s.pidfdOpen(pid);
        } catch { /* already reaped */ }
        if (pidfd === undefined) reject(err);
        else void waitExit(pidfd).then(() => reject(err));
        return;
      }
      let pidfd: number;
      try {
        pidfd = s.pidfdOpen(pid);
      } catch (err) {
        if (master !== undefined) s.close(master);
        reject(err);
        return;
      }
      resolve({ pid, pidfd, ...(master !== undefined ? { master } : {}), ...(ptyNumber !== undefined ? { ptyNumber } : {}) });
    };
    const cw = new s.FdWatcher(channel, POLL_READABLE, () => {
      for (;;) {
        const m = s.channelRecv(channel);
        if (!m) return;
        if (m.kind === 3) pid = m.value;
        else if (m.kind === 4) {
          master = m.fd;
          ptyNumber = m.value;
        } else if (m.kind === 2) {
          const step = STEPS[m.op ?? 0] ?? `step ${m.op}`;
          const detail = m.op === 13 ? ` ${req.argv[0]}` : m.op === 2 ? ` (${joined[m.value ?? 0] ?? '?'} namespace)` : '';
          const code = m.code ?? `errno ${m.err}`;
          const hint = m.op === 13 && code === 'ENOENT' ? ` (not found; tried ${req.candidates.join(', ')})` : '';
          failure = new SysError(m.err ?? 0, code, 'enter', `Failed to ${step}${detail} in ${req.what}: ${code}${hint}`);
        } else if (m.kind === 0) {
          cw.stop();
          eof = true;
          finish();
          return;
        }
      }
    });
    const pw = new s.FdWatcher(outerPidfd, POLL_READABLE, () => {
      const st = s.waitPidfd(outerPidfd);
      if (!st) return;
      pw.stop();
      outerDone = true;
      if (st.code !== 0 && !failure && pid === undefined) {
        failure = new EnterError('ENTER_FAILED', `the helper process that enters ${req.what} (PID ${outerPid}) ended with ${st.signal !== null ? `signal ${st.signal}` : `status ${st.code}`}`);
      }
      finish();
    });
  });
}

/** Resolves with the exit status of an entered process (reaping it): code, or 128 + signal. */
export function waitExit(pidfd: number): Promise<{ code: number | null; signal: number | null }> {
  const s = sys();
  return new Promise((resolve) => {
    const check = (): boolean => {
      const st = s.waitPidfd(pidfd);
      if (!st) return false;
      w.stop();
      s.close(pidfd);
      resolve(st);
      return true;
    };
    const w = new s.FdWatcher(pidfd, POLL_READABLE, () => {
      check();
    });
  });
}
