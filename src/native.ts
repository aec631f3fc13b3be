// The only importer of the native addon (native/, node-addon-api). It exposes the syscalls Node
// lacks and nothing else: sockets of any family (optionally made inside another network namespace),
// readiness watching through the event loop, namespace fds, and libnftables. Every failure becomes
// a SysError with the kernel's errno (`err.code === 'EEXIST'`, `err.errno === 17`).
import { NspawnError } from './errors.js';

export interface NftResult {
  rc: number;
  output: string;
  error: string;
}

export interface NftRunOptions {
  /** Run in this network namespace (fd); default: the caller's. */
  netnsFd?: number;
  /** JSON output (default true). */
  json?: boolean;
  /** Print rule handles in output. */
  handle?: boolean;
  /** Echo what was added (with handles) in output. */
  echo?: boolean;
}

/** Readiness bits passed to and from FdWatcher. */
export const POLL_READABLE = 1;
export const POLL_WRITABLE = 2;
/** Set in the callback's argument when the poll itself failed (the fd was closed under it). */
export const POLL_ERROR = 4;

export interface FdWatcher {
  /** Stops watching for good; the fd stays open. */
  stop(): void;
  /** Keeps the process alive while armed (the default). */
  ref(): void;
  /** Lets the process exit while armed. */
  unref(): void;
  setEvents(events: number): void;
}

/** A message from a container's clone child (native/src/container.cc). */
export interface ChannelMessage {
  /** 0 end-of-file (the payload exec()ed, or everything exited), 1 ready at a sync op, 2 error, 3 inner pid, 4 pty master */
  kind: number;
  op?: number;
  err?: number;
  code?: string;
  /** strerror() of err */
  message?: string;
  value?: number;
  /** a received fd (the pty master), close-on-exec */
  fd?: number;
}

export interface SpawnedContainer {
  pid: number;
  pidfd: number;
  /** our end of the channel (non-blocking, close-on-exec) */
  channel: number;
}

/** What enterSpawn() does (native/src/enter.cc; src/machinectl/enter.ts builds it). */
export interface EnterPlan {
  /** joined in this order (user first) */
  namespaces: ReadonlyArray<{ fd: number; nstype: number }>;
  /** cgroup.procs files the process is moved into before it joins the namespaces */
  cgroupFds?: readonly number[];
  /** chroot() here (an fd of /proc/LEADER/root) */
  rootFd?: number;
  /** a pty in the devpts of `ptmx` (after chroot) as stdio and controlling terminal */
  pty?: boolean;
  ptmx?: string;
  uid: number;
  gid: number;
  groups: readonly number[];
  /** capabilities kept in the bounding set (undefined: leave it) */
  boundingKeep?: bigint;
  /** set after the UID change (undefined: what setresuid() leaves) */
  caps?: { effective: bigint; permitted: bigint; inheritable: bigint };
  noNewPrivs?: boolean;
  /** working directory; / when it cannot be entered */
  cwd?: string;
  candidates: readonly string[];
  argv: readonly string[];
  envp: readonly string[];
}

