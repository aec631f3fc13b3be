// sd_notify(3) without libsystemd: one datagram ("READY=1", "STOPPING=1", "STATUS=…") to the
// AF_UNIX socket in $NOTIFY_SOCKET (a path, or "@name" in the abstract namespace). A no-op when the
// variable is unset (not run by systemd as Type=notify).
import { sys } from '../../native.js';

const AF_UNIX = 1;
const SOCK_DGRAM = 2;

/** struct sockaddr_un for a path or an abstract name ("@…"). */
export function sockaddrUn(path: string): Uint8Array {
  const name = Buffer.from(path.startsWith('@') ? `\0${path.slice(1)}` : path, 'utf8');
  if (name.length > 107) throw new RangeError(`socket path ${path} is longer than 107 bytes`);
  const out = new Uint8Array(2 + name.length + (path.startsWith('@') ? 0 : 1));
  new DataView(out.buffer).setUint16(0, AF_UNIX, true);
  out.set(name, 2);
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
