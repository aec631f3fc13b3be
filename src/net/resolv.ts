// --resolv-conf= / ResolvConf=: what the container's /etc/resolv.conf becomes, with exactly
// systemd-nspawn's semantics (v252 setup_resolv_conf(), src/nspawn/nspawn.c; reference §7):
//
//   off            leave the container's file alone
//   copy-SRC       write SRC's content over the file — unless the file is a symlink (then it is
//                  left alone: the container's own resolver manages it)
//   replace-SRC    replace the file (also a symlink) with SRC's content
//   bind-SRC       read-only bind mount of SRC over the file (created empty if missing; a symlink
//                  is followed inside the container root); if the mount fails, copy-SRC
//   delete         remove the file
//   auto           private network → off; host runs resolved's stub listener → copy-stub;
//                  host has /etc/resolv.conf → copy-host; else delete — each copy/delete becoming
//                  bind/off when the container's /etc is not writable
//
// SRC: host = /etc/resolv.conf, static = /usr/lib/systemd/resolv.conf (127.0.0.53), uplink =
// /run/systemd/resolve/resolv.conf, stub = /run/systemd/resolve/stub-resolv.conf.
//
// Split in three: resolveResolvConfMode() (pure: mode + facts → action), probeResolvConfFacts()
// (reads the host), applyResolvConf() (acts on a container root directory). A bind is returned as a
// mount request: the launcher performs it inside the container's mount namespace, either with
// bindResolvConf(request, mountFn) (falls back to copying, as systemd does) or as plan ops
// (resolvConfBindOps). Files are written as a temporary file renamed over the target, in /etc as
// resolved inside the container root: no symlink ever leads a write out of the root, and the
// container never sees a half-written file. (Symlinks are resolved with lstat/readlink, not
// openat2(RESOLVE_IN_ROOT), which Node lacks; this runs before the container starts, so nothing
// inside can race it.)
import { closeSync, constants, fchmodSync, fchownSync, fsyncSync, lchownSync, lstatSync, openSync, readFileSync, readlinkSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { posix } from 'node:path';
import { Address4, Address6 } from 'ip-address';
import { NspawnError } from '../errors.js';
import type { ResolvConfMode } from './model.js';

export type ResolvConfSource = 'host' | 'static' | 'uplink' | 'stub';
/** Every mode but `auto`: what actually happens. */
export type ConcreteResolvConfMode = Exclude<ResolvConfMode, 'auto'>;

/** Where the sources are on the host (injectable: tests never touch the machine's /etc). */
export interface ResolvConfPaths {
  host: string;
  static: string;
  uplink: string;
  stub: string;
}

export const DEFAULT_RESOLV_CONF_PATHS: Readonly<ResolvConfPaths> = {
  host: '/etc/resolv.conf',
  static: '/usr/lib/systemd/resolv.conf',
  uplink: '/run/systemd/resolve/resolv.conf',
  stub: '/run/systemd/resolve/stub-resolv.conf',
};

/** What `auto` depends on. */
export interface ResolvConfFacts {
  /** the container has its own network namespace (any link option, --private-network) */
  privateNetwork: boolean;
  /** the container's /etc is writable: not --read-only, or --volatile=yes|overlay */
  etcWritable: boolean;
  /** the stub file exists on the host (as a symlink too) */
  stubExists: boolean;
  /** systemd-resolved runs with DNSStubListener=yes|udp (its stub answers on 127.0.0.53) */
  resolvedListening: boolean;
  /** the host's /etc/resolv.conf exists (as a symlink too, even a dangling one) */
  hostResolvConfExists: boolean;
}

export type ResolvConfAction =
  | { kind: 'off' }
  | { kind: 'delete' }
  /** write `source`'s content over the file unless it is a symlink */
  | { kind: 'copy'; source: string }
  /** replace the file, also a symlink, with `source`'s content */
  | { kind: 'replace'; source: string }
  /** read-only bind mount of `source`; copy if the mount fails */
  | { kind: 'bind'; source: string };

export interface ResolvConfDecision {
  /** `mode`, with `auto` resolved */
  mode: ConcreteResolvConfMode;
  action: ResolvConfAction;
}

/** "/etc writable" as systemd's etc_writable() decides it. */
export function etcWritable(opts: { readOnly: boolean; volatile?: 'no' | 'yes' | 'state' | 'overlay' }): boolean {
  return !opts.readOnly || opts.volatile === 'yes' || opts.volatile === 'overlay';
}

/** The concrete mode `auto` stands for (v252 setup_resolv_conf()). */
export function autoResolvConfMode(facts: ResolvConfFacts): ConcreteResolvConfMode {
  if (facts.privateNetwork) return 'off';
  if (facts.stubExists && facts.resolvedListening) return facts.etcWritable ? 'copy-stub' : 'bind-stub';
  if (facts.hostResolvConfExists) return facts.etcWritable ? 'copy-host' : 'bind-host';
  return facts.etcWritable ? 'delete' : 'off';
}

/** Mode + facts → what to do, with the source file's host path. Pure. */
export function resolveResolvConfMode(mode: ResolvConfMode, facts: ResolvConfFacts, paths: ResolvConfPaths = DEFAULT_RESOLV_CONF_PATHS): ResolvConfDecision {
  const concrete = mode === 'auto' ? autoResolvConfMode(facts) : mode;
  if (concrete === 'off') return { mode: concrete, action: { kind: 'off' } };
  if (concrete === 'delete') return { mode: concrete, action: { kind: 'delete' } };
  const [kind, src] = concrete.split('-') as ['copy' | 'replace' | 'bind', ResolvConfSource];
  return { mode: concrete, action: { kind, source: paths[src] } };
}

// ---------------------------------------------------------------------------------------------
// Host facts

/**
 * Is something answering DNS over UDP on 127.0.0.53:53 in this network namespace? That is what
 * systemd asks resolved over D-Bus (DNSStubListener ∈ {yes, udp}); we have no D-Bus client, and a
 * UDP socket bound to the stub address is the same fact seen from the kernel.
 */
export function stubListenerInProcNetUdp(procNetUdp: string): boolean {
  for (const line of procNetUdp.split('\n').slice(1)) {
    const local = line.trim().split(/\s+/)[1];
    if (!local) continue;
    const [addr, port] = local.split(':');
    // the address is the __be32 printed as a host-order u32: 3500007F on little-endian machines
    if (port === '0035' && (addr === '3500007F' || addr === '7F000035')) return true;
  }
  return false;
}

function lexists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** The host facts of `auto` (the caller adds privateNetwork and etcWritable from the launch spec). */
export function probeResolvConfFacts(paths: ResolvConfPaths = DEFAULT_RESOLV_CONF_PATHS, procNetUdp = '/proc/net/udp'):
  Pick<ResolvConfFacts, 'stubExists' | 'resolvedListening' | 'hostResolvConfExists'> {
  let listening = false;
  try {
    listening = stubListenerInProcNetUdp(readFileSync(procNetUdp, 'utf8'));
  } catch {
    // no /proc/net/udp (no IPv4?): no stub listener
  }
  return { stubExists: lexists(paths.stub), resolvedListening: listening, hostResolvConfExists: lexists(paths.host) };
}

// ---------------------------------------------------------------------------------------------
// Loopback resolvers

/** The `nameserver` addresses of a resolv.conf text. */
export function nameservers(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (m?.[1]) out.push(m[1]);
  }
  return out;
}

