// --resolv-conf= / ResolvConf= in the launcher (a LaunchHooks of src/runtime/launcher.ts), with
// systemd-nspawn's order and semantics (resolv.ts has the modes):
//
//   planMounts  decides the mode once, from the launch spec and the host (the `auto` facts). A
//               bind mode becomes plan ops run in the container's mount namespace before
//               pivot_root (with a user namespace: before it is made, so the mount is locked): an
//               empty target when there is none, the bind of the host's file, then read-only,
//               nosuid, nodev (mount_setattr: only adds flags). When the bind cannot work — the
//               source is missing, or the target is missing on a read-only root — it falls back to
//               copying, as systemd does.
//   beforeExec  the container's file system is complete (its root is /proc/PID/root, through its
//               own mount namespace: an --ephemeral overlay gets the change, not the image): copy,
//               replace or delete /etc/resolv.conf there, files owned by the container's root.
//
// Warnings (a copy that could not be made, a resolver on the host's loopback that a container with
// its own network cannot reach) are printed; like systemd, none of them stops the container.
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { posix } from 'node:path';
import { logger } from '../../log.js';
import type { PlanOp } from '../plan.js';
import type { ContainerNetworkRequest } from '../../net/model.js';
import type { NetworkHookContext } from './request.js';
import {
  applyResolvConf, chaseInRoot, DEFAULT_RESOLV_CONF_PATHS, loopbackResolverWarning, probeResolvConfFacts, resolveResolvConfMode,
  type ResolvConfDecision, type ResolvConfPaths,
} from '../../net/resolv.js';

const log = logger('resolv');

/** mount_setattr() flags (linux/mount.h). */
const MOUNT_ATTR_RDONLY = 0x1;
const MOUNT_ATTR_NOSUID = 0x2;
const MOUNT_ATTR_NODEV = 0x4;
const MS_BIND = 0x1000;

export interface ResolvConfHookOptions {
  /** the host's source files (default: the real ones; tests inject fixtures) */
  paths?: ResolvConfPaths;
  /** for `auto`: where to look for resolved's stub listener (default /proc/net/udp) */
  procNetUdp?: string;
  /** where warnings go (default: the log) */
  warn?: (message: string) => void;
}

type HookContext = Pick<NetworkHookContext, 'pid' | 'request' | 'userns'>;

/** Directories the mount plan puts a fresh tmpfs on: a target below them never exists on disk. */
const TMPFS_DIRS = ['/run/', '/tmp/', '/dev/'];

/**
 * The bind's plan ops, or why it cannot be made (then the caller copies instead). `directory` is the
 * container's root directory as it is on disk, `root` where the launcher mounts it.
 */
export function resolvConfBindPlan(directory: string, root: string, source: string, uidShift?: number):
  { ops: PlanOp[]; containerPath: string } | { fallback: string } {
  if (!existsSync(source)) return { fallback: `Failed to bind mount ${source} on /etc/resolv.conf, copying instead: ${source} does not exist` };
  let target: { path: string; exists: boolean };
  try {
    target = chaseInRoot(directory, '/etc/resolv.conf', { nonexistent: true });
  } catch (err) {
    return { fallback: `Failed to resolve /etc/resolv.conf in the container, copying instead: ${(err as Error).message}` };
  }
  const containerPath = '/' + posix.relative(posix.resolve(directory), target.path);
  if (containerPath.startsWith('/..')) return { fallback: `/etc/resolv.conf resolves outside the container root (${target.path}), copying instead` };
  const inTmpfs = TMPFS_DIRS.some((d) => containerPath.startsWith(d));
  const onRoot = posix.join(root, containerPath);
  const ops: PlanOp[] = [];
  if (!target.exists || inTmpfs) {
    if (!inTmpfs && root === directory) {
      // the target must be made on the root itself: not on a read-only one
      try {
        accessSync(posix.dirname(target.path), constants.W_OK);
      } catch (err) {
        return { fallback: `Failed to create /etc/resolv.conf to bind ${source} over, copying instead: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` };
      }
    }
    ops.push({ op: 'touch', path: onRoot, mode: 0o644, parents: true });
    // the empty target belongs to the container's root, as a copy would
    if (uidShift !== undefined) ops.push({ op: 'chown', path: onRoot, uid: uidShift, gid: uidShift });
  }
  ops.push({ op: 'mount', source, target: onRoot, flags: MS_BIND });
  ops.push({ op: 'setattr', path: onRoot, set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV });
  return { ops, containerPath };
}

export function resolvConfHooks(opts: ResolvConfHookOptions = {}): {
  planMounts(info: { root: string; request: ContainerNetworkRequest; uidShift?: number }): PlanOp[];
  beforeExec(ctx: HookContext): void;
  /** the decision, once planMounts ran (for tests and --verbose) */
  decision(): ResolvConfDecision | undefined;
} {
  const paths = opts.paths ?? DEFAULT_RESOLV_CONF_PATHS;
  const warn = opts.warn ?? ((m: string) => log.warn(m));
  let decision: ResolvConfDecision | undefined;
  /** the bind was planned: nothing left to do before exec */
  let bound = false;
  return {
    planMounts({ root, request: spec, uidShift }) {
      bound = false;
      const facts = {
        ...probeResolvConfFacts(paths, opts.procNetUdp),
        privateNetwork: spec.network.private,
        // systemd's etc_writable(): not --read-only, which this launcher does not offer
        etcWritable: true,
      };
      decision = resolveResolvConfMode(spec.resolvConf, facts, paths);
      log.debug(`--resolv-conf=${spec.resolvConf}: ${decision.mode}`);
      const action = decision.action;
      if (action.kind !== 'bind') return [];
      const plan = resolvConfBindPlan(spec.directory, root, action.source, uidShift);
      if ('fallback' in plan) {
        warn(plan.fallback);
        // systemd's fallback: copy the same source
        decision = { mode: decision.mode, action: { kind: 'copy', source: action.source } };
        return [];
      }
      try {
        const w = loopbackResolverWarning(readFileSync(action.source, 'utf8'), action.source, spec.network.private);
        if (w) warn(w);
      } catch {
        // unreadable: the mount will say so
      }
      bound = true;
      return plan.ops;
    },

    beforeExec(ctx) {
      if (!decision || bound || decision.action.kind === 'off') return;
      const applyOpts: Parameters<typeof applyResolvConf>[2] = { paths, privateNetwork: ctx.request.network.private };
      if (ctx.userns) applyOpts.chown = { uid: ctx.userns.shift, gid: ctx.userns.shift };
      const r = applyResolvConf(`/proc/${ctx.pid}/root`, decision, applyOpts);
      for (const w of r.warnings) warn(w.replaceAll(`/proc/${ctx.pid}/root`, ''));
      log.debug(`/etc/resolv.conf: ${r.outcome}`);
    },

    decision: () => decision,
  };
}
