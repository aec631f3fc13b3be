// Machine images: the directories (and raw disk files) in systemd's image search path
// (src/shared/discover-image.c), with /var/lib/machines replaced by $NSPAWN_TS_MACHINES_DIR when set.
// Listing, status, and the changes machined makes (src/machine/image-dbus.c): remove, rename and
// clone, each refused while a running machine uses the image, and carrying the image's .nspawn
// settings files along (next to the image, and in /etc/systemd/nspawn and /run/systemd/nspawn).
//
// An image may be a symlink to a directory elsewhere, and /var/lib/machines itself may be a
// symlink: both are followed. Removing a symlinked image removes the link, not what it points to.
//
// Files inside an image (os-release, hostname, machine-id) are read with symlinks resolved inside
// the image's root, never on the host: an absolute link in a container means the container's path.
import { execFile } from 'node:child_process';
import {
  accessSync, chmodSync, constants as fsConstants, copyFileSync, existsSync, lstatSync, mkdtempSync, readdirSync,
  readlinkSync, renameSync, rmSync, statSync, unlinkSync,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { NspawnError } from '../errors.js';
import { readBoundedText } from './bounded-read.js';
import { MACHINE_IMAGE_DIRS } from './cli.js';
import { SETTINGS_DIRS } from './settings.js';

const execFileP = promisify(execFile);

export type ImageType = 'directory' | 'raw' | 'block';

export interface Image {
  name: string;
  type: ImageType;
  /** the entry in its directory (may be a symlink) */
  path: string;
  /** what the entry resolves to */
  realPath: string;
  /** the entry is a symlink */
  link: boolean;
  readOnly: boolean;
  /** birth time, µs since the epoch (when the filesystem records it) */
  crtime?: number;
  /** µs since the epoch */
  mtime: number;
  /** bytes on disk, where cheaply known (raw images) */
  usage?: bigint;
  /** the size limit (a raw image's file size) */
  limit?: bigint;
}

export class ImageError extends NspawnError {}

/** image_name_is_valid(): a file name, no control characters, not a ".#" temporary. */
export function imageNameValid(name: string): boolean {
  if (name === '' || name === '.' || name === '..' || name.length > 255 || name.includes('/')) return false;
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(name)) return false;
  return !name.startsWith('.#');
}

export function defaultMachinesDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.NSPAWN_TS_MACHINES_DIR || '/var/lib/machines';
}

/** The image search path: systemd's, with the machines directory in place of /var/lib/machines. */
export function defaultSearchPath(env: NodeJS.ProcessEnv = process.env): string[] {
  const machines = defaultMachinesDir(env);
  return MACHINE_IMAGE_DIRS.map((d) => (d === '/var/lib/machines' ? machines : d));
}

export function defaultSettingsDirs(env: NodeJS.ProcessEnv = process.env): string[] {
  const v = env.NSPAWN_TS_SETTINGS_DIRS;
  return v !== undefined ? v.split(':').filter(Boolean) : [...SETTINGS_DIRS];
}

// ---------------------------------------------------------------------------------------------
// files inside a root

const MAX_LINKS = 40;

/**
 * The host path of `path` inside `root`, with every symlink resolved as the container would
 * resolve it (absolute targets start again at `root`, ".." stops at `root`). Undefined when a
 * component is missing or the links loop.
 */
export function resolveInRoot(root: string, path: string): string | undefined {
  const todo = path.split('/').filter((c) => c !== '' && c !== '.');
  const done: string[] = [];
  let links = 0;
  while (todo.length > 0) {
    const c = todo.shift() as string;
    if (c === '..') {
      done.pop();
      continue;
    }
    const host = join(root, ...done, c);
    let st;
    try {
      st = lstatSync(host);
    } catch {
      return undefined;
    }
    if (!st.isSymbolicLink()) {
      done.push(c);
      continue;
    }
    if (++links > MAX_LINKS) return undefined;
    const target = readlinkSync(host);
    const parts = target.split('/').filter((p) => p !== '' && p !== '.');
    if (target.startsWith('/')) done.length = 0;
    todo.unshift(...parts);
  }
  return join(root, ...done);
}