function isLoopback(address: string): boolean {
  const a = address.replace(/%.*$/, '');
  if (Address4.isValid(a)) return a.startsWith('127.');
  if (Address6.isValid(a)) {
    const v6 = new Address6(a);
    if (v6.correctForm() === '::1') return true;
    return v6.is4() && v6.to4().correctForm().startsWith('127.');
  }
  return false;
}

/**
 * With a private network the container has its own loopback: a resolver the file points at on
 * 127.0.0.0/8 or ::1 (resolved's 127.0.0.53, a local dnsmasq …) is unreachable from inside.
 */
export function loopbackResolverWarning(content: string, source: string, privateNetwork: boolean): string | undefined {
  if (!privateNetwork) return undefined;
  const all = nameservers(content);
  const loop = all.filter(isLoopback);
  if (loop.length === 0) return undefined;
  const which = loop.join(', ');
  return loop.length === all.length
    ? `${source} points at a resolver on the host's loopback (${which}), which the container cannot reach from its own network namespace: DNS lookups in the container will fail. Use --resolv-conf=copy-uplink (the upstream servers) or give the container a DNS server by DHCP`
    : `${source} lists resolvers on the host's loopback (${which}), which the container cannot reach from its own network namespace; it will only use the others`;
}

// ---------------------------------------------------------------------------------------------
// Resolving paths inside the container root

