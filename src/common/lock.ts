// The one file lock of the project: an exclusive flock(2) — or an OFD lock (fcntl F_OFD_SETLK),
// which is what systemd's make_lock_file() takes, where a lock is shared with systemd — on an open
// file. The kernel drops either with the holder's last descriptor, so a holder killed with SIGKILL
// (or a zombie: its files were closed when it exited) never leaves the lock taken, and no PID file
// can name a reused PID. Waiting never blocks the event loop: a non-blocking attempt, retried on
// timers with backoff (1 ms doubling to 50 ms), because the loops that wait also serve DHCP.
//
// flock() and OFD locks are per open file description: two descriptors of one process exclude each
// other as two processes do, so an in-process queue is needed only to keep order, not for safety.
import { closeSync, constants, fstatSync, mkdirSync, openSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { NspawnError } from '../errors.js';
import { sys } from '../native.js';

export type LockKind = 'flock' | 'ofd';

export interface LockOptions {
  /** 'flock' (default) or 'ofd' (an OFD write lock, seen by systemd's make_lock_file()). */
  kind?: LockKind;
  /**
   * systemd's release_lock_file() semantics: the holder unlinks the file when it releases the lock,
   * and a lock won on a file that was unlinked meanwhile is retaken on the file now at `path`.
   */
  unlinkOnRelease?: boolean;
  /** How long lock() waits for another holder (default 30 s). */
  timeoutMs?: number;
  /** Mode of a lock file created here (default 0600). */
  mode?: number;
  /** Create the parent directory when missing (default true). */
  createDir?: boolean;
}

/** A lock held: release() gives it back (and closes the file); it is idempotent. */
export interface FileLock {
  readonly path: string;
  readonly fd: number;
  release(): void;
}

/** The lock stayed taken by another holder for the whole timeout. */
export class LockTimeoutError extends NspawnError {
  constructor(readonly path: string, timeoutMs: number) {
    super('LOCK_TIMEOUT', `the lock ${path} stayed taken by another process for ${timeoutMs} ms`);
  }
}

const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_UN = 8;

function open(path: string, opts: LockOptions): number {
  if (opts.createDir ?? true) mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  return openSync(path, constants.O_CREAT | constants.O_RDWR | constants.O_NOFOLLOW | constants.O_NOCTTY, opts.mode ?? 0o600);
}

function attempt(fd: number, kind: LockKind): boolean {
  return kind === 'ofd' ? sys().ofdLock(fd, 1) : sys().flock(fd, LOCK_EX | LOCK_NB);
}

function held(path: string, fd: number, opts: LockOptions): FileLock {
  let released = false;
  return {
    path,
    fd,
    release(): void {
      if (released) return;
      released = true;
      try {
        if (opts.unlinkOnRelease) {
          try {
            unlinkSync(path); // while still locked: whoever waits on this inode retries on a new file
          } catch { /* already gone */ }
        }
        if ((opts.kind ?? 'flock') === 'flock') sys().flock(fd, LOCK_UN);
      } finally {
        closeSync(fd); // the last descriptor: the kernel drops the lock (OFD locks are released only so)
      }
    },
  };
}

/**
 * One non-blocking try: the lock, or undefined when another holder has it. Throws (errno) when the
 * file cannot be opened.
 */
export function tryLock(path: string, opts: LockOptions = {}): FileLock | undefined {
  const kind = opts.kind ?? 'flock';
  for (;;) {
    const fd = open(path, opts);
    let won: boolean;
    try {
      won = attempt(fd, kind);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    if (!won) {
      closeSync(fd);
      return undefined;
    }
    // the previous holder unlinked it between our open and our lock: lock the file now at path
    if (opts.unlinkOnRelease && fstatSync(fd).nlink === 0) {
      closeSync(fd);
      continue;
    }
    return held(path, fd, opts);
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Waits (on timers, never blocking the event loop) until the lock is ours; LockTimeoutError after timeoutMs. */
export async function lock(path: string, opts: LockOptions = {}): Promise<FileLock> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const deadline = Date.now() + timeoutMs;
  let delay = 1;
  for (;;) {
    const l = tryLock(path, opts);
    if (l) return l;
    if (Date.now() >= deadline) throw new LockTimeoutError(path, timeoutMs);
    await sleep(delay);
    delay = Math.min(delay * 2, 50);
  }
}

/** Runs `fn` holding the lock; releases it however `fn` ends. */
export async function withLock<T>(path: string, fn: () => T | Promise<T>, opts: LockOptions = {}): Promise<T> {
  const l = await lock(path, opts);
  try {
    return await fn();
  } finally {
    l.release();
  }
}