/** The content of `path` inside `root` (symlinks resolved inside it), or undefined (also for a FIFO, device or file over maxBytes). */
export function readFileInRoot(root: string, path: string, maxBytes = 1 << 20): string | undefined {
  const p = resolveInRoot(root, path);
  if (p === undefined) return undefined;
  try {
    return readBoundedText(p, { what: "the image's", maxBytes, maxLineLength: maxBytes });
  } catch {
    return undefined;
  }
}

/** os-release(5)/env-file syntax: KEY=VALUE lines, "…" and '…' quoting, backslash escapes, comments. */
export function parseEnvFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    const key = line.slice(0, eq).trim();
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) continue;
    let v = line.slice(eq + 1).trim();
    let value = '';
    while (v.length > 0) {
      const q = v[0];
      if (q === '"' || q === "'") {
        let i = 1;
        for (; i < v.length && v[i] !== q; i++) {
          if (q === '"' && v[i] === '\\' && i + 1 < v.length) i++;
          value += v[i];
        }
        v = v.slice(i + 1);
      } else {
        const m = /^[^"']+/.exec(v);
        const part = m ? m[0] : v;
        value += part.replace(/\\(.)/g, '$1');
        v = v.slice(part.length);
      }
    }
    out[key] = value;
  }
  return out;
}

/** /etc/os-release, else /usr/lib/os-release, of a root; {} when there is none. */
export function readOsRelease(root: string): Record<string, string> {
  const text = readFileInRoot(root, '/etc/os-release') ?? readFileInRoot(root, '/usr/lib/os-release');
  return text === undefined ? {} : parseEnvFile(text);
}

export function readHostname(root: string): string | undefined {
  const t = readFileInRoot(root, '/etc/hostname');
  const line = t?.split('\n').map((l) => l.trim()).find((l) => l !== '' && !l.startsWith('#'));
  return line || undefined;
}

export function readMachineIdOf(root: string): string | undefined {
  const t = readFileInRoot(root, '/etc/machine-id')?.trim();
  return t !== undefined && /^[0-9a-f]{32}$/.test(t) && !/^0+$/.test(t) ? t : undefined;
}

// ---------------------------------------------------------------------------------------------

export interface ImageStoreOptions {
  /** directories searched in order (first hit of a name wins); default: systemd's */
  searchPath?: readonly string[];
  /** where clones go (and the pool machinectl reports); default $NSPAWN_TS_MACHINES_DIR or /var/lib/machines */
  machinesDir?: string;
  /** admin directories of .nspawn files; default /etc/systemd/nspawn, /run/systemd/nspawn */
  settingsDirs?: readonly string[];
}

/** Says which running machine uses an image (its name), if one does. */
export type InUseCheck = (image: Image) => string | undefined;

function usec(ms: number): number {
  return Math.round(ms * 1000);
}

function errnoOf(err: unknown): string | undefined {
  const c = (err as NodeJS.ErrnoException)?.code;
  return typeof c === 'string' ? c : undefined;
}

/** Read-only: the filesystem is, or the entry is immutable (chattr +i), or a raw file has no write bits. */
function isReadOnly(path: string): boolean {
  try {
    accessSync(path, fsConstants.W_OK);
    return false;
  } catch (err) {
    return ['EROFS', 'EPERM', 'EACCES'].includes(errnoOf(err) ?? '');
  }
}

export class ImageStore {
  readonly searchPath: readonly string[];
  readonly machinesDir: string;
  readonly settingsDirs: readonly string[];

  constructor(opts: ImageStoreOptions = {}) {
    this.machinesDir = opts.machinesDir ?? defaultMachinesDir();
    this.searchPath = opts.searchPath ?? (opts.machinesDir !== undefined
      ? MACHINE_IMAGE_DIRS.map((d) => (d === '/var/lib/machines' ? this.machinesDir : d))
      : defaultSearchPath());
    this.settingsDirs = opts.settingsDirs ?? defaultSettingsDirs();
  }

