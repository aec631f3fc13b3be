// Where a host's cgroups are: its hierarchies (cgroup v1 per controller group, cgroup2), read from
// /proc/self/mountinfo and /proc/self/cgroup, and where memory, cpu, cpuacct and pids live (see
// cgroups.ts for the unified, legacy and hybrid layouts).
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** The controllers machines use. cpuacct exists only on v1 (v2's cpu.stat always has usage). */
export type Controller = 'memory' | 'cpu' | 'cpuacct' | 'pids';
export const CONTROLLERS: readonly Controller[] = ['memory', 'cpu', 'cpuacct', 'pids'];


export interface MountEntry {
  mountId: number;
  parentId: number;
  /** "major:minor" of the filesystem */
  dev: string;
  /** the path inside the filesystem that is mounted (for cgroupfs: the cgroup at the mount point) */
  root: string;
  mountPoint: string;
  fsType: string;
  superOptions: string[];
}

/** mountinfo fields are octal-escaped (space → \040). */
function unescapeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Parses /proc/self/mountinfo (proc(5)); malformed lines are skipped. */
export function parseMountinfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const pre = line.slice(0, sep).split(' ');
    const post = line.slice(sep + 3).split(' ');
    if (pre.length < 6 || post.length < 3) continue;
    out.push({
      mountId: Number(pre[0]), parentId: Number(pre[1]), dev: pre[2]!, root: unescapeMountField(pre[3]!),
      mountPoint: unescapeMountField(pre[4]!), fsType: post[0]!, superOptions: post[2]!.split(','),
    });
  }
  return out;
}

export interface ProcCgroupEntry {
  /** hierarchy ID; 0 for cgroup2 */
  id: number;
  /** controllers (v1), "name=systemd" for named hierarchies, empty for cgroup2 */
  controllers: string[];
  path: string;
}

/** Parses /proc/PID/cgroup ("4:memory:/process_api/x", "0::/"). */
export function parseProcCgroup(text: string): ProcCgroupEntry[] {
  const out: ProcCgroupEntry[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    out.push({ id: Number(m[1]), controllers: m[2] ? m[2].split(',') : [], path: m[3]! });
  }
  return out;
}

/** Mount options of a v1 cgroupfs that are not controllers. */
const V1_NON_CONTROLLER_OPTIONS = new Set(['rw', 'ro', 'noprefix', 'clone_children', 'xattr', 'cpuset_v2_mode', 'favordynmods', 'all', 'none']);

export interface Hierarchy {
  version: 1 | 2;
  /** v1: the controllers bound to it; v2: those its root offers (cgroup.controllers) */
  controllers: string[];
  /** v1 named hierarchy ("systemd" for name=systemd) */
  name?: string;
  mountPoint: string;
  /** the cgroup that is mounted at mountPoint (mountinfo's root field; "/" unless in a container) */
  mountRoot: string;
  /** this process's cgroup in the hierarchy, if /proc/self/cgroup lists it */
  ownPath?: string;
}

export interface CgroupLayout {
  mode: 'unified' | 'hybrid' | 'legacy' | 'none';
  hierarchies: Hierarchy[];
  /** where each controller lives (v1 hierarchy, or the cgroup2 when it offers it) */
  controllers: Partial<Record<Controller, Hierarchy>>;
  /** the cgroup2 hierarchy, in unified or hybrid mode */
  unified?: Hierarchy;
}

export interface DetectOptions {
  /** /proc/self/mountinfo text (default: read it) */
  mountinfo?: string;
  /** /proc/self/cgroup text (default: read it) */
  procCgroup?: string;
  /** reads a file, undefined if missing (default: the real filesystem) */
  readFile?: (path: string) => string | undefined;
  /**
   * Whether the mount is what its mount point shows (a later mount can cover it: npm test mounts a
   * fresh /sys over the host's). Default: stat(mountPoint).st_dev equals the mount's device.
   */
  isVisible?: (mount: MountEntry) => boolean;
}

