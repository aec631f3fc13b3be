// The host-side preparation of one start, a unit per concern: each makes its part, registers how
// to undo it on the start's UndoStack (run newest first when the container ends, or when the start
// fails halfway), and returns what the plan needs (container-plan.ts).
import { chmodSync, chownSync, statSync } from 'node:fs';
import { defaultStateDir } from '../common/paths.js';
import { ConfigError, errorMessage } from '../errors.js';
import { logger } from '../log.js';
import { detectLayout, MachineCgroup, type CgroupLayout } from './cgroups.js';
import { SupportCgroups } from './container-cgroup.js';
import type { InitInfo } from './container-root.js';
import { createEphemeral, sweepEphemeral, type EphemeralRoot } from './ephemeral.js';
import { shiftOwnership } from './file-tree.js';
import { LaunchError } from './launch-types.js';
import type { RootSource } from './mounts.js';
import { fixedUidRange, pickUidRange, type UidRange } from './namespaces.js';
import { ContainerNotifySocket } from './notify.js';
import { parseProperties } from './properties.js';
import { MachineRegistry, RegistryError, defaultRunDir, summarizeSpec } from './registry.js';
import type { LaunchSpec } from './spec.js';

const log = logger('launcher');

/** What a start made, to be undone newest first. */
export class UndoStack {
  private readonly steps: Array<{ what: string; fn: () => void | Promise<void> }> = [];

  push(what: string, fn: () => void | Promise<void>): void {
    this.steps.push({ what, fn });
  }

  /** Runs every step, newest first; a failing step is logged and the others still run. */
  async run(): Promise<void> {
    while (this.steps.length > 0) {
      const { what, fn } = this.steps.pop() as { what: string; fn: () => void | Promise<void> };
      try {
        await fn();
      } catch (err) {
        log.warn(`cleanup: failed to ${what}: ${errorMessage(err)}`);
      }
    }
  }
}

/**
 * The machine record claims the name: nothing else of this machine exists before it
 * (--register=no: none, as systemd-nspawn then skips systemd-machined; machinectl-ts won't see it).
 * Returns whether a record was made.
 */
export function claimMachine(registry: MachineRegistry | null, spec: LaunchSpec, undo: UndoStack): boolean {
  if (!registry || !spec.register) return false;
  try {
    registry.register({ name: spec.machine, rootDirectory: spec.directory, spec: summarizeSpec(spec) });
  } catch (err) {
    if (err instanceof RegistryError) throw new ConfigError(err.message, { code: err.code, cause: err });
    throw err;
  }
  undo.push('remove the machine record', () => { registry.unregister(spec.machine); });
  return true;
}

/**
 * -U/--private-users=: the range (a picked one is held until the end), and what
 * --private-users-ownership= does with the tree: chowned into the range, mapped (an ID-mapped
 * root: `mapRoot`), or neither.
 */
export function prepareUserNamespace(spec: LaunchSpec, directory: string, undo: UndoStack): { userns?: UidRange; mapRoot: boolean } {
  let userns: UidRange | undefined;
  if (spec.privateUsers.mode === 'pick') {
    const held = pickUidRange(spec.machine, directory);
    undo.push('release the UID range lock', () => held.release());
    userns = held;
  } else {
    userns = fixedUidRange(spec.privateUsers, directory);
  }
  const ownership = spec.privateUsersOwnership ?? 'auto';
  const mapRoot = userns !== undefined && ownership === 'map';
  if (mapRoot && spec.ephemeral) {
    throw new ConfigError('--private-users-ownership=map and --ephemeral may not be combined: the overlay of an ephemeral container is not ID-mapped; '
      + 'use --private-users-ownership=chown (or shift the tree once without --ephemeral)', { code: 'CFG_CONFLICT' });
  }
  const shiftOwner = userns !== undefined
    && (ownership === 'chown' || (ownership === 'auto' && (spec.privateUsersChown || spec.privateUsers.mode === 'pick')));
  if (shiftOwner && userns && spec.ephemeral) {
    if (((statSync(directory).uid & 0xffff0000) >>> 0) !== userns.shift) {
      throw new ConfigError(`--ephemeral with a user namespace needs ${directory} to be owned by the range already (UID ${userns.shift}); `
        + 'shift it once with --private-users=' + userns.shift + ' --private-users-chown (without --ephemeral)', { code: 'CFG_CONFLICT' });
    }
  } else if (spec.privateUsersChown && userns === undefined && spec.privateUsers.mode === 'no') {
    // --private-users-chown without a user namespace does nothing, as in systemd-nspawn
  } else if (shiftOwner && userns) {
    const n = shiftOwnership(directory, userns.shift);
    if (n > 0) log.debug(`shifted ownership of ${n} files in ${directory} to ${userns.shift}`);
  }
  return userns ? { userns, mapRoot } : { mapRoot };
}

/** The root the container gets: its directory, or (-x/--ephemeral) an overlay on it, removed at the end. */
export function prepareRoot(spec: LaunchSpec, directory: string, ephemeralDir: string | undefined, undo: UndoStack): { root: string; rootSource: RootSource } {
  if (!spec.ephemeral) return { root: directory, rootSource: { kind: 'directory', directory } };
  const base = ephemeralDir ?? `${defaultStateDir()}/ephemeral`;
  sweepEphemeral(base);
  const eph: EphemeralRoot = createEphemeral(base, spec.machine);
  undo.push('remove the ephemeral layer', () => eph.remove());
  const st = statSync(directory);
  chownSync(eph.upper, st.uid, st.gid);
  chmodSync(eph.upper, st.mode & 0o7777);
  return { root: eph.mountPoint, rootSource: { kind: 'overlay', lower: directory, upper: eph.upper, work: eph.work } };
}

/** Resource control (cgroups.ts) and the container's own cgroups (container-cgroup.ts). */
export function prepareCgroups(spec: LaunchSpec, init: InitInfo | undefined, userns: UidRange | undefined, undo: UndoStack):
  { layout: CgroupLayout; cgroup?: MachineCgroup; support?: SupportCgroups } {
  const layout: CgroupLayout = detectLayout();
  if (spec.mode === 'boot' && init?.systemd && layout.mode === 'none') {
    throw new LaunchError('CGROUP_UNAVAILABLE', 'systemd in the container needs cgroups, and this host has no cgroup hierarchy mounted at /sys/fs/cgroup');
  }
  if (layout.mode === 'none') return { layout };
  // name=systemd too (hybrid/legacy hosts): a systemd init tracks its units there
  const named = layout.hierarchies.some((h) => h.name === 'systemd') ? ['systemd'] : [];
  const cgroup = MachineCgroup.create(spec.machine, parseProperties(spec.properties), { layout, namedHierarchies: named });
  // with a user namespace, the container's root manages its subtree (systemd's Delegate=yes)
  if (userns) cgroup.delegate(userns.shift, userns.shift);
  undo.push('remove the machine cgroups', () => cgroup.remove());
  const support = SupportCgroups.create(layout, spec.machine);
  undo.push('remove the container cgroups', () => support.remove());
  return { layout, cgroup, support };
}

/** The container's sd_notify socket (/run/host/notify inside). */
export function createNotifySocket(machine: string, userns: UidRange | undefined, undo: UndoStack): ContainerNotifySocket {
  const notify = ContainerNotifySocket.create(`${defaultRunDir()}/notify/${machine}.${process.pid}`, userns?.shift ?? 0);
  undo.push('remove the notify socket', () => notify.close());
  return notify;
}
