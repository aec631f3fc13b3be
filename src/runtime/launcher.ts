// The launcher: a LaunchSpec in, a running container, its exit code out. It prepares the host side
// (machine record, cgroups, ephemeral overlay, user-namespace range), turns the spec into a plan
// (mounts.ts, caps.ts, seccomp.ts), clones the container (native spawnContainer), answers its sync
// points (cgroup moves, uid/gid maps, hooks of other subsystems), forwards the console, stops it
// gracefully on SIGTERM/SIGINT, and removes everything it made when it ends — also when starting
// failed halfway.
//
// Hooks (LaunchHooks) are how other subsystems join in without the launcher knowing them:
//   afterClone  the container's PID 1 exists, in its namespaces, and waits (its network namespace
//               is /proc/PID/ns/net): create and move links here.
//   beforeExec  its file system is set up; the payload starts when this resolves (only when given).
//   afterExit   it has ended (or failed to start after afterClone ran): undo what afterClone did.
//   planMounts  extra plan ops run in the container's mount namespace while the host's file system
//               is still visible (before pivot_root; with a user namespace, before the root is moved
//               and the user namespace made, so the mounts are locked as the user's binds are). The
//               root is at `root` then. E.g. a resolv.conf bind mount.
import {
  chmodSync, chownSync, existsSync, readFileSync, realpathSync, renameSync, rmSync, statSync, statfsSync,
} from 'node:fs';
import { randomUUID } from 'node:crypto';
import { posix } from 'node:path';
import { ConfigError, NspawnError, errorMessage } from '../errors.js';
import { logger } from '../log.js';
import { POLL_READABLE, sys, type ChannelMessage, type FdWatcher } from '../native.js';
import { containerCaps, readOwnBoundingSet } from './caps.js';
import { cgroupEntry, detectLayout, MachineCgroup, type CgroupLayout } from './cgroups.js';
import { parseProperties } from './properties.js';
import { PtyForwarder, consoleMode, interactiveConsole, type ConsoleMode } from './console.js';
import { SupportCgroups } from './container-cgroup.js';
import {
  DEFAULT_PATH, execCandidates, findInit, lookupUser, resolveInRoot, supplementaryGroups, type InitInfo, type PasswdEntry,
} from './container-root.js';
import { defaultStateDir } from '../common/paths.js';
import { createEphemeral, sweepEphemeral, type EphemeralRoot } from './ephemeral.js';
import {
  bindIdmap, bindRecursive, buildMountPlan, idmapLines, type ResolvedBind, type ResolvedTmpfs, type RootSource,
} from './mounts.js';
import { copyTree, shiftOwnership } from './file-tree.js';
import {
  containerCloneFlags, fixedUidRange, pickUidRange, writeIdMaps, type UidRange,
} from './namespaces.js';
import { CLONE_NEWCGROUP, CLONE_NEWNET, CLONE_NEWNS, describeOp, type ContainerPlan, type PlanOp } from './plan.js';
import { buildSeccompFilter, seccompSupported } from './seccomp.js';
import { MachineRegistry, RegistryError, defaultRunDir, summarizeSpec } from './registry.js';
import { sweepDeadLaunchers } from './leftovers.js';
import { CONTAINER_NOTIFY_SOCKET, ContainerNotifySocket, notifyManager } from './notify.js';
import { parseSignal, SIGRTMIN } from './cli.js';
import type { ConsoleSetting, LaunchSpec } from './spec.js';

const log = logger('launcher');

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

const SIGNAL_NAMES: Record<number, string> = {
  1: 'SIGHUP', 2: 'SIGINT', 3: 'SIGQUIT', 6: 'SIGABRT', 9: 'SIGKILL', 10: 'SIGUSR1', 12: 'SIGUSR2', 13: 'SIGPIPE',
  14: 'SIGALRM', 15: 'SIGTERM',
};

export function signalName(n: number): string {
  if (SIGNAL_NAMES[n]) return SIGNAL_NAMES[n];
  if (n >= SIGRTMIN) return n === SIGRTMIN ? 'SIGRTMIN' : `SIGRTMIN+${n - SIGRTMIN}`;
  return `signal ${n}`;
}

/**
 * The signal that asks PID 1 to shut down: KillSignal= as configured (--kill-signal= or the
 * .nspawn file), in any mode and for any init. Unset, a booted container gets systemd-nspawn's
 * default, SIGRTMIN+3 (systemd halts on it), unless its init is not systemd: one that has no
 * handler for SIGRTMIN+3 would ignore it, so it gets SIGTERM (busybox init reboots, which ends
 * the container). A container that is not booted has none (0): as systemd-nspawn's
 * verify_arguments() leaves arg_kill_signal, SIGTERM/SIGINT to the launcher then kill it at once.
 */
export function stopSignal(spec: LaunchSpec, init: InitInfo | undefined): number {
  const configured = spec.killSignal !== undefined ? parseSignal(spec.killSignal)?.number : undefined;
  if (configured !== undefined) return configured;
  if (spec.mode !== 'boot') return 0;
  return init?.systemd ? SIGRTMIN + 3 : 15;
}

