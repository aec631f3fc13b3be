// The launcher: a LaunchSpec in, a running container, its exit code out. It prepares the host side
// (preparation.ts: machine record, user-namespace range, ephemeral overlay, cgroups, notify socket),
// turns the spec and what was prepared into a plan (container-plan.ts, a pure function), clones the container (native spawnContainer), answers its sync
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
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { NspawnError, ConfigError, errorMessage } from '../errors.js';
import { logger } from '../log.js';
import { POLL_READABLE, sys, type ChannelMessage, type FdWatcher } from '../native.js';
import { readOwnBoundingSet } from './caps.js';
import { detectLayout, type MachineCgroup } from './cgroups.js';
import { PtyForwarder, consoleMode, interactiveConsole, type ConsoleMode } from './console.js';
import type { SupportCgroups } from './container-cgroup.js';
import { findInit, lookupUser, resolveInRoot, supplementaryGroups, type InitInfo } from './container-root.js';
import { buildContainerPlan } from './container-plan.js';
import { IdmapHolders } from './idmap-holders.js';
import { hostOsRelease, stopSignal, stopTimeout } from './launch-policy.js';
import {
  LaunchError, type ContainerContext, type ContainerExit, type LaunchHooks, type LaunchOptions,
} from './launch-types.js';
import { writeIdMaps, type UidRange } from './namespaces.js';
import { notifyManager, type ContainerNotifySocket } from './notify.js';
import { describeOp, type ContainerPlan, type PlanOp } from './plan.js';
import {
  claimMachine, createNotifySocket, prepareCgroups, prepareRoot, prepareUserNamespace, UndoStack,
} from './preparation.js';
import { MachineRegistry } from './registry.js';
import { sweepDeadLaunchers } from './leftovers.js';
import {
  checkNetworkNamespace, checkRoot, populateFromTemplate, resolveBinds, resolveTmpfs, workingDirectory,
} from './root-setup.js';
import { seccompSupported } from './seccomp.js';
import { signalName } from './signals.js';
import type { LaunchSpec } from './spec.js';

export { LaunchError } from './launch-types.js';
export type { ContainerContext, ContainerExit, LaunchHooks, LaunchOptions } from './launch-types.js';
export { containerEnvironment, parseOsRelease, stopSignal } from './launch-policy.js';
export { signalName } from './signals.js';

const log = logger('launcher');

