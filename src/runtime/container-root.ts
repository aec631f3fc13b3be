// Looking into a container's root directory from the host: paths resolved the way the container
// will see them (symlinks followed but never out of the root, like systemd's chase_symlinks with
// CHASE_PREFIX_ROOT), users and groups from its /etc/passwd and /etc/group, and which init a
// boot runs. Only reads; nothing here changes the root.
import { lstatSync, readlinkSync, statSync } from 'node:fs';
import { posix } from 'node:path';
import { ConfigError } from '../errors.js';
import { readBoundedText } from './bounded-read.js';

const MAX_SYMLINKS = 40;

/**
 * The host path of `path` inside `root`, following symlinks inside the root. Components that do
 * not exist are appended as they are (the caller may create them). Never returns a path outside root.
 */
export function resolveInRoot(root: string, path: string): string {
  const todo = path.split('/').filter((c) => c !== '' && c !== '.');
  const done: string[] = [];
  let hops = 0;
  while (todo.length > 0) {
    const c = todo.shift() as string;
    if (c === '..') {
      done.pop();
      continue;
    }
    const host = posix.join(root, ...done, c);
    let st;
    try {
      st = lstatSync(host);
    } catch {
      done.push(c, ...todo);
      break;
    }
    if (st.isSymbolicLink()) {
      if (++hops > MAX_SYMLINKS) throw new ConfigError(`too many levels of symbolic links resolving ${path} in ${root}`, { code: 'CFG_PATH' });
      const target = readlinkSync(host);
      if (target.startsWith('/')) done.length = 0;
      todo.unshift(...target.split('/').filter((x) => x !== '' && x !== '.'));
      continue;
    }
    done.push(c);
  }
  return posix.join(root, ...done);
}

export function existsInRoot(root: string, path: string): boolean {
  try {
    statSync(resolveInRoot(root, path));
    return true;
  } catch {
    return false;
  }
}

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
}

/** Lines of an image's file (passwd, group): a FIFO, device or huge file there reads as nothing (bounded-read.ts). */
function readLines(file: string): string[] {
  try {
    return (readBoundedText(file, { what: "the container's", maxBytes: 64 << 20 }) ?? '').split('\n').filter((l) => l && !l.startsWith('#'));
  } catch {
    return [];
  }
}

/**
 * `-u USER`: a name or numeric UID looked up in the container's /etc/passwd. A numeric UID
 * without an entry is used as it is, with GID = UID (as systemd-nspawn's get_user_creds fallback).
 */
export function lookupUser(root: string, user: string): PasswdEntry {
  const lines = readLines(resolveInRoot(root, '/etc/passwd'));
  const numeric = /^[0-9]+$/.test(user) ? Number(user) : undefined;
  for (const l of lines) {
    const f = l.split(':');
    if (f.length < 7) continue;
    const uid = Number(f[2]);
    if (f[0] === user || (numeric !== undefined && uid === numeric)) {
      return { name: f[0] as string, uid, gid: Number(f[3]), home: f[5] || '/', shell: f[6] || '/bin/sh' };
    }
  }
  if (numeric !== undefined && numeric < 0xffffffff) {
    return { name: user, uid: numeric, gid: numeric, home: '/', shell: '/bin/sh' };
  }
  throw new ConfigError(`user "${user}" does not exist in the container (no entry in ${posix.join(root, 'etc/passwd')})`, { code: 'CFG_USER' });
}

/** The groups of `user` (primary first, then those /etc/group lists it in), as initgroups() makes them. */
export function supplementaryGroups(root: string, user: string, primary: number): number[] {
  const gids = new Set<number>([primary]);
  for (const l of readLines(resolveInRoot(root, '/etc/group'))) {
    const f = l.split(':');
    if (f.length < 4) continue;
    const members = (f[3] ?? '').split(',');
    const gid = Number(f[2]);
    if (members.includes(user)) gids.add(gid);
  }
  return [...gids];
}

/** systemd-nspawn's boot: the first init of these that exists in the root. */
export const INIT_CANDIDATES = ['/usr/lib/systemd/systemd', '/lib/systemd/systemd', '/sbin/init'];

export interface InitInfo {
  path: string;
  /** systemd (SIGRTMIN+3 halts it, and it wants cgroups) */
  systemd: boolean;
}

export function findInit(root: string): InitInfo | undefined {
  for (const p of INIT_CANDIDATES) {
    const host = resolveInRoot(root, p);
    let st;
    try {
      st = statSync(host);
    } catch {
      continue;
    }
    if (!st.isFile()) continue;
    const real = host.slice(root.replace(/\/+$/, '').length) || '/';
    return { path: p, systemd: posix.basename(p) === 'systemd' || posix.basename(real) === 'systemd' };
  }
  return undefined;
}

/** The PATH systemd-nspawn gives PID 1 (DEFAULT_PATH_COMPAT: /sbin and /bin also for split-usr roots). */
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * Where exec looks for `command`: itself when it has a slash, else each directory of PATH.
 * The paths are host paths under root only until pivot_root; the child runs them after it, so
 * these are container paths.
 */
export function execCandidates(command: string, pathVar: string = DEFAULT_PATH): string[] {
  if (command.includes('/')) return [command];
  return pathVar.split(':').filter(Boolean).map((d) => posix.join(d, command));
}
