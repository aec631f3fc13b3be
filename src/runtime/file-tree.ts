// Walks of host file trees that an unprivileged user may be changing while we walk them (the
// owner of a directory inside an image): every name is resolved in an open directory fd, never
// through a symlink (openat O_NOFOLLOW|O_DIRECTORY, fchownat AT_SYMLINK_NOFOLLOW), and what is
// opened is checked to be what was stat()ed. A directory swapped for a symlink to a host directory
// fails the walk instead of leading it out of the tree. The two walks:
//   shiftOwnership  -U/--private-users-chown: IDs n become shift+n (systemd's shift-uid.c)
//   copyTree        --template= (and copies of whole trees): device nodes, FIFOs, sockets, hard
//                   links, xattrs (ACLs and file capabilities are xattrs), owners, modes and times
//                   kept, data shared (FICLONE) where the file system can (systemd's copy.c)
// The system calls are native/src/fsat.cc's; the decisions are here.
import { chmodSync, closeSync, fchmodSync, fchownSync, constants as fsc } from 'node:fs';
import { basename, dirname } from 'node:path';
import { NspawnError } from '../errors.js';
import { sys, SysError, type FileName, type NativeAddon, type StatAt } from '../native.js';

const AT_FDCWD = -100;
const AT_SYMLINK_NOFOLLOW = 0x100;
const AT_EMPTY_PATH = 0x1000;
const O_PATH = 0o10000000;
const DIR_FLAGS = fsc.O_RDONLY | fsc.O_DIRECTORY | fsc.O_NOFOLLOW;
/** a regular file opened to read it or to change it through its fd: never a tty, never waiting */
const FILE_FLAGS = fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK | fsc.O_NOCTTY;

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
/** deeper than this is refused (each level holds a directory fd while below it) */
export const MAX_TREE_DEPTH = 2048;

/** A walk failed at `path`; `errno` is the kernel's answer where there was one. */
export class FileTreeError extends NspawnError {
  readonly path: string;
  readonly errno: number | undefined;

  constructor(code: string, path: string, message: string, options?: { cause?: unknown; errno?: number }) {
    super(code, message, options);
    this.path = path;
    this.errno = options?.errno;
  }
}

function join(dir: string, name: FileName): string {
  const n = typeof name === 'string' ? name : Buffer.from(name).toString();
  return dir.endsWith('/') ? `${dir}${n}` : `${dir}/${n}`;
}

function errnoCode(err: unknown): string | undefined {
  return err instanceof SysError ? err.code : (err as NodeJS.ErrnoException | undefined)?.code;
}

/** The entry changed between our stat and our open: a race with whoever else writes the tree. */
function changed(path: string, what: string, cause?: unknown): FileTreeError {
  return new FileTreeError('TREE_CHANGED', path,
    `${path} changed while ${what} (replaced by a symlink or another file); nothing outside the tree was touched — start again once the tree is left alone`,
    { cause });
}

function failed(path: string, doing: string, err: unknown): FileTreeError {
  if (err instanceof FileTreeError) return err;
  const e = SysError.from(err);
  const msg = e instanceof Error ? e.message : String(e);
  return new FileTreeError('TREE_IO', path, `failed to ${doing} ${path}: ${msg}`,
    { cause: e, ...(e instanceof SysError ? { errno: e.errno } : {}) });
}

function sameFile(a: StatAt, b: StatAt): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}

/** One open directory of a walk (its fd is closed by whoever opened it). */
class WalkDir {
  constructor(readonly s: NativeAddon, readonly fd: number, readonly path: string) {}

  names(): Uint8Array[] {
    return this.s.readdirFd(this.fd);
  }

  /** lstat of an entry; undefined when it is gone meanwhile */
  stat(name: FileName): StatAt | undefined {
    try {
      return this.s.fstatat(this.fd, name, AT_SYMLINK_NOFOLLOW);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return undefined;
      throw failed(join(this.path, name), 'stat', err);
    }
  }