const MAX_SYMLINK_HOPS = 32;

export class ResolvConfError extends NspawnError {
  constructor(message: string, readonly errno: string, options?: { cause?: unknown }) {
    super(`RESOLV_${errno}`, message, options);
  }
}

/**
 * systemd's chase_symlinks() with a root: resolves `path` (inside the container) component by
 * component; symlinks are followed with absolute targets taken relative to `root`, and ".." never
 * climbs above it. Returns the host path and whether it exists. With `nonexistent`, a missing
 * component ends the walk (the rest is appended as is); without, it throws ENOENT.
 */
export function chaseInRoot(root: string, path: string, opts: { nonexistent?: boolean; followLast?: boolean } = {}): { path: string; exists: boolean } {
  const rootAbs = posix.resolve(root);
  const followLast = opts.followLast ?? true;
  let todo = path.split('/').filter((c) => c !== '' && c !== '.');
  let done = rootAbs;
  let hops = 0;
  while (todo.length) {
    const comp = todo.shift() as string;
    if (comp === '.') continue;
    if (comp === '..') {
      if (done !== rootAbs) done = posix.dirname(done);
      continue;
    }
    const candidate = posix.join(done, comp);
    let st;
    try {
      st = lstatSync(candidate);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && opts.nonexistent) {
        return { path: posix.join(candidate, ...todo), exists: false };
      }
      const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
      throw new ResolvConfError(`cannot resolve ${path} in ${rootAbs}: ${code === 'ENOENT' ? `${candidate} does not exist` : (err as Error).message}`, code, { cause: err });
    }
    if (st.isSymbolicLink() && (todo.length > 0 || followLast)) {
      if (++hops > MAX_SYMLINK_HOPS) throw new ResolvConfError(`too many levels of symbolic links resolving ${path} in ${rootAbs}`, 'ELOOP');
      const target = readlinkSync(candidate);
      if (target.startsWith('/')) done = rootAbs;
      todo = [...target.split('/').filter((c) => c !== '' && c !== '.'), ...todo];
      continue;
    }
    if (todo.length > 0 && !st.isDirectory()) throw new ResolvConfError(`cannot resolve ${path} in ${rootAbs}: ${candidate} is not a directory`, 'ENOTDIR');
    done = candidate;
  }
  return { path: done, exists: true };
}

// ---------------------------------------------------------------------------------------------
// Applying

/** A bind mount the launcher performs in the container's mount namespace. */
export interface ResolvConfMount {
  /** host path of the source file */
  source: string;
  /** host path of the target (inside the container root, symlinks resolved within it) */
  target: string;
  /** the same target as the container sees it (for mounts made after pivot_root) */
  containerPath: string;
  /** if the mount fails: copy `source` over /etc/resolv.conf (systemd's fallback); `why` is logged first */
  fallback: (why: string) => ResolvConfResult;
}

export interface ResolvConfResult {
  mode: ConcreteResolvConfMode;
  /** what happened to the container's /etc/resolv.conf */
  outcome: 'untouched' | 'copied' | 'replaced' | 'deleted' | 'bind-pending' | 'bound' | 'skipped';
  /** for outcome bind-pending: the mount to make */
  mount?: ResolvConfMount;
  /** why nothing changed when it should have, and the loopback-resolver warning */
  warnings: string[];
}

export interface ApplyOptions {
  paths?: ResolvConfPaths;
  /** the container has its own network namespace (for the loopback-resolver warning) */
  privateNetwork?: boolean;
  /** owner for written files (the container's root after the UID shift); default: leave as made */
  chown?: { uid: number; gid: number };
}

function errText(err: unknown): string {
  if (err instanceof ResolvConfError) return `${err.errno}: ${err.message}`;
  const e = err as NodeJS.ErrnoException;
  return e.code ? `${e.code}: ${e.message.replace(/^[A-Z]+: /, '')}` : String(err);
}

/** Writes `content` to dir/name through a temporary file renamed over it. Never follows dir/name. */
function writeAtomic(dir: string, name: string, content: Buffer, mode: number, owner?: { uid: number; gid: number }): void {
  const tmp = posix.join(dir, `.#${name}${randomBytes(6).toString('hex')}`);
  // O_EXCL: never opens an existing file or a symlink planted under the temporary name
  const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    for (let off = 0; off < content.length;) off += writeSync(fd, content, off);
    fchmodSync(fd, mode);
    if (owner) fchownSync(fd, owner.uid, owner.gid);
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, posix.join(dir, name));
  } catch (err) {
    try { closeSync(fd); } catch { /* closed already */ }
    try { unlinkSync(tmp); } catch { /* gone already */ }
    throw err;
  }
}

