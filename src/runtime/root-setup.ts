// The container's root before it starts: the checks systemd-nspawn makes of it, --template=,
// --network-namespace-path=, and the binds and tmpfs mounts resolved inside it.
import { existsSync, readFileSync, realpathSync, renameSync, rmSync, statSync, statfsSync } from 'node:fs';
import { posix } from 'node:path';
import { ConfigError, errorMessage } from '../errors.js';
import { logger } from '../log.js';
import { resolveInRoot, type PasswdEntry } from './container-root.js';
import { copyTree } from './file-tree.js';
import { LaunchError } from './launch-types.js';
import { bindIdmap, bindRecursive, idmapLines, type ResolvedBind, type ResolvedTmpfs } from './mounts.js';
import type { UidRange } from './namespaces.js';
import type { LaunchSpec } from './spec.js';

const log = logger('launcher');

/** Throws unless `dir` looks like what the mode needs (systemd-nspawn's path_is_os_tree checks). */
export function checkRoot(dir: string, spec: LaunchSpec): void {
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
export function populateFromTemplate(directory: string, template: string): void {
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
export function checkNetworkNamespace(path: string): void {
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
export function fileSystemOf(path: string): string | undefined {
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
export function resolveBinds(spec: LaunchSpec, directory: string, mountRoot: string,
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

export function resolveTmpfs(spec: LaunchSpec, directory: string, mountRoot: string): ResolvedTmpfs[] {
  return spec.tmpfs.map((t) => ({
    target: posix.join(mountRoot, resolveInRoot(directory, t.destination).slice(directory.replace(/\/+$/, '').length)),
    options: t.options,
  }));
}

/**
 * Where the command starts without --chdir=, as in systemd-nspawn's inner_child(): a command in
 * /, the shell (no command) in the user's home (/root for root) — or in / when that is missing
 * (nobody's /nonexistent): nothing is created in the image.
 */
export function workingDirectory(spec: LaunchSpec, directory: string, user: PasswdEntry | undefined): string {
  if (spec.command.length > 0 || spec.mode === 'boot') return '/';
  const home = user ? user.home : '/root';
  try {
    return statSync(resolveInRoot(directory, home)).isDirectory() ? home : '/';
  } catch {
    return '/';
  }
}