  /** Opens an entry stat()ed as `st` (a directory or a regular file, by `flags`) and checks it is still that one. */
  open(name: FileName, st: StatAt, flags: number, what: string): number {
    const path = join(this.path, name);
    let fd: number;
    try {
      fd = this.s.openat(this.fd, name, flags);
    } catch (err) {
      const code = errnoCode(err);
      // ELOOP: a symlink now (O_NOFOLLOW); ENOTDIR: no directory now; ENOENT: gone; ENXIO: a socket now
      if (code === 'ELOOP' || code === 'ENOTDIR' || code === 'ENOENT' || code === 'ENXIO') throw changed(path, what, err);
      throw failed(path, 'open', err);
    }
    const now = this.s.fstatat(fd, '', AT_EMPTY_PATH);
    if (!sameFile(now, st) || (now.mode & S_IFMT) !== (st.mode & S_IFMT)) {
      closeSync(fd);
      throw changed(path, what);
    }
    return fd;
  }
}

function withFd<T>(fd: number, fn: (fd: number) => T): T {
  try {
    return fn(fd);
  } finally {
    closeSync(fd);
  }
}

// ---- ownership shift (--private-users-chown) ----

export function shiftedId(id: number, shift: number): number {
  return (shift + (id & 0xffff)) >>> 0;
}

/**
 * Changes owners in the tree at `root` (not crossing into other file systems) so that ID n inside
 * is shift+n outside; shift 0 shifts back. Set-ID bits that chown clears are restored through the
 * file's fd. The root directory is changed last, so that its owner marks a finished shift: a tree
 * whose root already has the right owner is taken as done (as systemd-nspawn does), and an
 * interrupted one is walked again. Returns the number of entries changed.
 */
export function shiftOwnership(root: string, shift: number): number {
  const s = sys();
  let fd: number;
  try {
    fd = s.openat(AT_FDCWD, root, fsc.O_RDONLY | fsc.O_DIRECTORY);
  } catch (err) {
    throw failed(root, 'open', err);
  }
  return withFd(fd, () => {
    const top = s.fstatat(fd, '', AT_EMPTY_PATH);
    if (top.uid === shiftedId(top.uid, shift) && top.gid === shiftedId(top.gid, shift)) return 0;
    const what = 'its ownership was shifted';
    let count = 0;
    /** chown (and the set-ID restore) of an open file */
    const patchFd = (f: number, st: StatAt, path: string): void => {
      const uid = shiftedId(st.uid, shift);
      const gid = shiftedId(st.gid, shift);
      if (uid === st.uid && gid === st.gid) return;
      try {
        fchownSync(f, uid, gid);
        if (st.mode & 0o7000) fchmodSync(f, st.mode & 0o7777);
      } catch (err) {
        throw failed(path, 'change the owner of', err);
      }
      count++;
    };
    const walk = (dir: WalkDir, depth: number): void => {
      if (depth > MAX_TREE_DEPTH) throw new FileTreeError('TREE_TOO_DEEP', dir.path, `${dir.path} is nested deeper than ${MAX_TREE_DEPTH} directories`);
      for (const name of dir.names()) {
        const st = dir.stat(name);
        if (!st || st.dev !== top.dev) continue; // gone, or a mount point: another file system
        const path = join(dir.path, name);
        const type = st.mode & S_IFMT;
        if (type === S_IFDIR) {
          withFd(dir.open(name, st, DIR_FLAGS, what), (sub) => {
            walk(new WalkDir(s, sub, path), depth + 1);
            patchFd(sub, st, path);
          });
        } else if (type === S_IFREG && (st.mode & 0o6000)) {
          withFd(dir.open(name, st, FILE_FLAGS, what), (f) => patchFd(f, st, path));
        } else {
          const uid = shiftedId(st.uid, shift);
          const gid = shiftedId(st.gid, shift);
          if (uid === st.uid && gid === st.gid) continue;
          try {
            // whatever is at `name` now is in this directory: at worst its own symlink is chowned
            s.fchownat(dir.fd, name, uid, gid, AT_SYMLINK_NOFOLLOW);
          } catch (err) {
            if (errnoCode(err) === 'ENOENT') continue;
            throw failed(path, 'change the owner of', err);
          }
          count++;
        }
      }
    };
    walk(new WalkDir(s, fd, root.replace(/\/+$/, '') || '/'), 0);
    patchFd(fd, top, root);
    return count;
  });
}

