// The machine registry: what systemd-machined is for systemd-nspawn, as files. Each running
// container is one JSON record, `<run dir>/machines/NAME.json` (run dir: $NSPAWN_TS_RUN_DIR or
// /run/nspawn-ts), written atomically (temp file + rename). machinectl-ts and the sidecar read it.
//
// One machine per name: register() refuses a name whose record is still live. A record is live
// while its leader (the container's PID 1) or its launcher runs — each identified by PID *and*
// start time (/proc/PID/stat field 22), so a reused PID does not keep a dead machine alive. Dead
// records are pruned on sight. Check-and-write happens under flock(2) on `<dir>/.lock` (the
// project's one lock, src/common/lock.ts), which the kernel drops when its holder dies, so two
// launchers racing for one name cannot both win and a crashed launcher never leaves the registry
// locked. Changes wait for the lock on timers (async): a launcher's event loop, which serves its
// container's DHCP when no sidecar runs, never stops while another process holds it. Reads never
// wait: they prune dead records only when the lock is free at once (else the next reader does).
import {
  closeSync, fsyncSync, openSync, readdirSync, readlinkSync, renameSync, unlinkSync, writeSync,
} from 'node:fs';
import { randomBytes } from 'node:crypto';
import { defaultRunDir } from '../common/paths.js';
import { readRecordFile, recordLive, recordNameOk, RECORD_VERSION } from '../common/machine-records.js';
import { processAlive, processStartTime, type ProcessRef } from '../common/proc.js';
import { type FileLock, LockTimeoutError, tryLock, withLock } from '../common/lock.js';
import { NspawnError } from '../errors.js';
import { logger } from '../log.js';
import type { LaunchSpec, PortForward } from './spec.js';
import type { MachineCgroupState } from './cgroups.js';

const log = logger('registry');

export type { ProcessRef } from '../common/proc.js';
export { defaultRunDir } from '../common/paths.js';
export { RECORD_VERSION } from '../common/machine-records.js';

export type NamespaceKind = 'cgroup' | 'ipc' | 'mnt' | 'net' | 'pid' | 'time' | 'user' | 'uts';
export const NAMESPACE_KINDS: readonly NamespaceKind[] = ['cgroup', 'ipc', 'mnt', 'net', 'pid', 'time', 'user', 'uts'];

export interface NamespaceRef {
  /** /proc/LEADER/ns/KIND: usable while the leader lives */
  path: string;
  /** the namespace's identity as readlink shows it, e.g. "net:[4026532281]" */
  id: string;
}

/** Filled in by the network subsystem; every field optional. */
export interface MachineNetwork {
  links?: Array<{
    name: string;
    side: 'host' | 'container';
    kind?: string;
    ifindex?: number;
    mac?: string;
    /** bridge the host side is enslaved to (vb-/zone) */
    master?: string;
  }>;
  addresses?: Array<{ ifname: string; side: 'host' | 'container'; address: string; prefixLength: number }>;
  ports?: PortForward[];
  /** e.g. the subnet allocated to the machine's ve-/vz- link */
  subnets?: string[];
  dns?: string[];
}

/** The LaunchSpec essentials a record keeps (what machinectl-ts status shows). */
export type MachineSpecSummary = Pick<LaunchSpec,
  'mode' | 'command' | 'ephemeral' | 'privateUsers' | 'network' | 'resolvConf' | 'properties'
> & Partial<Pick<LaunchSpec, 'user' | 'hostname' | 'template' | 'killSignal' | 'settingsFile'>>;

export interface MachineRecord {
  version: typeof RECORD_VERSION;
  name: string;
  class: 'container';
  /** the container's PID 1 (as the host sees it); absent until the launcher has started it */
  leader?: ProcessRef;
  /** the nspawn-ts process that runs (and will clean up) the machine */
  launcher: ProcessRef;
  rootDirectory: string;
  namespaces: Partial<Record<NamespaceKind, NamespaceRef>>;
  network?: MachineNetwork;
  /** ISO 8601 */
  startedAt: string;
  spec: MachineSpecSummary;
  /**
   * The machine's cgroups and effective resource properties (MachineCgroup.toJSON()): written by
   * the launcher, updated by `machinectl-ts set-property`. Absent: machinectl-ts finds the
   * cgroups from the leader's /proc/PID/cgroup.
   */
  cgroup?: MachineCgroupState;
}

