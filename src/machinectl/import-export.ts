// import-tar, import-fs and export-tar: machinectl's image transfer verbs, done in-process where
// systemd-importd would do them. Imports are built in a locked hidden directory and named at the
// end (landing.ts); exports are written to a temporary file next to the target and renamed into
// place. SIGINT or SIGTERM mid-way removes what was begun and exits 130/143; kill -9 leaves a
// hidden directory that the next transfer sweeps away.
import { execFile } from 'node:child_process';
import { closeSync, createReadStream, fsyncSync, openSync, renameSync, statSync, unlinkSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { isatty } from 'node:tty';
import { ImageError, type ImageStore } from '../runtime/images.js';
import { HintedConfigError, machineNameProblem } from '../runtime/machine-name.js';
import { Landing, checkTarget, type LandingOptions } from './landing.js';
import { Progress, silentProgress } from './progress.js';
import { checked, compressionFromName, createTar, extractTar, stopTransferTools, stripTarSuffix, tool, type Compression } from './transfer.js';

const execFileP = promisify(execFile);

export interface TransferIo {
  /** progress and messages */
  stderr: (text: string) => void;
  /** stderr is a terminal: a redrawn bar instead of 10% lines */
  tty: boolean;
  columns?: number;
  quiet: boolean;
}

export interface ImportOptions extends LandingOptions {
  readOnly?: boolean;
  io: TransferIo;
}

export function progressFor(io: TransferIo, label: string, total?: number): Progress {
  if (io.quiet) return silentProgress();
  return new Progress({ label, tty: io.tty, write: io.stderr, ...(total !== undefined ? { total } : {}), ...(io.columns !== undefined ? { columns: io.columns } : {}) });
}

/**
 * Runs `fn`; if SIGINT or SIGTERM arrives meanwhile, stops the transfer's tools, runs `undo` and
 * exits as a killed process would (128 + the signal).
 */
export async function interruptible<T>(undo: () => void, fn: () => Promise<T>): Promise<T> {
  let stopping = false;
  const handlers: Array<[NodeJS.Signals, () => void]> = (['SIGINT', 'SIGTERM'] as const).map((sig) => [sig, () => {
    if (stopping) return;
    stopping = true;
    void stopTransferTools().then(undo).finally(() => process.exit(128 + (sig === 'SIGINT' ? 2 : 15)));
  }]);
  for (const [sig, h] of handlers) process.on(sig, h);
  try {
    return await fn();
  } finally {
    for (const [sig, h] of handlers) process.off(sig, h);
  }
}

/** The image name a file or URL implies (import-tar FILE, pull-tar URL), or an error asking for one. */
export function nameFromSource(source: string): string {
  const last = basename(source.replace(/[?#].*$/, '').replace(/\/+$/, ''));
  const name = stripTarSuffix(last);
  if (machineNameProblem(name) !== undefined) {
    throw new HintedConfigError(`Cannot make a valid machine name of '${last}'`, `give the image a name after it: ${source} NAME`, 'CFG_MACHINE_NAME');
  }
  return name;
}

/** Unpacks a tar archive (FILE, or standard input for '-') as image NAME. */
export async function importTar(images: ImageStore, file: string, nameArg: string | undefined, opts: ImportOptions): Promise<string> {
  const stdin = file === '-';
  if (stdin && nameArg === undefined) throw new ImageError('IMAGE_NAME', "import-tar from standard input needs an image name: import-tar - NAME");
  const name = nameArg ?? nameFromSource(file);
  checkTarget(images, name, opts);
  let total: number | undefined;
  if (!stdin) {
    try {
      const st = statSync(file);
      if (!st.isFile()) throw new ImageError('IMAGE_SOURCE', `${file} is not a regular file`);
      total = st.size;
    } catch (err) {
      if (err instanceof ImageError) throw err;
      throw new ImageError('IMAGE_SOURCE', `Cannot read ${file}: ${(err as Error).message}`, { cause: err });
    }
  }
  const input = stdin ? process.stdin : createReadStream(file);
  let landing: Landing | undefined;
  return interruptible(() => landing?.abort(), async () => {
    landing = Landing.begin(images, name, opts);
    const progress = progressFor(opts.io, `Importing ${stdin ? 'standard input' : basename(file)}`, total);
    try {
      await extractTar(input, landing.dir, (c) => progress.add(c.length), landing.lockFd);
      progress.finish(true);
      return await landing.commit({ readOnly: opts.readOnly ?? false });
    } catch (err) {
      progress.finish(false);
      landing.abort();
      throw err;
    }
  });
}

/** Copies directory DIR as image NAME (owners, modes, xattrs, ACLs, device nodes kept; reflinks where possible). */
export async function importFs(images: ImageStore, dir: string, nameArg: string | undefined, opts: ImportOptions): Promise<string> {
  const src = resolve(dir);
  let st;
  try {
    st = statSync(src);
  } catch (err) {
    throw new ImageError('IMAGE_SOURCE', `Cannot read ${dir}: ${(err as Error).message}`, { cause: err });
  }
  if (!st.isDirectory()) throw new ImageError('IMAGE_SOURCE', `${dir} is not a directory`);
  const name = nameArg ?? nameFromSource(src);
  let landing: Landing | undefined;
  return interruptible(() => landing?.abort(), async () => {
    landing = Landing.begin(images, name, opts);
    if (!opts.io.quiet) opts.io.stderr(`Importing ${src} as '${name}'.\n`);
    try {
      // cp -a keeps owners, modes, xattrs, ACLs, device nodes and hard links; it holds the lock too (extractTar())
      const lock = landing.lockFd;
      const cp = tool(['cp', '-a', '--reflink=auto', '--', `${src}/.`, landing.dir], ['ignore', 'ignore', 'pipe', ...(lock !== undefined ? [lock] : [])]);
      await checked([cp], `Could not copy ${src}`);
      return await landing.commit({ readOnly: opts.readOnly ?? false });
    } catch (err) {
      landing.abort();
      throw err;
    }
  });
}

/** Bytes in the files of a tree (du --apparent-size), for the progress of an export. */
async function apparentSize(dir: string): Promise<number | undefined> {
  try {
    const { stdout } = await execFileP('du', ['-s', '--apparent-size', '-B1', '--', dir], { maxBuffer: 1 << 20 });
    const n = Number(stdout.split('\t')[0]);
    return Number.isFinite(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

export interface ExportOptions {
  /** --format= (else from FILE's suffix) */
  format?: Compression;
  io: TransferIo;
}

/** Writes image NAME as a tar archive to FILE (compressed by its suffix), or to standard output for '-'. */
export async function exportTar(images: ImageStore, name: string, file: string, opts: ExportOptions): Promise<void> {
  const img = images.get(name);
  const root = images.rootOf(img);
  if (root === undefined) throw new ImageError('IMAGE_TYPE', `Image '${name}' is a ${img.type} image; export-tar exports directory images`);
  const stdout = file === '-';
  if (stdout && isatty(1)) throw new ImageError('IMAGE_TARGET', 'Refusing to write an archive to a terminal; redirect standard output or give a file name');
  const compression = opts.format ?? (stdout ? 'none' : compressionFromName(file));
  const total = await apparentSize(root);
  const progress = progressFor(opts.io, `Exporting '${name}'`, total);
  let fd = 1;
  let tmp: string | undefined;
  if (!stdout) {
    const target = resolve(file);
    tmp = join(dirname(target), `.#${basename(target).slice(0, 200)}.${process.pid}.tmp`);
    try {
      fd = openSync(tmp, 'wx', 0o644);
    } catch (err) {
      throw new ImageError('IMAGE_TARGET', `Cannot create ${tmp}: ${(err as Error).message}`, { cause: err });
    }
  }
  const undo = (): void => {
    if (tmp === undefined) return;
    try {
      unlinkSync(tmp);
    } catch { /* gone */ }
  };
  await interruptible(undo, async () => {
    try {
      await createTar(root, compression, fd, (c) => progress.add(c.length));
      if (tmp !== undefined) {
        fsyncSync(fd);
        closeSync(fd);
        fd = -1;
        renameSync(tmp, resolve(file));
        tmp = undefined;
      }
      progress.finish(true);
    } catch (err) {
      progress.finish(false);
      if (tmp !== undefined && fd >= 0) closeSync(fd);
      undo();
      throw err;
    }
  });
}
