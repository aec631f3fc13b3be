// cgroupfs file access for the machines' cgroups (sync: cgroupfs answers at once, and errors must
// carry the path): attributes, directories, and enabling controllers for children on cgroup v2.
import { closeSync, constants as fsConstants, mkdirSync, openSync, readFileSync, readdirSync, rmdirSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { NspawnError } from '../errors.js';
import { logger } from '../log.js';

const log = logger('cgroups');

/** The leaf a launcher moves into when its own cgroup must get children with controllers (cgroup v2). */
const SUPERVISOR = 'supervisor';

/** A filesystem operation on a cgroup failed; `errno`/`errnoCode` say what the kernel answered. */
export class CgroupError extends NspawnError {
  readonly path: string;
  readonly errno: number | undefined;
  readonly errnoCode: string | undefined;

  constructor(code: string, message: string, path: string, options?: { cause?: unknown; errno?: number; errnoCode?: string }) {
    super(code, message, options);
    this.path = path;
    this.errno = options?.errno;
    this.errnoCode = options?.errnoCode;
  }

  /** Wraps a Node fs error: code CGROUP_IO, errno and its name kept. */
  static io(op: string, path: string, err: unknown, hint = ''): CgroupError {
    const e = err as NodeJS.ErrnoException;
    const errnoCode = typeof e?.code === 'string' ? e.code : undefined;
    const errno = typeof e?.errno === 'number' ? Math.abs(e.errno) : undefined;
    return new CgroupError('CGROUP_IO', `${op} ${path}: ${errnoCode ?? (err instanceof Error ? err.message : String(err))}${hint ? ` (${hint})` : ''}`,
      path, { cause: err, ...(errno !== undefined ? { errno } : {}), ...(errnoCode !== undefined ? { errnoCode } : {}) });
  }
}

export function writeAttr(path: string, value: string, hint?: string): void {
  let fd: number;
  try {
    // O_WRONLY (write-only files like cgroup.kill refuse read opens), no O_CREAT: a missing knob is ENOENT
    fd = openSync(path, fsConstants.O_WRONLY | fsConstants.O_TRUNC);
  } catch (err) {
    throw CgroupError.io('open', path, err, hint);
  }
  try {
    writeSync(fd, value);
  } catch (err) {
    throw CgroupError.io(`write '${value.trim()}' to`, path, err, hint);
  } finally {
    closeSync(fd);
  }
}

export function checkPid(pid: number): void {
  if (!Number.isSafeInteger(pid) || pid <= 0) throw new NspawnError('CGROUP_BAD_PID', `cannot attach pid '${pid}'`);
}

export function readAttr(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

export function readBig(path: string): bigint | undefined {
  const t = readAttr(path)?.trim();
  if (t === undefined) return undefined;
  if (t === 'max') return undefined;
  return /^-?[0-9]+$/.test(t) ? BigInt(t) : undefined;
}

/** "key value" lines (memory.stat, cpu.stat, memory.events, memory.oom_control). */
export function readKeyed(path: string): Map<string, bigint> {
  const out = new Map<string, bigint>();
  for (const line of (readAttr(path) ?? '').split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v && /^[0-9]+$/.test(v)) out.set(k, BigInt(v));
  }
  return out;
}

export function readPids(dir: string): number[] {
  return (readAttr(join(dir, 'cgroup.procs')) ?? '').split('\n').filter(Boolean).map(Number);
}

export function errCode(err: unknown): string | undefined {
  const c = (err as NodeJS.ErrnoException)?.code;
  return typeof c === 'string' ? c : undefined;
}

export function mkdirIfMissing(path: string, created: string[]): void {
  try {
    mkdirSync(path);
    created.push(path);
  } catch (err) {
    if (errCode(err) !== 'EEXIST') throw CgroupError.io('mkdir', path, err);
  }
}

export function rmdirQuiet(path: string): void {
  try {
    rmdirSync(path);
  } catch (err) {
    const c = errCode(err);
    if (c !== 'ENOENT' && c !== 'EBUSY' && c !== 'ENOTEMPTY') throw CgroupError.io('rmdir', path, err);
  }
}

/** Sub-cgroups below `dir` (a container's own init makes some), deepest first. */
export function subCgroups(dir: string): string[] {
  const out: string[] = [];
  let entries: import('node:fs').Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!e.isDirectory()) continue;
    const sub = join(dir, e.name);
    out.push(...subCgroups(sub), sub);
  }
  return out;
}

/**
 * v2: enable `controllers` for the children of `dir` (cgroup.subtree_control). When `dir` holds
 * processes (EBUSY, "no internal processes") and this process is the only one, it moves into a
 * `supervisor` leaf first, as systemd-nspawn --keep-unit does; returns that leaf then. Directories it
 * makes are added to `created` (for the caller's undo).
 */
export function enableSubtree(dir: string, controllers: readonly string[], created: string[]): string | undefined {
  if (controllers.length === 0) return undefined;
  const file = join(dir, 'cgroup.subtree_control');
  const already = (readAttr(file) ?? '').trim().split(/\s+/);
  const missing = controllers.filter((c) => !already.includes(c));
  if (missing.length === 0) return undefined;
  const value = missing.map((c) => `+${c}`).join(' ');
  try {
    writeAttr(file, value);
    return undefined;
  } catch (err) {
    if (!(err instanceof CgroupError) || err.errnoCode !== 'EBUSY') throw err;
    const procs = readPids(dir);
    if (procs.length > 0 && procs.every((p) => p === process.pid)) {
      const sup = join(dir, SUPERVISOR);
      mkdirIfMissing(sup, created);
      writeAttr(join(sup, 'cgroup.procs'), String(process.pid));
      log.debug('moved the launcher into a leaf cgroup (cgroup v2: no processes in inner cgroups)', { cgroup: sup });
      writeAttr(file, value);
      return sup;
    }
    throw new CgroupError('CGROUP_INNER_PROCESSES',
      `cannot enable ${missing.join(', ')} for the children of ${dir}: it holds other processes (${procs.slice(0, 5).join(' ')}), and cgroup v2 ` +
      'allows controllers only below cgroups without processes; start nspawn-ts in a cgroup of its own ' +
      '(e.g. systemd-run --scope -p Delegate=yes nspawn-ts …)', file, { cause: err, errno: err.errno ?? 16, errnoCode: 'EBUSY' });
  }
}
