// Copying between our terminal (or pipes) and the pty of a process in a machine, as systemd's
// ptyfwd does for machinectl shell/login: our terminal in raw mode meanwhile, window size passed
// on, and Ctrl-] pressed three times within a second ending the session.
// (The launcher's console, src/runtime/console.ts, does the same for a container's /dev/console;
// once it is on main this module should become a thin use of it.)
import type { Readable, Writable } from 'node:stream';
import { POLL_ERROR, POLL_READABLE, POLL_WRITABLE, sys, type FdWatcher } from '../native.js';

export const ESCAPE_BYTE = 0x1d;

/** Counts Ctrl-] presses: true once three came within a second with nothing else between. */
export class EscapeDetector {
  private count = 0;
  private first = 0;

  feed(data: Uint8Array, now: number = Date.now()): boolean {
    for (const b of data) {
      if (b !== ESCAPE_BYTE) {
        this.count = 0;
        continue;
      }
      if (this.count === 0 || now - this.first > 1000) {
        this.count = 0;
        this.first = now;
      }
      if (++this.count >= 3) return true;
    }
    return false;
  }
}

interface TtyIn extends Readable {
  isTTY?: boolean;
  setRawMode?(mode: boolean): unknown;
}
interface TtyOut extends Writable {
  isTTY?: boolean;
  rows?: number;
  columns?: number;
}

export class PtyForward {
  private watcher: FdWatcher | undefined;
  private pending: Buffer[] = [];
  private readonly escape = new EscapeDetector();
  private readonly buf = new Uint8Array(65536);
  private closed = false;
  private lastByte = 0x0a;
  private readonly onData = (d: Buffer): void => this.fromInput(d);
  private readonly onResize = (): void => this.syncSize();
  private readonly onEnd = (): void => { /* input ended: the process keeps its pty until it exits */ };

  constructor(
    private readonly master: number,
    private readonly onEscape: () => void,
    private readonly input: TtyIn = process.stdin,
    private readonly output: TtyOut = process.stdout,
  ) {}

  start(): void {
    sys().setNonblocking(this.master);
    this.syncSize();
    if (this.input.isTTY && this.input.setRawMode) this.input.setRawMode(true);
    this.input.on('data', this.onData);
    this.input.on('end', this.onEnd);
    this.input.resume();
    this.output.on('resize', this.onResize);
    this.watcher = new (sys().FdWatcher)(this.master, POLL_READABLE, (ev) => this.onMaster(ev));
  }

  /** Whether the last byte shown ended a line (machinectl adds a newline before its farewell otherwise). */
  get atLineStart(): boolean {
    return this.lastByte === 0x0a;
  }

  private syncSize(): void {
    const { rows, columns } = this.output;
    if (!rows || !columns) return;
    try {
      sys().setWindowSize(this.master, rows, columns);
    } catch { /* the pty is gone */ }
  }

  private fromInput(d: Buffer): void {
    if (this.closed) return;
    if (this.escape.feed(d)) {
      this.onEscape();
      return;
    }
    this.pending.push(d);
    this.flush();
  }

  private flush(): void {
    while (this.pending.length > 0 && !this.closed) {
      const head = this.pending[0] as Buffer;
      let n: number;
      try {
        n = sys().writeFd(this.master, head);
      } catch {
        this.pending = [];
        return;
      }
      if (n < 0) {
        this.watcher?.setEvents(POLL_READABLE | POLL_WRITABLE);
        return;
      }
      if (n < head.length) this.pending[0] = head.subarray(n);
      else this.pending.shift();
    }
    this.watcher?.setEvents(POLL_READABLE);
  }

  private onMaster(ev: number): void {
    if (ev & POLL_WRITABLE) this.flush();
    if (ev & (POLL_READABLE | POLL_ERROR)) this.drain();
  }

  /** Copies what the process wrote; false once every holder of the pty closed it. */
  drain(): boolean {
    for (let i = 0; i < 64 && !this.closed; i++) {
      let n: number;
      try {
        n = sys().readFd(this.master, this.buf);
      } catch {
        n = 0;
      }
      if (n < 0) return true;
      if (n === 0) {
        this.watcher?.stop();
        this.watcher = undefined;
        return false;
      }
      this.lastByte = this.buf[n - 1] ?? this.lastByte;
      this.output.write(Buffer.from(this.buf.subarray(0, n)));
    }
    return true;
  }

  /** Copies what is left, closes the pty and gives the terminal back as it was. */
  stop(): void {
    if (this.closed) return;
    this.drain();
    this.closed = true;
    this.watcher?.stop();
    this.input.off('data', this.onData);
    this.input.off('end', this.onEnd);
    this.output.off('resize', this.onResize);
    if (this.input.isTTY && this.input.setRawMode) this.input.setRawMode(false);
    this.input.pause();
    sys().close(this.master);
  }
}
