// `--network-zone=ZONE` (Zone=): the main veth `vb-MACHINE` joins the bridge `vz-ZONE`, which the
// first container of the zone creates and the last one removes (setup_bridge(create=true) and
// remove_bridge() in src/nspawn/nspawn-network.c). There is no reference count: "last" means "no
// ports left on the bridge", asked of the kernel under a lock that every creator and remover holds,
// so that one container cannot remove the bridge between another one creating and joining it.
//
// The lock is taken twice, always in this order:
//   1. systemd-nspawn's own, /run/systemd/nspawn-network-zone (an OFD lock, as make_lock_file()
//      takes it; the file is unlinked by whoever releases it, and a lock on an unlinked file is
//      retried), when /run/systemd exists: a real systemd-nspawn in the same zone is then excluded too;
//   2. ours, flock() on /run/nspawn-ts/network-zone.lock, which works without systemd.
//
// A launcher killed with SIGKILL leaves its zone's bridge behind (the veth dies with the
// container's namespace): the next container of the zone joins it and removes it when it goes, and
// cleanupStaleZoneBridges() (for the sidecar) removes every vz- bridge without ports.
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { NspawnError } from '../../errors.js';
import { logger } from '../../log.js';
import { lock, type LockOptions, LockTimeoutError } from '../../common/lock.js';
import type { Link } from '../rtnl.js';
import { VethPair, joinBridge, type VethPairInfo, type VethPairSpec } from './veth.js';
import {
  type LinkClient, type ModeContext, type NetworkMode, type UndoReason, type ZoneLock, NetworkSetupError, describeKind, isErrno,
  setupFailed,
} from './types.js';

const log = logger('net');

/** systemd-nspawn's zone lock (v252 and later). */
export const SYSTEMD_ZONE_LOCK = '/run/systemd/nspawn-network-zone';
/** Ours. */
export const ZONE_LOCK = '/run/nspawn-ts/network-zone.lock';

/** systemd-nspawn tries to join a bridge that keeps vanishing this many times (setup_bridge: n > 10). */
const JOIN_ATTEMPTS = 11;

export interface ZoneLockOptions {
  /** our lock file (default /run/nspawn-ts/network-zone.lock) */
  path?: string;
  /** systemd-nspawn's lock file; null: do not take it (default: taken when /run/systemd exists) */
  systemdPath?: string | null;
  /** give up after this long (default 60 s) */
  timeoutMs?: number;
}

/** A lock of the zone (src/common/lock.ts); a timeout names the lock and the likely cause. */
async function take(path: string, deadline: number, opts: LockOptions): Promise<() => void> {
  try {
    const l = await lock(path, { ...opts, timeoutMs: Math.max(0, deadline - Date.now()) });
    return () => l.release();
  } catch (err) {
    if (!(err instanceof LockTimeoutError)) throw err;
    throw new NspawnError('NET_ZONE_LOCK_TIMEOUT', `the network zone lock ${path} stayed taken by another process; is a container start hanging?`);
  }
}

/** The lock around creating, joining and removing zone bridges, shared by every process on the host. */
export function zoneLock(opts: ZoneLockOptions = {}): ZoneLock {
  const path = opts.path ?? ZONE_LOCK;
  const timeoutMs = opts.timeoutMs ?? 60_000;
  return {
    async acquire(): Promise<() => void> {
      const deadline = Date.now() + timeoutMs;
      const systemdPath = opts.systemdPath === undefined ? (existsSync(dirname(SYSTEMD_ZONE_LOCK)) ? SYSTEMD_ZONE_LOCK : null) : opts.systemdPath;
      let releaseSystemd: (() => void) | undefined;
      if (systemdPath !== null) {
        try {
          // make_lock_file(path, LOCK_EX) of systemd: an OFD write lock on a file that must still be
          // linked once held; release_lock_file() unlinks it, then unlocks by closing
          releaseSystemd = await take(systemdPath, deadline, { kind: 'ofd', unlinkOnRelease: true, createDir: false });
        } catch (err) {
          // a read-only or foreign /run/systemd: nothing of systemd's can be running there with us
          const code = (err as NodeJS.ErrnoException).code;
          if (code !== 'EACCES' && code !== 'EROFS' && code !== 'EPERM' && code !== 'ENOENT') throw err;
          log.debug(`not taking systemd-nspawn's zone lock ${systemdPath}: ${code}`);
        }
      }
      let releaseOurs: () => void;
      try {
        releaseOurs = await take(path, deadline, { kind: 'flock' });
      } catch (err) {
        releaseSystemd?.();
        throw err;
      }
      let released = false;
      return () => {
        if (released) return;
        released = true;
        try {
          releaseOurs();
        } finally {
          releaseSystemd?.();
        }
      };
    },
  };
}

async function withLock<T>(lock: ZoneLock, fn: () => Promise<T>): Promise<T> {
  const release = await lock.acquire();
  try {
    return await fn();
  } finally {
    release();
  }
}

