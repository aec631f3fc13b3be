// The container's console, by --console= mode (systemd-nspawn's ConsoleMode; its default is
// interactive when standard input and output are a terminal, read-only otherwise):
// - interactive: the container gets a pty of its own devpts (its /dev/console and stdio), and this
//   copies bytes between it and our terminal, which is put in raw mode for the time. Ctrl-] pressed
//   three times within a second kills the container, as in systemd-nspawn (src/shared/ptyfwd.c).
// - read-only: the same pty, but only its output is copied; our standard input is not read.
// - passive: the pty exists (init may write to /dev/console) but nothing is copied; its master is
//   held open until the container ends.
// - pipe: no pty; the container inherits our standard input, output and error directly.
// - autopipe: pipe, or interactive when standard input and output are a terminal.
import { isatty, type ReadStream, type WriteStream } from 'node:tty';
import { POLL_READABLE, POLL_WRITABLE, sys, type FdWatcher } from '../native.js';
import type { ConsoleSetting } from './spec.js';

/** Ctrl-] */
export const ESCAPE_BYTE = 0x1d;
export const ESCAPE_COUNT = 3;
export const ESCAPE_WINDOW_MS = 1000;

/** Counts Ctrl-] presses; true once three came within a second with nothing else between. */
export class EscapeDetector {
  private count = 0;
  private first = 0;

  feed(data: Uint8Array, now: number = Date.now()): boolean {
    for (const b of data) {
      if (b !== ESCAPE_BYTE) {
        this.count = 0;
        continue;
      }
      if (this.count === 0 || now - this.first > ESCAPE_WINDOW_MS) {
        this.count = 0;
        this.first = now;
      }
      if (++this.count >= ESCAPE_COUNT) return true;
    }
    return false;
  }
}

/** Whether the launcher's standard input and output are a terminal (nspawn's "interactive" console). */
export function interactiveConsole(): boolean {
  // isatty() on the descriptors: process.stdin would build a stream (and load its modules) just to answer
  return isatty(0) && isatty(1);
}

/** The console mode a container runs with (autopipe resolved). */
export type ConsoleMode = Exclude<ConsoleSetting, 'autopipe'>;

/**
 * The mode for a --console= setting (undefined or 'auto': not given), as systemd-nspawn's run()
 * decides it: unset is interactive on a terminal, else read-only; autopipe is interactive on a
 * terminal, else pipe.
 */
export function consoleMode(requested: 'auto' | ConsoleSetting | undefined, onTerminal: boolean = interactiveConsole()): ConsoleMode {
  if (requested === undefined || requested === 'auto') return onTerminal ? 'interactive' : 'read-only';
  if (requested === 'autopipe') return onTerminal ? 'interactive' : 'pipe';
  return requested;
}

export class PtyForwarder {
  private readonly input: ReadStream;
  private readonly output: WriteStream;
  private masterWatcher: FdWatcher | undefined;
  private pendingToMaster: Buffer[] = [];
  private readonly escape = new EscapeDetector();
  private readonly buf = new Uint8Array(65536);
  private closed = false;
  /** a slave fd of our own: the container closing its console then does not hang the pty up */
  private peer = -1;
  private retry: NodeJS.Timeout | undefined;
  private readonly onData = (d: Buffer): void => this.fromTerminal(d);
  private readonly onResize = (): void => this.syncSize();
  private readonly onOutputError = (): void => { /* EPIPE/EIO: output is lost, the container goes on */ };

  private readonly readOnly: boolean;

  constructor(private readonly master: number, private readonly onEscape: () => void,
    io: { input?: ReadStream; output?: WriteStream; readOnly?: boolean } = {}) {
    this.readOnly = io.readOnly ?? false;
    this.input = io.input ?? (this.readOnly ? (undefined as unknown as ReadStream) : (process.stdin as ReadStream));
    this.output = io.output ?? (process.stdout as WriteStream);
  }

