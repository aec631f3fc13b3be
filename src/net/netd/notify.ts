// sd_notify(3) without libsystemd: one datagram ("READY=1", "STOPPING=1", "STATUS=…") to the
// AF_UNIX socket in $NOTIFY_SOCKET (a path, or "@name" in the abstract namespace). A no-op when the
// variable is unset (not run by systemd as Type=notify).
import { NspawnError } from '../../errors.js';
import { sys } from '../../native.js';

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
/** sizeof(struct sockaddr_un.sun_path) */
export const SUN_PATH_MAX = 108;

/**
 * struct sockaddr_un for a path (NUL-terminated) or an abstract name written "@name" (a leading NUL
 * and exactly the name's bytes), as $NOTIFY_SOCKET allows; a typed error (NOTIFY_ADDRESS) for an
 * empty or over-long address. The launcher's notify sockets and nspawn-cni's thin client use it too.
 */
export function sockaddrUn(address: string): Uint8Array {
  const abstract = address.startsWith('@');
  const name = Buffer.from(abstract ? address.slice(1) : address, 'utf8');
  if (address === '' || name.length + 1 > SUN_PATH_MAX) {
    throw new NspawnError('NOTIFY_ADDRESS', `not a usable AF_UNIX socket address: "${address}" (a path or @name of at most ${SUN_PATH_MAX - 1} bytes)`);
  }
  const out = new Uint8Array(2 + 1 + name.length);
  new DataView(out.buffer).setUint16(0, AF_UNIX, true);
  out.set(name, abstract ? 3 : 2);
  return out;
}

/** Sends `state` to the service manager; returns whether there was one to tell. */
export function sdNotify(state: string, env: NodeJS.ProcessEnv = process.env): boolean {
  const path = env.NOTIFY_SOCKET;
  if (!path || (!path.startsWith('/') && !path.startsWith('@'))) return false;
  const s = sys();
  const fd = s.socket(AF_UNIX, SOCK_DGRAM, 0);
  try {
    s.sendto(fd, Buffer.from(state, 'utf8'), sockaddrUn(path));
  } finally {
    s.close(fd);
  }
  return true;
}
