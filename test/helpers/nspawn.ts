// Running bin/nspawn-ts from tests: as a child process with a timeout, output captured.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { run, type RunResult } from './exec.js';
import { sweepNotifySockets } from '../../src/runtime/leftovers.js';
import { MachineRegistry } from '../../src/runtime/registry.js';

export const NSPAWN_TS = fileURLToPath(new URL('../../bin/nspawn-ts', import.meta.url));

let serial = 0;

/**
 * Without -M, tests get a machine name of their own run: the name otherwise comes from the
 * directory (the same for every run on this machine), and machine cgroups are host-wide.
 */
function named(args: readonly string[]): string[] {
  const withConsole = consoled(args);
  if (args.includes('-M') || args.some((a) => a.startsWith('--machine'))) return withConsole;
  return ['-M', `t-${RUN_ID}-${++serial}`, ...withConsole];
}

/**
 * Commands run as scripts run systemd-nspawn: with --pipe, so the container's standard input,
 * output and error are the test's pipes, byte for byte (systemd's default without a terminal is
 * --console=read-only: a pty, CRLF line ends, stdin not read, and stderr mixed into stdout). A test
 * that names a console mode, or boots (-b/--boot: init's console, status lines), gets what it asks.
 */
export function consoled(args: readonly string[]): string[] {
  const chosen = args.some((a) => a.startsWith('--console') || a === '--pipe' || a === '-P' || a === '-b' || a === '--boot');
  return chosen ? [...args] : ['--pipe', ...args];
}

export function nspawn(args: readonly string[], opts: { timeoutMs?: number; input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return run(process.execPath, [NSPAWN_TS, ...named(args)], { timeoutMs: opts.timeoutMs ?? 30_000, input: opts.input ?? '', env: { ...process.env, ...opts.env } });
}

/** Starts nspawn-ts in the background (stdin closed); the caller waits for it or kills it. */
export function startNspawn(args: readonly string[], env: NodeJS.ProcessEnv = {}): ChildProcess & { output: () => string } {
  const child = spawn(process.execPath, [NSPAWN_TS, ...named(args)], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr?.on('data', (d: Buffer) => { out += d.toString(); });
  return Object.assign(child, { output: () => out });
}

export function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

/** The ID in the machine names of this test process (other test files of the run use their own). */
export const RUN_ID = process.pid.toString(36);

/**
 * Names of machine records of this test process (the registry is the run's tmpfs at
 * /run/nspawn-ts; names without RUN_ID belong to other test files).
 */
export function machineRecords(): string[] {
  const dir = '/run/nspawn-ts/machines';
  return existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.json') && !f.startsWith('.')).map((f) => f.slice(0, -5)).filter((n) => n.includes(RUN_ID)) : [];
}

/** Ephemeral layers of this test process's machines. */
export function ephemeralLayers(): string[] {
  const dir = '/var/lib/nspawn-ts/ephemeral';
  return existsSync(dir) ? readdirSync(dir).filter((n) => n.includes(RUN_ID)) : [];
}

/** The leader PID in NAME's record, once it has one. */
export function machineLeader(name: string): number | undefined {
  try {
    const r = JSON.parse(readFileSync(`/run/nspawn-ts/machines/${name}.json`, 'utf8')) as { leader?: { pid: number } };
    return r.leader?.pid;
  } catch {
    return undefined;
  }
}

/** Every nspawn-ts cgroup directory left on the host (there should be none after a container). */
export function leftoverCgroups(): string[] {
  const found: string[] = [];
  const walk = (dir: string, depth: number): void => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      if (e.name === 'nspawn-ts') {
        for (const m of readdirSync(`${dir}/${e.name}`, { withFileTypes: true })) {
          if (m.isDirectory() && m.name.startsWith('machine-')) found.push(`${dir}/${e.name}/${m.name}`);
        }
      } else if (depth < 4) {
        walk(`${dir}/${e.name}`, depth + 1);
      }
    }
  };
  walk('/sys/fs/cgroup', 0);
  return found;
}

/**
 * Removes the cgroups of machine NAME that a launcher killed with SIGKILL could not (they are the
 * host's and outlive the run; the leak check fails a test that leaves them): depth first, once the
 * processes in them are gone.
 */
export async function removeMachineCgroups(name: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (const dir of leftoverCgroups().filter((d) => d.endsWith(`/machine-${name}`))) {
    const below = (d: string): string[] => readdirSync(d, { withFileTypes: true }).filter((e) => e.isDirectory()).flatMap((e) => below(`${d}/${e.name}`)).concat(d);
    for (const d of below(dir)) {
      for (;;) {
        try {
          rmdirSync(d);
          break;
        } catch (err) {
          // EBUSY while a killed process is still leaving it
          if ((err as NodeJS.ErrnoException).code !== 'EBUSY' || Date.now() > deadline) throw err;
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    }
  }
}

/**
 * What launchers killed with SIGKILL left in /run/nspawn-ts — their machine records and notify
 * sockets, which the next launch sweeps — swept now, as that launch would (the leak check fails a
 * test that leaves them).
 */
export async function sweepKilledLaunchers(): Promise<void> {
  await new MachineRegistry().pruneDead();
  sweepNotifySockets();
}