export interface NativeAddon {
  socket(domain: number, type: number, protocol: number, netnsFd?: number): number;
  bind(fd: number, sockaddr: Uint8Array): void;
  connect(fd: number, sockaddr: Uint8Array): void;
  setsockoptInt(fd: number, level: number, name: number, value: number): void;
  setsockoptBytes(fd: number, level: number, name: number, value: Uint8Array): void;
  getsockoptInt(fd: number, level: number, name: number): number;
  /** The option's value as the kernel wrote it (at most maxLength bytes), e.g. SO_PEERCRED's struct ucred. */
  getsockoptBytes(fd: number, level: number, name: number, maxLength: number): Uint8Array;
  getsockname(fd: number): Uint8Array;
  /** Throws SysError EAGAIN when the socket buffer is full. */
  sendto(fd: number, data: Uint8Array, sockaddr?: Uint8Array): number;
  /** Length received, or -1 when nothing is waiting. Never blocks. */
  recv(fd: number, buf: Uint8Array, flags?: number, addrBuf?: Uint8Array): number;
  /**
   * One datagram with its sender's SCM_CREDENTIALS (pid in our PID namespace; -1 without
   * SO_PASSCRED); `length` is the datagram's, which may exceed buf. Null when none waits.
   * Descriptors the sender attached are closed.
   */
  recvCredentials(fd: number, buf: Uint8Array): { length: number; pid: number; uid: number; gid: number } | null;
  close(fd: number): void;
  /** Waits (blocking) until fd is readable/writable (POLL_*): the events that came, POLL_ERROR on error or hang-up, 0 after timeoutMs. */
  pollFd(fd: number, events: number, timeoutMs: number): number;
  FdWatcher: new (fd: number, events: number, callback: (events: number) => void) => FdWatcher;
  openNamespace(path: string): number;
  createNetns(): number;
  namespaceId(fd: number): string;
  nftRun(command: string, options?: NftRunOptions): NftResult;
  nftForget(netnsFd: number): void;
  exitNow(code: number): never;
  /** clone3() into new namespaces (and into cgroupDir, a cgroup2 directory) and run the plan's ops (src/runtime/plan.ts) in the child. */
  spawnContainer(plan: { cloneFlags: number; ops: ReadonlyArray<object>; cgroupDir?: string }): SpawnedContainer;
  /** Next message from a clone child; null when none is waiting. */
  channelRecv(fd: number): ChannelMessage | null;
  /** Lets a clone child that reported READY go on. */
  channelGo(fd: number): void;
  pidfdOpen(pid: number): number;
  pidfdSendSignal(pidfd: number, signal: number): void;
  /** Reaps the process if it has exited: {code} or {signal}; null while it runs. */
  waitPidfd(pidfd: number): { code: number | null; signal: number | null } | null;
  /**
   * A process that only sits in a new user namespace with these maps (uid_map/gid_map lines), for
   * ID-mapped mounts through /proc/PID/ns/user; kill it (SIGKILL through pidfd) and reap it when done.
   */
  usernsHolder(uidMap: string, gidMap: string): { pid: number; pidfd: number };
  /** Whether a bind of `path` can be ID-mapped through the user namespace at `userns` (tried on a detached copy). */
  idmapSupported(path: string, userns: string): boolean;
  /** Bytes read, 0 at end-of-file, -1 when nothing is waiting, -2 on EIO (a pty master whose slaves are all closed). */
  readFd(fd: number, buf: Uint8Array): number;
  /** The slave of a pty master (TIOCGPTPEER), opened O_NOCTTY and non-blocking. */
  ptyPeer(master: number): number;
  /** Bytes written, -1 when it would block. */
  writeFd(fd: number, buf: Uint8Array): number;
  setNonblocking(fd: number): void;
  setWindowSize(fd: number, rows: number, cols: number): void;
  /**
   * A process inside a running container's namespaces (native/src/enter.cc): returns the
   * intermediate child (reap it through pidfd); the channel reports the real PID (kind 3), the pty
   * master (kind 4), or an error (kind 2, op = step, value = index), and end-of-file on exec.
   */
  enterSpawn(plan: EnterPlan): SpawnedContainer;
  /** flock(); false when LOCK_NB was given and another holder has it. */
  flock(fd: number, operation: number): boolean;
  /**
   * An open file description lock on the whole file (fcntl F_OFD_SETLK; type 0 read, 1 write,
   * 2 unlock), the kind systemd's lock files use; false when another holder has a conflicting one.
   */
  ofdLock(fd: number, type: 0 | 1 | 2): boolean;
  /** Attaches a classic BPF program (8-byte sock_filter records, host order) with SO_ATTACH_FILTER. */
  attachFilter(fd: number, program: Uint8Array): void;
  /**
   * recvmmsg without blocking: datagram i at buf[i*slot] (length in lengths[i], -1 when cut), its
   * source address at addrs[i*(addrs.length/lengths.length)]. Returns the count, -1 when none waits.
   */
  recvBatch(fd: number, buf: Uint8Array, slot: number, lengths: Int32Array, addrs: Uint8Array): number;
  /** sendmmsg: datagrams[i] to addrs[i]; returns how many the kernel took (it stops at the first refused). */
  sendBatch(fd: number, datagrams: Uint8Array[], addrs: Uint8Array[]): number;
  /**
   * madvise(MADV_DONTNEED) of [start, start + length) of this process's mappings: only for read-only
   * private file mappings without anonymous pages (src/common/startup-pages.ts finds them).
   */
  dropPages(start: number, length: number): void;
  // ---- *at() calls for walking host trees through directory fds (native/src/fsat.cc) ----
  /** openat(); O_CLOEXEC is always added. */
  openat(dirfd: number, name: FileName, flags: number, mode?: number): number;
  /** fstatat(); name '' with AT_EMPTY_PATH stats dirfd itself. */
  fstatat(dirfd: number, name: FileName, flags: number): StatAt;
  /** Names in the directory (bytes), without . and .. */
  readdirFd(fd: number): Uint8Array[];
  fchownat(dirfd: number, name: FileName, uid: number, gid: number, flags: number): void;
  mkdirat(dirfd: number, name: FileName, mode: number): void;
  /** mode carries the S_IF* type (device node, FIFO, socket) */
  mknodat(dirfd: number, name: FileName, mode: number, major: number, minor: number): void;
  symlinkat(target: FileName, dirfd: number, name: FileName): void;
  readlinkat(dirfd: number, name: FileName): Uint8Array;
  linkat(olddirfd: number, oldname: FileName, newdirfd: number, newname: FileName, flags: number): void;
  /** name '' sets dirfd's own times (futimens) */
  utimensat(dirfd: number, name: FileName, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number, flags: number): void;
  /** Extended attribute names of an open file (an O_PATH fd too); [] where the file system has none. */
  listXattrs(fd: number): string[];
  /** null when the attribute is gone */
  getXattr(fd: number, name: string): Uint8Array | null;
  setXattr(fd: number, name: string, value: Uint8Array): void;
  /** Fills the empty dstFd with srcFd's contents: shared extents where the file system can, else a copy keeping holes. */
  copyData(srcFd: number, dstFd: number): 'reflink' | 'copy';
}

