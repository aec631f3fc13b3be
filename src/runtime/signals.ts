// Signal names and numbers, as systemd spells them: parsed from --kill-signal=/KillSignal= and
// machinectl's --signal=, printed in the launcher's and machinectl's messages. One table for all.
import { ConfigError } from '../errors.js';

const SIGNALS: readonly string[] = [
  '', 'HUP', 'INT', 'QUIT', 'ILL', 'TRAP', 'ABRT', 'BUS', 'FPE', 'KILL', 'USR1', 'SEGV', 'USR2', 'PIPE',
  'ALRM', 'TERM', 'STKFLT', 'CHLD', 'CONT', 'STOP', 'TSTP', 'TTIN', 'TTOU', 'URG', 'XCPU', 'XFSZ',
  'VTALRM', 'PROF', 'WINCH', 'IO', 'PWR', 'SYS',
];
/** glibc's SIGRTMIN/SIGRTMAX (the kernel's 32 and 33 are taken by the threading library). */
export const SIGRTMIN = 34;
export const SIGRTMAX = 64;

/** `SIGTERM`, `SIGRTMIN+3` for a signal number; `signal N` for one that has no name (0, 32, 33, > 64). */
export function signalName(n: number): string {
  if (n >= 1 && n < SIGNALS.length) return `SIG${SIGNALS[n]}`;
  if (n >= SIGRTMIN && n <= SIGRTMAX) return n === SIGRTMIN ? 'SIGRTMIN' : `SIGRTMIN+${n - SIGRTMIN}`;
  return `signal ${n}`;
}

/**
 * systemd's signal_from_string(): `SIGTERM`, `TERM`, `RTMIN+3`, `SIGRTMAX-1` or a number 1–64.
 * Returns the canonical name (`SIGTERM`, `SIGRTMIN+3`) and number, or undefined.
 */
export function parseSignal(s: string): { name: string; number: number } | undefined {
  let n: number | undefined;
  if (/^[0-9]+$/.test(s)) {
    n = Number(s);
  } else {
    const t = s.startsWith('SIG') ? s.slice(3) : s;
    const idx = SIGNALS.indexOf(t);
    if (idx > 0) n = idx;
    else {
      const m = /^RT(MIN|MAX)(?:([+-])([0-9]+))?$/.exec(t);
      if (m) {
        const off = m[3] === undefined ? 0 : Number(m[3]);
        if (m[1] === 'MIN' && m[2] !== '-') n = SIGRTMIN + off;
        else if (m[1] === 'MAX' && m[2] !== '+') n = SIGRTMAX - off;
      }
    }
  }
  if (n === undefined || n < 1 || n > SIGRTMAX || n === 32 || n === 33) return undefined;
  return { name: signalName(n), number: n };
}

/** The number of a canonical (or any accepted) signal name; for the launcher. */
export function signalNumber(name: string): number {
  const s = parseSignal(name);
  if (!s) throw new ConfigError(`Unknown signal: ${name}`, { code: 'CFG_INVALID_SIGNAL' });
  return s.number;
}