/** Runs one container to its end. */
class ContainerRun {
  private readonly undo = new UndoStack();
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
  /** spawnContainer() made the container's processes */
  private cloned = false;
  /** the container has ended or never will: run() is in its clean-up */
  private finished = false;
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
  /** the user namespaces of ID-mapped binds; gone once the mounts are made */
  private readonly idmap = new IdmapHolders(this.undo);
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
    this.undo.push(what, fn);
  }

  private async teardown(): Promise<void> {
    await this.undo.run();
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
      // from here on a stop request has nothing to stop (requestStop): only the clean-up is left
      this.finished = true;
      if (this.killTimer) clearTimeout(this.killTimer);
      await this.teardown();
    }
  }

  /** SIGTERM/SIGINT/SIGHUP came while this run was on: a rebooting container is not started again. */
  get stopRequested(): boolean {
    return this.stopping;
  }

  /** Host-side preparation (preparation.ts, everything made registered for undo) and the plan (container-plan.ts). */
  private async prepare(): Promise<{ cloneFlags: number; ops: PlanOp[]; cgroupDir?: string }> {
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
    if (spec.network.namespacePath !== undefined) checkNetworkNamespace(spec.network.namespacePath);

    // what launchers killed with SIGKILL left (records, cgroups, notify sockets) goes first
    await sweepDeadLaunchers(this.registry, detectLayout());
    this.registered = await claimMachine(this.registry, spec, this.undo);
    const { userns, mapRoot, lower } = prepareUserNamespace(spec, directory, this.undo, this.idmap);
    this.userns = userns;
    const { root, rootSource } = prepareRoot(spec, directory, this.opts.ephemeralDir, this.undo, userns && lower ? { userns, lower } : undefined);
    // the notify socket before the cgroups: while it exists, a starting launcher's sweep
    // (leftovers.ts) leaves this machine's cgroups alone
    this.notify = createNotifySocket(spec.machine, userns, this.undo);
    const cgroups = prepareCgroups(spec, this.init, userns, this.undo);
    this.cgroup = cgroups.cgroup;
    this.support = cgroups.support;

    // what the plan needs to know of the host and the root
    const uuid = randomUUID();
    const hostOs = hostOsRelease();
    const binds = resolveBinds(spec, directory, root, userns ? { range: userns, userns: (u, g) => this.idmap.userns(u, g) } : undefined);
    const tmpfs = resolveTmpfs(spec, directory, root);
    const rootIdmap = mapRoot && userns && !spec.ephemeral ? this.idmap.rootIdmap(directory, userns) : undefined;
    const ownBoundingSet = readOwnBoundingSet(readFileSync('/proc/self/status', 'utf8'));
    const hookMounts = this.hooks.flatMap((h) => h.planMounts?.({ root, spec, ...(userns ? { uidShift: userns.shift } : {}) }) ?? []);
    return buildContainerPlan({
      spec, root, rootSource, ...(userns ? { userns } : {}), ...(user ? { user } : {}),
      groups: user ? supplementaryGroups(directory, user.name, user.gid) : [],
      ...(this.init ? { init: this.init } : {}),
      layout: cgroups.layout, cgroupDirs: [...(this.cgroup?.dirs ?? []), ...(this.support?.entryDirs() ?? [])],
      notifySocket: this.notify.path, uuid, hostOs, consoleMode: this.consoleMode,
      ...(process.env.TERM !== undefined ? { term: process.env.TERM } : {}),
      binds, tmpfs, ...(rootIdmap ? { rootIdmap } : {}), ...(ownBoundingSet !== undefined ? { ownBoundingSet } : {}),
      seccomp: seccompSupported(), hookMounts, beforeExecSync: this.hooks.some((h) => h.beforeExec),
      afterHookOps: this.hooks.flatMap((h) => h.planAfterHooks?.(spec) ?? []),
      workingDirectory: spec.chdir ?? workingDirectory(spec, directory, user),
      hasBash: spec.mode !== 'boot' && spec.command.length === 0 && existsSync(resolveInRoot(directory, '/bin/bash')),
    });
  }

  private async start(): Promise<ContainerExit> {
    const spec = this.spec;
    for (const h of this.hooks) if (h.preflight) await h.preflight(spec);
    const prepared = await this.prepare();
    this.plan = { cloneFlags: prepared.cloneFlags, ops: prepared.ops, ...(prepared.cgroupDir !== undefined ? { cgroupDir: prepared.cgroupDir } : {}) };
    let afterCloneSeen = false;
    prepared.ops.forEach((op, i) => {
      if (op.op === 'sync') {
        this.syncKinds.set(i, afterCloneSeen ? 'beforeExec' : 'afterClone');
        afterCloneSeen = true;
      }
    });

    // stopped while it was prepared: nothing of the container exists yet, what was prepared is undone
    if (this.stopping) throw new LaunchError('STOPPED', `container ${spec.machine} was stopped while it started`, 1);
    const interactive = this.consoleMode === 'interactive';
    this.status(`Spawning container ${spec.machine} on ${spec.directory}.`);
    if (interactive) this.status('Press ^] three times within 1s to kill container.');

    const s = sys();
    let spawned;
    log.debug('prepared; cloning the container');
    try {
      spawned = s.spawnContainer(this.plan);
      this.cloned = true;
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
    // stopped while it starts: PID 1 goes no further (before the hooks: they would work on a dying PID 1)
    const stopped = (): boolean => {
      if (this.stopping) this.abort(new LaunchError('STOPPED', `container ${this.spec.machine} was stopped while it started`, 1));
      return this.stopping;
    };
    this.busy = this.busy.then(async () => {
      try {
        if (stopped()) return;
        if (kind === 'afterClone') await this.afterClone();
        else if (kind === 'beforeExec') for (const h of this.hooks) if (h.beforeExec) await h.beforeExec(this.context());
        if (stopped()) return;
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
    if (this.idmap.size > 0) await this.idmap.release();
    if (this.userns) writeIdMaps(pid, this.userns);
    // PID 1 entered its cgroups before it got here (prepare(): joinCgroup ops, CLONE_INTO_CGROUP)
    if (this.cgroup || this.support) log.debug('PID 1 is in its cgroups');
    if (this.registered && this.registry) {
      await this.registry.update(this.spec.machine, { leader: pid, ...(this.cgroup ? { cgroup: this.cgroup.toJSON() } : {}) });
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
    if (this.exit !== undefined || this.finished) {
      // it has ended already (e.g. machinectl terminate SIGKILLs PID 1, then SIGTERMs us): no kill
      // timer, which would keep the launcher alive for the stop timeout after its clean-up
      log.debug(`${sig}: the container has ended; finishing the clean-up`);
      this.stopping = true;
      return;
    }
    if (!this.cloned) {
      // start() checks before the clone
      log.debug(`${sig}: stopping before the container is made`);
      this.stopping = true;
      return;
    }
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
    const ms = stopTimeout(this.spec, this.opts.stopTimeoutMs);
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

/** What stops the container (requestStop), as systemd-nspawn's SIGTERM/SIGINT (and SIGHUP: the terminal went away). */
const STOP_SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;

/**
 * Runs a container for `spec` until it ends; returns the launcher's exit code. A reboot inside the
 * container starts it again, as systemd-nspawn does. Setup failures throw LaunchError/ConfigError
 * with nothing left behind.
 */
export async function runContainer(spec: LaunchSpec, opts: LaunchOptions = {}): Promise<ContainerExit> {
  // the handlers stay from before anything is made until after the last clean-up (also across
  // reboots): a signal during start-up or clean-up never meets the default action, which would end
  // the launcher halfway and leave the machine's record, cgroups and links behind
  let run: ContainerRun | undefined;
  const onSignal = (sig: NodeJS.Signals): void => run?.requestStop(sig);
  const handle = opts.handleSignals !== false;
  if (handle) for (const s of STOP_SIGNALS) process.on(s, onSignal);
  try {
    for (;;) {
      run = new ContainerRun(spec, opts);
      const ended = await run.run();
      const exit = ended.reboot && run.stopRequested ? { ...ended, reboot: false } : ended;
      run.report(exit);
      if (!exit.reboot) return exit;
    }
  } finally {
    if (handle) for (const s of STOP_SIGNALS) process.off(s, onSignal);
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
