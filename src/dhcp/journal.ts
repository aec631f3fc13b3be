// The lease store: an append-only journal of lease changes, group-committed, compacted by atomic
// rename, recovered as far as it is valid (the records and their format: journal-records.ts; reading
// a file and the file system steps: journal-file.ts).
//
// Crash safety. A record reaches the file with one write() of whole lines before the ACK that depends
// on it is sent: `kill -9` of the server at any moment leaves every ACKed lease in the file (the page
// cache belongs to the kernel, not the process). Records are group-committed: every record appended
// during one event-loop turn goes out in one write() (or sooner: the server commits at the end of
// each batch of requests it received, commitNow()). What a power cut or kernel crash may lose is
// bounded by a background fdatasync() at most a second after a write (durability 'write', the default;
// the same guarantee as Kea's memfile and dnsmasq, plus the bounded window). With durability 'fsync'
// an ACK also waits for fdatasync() of its group (run on the libuv thread pool, so the loop keeps
// receiving; the next group starts when it returns): nothing ACKed is lost even to a power cut, at the
// price of the disk's sync latency in every ACK (bench/dhcp measures both). A client whose lease was
// lost anyway gets its address back: the server is authoritative and the address is the client's
// stable slot. Compaction writes the live state to PATH.tmp, fdatasyncs it, renames it over PATH and
// fsyncs the directory: a crash leaves the old file or the new one, never a mix. Records appended
// while compacting go to the new file, after the snapshot.
import { closeSync, fdatasync, fdatasyncSync, fstatSync, ftruncateSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { type FileLock, tryLock } from '../common/lock.js';
import type { Logger } from '../log.js';
import { ensureDir, LeaseFileError, readJournal, syncDir, syncDirInBackground, writeAll, writeBuffer } from './journal-file.js';
import { encodeLine, JOURNAL_HEADER, type JournalEntry, pruneExpired, replay, stateEntries, type StoredInterface } from './journal-records.js';

export { LeaseFileError } from './journal-file.js';
export {
  bindEntry, decodeLine, encodeLine, JOURNAL_HEADER, type JournalEntry, pruneExpired, replay, stateEntries, type StoredInterface,
} from './journal-records.js';

export interface LeaseStore {
  /** State replayed from the file at open, by interface name. */
  readonly loaded: Map<string, StoredInterface>;
  /** Appends a record; `onDurable` runs once it is in the file (or with the error that kept it out). */
  append(entry: JournalEntry, onDurable?: (err?: Error) => void): void;
  /**
   * Rewrites the file as exactly these records plus whatever is appended meanwhile. The file store
   * reads `entries` a chunk at a time while it writes and syncs in the background (`compacting` until
   * it is done): they must not change meanwhile (the server passes copies of its tables).
   */
  compact(entries: Iterable<JournalEntry>): void;
  /** Records appended since the last compaction (the compaction policy reads it). */
  readonly appendedSinceCompaction: number;
  /** A compaction runs: compact() may not be called until it has ended. */
  readonly compacting: boolean;
  /** No group is being written or synced and no compaction runs. */
  readonly idle: boolean;
  /** Records appended with an `onDurable` that has not run yet (ACKs waiting for the file). */
  readonly backlog: number;
  /**
   * Writes the records appended so far now instead of at the end of this event-loop turn (the
   * server calls it after each batch of requests, so their ACKs leave with that batch's offers).
   */
  commitNow(): void;
  /** Writes out what is pending and closes. */
  close(): Promise<void>;
}

/** A store that keeps nothing: for tests and for a server run without a lease file. */
export class MemoryLeaseStore implements LeaseStore {
  readonly loaded = new Map<string, StoredInterface>();
  readonly entries: JournalEntry[] = [];
  appendedSinceCompaction = 0;
  readonly compacting = false;
  readonly idle = true;
  get backlog(): number {
    return 0;
  }
  append(entry: JournalEntry, onDurable?: (err?: Error) => void): void {
    this.entries.push(entry);
    this.appendedSinceCompaction++;
    onDurable?.();
  }
  commitNow(): void {}
  compact(entries: Iterable<JournalEntry>): void {
    this.entries.splice(0, this.entries.length, ...entries);
    this.appendedSinceCompaction = 0;
  }
  async close(): Promise<void> {}
}

export type Durability = 'fsync' | 'write';

export interface FileLeaseStoreOptions {
  log: Logger;
  /**
   * 'write' (default): an ACK waits for write() (survives kill -9; a power cut may lose the last
   * second). 'fsync': an ACK also waits for fdatasync() (survives a power cut).
   */
  durability?: Durability;
  /** With 'write': how soon after a write the file is fdatasync()ed in the background (ms); default 1000. */
  syncIntervalMs?: number;
  /** Wall clock in ms, for expiring records at load. */
  now: number;
}

export class FileLeaseStore implements LeaseStore {
  readonly path: string;
  readonly loaded: Map<string, StoredInterface>;
  appendedSinceCompaction = 0;
  private fd = -1;
  /**
   * Size of the file up to the end of its last whole group: a write cut short (ENOSPC, EIO) is
   * truncated back to it, so the next group starts on a fresh line instead of continuing a torn one.
   */
  private goodSize = 0;
  /** The torn tail could not be truncated: the next group starts with a newline to end it. */
  private tornTail = false;
  private readonly log: Logger;
  private readonly durability: Durability;
  private readonly syncIntervalMs: number;
  /** Written since the last fdatasync (durability 'write'). */
  private dirty = false;
  private syncTimer: NodeJS.Timeout | undefined;
  private backgroundSync = false;
  private pending: string[] = [];
  private groupBuffer = Buffer.allocUnsafeSlow(1 << 14);
  private waiters: Array<(err?: Error) => void> = [];
  /** Waiters of the group being synced (durability 'fsync'). */
  private syncing = 0;
  private inFlight = false;
  private scheduled = false;
  private closed = false;
  private readonly lockPath: string;
  private fileLock: FileLock | undefined;
  private drained: Array<() => void> = [];
  /** The compaction in progress (see compact()). */
  private compaction: Compaction | undefined;

  /**
   * Opens (creating if needed) and replays the lease file, then rewrites it compacted. Throws
   * LeaseFileError only when the file cannot be created or is locked by a live server.
   */
  constructor(path: string, opts: FileLeaseStoreOptions) {
    this.path = path;
    this.log = opts.log;
    this.durability = opts.durability ?? 'write';
    this.syncIntervalMs = opts.syncIntervalMs ?? 1000;
    this.lockPath = `${path}.lock`;
    try {
      ensureDir(dirname(path));
    } catch (err) {
      throw new LeaseFileError(`cannot create the directory of the lease file ${path}: ${(err as Error).message}`, { cause: err });
    }
    this.lock();
    try {
      this.loaded = replay(readJournal(this.path, this.log));
      pruneExpired(this.loaded, opts.now, 3_600_000);
      // Start from a clean file: only what is live, nothing torn or corrupt.
      this.writeCompacted(stateEntries(this.loaded));
    } catch (err) {
      this.unlock();
      throw err;
    }
  }

  /**
   * flock() on PATH.lock (src/common/lock.ts): the kernel drops it with the server, however it ends,
   * so neither a PID reused after a reboot nor a killed server that is still a zombie keeps a new one
   * from starting. The file stays (unlinking a flock file races with the next locker).
   */
  private lock(): void {
    let l: FileLock | undefined;
    try {
      l = tryLock(this.lockPath, { createDir: false });
    } catch (err) {
      throw new LeaseFileError(`cannot open the lock file ${this.lockPath}: ${(err as Error).message}`, { cause: err });
    }
    if (!l) throw new LeaseFileError(`the lease file ${this.path} is in use by another DHCP server (it holds the lock ${this.lockPath})`);
    this.fileLock = l;
  }

  private unlock(): void {
    this.fileLock?.release();
    this.fileLock = undefined;
  }


  private writeCompacted(entries: Iterable<JournalEntry>): void {
    const tmp = `${this.path}.tmp`;
    let chunk = JOURNAL_HEADER + '\n';
    let fd = -1;
    let count = 0;
    try {
      fd = openSync(tmp, 'w', 0o600);
      for (const e of entries) {
        chunk += encodeLine(e);
        count++;
        if (chunk.length > 1 << 20) {
          writeAll(fd, chunk);
          chunk = '';
        }
      }
      writeAll(fd, chunk);
      fdatasyncSync(fd);
      closeSync(fd);
      fd = -1;
      renameSync(tmp, this.path);
      syncDir(dirname(this.path));
    } catch (err) {
      if (fd >= 0) closeSync(fd);
      throw new LeaseFileError(`cannot write the lease file ${this.path}: ${(err as Error).message}`, { cause: err });
    }
    this.appendTo(0);
    this.log.debug('lease file compacted', { path: this.path, records: count });
  }

  /** Appends from now on to the file just renamed over PATH; `records` of it are not in the snapshot. */
  private appendTo(records: number): void {
    const old = this.fd;
    this.fd = openSync(this.path, 'a');
    if (old >= 0) closeSync(old);
    this.goodSize = fstatSync(this.fd).size;
    this.tornTail = false;
    this.appendedSinceCompaction = records;
  }

  append(entry: JournalEntry, onDurable?: (err?: Error) => void): void {
    if (this.closed) {
      onDurable?.(new LeaseFileError(`the lease file ${this.path} is closed`));
      return;
    }
    this.pending.push(encodeLine(entry));
    if (onDurable) this.waiters.push(onDurable);
    this.appendedSinceCompaction++;
    this.schedule();
  }

  /**
   * Compaction while serving. A synchronous rewrite stalled the event loop for tens of milliseconds on a
   * large table (encode, write, fdatasync, rename, directory fsync, and the file system's journal commit
   * with them), long enough to drop requests under load. Here the records are read from `entries` (which
   * later changes do not alter), encoded and written to PATH.tmp a chunk per event-loop turn, and
   * fdatasync()ed on the thread pool: neither the records nor their text are ever in memory as a whole. Appends go on to the old file meanwhile and are copied into the
   * tail of PATH.tmp just before the rename, so every record acknowledged before the rename is in the
   * file either name points to: the old one until the rename, the new one after it.
   *
   * It may begin while a group is being synced (under a steady flood of fsync'd ACKs one always is:
   * waiting for a quiet moment starved compaction and let the file grow without bound). That group is
   * in the old file already and its changes in `entries`; the rename waits until no group is being
   * synced on the old file, so its ACKs still wait for the sync of the file that holds their records.
   */
  compact(entries: Iterable<JournalEntry>): void {
    if (this.compaction || this.closed) throw new Error('compaction while another one runs or after close');
    const records = entries[Symbol.iterator]();
    const tmp = `${this.path}.tmp`;
    let fd: number;
    try {
      fd = openSync(tmp, 'w', 0o600);
    } catch (err) {
      throw new LeaseFileError(`cannot write the lease file ${tmp}: ${(err as Error).message}`, { cause: err });
    }
    const c: Compaction = { fd, tmp, tail: [], tailRecords: 0, written: false, count: 0 };
    this.compaction = c;
    let more = true;
    // One buffer for the whole compaction, the lines encoded straight into it (a chunk is written
    // before the next is encoded): no 256 KiB string and buffer per chunk left for a full GC to free.
    const buf = Buffer.allocUnsafeSlow(COMPACT_CHUNK);
    let carry: string | undefined = JOURNAL_HEADER + '\n';
    const step = (): void => {
      let off = 0;
      for (;;) {
        let line = carry;
        carry = undefined;
        if (line === undefined) {
          const r = records.next();
          if (r.done) {
            more = false;
            break;
          }
          line = encodeLine(r.value);
          c.count++;
        }
        if (off + 3 * line.length > buf.length && off > 0) {
          carry = line; // the next chunk's first
          break;
        }
        if (3 * line.length > buf.length) {
          // longer than a chunk could hold (a record is a few hundred bytes; this only bounds it)
          writeAll(fd, line); // off is 0 here: nothing of this chunk is waiting in buf
          continue;
        }
        off += buf.write(line, off);
      }
      writeBuffer(fd, buf.subarray(0, off), (err) => {
        if (err) return this.abortCompaction(c, err);
        if (more) return void setImmediate(step);
        fdatasync(fd, (syncErr) => {
          if (syncErr) return this.abortCompaction(c, syncErr);
          c.written = true;
          this.finishCompaction();
        });
      });
    };
    step();
  }

  /** Renames the written PATH.tmp over PATH once no group is being written or synced on the old file. */
  private finishCompaction(): void {
    const c = this.compaction;
    if (!c?.written || this.inFlight || this.backgroundSync) return;
    try {
      if (c.tail.length) {
        writeAll(c.fd, c.tail.join(''));
        // 'fsync' promised these records a sync: they must be synced under the name that will hold them
        if (this.durability === 'fsync') fdatasyncSync(c.fd);
      }
      closeSync(c.fd);
      c.fd = -1;
      renameSync(c.tmp, this.path);
    } catch (err) {
      this.abortCompaction(c, err as Error);
      return;
    }
    this.compaction = undefined;
    this.appendTo(c.tailRecords + this.pending.length);
    if (this.durability === 'fsync') {
      syncDir(dirname(this.path)); // the new name must be durable before the next ACK that relies on it
    } else {
      if (c.tail.length) {
        this.dirty = true;
        this.armBackgroundSync();
      }
      syncDirInBackground(dirname(this.path), (err) => this.log.warn(`cannot sync the directory of the lease file ${this.path}: ${err.message}`));
    }
    this.log.debug('lease file compacted', { path: this.path, records: c.count, appendedMeanwhile: c.tailRecords });
    this.settle();
  }

  /** Gives up a compaction: the old file stays as it is and keeps every record. */
  private abortCompaction(c: Compaction, err: Error): void {
    if (this.compaction !== c) return;
    this.compaction = undefined;
    if (c.fd >= 0) closeSync(c.fd);
    try {
      unlinkSync(c.tmp);
    } catch {
      // never made, or gone
    }
    this.log.warn(`lease file compaction failed (the journal goes on growing): ${err.message}`);
    this.settle();
  }

  get backlog(): number {
    return this.waiters.length + this.syncing;
  }

  get compacting(): boolean {
    return this.compaction !== undefined;
  }

  /** True when no group is being written or synced and no compaction runs. */
  get idle(): boolean {
    return !this.inFlight && !this.backgroundSync && !this.compaction;
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight) return;
    this.scheduled = true;
    setImmediate(() => this.flush());
  }

  commitNow(): void {
    if (this.pending.length && !this.inFlight && !this.closed) this.flush();
  }

  private flush(): void {
    this.scheduled = false;
    if (this.inFlight || this.pending.length === 0) {
      this.settle();
      return;
    }
    const records = this.pending.length; // one line a record
    const data = records === 1 ? (this.pending[0] as string) : this.pending.join('');
    const waiters = this.waiters;
    this.pending = [];
    this.waiters = [];
    try {
      this.appendGroup(data);
    } catch (err) {
      const e = new LeaseFileError(`cannot append to the lease file ${this.path}: ${(err as Error).message}`, { cause: err });
      for (const w of waiters) w(e);
      this.settle();
      return;
    }
    if (this.compaction) {
      this.compaction.tail.push(data);
      this.compaction.tailRecords += records;
    }
    if (this.durability === 'write') {
      for (const w of waiters) w();
      this.dirty = true;
      this.armBackgroundSync();
      this.settle();
      return;
    }
    this.inFlight = true;
    this.syncing = waiters.length;
    fdatasync(this.fd, (err) => {
      this.inFlight = false;
      this.syncing = 0;
      const e = err ? new LeaseFileError(`cannot sync the lease file ${this.path}: ${err.message}`, { cause: err }) : undefined;
      for (const w of waiters) w(e);
      // under steady load the next group follows at once: a written compaction takes its turn here
      if (this.compaction?.written) this.finishCompaction();
      if (this.pending.length) this.schedule();
      else this.settle();
    });
  }

  /**
   * Writes one group of whole lines. When the write fails part-way (the disk filled up), what it left
   * is cut off again: a record appended after the disk has room again must not continue a torn line
   * (replay would drop both).
   */
  private appendGroup(data: string): void {
    const buf = this.encodeGroup(this.tornTail ? '\n' + data : data);
    let off = 0;
    try {
      while (off < buf.length) off += writeSync(this.fd, buf, off, buf.length - off);
    } catch (err) {
      if (off > 0 || this.tornTail) this.cutTornTail();
      throw err;
    }
    if (this.tornTail) {
      this.goodSize = fstatSync(this.fd).size; // the torn bytes before the newline stay
      this.tornTail = false;
    } else {
      this.goodSize += buf.length;
    }
  }

  /**
   * A group's lines as UTF-8, in a buffer kept for the next group (a Buffer per group was a malloc
   * that only the garbage collector gave back, and one promoted by a scavenge waited for a full
   * collection). A group larger than GROUP_BUFFER gets a buffer of its own.
   */
  private encodeGroup(text: string): Buffer {
    if (3 * text.length > this.groupBuffer.length) {
      const need = Buffer.byteLength(text, 'utf8');
      if (need > GROUP_BUFFER) return Buffer.from(text, 'utf8');
      if (need > this.groupBuffer.length) this.groupBuffer = Buffer.allocUnsafeSlow(Math.min(GROUP_BUFFER, 2 ** Math.ceil(Math.log2(need))));
    }
    return this.groupBuffer.subarray(0, this.groupBuffer.write(text, 0, 'utf8'));
  }

  private cutTornTail(): void {
    try {
      ftruncateSync(this.fd, this.goodSize);
      this.tornTail = false;
    } catch (err) {
      this.tornTail = true; // ends the torn line with the next group instead
      this.log.warn(`cannot cut a torn record off the lease file ${this.path}: ${(err as Error).message}`);
    }
  }

  /** fdatasync() what was written, at most syncIntervalMs later, off the event loop. */
  private armBackgroundSync(): void {
    if (this.syncTimer || this.closed) return;
    this.syncTimer = setTimeout(() => {
      this.syncTimer = undefined;
      if (!this.dirty || this.closed || this.backgroundSync) return;
      this.dirty = false;
      this.backgroundSync = true;
      fdatasync(this.fd, (err) => {
        this.backgroundSync = false;
        if (err) this.log.warn(`cannot sync the lease file ${this.path}: ${err.message}`);
        if (this.dirty) this.armBackgroundSync();
        this.settle();
      });
    }, this.syncIntervalMs);
    this.syncTimer.unref();
  }

  /** Calls back whoever waits for the store to be quiet (close, and the compaction policy). */
  private settle(): void {
    if (this.compaction?.written) this.finishCompaction();
    if (this.inFlight || this.backgroundSync || this.pending.length || this.scheduled || this.compaction) return;
    const d = this.drained;
    this.drained = [];
    for (const f of d) f();
  }

  /** Resolves when nothing is pending or in flight. */
  whenIdle(): Promise<void> {
    if (!this.inFlight && !this.backgroundSync && !this.pending.length && !this.scheduled && !this.compaction) return Promise.resolve();
    return new Promise((resolve) => this.drained.push(resolve));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.whenIdle();
    this.closed = true;
    if (this.syncTimer) clearTimeout(this.syncTimer);
    this.syncTimer = undefined;
    try {
      fdatasyncSync(this.fd);
    } finally {
      closeSync(this.fd);
      this.unlock();
    }
  }
}

/** A compaction in progress: PATH.tmp, and what was appended to the old file since the records were taken. */
interface Compaction {
  fd: number;
  readonly tmp: string;
  readonly tail: string[];
  tailRecords: number;
  written: boolean;
  /** Records written so far. */
  count: number;
}

/** A group of records up to this many bytes is encoded into a kept buffer (encodeGroup). */
const GROUP_BUFFER = 1 << 18;
/** Bytes of records encoded and written per event-loop turn while compacting in the background. */
const COMPACT_CHUNK = 1 << 18;
