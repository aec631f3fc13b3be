// The lease journal on disk: reading a file's records (recovering what is valid), and the file
// system steps the store needs (mkdir -p, whole writes, syncing a directory).
import { close as closeFd, closeSync, existsSync, fsync, fsyncSync, mkdirSync, open as openFd, openSync, readSync, renameSync, write, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { NspawnError } from '../errors.js';
import type { Logger } from '../log.js';
import { decodeLine, JOURNAL_HEADER, type JournalEntry } from './journal-records.js';

export class LeaseFileError extends NspawnError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('DHCP_LEASE_FILE', message, options);
  }
}

/** Bytes read from the lease file at a time. */
const READ_CHUNK = 1 << 16;
/** A line longer than this is damaged (a record is a few hundred bytes); it is skipped, not buffered. */
const MAX_LINE = 1 << 16;

/** The file's first line is not our header (internal to readJournal). */
class NotALeaseFile extends Error {
  constructor(readonly firstLine: string) {
    super('not a lease file');
  }
}


/**
 * The records of the file, read a chunk at a time and handed to replay() as they are decoded: a long
 * journal is never in memory as a whole (as text, lines or records), only the state it replays to.
 */
export function* readJournal(path: string, log: Logger): Generator<JournalEntry> {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new LeaseFileError(`cannot read the lease file ${path}: ${(err as Error).message}`, { cause: err });
  }
  const chunk = Buffer.allocUnsafe(READ_CHUNK);
  let carry: Buffer | undefined; // the start of a line continued in the next chunk
  let overlong = false; // in a line longer than MAX_LINE, skipped to its end
  let lineNo = 0;
  let recovered = 0;
  let badCount = 0;
  const bad: number[] = [];
  const line = (text: string): JournalEntry | undefined => {
    lineNo++;
    if (lineNo === 1) {
      if (text === JOURNAL_HEADER) return undefined;
      throw new NotALeaseFile(text);
    }
    if (!text) return undefined;
    const e = decodeLine(text);
    if (e) recovered++;
    else if (++badCount <= 5) bad.push(lineNo);
    return e;
  };
  try {
    for (;;) {
      let n: number;
      try {
        n = readSync(fd, chunk, 0, chunk.length, null);
      } catch (err) {
        throw new LeaseFileError(`cannot read the lease file ${path}: ${(err as Error).message}`, { cause: err });
      }
      if (n === 0) break;
      let start = 0;
      for (;;) {
        const nl = chunk.indexOf(0x0a, start);
        if (nl < 0 || nl >= n) break;
        if (overlong) {
          overlong = false;
          carry = undefined;
          line('');
          if (++badCount <= 5) bad.push(lineNo);
        } else {
          const bytes = carry ? Buffer.concat([carry, chunk.subarray(start, nl)]) : chunk.subarray(start, nl);
          carry = undefined;
          const e = line(bytes.toString('utf8'));
          if (e) yield e;
        }
        start = nl + 1;
      }
      if (start < n && !overlong) {
        const rest = chunk.subarray(start, n);
        carry = carry ? Buffer.concat([carry, rest]) : Buffer.from(rest);
        if (carry.length > MAX_LINE) {
          overlong = true;
          carry = undefined;
        }
      }
    }
    if (carry || overlong) {
      // text after the last newline: a write cut short
      if (lineNo === 0) throw new NotALeaseFile(carry ? carry.subarray(0, 40).toString('utf8') : '');
      log.warn(`lease file ${path}: the last record was cut short (line ${lineNo + 1}), ignored`);
    }
    if (badCount) {
      log.warn(`lease file ${path}: ${badCount} damaged record(s) ignored (line ${bad.join(', ')}${badCount > 5 ? ', …' : ''}); ${recovered} recovered`);
    }
  } catch (err) {
    if (!(err instanceof NotALeaseFile)) throw err;
    closeSync(fd);
    fd = -1;
    const aside = `${path}.corrupt-${Date.now()}`;
    try {
      renameSync(path, aside);
    } catch {
      // could not set it aside: it is overwritten by the compaction that follows
    }
    log.warn(`lease file ${path} is not an nspawn-ts lease file (first line "${err.firstLine.slice(0, 40)}"); moved it to ${aside} and started with no leases`);
  } finally {
    if (fd >= 0) closeSync(fd);
  }
}

/**
 * mkdir -p, one level at a time: Node's recursive mkdirSync loops forever where a parent exists but
 * refuses children (/proc, /sys).
 */
export function ensureDir(dir: string): void {
  if (existsSync(dir)) return;
  const parent = dirname(dir);
  if (parent !== dir) ensureDir(parent);
  mkdirSync(dir);
}

export function writeAll(fd: number, data: string): void {
  const buf = Buffer.from(data, 'utf8');
  let off = 0;
  while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
}

export function writeBuffer(fd: number, buf: Buffer, done: (err: Error | null) => void, off = 0): void {
  if (off >= buf.length) return done(null);
  write(fd, buf, off, buf.length - off, null, (err, n) => (err ? done(err) : writeBuffer(fd, buf, done, off + n)));
}

export function syncDirInBackground(dir: string, onError: (err: Error) => void): void {
  openFd(dir, 'r', (err, fd) => {
    if (err) return onError(err);
    fsync(fd, (syncErr) => {
      closeFd(fd, () => undefined);
      if (syncErr) onError(syncErr);
    });
  });
}

export function syncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
