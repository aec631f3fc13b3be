// The host-side preparation of one start, a unit per concern: each makes its part, registers how
// to undo it on the start's UndoStack (run newest first when the container ends, or when the start
// fails halfway), and returns what the plan needs (container-plan.ts).
import { chmodSync, chownSync, statSync } from 'node:fs';
import { defaultStateDir } from '../common/paths.js';
import { ConfigError, errorMessage } from '../errors.js';
import { logger } from '../log.js';
import { sys } from '../native.js';
import { detectLayout, MachineCgroup, type CgroupLayout } from './cgroups.js';
import { SupportCgroups, boundDeviceRules, deviceAllowRules } from './container-cgroup.js';
import type { InitInfo } from './container-root.js';
import { createEphemeral, sweepEphemeral, type EphemeralRoot } from './ephemeral.js';
import { copyTree, shiftedId, shiftOwnership } from './file-tree.js';
import type { IdmapHolders } from './idmap-holders.js';
import { LaunchError } from './launch-types.js';
import type { RootSource } from './mounts.js';
import { fixedUidRange, pickUidRange, rootOwnerBase, type UidRange } from './namespaces.js';
import { ContainerNotifySocket } from './notify.js';
import { parseProperties } from './properties.js';
import { MachineRegistry, RegistryError, defaultRunDir, summarizeSpec } from './registry.js';
import { fileSystemOf } from './root-setup.js';
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
export async function claimMachine(registry: MachineRegistry | null, spec: LaunchSpec, undo: UndoStack): Promise<boolean> {
  if (!registry || !spec.register) return false;
  try {
    await registry.register({ name: spec.machine, rootDirectory: spec.directory, spec: summarizeSpec(spec) });
  } catch (err) {
    if (err instanceof RegistryError) throw new ConfigError(err.message, { code: err.code, cause: err });
    throw err;
  }
  undo.push('remove the machine record', async () => { await registry.unregister(spec.machine); });
  return true;
}

/**
 * How -x gets its lower layer with a user namespace whose range does not own the tree: the tree
 * bound ID-mapped into the range (`idmap`), or where its file system cannot be ID-mapped, a copy
 * with shifted owners (`copy`, as systemd-nspawn's -x copies). Undefined: the tree as it is.
 */
export type EphemeralLower = { idmap: { userns: string; fstype?: string } } | { copy: true };

/**
 * -U/--private-users=: the range (a picked one is held until the end), and what
 * --private-users-ownership= does with the tree: chowned into the range, mapped (an ID-mapped
 * root: `mapRoot`), or neither; with -x the tree is left as it is (`lower`).
 */
export function prepareUserNamespace(spec: LaunchSpec, directory: string, undo: UndoStack, idmap: IdmapHolders):
  { userns?: UidRange; mapRoot: boolean; lower?: EphemeralLower } {
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
  const shiftOwner = userns !== undefined
    && (ownership === 'chown' || (ownership === 'auto' && (spec.privateUsersChown || spec.privateUsers.mode === 'pick')));
  let lower: EphemeralLower | undefined;
  if ((shiftOwner || mapRoot) && userns && spec.ephemeral) {
    // -U -x: a tree the range owns already is used as it is
    const base = rootOwnerBase(directory);
    if (mapRoot || base !== userns.shift) {
      const m = idmap.treeIdmap(directory, userns, base);
      lower = sys().idmapSupported(directory, m.userns) ? { idmap: m } : { copy: true };
    }
  } else if (spec.privateUsersChown && userns === undefined && spec.privateUsers.mode === 'no') {
    // --private-users-chown without a user namespace does nothing, as in systemd-nspawn
  } else if (shiftOwner && userns) {
    const n = shiftOwnership(directory, userns.shift);
    if (n > 0) log.debug(`shifted ownership of ${n} files in ${directory} to ${userns.shift}`);
  }
  return { ...(userns ? { userns } : {}), mapRoot, ...(lower ? { lower } : {}) };
}

/** The root the container gets: its directory, or (-x/--ephemeral) an overlay on it, removed at the end. */
export function prepareRoot(spec: LaunchSpec, directory: string, ephemeralDir: string | undefined, undo: UndoStack,
  shifted?: { userns: UidRange; lower: EphemeralLower }): { root: string; rootSource: RootSource } {
  if (!spec.ephemeral) return { root: directory, rootSource: { kind: 'directory', directory } };
  const base = ephemeralDir ?? `${defaultStateDir()}/ephemeral`;
  sweepEphemeral(base);
  const eph: EphemeralRoot = createEphemeral(base, spec.machine);
  undo.push('remove the ephemeral layer', () => eph.remove());
  const st = statSync(directory);
  let lower = directory;
  if (shifted && 'copy' in shifted.lower) {
    const shift = shifted.userns.shift;
    log.info(`the ${fileSystemOf(directory) ?? 'unknown'} file system of ${directory} cannot be ID-mapped: copying the tree for this run, its owners shifted to ${shift}`);
    const copy = `${eph.dir}/copy`;
    try {
      const r = copyTree(directory, copy, { owner: (u, g) => [shiftedId(u, shift), shiftedId(g, shift)] });
      log.debug(`copied ${r.entries} entries (${r.reflinked} files reflinked, ${r.copied} copied)`);
    } catch (err) {
      throw new LaunchError('EPHEMERAL_COPY', `failed to copy ${directory} for --ephemeral: ${errorMessage(err)}`, 1, { cause: err });
    }
    lower = copy;
  }
  // the upper layer's root is the container's root directory: owned as the (mapped) tree's root
  const upperId = (id: number): number => (shifted ? shiftedId(id, shifted.userns.shift) : id);
  chownSync(eph.upper, upperId(st.uid), upperId(st.gid));
  chmodSync(eph.upper, st.mode & 0o7777);
  const idmapped = shifted && 'idmap' in shifted.lower ? { lowerIdmap: { ...shifted.lower.idmap, mountPoint: eph.lower } } : {};
  return { root: eph.mountPoint, rootSource: { kind: 'overlay', lower, upper: eph.upper, work: eph.work, ...idmapped } };
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
  const props = parseProperties(spec.properties);
  const cgroup = MachineCgroup.create(spec.machine, props, { layout, namedHierarchies: named });
  // with a user namespace, the container's root manages its subtree (systemd's Delegate=yes)
  if (userns) cgroup.delegate(userns.shift, userns.shift);
  undo.push('remove the machine cgroups', () => cgroup.remove());
  // device nodes bound in, and DeviceAllow=, join the devices policy (as systemd-nspawn's scope properties)
  const devices = deviceAllowRules(props.DeviceAllow);
  for (const w of devices.warnings) log.warn(w);
  const support = SupportCgroups.create(layout, spec.machine, [...boundDeviceRules(spec.binds), ...devices.rules]);
  undo.push('remove the container cgroups', () => support.remove());
  return { layout, cgroup, support };
}

/** The container's sd_notify socket (/run/host/notify inside). */
export function createNotifySocket(machine: string, userns: UidRange | undefined, undo: UndoStack): ContainerNotifySocket {
  const notify = ContainerNotifySocket.create(`${defaultRunDir()}/notify/${machine}.${process.pid}`, userns?.shift ?? 0);
  undo.push('remove the notify socket', () => notify.close());
  return notify;
}
