// The sd_notify(3) protocol on both sides of the launcher, as systemd-nspawn speaks it:
// - inward: a datagram socket the container reaches at /run/host/notify ($NOTIFY_SOCKET inside).
//   Only messages of the container's PID 1 count (its SCM_CREDENTIALS pid); READY=1 and STATUS=
//   are passed on.
// - outward: to the launcher's own $NOTIFY_SOCKET (a service manager), if set: "STATUS=Container
//   started." and X_NSPAWN_LEADER_PID= when the payload runs, and READY=1 then — or, with
//   --notify-ready=yes (NotifyReady=), only once the container itself sent READY=1.
// The messages are newline-separated KEY=VALUE assignments (src/libsystemd/sd-daemon).
import { chmodSync, chownSync, mkdirSync, unlinkSync } from 'node:fs';
import { NspawnError, errorMessage } from '../errors.js';
import { logger } from '../log.js';
import { POLL_READABLE, sys, type FdWatcher } from '../native.js';
import { sockaddrUn } from '../net/netd/notify.js';

const log = logger('notify');

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOL_SOCKET = 1;
const SO_PASSCRED = 16;

/** Where the container finds the socket (systemd's NSPAWN_NOTIFY_SOCKET_PATH). */
export const CONTAINER_NOTIFY_SOCKET = '/run/host/notify';

/** The assignments of one notification datagram; lines that are not KEY=VALUE are skipped. */
export function parseNotifyMessage(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) out.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return out;
}

/**
 * sd_notify(): sends `state` to $NOTIFY_SOCKET. False when it is not set; a failure to send is
 * logged, never thrown (the container runs on, as systemd-nspawn only warns).
 */
export function notifyManager(state: string, env: NodeJS.ProcessEnv = process.env): boolean {
  const address = env.NOTIFY_SOCKET;
  if (!address) return false;
  const s = sys();
  let fd = -1;
  try {
    fd = s.socket(AF_UNIX, SOCK_DGRAM, 0);
    s.sendto(fd, Buffer.from(state, 'utf8'), sockaddrUn(address));
    return true;
  } catch (err) {
    log.warn(`Failed to send readiness notification to ${address}, ignoring: ${errorMessage(err)}`);
    return false;
  } finally {
    if (fd >= 0) s.close(fd);
  }
}

/** unlink(), a missing file being fine (rmSync would load node's rimraf on the start-up path). */
function removeIfThere(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/**
 * The container's notify socket: bound at `path` on the host (bind-mounted to /run/host/notify
 * in the container), owned by the container's root. Call `watch()` once PID 1 is known.
 */
export class ContainerNotifySocket {
  private fd: number;
  private watcher: FdWatcher | undefined;
  private readonly buf = new Uint8Array(4096);

  private constructor(readonly path: string, fd: number) {
    this.fd = fd;
  }

  /** Binds the socket at `path` (its directory is made); `owner` is the host UID/GID of the container's root. */
  static create(path: string, owner: number): ContainerNotifySocket {
    const s = sys();
    mkdirSync(path.slice(0, path.lastIndexOf('/')), { recursive: true, mode: 0o755 });
    removeIfThere(path);
    const fd = s.socket(AF_UNIX, SOCK_DGRAM, 0);
    try {
      s.setsockoptInt(fd, SOL_SOCKET, SO_PASSCRED, 1);
      s.bind(fd, sockaddrUn(path));
      // writable for the container's root only (connect() needs write permission), as systemd's 0200
      chownSync(path, owner, owner);
      chmodSync(path, 0o600);
    } catch (err) {
      s.close(fd);
      removeIfThere(path);
      throw new NspawnError('NOTIFY_SOCKET', `failed to create the container's notify socket ${path}: ${errorMessage(err)}`, { cause: err });
    }
    return new ContainerNotifySocket(path, fd);
  }

  /** Calls `onMessage` with each message PID 1 (host PID `leader`) sends; others are ignored. */
  watch(leader: number, onMessage: (fields: Map<string, string>) => void): void {
    const s = sys();
    this.watcher = new s.FdWatcher(this.fd, POLL_READABLE, () => {
      for (let i = 0; i < 64 && this.fd >= 0; i++) {
        const got = s.recvCredentials(this.fd, this.buf);
        if (!got) return;
        if (got.pid !== leader) {
          log.debug(`notify message from PID ${got.pid}, not the container's PID 1 (${leader}); ignored`);
          continue;
        }
        const text = Buffer.from(this.buf.subarray(0, Math.min(got.length, this.buf.length))).toString('utf8');
        log.debug(`notify message: ${JSON.stringify(text)}`);
        onMessage(parseNotifyMessage(text));
      }
    });
  }

  close(): void {
    this.watcher?.stop();
    this.watcher = undefined;
    if (this.fd >= 0) sys().close(this.fd);
    this.fd = -1;
    removeIfThere(this.path);
  }
}