/** A file name for the *at() calls: bytes as the directory holds them, or a string (UTF-8). */
export type FileName = string | Uint8Array;

/** What fstatat() reports (times as [seconds, nanoseconds]). */
export interface StatAt {
  dev: bigint;
  ino: bigint;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdevMajor: number;
  rdevMinor: number;
  size: number;
  atime: [number, number];
  mtime: [number, number];
}

/** A syscall failed; `code` is the errno name ('EEXIST'), `errno` its number. */
export class SysError extends NspawnError {
  readonly errno: number;
  readonly syscall: string;

  constructor(errno: number, code: string, syscall: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.errno = errno;
    this.syscall = syscall;
  }

  static from(err: unknown): unknown {
    if (err instanceof SysError || !(err instanceof Error)) return err;
    const e = err as Error & { errno?: unknown; code?: unknown; syscall?: unknown };
    if (typeof e.errno !== 'number' || typeof e.code !== 'string') return err;
    return new SysError(e.errno, e.code, typeof e.syscall === 'string' ? e.syscall : '', e.message);
  }
}

/**
 * The addon's exports, loaded once per process: every bundle of a command carries its own copy of
 * this module (nspawn-cni's entry and plugin bundles both do), and a second load runs the addon's
 * N-API init again (~0.3 ms). Each copy wraps the shared exports with its own SysError.
 */
const LOADED = Symbol.for('nspawn-ts.native-addon');
const processWide = globalThis as { [LOADED]?: NativeAddon };

function loadAddon(): NativeAddon {
  const loaded = processWide[LOADED];
  if (loaded) return loaded;
  const path = new URL('../native/build/Release/nspawn_native.node', import.meta.url).pathname;
  // process.dlopen, not a require() made by node:module's createRequire: node:module loads Node's ES
  // module loader and source maps with it, ~1 ms of compiling in every nspawn-cni call
  const mod = { exports: {} };
  try {
    process.dlopen(mod, path);
  } catch (err) {
    throw new NspawnError('SYS_ADDON_MISSING',
      `the native addon could not be loaded from ${path}; in a source checkout run "npm run setup" to build it; an npm-installed nspawn-ts builds it at install: reinstall with "npm install -g --allow-scripts=nspawn-ts PACKAGE" (npm may skip install scripts otherwise)`, { cause: err });
  }
  processWide[LOADED] = mod.exports as NativeAddon;
  return mod.exports as NativeAddon;
}

function wrap(addon: NativeAddon): NativeAddon {
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(addon)) {
    if (typeof value !== 'function' || name === 'FdWatcher') {
      out[name] = value;
      continue;
    }
    const fn = value as (...args: unknown[]) => unknown;
    out[name] = (...args: unknown[]) => {
      try {
        return fn(...args);
      } catch (err) {
        throw SysError.from(err);
      }
    };
  }
  return out as unknown as NativeAddon;
}

let cached: NativeAddon | undefined;

/** The addon, loaded on first use (so modules that never touch the kernel start without it). */
export function sys(): NativeAddon {
  cached ??= wrap(loadAddon());
  return cached;
}

/** The addon if something in this process has loaded it already, without loading it. */
export function sysIfLoaded(): NativeAddon | undefined {
  return processWide[LOADED] === undefined ? undefined : sys();
}
