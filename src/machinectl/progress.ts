// Progress of an image transfer, as systemd-importd's transfers report it to machinectl: on a
// terminal one line redrawn in place — a bar, bytes done (of the total when it is known), percent,
// rate and time left; elsewhere (a log, a pipe) one line at each 10% (at each doubling of the bytes
// when the total is unknown), so a log file gets ten lines, not thousands. -q turns it off.

export interface ProgressOptions {
  /** what is transferred, for the lines ("Importing debian.tar.xz") */
  label: string;
  /** bytes expected, when known */
  total?: number;
  /** a terminal: redraw one line; otherwise print milestone lines */
  tty: boolean;
  write: (text: string) => void;
  /** ms since some epoch (tests fix it) */
  now?: () => number;
  /** terminal width for the bar (default 80) */
  columns?: number;
}

const UNITS = ['B', 'K', 'M', 'G', 'T'];

/** 1536 → "1.5K", as systemd's format_bytes() writes sizes. */
export function formatBytes(n: number): string {
  let v = n;
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v}B` : `${v < 10 ? v.toFixed(1) : Math.round(v)}${UNITS[u]}`;
}

/** Seconds as "1h02m", "3m05s", "42s". */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${s}s`;
}

export class Progress {
  private done = 0;
  private readonly start: number;
  private lastDraw = -Infinity;
  /** the next milestone (10% steps, or a byte count when the total is unknown) */
  private nextMark: number;
  private finished = false;
  private readonly now: () => number;

  constructor(private readonly opts: ProgressOptions) {
    this.now = opts.now ?? (() => performance.now());
    this.start = this.now();
    this.nextMark = opts.total !== undefined && opts.total > 0 ? 10 : 16 << 20;
  }

  get bytes(): number {
    return this.done;
  }

  private rate(): number {
    const secs = (this.now() - this.start) / 1000;
    return secs > 0 ? this.done / secs : 0;
  }

  /** The terminal line: "label [=====>     ] 12M/45M  27%  3.4M/s  ETA 10s". */
  line(): string {
    const { total } = this.opts;
    const rate = this.rate();
    const known = total !== undefined && total > 0;
    const pct = known ? Math.min(100, Math.floor((this.done / total) * 100)) : undefined;
    const parts = [known ? `${formatBytes(this.done)}/${formatBytes(total)}` : formatBytes(this.done)];
    if (pct !== undefined) parts.push(`${String(pct).padStart(3)}%`);
    parts.push(`${formatBytes(Math.round(rate))}/s`);
    if (known && rate > 0 && this.done < total) parts.push(`ETA ${formatDuration((total - this.done) / rate)}`);
    const info = parts.join('  ');
    const width = Math.max(10, (this.opts.columns ?? 80) - this.opts.label.length - info.length - 5);
    let bar: string;
    if (pct !== undefined) {
      const fill = Math.floor((pct / 100) * width);
      bar = '='.repeat(fill) + (fill < width ? '>' + ' '.repeat(width - fill - 1) : '');
    } else {
      const pos = Math.floor(this.done / 65536) % width; // a bouncing marker: moving, no claim of a fraction
      bar = ' '.repeat(pos) + '<=>'.slice(0, width - pos) + ' '.repeat(Math.max(0, width - pos - 3));
    }
    return `${this.opts.label} [${bar}] ${info}`;
  }

  /** `n` more bytes transferred. */
  add(n: number): void {
    this.done += n;
    if (this.opts.tty) {
      const t = this.now();
      if (t - this.lastDraw < 100) return; // ten redraws a second at most
      this.lastDraw = t;
      this.opts.write(`\r${this.line()}\x1b[K`);
      return;
    }
    const { total } = this.opts;
    if (total !== undefined && total > 0) {
      const pct = Math.floor((this.done / total) * 100);
      if (pct < this.nextMark || this.nextMark > 100) return;
      while (this.nextMark <= Math.min(pct, 100)) this.nextMark += 10;
      this.opts.write(`${this.opts.label}: ${Math.min(100, Math.floor(pct / 10) * 10)}% (${formatBytes(this.done)} of ${formatBytes(total)}, ${formatBytes(Math.round(this.rate()))}/s)\n`);
      return;
    }
    if (this.done < this.nextMark) return;
    while (this.nextMark <= this.done) this.nextMark *= 2;
    this.opts.write(`${this.opts.label}: ${formatBytes(this.done)} (${formatBytes(Math.round(this.rate()))}/s)\n`);
  }

  /** The transfer ended (`ok` false: it failed; the line is left as it was). */
  finish(ok: boolean): void {
    if (this.finished) return;
    this.finished = true;
    const secs = (this.now() - this.start) / 1000;
    const summary = `${formatBytes(this.done)} in ${formatDuration(secs)}`;
    if (this.opts.tty) {
      this.opts.write(ok ? `\r${this.line()}\x1b[K\n` : '\n');
      return;
    }
    if (ok) this.opts.write(`${this.opts.label}: done, ${summary}\n`);
  }
}

/** A progress that says nothing (-q). */
export function silentProgress(): Progress {
  return new Progress({ label: '', tty: false, write: () => {}, total: 0 });
}