/**
 * Acts on the container root `root` as `decision` says. Never throws for a failure systemd only
 * warns about (the container then starts with its file as it was): those are in `warnings`. A bind
 * is prepared (target created if missing) and returned as `mount` for the launcher.
 */
export function applyResolvConf(root: string, decision: ResolvConfDecision, opts: ApplyOptions = {}): ResolvConfResult {
  const { mode, action } = decision;
  const warnings: string[] = [];
  const result = (outcome: ResolvConfResult['outcome'], extra: Partial<ResolvConfResult> = {}): ResolvConfResult => ({ mode, outcome, warnings, ...extra });
  if (action.kind === 'off') return result('untouched');

  let etc: string;
  try {
    etc = chaseInRoot(root, '/etc').path;
  } catch (err) {
    warnings.push(`Failed to resolve /etc path in container, ignoring: ${errText(err)}`);
    return result('skipped');
  }
  const where = posix.join(etc, 'resolv.conf');

  if (action.kind === 'delete') {
    try {
      unlinkSync(where);
      return result('deleted');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return result('untouched');
      warnings.push(`Failed to remove '${where}', ignoring: ${errText(err)}`);
      return result('skipped');
    }
  }

  let content: Buffer | undefined;
  try {
    content = readFileSync(action.source);
    const w = loopbackResolverWarning(content.toString('utf8'), action.source, opts.privateNetwork ?? false);
    if (w) warnings.push(w);
  } catch (err) {
    // a bind of a missing source fails too; the copy fallback then reports it
    if (action.kind !== 'bind') {
      warnings.push(`Failed to copy ${action.source} to ${where}, ignoring: ${errText(err)}`);
      return result('skipped');
    }
  }

  const copy = (replace: boolean): ResolvConfResult => {
    try {
      const data = content ?? readFileSync(action.source);
      let mode0 = 0o644;
      let owner = opts.chown;
      let st;
      try {
        st = lstatSync(where);
      } catch {
        st = undefined;
      }
      if (st?.isSymbolicLink() && !replace) {
        // copy_file(…, O_NOFOLLOW) fails with ELOOP: the container manages its own file
        warnings.push(`Failed to copy ${action.source} to ${where}, ignoring: it is a symlink (to ${readlinkSync(where)}), left to the container`);
        return result('skipped');
      }
      if (st?.isDirectory()) throw Object.assign(new Error(`${where} is a directory`), { code: 'EISDIR' });
      if (st && !replace) {
        // copying in place keeps the file's mode and owner; so does our rename
        mode0 = st.mode & 0o7777;
        owner ??= { uid: st.uid, gid: st.gid };
      }
      writeAtomic(etc, 'resolv.conf', data, mode0, owner);
      return result(replace ? 'replaced' : 'copied');
    } catch (err) {
      warnings.push(`Failed to copy ${action.source} to ${where}, ignoring: ${errText(err)}`);
      return result('skipped');
    }
  };

  if (action.kind === 'copy') return copy(false);
  if (action.kind === 'replace') return copy(true);

  // bind: the target is the file /etc/resolv.conf resolves to inside the root (created if missing)
  let target: { path: string; exists: boolean };
  try {
    target = chaseInRoot(root, '/etc/resolv.conf', { nonexistent: true });
  } catch (err) {
    warnings.push(`Failed to resolve /etc/resolv.conf path in container, ignoring: ${errText(err)}`);
    return result('skipped');
  }
  if (!target.exists) {
    try {
      closeSync(openSync(target.path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644));
      if (opts.chown) lchownSync(target.path, opts.chown.uid, opts.chown.gid);
    } catch {
      // as systemd's touch(): ignored; the mount fails then and the copy fallback reports
    }
  }
  const rootAbs = posix.resolve(root);
  return result('bind-pending', {
    mount: {
      source: action.source,
      target: target.path,
      containerPath: '/' + posix.relative(rootAbs, target.path),
      fallback: (why) => {
        warnings.push(why);
        return copy(false);
      },
    },
  });
}

// ---------------------------------------------------------------------------------------------
// Performing the bind

