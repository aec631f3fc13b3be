// Which namespaces a container gets, and its user namespace: the UID/GID range (--private-users=
// no|yes|pick|identity|UID[:N], reference §10), the pick of a free range with systemd-nspawn's
// locks (so we never pick a range a real systemd-nspawn holds, nor it ours), the uid_map/gid_map
// lines. (Shifting the ownership of the root directory, --private-users-chown, is file-tree.ts's.)
import {
  mkdirSync, readFileSync, statSync, writeFileSync,
} from 'node:fs';
import { tryLock } from '../common/lock.js';
import { ConfigError, NspawnError } from '../errors.js';
import { siphash24, siphashKey } from '../net/siphash.js';
import {
  CLONE_NEWCGROUP, CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWUSER, CLONE_NEWUTS,
} from './plan.js';
import type { PrivateUsers } from './spec.js';

/** The namespaces of the container's processes (the cgroup namespace is made after the sync point). */
export function containerCloneFlags(opts: { privateNetwork: boolean; userns: boolean }): number {
  let f = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC;
  if (opts.privateNetwork) f |= CLONE_NEWNET;
  if (opts.userns) f |= CLONE_NEWUSER;
  return f;
}

export const NAMESPACE_FLAGS: Record<string, number> = {
  mnt: CLONE_NEWNS, pid: CLONE_NEWPID, uts: CLONE_NEWUTS, ipc: CLONE_NEWIPC, net: CLONE_NEWNET,
  user: CLONE_NEWUSER, cgroup: CLONE_NEWCGROUP,
};

/** Names of the namespaces (as in /proc/PID/ns) a container of these flags has of its own. */
export function namespaceNames(flags: number): string[] {
  return Object.entries(NAMESPACE_FLAGS).filter(([, f]) => flags & f).map(([n]) => n);
}

// ---- user namespace ranges ----

export const UID_RANGE = 0x10000;
/** CONTAINER_UID_BASE_MIN/MAX (meson_options.txt of systemd): where `pick` looks. */
export const CONTAINER_UID_BASE_MIN = 0x00080000;
export const CONTAINER_UID_BASE_MAX = 0x6fff0000;
/** uid_shift_pick()'s hash key. */
export const UID_PICK_HASH_KEY = siphashKey('e1 56 e0 f0 4a f0 41 af 96 41 cf 41 33 94 ff 72');
/** systemd-nspawn's lock directory for picked ranges, shared with it on purpose. */
export const UID_LOCK_DIR = '/run/systemd/nspawn-uid';

export interface UidRange {
  shift: number;
  range: number;
}

/** The pick order's second candidate: a hash of the machine name (uid_shift_pick). */
export function pickCandidateFromName(machine: string): number {
  const h = Number(siphash24(new TextEncoder().encode(machine), UID_PICK_HASH_KEY) & 0xffffffffn);
  return reduceCandidate(h);
}

export function reduceCandidate(c: number): number {
  const v = (c % (CONTAINER_UID_BASE_MAX - CONTAINER_UID_BASE_MIN)) + CONTAINER_UID_BASE_MIN;
  return (v & 0xffff0000) >>> 0;
}

/** Owner of the root directory, as `yes` and `pick` read it (UID and GID bases must agree). */
export function rootOwnerBase(directory: string): number {
  const st = statSync(directory);
  const uidBase = (st.uid & 0xffff0000) >>> 0;
  const gidBase = (st.gid & 0xffff0000) >>> 0;
  if (uidBase !== gidBase) {
    throw new ConfigError(`UID and GID base of ${directory} don't match (UID ${st.uid}, GID ${st.gid}); fix its ownership or use --private-users-chown`, { code: 'CFG_PRIVATE_USERS' });
  }
  return uidBase;
}

function idsInUse(file: string): Set<number> {
  const ids = new Set<number>();
  try {
    for (const l of readFileSync(file, 'utf8').split('\n')) {
      const f = l.split(':');
      if (f.length > 2) ids.add(Number(f[2]));
    }
  } catch { /* no such file: nothing in use */ }
  return ids;
}

/** A range held for the container's lifetime; release() unlocks (and removes the lock file). */
export interface HeldRange extends UidRange {
  release(): void;
}

/**
 * `pick`: a free 64K-aligned range (no lock held on it by us or systemd-nspawn, no user or group
 * at its base or base+0xFFFE), tried in systemd's order: the root directory's owner, the hash of
 * the machine name, then random candidates.
 */
export function pickUidRange(machine: string, directory: string, random: () => number = () => Math.floor(Math.random() * 0x100000000)): HeldRange {
  mkdirSync(UID_LOCK_DIR, { recursive: true, mode: 0o755 });
  const users = idsInUse('/etc/passwd');
  const groups = idsInUse('/etc/group');
  const candidates: number[] = [];
  const own = rootOwnerBase(directory);
  if (own >= CONTAINER_UID_BASE_MIN && own <= CONTAINER_UID_BASE_MAX) candidates.push(own);
  candidates.push(pickCandidateFromName(machine));
  for (let i = 0; i < 99; i++) candidates.push(reduceCandidate(random()));
  for (const shift of candidates) {
    if (users.has(shift) || users.has(shift + 0xfffe) || groups.has(shift) || groups.has(shift + 0xfffe)) continue;
    const path = `${UID_LOCK_DIR}/${shift}`;
    // the holder unlinks it when done; a lock won on a file unlinked meanwhile is retaken
    const held = tryLock(path, { unlinkOnRelease: true, createDir: false });
    if (!held) continue;
    return { shift, range: UID_RANGE, release: () => held.release() };
  }
  throw new NspawnError('USERNS_PICK', 'failed to find a free UID range for the container\'s user namespace (tried 101 candidates)');
}

/** The range a PrivateUsers setting asks for (`pick` is resolved by pickUidRange). */
export function fixedUidRange(pu: PrivateUsers, directory: string): UidRange | undefined {
  switch (pu.mode) {
    case 'no': return undefined;
    case 'identity': return { shift: 0, range: UID_RANGE };
    case 'range': return { shift: pu.uid, range: pu.count };
    case 'yes': return { shift: rootOwnerBase(directory), range: UID_RANGE };
    case 'pick': throw new Error('internal: pick is resolved by pickUidRange');
  }
}

/** The line for /proc/PID/uid_map and gid_map: container 0.. onto host shift.. */
export function idMapLine(r: UidRange): string {
  return `0 ${r.shift} ${r.range}\n`;
}

export function writeIdMaps(pid: number, r: UidRange): void {
  writeFileSync(`/proc/${pid}/uid_map`, idMapLine(r));
  writeFileSync(`/proc/${pid}/gid_map`, idMapLine(r));
}