/** The environment of PID 1, as systemd-nspawn sets it. */
export function containerEnvironment(opts: {
  spec: LaunchSpec; uuid: string; user: PasswdEntry | undefined; term: string | undefined; hostOs: Record<string, string>;
}): string[] {
  const env = new Map<string, string>();
  env.set('PATH', DEFAULT_PATH);
  env.set('container', 'systemd-nspawn');
  env.set('TERM', opts.term ?? 'vt220');
  env.set('HOME', opts.user?.home ?? '/root');
  env.set('USER', opts.user?.name ?? 'root');
  env.set('LOGNAME', opts.user?.name ?? 'root');
  if (opts.user) env.set('SHELL', opts.user.shell);
  env.set('container_uuid', opts.uuid);
  env.set('NOTIFY_SOCKET', CONTAINER_NOTIFY_SOCKET);
  if (opts.hostOs.ID) env.set('container_host_id', opts.hostOs.ID);
  if (opts.hostOs.VERSION_ID) env.set('container_host_version_id', opts.hostOs.VERSION_ID);
  for (const kv of opts.spec.environment) {
    const i = kv.indexOf('=');
    if (i > 0) env.set(kv.slice(0, i), kv.slice(i + 1));
  }
  return [...env].map(([k, v]) => `${k}=${v}`);
}

