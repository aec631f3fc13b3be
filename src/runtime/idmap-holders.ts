// ID-mapped binds (--bind=…:idmap, --private-users-ownership=map) need a user namespace with the
// mapping to hand to mount_setattr(MOUNT_ATTR_IDMAP): one process per mapping holds one, until the
// mounts are made (after the clone); then they are killed and reaped.
import { errorMessage } from '../errors.js';
import { POLL_READABLE, sys, type FdWatcher } from '../native.js';
import { LaunchError } from './launch-types.js';
import { idmapLines } from './mounts.js';
import type { UidRange } from './namespaces.js';
import type { UndoStack } from './preparation.js';
import { fileSystemOf } from './root-setup.js';

export class IdmapHolders {
  /** processes holding the user namespaces of ID-mapped binds, by mapping */
  private readonly holders = new Map<string, { pid: number; pidfd: number }>();

  constructor(private readonly undo: UndoStack) {}

  get size(): number {
    return this.holders.size;
  }

  /** /proc/PID/ns/user of a user namespace with these maps (one per mapping), for ID-mapped binds. */
  userns(uidMap: string, gidMap: string): string {
    const key = `${uidMap}|${gidMap}`;
    let holder = this.holders.get(key);
    if (!holder) {
      if (this.holders.size === 0) this.undo.push('stop the ID-mapping user namespaces', () => this.release());
      try {
        holder = sys().usernsHolder(uidMap, gidMap);
      } catch (err) {
        throw new LaunchError('IDMAP_USERNS', `failed to create the user namespace of an ID-mapped bind (uid_map ${JSON.stringify(uidMap.trim())}): ${errorMessage(err)}`, 1, { cause: err });
      }
      this.holders.set(key, holder);
    }
    return `/proc/${holder.pid}/ns/user`;
  }

  /** --private-users-ownership=map: host IDs 0..range-1 of the tree are the container's (systemd's REMOUNT_IDMAPPING_HOST_ROOT). */
  rootIdmap(directory: string, userns: UidRange): { userns: string; fstype?: string } {
    const lines = idmapLines('idmap', userns, 0, 0);
    const fstype = fileSystemOf(directory);
    return { userns: this.userns(lines, lines), ...(fstype ? { fstype } : {}) };
  }

  /**
   * -U -x: the overlay's lower layer (the tree, owned from host ID `base` on) shown as owned from
   * the range's first ID: the tree stays as it is, and nothing is copied or chowned.
   */
  treeIdmap(directory: string, userns: UidRange, base: number): { userns: string; fstype?: string } {
    if (base === 0) return this.rootIdmap(directory, userns);
    const lines = `${base} ${userns.shift} ${userns.range}\n`;
    const fstype = fileSystemOf(directory);
    return { userns: this.userns(lines, lines), ...(fstype ? { fstype } : {}) };
  }

  /** Kills and reaps the holders (the mounts keep what they need). */
  async release(): Promise<void> {
    const s = sys();
    const holders = [...this.holders.values()];
    this.holders.clear();
    await Promise.all(holders.map((h) => new Promise<void>((resolve) => {
      try {
        s.pidfdSendSignal(h.pidfd, 9);
      } catch { /* gone already */ }
      let watcher: FdWatcher | undefined;
      const reap = (): boolean => {
        if (!s.waitPidfd(h.pidfd)) return false;
        watcher?.stop();
        s.close(h.pidfd);
        resolve();
        return true;
      };
      if (!reap()) watcher = new s.FdWatcher(h.pidfd, POLL_READABLE, reap);
    })));
  }
}
