// --ephemeral: the container runs on an overlayfs whose lower layer is its directory (never
// written) and whose upper layer is a throw-away directory, removed when the container ends. Each
// one lives in `<state dir>/ephemeral/<machine>.<random>/` with an `owner` file naming the launcher
// (PID and start time); a launcher that was SIGKILLed leaves one behind, and the next start removes
// every directory whose owner is gone. (systemd-nspawn makes a btrfs snapshot or a full copy; an
// overlay needs neither btrfs nor the time and space of a copy.)
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { posix } from 'node:path';
import { processStartTime } from '../common/proc.js';

export interface EphemeralRoot {
  dir: string;
  upper: string;
  work: string;
  /** where an ID-mapped lower layer is mounted (-U -x; inside the container's mount namespace only) */
  lower: string;
  /** where the overlay is mounted (inside the container's mount namespace only) */
  mountPoint: string;
  remove(): void;
}

/** Removes ephemeral layers whose launcher is gone. Returns the directories removed. */
export function sweepEphemeral(base: string): string[] {
  const removed: string[] = [];
  let entries: string[];
  try {
    entries = readdirSync(base);
  } catch {
    return removed;
  }
  for (const e of entries) {
    const dir = posix.join(base, e);
    let owner: string;
    try {
      owner = readFileSync(`${dir}/owner`, 'utf8').trim();
    } catch {
      owner = '';
    }
    const [pid, start] = owner.split(' ');
    if (pid && start && processStartTime(Number(pid)) === start) continue;
    try {
      rmSync(dir, { recursive: true, force: true });
      removed.push(dir);
    } catch { /* still mounted somewhere: next time */ }
  }
  return removed;
}

export function createEphemeral(base: string, machine: string): EphemeralRoot {
  mkdirSync(base, { recursive: true, mode: 0o700 });
  const dir = posix.join(base, `${machine}.${randomBytes(6).toString('hex')}`);
  mkdirSync(dir, { mode: 0o700 });
  const start = processStartTime(process.pid) ?? '0';
  writeFileSync(`${dir}/owner`, `${process.pid} ${start}\n`);
  const r: EphemeralRoot = {
    dir, upper: `${dir}/upper`, work: `${dir}/work`, lower: `${dir}/lower`, mountPoint: `${dir}/root`,
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
  for (const d of [r.upper, r.work, r.lower, r.mountPoint]) mkdirSync(d, { mode: 0o755 });
  return r;
}