export interface NewMachine {
  name: string;
  rootDirectory: string;
  spec: MachineSpecSummary;
  leader?: number;
  network?: MachineNetwork;
}

export interface MachinePatch {
  /** the leader's PID; its start time and namespaces are read from /proc */
  leader?: number;
  network?: MachineNetwork;
  /** the machine's cgroups (see MachineRecord.cgroup) */
  cgroup?: MachineCgroupState;
}

export class RegistryError extends NspawnError {}

export function summarizeSpec(spec: LaunchSpec): MachineSpecSummary {
  const s: MachineSpecSummary = {
    mode: spec.mode, command: spec.command, ephemeral: spec.ephemeral, privateUsers: spec.privateUsers,
    network: spec.network, resolvConf: spec.resolvConf, properties: spec.properties,
  };
  for (const k of ['user', 'hostname', 'template', 'killSignal', 'settingsFile'] as const) {
    if (spec[k] !== undefined) s[k] = spec[k];
  }
  return structuredClone(s);
}

// ---------------------------------------------------------------------------------------------
// /proc

export class ProcFs {
  constructor(readonly root = '/proc') {}

  /** The process as it is now, or undefined if there is none (or only a zombie). */
  process(pid: number): ProcessRef | undefined {
    const startTime = processStartTime(pid, this.root);
    return startTime === undefined ? undefined : { pid, startTime };
  }

  alive(ref: ProcessRef): boolean {
    return processAlive(ref, this.root);
  }

  namespaces(pid: number): Partial<Record<NamespaceKind, NamespaceRef>> {
    const out: Partial<Record<NamespaceKind, NamespaceRef>> = {};
    for (const kind of NAMESPACE_KINDS) {
      const path = `${this.root}/${pid}/ns/${kind}`;
      try {
        out[kind] = { path, id: readlinkSync(path) };
      } catch { /* kernel without this namespace type */ }
    }
    return out;
  }
}

// ---------------------------------------------------------------------------------------------

export interface RegistryOptions {
  /** the directory of the records; default <$NSPAWN_TS_RUN_DIR or /run/nspawn-ts>/machines */
  dir?: string;
  proc?: ProcFs;
  /** how long to wait for another process's lock before failing (default 5 s) */
  lockTimeoutMs?: number;
  /** the launcher recorded by register() (default: this process) */
  self?: ProcessRef;
  /** told about records that were dropped (stale or unreadable) */
  onPrune?: (name: string, why: string) => void;
}

export class MachineRegistry {
  readonly dir: string;
  private readonly proc: ProcFs;
  private readonly lockTimeoutMs: number;
  private readonly selfRef: ProcessRef | undefined;
  private readonly onPrune: (name: string, why: string) => void;

  constructor(opts: RegistryOptions = {}) {
    this.dir = opts.dir ?? `${defaultRunDir()}/machines`;
    this.proc = opts.proc ?? new ProcFs();
    this.lockTimeoutMs = opts.lockTimeoutMs ?? 5000;
    this.selfRef = opts.self;
    this.onPrune = opts.onPrune ?? (() => {});
  }

  private self(): ProcessRef {
    const me = this.selfRef ?? this.proc.process(process.pid);
    if (!me) throw new RegistryError('REG_PROC', `cannot read /proc/${process.pid}/stat`);
    return me;
  }

  private path(name: string): string {
    return `${this.dir}/${name}.json`;
  }

  private get lockPath(): string {
    return `${this.dir}/.lock`;
  }

  /** Runs fn holding the registry's lock, waited for on timers (never blocking the event loop). */
  private async locked<T>(fn: () => T): Promise<T> {
    const free = tryLock(this.lockPath, { mode: 0o600 });
    if (free) {
      try {
        return fn();
      } finally {
        free.release();
      }
    }
    log.debug(`the machine registry ${this.dir} is locked by another process; waiting for it`);
    return withLock(this.lockPath, fn, { timeoutMs: this.lockTimeoutMs, mode: 0o600 }).catch((err: unknown) => {
      if (!(err instanceof LockTimeoutError)) throw err;
      throw new RegistryError('REG_LOCKED', `the machine registry ${this.dir} stayed locked by another process for ${this.lockTimeoutMs} ms`, { cause: err });
    });
  }