export function parseOsRelease(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (m) out[m[1] as string] = (m[2] as string).replace(/^(["'])(.*)\1$/, '$2');
  }
  return out;
}

function hostOsRelease(): { path?: string; fields: Record<string, string> } {
  for (const p of ['/etc/os-release', '/usr/lib/os-release']) {
    try {
      return { path: p, fields: parseOsRelease(readFileSync(p, 'utf8')) };
    } catch { /* next */ }
  }
  return { fields: {} };
}

function stopTimeout(spec: LaunchSpec, opts: LaunchOptions): number {
  if (opts.stopTimeoutMs !== undefined) return opts.stopTimeoutMs;
  const env = Number(process.env.NSPAWN_TS_STOP_TIMEOUT_SEC);
  if (Number.isFinite(env) && env > 0) return env * 1000;
  return spec.mode === 'boot' ? 30_000 : 10_000;
}

/** Throws unless `dir` looks like what the mode needs (systemd-nspawn's path_is_os_tree checks). */
function checkRoot(dir: string, spec: LaunchSpec): void {
  let st;
  try {
    st = statSync(dir);
  } catch (err) {
    throw new ConfigError(`Failed to access root directory ${dir}: ${errorMessage(err)}`, { code: 'CFG_DIRECTORY' });
  }
  if (!st.isDirectory()) throw new ConfigError(`${dir} is not a directory`, { code: 'CFG_DIRECTORY' });
  const host = statSync('/');
  if (st.dev === host.dev && st.ino === host.ino) {
    // its /proc, /sys and /dev are the host's own (sysfs cannot be mounted over a busy one); an overlay is a root of its own
    if (!spec.ephemeral) {
      throw new ConfigError(`Spawning container on root directory is not supported: the host's root (${dir}) can be a container's root only `
        + 'with --ephemeral (-x), as systemd-nspawn needs -x or --volatile= (which nspawn-ts does not implement)', { code: 'CFG_DIRECTORY' });
    }
    return;
  }
  if (spec.mode === 'boot') {
    if (!existsSync(resolveInRoot(dir, '/etc/os-release')) && !existsSync(resolveInRoot(dir, '/usr/lib/os-release'))) {
      throw new ConfigError(`Directory ${dir} doesn't look like an OS root directory (os-release file is missing). Refusing.`, { code: 'CFG_DIRECTORY' });
    }
  } else if (!existsSync(resolveInRoot(dir, '/usr'))) {
    throw new ConfigError(`Directory ${dir} doesn't look like it has an OS tree (/usr/ directory is missing). Refusing.`, { code: 'CFG_DIRECTORY' });
  }
}

/**
 * --template=: fills a missing directory with a copy of the template (atomically, by rename), as
 * systemd-nspawn does: device nodes, FIFOs, sockets, hard links, xattrs and ACLs, owners and times
 * kept, data shared with the template where the file system can (file-tree.ts).
 */
function populateFromTemplate(directory: string, template: string): void {
  if (existsSync(directory)) return;
  let st;
  try {
    st = statSync(template);
  } catch (err) {
    throw new ConfigError(`Failed to access template directory ${template}: ${errorMessage(err)}`, { code: 'CFG_TEMPLATE' });
  }
  if (!st.isDirectory()) throw new ConfigError(`template ${template} is not a directory`, { code: 'CFG_TEMPLATE' });
  const tmp = `${directory}.#nspawn-ts-${process.pid}`;
  try {
    const r = copyTree(template, tmp);
    renameSync(tmp, directory);
    log.debug(`populated ${directory} from ${template}: ${r.entries} entries, ${r.reflinked} files reflinked, ${r.copied} copied, ${r.hardlinks} hard links`);
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw new LaunchError('TEMPLATE_COPY', `failed to populate ${directory} from template ${template}: ${errorMessage(err)}`, 1, { cause: err });
  }
}

/** --network-namespace-path= must name a namespace file (/proc/PID/ns/net, /run/netns/NAME); its type is checked by setns(). */
function checkNetworkNamespace(path: string): void {
  const NSFS_MAGIC = 0x6e736673;
  let type: number;
  try {
    type = statfsSync(path).type;
  } catch (err) {
    throw new ConfigError(`Failed to open network namespace ${path}: ${errorMessage(err)}`, { code: 'CFG_NETWORK' });
  }
  if (type !== NSFS_MAGIC) {
    throw new ConfigError(`${path} is not a namespace file (--network-namespace-path= takes /proc/PID/ns/net or /run/netns/NAME)`, { code: 'CFG_NETWORK' });
  }
}

/** The file system type of the mount `path` is on (from /proc/self/mountinfo), for messages. */
function fileSystemOf(path: string): string | undefined {
  let best: { length: number; type: string } | undefined;
  try {
    const real = realpathSync(path);
    for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
      const f = line.split(' ');
      const dash = f.indexOf('-');
      if (dash < 5) continue;
      const mountPoint = (f[4] as string).replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
      const under = mountPoint === '/' || real === mountPoint || real.startsWith(`${mountPoint}/`);
      // later lines are mounted over earlier ones
      if (under && (!best || mountPoint.length >= best.length)) best = { length: mountPoint.length, type: f[dash + 1] as string };
    }
  } catch { /* only for messages */ }
  return best?.type;
}

/**
 * A bind's destination: resolved in the directory (the overlay shows the same tree), rebased on the
 * mounted root. With a user namespace, idmap/rootidmap/owneridmap get the user namespace of their
 * mapping from `idmap.userns`; without one there is nothing to map to, and they are plain binds.
 */
function resolveBinds(spec: LaunchSpec, directory: string, mountRoot: string,
  idmap?: { range: UidRange; userns: (uidMap: string, gidMap: string) => string }): ResolvedBind[] {
  return spec.binds.map((b) => {
    const source = b.sourceInRoot ? resolveInRoot(directory, b.source) : b.source;
    let st;
    try {
      st = statSync(source);
    } catch (err) {
      throw new ConfigError(`Failed to stat ${b.sourceInRoot ? `+${b.source}` : b.source} (source of --bind${b.readOnly ? '-ro' : ''}=): ${errorMessage(err)}`, { code: 'CFG_BIND' });
    }
    const inRoot = resolveInRoot(directory, b.destination);
    const target = posix.join(mountRoot, inRoot.slice(directory.replace(/\/+$/, '').length));
    const bind: ResolvedBind = { source, target, readOnly: b.readOnly, recursive: bindRecursive(b), file: !st.isDirectory() };
    const option = bindIdmap(b);
    if (option && idmap) {
      // owneridmap: the destination's owner (a host ID once shifted); one not there yet is made for the container's root
      let dest = { uid: idmap.range.shift, gid: idmap.range.shift };
      try {
        const d = statSync(inRoot);
        dest = { uid: d.uid, gid: d.gid };
      } catch { /* made by the plan */ }
      const fstype = fileSystemOf(source);
      bind.idmap = {
        option, userns: idmap.userns(idmapLines(option, idmap.range, st.uid, dest.uid), idmapLines(option, idmap.range, st.gid, dest.gid)),
        ...(fstype ? { fstype } : {}),
      };
    } else if (option) {
      log.debug(`--bind=${b.source}: ${option} without a user namespace has nothing to map to; bound as it is`);
    }
    return bind;
  });
}

function resolveTmpfs(spec: LaunchSpec, directory: string, mountRoot: string): ResolvedTmpfs[] {
  return spec.tmpfs.map((t) => ({
    target: posix.join(mountRoot, resolveInRoot(directory, t.destination).slice(directory.replace(/\/+$/, '').length)),
    options: t.options,
  }));
}

/** Runs one container to its end. */
class ContainerRun {
  private readonly undo: Array<{ what: string; fn: () => void | Promise<void> }> = [];
  private hooks: LaunchHooks[];
  private readonly status: (line: string) => void;
  private plan!: ContainerPlan;
  private syncKinds = new Map<number, 'afterClone' | 'beforeExec'>();
  private leaderPid = 0;
  private leaderPidfd = -1;
  private ctx: ContainerContext | undefined;
  private failure: LaunchError | undefined;
  private started = false;
  private stopping = false;
  private killTimer: NodeJS.Timeout | undefined;
  private console: PtyForwarder | undefined;
  private killSignal = 15;
  private userns: UidRange | undefined;
  private cgroup: MachineCgroup | undefined;
  private support: SupportCgroups | undefined;
  private registry: MachineRegistry | null;
  private registered = false;
  private init: InitInfo | undefined;
  private readonly consoleMode: ConsoleMode;
  private notify: ContainerNotifySocket | undefined;
  /** processes holding the user namespaces of ID-mapped binds, by mapping; gone once the mounts are made */
  private readonly idmapHolders = new Map<string, { pid: number; pidfd: number }>();
  /** --console=passive: the pty master, not forwarded */
  private passiveMaster = -1;

  constructor(private readonly spec: LaunchSpec, private readonly opts: LaunchOptions) {
    this.hooks = [];
    // with --console=pipe the container writes to our stderr: our status lines stay out of it (as systemd-nspawn)
    this.status = opts.status ?? ((line) => { if (!spec.quiet && this.consoleMode !== 'pipe') process.stderr.write(`${line}\n`); });
    this.registry = opts.registry === undefined ? new MachineRegistry() : opts.registry;
    const requested = opts.console ?? spec.console;
    this.consoleMode = consoleMode(requested);
    if (requested === 'pipe' && interactiveConsole() && !spec.quiet) {
      process.stderr.write("Console mode 'pipe' selected, but standard input/output are connected to an interactive TTY. "
        + "Most likely you want to use 'interactive' console mode for proper interactivity and shell job control. Proceeding anyway.\n");
    }
  }

  private onUndo(what: string, fn: () => void | Promise<void>): void {
    this.undo.push({ what, fn });
  }

  private async teardown(): Promise<void> {
    while (this.undo.length > 0) {
      const { what, fn } = this.undo.pop() as { what: string; fn: () => void | Promise<void> };
      try {
        await fn();
      } catch (err) {
        log.warn(`cleanup: failed to ${what}: ${errorMessage(err)}`);
      }
    }
  }

  private async loadHooks(): Promise<void> {
    const h = this.opts.hooks;
    this.hooks = typeof h === 'function' ? await h() : h ?? [];
  }

  async run(): Promise<ContainerExit> {
    try {
      await this.loadHooks();
      const exit = await this.start();
      return exit;
    } finally {
      await this.teardown();
    }
  }

  /** Host-side preparation and the plan; everything made is registered for undo. */
  private prepare(): { cloneFlags: number; ops: PlanOp[]; uuid: string; cgroupDir?: string } {
    const spec = this.spec;
    if (spec.template !== undefined) populateFromTemplate(spec.directory, spec.template);
    const directory = spec.directory;
    checkRoot(directory, spec);

    if (spec.mode === 'boot') {
      this.init = findInit(directory);
      if (!this.init) {
        throw new ConfigError(`Failed to find an init in ${directory}: tried ${['/usr/lib/systemd/systemd', '/lib/systemd/systemd', '/sbin/init'].join(', ')}`, { code: 'CFG_NO_INIT' });
      }
    }
    this.killSignal = stopSignal(spec, this.init);
    const user = spec.user !== undefined ? lookupUser(directory, spec.user) : undefined;
    if (spec.chdir !== undefined && !spec.chdir.startsWith('/')) {
      throw new ConfigError(`--chdir= takes an absolute path, got ${spec.chdir}`, { code: 'CFG_CHDIR' });
    }
    // --network-namespace-path=: joined (setns) instead of a new one
    const joinNetns = spec.network.namespacePath;
    if (joinNetns !== undefined) checkNetworkNamespace(joinNetns);
    const ownNetns = spec.network.private && joinNetns === undefined;

    // what launchers killed with SIGKILL left (records, cgroups, notify sockets) goes first
    const layout: CgroupLayout = detectLayout();
    sweepDeadLaunchers(this.registry, layout);
    // the machine record claims the name: nothing else of this machine exists before it
    // (--register=no: none, as systemd-nspawn then skips systemd-machined; machinectl-ts won't see it)
    if (this.registry && spec.register) {
      try {
        this.registry.register({ name: spec.machine, rootDirectory: directory, spec: summarizeSpec(spec) });
      } catch (err) {
        if (err instanceof RegistryError) throw new ConfigError(err.message, { code: err.code, cause: err });
        throw err;
      }
      this.registered = true;
      const reg = this.registry;
      this.onUndo('remove the machine record', () => { reg.unregister(spec.machine); });
    }

    // user namespace
    let userns: UidRange | undefined;
    if (spec.privateUsers.mode === 'pick') {
      const held = pickUidRange(spec.machine, directory);
      this.onUndo('release the UID range lock', () => held.release());
      userns = held;
    } else {
      userns = fixedUidRange(spec.privateUsers, directory);
    }
    this.userns = userns;
    // --private-users-ownership=: chown the tree into the range, map it (an ID-mapped root), or neither
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

    // ephemeral overlay
    let root = directory;
    let rootSource: RootSource = { kind: 'directory', directory };
    if (spec.ephemeral) {
      const base = this.opts.ephemeralDir ?? `${defaultStateDir()}/ephemeral`;
      sweepEphemeral(base);
      const eph: EphemeralRoot = createEphemeral(base, spec.machine);
      this.onUndo('remove the ephemeral layer', () => eph.remove());
      const st = statSync(directory);
      chownSync(eph.upper, st.uid, st.gid);
      chmodSync(eph.upper, st.mode & 0o7777);
      root = eph.mountPoint;
      rootSource = { kind: 'overlay', lower: directory, upper: eph.upper, work: eph.work };
    }

    // the container's sd_notify socket (/run/host/notify inside); before the cgroups: while it
    // exists, a starting launcher's sweep (leftovers.ts) leaves this machine's cgroups alone
    const notify = ContainerNotifySocket.create(`${defaultRunDir()}/notify/${spec.machine}.${process.pid}`, userns?.shift ?? 0);
    this.notify = notify;
    this.onUndo('remove the notify socket', () => notify.close());

    // cgroups: resource control (cgroups.ts) and the container's own (container-cgroup.ts), in the layout read above
    if (spec.mode === 'boot' && this.init?.systemd && layout.mode === 'none') {
      throw new LaunchError('CGROUP_UNAVAILABLE', 'systemd in the container needs cgroups, and this host has no cgroup hierarchy mounted at /sys/fs/cgroup');
    }
    if (layout.mode !== 'none') {
      // name=systemd too (hybrid/legacy hosts): a systemd init tracks its units there
      const named = layout.hierarchies.some((h) => h.name === 'systemd') ? ['systemd'] : [];
      const cg = MachineCgroup.create(spec.machine, parseProperties(spec.properties), { layout, namedHierarchies: named });
      this.cgroup = cg;
      // with a user namespace, the container's root manages its subtree (systemd's Delegate=yes)
      if (userns) cg.delegate(userns.shift, userns.shift);
      this.onUndo('remove the machine cgroups', () => cg.remove());
      const sc = SupportCgroups.create(layout, spec.machine);
      this.support = sc;
      this.onUndo('remove the container cgroups', () => sc.remove());
    }

    // the plan
    const uuid = randomUUID();
    const os = hostOsRelease();
    const wantConsole = this.consoleMode !== 'pipe';
    const mountPlan = buildMountPlan({
      root, rootSource, privateNetwork: ownNetns, console: wantConsole,
      binds: resolveBinds(spec, directory, root, userns ? { range: userns, userns: (u, g) => this.idmapUserns(u, g) } : undefined), tmpfs: resolveTmpfs(spec, directory, root),
      cgroups: layout, uuid, manager: 'systemd-nspawn', ...(userns ? { innerRoot: '/' } : {}),
      ...(os.path ? { hostOsRelease: os.path } : {}),
      ...(userns ? { uidShift: userns.shift } : {}),
      notifySocket: notify.path,
      ...(mapRoot && userns ? { rootIdmap: this.rootIdmap(directory, userns) } : {}),
    });
    const env = containerEnvironment({ spec, uuid, user, term: this.consoleMode === 'interactive' ? process.env.TERM : undefined, hostOs: os.fields });
    let bounding = containerCaps({ privateNetwork: spec.network.private });
    const own = readOwnBoundingSet(readFileSync('/proc/self/status', 'utf8'));
    if (own !== undefined) bounding &= own;

    const inner: PlanOp[] = [{ op: 'sync' }];
    if (userns) {
      inner.push({ op: 'setgroups', gids: [] }, { op: 'setresgid', gid: 0 }, { op: 'setresuid', uid: 0 });
    }
    if (layout.mode !== 'none') inner.push({ op: 'unshare', flags: CLONE_NEWCGROUP });
    const tail: PlanOp[] = [...mountPlan.inner];
    const hookMounts = this.hooks.flatMap((h) => h.planMounts?.({ root, spec, ...(userns ? { uidShift: userns.shift } : {}) }) ?? []);
    if (!userns) tail.push(...hookMounts);
    if (ownNetns) tail.push({ op: 'loopbackUp' });
    // with a user namespace the helper moved the root to "/" already (pivot_root would refuse
    // the root mount, locked in the user namespace's mount namespace)
    if (!userns) tail.push({ op: 'pivotRoot', path: root });
    tail.push({ op: 'sethostname', name: spec.hostname ?? spec.machine });
    if (this.hooks.some((h) => h.beforeExec)) tail.push({ op: 'sync' });
    if (seccompSupported()) tail.push({ op: 'seccomp', program: buildSeccompFilter(bounding) });
    tail.push({ op: 'capbset', keep: bounding });
    if (spec.mode === 'as-pid2') tail.push({ op: 'stubInit' });
    tail.push(wantConsole ? { op: 'ctty' } : { op: 'setsid' });
    if (user) {
      tail.push({ op: 'setgroups', gids: supplementaryGroups(directory, user.name, user.gid) });
      tail.push({ op: 'setresgid', gid: user.gid }, { op: 'setresuid', uid: user.uid });
    } else {
      tail.push({ op: 'capset', effective: bounding, permitted: bounding, inheritable: bounding, ambient: 0n });
    }
    tail.push({ op: 'chdir', path: spec.chdir ?? this.workingDirectory(directory, user) });
    if (spec.mode !== 'as-pid2') tail.push({ op: 'pdeathsig', signal: 9 });
    tail.push(this.execOp(env, directory));

    const flags = containerCloneFlags({ privateNetwork: ownNetns, userns: userns !== undefined });
    // PID 1 is cloned into its cgroup2 cgroup and moves itself into its v1 ones first thing (with a
    // user namespace the outer process does, with host privileges, and the inner one inherits
    // them): no move waits for the kernel's grace period (cgroups.ts, cgroupEntry), and the
    // cgroup namespace (after the first sync) is rooted there
    const entry = cgroupEntry([...(this.cgroup?.dirs ?? []), ...(this.support?.entryDirs() ?? [])]);
    const enter: PlanOp[] = entry.tasksFiles.map((tasks) => ({ op: 'joinCgroup', tasks }));
    const into = entry.cgroup2Dir !== undefined ? { cgroupDir: entry.cgroup2Dir } : {};
    // joining comes first: the hooks at the first sync point see the namespace the container uses
    const join: PlanOp[] = joinNetns !== undefined ? [{ op: 'setns', path: joinNetns, nstype: CLONE_NEWNET }] : [];
    if (userns) {
      // outer: host privileges in a new mount namespace; inner: the container, in a user namespace
      const ops: PlanOp[] = [...enter, ...join, ...mountPlan.outer, ...hookMounts, { op: 'moveRoot', path: root }, { op: 'cloneInner', flags: flags | CLONE_NEWNS }, ...inner, ...tail];
      return { cloneFlags: CLONE_NEWNS, ops, uuid, ...into };
    }
    return { cloneFlags: flags, ops: [...enter, ...join, ...inner, ...mountPlan.outer, ...tail], uuid, ...into };
  }

  /**
   * Where the command starts without --chdir=, as in systemd-nspawn's inner_child(): a command in
   * /, the shell (no command) in the user's home (/root for root) — or in / when that is missing
   * (nobody's /nonexistent): nothing is created in the image.
   */
  private workingDirectory(directory: string, user: PasswdEntry | undefined): string {
    if (this.spec.command.length > 0 || this.spec.mode === 'boot') return '/';
    const home = user ? user.home : '/root';
    try {
      return statSync(resolveInRoot(directory, home)).isDirectory() ? home : '/';
    } catch {
      return '/';
    }
  }

  private execOp(env: string[], directory: string): PlanOp {
    const spec = this.spec;
    if (spec.mode === 'boot') {
      const init = this.init as InitInfo;
      return { op: 'exec', candidates: [init.path], argv: [init.path, ...spec.command], envp: env };
    }
    if (spec.command.length > 0) return { op: 'exec', candidates: execCandidates(spec.command[0] as string), argv: spec.command, envp: env };
    // no command: a login shell, /bin/bash as "-bash", else /bin/sh as "-sh" — systemd-nspawn's
    // DEFAULT_USER_SHELL whatever the user's passwd entry says (252 gives -u daemon, whose shell
    // is nologin, a bash as well)
    const bash = existsSync(resolveInRoot(directory, '/bin/bash'));
    return { op: 'exec', candidates: bash ? ['/bin/bash'] : ['/bin/sh'], argv: [bash ? '-bash' : '-sh'], envp: env };
  }

  private async start(): Promise<ContainerExit> {
    const spec = this.spec;
    for (const h of this.hooks) if (h.preflight) await h.preflight(spec);
    const prepared = this.prepare();
    this.plan = { cloneFlags: prepared.cloneFlags, ops: prepared.ops, ...(prepared.cgroupDir !== undefined ? { cgroupDir: prepared.cgroupDir } : {}) };
    let afterCloneSeen = false;
    prepared.ops.forEach((op, i) => {
      if (op.op === 'sync') {
        this.syncKinds.set(i, afterCloneSeen ? 'beforeExec' : 'afterClone');
        afterCloneSeen = true;
      }
    });

    const signalHandler = (sig: NodeJS.Signals): void => this.requestStop(sig);
    if (this.opts.handleSignals !== false) {
      for (const s of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(s, signalHandler);
      this.onUndo('remove signal handlers', () => {
        for (const s of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.off(s, signalHandler);
      });
    }
    const interactive = this.consoleMode === 'interactive';
    this.status(`Spawning container ${spec.machine} on ${spec.directory}.`);
    if (interactive) this.status('Press ^] three times within 1s to kill container.');

    const s = sys();
    let spawned;
    log.debug('prepared; cloning the container');
    try {
      spawned = s.spawnContainer(this.plan);
    } catch (err) {
      throw new LaunchError('SPAWN_FAILED', `failed to create the container's namespaces: ${errorMessage(err)}`, 1, { cause: err });
    }
    this.twoStage = this.plan.ops.some((o) => o.op === 'cloneInner');
    if (!this.twoStage) {
      this.leaderPid = spawned.pid;
      this.leaderPidfd = spawned.pidfd;
    }
    this.onUndo('kill the container', () => this.killNow());

    return await new Promise<ContainerExit>((resolve, reject) => {
      this.settle = () => {
        if (!this.exit || this.channel >= 0) return;
        if (this.killTimer) clearTimeout(this.killTimer);
        this.console?.stop();
        if (this.passiveMaster >= 0) sys().close(this.passiveMaster);
        this.passiveMaster = -1;
        if (this.failure) reject(this.failure);
        else resolve(this.exit);
      };
      this.channel = spawned.channel;
      this.channelWatcher = new s.FdWatcher(this.channel, POLL_READABLE, () => this.drainChannel());
      if (this.twoStage) {
        // the helper that made the mounts; it reports the container's PID 1 and exits
        const helperPidfd = spawned.pidfd;
        const w = new s.FdWatcher(helperPidfd, POLL_READABLE, () => {
          const st = s.waitPidfd(helperPidfd);
          if (!st) return;
          w.stop();
          s.close(helperPidfd);
          this.drainChannel();
          if (this.leaderPid === 0) {
            // it ended without making the container: its error report says why
            this.closeChannel();
            this.exit = this.exitOf(st);
            if (!this.failure) this.failure = new LaunchError('SPAWN_FAILED', `the container's set-up process ended (${st.code !== null ? `exit ${st.code}` : signalName(st.signal ?? 0)}) before the container started`);
            this.settle();
          }
        });
      } else {
        this.watchLeader();
      }
    });
  }

  private twoStage = false;
  private channel = -1;
  private channelWatcher: FdWatcher | undefined;
  private exit: ContainerExit | undefined;
  private settle: () => void = () => {};
  private busy: Promise<void> = Promise.resolve();
  private pendingReady: ChannelMessage[] = [];

  private closeChannel(): void {
    if (this.channel < 0) return;
    this.channelWatcher?.stop();
    sys().close(this.channel);
    this.channel = -1;
  }

  private watchLeader(): void {
    const s = sys();
    const pidfd = this.leaderPidfd;
    const w = new s.FdWatcher(pidfd, POLL_READABLE, () => {
      const st = s.waitPidfd(pidfd);
      if (!st) return;
      w.stop();
      s.close(pidfd);
      this.leaderPidfd = -1;
      this.exit = this.exitOf(st);
      // messages still queued (an error report) come before the end
      this.drainChannel();
      this.closeChannel();
      this.settle();
    });
  }

  private drainChannel(): void {
    while (this.channel >= 0) {
      let m: ChannelMessage | null;
      try {
        m = sys().channelRecv(this.channel);
      } catch {
        this.closeChannel();
        return;
      }
      if (!m) return;
      this.onMessage(m);
    }
  }

  /** Gives up on starting: PID 1 is killed, and a child waiting at a sync point sees the channel close. */
  private abort(err: LaunchError): void {
    if (!this.failure) this.failure = err;
    this.killNow();
    this.closeChannel();
    this.settle();
  }

  private onMessage(m: ChannelMessage): void {
    const s = sys();
    switch (m.kind) {
      case 0: // end-of-file: the payload exec()ed
        log.debug('the payload started');
        this.started = true;
        this.notifyStarted();
        this.closeChannel();
        this.settle();
        return;
      case 1: // ready at a sync op
        if (this.leaderPid === 0) {
          // the inner child can report before its helper has told us its PID
          this.pendingReady.push(m);
          return;
        }
        this.onReady(m);
        return;
      case 2: { // an op failed
        const op = this.plan.ops[m.op ?? -1];
        const what = op ? describeOp(op) : `step ${m.op}`;
        const reason = m.code ?? `errno ${m.err}`;
        const text = m.message ?? `errno ${m.err}`;
        if (op?.op === 'bindIdmapped' && (m.code === 'EINVAL' || m.code === 'EOPNOTSUPP')) {
          this.failure = new LaunchError('IDMAP_UNSUPPORTED', `${op.what}: the ${op.fstype ?? 'unknown'} file system of ${op.source} `
            + `does not support ID-mapped mounts (mount_setattr MOUNT_ATTR_IDMAP: ${text} (${reason})); ${op.instead}`, 1);
        } else if (op?.op === 'exec') {
          const exitCode = m.code === 'ENOENT' ? 127 : 126;
          this.failure = new LaunchError('EXEC_FAILED', `failed to execute ${op.argv[0]?.startsWith('-') ? op.candidates.join(' or ') : op.argv[0]}: ${text} (${reason})`, exitCode);
        } else {
          this.failure = new LaunchError('SETUP_FAILED', `failed to ${what}: ${text} (${reason})`, 1);
        }
        return;
      }
      case 3: // the inner child (user namespace) exists
        this.leaderPid = m.value ?? 0;
        try {
          this.leaderPidfd = s.pidfdOpen(this.leaderPid);
        } catch (err) {
          this.abort(new LaunchError('SPAWN_FAILED', `lost the container's PID 1: ${errorMessage(err)}`, 1, { cause: err }));
          return;
        }
        this.watchLeader();
        if (this.stopping) this.killNow();
        for (const r of this.pendingReady.splice(0)) this.onReady(r);
        return;
      case 4: // the console pty
        if (m.fd !== undefined && this.consoleMode === 'passive') {
          this.passiveMaster = m.fd; // nothing forwarded; held so that the container's writes do not fail
        } else if (m.fd !== undefined) {
          this.console = new PtyForwarder(m.fd, () => {
            this.status(`Container ${this.spec.machine} killed (^] pressed three times).`);
            this.killNow();
          }, { readOnly: this.consoleMode === 'read-only' });
          this.console.start();
        }
        return;
    }
  }

  /** /proc/PID/ns/user of a user namespace with these maps (one per mapping), for ID-mapped binds. */
  private idmapUserns(uidMap: string, gidMap: string): string {
    const key = `${uidMap}|${gidMap}`;
    let holder = this.idmapHolders.get(key);
    if (!holder) {
      if (this.idmapHolders.size === 0) this.onUndo('stop the ID-mapping user namespaces', () => this.releaseIdmapHolders());
      try {
        holder = sys().usernsHolder(uidMap, gidMap);
      } catch (err) {
        throw new LaunchError('IDMAP_USERNS', `failed to create the user namespace of an ID-mapped bind (uid_map ${JSON.stringify(uidMap.trim())}): ${errorMessage(err)}`, 1, { cause: err });
      }
      this.idmapHolders.set(key, holder);
    }
    return `/proc/${holder.pid}/ns/user`;
  }

  /** --private-users-ownership=map: host IDs 0..range-1 of the tree are the container's (systemd's REMOUNT_IDMAPPING_HOST_ROOT). */
  private rootIdmap(directory: string, userns: UidRange): { userns: string; fstype?: string } {
    const lines = idmapLines('idmap', userns, 0, 0);
    const fstype = fileSystemOf(directory);
    return { userns: this.idmapUserns(lines, lines), ...(fstype ? { fstype } : {}) };
  }

  /** Kills and reaps the holders of ID-mapped binds' user namespaces (the mounts keep what they need). */
  private async releaseIdmapHolders(): Promise<void> {
    const s = sys();
    const holders = [...this.idmapHolders.values()];
    this.idmapHolders.clear();
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

  /** The payload runs: tell our service manager (READY=1 now, unless --notify-ready=yes waits for the container's). */
  private notifyStarted(): void {
    if (!process.env.NOTIFY_SOCKET) return;
    notifyManager(`STATUS=Container started.\nX_NSPAWN_LEADER_PID=${this.leaderPid}\n`);
    if (!this.spec.notifyReady) notifyManager('READY=1\n');
  }

  /** A message of the container's PID 1 on /run/host/notify: READY=1 and STATUS= go on to our manager. */
  private onContainerNotify(fields: Map<string, string>): void {
    const status = fields.get('STATUS');
    if (status !== undefined) notifyManager(`STATUS=Container running: ${status}\n`);
    if (fields.get('READY') === '1') {
      log.debug(`container ${this.spec.machine} reported READY=1`);
      notifyManager('READY=1\n');
      if (status === undefined) notifyManager('STATUS=Container running.\n');
    }
  }

  private onReady(m: ChannelMessage): void {
    const kind = this.syncKinds.get(m.op ?? -1);
    this.busy = this.busy.then(async () => {
      try {
        if (kind === 'afterClone') await this.afterClone();
        else if (kind === 'beforeExec') for (const h of this.hooks) if (h.beforeExec) await h.beforeExec(this.context());
        if (this.stopping) {
          this.abort(new LaunchError('STOPPED', `container ${this.spec.machine} was stopped while it started`, 1));
          return;
        }
        if (kind === 'beforeExec') log.debug('before-exec hooks done; PID 1 goes on to exec');
        if (this.channel >= 0) {
          try {
            sys().channelGo(this.channel);
          } catch (err) {
            // PID 1 died while it waited (killed from outside): its exit status tells the story
            if ((err as NodeJS.ErrnoException).code === 'EPIPE' || (err as NodeJS.ErrnoException).code === 'ECONNRESET') return;
            throw err;
          }
        }
      } catch (err) {
        this.abort(err instanceof LaunchError ? err : new LaunchError('SETUP_FAILED', `failed to set up the container: ${errorMessage(err)}`, 1, { cause: err }));
      }
    });
  }

  private context(): ContainerContext {
    if (!this.ctx) {
      this.ctx = {
        machine: this.spec.machine, spec: this.spec, pid: this.leaderPid, netnsPath: `/proc/${this.leaderPid}/ns/net`,
        ...(this.userns ? { userns: this.userns } : {}),
      };
    }
    return this.ctx;
  }

  /** First sync: the container's PID 1 exists and waits. */
  private async afterClone(): Promise<void> {
    const pid = this.leaderPid;
    log.debug(`PID 1 (${pid}) waits at its first sync point`);
    this.notify?.watch(pid, (fields) => this.onContainerNotify(fields));
    // the helper made its mounts before it cloned PID 1
    if (this.idmapHolders.size > 0) await this.releaseIdmapHolders();
    if (this.userns) writeIdMaps(pid, this.userns);
    // PID 1 entered its cgroups before it got here (prepare(): joinCgroup ops, CLONE_INTO_CGROUP)
    if (this.cgroup || this.support) log.debug('PID 1 is in its cgroups');
    if (this.registered && this.registry) {
      this.registry.update(this.spec.machine, { leader: pid, ...(this.cgroup ? { cgroup: this.cgroup.toJSON() } : {}) });
    }
    const ctx = this.context();
    for (const h of this.hooks) {
      if (!h.afterClone) continue;
      if (h.afterExit) this.onUndo('undo a hook', () => h.afterExit?.(ctx));
      await h.afterClone(ctx);
    }
    log.debug('after-clone hooks done');
  }

  private exitOf(st: { code: number | null; signal: number | null }): ContainerExit {
    if (st.code !== null) return { exitCode: st.code, code: st.code, signal: null, reboot: false };
    const sig = st.signal ?? 0;
    if (sig === 2) return { exitCode: 0, code: null, signal: sig, reboot: false }; // halt, poweroff
    if (sig === 1) return { exitCode: 0, code: null, signal: sig, reboot: !this.stopping }; // reboot
    return { exitCode: 128 + sig, code: null, signal: sig, reboot: false };
  }

  /**
   * SIGTERM/SIGINT to the launcher, as systemd-nspawn's on_orderly_shutdown(): without a kill
   * signal (not booted, none configured) the container is killed at once; else the kill signal
   * goes to PID 1, and a second request (or the stop timeout, our safety net) kills it.
   */
  requestStop(sig: string): void {
    if (this.stopping || !this.started || this.killSignal === 0) {
      log.debug(`${sig}: killing the container`);
      this.stopping = true;
      this.killNow();
      return;
    }
    this.stopping = true;
    log.debug(`${sig}: stopping the container with ${signalName(this.killSignal)}`);
    this.signalLeader(this.killSignal);
    this.status(`Trying to halt container. Send ${sig} again to trigger immediate termination.`);
    const ms = stopTimeout(this.spec, this.opts);
    this.killTimer = setTimeout(() => {
      this.status(`Container ${this.spec.machine} did not stop within ${ms / 1000} s; killing it.`);
      this.killNow();
    }, ms);
  }

  private signalLeader(sig: number): void {
    if (this.leaderPidfd < 0) return;
    try {
      sys().pidfdSendSignal(this.leaderPidfd, sig);
    } catch { /* already gone */ }
  }

  private killNow(): void {
    this.signalLeader(9);
  }

  report(exit: ContainerExit): void {
    const m = this.spec.machine;
    if (exit.signal === 2) this.status(`Container ${m} has been shut down.`);
    else if (exit.signal === 1) this.status(exit.reboot ? `Container ${m} is being rebooted.` : `Container ${m} has been shut down.`);
    else if (exit.signal !== null) this.status(`Container ${m} terminated by signal ${signalName(exit.signal).replace(/^SIG/, '')}.`);
    else if (exit.code === 0) this.status(`Container ${m} exited successfully.`);
    else this.status(`Container ${m} failed with error code ${exit.code}.`);
  }
}

/**
 * Runs a container for `spec` until it ends; returns the launcher's exit code. A reboot inside the
 * container starts it again, as systemd-nspawn does. Setup failures throw LaunchError/ConfigError
 * with nothing left behind.
 */
export async function runContainer(spec: LaunchSpec, opts: LaunchOptions = {}): Promise<ContainerExit> {
  for (;;) {
    const run = new ContainerRun(spec, opts);
    const exit = await run.run();
    run.report(exit);
    if (!exit.reboot) return exit;
  }
}

/** main's launch step: prints errors, returns the exit code. */
export async function launch(spec: LaunchSpec, opts: LaunchOptions = {}): Promise<number> {
  try {
    return (await runContainer(spec, opts)).exitCode;
  } catch (err) {
    process.stderr.write(`nspawn-ts: ${errorMessage(err)}\n`);
    if (err instanceof LaunchError) return err.exitCode;
    if (err instanceof NspawnError) return 1;
    throw err;
  }
}
