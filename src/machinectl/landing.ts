// Where an imported or downloaded image is built before it gets its name: a hidden directory
// `.#import-NAME-XXXXXX` in the machines directory (image listings skip ".#" names, as systemd's do),
// renamed to NAME only when the transfer is complete — an interrupted transfer never leaves a half
// image under the final name. Each such directory is held with flock() for as long as its transfer
// runs; one killed mid-way (kill -9, power cut) leaves an unlocked one, which the next transfer
// removes. Creating a directory and sweeping happen under one lock file, so a sweep never takes a
// directory that a starting transfer has made but not yet locked.
import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { sys } from '../native.js';
import { ImageError, imageNameValid, setImmutable, type ImageStore } from '../runtime/images.js';
import { logger } from '../log.js';
import { checkMachineName } from './start.js';

const log = logger('machinectl');

const LOCK_SH = 1;
const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_UN = 8;
const TEMP_PREFIX = '.#import-';
const SWEEP_LOCK = '.#transfer.lock';

export interface LandingOptions {
  /** replace an existing image of that name */
  force?: boolean;
  /** the machine using an image, if one does (a --force replacement is refused then) */
  inUse?: (img: { name: string; path: string; realPath: string }) => string | undefined;
}

/** Checks that NAME may be made (valid, and free unless --force) before any byte is transferred. */
export function checkTarget(images: ImageStore, name: string, opts: LandingOptions): void {
  checkMachineName(name);
  if (!imageNameValid(name)) throw new ImageError('IMAGE_NAME', `Invalid image name '${name}'`);
  const existing = images.find(name);
  if (existing && !opts.force) {
    throw new ImageError('IMAGE_EXISTS', `Image '${name}' already exists (${existing.path}); use --force to replace it`);
  }
  if (existing && opts.force) {
    const user = opts.inUse?.(existing);
    if (user !== undefined) throw new ImageError('IMAGE_BUSY', `Image '${name}' is in use by running machine '${user}'; stop it before replacing it`);
  }
}

function withSweepLock<T>(machinesDir: string, fn: () => T): T {
  const fd = openSync(join(machinesDir, SWEEP_LOCK), 'a', 0o600);
  try {
    sys().flock(fd, LOCK_EX);
    return fn();
  } finally {
    closeSync(fd); // releases the lock
  }
}

/** Removes the temporary directories of transfers that no longer run (their lock is free). */
function sweep(machinesDir: string): void {
  for (const entry of readdirSync(machinesDir)) {
    if (!entry.startsWith(TEMP_PREFIX)) continue;
    const path = join(machinesDir, entry);
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch {
      continue;
    }
    try {
      if (!sys().flock(fd, LOCK_SH | LOCK_NB)) continue; // its transfer still runs
      log.debug('removing the remains of an interrupted transfer', { path });
      try {
        rmSync(path, { recursive: true, force: true });
      } catch (err) {
        log.debug('could not remove them all; the next transfer tries again', { path, error: String(err) });
      }
    } finally {
      closeSync(fd);
    }
  }
}

export class Landing {
  private fd: number | undefined;

  private constructor(readonly images: ImageStore, readonly name: string, readonly dir: string, fd: number, private readonly opts: LandingOptions) {
    this.fd = fd;
  }

  /** A locked temporary directory for image NAME (checked with checkTarget() first). */
  static begin(images: ImageStore, name: string, opts: LandingOptions = {}): Landing {
    checkTarget(images, name, opts);
    const machines = images.machinesDir;
    mkdirSync(machines, { recursive: true, mode: 0o700 });
    return withSweepLock(machines, () => {
      sweep(machines);
      const dir = mkdtempSync(join(machines, `${TEMP_PREFIX}${name.slice(0, 64)}-`));
      const fd = openSync(dir, 'r');
      sys().flock(fd, LOCK_EX);
      return new Landing(images, name, dir, fd, opts);
    });
  }

  /**
   * The fd that holds the directory's lock: tools writing into the directory get it too, so the
   * lock lasts as long as any of them (a sweep never removes what a running tar still writes).
   */
  get lockFd(): number | undefined {
    return this.fd;
  }

  /** Gives the finished directory its name (replacing the old image with --force). */
  async commit(opts: { readOnly?: boolean } = {}): Promise<string> {
    const final = join(this.images.machinesDir, this.name);
    const existing = this.images.find(this.name);
    if (existing) {
      if (!this.opts.force) throw new ImageError('IMAGE_EXISTS', `Image '${this.name}' appeared while transferring (${existing.path}); use --force to replace it`);
      await this.images.remove(this.name, this.opts.inUse);
    }
    try {
      renameSync(this.dir, final);
    } catch (err) {
      throw new ImageError('IMAGE_IO', `Could not move the new image into place as ${final}: ${(err as Error).message}`, { cause: err });
    }
    this.release();
    if (opts.readOnly) await setImmutable(final, true);
    return final;
  }

  /** Removes the temporary directory (a failed or interrupted transfer). */
  abort(): void {
    rmSync(this.dir, { recursive: true, force: true });
    this.release();
  }

  private release(): void {
    if (this.fd === undefined) return;
    sys().flock(this.fd, LOCK_UN);
    closeSync(this.fd);
    this.fd = undefined;
  }
}