  /** Runs fn holding the lock if it is free now; undefined (fn not run) when another process has it. */
  private ifUnlocked<T>(fn: () => T): { value: T } | undefined {
    let held: FileLock | undefined;
    try {
      held = tryLock(this.lockPath, { mode: 0o600 });
    } catch (err) {
      // a reader that may not write here (not root, read-only /run) leaves the pruning to others
      if (['EACCES', 'EPERM', 'EROFS'].includes((err as NodeJS.ErrnoException).code ?? '')) return undefined;
      throw err;
    }
    if (!held) return undefined;
    try {
      return { value: fn() };
    } finally {
      held.release();
    }
  }

  private read(name: string): MachineRecord | undefined | 'corrupt' {
    return readRecordFile<MachineRecord>(this.dir, name);
  }

  /** Live: its leader or its launcher still runs (same PID and start time). */
  isLive(r: MachineRecord): boolean {
    return recordLive(r, (ref) => this.proc.alive(ref));
  }

  private write(r: MachineRecord): void {
    const tmp = `${this.dir}/.${r.name}.json.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    const fd = openSync(tmp, 'wx', 0o644);
    try {
      writeSync(fd, JSON.stringify(r, null, 2) + '\n');
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    try {
      renameSync(tmp, this.path(r.name));
    } catch (e) {
      try { unlinkSync(tmp); } catch { /* already gone */ }
      throw e;
    }
  }

  /** Reads a record under the lock, pruning it if dead or unreadable. */
  private current(name: string): MachineRecord | undefined {
    const r = this.read(name);
    if (r === undefined) return undefined;
    if (r === 'corrupt') {
      this.remove(name, 'the record is unreadable');
      return undefined;
    }
    if (!this.isLive(r)) {
      this.remove(name, `leader ${r.leader ? `PID ${r.leader.pid} ` : ''}and launcher PID ${r.launcher.pid} are gone`);
      return undefined;
    }
    return r;
  }

  private remove(name: string, why: string): void {
    try {
      unlinkSync(this.path(name));
      this.onPrune(name, why);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }

  private checkName(name: string): void {
    if (!recordNameOk(name)) throw new RegistryError('REG_NAME', `Invalid machine name: ${name}`);
  }

  /**
   * Records a new machine; this process is its launcher. Fails with REG_EXISTS when a live machine
   * has the name.
   */
  async register(m: NewMachine): Promise<MachineRecord> {
    this.checkName(m.name);
    const launcher = this.self();
    const leader = m.leader === undefined ? undefined : this.leaderRef(m.leader);
    return this.locked(() => {
      const existing = this.current(m.name);
      if (existing) {
        const who = existing.leader ? `leader PID ${existing.leader.pid}, ` : '';
        throw new RegistryError('REG_EXISTS',
          `Machine '${m.name}' already exists (${who}launcher PID ${existing.launcher.pid}, root ${existing.rootDirectory}); `
          + 'pick another name with -M or stop it first');
      }
      const r: MachineRecord = {
        version: RECORD_VERSION,
        name: m.name,
        class: 'container',
        launcher,
        rootDirectory: m.rootDirectory,
        namespaces: leader ? this.proc.namespaces(leader.pid) : {},
        startedAt: new Date().toISOString(),
        spec: structuredClone(m.spec),
      };
      if (leader) r.leader = leader;
      if (m.network) r.network = structuredClone(m.network);
      this.write(r);
      return r;
    });
  }

  private leaderRef(pid: number): ProcessRef {
    const ref = this.proc.process(pid);
    if (!ref) throw new RegistryError('REG_NO_LEADER', `the leader PID ${pid} does not exist (any more)`);
    return ref;
  }

  /** Changes a live record: sets the leader (with its start time and namespaces) or the network. */
  async update(name: string, patch: MachinePatch): Promise<MachineRecord> {
    const leader = patch.leader === undefined ? undefined : this.leaderRef(patch.leader);
    return this.locked(() => {
      const r = this.current(name);
      if (!r) throw new RegistryError('REG_NOT_FOUND', `No machine '${name}' is registered`);
      if (leader) {
        r.leader = leader;
        r.namespaces = this.proc.namespaces(leader.pid);
      }
      if (patch.network) r.network = structuredClone(patch.network);
      if (patch.cgroup) r.cgroup = structuredClone(patch.cgroup);
      this.write(r);
      return r;
    });
  }

  /**
   * Removes NAME's record if this process launched it, or it is dead, or `force`. Returns whether a
   * record was removed. A live machine of another launcher is left alone (REG_NOT_OWNER).
   */
  async unregister(name: string, opts: { force?: boolean } = {}): Promise<boolean> {
    return this.locked(() => {
      const r = this.read(name);
      if (r === undefined) return false;
      if (r !== 'corrupt' && !opts.force) {
        const me = this.self();
        const mine = r.launcher.pid === me.pid && r.launcher.startTime === me.startTime;
        if (!mine && this.isLive(r)) {
          throw new RegistryError('REG_NOT_OWNER', `Machine '${name}' belongs to launcher PID ${r.launcher.pid}, which is still running`);
        }
      }
      try {
        unlinkSync(this.path(name));
        return true;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
        throw e;
      }
    });
  }

  /** The live record of NAME, or undefined (a dead one is pruned). */
  get(name: string): MachineRecord | undefined {
    if (!recordNameOk(name)) return undefined;
    const r = this.read(name);
    if (r === undefined) return undefined;
    if (r !== 'corrupt' && this.isLive(r)) return r;
    // dead or unreadable: pruned when the lock is free (re-checked under it: it may have been
    // re-registered meanwhile); else read once more, a reader never waits
    const pruned = this.ifUnlocked(() => this.current(name));
    if (pruned) return pruned.value;
    const again = this.read(name);
    return again !== undefined && again !== 'corrupt' && this.isLive(again) ? again : undefined;
  }

  /** The names of the records in the directory (none when it does not exist). */
  private recordNames(): string[] {
    try {
      return readdirSync(this.dir).filter((f) => f.endsWith('.json') && !f.startsWith('.')).map((f) => f.slice(0, -5));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
  }

  /**
   * Removes every dead record (checked again under the lock) and returns them, so that the caller
   * can clear what their launchers left (cgroups, notify sockets: src/runtime/leftovers.ts).
   * Unreadable records are removed too, and not returned.
   */
  async pruneDead(): Promise<MachineRecord[]> {
    const names = this.recordNames();
    const suspect = names.filter((n) => {
      const r = this.read(n);
      return r !== undefined && (r === 'corrupt' || !this.isLive(r));
    });
    if (suspect.length === 0) return [];
    return this.locked(() => {
      const dead: MachineRecord[] = [];
      for (const n of suspect) {
        const r = this.read(n);
        if (r === undefined) continue;
        if (r === 'corrupt') {
          this.remove(n, 'the record is unreadable');
        } else if (!this.isLive(r)) {
          this.remove(n, `leader ${r.leader ? `PID ${r.leader.pid} ` : ''}and launcher PID ${r.launcher.pid} are gone`);
          dead.push(r);
        }
      }
      return dead;
    });
  }

  /** Every live machine, sorted by name; dead and unreadable records are pruned. */
  list(): MachineRecord[] {
    const names = this.recordNames();
    const live: MachineRecord[] = [];
    const suspect: string[] = [];
    for (const n of names) {
      const r = this.read(n);
      if (r === undefined) continue;
      if (r !== 'corrupt' && this.isLive(r)) live.push(r);
      else suspect.push(n);
    }
    if (suspect.length > 0) {
      const pruned = this.ifUnlocked(() => {
        for (const n of suspect) {
          const r = this.current(n); // re-checked under the lock: it may have been re-registered
          if (r) live.push(r);
        }
      });
      if (!pruned) {
        for (const n of suspect) {
          const r = this.read(n); // the lock is busy: left for the next reader, re-registered ones kept
          if (r !== undefined && r !== 'corrupt' && this.isLive(r)) live.push(r);
        }
      }
    }
    return live.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }
}
