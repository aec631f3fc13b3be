// Helpers of nspawn-cni's operations: the container's network namespace (CNI_NETNS), its veth
// pair, and library errors as CNI errors.
import { constants, fstatSync, openSync, statSync } from 'node:fs';
import { errorMessage, NspawnError } from '../errors.js';
import { sys } from '../native.js';
import { zoneLock } from '../net/modes/zone.js';
import { Rtnl } from '../net/rtnl.js';
import { CNI_ERR, CniError } from './config.js';

const AF_UNIX = 1;
const SOCK_DGRAM = 2;

/**
 * Opens CNI_NETNS, refusing (CNI error 4) what is not a network namespace: opened without blocking
 * (a FIFO would hang the plugin or the sidecar) and without becoming a terminal, it must be a
 * namespace file (nsfs: the device of our own /proc/self/ns/net) that setns() takes as a network
 * namespace (tried by making a socket in it).
 */
export function openNetns(path: string): number {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY); // libuv adds O_CLOEXEC
  } catch (err) {
    throw new CniError(CNI_ERR.INVALID_ENVIRONMENT, `CNI_NETNS ${path} cannot be opened: ${errorMessage(err)}`);
  }
  const s = sys();
  try {
    if (fstatSync(fd).dev !== statSync('/proc/self/ns/net').dev) throw new CniError(CNI_ERR.INVALID_ENVIRONMENT, `CNI_NETNS ${path} is not a network namespace (not a namespace file)`);
    try {
      s.close(s.socket(AF_UNIX, SOCK_DGRAM, 0, fd));
    } catch (err) {
      throw new CniError(CNI_ERR.INVALID_ENVIRONMENT, `CNI_NETNS ${path} is not a network namespace: ${errorMessage(err)}`);
    }
  } catch (err) {
    s.close(fd);
    throw err;
  }
  return fd;
}

export async function inNetns<T>(path: string, fn: (rtnl: Rtnl) => Promise<T>): Promise<T> {
  const fd = openNetns(path);
  let rtnl: Rtnl | undefined;
  try {
    rtnl = Rtnl.open({ netnsFd: fd });
    return await fn(rtnl);
  } finally {
    rtnl?.close();
    sys().close(fd);
  }
}

/** Library errors as CNI errors: the sidecar's port clash and lock waits are the caller's to retry or fix. */
export function asCni(err: unknown, what: string): CniError {
  if (err instanceof CniError) return err;
  const code = err instanceof NspawnError ? err.code : undefined;
  if (code === 'NET_ZONE_LOCK_TIMEOUT' || code === 'LOCK_TIMEOUT' || code === 'NETD_TIMEOUT') return new CniError(CNI_ERR.TRY_AGAIN_LATER, `${what}: ${errorMessage(err)}`);
  if (code === 'NETD_PORT_IN_USE' || code === 'NETD_BAD_REQUEST') return new CniError(CNI_ERR.INVALID_CONFIG, `${what}: ${errorMessage(err)}`);
  return new CniError(CNI_ERR.SETUP_FAILED, `${what}: ${errorMessage(err)}`, code ?? '');
}

/**
 * The container's veth pair: host side `hostIfname` (on `bridge`, made if missing, in zone mode),
 * `ifname` in the container's namespace; under the zone lock that bridge makers and removers take.
 * A host side left by an earlier ADD of the same container goes first. `onMaking` is called once
 * something may exist (from then on a failure is rolled back).
 */
export async function makeContainerVeth(rtnl: Rtnl, o: { bridge?: string; hostIfname: string; ifname: string; netnsFd: number }, onMaking: () => void): Promise<void> {
  const release = await zoneLock().acquire();
  try {
    const bridge = o.bridge !== undefined ? await rtnl.ensureBridge({ name: o.bridge, up: true }) : undefined;
    await rtnl.deleteLink(o.hostIfname);
    onMaking();
    await rtnl.createVeth({ name: o.hostIfname, ...(bridge ? { master: bridge.index } : {}), up: true, peer: { name: o.ifname, netnsFd: o.netnsFd } });
  } finally {
    release();
  }
}