function readOptional(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** glibc's makedev() encoding of st_dev. */
function makedev(major: bigint, minor: bigint): bigint {
  return (minor & 0xffn) | ((major & 0xfffn) << 8n) | ((minor & ~0xffn) << 12n) | ((major & ~0xfffn) << 32n);
}

function mountIsVisible(m: MountEntry): boolean {
  const [maj, min] = m.dev.split(':');
  try {
    return statSync(m.mountPoint, { bigint: true }).dev === makedev(BigInt(maj ?? 0), BigInt(min ?? 0));
  } catch {
    return false;
  }
}

/** Path of `cgroupPath` (relative to the hierarchy root) in the filesystem, or undefined if not under the mount. */
export function cgroupFsPath(h: Hierarchy, cgroupPath: string): string | undefined {
  const root = h.mountRoot === '/' ? '' : h.mountRoot.replace(/\/+$/, '');
  if (root && cgroupPath !== root && !cgroupPath.startsWith(root + '/')) return undefined;
  const rel = cgroupPath.slice(root.length).replace(/^\/+/, '');
  return rel ? join(h.mountPoint, rel) : h.mountPoint;
}

/** Finds the host's cgroup hierarchies and where memory, cpu, cpuacct and pids live. */
export function detectLayout(opts: DetectOptions = {}): CgroupLayout {
  const mountinfo = opts.mountinfo ?? readFileSync('/proc/self/mountinfo', 'utf8');
  const procCgroup = opts.procCgroup ?? readOptional('/proc/self/cgroup') ?? '';
  const readFile = opts.readFile ?? readOptional;
  const visible = opts.isVisible ?? mountIsVisible;
  const own = parseProcCgroup(procCgroup);

  const hierarchies: Hierarchy[] = [];
  const seen = new Set<string>();
  for (const m of parseMountinfo(mountinfo)) {
    if (m.fsType !== 'cgroup' && m.fsType !== 'cgroup2') continue;
    if (!visible(m)) continue;
    if (m.fsType === 'cgroup2') {
      // one cgroup2 hierarchy per system; the first visible mount of it is used
      if (seen.has('v2')) continue;
      seen.add('v2');
      const ownPath = own.find((e) => e.id === 0 && e.controllers.length === 0)?.path;
      const controllers = (readFile(join(m.mountPoint, 'cgroup.controllers')) ?? '').trim().split(/\s+/).filter(Boolean);
      hierarchies.push({ version: 2, controllers, mountPoint: m.mountPoint, mountRoot: m.root, ...(ownPath !== undefined ? { ownPath } : {}) });
      continue;
    }
    const controllers = m.superOptions.filter((o) => !o.includes('=') && !V1_NON_CONTROLLER_OPTIONS.has(o));
    const nameOpt = m.superOptions.find((o) => o.startsWith('name='));
    const name = nameOpt?.slice(5);
    const id = [...controllers].sort().join(',') + (name ? `;name=${name}` : '');
    if (seen.has(id)) continue; // the same hierarchy mounted twice
    seen.add(id);
    const ownEntry = own.find((e) => e.id !== 0 && (name
      ? e.controllers.includes(`name=${name}`)
      : controllers.length > 0 && controllers.every((c) => e.controllers.includes(c))));
    hierarchies.push({
      version: 1, controllers, mountPoint: m.mountPoint, mountRoot: m.root,
      ...(name ? { name } : {}), ...(ownEntry ? { ownPath: ownEntry.path } : {}),
    });
  }

  const unified = hierarchies.find((h) => h.version === 2);
  const controllers: Partial<Record<Controller, Hierarchy>> = {};
  for (const c of CONTROLLERS) {
    const v1 = hierarchies.find((h) => h.version === 1 && h.controllers.includes(c));
    if (v1) controllers[c] = v1;
    else if (unified && c !== 'cpuacct' && unified.controllers.includes(c)) controllers[c] = unified;
  }
  const v1Controllers = hierarchies.some((h) => h.version === 1 && h.controllers.length > 0);
  const mode = unified ? (v1Controllers ? 'hybrid' : 'unified') : v1Controllers ? 'legacy' : 'none';
  return { mode, hierarchies, controllers, ...(unified ? { unified } : {}) };
}

/** One directory of a machine: the hierarchy it is in and what it controls there. */
export interface CgroupDir {
  version: 1 | 2;
  /** v1: the hierarchy's controllers; v2: the controllers enabled for this cgroup */
  controllers: string[];
  /** v1 named hierarchy ("systemd") */
  name?: string;
  path: string;
}