  start(): void {
    sys().setNonblocking(this.master);
    this.holdPeer();
    this.syncSize();
    if (!this.readOnly) {
      if (this.input.isTTY) this.input.setRawMode(true);
      this.input.on('data', this.onData);
      this.input.resume();
    }
    this.output.on('resize', this.onResize);
    // a closed terminal or pipe must not end the launcher: the container's exit still has to be handled
    this.output.on('error', this.onOutputError);
    this.masterWatcher = new (sys().FdWatcher)(this.master, POLL_READABLE, (ev) => this.onMaster(ev));
  }

  /**
   * (Re)opens our slave fd. A pty whose slaves are all closed answers EIO (and polls as hung up)
   * until one is opened again: systemd closes the console during boot and reopens it, vhangup()
   * (TTYVHangup= of a getty) invalidates every open slave fd. Neither is the end of the console.
   */
  private holdPeer(): boolean {
    if (this.peer >= 0) sys().close(this.peer);
    this.peer = -1;
    try {
      this.peer = sys().ptyPeer(this.master);
      return true;
    } catch {
      return false;
    }
  }

  /** Watches the master again a little later (after EIO that a new slave fd did not cure). */
  private retryLater(): void {
    this.masterWatcher?.stop();
    this.masterWatcher = undefined;
    if (this.retry || this.closed) return;
    this.retry = setTimeout(() => {
      this.retry = undefined;
      if (this.closed) return;
      this.holdPeer();
      this.masterWatcher = new (sys().FdWatcher)(this.master, POLL_READABLE, (ev) => this.onMaster(ev));
      this.flushToMaster();
      this.drain();
    }, 100);
    this.retry.unref();
  }

  private syncSize(): void {
    const { rows, columns } = this.output;
    if (rows && columns) {
      try {
        sys().setWindowSize(this.master, rows, columns);
      } catch { /* the pty is gone */ }
    }
  }

  private fromTerminal(d: Buffer): void {
    if (this.escape.feed(d)) {
      this.onEscape();
      return;
    }
    this.pendingToMaster.push(d);
    this.flushToMaster();
  }

  private flushToMaster(): void {
    while (this.pendingToMaster.length > 0 && !this.closed) {
      const head = this.pendingToMaster[0] as Buffer;
      let n: number;
      try {
        n = sys().writeFd(this.master, head);
      } catch {
        this.pendingToMaster = [];
        return;
      }
      if (n < 0) {
        this.masterWatcher?.setEvents(POLL_READABLE | POLL_WRITABLE);
        return;
      }
      if (n < head.length) this.pendingToMaster[0] = head.subarray(n);
      else this.pendingToMaster.shift();
    }
    this.masterWatcher?.setEvents(POLL_READABLE);
  }

  private onMaster(ev: number): void {
    if (ev & POLL_WRITABLE) this.flushToMaster();
    if (ev & POLL_READABLE || ev & 4) this.drain();
  }

  /** Copies what the container wrote; false at end-of-file. */
  drain(): boolean {
    let reopened = false;
    for (let i = 0; i < 64 && !this.closed; i++) {
      let n: number;
      try {
        n = sys().readFd(this.master, this.buf);
      } catch {
        n = 0;
      }
      if (n === -2) {
        // every slave closed (a vhangup() invalidated ours): hold a new one, or look again later
        if (!reopened && this.holdPeer()) {
          reopened = true;
          continue;
        }
        this.retryLater();
        return true;
      }
      if (n < 0) return true;
      if (n === 0) {
        this.masterWatcher?.stop();
        this.masterWatcher = undefined;
        return false;
      }
      this.output.write(Buffer.from(this.buf.subarray(0, n)));
    }
    return true;
  }

  /** Copies what is left and gives the terminal back as it was. */
  stop(): void {
    if (this.closed) return;
    this.drain();
    this.closed = true;
    this.masterWatcher?.stop();
    if (this.retry) clearTimeout(this.retry);
    if (this.peer >= 0) sys().close(this.peer);
    this.peer = -1;
    this.output.off('resize', this.onResize);
    this.output.off('error', this.onOutputError);
    if (!this.readOnly) {
      this.input.off('data', this.onData);
      if (this.input.isTTY) this.input.setRawMode(false);
      this.input.pause();
    }
    sys().close(this.master);
  }
}
