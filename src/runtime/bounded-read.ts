// Reading a small text file that someone else may control (a .nspawn file next to an image, a
// properties file, an image's /etc/passwd or os-release) without letting it choose what we read:
// opened with O_NOFOLLOW|O_NONBLOCK (a symlink to /dev/zero is refused, a FIFO cannot make us
// wait), required to be a regular file, read up to a size cap, and refused when a line is longer
// than systemd's LONG_LINE_MAX ("Line too long"). Before this, a .nspawn symlinked to /dev/zero
// took the launcher to 7 GB and a FIFO hung it.
import { closeSync, fstatSync, openSync, readSync, constants as fsc } from 'node:fs';
import { NspawnError, errorMessage } from '../errors.js';

/** systemd's LONG_LINE_MAX: longer lines fail config_parse() with "Line too long". */
export const MAX_LINE_LENGTH = 1024 * 1024;
/** a settings file is a few hundred bytes; this leaves room for comments, not for a disk image */
export const MAX_SETTINGS_FILE_SIZE = 4 * 1024 * 1024;

export class BoundedReadError extends NspawnError {
  readonly path: string;

  constructor(code: string, path: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.path = path;
  }
}

export interface BoundedReadOptions {
  /** what the file is, for messages ("settings file") */
  what: string;
  maxBytes?: number;
  maxLineLength?: number;
  /**
   * follow a symlink at the path's last component (the admin's own directories, where a link is
   * the admin's choice); the target must still be a regular file within the caps
   */
  followSymlink?: boolean;
}

/**
 * The file's text, or undefined when it does not exist. Throws BoundedReadError (code
 * FILE_NOT_REGULAR, FILE_TOO_LARGE, LINE_TOO_LONG, FILE_READ) naming the file.
 */
export function readBoundedText(path: string, opts: BoundedReadOptions): string | undefined {
  const maxBytes = opts.maxBytes ?? MAX_SETTINGS_FILE_SIZE;
  const maxLine = opts.maxLineLength ?? MAX_LINE_LENGTH;
  let fd: number;
  try {
    fd = openSync(path, fsc.O_RDONLY | fsc.O_NONBLOCK | fsc.O_NOCTTY | (opts.followSymlink ? 0 : fsc.O_NOFOLLOW));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') {
      throw new BoundedReadError('FILE_NOT_REGULAR', path, `Refusing to read ${opts.what} ${path}: it is a symbolic link (not followed here; put the file itself there)`, { cause: err });
    }
    throw new BoundedReadError('FILE_READ', path, `Failed to open ${opts.what} ${path}: ${errorMessage(err)}`, { cause: err });
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) {
      const kind = st.isFIFO() ? 'a FIFO' : st.isCharacterDevice() ? 'a character device' : st.isBlockDevice() ? 'a block device'
        : st.isSocket() ? 'a socket' : st.isDirectory() ? 'a directory' : 'not a regular file';
      throw new BoundedReadError('FILE_NOT_REGULAR', path, `Refusing to read ${opts.what} ${path}: it is ${kind}, not a regular file`);
    }
    if (st.size > maxBytes) {
      throw new BoundedReadError('FILE_TOO_LARGE', path, `Refusing to read ${opts.what} ${path}: ${st.size} bytes, more than the ${maxBytes} allowed`);
    }
    // it may grow while we read: never more than the cap (+1 to see that it did)
    let chunk = Buffer.allocUnsafe(Math.min(maxBytes + 1, Math.max(st.size + 1, 4096)));
    let len = 0;
    for (;;) {
      if (len === chunk.length) {
        if (len > maxBytes) break;
        const bigger = Buffer.allocUnsafe(Math.min(maxBytes + 1, chunk.length * 2));
        chunk.copy(bigger, 0, 0, len);
        chunk = bigger;
      }
      const n = readSync(fd, chunk, len, chunk.length - len, null);
      if (n === 0) break;
      len += n;
    }
    if (len > maxBytes) {
      throw new BoundedReadError('FILE_TOO_LARGE', path, `Refusing to read ${opts.what} ${path}: more than the ${maxBytes} bytes allowed`);
    }
    const data = chunk.subarray(0, len);
    for (let start = 0, line = 1; start < len; line++) {
      const nl = data.indexOf(10, start);
      const end = nl < 0 ? len : nl;
      if (end - start > maxLine) {
        throw new BoundedReadError('LINE_TOO_LONG', path, `${path}:${line}: Line too long (${end - start} bytes, at most ${maxLine})`);
      }
      start = end + 1;
    }
    return data.toString('utf8');
  } catch (err) {
    if (err instanceof BoundedReadError) throw err;
    throw new BoundedReadError('FILE_READ', path, `Failed to read ${opts.what} ${path}: ${errorMessage(err)}`, { cause: err });
  } finally {
    closeSync(fd);
  }
}