/** Under the lock: deletes the bridge if it has no ports. Returns whether it was deleted. */
async function removeIfEmptyLocked(host: LinkClient, bridge: string): Promise<boolean> {
  const link = await host.getLink(bridge);
  if (!link || link.kind !== 'bridge') return false;
  // the kernel filters by master; checked again in case an older one ignored the filter
  const ports = (await host.listLinks({ master: link.index })).filter((p) => p.master === link.index);
  if (ports.length > 0) return false;
  return host.deleteLink(link.index);
}

/** remove_bridge(): deletes `vz-ZONE` if no container is on it any more. */
export function removeZoneBridgeIfEmpty(host: LinkClient, lock: ZoneLock, bridge: string): Promise<boolean> {
  return withLock(lock, () => removeIfEmptyLocked(host, bridge));
}

/**
 * Removes every zone bridge (`vz-*`) that has no ports: the leftovers of launchers (ours or
 * systemd-nspawn) that were killed before they could remove them. For the sidecar, at start and
 * whenever it likes; safe while containers start, because creating and joining happen under the
 * same lock. Returns the names removed.
 */
export async function cleanupStaleZoneBridges(opts: { host: LinkClient; lock?: ZoneLock }): Promise<string[]> {
  const lock = opts.lock ?? zoneLock();
  return withLock(lock, async () => {
    const removed: string[] = [];
    for (const b of await opts.host.listLinks({ kind: 'bridge' })) {
      if (!b.name.startsWith('vz-')) continue;
      if (await removeIfEmptyLocked(opts.host, b.name)) removed.push(b.name);
    }
    return removed;
  });
}

export class ZoneMode implements NetworkMode {
  readonly option: string;
  readonly pair: VethPair;
  private bridgeIfindex: number | undefined;
  private createdBridge = false;

  constructor(readonly zone: string, readonly bridge: string, spec: VethPairSpec, private readonly freed: ReadonlySet<string> = new Set()) {
    this.option = `--network-zone=${zone}`;
    this.pair = new VethPair(this.option, spec);
  }

  async validate(ctx: ModeContext): Promise<void> {
    const existing = await ctx.host.getLink(this.bridge);
    if (existing && existing.kind !== 'bridge') {
      throw new NetworkSetupError('NET_NOT_A_BRIDGE', this.option,
        `interface "${this.bridge}" exists and is not a bridge (it is ${describeKind(existing)}), so the zone cannot use it`);
    }
    await this.pair.validate(ctx, this.freed);
  }

  async apply(ctx: ModeContext): Promise<void> {
    const info = await this.pair.create(ctx);
    await withLock(ctx.zoneLock, async () => {
      for (let attempt = 1; ; attempt++) {
        const bridge = await this.ensureBridge(ctx);
        try {
          await joinBridge(ctx.host, info.hostIfindex, bridge.index);
          this.bridgeIfindex = bridge.index;
          return;
        } catch (err) {
          // removed under us by something that does not take the lock (the kernel then answers
          // EINVAL for the stale master ifindex, or ENODEV): make it again
          const gone = isErrno(err, 'ENODEV', 'EINVAL') && (await ctx.host.getLink(bridge.index))?.name !== this.bridge;
          if (!gone || attempt >= JOIN_ATTEMPTS) {
            throw setupFailed(this.option, err, `adding "${info.hostIfname}" to bridge "${this.bridge}"`);
          }
        }
      }
    });
  }

  private async ensureBridge(ctx: ModeContext): Promise<Link> {
    let link = await ctx.host.getLink(this.bridge);
    if (!link) {
      try {
        await ctx.host.createBridge({ name: this.bridge });
        this.createdBridge = true;
        log.debug(`created zone bridge ${this.bridge}`);
      } catch (err) {
        if (!isErrno(err, 'EEXIST')) throw setupFailed(this.option, err);
      }
      link = await ctx.host.getLink(this.bridge);
      if (!link) throw new NetworkSetupError('NET_SETUP_FAILED', this.option, `bridge "${this.bridge}" vanished right after it was created`);
    }
    if (link.kind !== 'bridge') {
      throw new NetworkSetupError('NET_NOT_A_BRIDGE', this.option, `interface "${this.bridge}" exists and is not a bridge (it is ${describeKind(link)})`);
    }
    return link;
  }

  /** Whether this start made the bridge (it was not there). */
  get bridgeCreated(): boolean {
    return this.createdBridge;
  }

  info(): VethPairInfo & { bridge: string; bridgeIfindex: number; zone: string } {
    if (this.bridgeIfindex === undefined) throw new Error('internal: the zone veth was not set up');
    return { ...this.pair.info(), bridge: this.bridge, bridgeIfindex: this.bridgeIfindex, zone: this.zone };
  }

  /** Deletes the veth, then the bridge if it was the zone's last port (also a stale, empty bridge). */
  async undo(ctx: ModeContext, _reason: UndoReason, errors: unknown[]): Promise<void> {
    await this.pair.remove(ctx, errors);
    this.bridgeIfindex = undefined;
    try {
      if (await removeZoneBridgeIfEmpty(ctx.host, ctx.zoneLock, this.bridge)) log.debug(`removed zone bridge ${this.bridge}`);
    } catch (err) {
      errors.push(setupFailed(this.option, err, `removing the zone bridge "${this.bridge}"`));
    }
  }
}