/** mount(2) flags used here (sys/mount.h). */
export const MS_RDONLY = 0x1;
export const MS_NOSUID = 0x2;
export const MS_NODEV = 0x4;
export const MS_REMOUNT = 0x20;
export const MS_BIND = 0x1000;

/** mount(2): the launcher's (native) one, or mountWithUtilLinux. Throws on failure. */
export type MountFn = (source: string | null, target: string, fstype: string | null, flags: number, data?: string) => void;

/** The two mount(2) calls of the bind: bind, then remount read-only, nosuid, nodev. */
export function resolvConfMountCalls(m: Pick<ResolvConfMount, 'source'>, target: string): Array<{ source: string | null; target: string; flags: number }> {
  return [
    { source: m.source, target, flags: MS_BIND },
    { source: null, target, flags: MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV },
  ];
}

/**
 * The bind as ops of the container plan (src/runtime/plan.ts `{op: 'mount', …}`), for mounts made
 * from inside the container's mount namespace. Before pivot_root use `target`; after, `containerPath`.
 */
export function resolvConfBindOps(m: ResolvConfMount, afterPivot = false): Array<{ op: 'mount'; source?: string; target: string; flags: number }> {
  return resolvConfMountCalls(m, afterPivot ? m.containerPath : m.target)
    .map((c) => (c.source === null ? { op: 'mount' as const, target: c.target, flags: c.flags } : { op: 'mount' as const, source: c.source, target: c.target, flags: c.flags }));
}

/**
 * Performs a pending bind with `mount` (in the current mount namespace, which must be the
 * container's). If binding fails, falls back to copying, as systemd does; if the remount fails the
 * bind is undone and that is an error in the result's warnings.
 */
export function bindResolvConf(result: ResolvConfResult, mount: MountFn, umount?: (target: string) => void): ResolvConfResult {
  const m = result.mount;
  if (result.outcome !== 'bind-pending' || !m) return result;
  const [bind, remount] = resolvConfMountCalls(m, m.target) as [{ source: string; target: string; flags: number }, { source: null; target: string; flags: number }];
  try {
    mount(bind.source, bind.target, null, bind.flags);
  } catch (err) {
    return m.fallback(`Failed to bind mount ${m.source} on ${m.target}, copying instead: ${errText(err)}`);
  }
  try {
    mount(null, remount.target, null, remount.flags);
  } catch (err) {
    try { umount?.(m.target); } catch { /* reported below */ }
    return { mode: result.mode, outcome: 'skipped', warnings: [...result.warnings, `Failed to remount ${m.target} read-only: ${errText(err)}`] };
  }
  return { mode: result.mode, outcome: 'bound', warnings: result.warnings };
}

/** mount(2) through util-linux's mount(8): for tests and tools that have no native mount. */
export const mountWithUtilLinux: MountFn = (source, target, fstype, flags) => {
  const opts: string[] = [];
  if (flags & MS_REMOUNT) opts.push('remount');
  if (flags & MS_BIND) opts.push('bind');
  if (flags & MS_RDONLY) opts.push('ro');
  if (flags & MS_NOSUID) opts.push('nosuid');
  if (flags & MS_NODEV) opts.push('nodev');
  const args = [...(opts.length ? ['-o', opts.join(',')] : []), ...(fstype ? ['-t', fstype] : []), ...(source !== null && !(flags & MS_REMOUNT) ? [source] : []), target];
  const r = spawnSync('mount', args, { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0) {
    throw Object.assign(new Error(`mount ${args.join(' ')}: ${(r.stderr || r.error?.message || `exit ${r.status}`).trim()}`), { code: 'EMOUNT' });
  }
};

/** umount(8), for tests. */
export function umountWithUtilLinux(target: string): void {
  const r = spawnSync('umount', [target], { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0) throw new Error(`umount ${target}: ${(r.stderr || `exit ${r.status}`).trim()}`);
}

/** Convenience for the launcher: decide from the mode and the probed host, then apply. */
export function setupResolvConf(root: string, mode: ResolvConfMode, spec: { privateNetwork: boolean; etcWritable: boolean },
  opts: ApplyOptions & { procNetUdp?: string } = {}): ResolvConfResult {
  const paths = opts.paths ?? DEFAULT_RESOLV_CONF_PATHS;
  const facts: ResolvConfFacts = { ...probeResolvConfFacts(paths, opts.procNetUdp), ...spec };
  return applyResolvConf(root, resolveResolvConfMode(mode, facts, paths), { ...opts, privateNetwork: spec.privateNetwork });
}

