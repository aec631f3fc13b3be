// What every container network mode is (netavark's NetworkDriver shape): validate() reads the host
// and the container and refuses what cannot work before anything is touched; apply() makes its
// links; undo() takes away exactly what apply() made — also after apply() failed halfway — and is
// safe to call twice. src/net/network-plan.ts runs the modes in systemd-nspawn's order and undoes
// the applied ones when a later one fails.
import { NspawnError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { NetlinkError, type Link, type Rtnl } from '../rtnl.js';

/** The part of the rtnetlink client the modes use (tests substitute an in-memory kernel). */
export type LinkClient = Pick<Rtnl,
  'getLink' | 'listLinks' | 'createVeth' | 'createBridge' | 'createMacvlan' | 'createIpvlan' | 'setLink' | 'setUp'
  | 'moveToNetns' | 'addAltnames' | 'deleteLink'>;

/** A lock shared by every process that creates or removes zone bridges (src/net/modes/zone.ts). */
export interface ZoneLock {
  /** Waits for the lock; returns its release. */
  acquire(): Promise<() => void>;
}

export interface ModeContext {
  machine: string;
  /** rtnetlink in the host's namespace */
  host: LinkClient;
  /** rtnetlink in the container's namespace */
  container: LinkClient;
  /** the container's network namespace (kept open until teardown: it keeps the namespace alive) */
  containerNetnsFd: number;
  /** the host's network namespace, where moved interfaces go back to */
  hostNetnsFd: number;
  zoneLock: ZoneLock;
  log: Logger;
}

/** Why undo() runs: a failed start (rollback) or the container's end (exit). */
export type UndoReason = 'rollback' | 'exit';

export interface NetworkMode {
  /** The option as the user gave it, e.g. `--network-bridge=br0`; every message starts with it. */
  readonly option: string;
  validate(ctx: ModeContext): Promise<void>;
  apply(ctx: ModeContext): Promise<void>;
  /** Removes what apply() made; collects failures into `errors` instead of stopping. */
  undo(ctx: ModeContext, reason: UndoReason, errors: unknown[]): Promise<void>;
}

/**
 * A network option that cannot be set up, with the option and the interface in the message:
 * `--network-bridge=br9: no such interface "br9" on the host`. Codes:
 *   NET_NO_SUCH_INTERFACE  a parent, bridge or interface to move does not exist
 *   NET_NOT_A_BRIDGE       --network-bridge= names a link that is not a bridge (or vz-ZONE is taken by one)
 *   NET_INTERFACE_BUSY     the interface is already in use (a port of a bridge, a parent of other links, …)
 *   NET_NAME_EXISTS        a link this start would create exists already
 *   NET_NAME_CONFLICT      two options of this start would make links of the same name
 *   NET_SETUP_FAILED       the kernel refused (the cause is the NetlinkError)
 */
export class NetworkSetupError extends NspawnError {
  readonly option: string;
  /** failures while taking back what this start had made, if any */
  rollbackErrors: readonly unknown[] = [];

  constructor(code: string, option: string, message: string, options?: { cause?: unknown }) {
    super(code, `${option}: ${message}`, options);
    this.option = option;
  }
}

/** Wraps a kernel failure of an option: `--network-macvlan=eth0: RTNETLINK: cannot …: Device or resource busy (EBUSY)`. */
export function setupFailed(option: string, err: unknown, hint?: string): NetworkSetupError {
  if (err instanceof NetworkSetupError) return err;
  const text = err instanceof Error ? err.message : String(err);
  return new NetworkSetupError('NET_SETUP_FAILED', option, hint ? `${text} (${hint})` : text, { cause: err });
}

export function isErrno(err: unknown, ...codes: string[]): err is NetlinkError {
  return err instanceof NetlinkError && codes.includes(err.code);
}

export function describeKind(link: Link): string {
  if (link.kind) return `a ${link.kind}`;
  return link.type === 772 /* ARPHRD_LOOPBACK */ ? 'the loopback device' : 'a hardware device';
}

/** Refuses a name that an existing link has (as name or altname) in the host or the container. */
export async function requireFree(client: LinkClient, option: string, name: string, where: 'host' | 'container'): Promise<void> {
  const existing = await client.getLink(name);
  if (!existing) return;
  const as = existing.name === name ? '' : ` (an alternative name of "${existing.name}")`;
  throw new NetworkSetupError('NET_NAME_EXISTS', option,
    `interface "${name}" already exists in the ${where === 'host' ? "host's" : "container's"} network namespace${as}`);
}

/**
 * Deletes a link by ifindex if it is still the link we made (same name or, for links in the
 * container, same kind: the container may rename its links). An index can be reused once its link
 * is gone, so the check keeps us from deleting somebody else's link.
 */
export async function deleteOwnLink(client: LinkClient, index: number, expect: { name?: string; kind: string }): Promise<boolean> {
  const link = await client.getLink(index);
  if (!link || link.kind !== expect.kind) return false;
  if (expect.name !== undefined && link.name !== expect.name) return false;
  return client.deleteLink(index);
}