// ---- copies (--template=) ----

export interface CopyResult {
  /** entries made (directories, files, links, nodes) */
  entries: number;
  /** regular files whose data is shared with the source (FICLONE) */
  reflinked: number;
  /** regular files whose data was copied */
  copied: number;
  hardlinks: number;
}

export interface CopyOptions {
  /** owners of the copy (default: the source's) */
  owner?: (uid: number, gid: number) => [number, number];
}

/**
 * Copies the tree at `source` to `target` (which must not exist; its parent must), as systemd's
 * copy_tree() with COPY_REFLINK|COPY_HARDLINKS|COPY_ALL_XATTRS|COPY_SAME_MOUNT: directories,
 * regular files (FICLONE, else copy_file_range keeping holes), symlinks, device nodes, FIFOs and
 * sockets; hard links within the tree stay hard links; owners, modes (set-ID bits included), all
 * extended attributes (POSIX ACLs, file capabilities, SELinux labels) and times are kept. A
 * directory on another file system (a mount point) becomes an empty directory. On failure the
 * partial copy is left for the caller to remove.
 */
export function copyTree(source: string, target: string, opts: CopyOptions = {}): CopyResult {
  const s = sys();
  const result: CopyResult = { entries: 0, reflinked: 0, copied: 0, hardlinks: 0 };
  const what = 'it was copied';
  const owner = opts.owner ?? ((u: number, g: number): [number, number] => [u, g]);
  let srcFd: number;
  let parentFd: number;
  try {
    srcFd = s.openat(AT_FDCWD, source, fsc.O_RDONLY | fsc.O_DIRECTORY);
  } catch (err) {
    throw failed(source, 'open', err);
  }
  try {
    parentFd = s.openat(AT_FDCWD, dirname(target), fsc.O_RDONLY | fsc.O_DIRECTORY);
  } catch (err) {
    closeSync(srcFd);
    throw failed(dirname(target), 'open', err);
  }
  const top = s.fstatat(srcFd, '', AT_EMPTY_PATH);
  /** first copy of each multiply-linked inode: its path relative to the target */
  const links = new Map<string, Buffer>();
  let rootFd = -1;

  /**
   * xattrs, owner, mode, times of a made entry, through its fd; a node's fds are O_PATH ones, and
   * its times are set through its name in `node.dir` (our copy, which nobody else writes)
   */
  const finish = (from: number, to: number, st: StatAt, path: string, node?: { dir: number; name: FileName }): void => {
    const opath = node !== undefined;
    try {
      const [uid, gid] = owner(st.uid, st.gid);
      // owner first: chown clears set-ID bits and file capabilities, which come back after it
      if (opath) s.fchownat(to, '', uid, gid, AT_EMPTY_PATH);
      else fchownSync(to, uid, gid);
      if (opath) chmodSync(`/proc/self/fd/${to}`, st.mode & 0o7777);
      else fchmodSync(to, st.mode & 0o7777);
      for (const name of s.listXattrs(from)) {
        const value = s.getXattr(from, name);
        if (value === null) continue;
        try {
          s.setXattr(to, name, value);
        } catch (err) {
          // the target's file system cannot hold it (trusted.* on some, user.* on nodes)
          if (errnoCode(err) !== 'EOPNOTSUPP' && errnoCode(err) !== 'ENOTSUP' && errnoCode(err) !== 'EPERM') throw err;
        }
      }
      if (node) s.utimensat(node.dir, node.name, st.atime[0], st.atime[1], st.mtime[0], st.mtime[1], AT_SYMLINK_NOFOLLOW);
      else s.utimensat(to, '', st.atime[0], st.atime[1], st.mtime[0], st.mtime[1], 0);
    } catch (err) {
      throw failed(path, 'copy the attributes of', err);
    }
  };

  const copyDir = (src: WalkDir, dst: number, rel: Buffer, depth: number): void => {
    if (depth > MAX_TREE_DEPTH) throw new FileTreeError('TREE_TOO_DEEP', src.path, `${src.path} is nested deeper than ${MAX_TREE_DEPTH} directories`);
    for (const name of src.names()) {
      const st = src.stat(name);
      if (!st) continue;
      const path = join(src.path, name);
      const relName = rel.length ? Buffer.concat([rel, Buffer.from('/'), name]) : Buffer.from(name);
      const type = st.mode & S_IFMT;
      try {
        if (type !== S_IFDIR && st.dev !== top.dev) continue; // a file bound over: not part of this tree
        if (type !== S_IFDIR && st.nlink > 1) {
          const key = `${st.dev}:${st.ino}`;
          const first = links.get(key);
          if (first) {
            s.linkat(rootFd, first, dst, name, 0);
            result.hardlinks++;
            continue;
          }
          links.set(key, relName);
        }
        result.entries++;
        if (type === S_IFDIR) {
          s.mkdirat(dst, name, 0o700);
          withFd(s.openat(dst, name, DIR_FLAGS), (to) => {
            if (st.dev !== top.dev) {
              // a mount point: kept as an empty directory with the mount point's own attributes
              finish(to, to, st, path);
              return;
            }
            withFd(src.open(name, st, DIR_FLAGS, what), (from) => {
              copyDir(new WalkDir(s, from, path), to, relName, depth + 1);
              finish(from, to, st, path);
            });
          });
        } else if (type === S_IFREG) {
          withFd(src.open(name, st, FILE_FLAGS, what), (from) => {
            withFd(s.openat(dst, name, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600), (to) => {
              if (s.copyData(from, to) === 'reflink') result.reflinked++;
              else result.copied++;
              finish(from, to, st, path);
            });
          });
        } else if (type === S_IFLNK) {
          s.symlinkat(s.readlinkat(src.fd, name), dst, name);
          const [uid, gid] = owner(st.uid, st.gid);
          s.fchownat(dst, name, uid, gid, AT_SYMLINK_NOFOLLOW);
          s.utimensat(dst, name, st.atime[0], st.atime[1], st.mtime[0], st.mtime[1], AT_SYMLINK_NOFOLLOW);
        } else {
          // character and block devices, FIFOs, sockets: made, never opened
          s.mknodat(dst, name, st.mode & (S_IFMT | 0o777), st.rdevMajor, st.rdevMinor);
          withFd(src.open(name, st, O_PATH | fsc.O_NOFOLLOW, what), (from) => {
            withFd(s.openat(dst, name, O_PATH | fsc.O_NOFOLLOW), (to) => finish(from, to, st, path, { dir: dst, name }));
          });
        }
      } catch (err) {
        throw failed(path, 'copy', err);
      }
    }
  };

  try {
    const name = basename(target);
    try {
      s.mkdirat(parentFd, name, 0o700);
    } catch (err) {
      throw failed(target, 'create', err);
    }
    rootFd = s.openat(parentFd, name, DIR_FLAGS);
    copyDir(new WalkDir(s, srcFd, source.replace(/\/+$/, '') || '/'), rootFd, Buffer.alloc(0), 0);
    finish(srcFd, rootFd, top, source);
    return result;
  } finally {
    if (rootFd >= 0) closeSync(rootFd);
    closeSync(parentFd);
    closeSync(srcFd);
  }
}
