// What launch() takes and gives: its options, the hooks other subsystems join in with, the
// container's context as the hooks see it, how the container ended, and the launcher's error.
import { NspawnError } from '../errors.js';
import type { ConsoleSetting, LaunchSpec } from './spec.js';
import type { UidRange } from './namespaces.js';
import type { PlanOp } from './plan.js';
import type { MachineRegistry } from './registry.js';

export interface ContainerContext {
  readonly machine: string;
  readonly spec: LaunchSpec;
  /** host PID of the container's PID 1 */
  readonly pid: number;
  /** its network namespace (its own with a private network, else the host's) */
  readonly netnsPath: string;
  /** the user namespace's range, if it has one */
  readonly userns?: UidRange;
}

export interface LaunchHooks {
  /** before anything is made (machine record, cgroups, namespaces): refuse a start that cannot work */
  preflight?(spec: LaunchSpec): void | Promise<void>;
  afterClone?(ctx: ContainerContext): void | Promise<void>;
  beforeExec?(ctx: ContainerContext): void | Promise<void>;
  afterExit?(ctx: ContainerContext): void | Promise<void>;
  planMounts?(info: { root: string; spec: LaunchSpec; uidShift?: number }): PlanOp[];
  /**
   * Plan ops run inside the container (after pivot_root, container paths) once the beforeExec
   * hooks are done: e.g. a bind of a file a hook wrote into the container's /run.
   */
  planAfterHooks?(spec: LaunchSpec): PlanOp[];
}

export interface LaunchOptions {
  /**
   * The subsystems' hooks, in the order they run after the clone (reversed after the exit), or how
   * to load them when the run begins. The entry point (main.ts) passes the network's
   * (src/runtime/net/hooks.ts launchHooks): the launcher knows no network module.
   */
  hooks?: LaunchHooks[] | (() => Promise<LaunchHooks[]>);
  /** time between the kill signal and SIGKILL when stopping (default: $NSPAWN_TS_STOP_TIMEOUT_SEC, else 10 s, 30 s for -b) */
  stopTimeoutMs?: number;
  /** install SIGTERM/SIGINT/SIGHUP handlers that stop the container (default true) */
  handleSignals?: boolean;
  /** overrides the spec's --console= ('auto': systemd's default, interactive on a terminal, else read-only) */
  console?: 'auto' | ConsoleSetting;
  /** the machine registry (default: the one under /run/nspawn-ts); null: do not record */
  registry?: MachineRegistry | null;
  /** where ephemeral layers go (default <$NSPAWN_TS_STATE_DIR or /var/lib/nspawn-ts>/ephemeral) */
  ephemeralDir?: string;
  /** status lines ("Container … exited successfully.") go here; default stderr unless --quiet */
  status?: (line: string) => void;
}

/** How the container ended. */
export interface ContainerExit {
  /** the launcher's exit code */
  exitCode: number;
  /** PID 1's own status */
  code: number | null;
  signal: number | null;
  /** halt/poweroff/reboot() inside the container end PID 1 with SIGINT/SIGHUP (kernel: reboot_pid_ns) */
  reboot: boolean;
}

export class LaunchError extends NspawnError {
  readonly exitCode: number;

  constructor(code: string, message: string, exitCode = 1, options?: { cause?: unknown }) {
    super(code, message, options);
    this.exitCode = exitCode;
  }
}