  /** The image an entry of a search directory is, or undefined (not an image, or unreadable). */
  private inspect(dir: string, entry: string): Image | undefined {
    const path = join(dir, entry);
    let lst;
    let st;
    try {
      lst = lstatSync(path);
      st = lst.isSymbolicLink() ? statSync(path) : lst;
    } catch {
      return undefined;
    }
    let type: ImageType;
    let name = entry;
    if (st.isDirectory()) {
      type = 'directory';
    } else if (st.isFile() && entry.endsWith('.raw')) {
      type = 'raw';
      name = entry.slice(0, -4);
    } else if (st.isBlockDevice()) {
      type = 'block';
    } else {
      return undefined;
    }
    if (!imageNameValid(name)) return undefined;
    let realPath = path;
    if (lst.isSymbolicLink()) {
      try {
        realPath = resolve(dirname(path), readlinkSync(path));
      } catch { /* raced with a removal: keep the entry */ }
    }
    const img: Image = {
      name, type, path, realPath, link: lst.isSymbolicLink(), readOnly: isReadOnly(path), mtime: usec(st.mtimeMs),
    };
    if (st.birthtimeMs > 0) img.crtime = usec(st.birthtimeMs);
    if (type === 'raw') {
      img.usage = BigInt(st.blocks) * 512n;
      img.limit = BigInt(st.size);
    }
    return img;
  }

  /** Every image, sorted by name; the first directory in the search path wins a name. */
  list(opts: { all?: boolean } = {}): Image[] {
    const seen = new Map<string, Image>();
    for (const dir of this.searchPath) {
      let entries: string[];
      try {
        entries = readdirSync(dir);
      } catch {
        continue;
      }
      for (const e of entries.sort()) {
        const img = this.inspect(dir, e);
        if (!img || seen.has(img.name)) continue;
        if (img.name.startsWith('.') && !opts.all) continue;
        seen.set(img.name, img);
      }
    }
    return [...seen.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  find(name: string): Image | undefined {
    if (!imageNameValid(name)) return undefined;
    for (const dir of this.searchPath) {
      for (const entry of [name, `${name}.raw`]) {
        const img = this.inspect(dir, entry);
        if (img && img.name === name) return img;
      }
    }
    return undefined;
  }

  /** The image NAME; ImageError IMAGE_NOT_FOUND (or IMAGE_NAME) otherwise. */
  get(name: string): Image {
    this.checkName(name);
    const img = this.find(name);
    if (!img) {
      throw new ImageError('IMAGE_NOT_FOUND', `No image '${name}' known (looked in ${this.searchPath.join(', ')})`);
    }
    return img;
  }

  private checkName(name: string): void {
    if (!imageNameValid(name)) {
      throw new ImageError('IMAGE_NAME', `Invalid image name '${name}': an image name is a file name (no '/', no control characters, not '.' or '..', not starting with '.#')`);
    }
  }

  /** Files inside a directory image (undefined for raw and block images, which we do not open). */
  rootOf(img: Image): string | undefined {
    return img.type === 'directory' ? img.path : undefined;
  }

  /** The .nspawn files that belong to an image: admin directories first, then next to it. */
  settingsFiles(img: Image, name = img.name): string[] {
    return [...this.settingsDirs.map((d) => join(d, `${name}.nspawn`)), join(dirname(img.path), `${name}.nspawn`)];
  }

  private refuseVendorOrBusy(img: Image, what: string, inUse?: InUseCheck): void {
    if (img.path.startsWith('/usr/')) {
      throw new ImageError('IMAGE_READ_ONLY', `Image '${img.name}' is a vendor image in ${dirname(img.path)} and cannot be ${what}`);
    }
    const user = inUse?.(img);
    if (user !== undefined) {
      throw new ImageError('IMAGE_BUSY', `Image '${img.name}' is in use by running machine '${user}'; stop it first (machinectl-ts poweroff ${user})`);
    }
  }

  /**
   * Removes image NAME and its .nspawn files. A symlinked image loses its link only. The immutable
   * flag of a read-only directory is dropped first, as machined does.
   */
  async remove(name: string, inUse?: InUseCheck): Promise<{ removed: string; keptTarget?: string }> {
    const img = this.get(name);
    this.refuseVendorOrBusy(img, 'removed', inUse);
    for (const f of this.settingsFiles(img)) rmSync(f, { force: true });
    if (img.link) {
      unlinkSync(img.path);
      return { removed: img.path, keptTarget: img.realPath };
    }
    if (img.type === 'directory' && img.readOnly) await setImmutable(img.path, false).catch(() => undefined);
    try {
      rmSync(img.path, { recursive: true, force: false });
    } catch (err) {
      throw new ImageError('IMAGE_IO', `Could not remove image '${name}' (${img.path}): ${errnoOf(err) ?? String(err)}`, { cause: err });
    }
    return { removed: img.path };
  }

  private checkNewName(newName: string): void {
    this.checkName(newName);
    const clash = this.find(newName);
    if (clash) throw new ImageError('IMAGE_EXISTS', `Image '${newName}' already exists (${clash.path})`);
  }

  /** Renames image NAME to NEWNAME in its directory, with its .nspawn files. */
  async rename(name: string, newName: string, inUse?: InUseCheck): Promise<Image> {
    const img = this.get(name);
    this.checkNewName(newName);
    this.refuseVendorOrBusy(img, 'renamed', inUse);
    const target = join(dirname(img.path), img.type === 'raw' ? `${newName}.raw` : newName);
    // an immutable directory cannot be renamed: drop the flag for the rename, as machined does
    const immutable = img.type === 'directory' && !img.link && img.readOnly;
    if (immutable) await setImmutable(img.path, false);
    try {
      renameSync(img.path, target);
    } catch (err) {
      if (immutable) await setImmutable(img.path, true).catch(() => undefined);
      throw new ImageError('IMAGE_IO', `Could not rename image '${name}' to '${newName}': ${errnoOf(err) ?? String(err)}`, { cause: err });
    }
    if (immutable) await setImmutable(target, true);
    const oldSettings = this.settingsFiles(img);
    const newSettings = this.settingsFiles({ ...img, path: target }, newName);
    oldSettings.forEach((f, i) => {
      if (existsSync(f)) renameSync(f, newSettings[i] as string);
    });
    return this.get(newName);
  }

  /**
   * Copies image NAME to NEWNAME in the machines directory (reflinks where the filesystem has
   * them), with its .nspawn files; the copy is read-only with `readOnly`. A failure removes the
   * half-made copy.
   */
  async clone(name: string, newName: string, opts: { readOnly?: boolean } = {}): Promise<Image> {
    const img = this.get(name);
    this.checkNewName(newName);
    if (img.type === 'block') throw new ImageError('IMAGE_TYPE', `Image '${name}' is a block device; only directory and raw images can be cloned`);
    const final = join(this.machinesDir, img.type === 'raw' ? `${newName}.raw` : newName);
    let tmp: string | undefined;
    try {
      if (img.type === 'directory') {
        tmp = mkdtempSync(join(this.machinesDir, `.#clone-${newName}-`));
        // cp -a keeps owners, modes, links, device nodes, xattrs and hard links; Node's fs.cp does not
        await execFileP('cp', ['-a', '--reflink=auto', '--', `${img.path}/.`, tmp], { maxBuffer: 1 << 20 });
      } else {
        tmp = join(this.machinesDir, `.#clone-${newName}-${process.pid}.raw`);
        copyFileSync(img.path, tmp, fsConstants.COPYFILE_FICLONE);
      }
      if (existsSync(final)) throw new ImageError('IMAGE_EXISTS', `Image '${newName}' already exists (${final})`);
      renameSync(tmp, final);
      tmp = undefined;
      if (opts.readOnly) await markReadOnly(final, img.type);
      const srcSettings = this.settingsFiles(img);
      const dstSettings = this.settingsFiles({ ...img, path: final }, newName);
      srcSettings.forEach((f, i) => {
        if (existsSync(f)) copyFileSync(f, dstSettings[i] as string);
      });
    } catch (err) {
      if (tmp !== undefined) rmSync(tmp, { recursive: true, force: true });
      if (err instanceof ImageError) throw err;
      const e = err as { stderr?: string; message?: string };
      throw new ImageError('IMAGE_IO', `Could not clone image '${name}' to '${newName}': ${(e.stderr ?? '').trim() || errnoOf(err) || e.message}`, { cause: err });
    }
    return this.get(newName);
  }
}

/** chattr ±i: what machined uses to make a directory image read-only. */
export async function setImmutable(path: string, on: boolean): Promise<void> {
  try {
    await execFileP('chattr', [on ? '+i' : '-i', '--', path]);
  } catch (err) {
    const e = err as { stderr?: string; message?: string };
    throw new ImageError('IMAGE_IO', `Could not ${on ? 'set' : 'clear'} the immutable flag of ${path}: ${(e.stderr ?? '').trim() || e.message}`, { cause: err });
  }
}

async function markReadOnly(path: string, type: ImageType): Promise<void> {
  if (type === 'directory') {
    await setImmutable(path, true);
    return;
  }
  chmodSync(path, statSync(path).mode & ~0o222 & 0o7777);
}

